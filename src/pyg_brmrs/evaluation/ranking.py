r"""Full-ranking evaluation in the protocol of MMRec.

Every evaluated user is scored against *all* items, ``s(u, i) = <e_u, e_i>``;
the user's training items (and optionally further pairs such as the
validation items when scoring test) are masked with :math:`-\infty`; the
top-:math:`K` items are compared with the user's held-out items
:math:`P_u`. Users without a held-out item in the split are skipped (they are
neither scored nor counted). With :math:`h_j \in \{0, 1\}` the relevance of
rank :math:`j` (1-based) and :math:`H_K = \sum_{j \le K} h_j`:

.. math::
    \mathrm{Recall@}K &= H_K / |P_u| \\
    \mathrm{Precision@}K &= H_K / K \\
    \mathrm{NDCG@}K &= \frac{\sum_{j \le K} h_j / \log_2(j + 1)}
        {\sum_{j \le \min(|P_u|, K)} 1 / \log_2(j + 1)} \\
    \mathrm{MAP@}K &= \frac{1}{\min(|P_u|, K)} \sum_{j \le K} h_j \,
        \frac{H_j}{j} \\
    \mathrm{Hit@}K &= [H_K > 0]

averaged over the evaluated users. These are the definitions of MMRec's
``utils/metrics.py`` and of :mod:`torch_geometric.metrics`
(:class:`~torch_geometric.metrics.LinkPredRecall`,
:class:`~torch_geometric.metrics.LinkPredNDCG`,
:class:`~torch_geometric.metrics.LinkPredPrecision`,
:class:`~torch_geometric.metrics.LinkPredMAP`,
:class:`~torch_geometric.metrics.LinkPredHitRatio`); the tests check the
agreement. The metrics are computed here from one hit matrix instead of
through those classes because the hit matrix is built once for all metrics
and cutoffs, stays on the device and needs no host synchronisation per batch.

A masked item never counts as a hit, even when :math:`K` exceeds the number
of unmasked items (masked items then fill the tail of the ranking), while
:math:`|P_u|` counts every held-out pair of :math:`u` (as MMRec's
``pos_len``), so a held-out pair that is also masked can never be retrieved.

.. note::

    Ties. The ranking is :meth:`torch.topk` on the scores, as in MMRec. The
    order among items with *exactly* equal scores is not specified by PyTorch
    and may differ between devices and versions; with continuous embeddings
    ties have probability zero. Any tie order gives a valid ranking.
"""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from pyg_brmrs.utils.checks import check_edge_index, check_int
from pyg_brmrs.utils.topk import (
    RankingPlan,
    check_embedding_pair,
    is_sorted,
    lookup_table,
    mask_edge_index,
    ranked_items,
    topk_items,
)

METRICS = ('recall', 'ndcg', 'precision', 'map', 'hit')
DEFAULT_METRICS = ('recall', 'ndcg', 'precision', 'map')


def _check_ks(ks: Union[int, Sequence[int]]) -> Tuple[int, ...]:
    if not isinstance(ks, (list, tuple, range)) and not (
            isinstance(ks, Tensor) and ks.dim() == 1):
        ks = (ks, )
    if len(ks) == 0:
        raise ValueError("'ks' must hold at least one cutoff")
    return tuple(sorted({check_int(k, 'ks') for k in ks}))


