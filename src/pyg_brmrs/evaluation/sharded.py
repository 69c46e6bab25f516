r"""Full-ranking evaluation split by users over the processes of a
:mod:`torch.distributed` group, with the same numbers as one process."""
from typing import Dict, Optional

import torch
from torch import Tensor

from pyg_brmrs.data.schema import ITEM, RATES
from pyg_brmrs.evaluation.ranking import RankingEvaluator
from pyg_brmrs.utils import distributed as dist_utils


class ShardedEvaluator:
    r"""A :class:`~pyg_brmrs.evaluation.RankingEvaluator` whose users are
    split over :obj:`world_size` processes: user :math:`u` is ranked on
    rank :math:`u \bmod W`, the per-user metrics of every rank are gathered
    and averaged in user order, so every rank returns what one process
    ranking all users returns. Every rank must call it (it communicates);
    with :obj:`world_size=1` it is the plain evaluator.

    Args:
        train_edge_index (torch.Tensor): The masked training pairs
            ``[2, E]``.
        eval_edge_index (torch.Tensor): The held-out pairs ``[2, E']``.
        num_items (int): The number of items.
        rank (int, optional): This process's rank. (default: :obj:`0`)
        world_size (int, optional): The number of processes.
            (default: :obj:`1`)
        **kwargs (optional): Arguments of
            :class:`~pyg_brmrs.evaluation.RankingEvaluator` (``ks``,
            ``batch_size``, ``exclude_edge_index``, ``max_scores``, ...).
    """
    def __init__(self, train_edge_index: Tensor, eval_edge_index: Tensor,
                 num_items: int, *, rank: int = 0, world_size: int = 1,
                 **kwargs):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"'rank' must lie in [0, world_size) (got rank "
                             f"{rank}, world_size {world_size})")
        self.rank, self.world_size = int(rank), int(world_size)
        if world_size > 1:
            mine = eval_edge_index[0] % world_size == rank
            eval_edge_index = eval_edge_index[:, mine]
        self.evaluator: Optional[RankingEvaluator] = None
        if eval_edge_index.size(1) > 0:
            self.evaluator = RankingEvaluator(train_edge_index,
                                              eval_edge_index, num_items,
                                              **kwargs)

    @classmethod
    def from_data(cls, data, split: str = 'valid', *,
                  exclude_valid: bool = False, rank: int = 0,
                  world_size: int = 1, **kwargs) -> 'ShardedEvaluator':
        r"""The evaluator of split :obj:`split` of a
        :class:`~torch_geometric.data.HeteroData` in the canonical names,
        as :meth:`~pyg_brmrs.evaluation.RankingEvaluator.from_data` builds
        it (:obj:`exclude_valid=True` also masks the validation pairs when
        ranking test)."""
        if split not in ('valid', 'test'):
            raise ValueError(f"'split' must be 'valid' or 'test' (got "
                             f"{split!r})")
        store = data[RATES]
        held = store.val_edge_index if split == 'valid' else \
            store.test_edge_index
        if exclude_valid and split == 'test':
            kwargs['exclude_edge_index'] = store.val_edge_index
        return cls(store.edge_index, held, int(data[ITEM].num_nodes),
                   rank=rank, world_size=world_size, **kwargs)

    def __call__(self, user_emb: Tensor, item_emb: Tensor
                 ) -> Dict[str, float]:
        r"""The metrics ``{'recall@10': float, ...}`` of all users."""
        if self.world_size == 1:
            if self.evaluator is None:
                raise ValueError("there are no held-out pairs to evaluate")
            return self.evaluator(user_emb, item_emb)
        mine = {} if self.evaluator is None else {
            k: v.cpu() for k, v in self.evaluator.per_user(
                user_emb, item_emb).items()}
        parts = [p for p in dist_utils.all_gather_object(mine) if p]
        user = torch.cat([p['user'] for p in parts])
        order = torch.argsort(user)
        names = [k for k in parts[0] if k != 'user']
        means = torch.stack([torch.cat([p[k] for p in parts])[order]
                             for k in names]).mean(1)
        return dict(zip(names, means.tolist()))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(rank={self.rank}, '
                f'world_size={self.world_size}, '
                f'evaluator={self.evaluator})')
