from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.utils import coalesce, subgraph

from pyg_brmrs.data.schema import (
    ITEM,
    RATES,
    USER,
    Schema,
    canonical,
    features,
    modalities,
)
from pyg_brmrs.loss import bpr_loss
from pyg_brmrs.nn.base import FUSED, Recommender, RecOutput, subgraph_ids
from pyg_brmrs.nn.conv import MultiModalLGConv, layer_mean
from pyg_brmrs.nn.models._common import (
    UserItemGraph,
    check_counts,
    check_feature_dims,
    item_features,
    operator_layer_mean,
    sampled_scale,
    subgraph_ui_operator,
    trainable_features,
)
from pyg_brmrs.transforms.similarity import cosine_topk, normalize_similarity
from pyg_brmrs.utils.cache import KeyedCache, tensor_key
from pyg_brmrs.utils.checks import (
    check_float,
    check_int,
    check_modality_weights,
)
from pyg_brmrs.utils.deprecation import renamed_arguments
from pyg_brmrs.utils.sparse import CSRAdjacency

#: MMRec's default ``mm_image_weight`` for the modalities {image, text}.
MMREC_MODALITY_WEIGHTS = {'image': 0.1, 'text': 0.9}


def freedom_knn_graph(
    xs: Mapping[str, Tensor],
    k: int = 10,
    modality_weights: Optional[Mapping[str, float]] = None,
    chunk_size: int = 1024,
) -> Tuple[Tensor, Tensor]:
    r"""FREEDOM's frozen item–item graph (MMRec ``get_knn_adj_mat``):

    .. math::
        \mathbf{S} = \sum_m \beta_m \, \mathbf{D}_m^{-1/2} \mathbf{A}_m
        \mathbf{D}_m^{-1/2},

    where :math:`(\mathbf{A}_m)_{ij} = 1` iff :math:`j` is among the
    :math:`k` items of largest :math:`\cos(\mathbf{x}^{(m)}_i,
    \mathbf{x}^{(m)}_j)` (the item itself included, as MMRec's
    :func:`torch.topk` over the full similarity row) and :math:`\mathbf{D}_m`
    holds the row sums of :math:`\mathbf{A}_m` (:math:`k` for every item).
    Computed :obj:`chunk_size` rows at a time with
    :func:`pyg_brmrs.transforms.similarity.cosine_topk`, so no
    :math:`n \times n` matrix is formed. Ties are broken by the smaller index
    (MMRec: unspecified); an all-zero feature row has no neighbours in that
    modality and is nobody's neighbour (MMRec: NaN similarities); a row keeps
    :math:`\min(k, n')` neighbours among the :math:`n'` non-zero rows.

    Args:
        xs (Mapping[str, torch.Tensor]): modality → features
            :math:`(n, F_m)`.
        k (int): Neighbours per item and modality. (default: :obj:`10`)
        modality_weights (Mapping[str, float], optional): :math:`\beta_m`
            (default: :func:`default_modality_weights`).
        chunk_size (int): Rows per similarity block. (default: :obj:`1024`)

    Returns:
        ``(edge_index, edge_weight)``: ``edge_index[1]`` is the centre item
        :math:`i` and ``edge_index[0]`` the neighbour :math:`j`
        (``flow="source_to_target"``, so :math:`\mathbf{h}_i = \sum_j S_{ij}
        \mathbf{e}_j`), sorted by (target, source); a pair kept by several
        modalities carries the sum of its weighted entries.
    """
    names = sorted(xs)
    if not names:
        raise ValueError("'xs' must hold the features of at least one "
                         "modality")
    weights = resolve_modality_weights(names, modality_weights)
    sizes = {m: int(xs[m].size(0)) for m in names}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"All modalities must have the same number of rows "
                         f"(got {sizes})")
    n = sizes[names[0]]
    rows, cols, vals = [], [], []
    for m in names:
        if weights[m] == 0:
            continue
        x = xs[m].detach().float()
        row, col, _ = cosine_topk(x, k, loop=True, chunk_size=chunk_size)
        one = torch.ones(row.numel(), device=x.device)
        value = normalize_similarity(row, col, one, n, 'sym')
        rows.append(row)
        cols.append(col)
        vals.append(weights[m] * value)
    device = next(iter(xs.values())).device
    if not rows:
        return (torch.empty(2, 0, dtype=torch.long, device=device),
                torch.empty(0, device=device))
    # (source = neighbour j, target = centre i):
    edge_index = torch.stack([torch.cat(cols), torch.cat(rows)])
    edge_index, edge_weight = coalesce(edge_index, torch.cat(vals), n,
                                       reduce='sum', sort_by_row=False)
    return edge_index, edge_weight


