from typing import List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.utils import coalesce

from pyg_brmrs.data.schema import ITEM, Schema
from pyg_brmrs.nn.base import (
    FUSED,
    Recommender,
    RecOutput,
)
from pyg_brmrs.nn.graph import Adjacency, RecGraph
from pyg_brmrs.nn.graph.rec_graph import check_features
from pyg_brmrs.nn.models._common import (
    check_feature_dims,
    final_rows_regularization,
    feature_rows,
    mmrec_modality_order,
    trainable_features,
)
from pyg_brmrs.transforms import cosine_knn_graph
from pyg_brmrs.transforms.similarity import cosine_topk
from pyg_brmrs.utils.cache import tensor_key
from pyg_brmrs.utils.checks import check_float, check_int
from pyg_brmrs.utils.rows import take_rows

#: ``(row, col, value)`` of a graph's entries, ``h_row += value * x_col``.
Entries = Tuple[Tensor, Tensor, Tensor]


def learned_knn_graph(projected: Mapping[str, Tensor],
                      weights: Tensor, k: int,
                      chunk_size: int = 1024) -> Entries:
    r"""LATTICE's learned item–item graph: per modality the cosine
    :math:`k`-NN of the projected features :math:`\tilde{\mathbf{x}}^{(m)}`
    (the row itself included), weighted by the cosine,
    :math:`S^{(m)}_{ij} = \cos(\tilde{\mathbf{x}}^{(m)}_i,
    \tilde{\mathbf{x}}^{(m)}_j)` for :math:`j \in \mathcal{N}^{(m)}_k(i)`,
    mixed with the modality weights :math:`\mathbf{w}` and
    symmetric-normalised by the mixture's row sums:

    .. math::
        \mathbf{A} = \sum_m w_m \mathbf{S}^{(m)}, \qquad
        \hat{A}_{ij} = A_{ij} / \sqrt{d_i d_j}, \quad d_i = \sum_j A_{ij}.

    The neighbour lists are chosen without gradient (chunked top-:math:`k`,
    ties by the smaller index, no :math:`n \times n` matrix); the values
    are differentiable in the features and in :math:`\mathbf{w}`.

    Returns:
        ``(row, col, value)``: one entry per kept pair and modality (a pair
        kept by two modalities has two entries, whose values add up). On
        the ``meta`` device (shapes only) a row has :math:`\min(k, n)`
        placeholder entries.
    """
    rows, cols, vals = [], [], []
    for j, (m, x) in enumerate(projected.items()):
        if x.is_meta:  # shapes only: min(k, n) placeholder entries a row
            kk = min(k, x.size(0))
            row = torch.arange(x.size(0), device=x.device
                               ).repeat_interleave(kk)
            col = torch.zeros_like(row)
        else:
            row, col, _ = cosine_topk(x.detach().float(), k, loop=True,
                                      chunk_size=chunk_size)
        xn = F.normalize(x, dim=1)
        cos = (take_rows(xn, row) * take_rows(xn, col)).sum(-1)
        rows.append(row)
        cols.append(col)
        vals.append(weights[j] * cos)
    row, col, val = torch.cat(rows), torch.cat(cols), torch.cat(vals)
    n = next(iter(projected.values())).size(0)
    deg = torch.zeros(n, dtype=val.dtype, device=val.device).index_add(
        0, row, val)
    inv = deg.clamp(min=1e-12).rsqrt() * (deg > 0)
    return row, col, val * inv[row] * inv[col]


def propagate_entries(entries: Entries, x: Tensor) -> Tensor:
    r""":math:`\mathbf{h}_i = \sum_{(i, j, v)} v\,\mathbf{x}_j`
    (differentiable in the values and in :obj:`x`)."""
    row, col, val = entries
    return torch.zeros_like(x).index_add(
        0, row, val.unsqueeze(-1).to(x.dtype) * take_rows(x, col))


def register_original_graphs(model: Recommender,
                             xs: Mapping[str, Tensor]) -> None:
    r"""Records on :obj:`model` the frozen graph ``"original_<m>"`` of every
    modality's raw features :obj:`xs`: the cosine-weighted,
    symmetric-normalised :math:`k`-NN graph
    (:func:`~pyg_brmrs.transforms.cosine_knn_graph`, ``model.knn_k``),
    LATTICE's and MICRO's :math:`\hat{\mathbf{O}}^{(m)}`."""
    device = model.user_embedding.weight.device
    for m in model.modalities:
        ei, ew = cosine_knn_graph(xs[m], model.knn_k, 'cosine', 'sym',
                                  model.chunk_size)
        model.register_graph(f'original_{m}', ITEM, ei.to(device),
                             ew.to(device))


