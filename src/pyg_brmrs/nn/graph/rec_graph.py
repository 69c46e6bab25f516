r"""What a recommender's forward pass is handed: the rows it computes and the
graph operators it propagates over, for the full graph or a mini-batch."""
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.utils import subgraph

from pyg_brmrs.data.schema import ITEM, RATES, USER, features, modalities
from pyg_brmrs.nn.graph.adjacency import Adjacency
from pyg_brmrs.nn.graph.bipartite import BipartiteAdjacency
from pyg_brmrs.nn.graph.channels import Channel, propagate
from pyg_brmrs.nn.output import FUSED, RecOutput
from pyg_brmrs.utils.cache import KeyedCache, tensor_key
from pyg_brmrs.utils.checks import check_edge_index

EdgeType = Tuple[str, str, str]


@dataclass
class OwnGraph:
    r"""A graph a model derived from the full training data (*e.g.*
    FREEDOM's frozen item–item :math:`k`-NN graph), on global ids.

    Attributes:
        node_type (str): :obj:`"user"` or :obj:`"item"`.
        edge_index (torch.Tensor): ``[2, E]`` (source, target) global ids.
        edge_weight (torch.Tensor, optional): ``[E]``.
    """
    node_type: str
    edge_index: Tensor
    edge_weight: Optional[Tensor] = None


@dataclass
class FullGraphStats:
    r"""What a mini-batch operator needs from the full training graph: the
    user and item degrees of the interactions and the in-degree of every
    node in each homogeneous graph (edge type → ``[N]``), recorded by
    :meth:`~pyg_brmrs.nn.Recommender.set_graph`."""
    user_degree: Tensor
    item_degree: Tensor
    in_degree: Dict[EdgeType, Tensor] = field(default_factory=dict)


def horvitz_thompson(target: Tensor, full_degree: Tensor) -> Tensor:
    r"""Per edge, :math:`\deg(t) / \deg_b(t)` of its target :math:`t`
    (:obj:`target` ``[E_b]``, local ids): the node's in-degree in the full
    graph (:obj:`full_degree` ``[N_b]``, gathered by ``n_id``) over its
    in-degree among the batch's edges.

    Scaling a node's incoming messages by it turns the sum over the
    :math:`\deg_b(t)` edges present into the Horvitz–Thompson estimate of
    the sum over all :math:`\deg(t)` edges, unbiased when the present edges
    are a uniform sample of the node's edges (as PyG's neighbour sampler
    draws them), and exactly :math:`1` when all of them are present, so
    that a node whose whole neighbourhood is in the batch keeps its
    full-graph sum."""
    ones = torch.ones(target.numel(), device=target.device)
    present = torch.zeros(full_degree.numel(), device=target.device
                          ).index_add_(0, target, ones)
    scale = full_degree.float() / present.clamp(min=1)
    return scale[target]