def default_modality_weights(names: List[str]) -> Dict[str, float]:
    r"""MMRec's :math:`\beta_{image} = 0.1, \beta_{text} = 0.9`
    (``mm_image_weight=0.1``) for exactly the modalities
    :obj:`{"image", "text"}`, equal weights :math:`1/M` otherwise."""
    if sorted(names) == sorted(MMREC_MODALITY_WEIGHTS):
        return dict(MMREC_MODALITY_WEIGHTS)
    return {m: 1.0 / len(names) for m in names}


def resolve_modality_weights(
        names: List[str],
        modality_weights: Optional[Mapping[str, float]]) -> Dict[str, float]:
    r"""The checked :obj:`modality_weights` (one non-negative weight per
    modality, summing to one: the rule of
    :class:`~pyg_brmrs.transforms.HomogeneousKNNGraph` too), or
    :func:`default_modality_weights` for :obj:`None`."""
    if modality_weights is None:
        return default_modality_weights(names)
    return check_modality_weights(modality_weights, 'modality_weights',
                                  modalities=names)


class FREEDOM(Recommender):
    r"""The FREEDOM model from `"A Tale of Two Graphs: Freezing and Denoising
    Graph Structures for Multimodal Recommendation"
    <https://arxiv.org/abs/2211.06924>`_, reproducing MMRec's
    ``src/models/freedom.py``.

    1. **Frozen item–item graph** :math:`\mathbf{S}` from the raw features
       (:func:`freedom_knn_graph`: per-modality cosine :math:`k`-NN, binary,
       :math:`\mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}`, mixed with the
       :obj:`modality_weights` :math:`\beta_m`), built once on the first
       :meth:`forward` and cached while the same feature tensors are passed.
       The item ID embeddings are propagated over it,
       :math:`\mathbf{H} = \mathbf{S}^{L_s} \mathbf{E}_I`
       (:obj:`num_item_layers` :math:`= L_s`).
    2. **Denoised user–item graph.** LightGCN over the symmetric-normalised
       user–item graph :math:`\hat{\mathbf{A}}`, mean over layers
       :math:`0..L` (:obj:`num_layers` :math:`= L`):
       :math:`[\mathbf{Z}_U; \mathbf{Z}_I] = \frac{1}{L+1}\sum_{l=0}^{L}
       \hat{\mathbf{A}}^l [\mathbf{E}_U; \mathbf{E}_I]`. In training mode
       :math:`\hat{\mathbf{A}}` is the graph kept by
       :func:`degree_sensitive_edge_pruning`, re-normalised with the kept
       degrees; in evaluation mode it is the full training graph (MMRec's
       ``full_sort_predict`` uses ``norm_adj``).
    3. **Scores** :math:`s(u, i) = \langle \mathbf{z}_u, \mathbf{z}_i +
       \mathbf{h}_i \rangle`.
    4. **Modality BPR** (:meth:`auxiliary_loss`): with the projections
       :math:`\mathbf{t}^{(m)}_i = \mathbf{W}_m \mathbf{x}^{(m)}_i +
       \mathbf{b}_m \in \mathbb{R}^d` and the same negatives as the main BPR
       term,

       .. math::
           \mathcal{L}_{mm} = \lambda \sum_m \frac{1}{B}\sum_b -\log\sigma(
           \langle \mathbf{z}_{u_b}, \mathbf{t}^{(m)}_{i^+_b} -
           \mathbf{t}^{(m)}_{i^-_b} \rangle).

       :math:`\lambda` is :obj:`reg_weight`: in MMRec this weight multiplies
       the modality BPR terms, it is *not* an :math:`L_2` penalty. FREEDOM
       has no :math:`L_2` term (:meth:`regularization` is 0, so the
       ``reg_weight`` of :class:`~pyg_brmrs.objectives.BPRObjective` has no
       effect on it).

    **Pruning schedule.** :meth:`on_epoch_start` requests a new pruned graph;
    it is drawn (with the generator passed there) by the next
    :meth:`forward` in training mode, so every epoch trains on one fresh
    draw. A training-mode :meth:`forward` before any :meth:`on_epoch_start`
    draws one with the global generator. :obj:`edge_dropout=0` trains on the
    full graph.

    **Features.** MMRec stores the features in
    ``nn.Embedding.from_pretrained(..., freeze=False)``, so the modality BPR
    term *fine-tunes* them (the :math:`k`-NN graph stays the one of the
    initial features). :obj:`finetune_features=True` (default) does the
    same: the model holds the features as parameters (filled in by
    :meth:`from_data`); :obj:`False` keeps them frozen and reads them from
    the data. :meth:`reset_parameters` leaves the (possibly fine-tuned)
    features as they are; build a new model to restore them.

    **Names.** As everywhere in :mod:`pyg_brmrs.nn`, :obj:`num_layers` counts
    the user–item (LightGCN) layers, :obj:`num_item_layers` the item–item
    ones and :obj:`edge_dropout` is the pruning ratio of the user–item graph.
    Earlier versions called them :obj:`num_ui_layers`, :obj:`num_layers` and
    :obj:`dropout`: :obj:`num_ui_layers` and :obj:`dropout` still work (with
    a :class:`DeprecationWarning`), but :obj:`num_layers` now means the
    user–item depth. The arguments after :obj:`embedding_dim` are
    keyword-only, so an old positional call fails instead of swapping the
    two depths.

    **Initialisation** (MMRec): :func:`~torch.nn.init.xavier_uniform_` on
    the user and item ID tables, PyTorch's default :class:`~torch.nn.Linear`
    initialisation for the projections.

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        feature_dims (Mapping[str, int]): modality name → feature size
            :math:`F_m` (use :meth:`from_data`).
        embedding_dim (int, optional): :math:`d` (MMRec's ``embedding_size``
            and ``feat_embed_dim``). (default: :obj:`64`)
        num_layers (int, optional): User–item (LightGCN) layers :math:`L`
            (MMRec ``n_ui_layers``). (default: :obj:`2`)
        num_item_layers (int, optional): Item–item layers :math:`L_s` (MMRec
            ``n_mm_layers``). (default: :obj:`1`)
        edge_dropout (float, optional): The edge pruning ratio :math:`p` of
            the user–item graph; MMRec's grid is :math:`\{0.8, 0.9\}`.
            (default: :obj:`0.8`)
        knn_k (int, optional): Neighbours per item. (default: :obj:`10`)
        modality_weights (Mapping[str, float], optional): :math:`\beta_m`;
            :obj:`None` gives MMRec's image 0.1 / text 0.9 for {image, text}
            and equal weights otherwise. (default: :obj:`None`)
        reg_weight (float, optional): :math:`\lambda`; MMRec's grid is
            :math:`\{0, 10^{-5}, 10^{-4}, 10^{-3}\}` (select on validation).
            (default: :obj:`1e-4`)
        finetune_features (bool, optional): Train the features through the
            modality BPR term, as MMRec. (default: :obj:`True`)
        item_features (Mapping[str, torch.Tensor], optional): The initial
            features when :obj:`finetune_features=True`.
            (default: :obj:`None`)
        chunk_size (int, optional): Rows per block of the :math:`k`-NN
            search. (default: :obj:`1024`)
        cached (bool, optional): Cache the graphs while the same tensors are
            passed. (default: :obj:`True`)

    **Mini-batch subgraphs** (user and item stores with ``n_id``): the ID
    embeddings and (fine-tuned) features are gathered by ``n_id``; the item
    layers run over the frozen graph :math:`\mathbf{S}` restricted to the
    batch's items (the graph of the full features, recorded by
    :meth:`set_graph`, which :meth:`from_data` calls), the user–item layers
    over the batch's user–item edges with the *global* weights
    :math:`1/\sqrt{\deg(u)\deg(i)}` of the full training graph, without
    pruning; in both graphs a node's incoming sum is scaled by
    :math:`\deg(v)/\deg_b(v)` (its in-degree in the full graph over that
    among the batch's edges), an unbiased estimate of the full sum under
    uniform neighbour sampling and :math:`1` for a complete neighbourhood.
    A node whose neighbourhoods lie in the batch gets exactly its
    full-graph evaluation-mode representation.

    Shapes:
        - **input:** a :class:`~torch_geometric.data.HeteroData` with
          ``data['item'][f'x_{m}']`` :math:`(|\mathcal{I}|, F_m)` and
          ``data['user', 'rates', 'item'].edge_index`` :math:`(2, |E|)`, or
          a mini-batch subgraph (``n_id`` :math:`(U_b)`, :math:`(I_b)`)
        - **output:** :class:`~pyg_brmrs.nn.RecOutput` with one branch
          :obj:`"fused"`: users :math:`(|\mathcal{U}|, d)`, items
          :math:`(|\mathcal{I}|, d)`; ``extras[f'x_{m}']`` are the features
          :math:`(|\mathcal{I}|, F_m)` the modality BPR term projects (the
          batch's rows for a subgraph).
    """
    graph_edge_types = ()  # reads no kNN graph of the data

    @renamed_arguments(num_ui_layers='num_layers', dropout='edge_dropout')
    def __init__(
        self,
        num_users: int,
        num_items: int,
        feature_dims: Mapping[str, int],
        embedding_dim: int = 64,
        *,
        num_layers: int = 2,
        num_item_layers: int = 1,
        edge_dropout: float = 0.8,
        knn_k: int = 10,
        modality_weights: Optional[Mapping[str, float]] = None,
        reg_weight: float = 1e-4,
        finetune_features: bool = True,
        item_features: Optional[Mapping[str, Tensor]] = None,
        chunk_size: int = 1024,
        cached: bool = True,
    ):
        super().__init__(num_users, num_items)
        self.feature_dims = check_feature_dims(feature_dims)
        self.modalities: List[str] = list(self.feature_dims)
        self.embedding_dim = check_int(embedding_dim, 'embedding_dim')
        self.num_layers = check_int(num_layers, 'num_layers', 0)
        self.num_item_layers = check_int(num_item_layers, 'num_item_layers',
                                         0)
        self.knn_k = check_int(knn_k, 'knn_k')
        self.chunk_size = check_int(chunk_size, 'chunk_size')
        self.ui_graph = UserItemGraph(num_users, num_items, edge_dropout,
                                      cached=cached)
        self.edge_dropout = self.ui_graph.edge_dropout
        self.reg_weight = check_float(reg_weight, 'reg_weight')
        self.modality_weights = resolve_modality_weights(
            self.modalities, modality_weights)
        self.finetune_features = bool(finetune_features)
        self.cached = cached

        d = embedding_dim
        self.user_embedding = torch.nn.Embedding(num_users, d)
        self.item_embedding = torch.nn.Embedding(num_items, d)
        self.proj = torch.nn.ModuleDict({
            m: torch.nn.Linear(self.feature_dims[m], d)
            for m in self.modalities
        })
        self.item_features = torch.nn.ParameterDict()
        if self.finetune_features:
            self.item_features = trainable_features(
                item_features, self.feature_dims, num_items, 'FREEDOM')

        self.full_conv = MultiModalLGConv(normalize=True, cached=cached,
                                          backend='csr')
        self.pruned_conv = MultiModalLGConv(normalize=True, cached=True,
                                            backend='csr')
        self._cache = KeyedCache()
        # The frozen item graph of the full data, for subgraph batches:
        self.register_buffer('knn_edge_index', None, persistent=False)
        self.register_buffer('knn_edge_weight', None, persistent=False)
        self.reset_parameters()

    @classmethod
    def from_data(cls, data: HeteroData, schema: Optional[Schema] = None,
                  **kwargs) -> 'FREEDOM':
        r"""Builds the model with the sizes, modalities and (for
        :obj:`finetune_features=True`) the features of :obj:`data` (names
        given by :obj:`schema`, a :class:`~pyg_brmrs.data.Schema`)."""
        data = canonical(data, schema)
        dims = {m: int(features(data, m).size(-1)) for m in modalities(data)}
        if kwargs.get('finetune_features', True) and \
                'item_features' not in kwargs:
            kwargs['item_features'] = {
                m: features(data, m)
                for m in modalities(data)
            }
        return cls(int(data[USER].num_nodes), int(data[ITEM].num_nodes), dims,
                   **kwargs)._from_data(data, schema)

    def set_graph(self, data: HeteroData,
                  schema: Optional[Schema] = None) -> 'FREEDOM':
        r"""Records the global degrees (see
        :meth:`~pyg_brmrs.nn.Recommender.set_graph`) and the frozen
        item–item graph of the full features of :obj:`data`, which subgraph
        batches use."""
        super().set_graph(data, schema)
        (ei, ew), _ = self._item_graph(
            self._raw_features(self.schema.canonical(data)))
        device = self.item_embedding.weight.device
        self.knn_edge_index, self.knn_edge_weight = ei.to(device), \
            ew.to(device)
        return self

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.user_embedding.weight)
        torch.nn.init.xavier_uniform_(self.item_embedding.weight)
        for lin in self.proj.values():
            lin.reset_parameters()
        self.full_conv.reset_parameters()
        self.pruned_conv.reset_parameters()
        self._cache.clear()
        self.ui_graph.clear()

    # ------------------------------------------------------------------
    def _cached(self, name: str, key, build):
        return self._cache.get(name, key, build, enabled=self.cached)

    def _raw_features(self, data: HeteroData) -> Dict[str, Tensor]:
        return item_features(data, self.feature_dims, self.num_items)

    def item_graph(self, data: HeteroData) -> Tuple[Tensor, Tensor]:
        r"""The frozen item–item graph ``(edge_index, edge_weight)`` of
        :func:`freedom_knn_graph` for the features of :obj:`data`
        (cached)."""
        return self._item_graph(self._raw_features(data))[0]

    def _item_graph(self, xs: Dict[str, Tensor]):
        key = tuple(tensor_key(xs[m]) for m in self.modalities)

        def build():
            ei, ew = freedom_knn_graph(xs, self.knn_k, self.modality_weights,
                                       self.chunk_size)
            op = CSRAdjacency(ei, ew, (self.num_items, self.num_items))
            return (ei, ew), op

        return self._cached('item', key, build)

    def on_epoch_start(self, epoch: int,
                       generator: Optional[torch.Generator] = None) -> None:
        r"""Requests a new pruned user–item graph, drawn with
        :obj:`generator` by the next training-mode :meth:`forward`."""
        self.ui_graph.redraw(generator)

    @property
    def pruned_edge_index(self) -> Optional[Tensor]:
        r"""The user→item edges ``[2, K]`` of the current pruned graph
        (:obj:`None` before the first draw)."""
        return self.ui_graph.pruned_edge_index

    def _subgraph_forward(self, data: HeteroData, user_n_id: Tensor,
                          item_n_id: Tensor) -> RecOutput:
        user_deg, item_deg = self.subgraph_degrees(user_n_id, item_n_id)
        if self.knn_edge_index is None:
            raise ValueError("'FREEDOM' needs its frozen item graph for a "
                             "mini-batch subgraph: build it with "
                             "FREEDOM.from_data(full_data) or call "
                             "model.set_graph(full_data)")
        num = item_n_id.numel()
        ei, ew = subgraph(item_n_id, self.knn_edge_index,
                          self.knn_edge_weight, relabel_nodes=True,
                          num_nodes=self.num_items)
        h = self.item_embedding(item_n_id)
        if self.num_item_layers > 0:
            full = torch.bincount(self.knn_edge_index[1],
                                  minlength=self.num_items)[item_n_id]
            ii_op = CSRAdjacency(ei, ew * sampled_scale(ei[1], full),
                                 (num, num))
            for _ in range(self.num_item_layers):
                h = ii_op.matmul(h)
        ui_op = subgraph_ui_operator(data[RATES].edge_index, user_deg,
                                     item_deg)
        x = torch.cat([self.user_embedding(user_n_id),
                       self.item_embedding(item_n_id)])
        out = operator_layer_mean(ui_op, x, self.num_layers)
        if self.finetune_features:
            feats = {m: self.item_features[m][item_n_id]
                     for m in self.modalities}
        else:
            feats = item_features(data, self.feature_dims, num)
        nu = user_n_id.numel()
        return RecOutput({FUSED: out[:nu]}, {FUSED: out[nu:] + h},
                         extras={f'x_{m}': feats[m]
                                 for m in self.modalities},
                         user_n_id=user_n_id, item_n_id=item_n_id)

    def forward(self, data: HeteroData) -> RecOutput:
        ids = subgraph_ids(data)
        if ids is not None:
            return self._subgraph_forward(data, *ids)
        check_counts(self, data)
        xs = self._raw_features(data)
        _, ii_op = self._item_graph(xs)
        h = self.item_embedding.weight
        for _ in range(self.num_item_layers):
            h = ii_op.matmul(h)

        train_ei = data[RATES].edge_index
        pruned = self.training and self.edge_dropout > 0
        ui_ei = self.ui_graph(train_ei, self.training)
        conv = self.pruned_conv if pruned else self.full_conv
        x = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        out = layer_mean(conv, x, ui_ei, None, self.num_layers)

        feats = (dict(self.item_features.items())
                 if self.finetune_features else xs)
        return RecOutput({FUSED: out[:self.num_users]},
                         {FUSED: out[self.num_users:] + h},
                         extras={f'x_{m}': feats[m]
                                 for m in self.modalities})

    def modality_projection(self, out: RecOutput, m: str,
                            items: Tensor) -> Tensor:
        r""":math:`\mathbf{t}^{(m)}_i = \mathbf{W}_m \mathbf{x}^{(m)}_i +
        \mathbf{b}_m` ``[B, d]`` for the items :obj:`items`."""
        lin = self.proj[m]
        return lin(out.extras[f'x_{m}'][items].to(lin.weight.dtype))

    def auxiliary_loss(self, out: RecOutput, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor) -> Dict[str, Tensor]:
        r"""``{"modality_bpr": reg_weight * sum_m BPR_m}`` (see the class
        description); empty when :obj:`reg_weight` is 0."""
        if self.reg_weight == 0:
            return {}
        u = out.user_emb[users]
        total = u.new_zeros(())
        for m in self.modalities:
            pos = (u * self.modality_projection(out, m, pos_items)).sum(-1)
            neg = (u * self.modality_projection(out, m, neg_items)).sum(-1)
            total = total + bpr_loss(pos, neg)
        return {'modality_bpr': self.reg_weight * total}

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, modalities={self.modalities}, '
                f'embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers}, '
                f'num_item_layers={self.num_item_layers}, '
                f'edge_dropout={self.edge_dropout}, knn_k={self.knn_k}, '
                f'reg_weight={self.reg_weight})')
