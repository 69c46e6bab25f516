from typing import Dict, List, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.utils import coalesce

from pyg_brmrs.data.schema import Schema
from pyg_brmrs.loss import product_logsumexp
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
from pyg_brmrs.nn.models.lattice import (
    learned_knn_graph,
    propagate_entries,
    register_original_graphs,
    self_loop_mean_adjacency,
)
from pyg_brmrs.utils.checks import check_float, check_int


def grace_contrast(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    r"""MICRO's contrastive loss of two row-aligned views ``[N, d]`` (the
    GRACE form): with :math:`s` the cosine similarity and
    :math:`\tau` = :obj:`temperature`,

    .. math::
        \ell_i = -\log \frac{e^{s(\mathbf{a}_i, \mathbf{b}_i)/\tau}}
        {\sum_j e^{s(\mathbf{a}_i, \mathbf{a}_j)/\tau} + \sum_j
        e^{s(\mathbf{a}_i, \mathbf{b}_j)/\tau} - e^{1/\tau}},

    the mean over the :math:`N` rows (:math:`\mathbf{a}` = :obj:`z1`,
    :math:`\mathbf{b}` = :obj:`z2`; the removed term is the row's
    similarity with itself). The denominator is one log-sum-exp over the
    :math:`2N` candidates (:func:`~pyg_brmrs.loss.product_logsumexp`, no
    overflow for small :math:`\tau`; the reference divides exponentials).
    """
    a, b = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    q = a / temperature
    lse = product_logsumexp(q, torch.cat([a, b]), bound=1.0 / temperature)
    # log(exp(lse) - exp(1/tau)): the self term left out
    denom = lse + torch.log1p(-torch.exp(1.0 / temperature - lse).clamp(
        max=1 - 1e-12))
    return (denom - (q * b).sum(-1)).mean()


class MICRO(Recommender):
    r"""The MICRO model from `"Latent Structure Mining with Contrastive
    Modality Fusion for Multimedia Recommendation"
    <https://arxiv.org/abs/2111.00678>`_ (IEEE TKDE'22), reproducing its
    authors' ``codes/Models.py`` (``cf_model = lightgcn``): LATTICE with
    one learned item graph per modality, an attention fusion of the
    modality-specific item representations and a contrastive term that
    pulls each towards the fused one.

    1. **Per-modality item graphs**: :math:`\mathbf{G}^{(m)} =
       (1 - \lambda)\hat{\mathbf{A}}^{(m)} + \lambda\hat{\mathbf{O}}^{(m)}`,
       the learned graph of the projected (fine-tuned) features
       (:func:`~pyg_brmrs.nn.models.lattice.learned_knn_graph` of one
       modality) and the frozen one of the raw features
       (:func:`~pyg_brmrs.transforms.cosine_knn_graph`, cosine-weighted,
       symmetric-normalised); :math:`\mathbf{h}^{(m)} =
       (\mathbf{G}^{(m)})^{L_I}\mathbf{E}_I`.
    2. **Attention fusion**: :math:`\alpha_{i,m} = \mathrm{softmax}_m(
       \mathbf{q}^{\top}\tanh(\mathbf{W}\mathbf{h}^{(m)}_i + \mathbf{b}))`,
       :math:`\mathbf{h}_i = \sum_m \alpha_{i,m}\mathbf{h}^{(m)}_i`.
    3. **User–item LightGCN** over :math:`\mathbf{D}^{-1}(\mathbf{A} +
       \mathbf{I})`, mean over layers :math:`0..L`, items
       :math:`+\,\mathrm{normalize}(\mathbf{h})` (as LATTICE).
    4. **Loss**: BPR :math:`+\ \lambda_{reg}` :meth:`regularization`
       :math:`+` :meth:`auxiliary_loss`, :math:`\lambda_c \sum_m`
       :func:`grace_contrast` :math:`(\mathbf{h}^{(m)}, \mathbf{h})` over
       all items (:obj:`cl_weight` = the reference's ``loss_ratio``,
       :math:`\tau = 0.5`).

    The graphs are rebuilt as LATTICE's (:meth:`on_epoch_start`: by the
    epoch's first training step, the only one that differentiates them;
    at every evaluation).

    **Departures** from the reference: its regulariser divides by the
    configured batch size (1024), here by the batch's; the learned
    graphs' lists come from a chunked top-:math:`k` (ties by the smaller
    index); any number of modalities (MICRO: image and text). MICRO's own
    experiments split each user's interactions 8:1:1 at random and stop
    after 10 evaluations without improvement; the package's protocol (the
    data's split, the trainer's patience) applies instead.

    **Full graph only**: the learned graphs and the contrast span every
    item.

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        feature_dims (Mapping[str, int]): modality → :math:`F_m`.
        embedding_dim (int, optional): :math:`d`. (default: :obj:`64`)
        num_layers (int, optional): :math:`L` (``len(weight_size)``).
            (default: :obj:`2`)
        num_item_layers (int, optional): :math:`L_I` (``layers``).
            (default: :obj:`1`)
        knn_k (int, optional): :math:`k` (``topk``). (default: :obj:`10`)
        lambda_coeff (float, optional): :math:`\lambda`.
            (default: :obj:`0.9`)
        cl_weight (float, optional): :math:`\lambda_c` (``loss_ratio``).
            (default: :obj:`0.03`)
        temperature (float, optional): :math:`\tau`. (default: :obj:`0.5`)
        finetune_features (bool, optional): Train the features, as MICRO.
            (default: :obj:`True`)
        item_features (Mapping[str, torch.Tensor], optional): Their initial
            values (:meth:`from_data` passes the data's).
            (default: :obj:`None`)
        chunk_size (int, optional): Rows per similarity block.
            (default: :obj:`1024`)
        cached (bool, optional): Cache the graph operators while the same
            tensors are passed. (default: :obj:`True`)

    Shapes:
        - **input:** as :class:`~pyg_brmrs.nn.LATTICE`
        - **output:** :class:`~pyg_brmrs.nn.RecOutput`, branch
          :obj:`"fused"`: users :math:`(|\mathcal{U}|, d)`, items
          :math:`(|\mathcal{I}|, d)`; ``extras``: ``"fused_items"``
          (:math:`\mathbf{h}`) and ``f"items_{m}"``
          (:math:`\mathbf{h}^{(m)}`), :math:`(|\mathcal{I}|, d)`
    """
    graph_edge_types = ()  # reads no kNN graph of the data
    supports_subgraph = False  # the learned graphs span every item

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
        cl_weight: float = 0.03,
        temperature: float = 0.5,
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
        self.cl_weight = check_float(cl_weight, 'cl_weight')
        self.temperature = check_float(temperature, 'temperature',
                                       strict_minimum=True)
        self.finetune_features = bool(finetune_features)
        self.chunk_size = check_int(chunk_size, 'chunk_size')
        self.cached = bool(cached)
        d = self.embedding_dim
        self.user_embedding = torch.nn.Embedding(num_users, d)
        self.item_embedding = torch.nn.Embedding(num_items, d)
        self.proj = torch.nn.ModuleDict({
            m: torch.nn.Linear(self.feature_dims[m], d)
            for m in self.modalities})
        self.query = torch.nn.Sequential(
            torch.nn.Linear(d, d), torch.nn.Tanh(),
            torch.nn.Linear(d, 1, bias=False))
        self.item_features = torch.nn.ParameterDict()
        if self.finetune_features:
            self.item_features = trainable_features(
                item_features, self.feature_dims, num_items, 'MICRO')
        self._graphs: Optional[Dict[str, Adjacency]] = None  # detached
        self._rebuild = True
        self.reset_parameters()

    def reset_parameters(self):
        r"""Re-initialises every parameter but the (fine-tuned) features."""
        torch.nn.init.xavier_uniform_(self.user_embedding.weight)
        torch.nn.init.xavier_uniform_(self.item_embedding.weight)
        for lin in self.proj.values():
            lin.reset_parameters()
        self.query[0].reset_parameters()
        self.query[2].reset_parameters()
        self._graphs, self._rebuild = None, True
        self.clear_cache()

    def set_graph(self, data: HeteroData,
                  schema: Optional[Schema] = None) -> 'MICRO':
        r"""Records the degrees and the frozen graphs ``"original_<m>"``
        (as :meth:`LATTICE.set_graph <pyg_brmrs.nn.LATTICE.set_graph>`)."""
        super().set_graph(data, schema)
        data = self.schema.canonical(data)
        xs = check_features(data, self.feature_dims, self.num_items)
        register_original_graphs(self, xs)
        self._graphs, self._rebuild = None, True
        return self

    def on_epoch_start(self, epoch: int,
                       generator: Optional[torch.Generator] = None) -> None:
        r"""Marks the learned graphs for a rebuild by the epoch's first
        training step."""
        self._rebuild = True

    def _modality_items(self, graph: RecGraph) -> Dict[str, Tensor]:
        r""":math:`\mathbf{h}^{(m)}` of every modality (step 1)."""
        e = self.item_embedding.weight
        out = {}
        if self.training and not self._rebuild and self._graphs is not None:
            for m, op in self._graphs.items():
                h = e
                for _ in range(self.num_item_layers):
                    h = op.matmul(h)
                out[m] = h
            return out
        feats = feature_rows(graph, self)
        one = e.new_ones(1)
        graphs = {}
        for m in self.modalities:
            x = self.proj[m](feats[m].to(self.proj[m].weight.dtype))
            row, col, val = learned_knn_graph({m: x}, one, self.knn_k,
                                              self.chunk_size)
            g = self.own_graphs()[f'original_{m}']
            row = torch.cat([row, g.edge_index[1]])
            col = torch.cat([col, g.edge_index[0]])
            val = torch.cat([(1 - self.lambda_coeff) * val,
                             self.lambda_coeff * g.edge_weight])
            h = e
            for _ in range(self.num_item_layers):
                h = propagate_entries((row, col, val), h)
            out[m] = h
            ei, ew = torch.stack([col, row]), val.detach()
            if not ei.is_meta:
                ei, ew = coalesce(ei, ew, self.num_items)
            graphs[m] = Adjacency(ei, ew, (self.num_items, self.num_items),
                                  graph.backend)
        self._graphs = graphs
        if self.training:
            self._rebuild = False
        return out

    def forward(self, graph: RecGraph) -> RecOutput:
        items = self._modality_items(graph)
        stacked = torch.stack([items[m] for m in self.modalities], dim=1)
        alpha = torch.softmax(self.query(stacked).squeeze(-1), dim=1)
        h = (alpha.unsqueeze(-1) * stacked).sum(1)
        x = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        z = self_loop_mean_adjacency(graph, self.num_users,
                                     self.num_items).layer_mean(
            x, self.num_layers)
        user, item = z[:self.num_users], z[self.num_users:]
        extras = {'fused_items': h,
                  **{f'items_{m}': items[m] for m in self.modalities}}
        return graph.output({FUSED: user},
                            {FUSED: item + F.normalize(h, dim=1)},
                            extras=extras)

    def auxiliary_loss(self, out: RecOutput, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor) -> Dict[str, Tensor]:
        r"""``{"contrast": cl_weight * sum_m grace_contrast(h_m, h)}`` over
        all items (empty for :obj:`cl_weight=0`)."""
        if self.cl_weight == 0:
            return {}
        fused = out.extras['fused_items']
        total = sum(grace_contrast(out.extras[f'items_{m}'], fused,
                                   self.temperature)
                    for m in self.modalities)
        return {'contrast': self.cl_weight * total}

    def regularization(self, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor,
                       out: Optional[RecOutput] = None) -> Tensor:
        r""":math:`\frac{1}{2B}(\lVert \mathbf{z}_u \rVert^2 + \lVert
        \mathbf{z}_{i^+} \rVert^2 + \lVert \mathbf{z}_{i^-} \rVert^2)` of
        the batch's final representations."""
        return final_rows_regularization(self, out, users, pos_items,
                                         neg_items)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, modalities={self.modalities}, '
                f'embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers}, '
                f'num_item_layers={self.num_item_layers}, '
                f'knn_k={self.knn_k}, lambda_coeff={self.lambda_coeff}, '
                f'cl_weight={self.cl_weight})')

