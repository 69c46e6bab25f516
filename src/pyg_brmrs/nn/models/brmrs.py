import copy
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_brmrs.data.schema import (
    ITEM,
    ITEM_SIM,
    RATES,
    USER_SIM,
    Schema,
    canonical,
    features,
    modalities,
)
from pyg_brmrs.nn.base import (
    FUSED,
    Recommender,
    RecOutput,
    ego_regularization,
    subgraph_ids,
)
from pyg_brmrs.nn.conv import MultiModalLGConv, layer_mean
from pyg_brmrs.nn.fusion import Fusion, resolve_fusion
from pyg_brmrs.nn.models._common import UserItemGraph
from pyg_brmrs.nn.models._common import item_features as check_item_features
from pyg_brmrs.nn.models._common import (
    operator_layer_mean,
    subgraph_homogeneous,
    subgraph_ui_operator,
    subgraph_user_mean,
    trainable_features,
)
from pyg_brmrs.nn.models._projection import (
    extend_with_column,
    stacked_affine,
)
from pyg_brmrs.utils.cache import KeyedCache, tensor_key
from pyg_brmrs.utils.checks import check_ids, is_compiling
from pyg_brmrs.utils.sparse import (
    BipartiteAdjacency,
    CSRAdjacency,
    normalize_rows,
)

ID_MODES = ('add', 'concat', 'none')
USER_MODES = ('profile', 'embedding')

# Cost of one stored entry of a sparse-dense product relative to one dense
# multiply-add (a sparse entry is an indirect, cache-unfriendly load, a dense
# multiply-add a vectorised one); decides whether a user modality channel is
# propagated once on the raw features (see `_static_user`).
SPARSE_COST = 8


HOMOGENEOUS_MODES = ('mean', 'last')


