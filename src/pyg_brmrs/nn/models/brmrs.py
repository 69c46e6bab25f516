import copy
from typing import Dict, List, Mapping, Optional, Union

import torch
from torch import Tensor

from pyg_brmrs.data.schema import (
    ITEM_SIM,
    USER_SIM,
)
from pyg_brmrs.nn.base import FUSED, Recommender, RecOutput, \
    ego_regularization
from pyg_brmrs.nn.fusion import Fusion, resolve_fusion
from pyg_brmrs.nn.graph import Affine, EdgePruning, RecGraph
from pyg_brmrs.nn.graph.adjacency import check_backend
from pyg_brmrs.nn.models._common import feature_rows, trainable_features
from pyg_brmrs.utils.sparse import normalize_rows

ID_MODES = ('add', 'concat', 'none')
USER_MODES = ('profile', 'embedding', 'shared')
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
       (:obj:`user_mode="embedding"`), or one free user embedding shared
       by every modality channel, :math:`\mathbf{e}^{(m)}_u =
       \mathbf{e}_u` at layer 0 (:obj:`user_mode="shared"`; the channels
       differ after the first user–item layer, which brings in the
       modality's items).
    2. **Homogeneous graphs.** The item channels are propagated
       :obj:`num_item_layers` times over the item–item graph,
       :math:`\mathbf{H}_I \leftarrow \mathbf{S}_I \mathbf{H}_I`, the user
       channels over the user–user graph; the result is the mean over the
       layers (:obj:`homogeneous="mean"`) or the last layer
       (:obj:`"last"`, as REARM), then every channel is
       :math:`L_2`-normalised per node (:obj:`normalize=True`).
       The feature channels are :class:`~pyg_brmrs.nn.graph.Affine`
       channels of the graph (:meth:`~pyg_brmrs.nn.graph.RecGraph.propagate`),
       so on the full graph with fixed features they are computed from
       the features propagated once,
       :math:`(\mathbf{S}\mathbf{X})\mathbf{W}^{\top} +
       (\mathbf{S}\mathbf{1})\mathbf{b}^{\top}` (for the users' profiles
       when that is cheaper), the same up to float rounding.
    3. **LightGCN.** All :math:`1 + M` channels are propagated together over
       the symmetric-normalised user–item graph
       (:class:`~pyg_brmrs.nn.graph.BipartiteAdjacency`) for
       :obj:`num_layers` layers and averaged over layers :math:`0..L`,
       giving :math:`\mathbf{z}^{(c)}`.
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
            ``[U, M, d]``; one reading of the paper's "user representations
            are obtained symmetrically"), :obj:`"shared"` (one free
            embedding per user, ``[U, 1, d]``, as every modality's layer-0
            channel; the other reading) or :obj:`"profile"` (projected mean
            features of the training items).
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
        backend (str, optional): The kernel of the graph operators (see
            :class:`~pyg_brmrs.nn.graph.Adjacency`). (default: :obj:`"auto"`)
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

    **Mini-batch subgraphs.** On a batch's
    :class:`~pyg_brmrs.nn.graph.RecGraph` every step above runs on the
    batch's rows and edges (free embeddings and fine-tuned features gathered
    by ``n_id``, the batch's feature rows, the users' profiles as the mean
    over their items present), with the full graph's normalisation and
    every incoming sum scaled by :math:`\deg(v)/\deg_b(v)`; the user–item
    edges are used as given (:obj:`edge_dropout` applies to full-graph
    training only) and the feature channels are projected before they are
    propagated, since nothing is cached. A node whose :math:`L`-hop
    user–item neighbourhood lies in the batch together with the
    homogeneous-graph (and, for profiles, user–item) neighbours of those
    nodes gets its full-graph representation, up to float rounding.

    Shapes:
        - **input:** the :class:`~pyg_brmrs.nn.graph.RecGraph` of a
          :class:`~torch_geometric.data.HeteroData` with
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
            low = 1 if name == 'embedding_dim' else 0
            if value < low:
                raise ValueError(f"'{name}' must be >= {low} (got "
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
        if user_mode in ('embedding', 'shared'):
            self.user_modality_embedding = torch.nn.Parameter(torch.empty(
                num_users, len(self.modalities) if user_mode == 'embedding'
                else 1, d))
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

        self.backend = check_backend(backend)
        self.cached = bool(cached)
        self.pruning = EdgePruning(edge_dropout)
        self.edge_dropout = self.pruning.edge_dropout
        self.reset_parameters()

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
        if self.user_mode != 'profile':
            torch.nn.init.normal_(self.user_modality_embedding, std=0.1)
        for lin in self.proj.values():
            torch.nn.init.xavier_normal_(lin.weight)
            torch.nn.init.zeros_(lin.bias)
        self.user_fusion.reset_parameters()
        self.item_fusion.reset_parameters()
        self.clear_cache()
        self.pruning.clear()

    def on_epoch_start(self, epoch: int,
                       generator: Optional[torch.Generator] = None) -> None:
        r"""Requests a new pruned user–item graph (with
        :obj:`edge_dropout > 0`), drawn with :obj:`generator` by the next
        training-mode :meth:`forward`."""
        self.pruning.redraw(generator)

    def _item_projection(self, m: str):
        r"""The item rows ``[:d]`` of modality :obj:`m`'s projection
        (weight, bias); the whole parameters, not slices of them, when the
        projection has no user rows (no slicing node in the backward pass,
        which would allocate and copy a full-size gradient)."""
        lin = self.proj[m]
        d = self.embedding_dim
        if lin.out_features == d:
            return lin.weight, lin.bias
        return lin.weight[:d], lin.bias[:d]

    def channels(self, graph: RecGraph):
        r"""The propagated channels ``([U, C, d], [I, C, d])`` of the
        graph's rows (the user rows of its user–item operator's output)."""
        d = self.embedding_dim
        feats = feature_rows(graph, self)
        dtype = self.projection_dtype
        item_ch: List = []
        user_ch: List = []
        if self.id_mode != 'none':
            item_ch.append(graph.item_rows(self.item_embedding.weight))
            user_ch.append(graph.user_rows(self.user_embedding.weight))
        if self.user_mode != 'profile':
            # all modality channels of the users in one [U, M, d] block
            emb = graph.user_rows(self.user_modality_embedding)
            if self.user_mode == 'shared':
                emb = emb.expand(-1, len(self.modalities), -1)
            user_ch.append(emb)
        mean_op = graph.user_mean() if self.user_mode == 'profile' else None
        for m in self.modalities:
            weight, bias = self._item_projection(m)
            item_ch.append(Affine(feats[m], weight, bias, dtype=dtype,
                                  name=f'item:{m}'))
            if mean_op is not None:
                lin = self.proj[m]
                user_ch.append(Affine(feats[m], lin.weight[d:],
                                      lin.bias[d:], pre=mean_op,
                                      dtype=dtype, name=f'user:{m}'))
        # Constant factors that an L2 normalisation follows or precedes
        # cost no pass of their own: the homogeneous layer mean's 1/(L+1)
        # is dropped (the normalisation removes it) and the user-item
        # layer mean's is folded into the normalisation's divisor.
        last = self.homogeneous == 'last'
        hom_scale = None if last or not self.normalize else 1.0
        item_x = graph.propagate(
            graph.homogeneous(ITEM_SIM) if self.num_item_layers else None,
            item_ch, self.num_item_layers, last=last, scale=hom_scale,
            name='item')
        user_x = graph.propagate(
            graph.homogeneous(USER_SIM) if self.num_user_layers else None,
            user_ch, self.num_user_layers, last=last, scale=hom_scale,
            name='user')
        ui_scale = None
        if self.normalize:
            s = 1.0 / (self.num_layers + 1)
            item_x = normalize_rows(item_x, scale=s)
            user_x = normalize_rows(user_x, scale=s)
            ui_scale = 1.0
        ui = self.pruning(graph, self.training, user_x.dtype)
        return ui.layer_mean(user_x, item_x, self.num_layers,
                             scale=ui_scale)

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

    def forward(self, graph: RecGraph) -> RecOutput:
        r"""The representations of the graph's rows: every user and item,
        a mini-batch subgraph's nodes, or (``model(data, users=ids)``) the
        users :obj:`ids` only, computed on the full graph (the same values
        as those rows of the full output up to float rounding) at a lower
        cost: the last user–item layer's user product, the user layers'
        sum and the users' branches and fusion run on these rows only."""
        user_ch, item_ch = self.channels(graph)
        return graph.output(
            self.branches(user_ch, self.user_fusion),
            self.branches(item_ch, self.item_fusion),
            extras={'user_channels': user_ch, 'item_channels': item_ch})

    def regularization(self, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor,
                       out: Optional[RecOutput] = None) -> Tensor:
        r"""The squared :math:`L_2` norm of the batch's free embeddings,
        :math:`\frac{1}{2B}\sum_b (\lVert \mathbf{e}_{u_b} \rVert^2 +
        \lVert \mathbf{e}_{i^+_b} \rVert^2 + \lVert \mathbf{e}_{i^-_b}
        \rVert^2 + \sum_m \lVert \mathbf{e}^{(m)}_{u_b} \rVert^2)`, with
        the ID terms only when there is an ID channel and the user
        embedding terms only with :obj:`user_mode="embedding"` (one per
        modality) or :obj:`"shared"` (one, :math:`M = 1` in the sum); the
        projections and fusion weights are not regularised here (see
        :obj:`reg_scope="parameters"` of the objectives for
        :math:`\lambda \lVert \Theta \rVert^2` over every parameter)."""
        if out is not None:
            users, pos_items, neg_items = out.global_ids(users, pos_items,
                                                         neg_items)
        embs = []
        if self.id_mode != 'none':
            embs += [self.user_embedding(users),
                     self.item_embedding(pos_items),
                     self.item_embedding(neg_items)]
        if self.user_mode != 'profile':
            embs.append(self.user_modality_embedding.index_select(
                0, users).flatten(1))
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
