r"""The model contract: the base class of every recommender in
:mod:`pyg_brmrs.nn`.

**What a model receives.** A recommender's :meth:`~Recommender.forward` is
written once, over a :class:`~pyg_brmrs.nn.graph.RecGraph`: the user and
item rows it computes and the graph operators to propagate over them
(the user–item graph, the data's :math:`k`-NN graphs, the users' mean over
their items, graphs the model derived itself). ``model(data)`` turns a
:class:`~torch_geometric.data.HeteroData` into that graph first
(:meth:`Recommender.graph`), so the model never sees how its input came
about:

* the **full graph**: every user and item, with operators built once and
  cached while the same graph tensors are passed, optionally with the
  output restricted to some users (``model(data, users=ids)``, for models
  that declare :attr:`~Recommender.supports_user_subset`);
* a **mini-batch subgraph** whose node stores carry ``n_id`` (the global ids
  of the batch's nodes, as PyG's loaders and ``HeteroData.subgraph`` with a
  manual ``n_id`` produce): the batch's nodes in its local order, operators
  over the batch's edges with the full graph's degrees (recorded by
  :meth:`~Recommender.set_graph`) and every incoming sum scaled by
  :math:`\deg(v)/\deg_b(v)`, so that a node whose neighbourhood lies in the
  batch gets exactly its full-graph representation and a uniformly sampled
  neighbourhood an unbiased estimate of it;
* data under other names, through the :class:`~pyg_brmrs.data.Schema` the
  model was built with (a view sharing the tensors).

A model reads its own tables through ``graph.user_rows`` /
``graph.item_rows`` (the rows of the batch, or the whole table), the item
features through ``graph.features``, and never indexes by global id itself.

**What it returns.** A :class:`~pyg_brmrs.nn.RecOutput` (``graph.output``):
per *branch* the user and item representations of the graph's rows, with
their global ids (:attr:`~pyg_brmrs.nn.RecOutput.user_n_id`,
:attr:`~pyg_brmrs.nn.RecOutput.item_n_id`), so that objectives and
regularisers map rows back to global ids. Single-space models (MF,
LightGCN, VBPR, FREEDOM) have one branch, :obj:`"fused"`; BR-MRS has one per
modality plus the fused one.

**What it may keep.** Parameters, and what :meth:`~Recommender.set_graph`
records from the full training data (degrees, graphs it derives itself,
:meth:`~Recommender.register_graph`) as non-persistent buffers. Values
derived from fixed inputs (normalised operators, propagated features) are
cached by the graph, keyed by the tensors they came from. A model knows
nothing of batching, distributed training, schemas or files: training
objectives live in :mod:`pyg_brmrs.objectives`, ranking in
:mod:`pyg_brmrs.evaluation`.
"""
import inspect
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_brmrs.data.schema import (ITEM, ITEM_SIM, RATES, USER, USER_SIM,
                                   Schema, canonical, features, modalities,
                                   resolve_schema)
from pyg_brmrs.nn.graph import (
    FullGraphStats,
    OwnGraph,
    RecGraph,
    subgraph_ids,
)
from pyg_brmrs.nn.graph.adjacency import check_backend
from pyg_brmrs.nn.output import FUSED, RecOutput
from pyg_brmrs.utils.cache import KeyedCache
from pyg_brmrs.utils.checks import check_edge_index, check_ids, check_int
from pyg_brmrs.utils.topk import topk_items

__all__ = ['Recommender', 'RecOutput', 'FUSED', 'ego_regularization']

#: The homogeneous graphs of the data whose in-degrees
#: :meth:`Recommender.set_graph` records for mini-batches.
HOMOGENEOUS_TYPES = (ITEM_SIM, USER_SIM)


def _to_graph(module: 'Recommender', args, kwargs):
    r"""Forward pre-hook: ``model(data, users=...)`` with a
    :class:`HeteroData` becomes ``model.forward(model.graph(data,
    users))``."""
    if 'users' not in kwargs and not (args and isinstance(args[0],
                                                           HeteroData)):
        return None
    kwargs = dict(kwargs)
    users = kwargs.pop('users', None)
    if args and isinstance(args[0], HeteroData):
        return (module.graph(args[0], users), ) + tuple(args[1:]), kwargs
    if users is not None:
        raise ValueError("'users=' goes with a HeteroData input; a RecGraph "
                         "already fixes its output rows (Recommender.graph("
                         "data, users))")
    return tuple(args), kwargs


def _degree(index: Tensor, num: int) -> Tensor:
    ones = torch.ones(index.numel(), device=index.device)
    return torch.zeros(num, device=index.device).index_add_(0, index, ones)


