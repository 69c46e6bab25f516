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
from typing import Dict, Optional

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

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
    edits such as FREEDOM's edge dropout).

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

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items})')


def ego_regularization(*embeddings: Tensor) -> Tensor:
    r""":math:`\frac{1}{2B} \sum_t \lVert \mathbf{E}_t \rVert_F^2` for
    mini-batch embedding matrices :math:`\mathbf{E}_t` of ``B`` rows."""
    batch_size = embeddings[0].size(0)
    total = sum(e.pow(2).sum() for e in embeddings)
    return total / (2 * max(batch_size, 1))