def _check_metrics(metrics: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics, )
    metrics = tuple(m.lower() for m in metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if len(metrics) == 0 or unknown:
        raise ValueError(f"'metrics' must be a non-empty subset of {METRICS} "
                         f"(got unknown {unknown or list(metrics)})")
    return metrics


def _float_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == 'mps' else torch.float64


# Evaluator ###################################################################

class RankingEvaluator:
    r"""Full-ranking top-:math:`K` evaluation (MMRec protocol, see the module
    docstring for the definitions), with the masks and labels precomputed
    once, so that it can be called every epoch with new embeddings.

    .. code-block:: python

        evaluator = RankingEvaluator(train_edge_index, val_edge_index,
                                     num_items, ks=(10, 20))
        for epoch in range(num_epochs):
            ...  # train
            # user_emb [num_users, d], item_emb [num_items, d]:
            out = evaluator(user_emb, item_emb)
            # {'recall@10': ..., 'recall@20': ..., 'ndcg@10': ..., ...}

    Args:
        train_edge_index (torch.Tensor): Training pairs ``[2, E_train]`` (row 0
            users, row 1 items); masked from the ranking.
        eval_edge_index (torch.Tensor): Held-out pairs ``[2, E_eval]``; the
            users appearing here are the evaluated users, their items the
            positives :math:`P_u`. Must not contain duplicate pairs.
        num_items (int): The number of items.
        ks (int or Sequence[int], optional): The cutoffs. (default:
            :obj:`(10, 20)`)
        metrics (Sequence[str], optional): A subset of ``'recall'``,
            ``'ndcg'``, ``'precision'``, ``'map'``, ``'hit'``. (default:
            :obj:`('recall', 'ndcg', 'precision', 'map')`)
        batch_size (int, optional): Users scored at once; peak extra memory
            is ``batch_size * num_items`` scores. Results do not depend on it.
            (default: :obj:`4096`)
        exclude_edge_index (torch.Tensor, optional): Further pairs to mask,
            *e.g.*, the validation pairs when scoring test (MMRec does not;
            default :obj:`None`).
        max_scores (int, optional): Memory bound: at most this many scores
            exist at once. A batch then holds :math:`\min(\text{batch\_size},
            \lfloor\text{max\_scores} / |\mathcal{I}|\rfloor)` users
            when at least :math:`\min(\text{batch\_size}, 256)` whole
            rows fit; otherwise :math:`b = \min(\text{batch\_size}, 256,
            \lfloor\sqrt{\text{max\_scores}}\rfloor)` users against
            blocks of :math:`\lfloor\text{max\_scores} / b\rfloor` items,
            the blocks' top-:math:`K` merged (see
            :class:`~pyg_brmrs.utils.topk.RankingPlan`); peak extra memory
            is then :math:`O(\text{max\_scores} + U K)` whatever the
            catalogue size, e.g. ``2**27`` (512 MB of float32) for 1M users
            x 1M items. The top-:math:`K` values are those of the unchunked
            ranking. (default: :obj:`None`: ``batch_size`` rules)

    The precomputed tensors live on the device of :obj:`eval_edge_index` and
    are moved (once, then cached) to the device of the embeddings.
    """
    def __init__(
        self,
        train_edge_index: Tensor,
        eval_edge_index: Tensor,
        num_items: int,
        ks: Union[int, Sequence[int]] = (10, 20),
        *,
        metrics: Sequence[str] = DEFAULT_METRICS,
        batch_size: int = 4096,
        exclude_edge_index: Optional[Tensor] = None,
        max_scores: Optional[int] = None,
    ):
        num_items = check_int(num_items, 'num_items')
        self.num_items = num_items
        self.ks = _check_ks(ks)
        self.metrics = _check_metrics(metrics)
        self.batch_size = batch_size = check_int(batch_size, 'batch_size')

        eval_edge_index = check_edge_index(
            eval_edge_index, 'eval_edge_index', num_nodes=(None, num_items),
            kinds=('user', 'item'), allow_empty=False)
        device = eval_edge_index.device
        mask = mask_edge_index(train_edge_index, exclude_edge_index,
                                num_items, device)
        self.max_user = max(int(eval_edge_index[0].max()),
                            int(mask[0].max()) if mask.numel() else 0)

        # Evaluated users (sorted) and their positives, as sorted keys
        # `row * num_items + item`:
        row = eval_edge_index[0]
        count = torch.bincount(row)
        users = (count > 0).nonzero().view(-1)
        local = lookup_table(users)[row]
        keys = local * num_items + eval_edge_index[1]
        if not is_sorted(keys):
            keys, _ = torch.sort(keys)
        dup = keys[1:] == keys[:-1]
        if bool(dup.any()):
            key = int(keys[1:][dup][0])
            raise ValueError(f"'eval_edge_index' holds duplicate pairs, e.g. "
                             f"(user {int(users[key // num_items])}, item "
                             f"{key % num_items})")
        self.pos_keys = keys
        self.pos_count = count[users]
        self.plan = RankingPlan(users, mask, num_items, batch_size,
                                max_scores)

    @classmethod
    def from_data(cls, data, split: str = 'valid',
                  ks: Union[int, Sequence[int]] = (10, 20), *,
                  exclude_valid: bool = False, schema=None,
                  **kwargs) -> 'RankingEvaluator':
        r"""Builds the evaluator of a :class:`~torch_geometric.data.HeteroData`
        in the schema of :mod:`pyg_brmrs.data`: masks
        ``data['user', 'rates', 'item'].edge_index`` and ranks against
        ``.val_edge_index`` (:obj:`split='valid'`) or ``.test_edge_index``
        (:obj:`split='test'`). :obj:`exclude_valid=True` also masks the
        validation pairs when scoring test (MMRec does not). Further keyword
        arguments go to :class:`RankingEvaluator`. :obj:`schema` (a
        :class:`~pyg_brmrs.data.Schema`) names the node and edge types of
        :obj:`data`."""
        from pyg_brmrs.data.schema import ITEM, RATES, canonical
        data = canonical(data, schema)
        if split not in ('valid', 'test'):
            raise ValueError(f"'split' must be 'valid' or 'test' (got "
                             f"{split!r})")
        store = data[RATES]
        attr = 'val_edge_index' if split == 'valid' else 'test_edge_index'
        if getattr(store, attr, None) is None:
            raise ValueError(f"data{list(RATES)} has no '{attr}'")
        if exclude_valid:
            if split != 'test':
                raise ValueError("'exclude_valid=True' needs split='test'")
            if 'exclude_edge_index' in kwargs:
                raise ValueError("pass either 'exclude_valid' or "
                                 "'exclude_edge_index'")
            kwargs['exclude_edge_index'] = store.val_edge_index
        return cls(store.edge_index, getattr(store, attr),
                   int(data[ITEM].num_nodes), ks, **kwargs)

    @property
    def users(self) -> Tensor:
        r"""The evaluated user ids (sorted), ``[num_eval_users]``."""
        return self.plan.users

    @property
    def num_users(self) -> int:
        r"""The number of evaluated users."""
        return self.plan.users.numel()

    def _to(self, device: torch.device):
        if self.pos_keys.device != device:
            self.plan.to(device)
            self.pos_keys = self.pos_keys.to(device)
            self.pos_count = self.pos_count.to(device)

    def hit_matrix(self, user_emb: Tensor, item_emb: Tensor,
                   k: Optional[int] = None) -> Tensor:
        r"""Returns the boolean hit matrix ``[num_eval_users, k]``
        (:obj:`k` defaults to ``max(ks)``): entry :math:`(u, j)` tells whether
        the item at rank :math:`j + 1` of user ``users[u]`` is held out."""
        user_emb, item_emb = check_embedding_pair(user_emb, item_emb)
        if item_emb.size(0) != self.num_items:
            raise ValueError(f"'item_emb' has {item_emb.size(0)} rows but the "
                             f"evaluator was built for {self.num_items} items")
        if user_emb.size(0) <= self.max_user:
            raise ValueError(f"'user_emb' has {user_emb.size(0)} rows but the "
                             f"edge indices hold user id {self.max_user}")
        k = max(self.ks) if k is None else check_int(k, 'k')
        self._to(user_emb.device)
        with torch.no_grad():
            values, index = self.plan.topk(user_emb, item_emb, k)
            rows = torch.arange(self.num_users, device=user_emb.device)
            key = index + (rows * self.num_items).view(-1, 1)
            j = torch.searchsorted(self.pos_keys, key)
            j.clamp_(max=self.pos_keys.numel() - 1)
            hits = (self.pos_keys[j] == key) & (values != float('-inf'))
        if hits.size(1) < k:  # `k > num_items`: ranks past the end miss.
            hits = torch.cat([hits, hits.new_zeros(
                (hits.size(0), k - hits.size(1)))], dim=1)
        return hits

    def per_user(self, user_emb: Tensor,
                 item_emb: Tensor) -> Dict[str, Tensor]:
        r"""Returns the per-user metrics: ``{'user': [U], 'recall@20': [U],
        ...}`` over the evaluated users (for significance tests)."""
        hits = self.hit_matrix(user_emb, item_emb)
        out: Dict[str, Tensor] = {'user': self.users.clone()}
        out.update(metrics_from_hits(hits, self.pos_count, self.ks,
                                      self.metrics))
        return out

    def __call__(
        self,
        user_emb: Tensor,
        item_emb: Tensor,
        return_per_user: bool = False,
    ) -> Union[Dict[str, float], Tuple[Dict[str, float], Dict[str, Tensor]]]:
        r"""Evaluates embeddings ``user_emb`` ``[num_users, d]`` and
        ``item_emb`` ``[num_items, d]``.

        Returns:
            A dict ``{'recall@10': float, ...}`` (metric-major, ascending
            :math:`K`); with :obj:`return_per_user=True` a tuple of that dict
            and :meth:`per_user`'s dict.
        """
        per_user = self.per_user(user_emb, item_emb)
        names = [name for name in per_user if name != 'user']
        if names:
            means = torch.stack([per_user[name] for name in names]).mean(1)
            values = means.tolist()
        else:
            values = []
        out = dict(zip(names, values))
        if return_per_user:
            return out, per_user
        return out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_users={self.num_users}, '
                f'num_items={self.num_items}, ks={self.ks}, '
                f'metrics={self.metrics})')


