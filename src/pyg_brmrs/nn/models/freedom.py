from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_brmrs.data.schema import (
    ITEM,
    Schema,
)
from pyg_brmrs.loss import bpr_loss
from pyg_brmrs.nn.base import FUSED, Recommender, RecOutput
from pyg_brmrs.nn.graph import EdgePruning, RecGraph
from pyg_brmrs.nn.graph.rec_graph import check_features
from pyg_brmrs.nn.models._common import (
    feature_rows,
    check_feature_dims,
    trainable_features,
)
from pyg_brmrs.transforms.knn_graph import (
    mixed_cosine_knn_graph,
    resolve_modality_weights,
)
from pyg_brmrs.utils.checks import check_float, check_int
from pyg_brmrs.utils.rows import take_rows

class FREEDOM(Recommender):
    r"""The FREEDOM model from `"A Tale of Two Graphs: Freezing and Denoising
    Graph Structures for Multimodal Recommendation"
    <https://arxiv.org/abs/2211.06924>`_, reproducing MMRec's
    ``src/models/freedom.py``.

    1. **Frozen item–item graph** :math:`\mathbf{S}` from the raw features
       (:func:`~pyg_brmrs.transforms.mixed_cosine_knn_graph`: per-modality
       cosine :math:`k`-NN, binary,
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

       :math:`\lambda` is :obj:`modality_bpr_weight` (MMRec's
       ``reg_weight``, which multiplies these terms; it is *not* an
       :math:`L_2` penalty). FREEDOM has no :math:`L_2` term
       (:meth:`regularization` is 0, so the ``reg_weight`` of
       :class:`~pyg_brmrs.objectives.BPRObjective` has no effect on it).

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
    ones and :obj:`edge_dropout` is the pruning ratio of the user–item graph
    (MMRec: ``n_ui_layers``, ``n_mm_layers``, ``dropout``);
    :obj:`modality_bpr_weight` is MMRec's ``reg_weight``, renamed because
    it is not the :math:`L_2` weight that ``reg_weight`` means elsewhere in
    the package.

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
        modality_bpr_weight (float, optional): :math:`\lambda` (MMRec's
            ``reg_weight``); MMRec's grid is
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

    **The frozen graph** is derived from the features of the data given
    to :meth:`set_graph` (which :meth:`from_data` calls) and kept as the
    model's own graph ``graph.own("knn")``; in a mini-batch subgraph it is
    restricted to the batch's items, scaled like every batch operator (see
    :class:`~pyg_brmrs.nn.graph.RecGraph`). Pruning applies to full-graph
    training only; a batch propagates over its sampled edges.

    Shapes:
        - **input:** a :class:`~torch_geometric.data.HeteroData` with
          ``data['item'][f'x_{m}']`` :math:`(|\mathcal{I}|, F_m)` and
          ``data['user', 'rates', 'item'].edge_index`` :math:`(2, |E|)`, or
          a mini-batch subgraph (``n_id`` :math:`(U_b)`, :math:`(I_b)`), as
          a :class:`~pyg_brmrs.nn.graph.RecGraph`
        - **output:** :class:`~pyg_brmrs.nn.RecOutput` with one branch
          :obj:`"fused"`: users :math:`(|\mathcal{U}|, d)`, items
          :math:`(|\mathcal{I}|, d)`; ``extras[f'x_{m}']`` are the features
          :math:`(|\mathcal{I}|, F_m)` the modality BPR term projects (the
          batch's rows for a subgraph).
    """
    graph_edge_types = ()  # reads no kNN graph of the data

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
        modality_bpr_weight: float = 1e-4,
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
        self.pruning = EdgePruning(edge_dropout)
        self.edge_dropout = self.pruning.edge_dropout
        self.modality_bpr_weight = check_float(modality_bpr_weight,
                                               'modality_bpr_weight')
        self.modality_weights = resolve_modality_weights(
            self.modalities, modality_weights)
        self.finetune_features = bool(finetune_features)
        self.cached = bool(cached)

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
        self.reset_parameters()

    def set_graph(self, data: HeteroData,
                  schema: Optional[Schema] = None) -> 'FREEDOM':
        r"""Records the degrees (see
        :meth:`~pyg_brmrs.nn.Recommender.set_graph`) and the frozen
        item–item graph (:func:`~pyg_brmrs.transforms.mixed_cosine_knn_graph`,
        binary) of the features of
        :obj:`data` (the model's graph ``"knn"``)."""
        super().set_graph(data, schema)
        xs = check_features(self.schema.canonical(data), self.feature_dims,
                            self.num_items)
        ei, ew = mixed_cosine_knn_graph(xs, self.knn_k,
                                        self.modality_weights, 'binary',
                                        self.chunk_size)
        device = self.item_embedding.weight.device
        self.register_graph('knn', ITEM, ei.to(device), ew.to(device))
        return self

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.user_embedding.weight)
        torch.nn.init.xavier_uniform_(self.item_embedding.weight)
        for lin in self.proj.values():
            lin.reset_parameters()
        self.clear_cache()
        self.pruning.clear()

    @property
    def knn_graph(self) -> Tuple[Tensor, Tensor]:
        r"""The frozen item–item graph ``(edge_index, edge_weight)`` of
        :func:`~pyg_brmrs.transforms.mixed_cosine_knn_graph` recorded by
        :meth:`set_graph`."""
        graph = self.own_graphs().get('knn')
        if graph is None:
            raise ValueError("FREEDOM has no item graph yet: build it with "
                             "FREEDOM.from_data(data) or call "
                             "model.set_graph(data)")
        return graph.edge_index, graph.edge_weight

    def on_epoch_start(self, epoch: int,
                       generator: Optional[torch.Generator] = None) -> None:
        r"""Requests a new pruned user–item graph, drawn with
        :obj:`generator` by the next training-mode :meth:`forward`."""
        self.pruning.redraw(generator)

    @property
    def pruned_edge_index(self) -> Optional[Tensor]:
        r"""The user→item edges ``[2, K]`` of the current pruned graph
        (:obj:`None` before the first draw)."""
        return self.pruning.edge_index

    def forward(self, graph: RecGraph) -> RecOutput:
        h = graph.item_rows(self.item_embedding.weight)
        if self.num_item_layers > 0:
            knn = graph.own('knn')
            for _ in range(self.num_item_layers):
                h = knn.matmul(h)
        ui = self.pruning(graph, self.training)
        user, item = ui.layer_mean(
            graph.user_rows(self.user_embedding.weight),
            graph.item_rows(self.item_embedding.weight), self.num_layers)
        feats = feature_rows(graph, self)
        return graph.output({FUSED: user}, {FUSED: item + h},
                            extras={f'x_{m}': feats[m]
                                    for m in self.modalities})

    def modality_projection(self, out: RecOutput, m: str,
                            items: Tensor) -> Tensor:
        r""":math:`\mathbf{t}^{(m)}_i = \mathbf{W}_m \mathbf{x}^{(m)}_i +
        \mathbf{b}_m` ``[B, d]`` for the items :obj:`items`."""
        lin = self.proj[m]
        return lin(take_rows(out.extras[f'x_{m}'],
                             items).to(lin.weight.dtype))

    def auxiliary_loss(self, out: RecOutput, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor) -> Dict[str, Tensor]:
        r"""``{"modality_bpr": modality_bpr_weight * sum_m BPR_m}`` (see the
        class description); empty when :obj:`modality_bpr_weight` is 0."""
        if self.modality_bpr_weight == 0:
            return {}
        u = take_rows(out.user_emb, users)
        total = u.new_zeros(())
        for m in self.modalities:
            pos = (u * self.modality_projection(out, m, pos_items)).sum(-1)
            neg = (u * self.modality_projection(out, m, neg_items)).sum(-1)
            total = total + bpr_loss(pos, neg)
        return {'modality_bpr': self.modality_bpr_weight * total}

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, modalities={self.modalities}, '
                f'embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers}, '
                f'num_item_layers={self.num_item_layers}, '
                f'edge_dropout={self.edge_dropout}, knn_k={self.knn_k}, '
                f'modality_bpr_weight={self.modality_bpr_weight})')