class Recommender(torch.nn.Module):
    r"""Base class of the recommenders (see the module description for the
    contract).

    Subclasses implement :meth:`forward` over a
    :class:`~pyg_brmrs.nn.graph.RecGraph` and may override
    :meth:`set_graph` (to derive graphs from the full training data),
    :meth:`regularization` (the :math:`\lambda \lVert \Theta \rVert^2` term
    of a mini-batch), :meth:`auxiliary_loss` and :meth:`on_epoch_start`
    (per-epoch stochastic edits such as FREEDOM's edge pruning). Every
    recommender inherits :meth:`embed` (representations for inference) and
    :meth:`recommend` (top-:math:`k` item lists).

    .. code-block:: python

        class MF(Recommender):
            def __init__(self, num_users, num_items, dim=64):
                super().__init__(num_users, num_items)
                self.user = torch.nn.Embedding(num_users, dim)
                self.item = torch.nn.Embedding(num_items, dim)

            def forward(self, graph: RecGraph) -> RecOutput:
                return graph.output({'fused': graph.user_rows(self.user.weight)},
                                    {'fused': graph.item_rows(self.item.weight)})

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
    #: Whether ``model(data, users=ids)`` is allowed: the user outputs then
    #: hold those users' rows only (``user_n_id = users``), computed on the
    #: full graph at a lower cost (the graph's user–item operator returns
    #: those rows). Objectives pass a training batch's users when it is
    #: :obj:`True`.
    supports_user_subset: bool = False
    #: Whether :meth:`forward` runs on a mini-batch subgraph (a node's
    #: representation depends on its neighbourhood in the graphs it reads
    #: only). A model that couples every node (*e.g.* LGMRec's global
    #: hypergraph) sets it to :obj:`False`: a subgraph is then refused with
    #: an error that says so, and it trains on the full graph.
    supports_subgraph: bool = True
    #: The kernel of the graph operators (see
    #: :class:`~pyg_brmrs.nn.graph.Adjacency`).
    backend: str = 'auto'
    #: Whether the full graph's operators and derived values are cached.
    cached: bool = True

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
        # What set_graph records of the full training graph (not part of
        # the state dict):
        self.register_buffer('user_degree', None, persistent=False)
        self.register_buffer('item_degree', None, persistent=False)
        for edge_type in HOMOGENEOUS_TYPES:
            self.register_buffer(_in_degree_name(edge_type), None,
                                 persistent=False)
        self._own_types: Dict[str, str] = {}
        self._graph_cache = KeyedCache()
        self.register_forward_pre_hook(_to_graph, with_kwargs=True)

    def forward(self, graph: RecGraph) -> RecOutput:
        raise NotImplementedError

    # ------------------------------------------------------------------
    def graph(self, data: HeteroData,
              users: Optional[Tensor] = None) -> RecGraph:
        r"""The :class:`~pyg_brmrs.nn.graph.RecGraph` of :obj:`data` (the
        full graph, or a mini-batch subgraph when its node stores carry
        ``n_id``); ``model(data, users=...)`` calls it.

        Args:
            data (HeteroData): The input, in the model's schema.
            users (torch.Tensor, optional): Global user ids ``[B]``: the
                user outputs hold these users' rows only (full graph, and
                models with :attr:`supports_user_subset`).

        Raises:
            ValueError: for data of another size than the model's, a batch
                without the recorded full-graph degrees or for a model
                without :attr:`supports_subgraph`, ids out of range, or
                :obj:`users` where it is not supported.
        """
        data = self.schema.canonical(data)
        ids = subgraph_ids(data)
        if users is not None:
            if not self.supports_user_subset:
                raise ValueError(f"'{self.__class__.__name__}' does not "
                                 f"support 'users=' (its outputs cover all "
                                 f"users)")
            if ids is not None:
                raise ValueError("'users' cannot be given with a mini-batch "
                                 "subgraph (its user rows are its n_id)")
            users = check_ids(users, 'users', self.num_users)
        backend = check_backend(self.backend)
        if ids is None:
            self._check_counts(data)
            if self.user_degree is None:
                self.set_graph(data)
            return RecGraph(data, num_users=self.num_users,
                            num_items=self.num_items, users=users,
                            own=self.own_graphs(),
                            cache=self._graph_cache if self.cached else None,
                            backend=backend)
        if not self.supports_subgraph:
            raise ValueError(
                f"'{self.__class__.__name__}' computes every representation "
                f"from the whole graph, which a mini-batch subgraph (node "
                f"stores with 'n_id') does not hold: run it on the full "
                f"graph (TrainConfig(batching='full'))")
        user_n_id, item_n_id = ids
        return RecGraph(data, num_users=user_n_id.numel(),
                        num_items=item_n_id.numel(), user_n_id=user_n_id,
                        item_n_id=item_n_id,
                        stats=self._stats(user_n_id, item_n_id),
                        own=self.own_graphs(), backend=backend)

    def _check_counts(self, data: HeteroData) -> None:
        num_users, num_items = int(data[USER].num_nodes), \
            int(data[ITEM].num_nodes)
        if num_users != self.num_users or num_items != self.num_items:
            raise ValueError(f"'{self.__class__.__name__}' was built for "
                             f"{self.num_users} users and {self.num_items} "
                             f"items but the data has {num_users} users and "
                             f"{num_items} items")

    def _stats(self, user_n_id: Tensor, item_n_id: Tensor) -> FullGraphStats:
        if self.user_degree is None or self.item_degree is None:
            raise ValueError(
                f"'{self.__class__.__name__}' needs the global degrees of the "
                f"training graph for a mini-batch subgraph (the input's node "
                f"stores carry 'n_id'): build it with "
                f"{self.__class__.__name__}.from_data(full_data) or call "
                f"model.set_graph(full_data)")
        for name, ids, num in (('user', user_n_id, self.num_users),
                               ('item', item_n_id, self.num_items)):
            check_ids(ids, f"data['{name}'].n_id", num)
        in_degree = {}
        for edge_type in HOMOGENEOUS_TYPES:
            deg = getattr(self, _in_degree_name(edge_type))
            if deg is not None:
                in_degree[edge_type] = deg
        return FullGraphStats(self.user_degree, self.item_degree, in_degree)

    def set_graph(self, data: HeteroData,
                  schema: Optional[Schema] = None) -> 'Recommender':
        r"""Records what the model needs from the full training graph of
        :obj:`data`: the user and item degrees :math:`\deg(u) =
        |\mathcal{N}_u|`, :math:`\deg(i) = |\mathcal{N}_i|` and the
        in-degrees of the data's :math:`k`-NN graphs (for mini-batch
        subgraphs), as non-persistent buffers. Subclasses extend it to
        derive their own graphs (:meth:`register_graph`). ``from_data`` and
        the first full-graph forward call it. Returns the model."""
        if schema is not None:
            self.schema = resolve_schema(schema)
        data = self.schema.canonical(data)
        self._check_counts(data)
        edge_index = check_edge_index(
            data[RATES].edge_index, 'edge_index',
            num_nodes=(self.num_users, self.num_items),
            kinds=('user', 'item'))
        device = next(iter(self.parameters()), edge_index).device
        self.user_degree = _degree(edge_index[0], self.num_users).to(device)
        self.item_degree = _degree(edge_index[1], self.num_items).to(device)
        for edge_type in HOMOGENEOUS_TYPES:
            deg = None
            if edge_type in data.edge_types:
                num = self.num_users if edge_type[-1] == USER else \
                    self.num_items
                ei = check_edge_index(data[edge_type].edge_index,
                                      f'data{edge_type}.edge_index',
                                      num_nodes=num)
                deg = _degree(ei[1], num).to(device)
            setattr(self, _in_degree_name(edge_type), deg)
        return self

    def register_graph(self, name: str, node_type: str, edge_index: Tensor,
                       edge_weight: Optional[Tensor] = None) -> None:
        r"""Records a graph the model derived from the full training data
        (*e.g.* in :meth:`set_graph`), on global ids: ``[2, E]`` (source,
        target) edges between :obj:`node_type` nodes (:obj:`"user"` or
        :obj:`"item"`) with optional weights. The forward pass reads it as
        ``graph.own(name)``, restricted to a batch's nodes for a mini-batch
        subgraph. Kept as non-persistent buffers (they follow the model's
        device, and are not in the state dict)."""
        if node_type not in (USER, ITEM):
            raise ValueError(f"'node_type' must be 'user' or 'item' (got "
                             f"{node_type!r})")
        self.register_buffer(f'graph_{name}_edge_index', edge_index.long(),
                             persistent=False)
        self.register_buffer(f'graph_{name}_edge_weight', edge_weight,
                             persistent=False)
        self._own_types[name] = node_type
        self._graph_cache.clear()

    def own_graphs(self) -> Dict[str, OwnGraph]:
        r"""The graphs recorded by :meth:`register_graph`, name →
        :class:`~pyg_brmrs.nn.graph.OwnGraph`."""
        return {name: OwnGraph(node_type,
                               getattr(self, f'graph_{name}_edge_index'),
                               getattr(self, f'graph_{name}_edge_weight'))
                for name, node_type in self._own_types.items()}

    @classmethod
    def from_data(cls, data: HeteroData, schema: Optional[Schema] = None,
                  **kwargs) -> 'Recommender':
        r"""Builds the model for :obj:`data` (names given by :obj:`schema`,
        a :class:`~pyg_brmrs.data.Schema`, which the model keeps) and calls
        :meth:`set_graph` on it. The constructor receives the numbers of
        users and items, then, when it takes them, ``feature_dims`` (every
        modality of the data → its feature size) and, when it fine-tunes
        the features (``finetune_features``, given or by default),
        ``item_features`` (the data's features as the initial values);
        :obj:`kwargs` go to the constructor."""
        data = canonical(data, schema)
        params = inspect.signature(cls.__init__).parameters
        args = [int(data[USER].num_nodes), int(data[ITEM].num_nodes)]
        names = modalities(data)
        if 'feature_dims' in params:
            args.append({m: int(features(data, m).size(-1)) for m in names})
        if 'item_features' in params and 'item_features' not in kwargs:
            tune = params.get('finetune_features')
            default = False if tune is None else tune.default
            if kwargs.get('finetune_features', default):
                kwargs['item_features'] = {m: features(data, m)
                                           for m in names}
        return cls(*args, **kwargs).set_graph(data, schema)

    def clear_cache(self) -> None:
        r"""Drops the cached operators and derived values (rebuilt on next
        use)."""
        self._graph_cache.clear()

    def regularization(self, users: Tensor, pos_items: Tensor,
                       neg_items: Optional[Tensor],
                       out: Optional[RecOutput] = None) -> Tensor:
        r"""The squared :math:`L_2` norm of the free (ego) embeddings of a
        mini-batch, averaged over the batch:
        :math:`\frac{1}{2B}\sum_b (\lVert \mathbf{e}_{u_b} \rVert^2 +
        \lVert \mathbf{e}_{i^+_b} \rVert^2 + \lVert \mathbf{e}_{i^-_b}
        \rVert^2)`. :obj:`out` is the forward output of the same step (for
        models that regularise computed representations, *e.g.* VBPR);
        :obj:`neg_items` is :obj:`None` for a model trained without
        negatives (:meth:`positive_loss`). The default has no free
        embeddings and returns 0."""
        return users.new_zeros((), dtype=torch.float)

    def positive_loss(self, out: RecOutput, users: Tensor,
                      pos_items: Tensor) -> Dict[str, Tensor]:
        r"""The model's own loss terms on the positive pairs ``(users[b],
        pos_items[b])`` of a mini-batch (rows of :obj:`out`), already
        weighted, for models trained without negatives (*e.g.* BM3's
        bootstrap; :class:`~pyg_brmrs.objectives.NegativeFreeObjective`
        sums them). Such a model's :meth:`regularization` is called with
        ``neg_items=None``. Not implemented by default."""
        raise NotImplementedError(
            f"'{self.__class__.__name__}' defines no positive_loss(): it "
            f"trains with negatives (use BPRObjective)")

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

        A mini-batch subgraph (node stores with ``n_id``) is refused:
        recommendations rank every item of the full graph by global id, so
        pass the full data (the batch's local rows would silently be read
        as global ids).

        Returns:
            A long tensor ``[B, k]`` of item ids on the model's device. When
            :obj:`k` exceeds the number of items a user has not seen, the
            ranks past them hold :obj:`-1` (a user who has seen every item
            gets a row of :obj:`-1`): the ranking is
            :func:`pyg_brmrs.utils.topk.topk_items`, the same masked,
            chunked top-:math:`k` the evaluation uses.
        """
        k = check_int(k, 'k')
        if k > self.num_items:
            raise ValueError(f"'k' must be at most the number of items "
                             f"({self.num_items}) (got {k})")
        batch_size = check_int(batch_size, 'batch_size')
        users = _check_users(users, self.num_users)
        data = self.schema.canonical(data)
        if subgraph_ids(data) is not None:
            raise ValueError("recommend() ranks every item of the full graph "
                             "by global id: pass the full data, not a "
                             "mini-batch subgraph (its node stores carry "
                             "n_id, its rows are local)")
        out = self.embed(data)
        return topk_items(out.user_emb.detach(), out.item_emb.detach(),
                          users.to(out.item_emb.device), k,
                          train_edge_index=data[RATES].edge_index
                          if exclude_seen else None,
                          batch_size=batch_size)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items})')


def _in_degree_name(edge_type) -> str:
    return f'{edge_type[0]}_{edge_type[1]}_{edge_type[2]}_in_degree'


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