def metrics_from_hits(hits: Tensor, pos_count: Tensor, ks: Sequence[int],
                       metrics: Sequence[str]) -> Dict[str, Tensor]:
    r"""Per-user metrics ``{'recall@10': [U], ...}`` from a hit matrix
    ``[U, max(ks)]`` and the number of held-out items ``[U]`` of every
    user, vectorised over users and cutoffs."""
    device = hits.device
    dtype = _float_dtype(device)
    h = hits.to(dtype)
    rank = torch.arange(1, h.size(1) + 1, device=device, dtype=dtype)
    k = torch.tensor(ks, device=device)
    col = k - 1
    cum_hits = h.cumsum(1)
    hits_k = cum_hits[:, col]  # [U, len(ks)]
    n_pos = pos_count.to(dtype).view(-1, 1)
    n_rel = torch.minimum(pos_count.view(-1, 1), k)  # min(|P_u|, K)
    out: Dict[str, Tensor] = {}
    for metric in metrics:
        if metric == 'recall':
            value = hits_k / n_pos
        elif metric == 'precision':
            value = hits_k / k.to(dtype)
        elif metric == 'hit':
            value = (hits_k > 0).to(dtype)
        elif metric == 'ndcg':
            discount = 1.0 / torch.log2(rank + 1)
            dcg = (h * discount).cumsum(1)[:, col]
            value = dcg / discount.cumsum(0)[n_rel - 1]
        else:  # 'map'
            value = (h * cum_hits / rank).cumsum(1)[:, col] / n_rel.to(dtype)
        for j, kk in enumerate(ks):
            out[f'{metric}@{kk}'] = value[:, j].contiguous()
    return out


