r"""The common interface of every recommender in :mod:`pyg_brmrs.nn`.

A recommender is an encoder: :meth:`Recommender.forward` maps a
:class:`~torch_geometric.data.HeteroData` in the package's data schema
(README, "Data schema") to user and item representations, one pair per
*branch*. Single-space models (MF, LightGCN,
VBPR, FREEDOM) have one branch; BR-MRS has one branch per modality plus the
fused one. Training objectives live in :mod:`pyg_brmrs.objectives`, ranking
in :mod:`pyg_brmrs.evaluation`; a model never reads files or samples.

**Other names.** A model built with ``from_data(data, schema=...)`` (a
:class:`~pyg_brmrs.data.Schema`) remembers the schema and maps every input
to the canonical names first (a view sharing the tensors).

**Mini-batch subgraphs.** When the user and item stores of the input carry
``n_id`` (the global ids of the batch's nodes, as PyG's loaders and
``HeteroData.subgraph`` with a manual ``n_id`` produce), every model
computes the representations of the batch's nodes only, in the batch's
local order: free embeddings are gathered by ``n_id``, item features are
read from the batch (loaders gather them already), and messages flow over
the batch's edges only, normalised with the *global* degrees of the
training graph (recorded by :meth:`Recommender.set_graph`, which
``from_data`` calls); every node's incoming sum is scaled by
:math:`\deg(v)/\deg_b(v)`, its in-degree in the full graph over that among
the batch's edges, which makes the sum over a uniform sample of its edges
(PyG's neighbour sampler) an unbiased estimate of the full-graph sum. The
factor is :math:`1` for a node with all its edges in the batch, so a batch
that holds the whole neighbourhood its seed nodes' representations depend
on gives these nodes exactly their full-graph representations. The returned :class:`RecOutput` keeps the
batch's ``n_id`` (:attr:`RecOutput.user_n_id`, :attr:`RecOutput.item_n_id`)
so that regularisers map local ids back to global ones.
"""
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_brmrs.data.schema import (
    ITEM,
    RATES,
    USER,
    Schema,
    resolve_schema,
)
from pyg_brmrs.utils.checks import check_int
from pyg_brmrs.utils.ranking import topk_items

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
        return (self.user[b][users] * self.item[b][items]).sum(dim=-1)

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


def subgraph_ids(data: HeteroData) -> Optional[Tuple[Tensor, Tensor]]:
    r"""``(user n_id, item n_id)`` of a mini-batch subgraph (see the module
    description), :obj:`None` when the input is the full graph (neither
    store carries ``n_id``).

    Raises:
        ValueError: if only one of the stores carries ``n_id``, or an
            ``n_id`` is not a 1-D integer tensor with one id per node.
    """
    has = [t in data.node_types and 'n_id' in data[t] for t in (USER, ITEM)]
    if not any(has):
        return None
    if not all(has):
        missing = [t for t, h in zip((USER, ITEM), has) if not h]
        raise ValueError(f"A mini-batch subgraph needs 'n_id' on both the "
                         f"user and the item store; data['{missing[0]}'] "
                         f"has none")
    out = []
    for t in (USER, ITEM):
        n_id = data[t].n_id
        if not isinstance(n_id, Tensor) or n_id.dim() != 1 or \
                n_id.dtype.is_floating_point or n_id.dtype == torch.bool:
            raise ValueError(f"data['{t}'].n_id must be a 1-D integer tensor "
                             f"of global ids (got "
                             f"{getattr(n_id, 'dtype', type(n_id))} of shape "
                             f"{tuple(getattr(n_id, 'shape', ()))})")
        num = data[t].num_nodes
        if num is not None and int(num) != n_id.numel():
            raise ValueError(f"data['{t}'].n_id has {n_id.numel()} ids but "
                             f"the store has {int(num)} nodes")
        out.append(n_id.long())
    return out[0], out[1]