class RecGraph:
    r"""The graph a :class:`~pyg_brmrs.nn.Recommender` computes on: which
    user and item rows, and the operators to propagate over them. A model's
    forward is written once against it; whether it runs on the full
    training graph or on a mini-batch subgraph, and how the operators are
    computed and cached, is decided here.

    :meth:`Recommender.graph <pyg_brmrs.nn.Recommender.graph>` builds it
    from a :class:`~torch_geometric.data.HeteroData` (``model(data)`` does
    so itself):

    * **the full graph**: the rows are all users and items (row = id); the
      operators are built once and cached while the same graph tensors are
      passed (transductive training), and so are the values derived from
      fixed inputs (:meth:`propagate`, :meth:`cached`). With
      :obj:`users` (global ids) the user–item operator returns those users'
      output rows only (see :class:`BipartiteAdjacency`).
    * **a mini-batch subgraph** (the node stores carry ``n_id``, the global
      ids of the batch's nodes, as PyG's loaders produce): the rows are the
      batch's nodes in its local order; the operators run over the batch's
      edges with the full graph's normalisation, and every node's incoming
      sum is scaled by :math:`\deg(v)/\deg_b(v)` (:func:`horvitz_thompson`),
      so a node whose neighbourhood lies in the batch gets exactly its
      full-graph representation and a uniformly sampled neighbourhood an
      unbiased estimate of it. Nothing is cached.

    A model reads its inputs through :meth:`user_rows`, :meth:`item_rows`,
    :meth:`node_rows` (rows of its own tables) and :meth:`features`; it
    propagates with :meth:`user_item`, :meth:`homogeneous` (the data's
    :math:`k`-NN graphs), :meth:`user_mean` and :meth:`own` (graphs it
    derived itself), or :meth:`propagate` for several channels at once; and
    returns :meth:`output`, which records the global ids of its rows.

    Attributes:
        data (HeteroData): The input, in the canonical names.
        num_users (int): User input rows (:math:`U`, or :math:`U_b`).
        num_items (int): Item input rows (:math:`I`, or :math:`I_b`).
        user_n_id (torch.Tensor, optional): Global id of every user row
            (:obj:`None`: the full graph, row = id).
        item_n_id (torch.Tensor, optional): The same for items.
        output_users (torch.Tensor, optional): Global ids of the user output
            rows when they are not the input rows (:obj:`users=`).
        backend (str): The kernel of the operators (see
            :class:`~pyg_brmrs.nn.graph.Adjacency`).
    """
    def __init__(self, data: HeteroData, *, num_users: int, num_items: int,
                 user_n_id: Optional[Tensor] = None,
                 item_n_id: Optional[Tensor] = None,
                 users: Optional[Tensor] = None,
                 stats: Optional[FullGraphStats] = None,
                 own: Optional[Mapping[str, OwnGraph]] = None,
                 cache: Optional[KeyedCache] = None, backend: str = 'auto'):
        self.data = data
        self.num_users, self.num_items = int(num_users), int(num_items)
        self.user_n_id, self.item_n_id = user_n_id, item_n_id
        self.output_users = users
        self.stats = stats
        self._own = dict(own or {})
        self.backend = backend
        self.is_batch = user_n_id is not None
        # full graph: the model's persistent cache (None: caching off);
        # a batch: a cache of this call only
        self._cache = cache if not self.is_batch else None
        self._local = KeyedCache()

    # ------------------------------------------------------------------
    # rows
    def user_rows(self, table: Tensor) -> Tensor:
        r"""The rows of a per-user table ``[U, *]`` for the user rows of this
        graph (the table itself for the full graph)."""
        if self.user_n_id is None:
            return table
        return table.index_select(0, self.user_n_id)

    def item_rows(self, table: Tensor) -> Tensor:
        r"""The rows of a per-item table ``[I, *]`` for the item rows."""
        if self.item_n_id is None:
            return table
        return table.index_select(0, self.item_n_id)

    def node_rows(self, table: Tensor, num_users: int) -> Tensor:
        r"""The rows of a users-first table ``[U + I, *]`` (:obj:`num_users`
        = :math:`U`) for the user rows followed by the item rows."""
        if self.user_n_id is None:
            return table
        return torch.cat([table.index_select(0, self.user_n_id),
                          table.index_select(0, num_users + self.item_n_id)])

    @property
    def modalities(self):
        r"""The modalities of the data's item features."""
        return modalities(self.data)

    def features(self, feature_dims: Mapping[str, int]) -> Dict[str, Tensor]:
        r"""The item features ``{m: [num_items, F_m]}`` of the modalities of
        :obj:`feature_dims` (modality → the size :math:`F_m` a model was
        built for) for the item rows (a loader gathers a batch's rows); see
        :func:`check_features`."""
        return check_features(self.data, feature_dims, self.num_items)

    # ------------------------------------------------------------------
    # caching
    def cached(self, name: str, key, build):
        r"""``build()``, cached under :obj:`name` for :obj:`key` while the
        model's cache holds it (full graph; for a batch, for this call
        only)."""
        if self._cache is None:
            return self._local.get(name, key, build)
        return self._cache.get(name, key, build)

    # ------------------------------------------------------------------
    # operators
    @property
    def edge_index(self) -> Tensor:
        r"""The user→item training edges of the rows ``[2, E]`` (local ids
        for a batch)."""
        return self.data[RATES].edge_index

    def user_item(self, edge_index: Optional[Tensor] = None,
                  dtype: torch.dtype = torch.float32) -> BipartiteAdjacency:
        r"""LightGCN's normalised user–item graph of the rows
        (:class:`~pyg_brmrs.nn.graph.BipartiteAdjacency`): of the training
        edges, or of :obj:`edge_index` (a subset of them, *e.g.* a pruned
        graph, with its own degrees; full graph only). For a batch the
        weights are :math:`1/\sqrt{\deg(u)\deg(i)}` with the full graph's
        degrees, times the Horvitz–Thompson factors. Its
        :meth:`~pyg_brmrs.nn.graph.BipartiteAdjacency.layer_mean` returns
        the :attr:`output_users` rows."""
        own_edges = edge_index is not None
        if own_edges and self.is_batch:
            raise ValueError("A mini-batch subgraph propagates over its own "
                             "edges; 'edge_index' is for the full graph")
        ei = self.edge_index if edge_index is None else edge_index

        def build():
            checked = check_edge_index(ei, 'edge_index',
                                       num_nodes=(self.num_users,
                                                  self.num_items),
                                       kinds=('user', 'item'))
            if self.is_batch:
                return BipartiteAdjacency(
                    checked, self.num_users, self.num_items,
                    self.stats.user_degree[self.user_n_id],
                    self.stats.item_degree[self.item_n_id], dtype,
                    self.backend)
            return BipartiteAdjacency(checked, self.num_users,
                                      self.num_items, dtype=dtype,
                                      backend=self.backend)

        name = 'user_item:edges' if own_edges else 'user_item'
        op = self.cached(name, (tensor_key(ei), dtype, self.backend),
                            build)
        return op.with_user_rows(self.output_users)

    def homogeneous(self, edge_type: EdgeType) -> Optional[Adjacency]:
        r"""The data's homogeneous graph :obj:`edge_type` (*e.g.*
        ``('item', 'similar', 'item')`` of
        :class:`~pyg_brmrs.transforms.HomogeneousKNNGraph`) as an operator
        on the rows of its node type, with its stored ``edge_weight``
        (ones without); :obj:`None` when the data has no such graph. For a
        batch the weights are scaled by the Horvitz–Thompson factors of the
        full graph's in-degrees.

        Raises:
            ValueError: if a batch holds the graph but the model recorded
                no full-graph in-degrees of it.
        """
        if edge_type not in self.data.edge_types:
            return None
        store = self.data[edge_type]
        num = self.num_users if edge_type[-1] == USER else self.num_items
        ei, ew = store.edge_index, store.get('edge_weight')
        key = (tensor_key(ei), tensor_key(ew), self.backend)

        def build():
            checked = check_edge_index(ei, f'data{edge_type}.edge_index',
                                       num_nodes=num, edge_weight=ew)
            weight = ew
            if self.is_batch:
                degree = self.stats.in_degree.get(edge_type)
                if degree is None:
                    raise ValueError(
                        f"The batch holds {edge_type} edges but the model "
                        f"has no full-graph degrees of them: call "
                        f"model.set_graph(full_data) with data that holds "
                        f"the {edge_type} graph")
                n_id = self.user_n_id if edge_type[-1] == USER else \
                    self.item_n_id
                scale = horvitz_thompson(checked[1], degree[n_id])
                weight = scale if ew is None else ew.float() * scale
            return Adjacency(checked, weight, (num, num), self.backend,
                             cache_key=None if self.is_batch else key)

        return self.cached('homogeneous:' + '/'.join(edge_type), key,
                              build)

    def user_mean(self) -> Adjacency:
        r"""The ``[U, I]`` operator of the users' mean over their training
        items, :math:`\frac{1}{\deg(u)}\sum_{i \in \mathcal{N}_u}`; for a
        batch, over the items present, :math:`\frac{1}{\deg_b(u)}
        \sum_{i \in \mathcal{N}_u \cap \mathcal{I}_b}` (the full mean
        scaled by its Horvitz–Thompson factor)."""
        ei = self.edge_index
        key = (tensor_key(ei), self.backend)

        def build():
            ones = torch.ones(ei.size(1), device=ei.device)
            deg = torch.zeros(self.num_users, device=ei.device).index_add_(
                0, ei[0], ones)
            w = 1.0 / deg[ei[0]].clamp(min=1)
            # target = user (row 0), source = item (row 1):
            return Adjacency(ei.flip(0), w, (self.num_users, self.num_items),
                             self.backend,
                             cache_key=None if self.is_batch else key)

        return self.cached('user_mean', key, build)

    def user_sum(self) -> Adjacency:
        r"""The ``[U, I]`` operator of the users' sum over their training
        items, :math:`\sum_{i \in \mathcal{N}_u}` (the raw interaction
        matrix :math:`\mathbf{R}`); for a batch, the sum over the items
        present scaled by :math:`\deg(u)/\deg_b(u)`."""
        ei = self.edge_index
        key = (tensor_key(ei), self.backend)

        def build():
            ones = torch.ones(ei.size(1), device=ei.device)
            weight = ones
            if self.is_batch:
                weight = horvitz_thompson(ei[0], self.stats.user_degree[
                    self.user_n_id])
            return Adjacency(ei.flip(0), weight,
                             (self.num_users, self.num_items), self.backend,
                             cache_key=None if self.is_batch else key)

        return self.cached('user_sum', key, build)

    def own(self, name: str) -> Adjacency:
        r"""The operator of the model's own graph :obj:`name` (recorded by
        :meth:`~pyg_brmrs.nn.Recommender.register_graph`) on the rows of
        its node type; for a batch, its edges among the batch's nodes,
        scaled by the Horvitz–Thompson factors of the full graph's
        in-degrees.

        Raises:
            KeyError: if the model holds no graph of that name.
        """
        if name not in self._own:
            raise KeyError(f"The model holds no graph '{name}' (it holds "
                           f"{sorted(self._own)}); record it in set_graph "
                           f"with register_graph")
        g = self._own[name]
        num = self.num_users if g.node_type == USER else self.num_items
        key = (tensor_key(g.edge_index), tensor_key(g.edge_weight),
               self.backend)

        def build():
            if not self.is_batch:
                return Adjacency(g.edge_index, g.edge_weight, (num, num),
                                 self.backend, cache_key=key)
            n_id = self.user_n_id if g.node_type == USER else self.item_n_id
            total = self.num_users_global if g.node_type == USER else \
                self.num_items_global
            ones = torch.ones(g.edge_index.size(1),
                              device=g.edge_index.device)
            degree = torch.zeros(total, device=ones.device).index_add_(
                0, g.edge_index[1], ones)
            ei, ew = subgraph(n_id, g.edge_index, g.edge_weight,
                              relabel_nodes=True, num_nodes=total)
            scale = horvitz_thompson(ei[1], degree[n_id])
            weight = scale if ew is None else ew * scale
            return Adjacency(ei, weight, (num, num), self.backend)

        return self.cached('own:' + name, key, build)

    @property
    def num_users_global(self) -> int:
        return int(self.stats.user_degree.numel()) if self.is_batch else \
            self.num_users

    @property
    def num_items_global(self) -> int:
        return int(self.stats.item_degree.numel()) if self.is_batch else \
            self.num_items

    def propagate(self, op: Optional[Adjacency], channels: Sequence[Channel],
                  num_layers: int, *, last: bool = False,
                  scale: Optional[float] = None, name: str = '') -> Tensor:
        r"""The ``[N, C, d]`` channels propagated over :obj:`op` (an
        operator of this graph, or :obj:`None` for none), see
        :func:`pyg_brmrs.nn.graph.propagate`: tensor channels in one
        product per layer, :class:`~pyg_brmrs.nn.graph.Affine` projections
        of fixed inputs from their propagated inputs, cached for the full
        graph (:obj:`name` tells the caches of several calls apart)."""
        def cache(slot, key, build):
            return self.cached(f'{name}/{slot}', key, build)

        full = not self.is_batch and self._cache is not None
        return propagate(op, channels, num_layers, last=last, scale=scale,
                         cache=cache if full else None,
                         cache_key=None if op is None else op.cache_key)

    # ------------------------------------------------------------------
    def output(self, user: Mapping[str, Tensor], item: Mapping[str, Tensor],
               ranking_branch: str = FUSED,
               extras: Optional[Mapping[str, Tensor]] = None) -> RecOutput:
        r"""The :class:`~pyg_brmrs.nn.RecOutput` of the user rows (or
        :attr:`output_users`) and item rows, with their global ids.

        Raises:
            ValueError: if a branch has another number of rows.
        """
        out_users = self.output_users if self.output_users is not None \
            else self.user_n_id
        num_u = self.num_users if out_users is None else out_users.numel()
        for side, reps, num in (('user', user, num_u),
                                ('item', item, self.num_items)):
            for b, t in reps.items():
                if t.size(0) != num:
                    raise ValueError(f"{side} branch '{b}' has {t.size(0)} "
                                     f"rows but the graph has {num} {side} "
                                     f"output rows")
        return RecOutput(dict(user), dict(item), ranking_branch,
                         dict(extras or {}), user_n_id=out_users,
                         item_n_id=self.item_n_id)

    def __repr__(self) -> str:
        kind = 'batch' if self.is_batch else 'full'
        return (f'{self.__class__.__name__}({kind}, users={self.num_users}, '
                f'items={self.num_items}, backend={self.backend})')


def check_features(data: HeteroData, feature_dims: Mapping[str, int],
                   num_items: int) -> Dict[str, Tensor]:
    r"""The item features ``{m: [num_items, F_m]}`` of :obj:`data` for the
    modalities of :obj:`feature_dims` (modality → :math:`F_m`).

    Raises:
        ValueError: if the data lacks a modality or its features have
            another shape.
    """
    have = modalities(data)
    missing = [m for m in feature_dims if m not in have]
    if missing:
        raise ValueError(f"The data lacks the modalities {missing} this "
                         f"model was built for (it has {have})")
    out = {}
    for m, dim in feature_dims.items():
        x = features(data, m)
        if x.dim() != 2 or tuple(x.shape) != (num_items, dim):
            raise ValueError(f"Features of modality '{m}' must have shape "
                             f"[{num_items}, {dim}] (got {tuple(x.shape)})")
        out[m] = x
    return out


def subgraph_ids(data: HeteroData) -> Optional[Tuple[Tensor, Tensor]]:
    r"""``(user n_id, item n_id)`` of a mini-batch subgraph, :obj:`None`
    when the input is the full graph (neither node store carries
    ``n_id``).

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