def full_ranking_metrics(
    user_emb: Tensor,
    item_emb: Tensor,
    train_edge_index: Tensor,
    eval_edge_index: Tensor,
    ks: Union[int, Sequence[int]] = (10, 20),
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    batch_size: int = 4096,
    exclude_edge_index: Optional[Tensor] = None,
    return_per_user: bool = False,
    max_scores: Optional[int] = None,
) -> Union[Dict[str, float], Tuple[Dict[str, float], Dict[str, Tensor]]]:
    r"""Full-ranking top-:math:`K` metrics in the protocol of MMRec (see the
    module docstring for the definitions): scores ``user_emb @ item_emb.T``
    over all items, the training items of every user masked, users with no
    pair in :obj:`eval_edge_index` skipped, averaged over evaluated users.

    A one-shot wrapper around :class:`RankingEvaluator`; build the evaluator
    once when evaluating repeatedly (*e.g.*, every epoch).

    Args:
        user_emb (torch.Tensor): User embeddings ``[num_users, d]``.
        item_emb (torch.Tensor): Item embeddings ``[num_items, d]``; everything
            runs on their device.
        train_edge_index (torch.Tensor): Training pairs ``[2, E_train]``
            (masked).
        eval_edge_index (torch.Tensor): Held-out pairs ``[2, E_eval]``.
        ks (int or Sequence[int], optional): Cutoffs. (default:
            :obj:`(10, 20)`)
        metrics (Sequence[str], optional): Subset of ``'recall'``, ``'ndcg'``,
            ``'precision'``, ``'map'``, ``'hit'``.
        batch_size (int, optional): Users scored at once. (default:
            :obj:`4096`)
        exclude_edge_index (torch.Tensor, optional): Further pairs to mask,
            *e.g.*, validation pairs when scoring test. (default: :obj:`None`,
            as MMRec)
        return_per_user (bool, optional): Also return the per-user values
            ``{'user': [U], 'recall@20': [U], ...}``. (default: :obj:`False`)
        max_scores (int, optional): At most this many scores at once (see
            :class:`RankingEvaluator`). (default: :obj:`None`)

    Returns:
        ``{'recall@10': float, 'recall@20': float, 'ndcg@10': ..., ...}``
        (metric-major, ascending :math:`K`); with :obj:`return_per_user=True`
        a tuple of that dict and the per-user dict.

    The ranking is :meth:`torch.topk` per batch of users, as in MMRec: among
    exactly equal scores the order is unspecified (see the module note).
    """
    user_emb, item_emb = check_embedding_pair(user_emb, item_emb)
    evaluator = RankingEvaluator(
        train_edge_index.to(user_emb.device)
        if isinstance(train_edge_index, Tensor) else train_edge_index,
        eval_edge_index.to(user_emb.device)
        if isinstance(eval_edge_index, Tensor) else eval_edge_index,
        item_emb.size(0), ks, metrics=metrics, batch_size=batch_size,
        exclude_edge_index=exclude_edge_index, max_scores=max_scores)
    return evaluator(user_emb, item_emb, return_per_user=return_per_user)


__all__ = [
    'METRICS',
    'DEFAULT_METRICS',
    'RankingEvaluator',
    'RankingPlan',
    'check_embedding_pair',
    'full_ranking_metrics',
    'mask_edge_index',
    'metrics_from_hits',
    'ranked_items',
    'topk_items',
]
