r"""The common interface of every recommender in :mod:`pyg_brmrs.nn`.

A recommender is an encoder: :meth:`Recommender.forward` maps a
:class:`~torch_geometric.data.HeteroData` in the package's data schema
(README, "Data schema") to user and item representations, one pair per
*branch*. Single-space models (MF, LightGCN,
VBPR, FREEDOM) have one branch; BR-MRS has one branch per modality plus the
fused one. Training objectives live in :mod:`pyg_brmrs.objectives`, ranking
in :mod:`pyg_brmrs.evaluation`; a model never reads files or samples.
"""
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_brmrs.data.schema import RATES
from pyg_brmrs.utils.checks import check_edge_index, check_int

FUSED = 'fused'


@dataclass
class RecOutput:
    r"""The representations computed by a :class:`Recommender`.

    Attributes:
        user (Dict[str, torch.Tensor]): branch name → ``[num_users, F_b]``.
        item (Dict[str, torch.Tensor]): branch name → ``[num_items, F_b]``.
        ranking_branch (str): The branch whose dot-product scores rank items
            at inference (:obj:`"fused"` by default).
        extras (Dict[str, torch.Tensor]): Model-specific tensors that an
            objective may need (*e.g.*, per-channel embeddings).
    """
    user: Dict[str, Tensor]
    item: Dict[str, Tensor]
    ranking_branch: str = FUSED
    extras: Dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self):
        if set(self.user) != set(self.item):
            raise ValueError(f"User and item branches differ: "
                             f"{sorted(self.user)} vs {sorted(self.item)}")
        if self.ranking_branch not in self.user:
            raise ValueError(f"Ranking branch '{self.ranking_branch}' not in "
                             f"branches {sorted(self.user)}")

    @property
    def branches(self):
        return list(self.user.keys())

    @property
    def user_emb(self) -> Tensor:
        r"""The user representations of the ranking branch."""
        return self.user[self.ranking_branch]

    @property
    def item_emb(self) -> Tensor:
        r"""The item representations of the ranking branch."""
        return self.item[self.ranking_branch]

    def score(self, users: Tensor, items: Tensor,
              branch: Optional[str] = None) -> Tensor:
        r"""Scores :math:`s_b(u, i) = \langle \mathbf{p}_u^{(b)},
        \mathbf{q}_i^{(b)} \rangle` of the pairs ``(users[k], items[k])``
        (any matching shapes; the result has that shape)."""
        b = self.ranking_branch if branch is None else branch
        return (self.user[b][users] * self.item[b][items]).sum(dim=-1)

    def detach(self) -> 'RecOutput':
        return RecOutput({k: v.detach() for k, v in self.user.items()},
                         {k: v.detach() for k, v in self.item.items()},
                         self.ranking_branch,
                         {k: v.detach() for k, v in self.extras.items()})


