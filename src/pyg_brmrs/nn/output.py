r"""The output of every recommender: user and item representations per
branch."""
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from torch import Tensor

from pyg_brmrs.utils.rows import take_rows

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
        user_n_id (torch.Tensor, optional): For a mini-batch subgraph, or
            an output restricted to some users, the global id of every row
            of :attr:`user` (:obj:`None`: full graph, row = id).
        item_n_id (torch.Tensor, optional): The same for :attr:`item`.
    """
    user: Dict[str, Tensor]
    item: Dict[str, Tensor]
    ranking_branch: str = FUSED
    extras: Dict[str, Tensor] = field(default_factory=dict)
    user_n_id: Optional[Tensor] = None
    item_n_id: Optional[Tensor] = None

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
        return (take_rows(self.user[b], users) *
                take_rows(self.item[b], items)).sum(dim=-1)

    def detach(self) -> 'RecOutput':
        return RecOutput({k: v.detach() for k, v in self.user.items()},
                         {k: v.detach() for k, v in self.item.items()},
                         self.ranking_branch,
                         {k: v.detach() for k, v in self.extras.items()},
                         self.user_n_id, self.item_n_id)

    def global_ids(self, users: Tensor, *items: Tensor) -> Tuple[Tensor, ...]:
        r"""Maps row indices of :attr:`user` / :attr:`item` to global ids
        (the identity for a full-graph output)."""
        if self.user_n_id is not None:
            users = self.user_n_id[users]
        if self.item_n_id is not None:
            items = tuple(self.item_n_id[i] for i in items)
        return (users, ) + tuple(items)