class BRMRS(Recommender):
    r"""The BR-MRS encoder: multimodal LightGCN channels over the user–item
    graph, preceded by propagation over the item–item and user–user graphs
    of :class:`~pyg_brmrs.transforms.HomogeneousKNNGraph` (REARM backbone).

    **The defaults are the paper's model**: every unimodal branch comes from
    its modality alone (:obj:`id_mode="none"`: no ID embedding table;
    :obj:`user_mode="embedding"`: a free user embedding per modality) and
    the fusion is :obj:`"mean"`, whose score
    :math:`\langle \bar{\mathbf{p}}_u, \bar{\mathbf{q}}_i \rangle =
    \frac{1}{M^2} \sum_{m, m'} \langle \mathbf{p}^{(m)}_u,
    \mathbf{q}^{(m')}_i \rangle` holds cross-modal terms and is therefore
    not the sum of the unimodal scores. The tuned variant (recipe
    ``"brmrs"``) departs from it on purpose: :obj:`id_mode="concat"` (a
    shared ID embedding in every unimodal branch, so that
    :math:`s_m = s_{\mathrm{ID}} + s^{\mathrm{mod}}_m`),
    :obj:`user_mode="profile"` and :obj:`fusion="concat"` (fused score =
    sum of the branch scores); its unimodal scores are then largely ID
    scores, so CHNS and the synergy loss no longer act on
    modality-specific scores as the method intends.

    With modalities :math:`m = 1, \dots, M`, item features
    :math:`\mathbf{x}^{(m)}_i \in \mathbb{R}^{F_m}`, free ID embeddings
    :math:`\mathbf{e}_u, \mathbf{e}_i \in \mathbb{R}^d`, and the training
    items :math:`\mathcal{N}_u` of user :math:`u`:

    1. **Channels.** Channel 0 holds the ID embeddings (unless
       :obj:`id_mode="none"`); channel :math:`m` holds
       :math:`\mathbf{h}^{(m)}_i = \mathbf{W}_m \mathbf{x}^{(m)}_i +
       \mathbf{b}_m` for items and, for users, either the projected
       modality profile :math:`\mathbf{h}^{(m)}_u = \mathbf{W}'_m
       \frac{1}{|\mathcal{N}_u|} \sum_{i \in \mathcal{N}_u}
       \mathbf{x}^{(m)}_i + \mathbf{b}'_m` (:obj:`user_mode="profile"`) or
       a free per-modality user embedding :math:`\mathbf{e}^{(m)}_u`
       (:obj:`user_mode="embedding"`).
    2. **Homogeneous graphs.** The item channels are propagated
       :obj:`num_item_layers` times over the item–item graph,
       :math:`\mathbf{H}_I \leftarrow \mathbf{S}_I \mathbf{H}_I`, the user
       channels over the user–user graph; the result is the mean over the
       layers (:obj:`homogeneous="mean"`) or the last layer
       (:obj:`"last"`, as REARM), then every channel is
       :math:`L_2`-normalised per node (:obj:`normalize=True`).
       Propagation is linear, so a feature channel is propagated once, on
       the raw features, when the features are fixed:
       :math:`\mathbf{S}(\mathbf{X}\mathbf{W}^{\top} +
       \mathbf{1}\mathbf{b}^{\top}) = (\mathbf{S}\mathbf{X})
       \mathbf{W}^{\top} + (\mathbf{S}\mathbf{1})\mathbf{b}^{\top}`
       (for items always; for users when the ``[U, F_m]`` propagated
       profiles are cheaper to project than the projected profiles are to
       propagate at every step). The result is the same up to float
       rounding.
    3. **LightGCN.** All :math:`1 + M` channels are propagated together over
       the symmetric-normalised user–item graph with
       :class:`~pyg_brmrs.nn.MultiModalLGConv` for :obj:`num_layers` layers
       and averaged over layers :math:`0..L`, giving :math:`\mathbf{z}^{(c)}`.
       With :obj:`normalize=True` the layer means' constant factors cost
       no pass of their own: the homogeneous mean's :math:`1/(L+1)` is
       dropped (the normalisation removes it) and the user–item mean's is
       folded into the normalisation's per-row divisor, the same result up
       to float rounding.
    4. **Branches.** With :obj:`id_mode="none"` the unimodal
       representations are the propagated modality channels,
       :math:`\mathbf{q}^{(m)}_i = \mathbf{z}^{(m)}_i`,
       :math:`\mathbf{p}^{(m)}_u = \mathbf{z}^{(m)}_u`. Otherwise they
       combine the modality channel with the shared ID channel,
       :math:`\mathbf{q}^{(m)}_i = [\mathbf{z}^{(0)}_i \,\|\,
       \mathbf{z}^{(m)}_i]` (:obj:`id_mode="concat"`, so that
       :math:`s_m(u, i) = \langle \mathbf{z}^{(0)}_u, \mathbf{z}^{(0)}_i
       \rangle + \langle \mathbf{z}^{(m)}_u, \mathbf{z}^{(m)}_i \rangle`:
       a collaborative term plus a modality term, with no cross terms;
       :obj:`"add"` uses :math:`\mathbf{z}^{(m)}_i + \mathbf{z}^{(0)}_i`),
       likewise
       :math:`\mathbf{p}^{(m)}_u`; the fused
       one is :math:`\mathbf{q}^{(f)}_i = \varphi(\mathbf{q}^{(1..M)}_i)`
       with a pluggable :class:`~pyg_brmrs.nn.fusion.Fusion` (separate
       instances for users and items). Scores are
       :math:`s_b(u, i) = \langle \mathbf{p}^{(b)}_u, \mathbf{q}^{(b)}_i
       \rangle` for :math:`b \in \{1..M, f\}`; items are ranked by
       :math:`s_f`.

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        feature_dims (Mapping[str, int]): modality name → feature size
            :math:`F_m` (use :meth:`from_data` to read them off a dataset).
        embedding_dim (int, optional): The size :math:`d` of every channel.
            (default: :obj:`64`)
        num_layers (int, optional): LightGCN layers :math:`L` on the
            user–item graph. (default: :obj:`2`)
        num_item_layers (int, optional): Layers on the item–item graph
            (:obj:`0` skips it). (default: :obj:`1`)
        num_user_layers (int, optional): Layers on the user–user graph
            (:obj:`0` skips it). (default: :obj:`1`)
        fusion (str or Fusion, optional): :obj:`"mean"`, :obj:`"concat"`,
            :obj:`"gated"`, :obj:`"attention"`, :obj:`"mlp"` or a
            :class:`Fusion` module. (default: :obj:`"mean"`)
        id_mode (str, optional): How the shared ID channel enters the
            unimodal branches: :obj:`"none"` (no ID embedding table at all:
            each unimodal branch comes from its modality alone, as the
            paper writes it), :obj:`"concat"` (branches of size :math:`2d`)
            or :obj:`"add"`. (default: :obj:`"none"`)
        user_mode (str, optional): The users' modality channels:
            :obj:`"embedding"` (a free embedding per user and modality,
            ``[U, M, d]``, as the paper writes it) or :obj:`"profile"`
            (projected mean features of the training items).
            (default: :obj:`"embedding"`)
        homogeneous (str, optional): :obj:`"mean"` or :obj:`"last"`.
            (default: :obj:`"mean"`)
        normalize (bool, optional): :math:`L_2`-normalise every channel
            before the LightGCN layers. (default: :obj:`True`)
        finetune_features (bool, optional): Make the raw item features
            trainable parameters, initialised from :obj:`item_features`.
            (default: :obj:`False`)
        item_features (Mapping[str, torch.Tensor], optional): The initial
            item features when :obj:`finetune_features=True` (filled in by
            :meth:`from_data`). (default: :obj:`None`)
        backend (str, optional): Sparse backend of
            :class:`~pyg_brmrs.nn.MultiModalLGConv`. (default: :obj:`"auto"`)
        projection_dtype (torch.dtype, optional): Run the feature projections
            in this dtype (*e.g.* :obj:`torch.bfloat16`, which CPUs with AMX
            and tensor-core GPUs multiply natively, at 8 mantissa bits); the
            result is cast back to float32. The features are cast once and
            cached. (default: :obj:`None`, float32)
        edge_dropout (float, optional): FREEDOM's degree-sensitive pruning
            of the user–item graph seen by the LightGCN layers during
            training (keep :math:`\lfloor (1-p)|\mathcal{E}| \rfloor` edges,
            drawn with probability :math:`\propto 1/\sqrt{\deg(u)\deg(i)}`,
            redrawn at every :meth:`on_epoch_start`); evaluation, the user
            profiles and the kNN graphs always use the full training graph.
            (default: :obj:`0.0`, off)
        cached (bool, optional): Cache the normalised graphs while the same
            graph tensors are passed (transductive training).
            (default: :obj:`True`)

    **Mini-batch subgraphs.** When the user and item stores carry ``n_id``
    (global ids), the free embeddings (and fine-tuned features) are gathered
    by ``n_id``, the item features are the batch's rows, and every step
    above runs on the batch's edges only: the item–item and user–user
    graphs with their stored ``edge_weight`` (already normalised by the
    transform), the users' profiles as
    :math:`\frac{1}{\deg_b(u)}\sum_{i \in \mathcal{N}_u \cap
    \mathcal{I}_b} \mathbf{x}^{(m)}_i` and the user–item layers with
    :math:`1/\sqrt{\deg(u)\deg(i)}`, :math:`\deg` the degrees of the full
    training graph (:meth:`set_graph`, called by :meth:`from_data`). In
    every graph a node's incoming sum is scaled by
    :math:`\deg(v)/\deg_b(v)`, its in-degree in the full graph over that
    among the batch's edges: an unbiased estimate of the full sum when the
    batch holds a uniform sample of the node's edges (PyG's neighbour
    sampler), and a factor :math:`1` when it holds all of them. The user–item edges are used as given
    (:obj:`edge_dropout` applies to full-graph training only) and nothing
    is cached. A node whose :math:`L`-hop user–item neighbourhood lies in
    the batch together with the homogeneous-graph (and, for profiles,
    user–item) neighbours of those nodes gets its full-graph
    representation, up to float rounding.

    Shapes:
        - **input:** a :class:`~torch_geometric.data.HeteroData` with
          ``data['item'][f'x_{m}']`` for every modality, the training edges
          ``data['user', 'rates', 'item'].edge_index`` and (optionally) the
          ``('item', 'similar', 'item')`` / ``('user', 'similar', 'user')``
          graphs; or a mini-batch subgraph of it (``n_id`` on the node
          stores, local edges), whose outputs are the batch's
          :math:`U_b` / :math:`I_b` rows in its local order.
        - **output:** :class:`~pyg_brmrs.nn.RecOutput` with branches
          ``[*modalities, "fused"]`` (a unimodal branch is ``[N, 2d]`` with
          :obj:`id_mode="concat"`, ``[N, d]`` otherwise; the fused one is
          whatever :obj:`fusion` makes of them); ``extras`` holds the propagated
          channels ``"user_channels"`` ``[U, C, d]`` and ``"item_channels"``
          ``[I, C, d]`` (channel 0 = ID when :obj:`id_mode != "none"`).
    """
    graph_edge_types = (ITEM_SIM, USER_SIM)

    def __init__(
        self,
        num_users: int,
        num_items: int,
        feature_dims: Mapping[str, int],
        embedding_dim: int = 64,
        num_layers: int = 2,
        num_item_layers: int = 1,
        num_user_layers: int = 1,
        fusion: Union[str, Fusion] = 'mean',
        id_mode: str = 'none',
        user_mode: str = 'embedding',
        homogeneous: str = 'mean',
        normalize: bool = True,
        finetune_features: bool = False,
        projection_dtype: Optional[torch.dtype] = None,
        item_features: Optional[Mapping[str, Tensor]] = None,
        backend: str = 'auto',
        edge_dropout: float = 0.0,
        cached: bool = True,
    ):
        super().__init__(num_users, num_items)
        if len(feature_dims) < 1:
            raise ValueError("'feature_dims' must name at least one modality")
        for name, dim in feature_dims.items():
            if not isinstance(dim, int) or dim < 1:
                raise ValueError(f"Feature size of modality '{name}' must be a "
                                 f"positive int (got {dim!r})")
        if id_mode not in ID_MODES:
            raise ValueError(f"Unknown id_mode '{id_mode}' (choose from "
                             f"{list(ID_MODES)})")
        if user_mode not in USER_MODES:
            raise ValueError(f"Unknown user_mode '{user_mode}' (choose from "
                             f"{list(USER_MODES)})")
        if homogeneous not in HOMOGENEOUS_MODES:
            raise ValueError(f"Unknown homogeneous mode '{homogeneous}' "
                             f"(choose from {list(HOMOGENEOUS_MODES)})")
        for name, value in [('embedding_dim', embedding_dim),
                            ('num_layers', num_layers),
                            ('num_item_layers', num_item_layers),
                            ('num_user_layers', num_user_layers)]:
            if value < (1 if name == 'embedding_dim' else 0):
                raise ValueError(f"'{name}' must be non-negative (got "
                                 f"{value})")

        self.modalities: List[str] = sorted(feature_dims)
        self.feature_dims = {m: int(feature_dims[m]) for m in self.modalities}
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.num_item_layers = num_item_layers
        self.num_user_layers = num_user_layers
        self.id_mode = id_mode
        self.user_mode = user_mode
        self.homogeneous = homogeneous
        self.normalize = normalize
        self.finetune_features = finetune_features
        if isinstance(projection_dtype, str):
            projection_dtype = getattr(torch, projection_dtype, None)
        if projection_dtype is not None and not (
                isinstance(projection_dtype, torch.dtype)
                and projection_dtype.is_floating_point):
            raise ValueError(f"'projection_dtype' must be a floating torch "
                             f"dtype (got {projection_dtype!r})")
        self.projection_dtype = projection_dtype

        d = embedding_dim
        if id_mode != 'none':
            self.user_embedding = torch.nn.Embedding(num_users, d)
            self.item_embedding = torch.nn.Embedding(num_items, d)
        # One projection per modality: rows [:d] for items and, with user
        # profiles, rows [d:] for users ([2d, F_m], or [d, F_m]).
        width = 2 * d if user_mode == 'profile' else d
        self.proj = torch.nn.ModuleDict({
            m: torch.nn.Linear(self.feature_dims[m], width)
            for m in self.modalities
        })
        if user_mode == 'embedding':
            self.user_modality_embedding = torch.nn.Parameter(
                torch.empty(num_users, len(self.modalities), d))
        self.item_features = torch.nn.ParameterDict()
        if finetune_features:
            self.item_features = trainable_features(
                item_features, self.feature_dims, num_items, 'BRMRS')

        branch_dim = 2 * d if id_mode == 'concat' else d
        self.user_fusion = resolve_fusion(fusion, len(self.modalities),
                                          branch_dim)
        self.item_fusion = (copy.deepcopy(self.user_fusion) if isinstance(
            fusion, Fusion) else resolve_fusion(fusion, len(self.modalities),
                                                branch_dim))

        self.ui_conv = MultiModalLGConv(normalize=True, cached=cached,
                                        backend=backend)
        self.ii_conv = MultiModalLGConv(normalize=False, cached=cached,
                                        backend=backend)
        self.uu_conv = MultiModalLGConv(normalize=False, cached=cached,
                                        backend=backend)
        self.cached = cached
        self.ui_graph = UserItemGraph(num_users, num_items, edge_dropout,
                                      cached=cached)
        # in-degrees of the homogeneous graphs, for subgraph batches (set by
        # `set_graph`; not part of the state dict):
        self.register_buffer('item_sim_degree', None, persistent=False)
        self.register_buffer('user_sim_degree', None, persistent=False)
        self.edge_dropout = self.ui_graph.edge_dropout
        self._cache = KeyedCache()
        self.reset_parameters()

    @classmethod
    def from_data(cls, data: HeteroData, schema: Optional[Schema] = None,
                  **kwargs) -> 'BRMRS':
        r"""Builds the model with the sizes and modalities of :obj:`data`
        (names given by :obj:`schema`, a :class:`~pyg_brmrs.data.Schema`)
        and records its degrees for subgraph batches."""
        data = canonical(data, schema)
        dims = {m: int(features(data, m).size(-1)) for m in modalities(data)}
        if kwargs.get('finetune_features') and 'item_features' not in kwargs:
            kwargs['item_features'] = {
                m: features(data, m)
                for m in modalities(data)
            }
        return cls(int(data['user'].num_nodes), int(data[ITEM].num_nodes),
                   dims, **kwargs)._from_data(data, schema)

    def set_graph(self, data: HeteroData,
                  schema: Optional[Schema] = None) -> 'BRMRS':
        r"""Records the global user–item degrees (see
        :meth:`~pyg_brmrs.nn.Recommender.set_graph`) and the in-degrees of
        the item–item and user–user graphs of :obj:`data` (where it holds
        them), which subgraph batches use to scale sampled neighbourhoods
        (non-persistent buffers :attr:`item_sim_degree`,
        :attr:`user_sim_degree`)."""
        super().set_graph(data, schema)
        data = self.schema.canonical(data)
        device = self.user_degree.device
        for edge_type, attr, num in ((ITEM_SIM, 'item_sim_degree',
                                      self.num_items),
                                     (USER_SIM, 'user_sim_degree',
                                      self.num_users)):
            deg = None
            if edge_type in data.edge_types:
                dst = data[edge_type].edge_index[1]
                deg = torch.bincount(dst, minlength=num).float().to(device)
            setattr(self, attr, deg)
        return self

    def _sim_degree(self, edge_type, n_id: Tensor) -> Optional[Tensor]:
        deg = getattr(self, 'item_sim_degree' if edge_type == ITEM_SIM else
                      'user_sim_degree', None)
        return None if deg is None else deg[n_id]

    @property
    def num_channels(self) -> int:
        return len(self.modalities) + (0 if self.id_mode == 'none' else 1)

    @property
    def branch_names(self) -> List[str]:
        return self.modalities + [FUSED]

    def reset_parameters(self):
        if self.id_mode != 'none':
            torch.nn.init.normal_(self.user_embedding.weight, std=0.1)
            torch.nn.init.normal_(self.item_embedding.weight, std=0.1)
        if self.user_mode == 'embedding':
            torch.nn.init.normal_(self.user_modality_embedding, std=0.1)
        for lin in self.proj.values():
            torch.nn.init.xavier_normal_(lin.weight)
            torch.nn.init.zeros_(lin.bias)
        self.user_fusion.reset_parameters()
        self.item_fusion.reset_parameters()
        for conv in (self.ui_conv, self.ii_conv, self.uu_conv):
            conv.reset_parameters()
        self._cache.clear()
        self.ui_graph.clear()

    # ------------------------------------------------------------------
    def _cached(self, name: str, key, build):
        return self._cache.get(name, key, build, enabled=self.cached)

    def _item_features(self, data: HeteroData) -> Dict[str, Tensor]:
        feats = check_item_features(data, self.feature_dims, self.num_items)
        if self.finetune_features:
            return dict(self.item_features.items())
        return feats

    def _project(self, x: Tensor, weight: Tensor, key: str) -> Tensor:
        r"""``x @ weight.T`` in :obj:`projection_dtype` (the cast of a fixed
        :obj:`x` is cached under :obj:`key`)."""
        dtype = self.projection_dtype
        if dtype is None or dtype == weight.dtype:
            return F.linear(x.to(weight.dtype), weight)
        if self.finetune_features:
            xc = x.to(dtype)
        else:
            xc = self._cached(f'cast_{key}', (tensor_key(x), dtype),
                              lambda: x.detach().to(dtype))
        return F.linear(xc, weight.to(dtype)).to(weight.dtype)

    def _static_projection(self, entries: List[Tuple[str, Tensor, Tensor,
                                                     Tensor]]) -> Tensor:
        r"""The ``[N, S, d]`` channels :math:`\tilde{\mathbf{X}}_j
        \mathbf{W}_j^{\top} + \tilde{\mathbf{1}}_j \mathbf{b}_j^{\top}`
        of precomputed inputs, given as ``(key, [X | 1~], W, b)`` entries
        (:func:`stacked_affine`: the bias rides on the propagated ones
        column; in :obj:`projection_dtype` one product per entry)."""
        dtype = self.projection_dtype
        weight = entries[0][2]
        if dtype is None or dtype == weight.dtype:
            return stacked_affine([e[1] for e in entries],
                                  [e[2] for e in entries],
                                  [e[3] for e in entries])
        return torch.stack([
            self._project(x, torch.cat([w, b.unsqueeze(1)], dim=1), key)
            for key, x, w, b in entries
        ], dim=1)

    def _item_projection(self, m: str) -> Tuple[Tensor, Tensor]:
        r"""The item rows ``[:d]`` of modality :obj:`m`'s projection
        (weight, bias); the whole parameters, not slices of them, when the
        projection has no user rows (no slicing node in the backward pass,
        which would allocate and copy a full-size gradient)."""
        lin = self.proj[m]
        d = self.embedding_dim
        if lin.out_features == d:
            return lin.weight, lin.bias
        return lin.weight[:d], lin.bias[:d]

    def _mean_operator(self, train_ei: Tensor) -> CSRAdjacency:
        def build():
            deg = torch.bincount(train_ei[0], minlength=self.num_users)
            w = 1.0 / deg[train_ei[0]].clamp(min=1).float()
            # target = user (row 0), source = item (row 1):
            return CSRAdjacency(train_ei.flip(0), w,
                                (self.num_users, self.num_items))

        return self._cached('user_mean', tensor_key(train_ei), build)

    def on_epoch_start(self, epoch: int,
                       generator: Optional[torch.Generator] = None) -> None:
        r"""Requests a new pruned user–item graph (with
        :obj:`edge_dropout > 0`), drawn with :obj:`generator` by the next
        training-mode :meth:`forward`."""
        self.ui_graph.redraw(generator)

    def _homogeneous(self, x: Tensor, data: HeteroData, edge_type,
                     num_layers: int, conv: MultiModalLGConv,
                     scale: Optional[float] = None) -> Tensor:
        if num_layers == 0 or edge_type not in data.edge_types:
            return x
        store = data[edge_type]
        last = self.homogeneous == 'last'
        return layer_mean(conv, x, store.edge_index, store.get('edge_weight'),
                          num_layers, last=last,
                          scale=None if last else scale)

    def _graph_key(self, data: HeteroData, edge_type) -> Tuple:
        if edge_type not in data.edge_types:
            return (None, )
        store = data[edge_type]
        return (tensor_key(store.edge_index),
                tensor_key(store.get('edge_weight')))

    def _static_item(self, data: HeteroData,
                     feats: Dict[str, Tensor]) -> Dict[str, Tensor]:
        r"""Per modality, the item features propagated over the item–item
        graph next to the propagated all-ones column, ``[I, F_m + 1]``
        (computed once while the features and the graph stay the same)."""
        key = (self._graph_key(data, ITEM_SIM),
               tuple(tensor_key(feats[m]) for m in self.modalities))

        def build():
            with torch.no_grad():
                first = feats[self.modalities[0]]
                ones = first.new_ones((self.num_items, 1), dtype=torch.float)
                x = torch.cat([feats[m].float() for m in self.modalities] +
                              [ones], dim=1)
                h = self._homogeneous(x, data, ITEM_SIM,
                                      self.num_item_layers, self.ii_conv)
                parts = h.split([self.feature_dims[m] for m in
                                 self.modalities] + [1], dim=1)
            return {m: extend_with_column(parts[j], parts[-1])
                    for j, m in enumerate(self.modalities)}

        return self._cached('static_item', key, build)

    def _static_user(self, data: HeteroData, feats: Dict[str, Tensor],
                     train_ei: Tensor) -> Dict[str, Tensor]:
        r"""Per modality whose profile is cheaper to propagate once than at
        every step, ``[U, F_m + 1]``: the users' mean training-item
        features next to the all-ones column, propagated over the user–user
        graph. A modality is precomputed when :math:`U F_m \le
        c\,(\mathrm{nnz}(\mathbf{M}) + L_U \mathrm{nnz}(\mathbf{S}_U)) +
        I F_m` (the sparse work it saves, at a cost :math:`c` per stored
        entry, plus the user half of the item projection)."""
        layers = self.num_user_layers if USER_SIM in data.edge_types else 0
        nnz_s = data[USER_SIM].edge_index.size(1) if layers else 0
        sparse = SPARSE_COST * (train_ei.size(1) + layers * nnz_s)
        chosen = [m for m in self.modalities
                  if self.num_users * self.feature_dims[m] <=
                  sparse + self.num_items * self.feature_dims[m]]
        if not chosen:
            return {}
        key = (self._graph_key(data, USER_SIM), tensor_key(train_ei),
               tuple(tensor_key(feats[m]) for m in chosen))
        mean_op = self._mean_operator(train_ei)

        def build():
            with torch.no_grad():
                ones = feats[chosen[0]].new_ones((self.num_users, 1),
                                                 dtype=torch.float)
                x = torch.cat([mean_op.matmul(feats[m].float())
                               for m in chosen] + [ones], dim=1)
                h = self._homogeneous(x, data, USER_SIM,
                                      self.num_user_layers, self.uu_conv)
                parts = h.split([self.feature_dims[m] for m in chosen] + [1],
                                dim=1)
            return {m: extend_with_column(parts[j], parts[-1])
                    for j, m in enumerate(chosen)}

        return self._cached('static_user', key, build)

    def _assemble(self, kinds: str, dynamic: List[Tensor],
                  static: List[Tuple], data: HeteroData, edge_type,
                  num_layers: int, conv: MultiModalLGConv,
                  scale: Optional[float] = None) -> Tensor:
        r"""The ``[N, C, d]`` channels in the order of :obj:`kinds` (one
        letter per channel: ``"d"`` for the next of the :obj:`dynamic`
        channels, ``"s"`` for the next of the :obj:`static` ones). The
        dynamic channels (``[N, d]`` tensors or ``[N, k, d]`` blocks of
        :math:`k` channels) are propagated over the homogeneous graph in one
        product per layer (:obj:`scale`: the factor of the layer sum,
        default the layer mean); the static ones, ``(key, [X | 1~], W, b)``
        entries of precomputed propagated inputs, are projected by
        :meth:`_static_projection`. When all channels are of one kind the
        result is returned as it is (no copy)."""
        block = self._static_projection(static) if static else None
        if not dynamic:
            return block
        blocks = [x.unsqueeze(1) if x.dim() == 2 else x for x in dynamic]
        x = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)
        h = self._homogeneous(x, data, edge_type, num_layers, conv, scale)
        if block is None:
            return h
        if kinds == 'd' * h.size(1) + 's' * block.size(1):
            return torch.cat([h, block], dim=1)
        parts = {'d': iter(h.unbind(dim=1)), 's': iter(block.unbind(dim=1))}
        return torch.stack([next(parts[k]) for k in kinds], dim=1)

    def channels(self, data: HeteroData,
                 users: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        r"""Computes the propagated channels ``([U, C, d], [I, C, d])``;
        with :obj:`users` (global ids ``[B]``) the user channels of those
        users only, ``[B, C, d]`` (see :meth:`forward`)."""
        train_ei = data[RATES].edge_index
        d = self.embedding_dim
        feats = self._item_features(data)
        static = not self.finetune_features
        # one letter per channel, "d" (dynamic: propagated at every step)
        # or "s" (static: a projection of precomputed propagated inputs,
        # given as (key, [X | 1~], W, b) entries)
        item_kinds, user_kinds = '', ''
        item_dyn: List[Tensor] = []
        user_dyn: List[Tensor] = []
        item_static: List[Tuple] = []
        user_static: List[Tuple] = []
        if self.id_mode != 'none':
            item_kinds, user_kinds = 'd', 'd'
            item_dyn.append(self.item_embedding.weight)
            user_dyn.append(self.user_embedding.weight)

        item_pre = self._static_item(data, feats) if static else {}
        user_pre: Dict[str, Tensor] = {}
        if self.user_mode == 'profile':
            mean_op = self._mean_operator(train_ei)
            if static:
                user_pre = self._static_user(data, feats, train_ei)
        if self.user_mode == 'embedding':
            # all modality channels of the users in one [U, M, d] block
            user_kinds += 'd' * len(self.modalities)
            user_dyn.append(self.user_modality_embedding)
        for m in self.modalities:
            lin = self.proj[m]
            w_item, b_item = self._item_projection(m)
            if m in item_pre:
                item_kinds += 's'
                item_static.append((f'i{m}', item_pre[m], w_item, b_item))
            else:
                item_kinds += 'd'
                item_dyn.append(self._project(feats[m], w_item, m) + b_item)
            if self.user_mode == 'embedding':
                continue
            if m in user_pre:
                user_kinds += 's'
                user_static.append((f'u{m}', user_pre[m], lin.weight[d:],
                                    lin.bias[d:]))
            else:
                user_kinds += 'd'
                h = self._project(feats[m], lin.weight[d:], m)
                user_dyn.append(mean_op.matmul(h) + lin.bias[d:])

        # Constant factors that an L2 normalisation follows or precedes
        # cost no pass of their own: the homogeneous layer mean's 1/(L+1)
        # is dropped (the normalisation removes it) and the user-item
        # layer mean's is folded into the normalisation's divisor.
        hom_scale = 1.0 if self.normalize else None
        item_x = self._assemble(item_kinds, item_dyn, item_static, data,
                                ITEM_SIM, self.num_item_layers, self.ii_conv,
                                hom_scale)
        user_x = self._assemble(user_kinds, user_dyn, user_static, data,
                                USER_SIM, self.num_user_layers, self.uu_conv,
                                hom_scale)
        bipartite = self.ui_conv.backend in ('auto', 'csr') and \
            user_x.device.type != 'meta' and not is_compiling()
        fold = bipartite and self.normalize
        if self.normalize:
            s = 1.0 / (self.num_layers + 1) if fold else 1.0
            item_x = normalize_rows(item_x, scale=s)
            user_x = normalize_rows(user_x, scale=s)

        if bipartite:
            # the two blocks of the user-item graph, no [U + I] matrix
            op = self._bipartite_operator(train_ei, user_x.dtype)
            user_out, item_out = op.layer_mean(
                user_x.reshape(self.num_users, -1),
                item_x.reshape(self.num_items, -1), self.num_layers,
                scale=1.0 if fold else None, user_rows=users)
            return (user_out.view(user_out.size(0), *user_x.shape[1:]),
                    item_out.view(item_x.shape))
        x = torch.cat([user_x, item_x], dim=0)
        out = layer_mean(self.ui_conv, x,
                         self.ui_graph(train_ei, self.training), None,
                         self.num_layers)
        # split (not two slices): one concatenation in the backward pass
        user_out, item_out = out.split([self.num_users, self.num_items])
        if users is not None:
            user_out = user_out[users]
        return user_out, item_out

    def _bipartite_operator(self, train_ei: Tensor,
                            dtype: torch.dtype) -> BipartiteAdjacency:
        r"""The normalised user–item graph of this step (the pruned one in
        training with :obj:`edge_dropout > 0`) as a
        :class:`~pyg_brmrs.utils.BipartiteAdjacency` (cached while the
        same edges are used)."""
        edges = self.ui_graph.bipartite(train_ei, self.training)
        return self._cached(
            'ui_operator', (tensor_key(edges), dtype),
            lambda: BipartiteAdjacency(edges, self.num_users, self.num_items,
                                       dtype))

    def _subgraph_channels(self, data: HeteroData, user_n_id: Tensor,
                           item_n_id: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The propagated channels ``([U_b, C, d], [I_b, C, d])`` of a
        mini-batch subgraph (see the class description)."""
        user_deg, item_deg = self.subgraph_degrees(user_n_id, item_n_id)
        nu, ni = user_n_id.numel(), item_n_id.numel()
        train_ei = data[RATES].edge_index
        d = self.embedding_dim
        if self.finetune_features:
            feats = {m: self.item_features[m][item_n_id]
                     for m in self.modalities}
        else:
            feats = check_item_features(data, self.feature_dims, ni)

        def project(x: Tensor, weight: Tensor) -> Tensor:
            dtype = self.projection_dtype
            if dtype is None or dtype == weight.dtype:
                return F.linear(x.to(weight.dtype), weight)
            return F.linear(x.to(dtype), weight.to(dtype)).to(weight.dtype)

        item_ch: List[Tensor] = []
        user_ch: List[Tensor] = []
        if self.id_mode != 'none':
            item_ch.append(self.item_embedding(item_n_id))
            user_ch.append(self.user_embedding(user_n_id))
        mean_op = None
        if self.user_mode == 'profile':
            mean_op = subgraph_user_mean(train_ei, nu, ni)
        for j, m in enumerate(self.modalities):
            lin = self.proj[m]
            w_item, b_item = self._item_projection(m)
            item_ch.append(project(feats[m], w_item) + b_item)
            if self.user_mode == 'embedding':
                user_ch.append(self.user_modality_embedding[user_n_id, j])
            else:
                user_ch.append(mean_op.matmul(project(feats[m],
                                                      lin.weight[d:])) +
                               lin.bias[d:])
        last = self.homogeneous == 'last'
        item_x = operator_layer_mean(
            subgraph_homogeneous(data, ITEM_SIM,
                                 self._sim_degree(ITEM_SIM, item_n_id))
            if self.num_item_layers else None, torch.stack(item_ch, dim=1),
            self.num_item_layers, last)
        user_x = operator_layer_mean(
            subgraph_homogeneous(data, USER_SIM,
                                 self._sim_degree(USER_SIM, user_n_id))
            if self.num_user_layers else None, torch.stack(user_ch, dim=1),
            self.num_user_layers, last)
        if self.normalize:
            item_x = F.normalize(item_x, dim=-1)
            user_x = F.normalize(user_x, dim=-1)
        ui_op = subgraph_ui_operator(train_ei, user_deg, item_deg)
        out = operator_layer_mean(ui_op, torch.cat([user_x, item_x]),
                                  self.num_layers)
        return out[:nu], out[nu:]

    def branches(self, channels: Tensor,
                 fusion: torch.nn.Module) -> Dict[str, Tensor]:
        r"""Unimodal and fused representations from ``[N, C, d]``
        channels."""
        reps: Dict[str, Tensor] = {}
        offset = 0 if self.id_mode == 'none' else 1
        # unbind (not one select per channel): one stack in the backward pass
        parts = channels.unbind(dim=1)
        for j, m in enumerate(self.modalities):
            h = parts[offset + j]
            if self.id_mode == 'add':
                h = h + parts[0]
            elif self.id_mode == 'concat':
                h = torch.cat([parts[0], h], dim=-1)
            reps[m] = h
        reps[FUSED] = fusion([reps[m] for m in self.modalities])
        return reps

    supports_user_subset = True

    def forward(self, data: HeteroData,
                users: Optional[Tensor] = None) -> RecOutput:
        r"""The representations of every user and item of :obj:`data` (or
        of a mini-batch subgraph's nodes).

        Args:
            data (HeteroData): The graph (see the class description).
            users (torch.Tensor, optional): Global user ids ``[B]``
                (*e.g.* a training batch's unique users): the user outputs
                then hold these users' rows only, ``user_n_id = users``,
                computed on the full graph (the same values as those rows of
                the full output up to float rounding) at a lower cost: the
                last user–item layer's user product, the user layers' sum
                and the users' branches and fusion run on these rows only.
                Not with a mini-batch subgraph. (default: :obj:`None`)
        """
        ids = subgraph_ids(data)
        if ids is not None:
            if users is not None:
                raise ValueError("'users' cannot be given with a mini-batch "
                                 "subgraph (its user rows are its n_id)")
            user_ch, item_ch = self._subgraph_channels(data, *ids)
        else:
            if users is not None:
                users = check_ids(users, 'users', self.num_users)
            user_ch, item_ch = self.channels(data, users)
        return RecOutput(
            user=self.branches(user_ch, self.user_fusion),
            item=self.branches(item_ch, self.item_fusion),
            ranking_branch=FUSED,
            extras={
                'user_channels': user_ch,
                'item_channels': item_ch
            },
            user_n_id=users if ids is None else ids[0],
            item_n_id=None if ids is None else ids[1],
        )

    def regularization(self, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor,
                       out: Optional[RecOutput] = None) -> Tensor:
        r"""The squared :math:`L_2` norm of the batch's free embeddings,
        :math:`\frac{1}{2B}\sum_b (\lVert \mathbf{e}_{u_b} \rVert^2 +
        \lVert \mathbf{e}_{i^+_b} \rVert^2 + \lVert \mathbf{e}_{i^-_b}
        \rVert^2 + \sum_m \lVert \mathbf{e}^{(m)}_{u_b} \rVert^2)`, with
        the ID terms only when there is an ID channel and the per-modality
        user terms only with :obj:`user_mode="embedding"` (projections and
        fusion weights are not regularised)."""
        if out is not None:
            users, pos_items, neg_items = out.global_ids(users, pos_items,
                                                         neg_items)
        embs = []
        if self.id_mode != 'none':
            embs += [self.user_embedding(users),
                     self.item_embedding(pos_items),
                     self.item_embedding(neg_items)]
        if self.user_mode == 'embedding':
            embs.append(self.user_modality_embedding[users].flatten(1))
        if not embs:
            return super().regularization(users, pos_items, neg_items)
        return ego_regularization(*embs)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, modalities={self.modalities}, '
                f'embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers}, '
                f'fusion={self.user_fusion.__class__.__name__}, '
                f'id_mode={self.id_mode}, user_mode={self.user_mode})')