class Recommender(torch.nn.Module):
    r"""Base class of the recommenders.

    Subclasses implement :meth:`forward` and may override
    :meth:`regularization` (the :math:`\lambda \lVert \Theta \rVert^2` term
    of a mini-batch) and :meth:`on_epoch_start` (per-epoch stochastic graph
    edits such as FREEDOM's edge dropout). Every recommender inherits
    :meth:`embed` (representations for inference) and :meth:`recommend`
    (top-:math:`k` item lists).

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
    """
    def __init__(self, num_users: int, num_items: int):
        super().__init__()
        if num_users < 1 or num_items < 1:
            raise ValueError(f"'num_users' and 'num_items' must be positive "
                             f"(got {num_users} and {num_items})")
        self.num_users = int(num_users)
        self.num_items = int(num_items)

    def forward(self, data: HeteroData) -> RecOutput:
        raise NotImplementedError

    def regularization(self, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor,
                       out: Optional[RecOutput] = None) -> Tensor:
        r"""The squared :math:`L_2` norm of the free (ego) embeddings of a
        mini-batch, averaged over the batch:
        :math:`\frac{1}{2B}\sum_b (\lVert \mathbf{e}_{u_b} \rVert^2 +
        \lVert \mathbf{e}_{i^+_b} \rVert^2 + \lVert \mathbf{e}_{i^-_b}
        \rVert^2)`. :obj:`out` is the forward output of the same step (for
        models that regularise computed representations, *e.g.* VBPR). The
        default has no free embeddings and returns 0."""
        return users.new_zeros((), dtype=torch.float)

    def auxiliary_loss(self, out: RecOutput, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor) -> Dict[str, Tensor]:
        r"""Model-specific, already weighted loss terms that
        :class:`~pyg_brmrs.objectives.BPRObjective` adds to the BPR loss
        (*e.g.*, FREEDOM's modality BPR terms). None by default."""
        return {}

    def on_epoch_start(self, epoch: int,
                       generator: Optional[torch.Generator] = None) -> None:
        r"""Called by the trainer before every epoch (no-op by default)."""

    @torch.no_grad()
    def embed(self, data: HeteroData) -> RecOutput:
        r"""Runs :meth:`forward` in evaluation mode without gradients."""
        was_training = self.training
        self.eval()
        try:
            return self(data).detach()
        finally:
            self.train(was_training)

    @torch.no_grad()
    def recommend(self, data: HeteroData,
                  users: Union[Tensor, Sequence[int]], k: int = 20,
                  exclude_seen: bool = True, *,
                  batch_size: int = 4096) -> Tensor:
        r"""The :math:`k` best items of every user in :obj:`users`, best
        first, like :meth:`torch_geometric.nn.models.LightGCN.recommend`:
        items are ranked by the score of the ranking branch,

        .. math::
            s(u, i) = \langle \mathbf{p}_u, \mathbf{q}_i \rangle,

        computed in evaluation mode (:meth:`embed`); with
        :obj:`exclude_seen=True` the user's training items (the pairs of
        ``data['user', 'rates', 'item'].edge_index``) are never recommended.
        Ties follow :func:`torch.topk` (unspecified order).

        Args:
            data (torch_geometric.data.HeteroData): The data the model runs
                on (its training edges are the seen items).
            users (torch.Tensor or Sequence[int]): User ids ``[B]``
                (duplicates allowed).
            k (int, optional): Items per user, :math:`1 \le k \le
                |\mathcal{I}|`. (default: :obj:`20`)
            exclude_seen (bool, optional): Leave out the users' training
                items. (default: :obj:`True`)
            batch_size (int, optional): Users scored at once (peak memory:
                ``batch_size * num_items`` scores); the result does not
                depend on it. (default: :obj:`4096`)

        Returns:
            A long tensor ``[B, k]`` of item ids on the model's device. When
            :obj:`k` exceeds the number of items a user has not seen, the
            ranks past them hold :obj:`-1` (a user who has seen every item
            gets a row of :obj:`-1`), as
            :func:`pyg_brmrs.evaluation.topk_items` does.
        """
        k = check_int(k, 'k')
        if k > self.num_items:
            raise ValueError(f"'k' must be at most the number of items "
                             f"({self.num_items}) (got {k})")
        batch_size = check_int(batch_size, 'batch_size')
        users = _check_users(users, self.num_users)
        out = self.embed(data)
        user_emb, item_emb = out.user_emb, out.item_emb
        device = item_emb.device
        users = users.to(device)
        seen = None
        if exclude_seen:
            seen = _SeenItems(data[RATES].edge_index, self.num_users,
                              self.num_items, device)
        result = torch.empty((users.numel(), k), dtype=torch.long,
                             device=device)
        item_t = item_emb.t()
        for start in range(0, users.numel(), batch_size):
            batch = users[start:start + batch_size]
            scores = user_emb[batch] @ item_t
            if seen is not None:
                row, col = seen.pairs(batch)
                scores[row, col] = float('-inf')
            values, index = torch.topk(scores, k, dim=1)
            result[start:start + batch.numel()] = index.masked_fill_(
                values == float('-inf'), -1)
        return result

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items})')


def _check_users(users, num_users: int) -> Tensor:
    r"""The user ids of :meth:`Recommender.recommend` as a 1-D long
    tensor, checked against :obj:`num_users`."""
    if not isinstance(users, Tensor):
        try:
            users = torch.as_tensor(users)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"'users' must be a 1-D tensor or sequence of "
                            f"user ids (got {type(users).__name__})") from None
        if users.numel() == 0:  # [] has no integer dtype of its own
            users = users.long()
    if users.dim() != 1 or users.dtype == torch.bool or \
            users.dtype.is_floating_point or users.is_complex():
        raise ValueError(f"'users' must be a 1-D tensor of integer user ids "
                         f"(got shape {list(users.shape)}, dtype "
                         f"{users.dtype})")
    users = users.long()
    if users.numel() > 0:
        lo, hi = (int(v) for v in users.aminmax())
        if lo < 0 or hi >= num_users:
            raise ValueError(f"'users' holds user ids in [{lo}, {hi}] but "
                             f"there are only {num_users} users")
    return users


class _SeenItems:
    r"""The training items of every user, grouped by user (CSR), to mask
    them in a batch of score rows."""
    def __init__(self, edge_index: Tensor, num_users: int, num_items: int,
                 device: torch.device):
        edge_index = check_edge_index(edge_index, 'edge_index',
                                      num_nodes=(num_users, num_items),
                                      kinds=('user', 'item')).to(device)
        order = torch.argsort(edge_index[0], stable=True)
        self.item = edge_index[1, order]
        self.count = torch.bincount(edge_index[0], minlength=num_users)
        self.ptr = torch.cumsum(self.count, 0) - self.count

    def pairs(self, users: Tensor):
        r"""``(row, item)``: every training item of ``users[row]``."""
        count = self.count[users]
        row = torch.repeat_interleave(
            torch.arange(users.numel(), device=users.device), count)
        first = torch.cumsum(count, 0) - count
        offset = torch.arange(row.numel(), device=users.device) - first[row]
        return row, self.item[self.ptr[users][row] + offset]


def ego_regularization(*embeddings: Tensor) -> Tensor:
    r""":math:`\frac{1}{2B} \sum_t \lVert \mathbf{E}_t \rVert_F^2` for
    mini-batch embedding matrices :math:`\mathbf{E}_t` of ``B`` rows."""
    batch_size = embeddings[0].size(0)
    total = sum(e.pow(2).sum() for e in embeddings)
    return total / (2 * max(batch_size, 1))