def self_loop_mean_adjacency(graph: RecGraph, num_users: int,
                             num_items: int) -> Adjacency:
    r"""The user–item graph of LATTICE and MICRO over the
    :math:`|\mathcal{U}| + |\mathcal{I}|` nodes (users first), with self
    loops and row-normalised: :math:`\tilde{\mathbf{A}} =
    \mathbf{D}^{-1}(\mathbf{A} + \mathbf{I})`, cached on :obj:`graph`
    (full graph)."""
    ei = graph.edge_index
    n = num_users + num_items

    def build():
        loops = torch.arange(n, device=ei.device)
        src = torch.cat([ei[1] + num_users, ei[0], loops])
        dst = torch.cat([ei[0], ei[1] + num_users, loops])
        deg = torch.zeros(n, device=ei.device).index_add_(
            0, dst, torch.ones(dst.numel(), device=ei.device))
        return Adjacency(torch.stack([src, dst]), 1.0 / deg[dst], (n, n),
                         graph.backend)

    return graph.cached('self_loop_mean_user_item',
                        (tensor_key(ei), graph.backend), build)


class LATTICE(Recommender):
    r"""The LATTICE model from `"Mining Latent Structures for Multimedia
    Recommendation" <https://arxiv.org/abs/2104.09036>`_ (ACM MM'21),
    reproducing MMRec's ``src/models/lattice.py`` (``cf_model:
    lightgcn``): an item–item graph learned from projected item features,
    mixed with the frozen graph of the raw features, propagates the item
    ID embeddings; a LightGCN on the user–item graph does the rest.

    1. **Frozen graph** (:meth:`set_graph`): per modality the
       cosine-weighted :math:`k`-NN graph of the raw features,
       symmetric-normalised (:func:`~pyg_brmrs.transforms.cosine_knn_graph`
       with ``weighting="cosine"``), :math:`\hat{\mathbf{O}}^{(m)}`.
    2. **Learned graph**: :func:`learned_knn_graph` of the projections
       :math:`\tilde{\mathbf{x}}^{(m)} = \mathbf{x}^{(m)}\mathbf{W}_m +
       \mathbf{b}_m` of the (fine-tuned) features, modality weights
       :math:`\mathbf{w} = \mathrm{softmax}(\boldsymbol{\omega})`
       (trainable). The item graph is
       :math:`\mathbf{G} = (1 - \lambda)\hat{\mathbf{A}} + \lambda \sum_m
       w_m \hat{\mathbf{O}}^{(m)}` (:math:`\lambda` = :obj:`lambda_coeff`).
    3. **Item structure**: :math:`\mathbf{h} = \mathbf{G}^{L_I}
       \mathbf{E}_I` (:obj:`num_item_layers`).
    4. **User–item LightGCN** over the row-normalised graph with self
       loops, :math:`\tilde{\mathbf{A}} = \mathbf{D}^{-1}(\mathbf{A} +
       \mathbf{I})` (LATTICE's normalisation, not LightGCN's
       symmetric one), mean over layers :math:`0..L`:
       :math:`[\mathbf{Z}_U; \mathbf{Z}'_I] = \frac{1}{L+1}\sum_{l=0}^{L}
       \tilde{\mathbf{A}}^l[\mathbf{E}_U; \mathbf{E}_I]`, and
       :math:`\mathbf{Z}_I = \mathbf{Z}'_I + \mathrm{normalize}(\mathbf{h})`.
    5. **Loss**: BPR :math:`+\ \lambda_{reg}` :meth:`regularization`
       (:math:`\frac{1}{2B}` of the squared norms of the batch's final
       rows); the reference trains with the learning-rate decay
       :math:`0.96^{e/50}` (the recipe's).

    **When the item graph is rebuilt** (the reference's rule): in
    training, by the first forward pass of every epoch
    (:meth:`on_epoch_start` marks it), which alone carries its gradient
    into :math:`\boldsymbol{\omega}`, the projections and the features;
    the other steps of the epoch propagate over it detached (a cached
    sparse operator). In evaluation mode, from the current parameters at
    every call (MMRec's ``full_sort_predict``), kept for the training
    steps that follow until the next epoch starts.

    **Departures** from the reference: the learned graph's neighbour
    lists come from a chunked top-:math:`k` (the reference: a dense
    :math:`|\mathcal{I}|^2` similarity), ties by the smaller index; an
    all-zero feature row has no neighbours (the reference: NaN). Any
    number of modalities (MMRec: image and text), initial weights equal.

    **Full graph only**
    (:attr:`~pyg_brmrs.nn.Recommender.supports_subgraph`): the learned
    graph's lists run over all items.

    **Initialisation** (MMRec): :func:`~torch.nn.init.xavier_uniform_` on
    the ID tables, :class:`~torch.nn.Linear`'s default on the projections,
    :math:`\boldsymbol{\omega} = \mathbf{0}` (equal weights).

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        feature_dims (Mapping[str, int]): modality → :math:`F_m`.
        embedding_dim (int, optional): :math:`d` (also the projections').
            (default: :obj:`64`)
        num_layers (int, optional): :math:`L` (``len(weight_size)``).
            (default: :obj:`2`)
        num_item_layers (int, optional): :math:`L_I` (``n_layers``).
            (default: :obj:`1`)
        knn_k (int, optional): :math:`k`. (default: :obj:`10`)
        lambda_coeff (float, optional): :math:`\lambda`, the frozen
            graph's share. (default: :obj:`0.9`)
        finetune_features (bool, optional): Train the features, as MMRec.
            (default: :obj:`True`)
        item_features (Mapping[str, torch.Tensor], optional): Their initial
            values (:meth:`from_data` passes the data's).
            (default: :obj:`None`)
        chunk_size (int, optional): Rows per similarity block.
            (default: :obj:`1024`)
        cached (bool, optional): Cache the graph operators while the same
            tensors are passed. (default: :obj:`True`)

    Shapes:
        - **input:** the :class:`~pyg_brmrs.nn.graph.RecGraph` of a
          :class:`~torch_geometric.data.HeteroData` with
          ``data['item'][f'x_{m}']`` :math:`(|\mathcal{I}|, F_m)` and the
          training ``edge_index``
        - **output:** :class:`~pyg_brmrs.nn.RecOutput`, branch
          :obj:`"fused"`: users :math:`(|\mathcal{U}|, d)`, items
          :math:`(|\mathcal{I}|, d)`
    """
    graph_edge_types = ()  # reads no kNN graph of the data
    supports_subgraph = False  # the learned graph spans every item

    def __init__(
        self,
        num_users: int,
        num_items: int,
        feature_dims: Mapping[str, int],
        embedding_dim: int = 64,
        *,
        num_layers: int = 2,
        num_item_layers: int = 1,
        knn_k: int = 10,
        lambda_coeff: float = 0.9,
        finetune_features: bool = True,
        item_features: Optional[Mapping[str, Tensor]] = None,
        chunk_size: int = 1024,
        cached: bool = True,
    ):
        super().__init__(num_users, num_items)
        self.feature_dims = check_feature_dims(feature_dims)
        self.modalities: List[str] = mmrec_modality_order(self.feature_dims)
        self.embedding_dim = check_int(embedding_dim, 'embedding_dim')
        self.num_layers = check_int(num_layers, 'num_layers', 0)
        self.num_item_layers = check_int(num_item_layers, 'num_item_layers',
                                         0)
        self.knn_k = check_int(knn_k, 'knn_k')
        self.lambda_coeff = check_float(lambda_coeff, 'lambda_coeff', 0.0,
                                        1.0)
        self.finetune_features = bool(finetune_features)
        self.chunk_size = check_int(chunk_size, 'chunk_size')
        self.cached = bool(cached)
        d = self.embedding_dim
        self.user_embedding = torch.nn.Embedding(num_users, d)
        self.item_embedding = torch.nn.Embedding(num_items, d)
        self.proj = torch.nn.ModuleDict({
            m: torch.nn.Linear(self.feature_dims[m], d)
            for m in self.modalities})
        self.modal_weight = torch.nn.Parameter(
            torch.zeros(len(self.modalities)))
        self.item_features = torch.nn.ParameterDict()
        if self.finetune_features:
            self.item_features = trainable_features(
                item_features, self.feature_dims, num_items, 'LATTICE')
        self._graph: Optional[Adjacency] = None  # the kept G, detached
        self._rebuild = True
        self.reset_parameters()

    def reset_parameters(self):
        r"""Re-initialises every parameter but the (fine-tuned) features."""
        torch.nn.init.xavier_uniform_(self.user_embedding.weight)
        torch.nn.init.xavier_uniform_(self.item_embedding.weight)
        for lin in self.proj.values():
            lin.reset_parameters()
        with torch.no_grad():
            self.modal_weight.zero_()
        self._graph, self._rebuild = None, True
        self.clear_cache()

    def set_graph(self, data: HeteroData,
                  schema: Optional[Schema] = None) -> 'LATTICE':
        r"""Records the degrees (see
        :meth:`~pyg_brmrs.nn.Recommender.set_graph`) and the frozen
        per-modality graphs ``"original_<m>"`` of the features of
        :obj:`data`."""
        super().set_graph(data, schema)
        data = self.schema.canonical(data)
        xs = check_features(data, self.feature_dims, self.num_items)
        register_original_graphs(self, xs)
        self._graph, self._rebuild = None, True
        return self

    def on_epoch_start(self, epoch: int,
                       generator: Optional[torch.Generator] = None) -> None:
        r"""Marks the learned graph for a rebuild by the epoch's first
        training step."""
        self._rebuild = True

    def item_graph(self, graph: RecGraph) -> Entries:
        r"""The entries of :math:`\mathbf{G}` (see the class description)
        from the current parameters, differentiable."""
        w = torch.softmax(self.modal_weight, dim=0)
        feats = feature_rows(graph, self)
        projected = {
            m: self.proj[m](feats[m].to(self.proj[m].weight.dtype))
            for m in self.modalities}
        row, col, val = learned_knn_graph(projected, w, self.knn_k,
                                          self.chunk_size)
        rows, cols = [row], [col]
        vals = [(1 - self.lambda_coeff) * val]
        for j, m in enumerate(self.modalities):
            g = self.own_graphs()[f'original_{m}']
            rows.append(g.edge_index[1])
            cols.append(g.edge_index[0])
            vals.append(self.lambda_coeff * w[j] * g.edge_weight)
        return torch.cat(rows), torch.cat(cols), torch.cat(vals)

    def _item_structure(self, graph: RecGraph) -> Tensor:
        r""":math:`\mathbf{G}^{L_I}\mathbf{E}_I`: through a freshly built,
        differentiable :math:`\mathbf{G}` on the epoch's first training
        step and in evaluation (which keep it for the next steps), through
        the kept one, detached, otherwise (the reference's rule)."""
        h = self.item_embedding.weight
        if self.training and not self._rebuild and self._graph is not None:
            for _ in range(self.num_item_layers):
                h = self._graph.matmul(h)
            return h
        entries = self.item_graph(graph)
        for _ in range(self.num_item_layers):
            h = propagate_entries(entries, h)
        row, col, val = entries
        ei, ew = torch.stack([col, row]), val.detach()
        if not ei.is_meta:  # (a pair in several parts: one summed edge)
            ei, ew = coalesce(ei, ew, self.num_items)
        self._graph = Adjacency(ei, ew, (self.num_items, self.num_items),
                                graph.backend)
        if self.training:
            self._rebuild = False
        return h

    def forward(self, graph: RecGraph) -> RecOutput:
        h = self._item_structure(graph)
        x = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        z = self_loop_mean_adjacency(graph, self.num_users,
                                     self.num_items).layer_mean(
            x, self.num_layers)
        user, item = z[:self.num_users], z[self.num_users:]
        return graph.output({FUSED: user},
                            {FUSED: item + F.normalize(h, dim=1)})

    def regularization(self, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor,
                       out: Optional[RecOutput] = None) -> Tensor:
        r""":math:`\frac{1}{2B}(\lVert \mathbf{z}_u \rVert^2 + \lVert
        \mathbf{z}_{i^+} \rVert^2 + \lVert \mathbf{z}_{i^-} \rVert^2)` of
        the batch's final representations (the reference's)."""
        return final_rows_regularization(self, out, users, pos_items,
                                         neg_items)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, modalities={self.modalities}, '
                f'embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers}, '
                f'num_item_layers={self.num_item_layers}, '
                f'knn_k={self.knn_k}, lambda_coeff={self.lambda_coeff})')