def _canonical_input(module: 'Recommender', args):
    r"""Forward pre-hook: maps a :class:`HeteroData` input to the canonical
    names of the model's schema (a view, nothing copied)."""
    if args and isinstance(args[0], HeteroData) and \
            not module.schema.is_default:
        data = module.schema.canonical(args[0])
        if data is not args[0]:
            return (data, ) + tuple(args[1:])
    return None


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
    #: The homogeneous graphs of the data (canonical edge types, *e.g.*
    #: ``('item', 'similar', 'item')``) that :meth:`forward` reads besides
    #: the interactions; a neighbour loader samples only these.
    #: :obj:`None` (the default for subclasses that do not say): every
    #: such graph present in the data.
    graph_edge_types: Optional[Tuple[Tuple[str, str, str], ...]] = None
    #: Whether :meth:`forward` takes ``users=`` (global user ids): the user
    #: outputs then hold those users' rows only (``user_n_id = users``),
    #: computed on the full graph at a lower cost. Objectives pass a
    #: training batch's users when it is :obj:`True`.
    supports_user_subset: bool = False

    def __init__(self, num_users: int, num_items: int):
        super().__init__()
        if num_users < 1 or num_items < 1:
            raise ValueError(f"'num_users' and 'num_items' must be positive "
                             f"(got {num_users} and {num_items})")
        self.num_users = int(num_users)
        self.num_items = int(num_items)
        #: The names of the inputs (:class:`~pyg_brmrs.data.Schema`), set by
        #: ``from_data(..., schema=...)``.
        self.schema: Schema = resolve_schema(None)
        # The global degrees of the training graph, for subgraph batches
        # (set by `set_graph`; not part of the state dict):
        self.register_buffer('user_degree', None, persistent=False)
        self.register_buffer('item_degree', None, persistent=False)
        self.register_forward_pre_hook(_canonical_input)

    def forward(self, data: HeteroData) -> RecOutput:
        raise NotImplementedError

    def set_graph(self, data: HeteroData,
                  schema: Optional[Schema] = None) -> 'Recommender':
        r"""Records what a mini-batch subgraph forward needs from the full
        training graph of :obj:`data`: the user and item degrees
        :math:`\deg(u) = |\mathcal{N}_u|`, :math:`\deg(i) =
        |\mathcal{N}_i|` (non-persistent buffers :attr:`user_degree`,
        :attr:`item_degree`). ``from_data`` calls it; call it yourself for
        a model built with its constructor. Returns the model."""
        if schema is not None:
            self.schema = resolve_schema(schema)
        data = self.schema.canonical(data)
        edge_index = data[RATES].edge_index
        if int(data[USER].num_nodes) != self.num_users or \
                int(data[ITEM].num_nodes) != self.num_items:
            raise ValueError(f"'{self.__class__.__name__}' was built for "
                             f"{self.num_users} users and {self.num_items} "
                             f"items but the data has "
                             f"{int(data[USER].num_nodes)} users and "
                             f"{int(data[ITEM].num_nodes)} items")
        device = next(iter(self.parameters()), edge_index).device
        self.user_degree = torch.bincount(
            edge_index[0], minlength=self.num_users).float().to(device)
        self.item_degree = torch.bincount(
            edge_index[1], minlength=self.num_items).float().to(device)
        return self

    def _from_data(self, data: HeteroData,
                   schema: Optional[Schema]) -> 'Recommender':
        r"""What every ``from_data`` does after building the model: store
        :obj:`schema` and :meth:`set_graph`."""
        return self.set_graph(data, schema)

    def subgraph_degrees(self, user_n_id: Tensor,
                         item_n_id: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The global degrees ``([U_b], [I_b])`` of a batch's nodes.

        Raises:
            ValueError: if :meth:`set_graph` was never called, or an id is
                out of range.
        """
        if self.user_degree is None or self.item_degree is None:
            raise ValueError(
                f"'{self.__class__.__name__}' needs the global degrees of the "
                f"training graph for a mini-batch subgraph (the input's node "
                f"stores carry 'n_id'): build it with "
                f"{self.__class__.__name__}.from_data(full_data) or call "
                f"model.set_graph(full_data)")
        for name, ids, num in (('user', user_n_id, self.num_users),
                               ('item', item_n_id, self.num_items)):
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num):
                raise ValueError(
                    f"data['{name}'].n_id holds ids outside [0, {num}) "
                    f"(the model has {num} {name}s)")
        return self.user_degree[user_n_id], self.item_degree[item_n_id]

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
            gets a row of :obj:`-1`): the ranking is
            :func:`pyg_brmrs.utils.ranking.topk_items`, the same masked,
            chunked top-:math:`k` the evaluation uses.
        """
        k = check_int(k, 'k')
        if k > self.num_items:
            raise ValueError(f"'k' must be at most the number of items "
                             f"({self.num_items}) (got {k})")
        batch_size = check_int(batch_size, 'batch_size')
        users = _check_users(users, self.num_users)
        data = self.schema.canonical(data)
        out = self.embed(data)
        return topk_items(out.user_emb.detach(), out.item_emb.detach(),
                          users.to(out.item_emb.device), k,
                          train_edge_index=data[RATES].edge_index
                          if exclude_seen else None,
                          batch_size=batch_size)

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


def ego_regularization(*embeddings: Tensor) -> Tensor:
    r""":math:`\frac{1}{2B} \sum_t \lVert \mathbf{E}_t \rVert_F^2` for
    mini-batch embedding matrices :math:`\mathbf{E}_t` of ``B`` rows."""
    batch_size = embeddings[0].size(0)
    total = sum(e.pow(2).sum() for e in embeddings)
    return total / (2 * max(batch_size, 1))
