from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_brmrs.data.schema import ITEM, Schema
from pyg_brmrs.loss import cosine_info_nce
from pyg_brmrs.nn.base import (
    FUSED,
    Recommender,
    RecOutput,
)
from pyg_brmrs.nn.graph import RecGraph
from pyg_brmrs.nn.graph.rec_graph import check_features
from pyg_brmrs.nn.models._common import (
    feature_rows,
    check_feature_dims,
    final_rows_regularization,
    mmrec_modality_order,
    trainable_features,
)
from pyg_brmrs.transforms.knn_graph import cosine_knn_graph
from pyg_brmrs.utils.checks import check_float, check_int
from pyg_brmrs.utils.rows import take_rows


class BehaviorAwareFuser(torch.nn.Module):
    r"""MGCN's behavior-aware fuser of :math:`M` modality views
    :math:`\mathbf{v}_m` of a node, guided by its behaviour
    representation :math:`\mathbf{c}`:

    .. math::
        \beta_m = \mathrm{softmax}_m\left(\mathbf{q}^{\top}
        \tanh(\mathbf{W}\mathbf{v}_m + \mathbf{b})\right), \quad
        \mathbf{v}_c = \sum_m \beta_m \mathbf{v}_m, \quad
        \tilde{\mathbf{v}}_m = \sigma(\mathbf{W}_m \mathbf{c} +
        \mathbf{b}_m) \odot (\mathbf{v}_m - \mathbf{v}_c),

    .. math::
        \mathbf{s} = \frac{1}{M + 1}\left(\mathbf{v}_c + \sum_m
        \tilde{\mathbf{v}}_m\right)

    (the common part shared by the modalities plus each modality's
    specific part, gated by the node's preference for it; MMRec divides by
    3 for its two modalities).

    Args:
        modalities (Sequence[str]): The modality names.
        dim (int): :math:`d`.

    Shapes:
        - **input:** views ``{m: (N, d)}``, behaviour :math:`(N, d)`
        - **output:** :math:`(N, d)`
    """
    def __init__(self, modalities: Sequence[str], dim: int):
        super().__init__()
        self.modalities = list(modalities)
        self.query = torch.nn.Sequential(
            torch.nn.Linear(dim, dim), torch.nn.Tanh(),
            torch.nn.Linear(dim, 1, bias=False))
        self.prefer = torch.nn.ModuleDict({
            m: torch.nn.Linear(dim, dim) for m in self.modalities})

    def reset_parameters(self):
        for lin in (self.query[0], self.query[2], *self.prefer.values()):
            lin.reset_parameters()

    def forward(self, views: Mapping[str, Tensor],
                behaviour: Tensor) -> Tensor:
        stacked = torch.stack([views[m] for m in self.modalities])  # [M,N,d]
        beta = torch.softmax(self.query(stacked), dim=0)  # [M, N, 1]
        common = (beta * stacked).sum(0)
        out = common
        for m in self.modalities:
            gate = torch.sigmoid(self.prefer[m](behaviour))
            out = out + gate * (views[m] - common)
        return out / (len(self.modalities) + 1)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.modalities})'


class MGCN(Recommender):
    r"""The MGCN model from `"Multi-View Graph Convolutional Network for
    Multimedia Recommendation" <https://arxiv.org/abs/2308.03588>`_,
    reproducing MMRec's ``src/models/mgcn.py``.

    1. **User–item view** (behaviour): LightGCN mean over layers
       :math:`0..L`, :math:`\mathbf{C} = \frac{1}{L+1}\sum_{l=0}^{L}
       \hat{\mathbf{A}}^l [\mathbf{E}_U; \mathbf{E}_I]`.
    2. **Behavior-guided purifier**: per modality, the item ID embedding
       gated by the projected features,
       :math:`\mathbf{h}^{(m)}_i = \mathbf{e}_i \odot \sigma(\mathbf{G}_m
       (\mathbf{W}_m \mathbf{x}^{(m)}_i + \mathbf{b}_m) + \mathbf{g}_m)`.
    3. **Item–item views**: :math:`L_s` layers over the modality's
       cosine-weighted :math:`k`-NN graph :math:`\hat{\mathbf{S}}_m`
       (:func:`~pyg_brmrs.transforms.cosine_knn_graph` with
       ``weighting="cosine"``, built once from the initial features),
       :math:`\mathbf{V}^{(m)}_I = \hat{\mathbf{S}}_m^{L_s}
       \mathbf{H}^{(m)}`, and the users' view
       :math:`\mathbf{V}^{(m)}_U = \mathbf{R}\mathbf{V}^{(m)}_I` with the
       normalised user–item block :math:`R_{ui} = 1/\sqrt{\deg(u)
       \deg(i)}` (:meth:`~pyg_brmrs.nn.graph.BipartiteAdjacency.user_block`).
    4. **Behavior-aware fuser** (:class:`BehaviorAwareFuser`) of the views
       with :math:`\mathbf{C}`: :math:`\mathbf{S}`; the representation
       :math:`\mathbf{Z} = \mathbf{C} + \mathbf{S}`,
       :math:`s(u, i) = \langle \mathbf{z}_u, \mathbf{z}_i \rangle`.
    5. **Loss** (with :class:`~pyg_brmrs.objectives.BPRObjective`, its
       ``reg_weight`` :math:`\lambda`): BPR :math:`+\ \lambda`
       :meth:`regularization` (:math:`\frac{1}{2B}(\lVert\mathbf{Z}_u
       \rVert^2 + \lVert\mathbf{Z}_{i^+}\rVert^2 + \lVert\mathbf{Z}_{i^-}
       \rVert^2)` of the batch's final rows) :math:`+` :meth:`auxiliary_loss`
       :math:`\lambda_{cl}[\mathrm{InfoNCE}(\mathbf{S}_{i^+},
       \mathbf{C}_{i^+}) + \mathrm{InfoNCE}(\mathbf{S}_{u},
       \mathbf{C}_{u})]` (:func:`~pyg_brmrs.loss.cosine_info_nce`, the
       batch's other rows of the second view as negatives, mean over the
       batch, temperature 0.2). The recipe
       trains with MMRec's step decay of the learning rate
       (``TrainConfig(lr_decay=(0.96, 50))``).

    **Features.** MMRec fine-tunes the raw features
    (``nn.Embedding.from_pretrained(..., freeze=False)``) and builds the
    :math:`k`-NN graphs from their initial values;
    :obj:`finetune_features=True` (default) does the same.

    **Departures**, without effect on the math: the regulariser divides
    by the batch's size (MMRec: by the configured batch size, which
    differs on the last, smaller batch of an epoch); InfoNCE as a
    log-sum-exp (MMRec: a ratio of exponentials); any number of modalities (the fuser's mean over
    :math:`M + 1` parts; MMRec: exactly image and text); ties of the
    :math:`k`-NN search broken by the smaller index.

    **Initialisation** (MMRec): :func:`~torch.nn.init.xavier_uniform_` on
    the ID tables, :class:`~torch.nn.Linear`'s default elsewhere.

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        feature_dims (Mapping[str, int]): modality → :math:`F_m`.
        embedding_dim (int, optional): :math:`d`. (default: :obj:`64`)
        num_layers (int, optional): :math:`L` (``n_ui_layers``).
            (default: :obj:`2`)
        num_item_layers (int, optional): :math:`L_s` (``n_layers``).
            (default: :obj:`1`)
        knn_k (int, optional): Neighbours per item. (default: :obj:`10`)
        cl_weight (float, optional): :math:`\lambda_{cl}` (``cl_loss``,
            grid :math:`\{0.001, 0.01, 0.1\}`). (default: :obj:`0.01`)
        temperature (float, optional): Of the InfoNCE terms.
            (default: :obj:`0.2`)
        finetune_features (bool, optional): Train the features, as MMRec.
            (default: :obj:`True`)
        item_features (Mapping[str, torch.Tensor], optional): The initial
            features when :obj:`finetune_features=True`.
            (default: :obj:`None`)
        chunk_size (int, optional): Rows per block of the :math:`k`-NN
            search. (default: :obj:`1024`)
        cached (bool, optional): Cache the graph operators while the same
            tensors are passed. (default: :obj:`True`)

    The :math:`k`-NN graphs are the model's own graphs ``graph.own(
    "knn_<m>")``, recorded by :meth:`set_graph`; on a mini-batch subgraph
    they are restricted to the batch's items and scaled like every batch
    operator (see :class:`~pyg_brmrs.nn.graph.RecGraph`).

    Shapes:
        - **input:** the :class:`~pyg_brmrs.nn.graph.RecGraph` of a
          :class:`~torch_geometric.data.HeteroData` with
          ``data['item'][f'x_{m}']`` :math:`(|\mathcal{I}|, F_m)` and the
          training ``edge_index``, or of a mini-batch subgraph
        - **output:** :class:`~pyg_brmrs.nn.RecOutput`, branch
          :obj:`"fused"`: :math:`\mathbf{Z}` users
          :math:`(|\mathcal{U}|, d)`, items :math:`(|\mathcal{I}|, d)`;
          ``extras``: ``"side_user"``, ``"side_item"``
          (:math:`\mathbf{S}`), ``"content_user"``, ``"content_item"``
          (:math:`\mathbf{C}`)
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
        knn_k: int = 10,
        cl_weight: float = 0.01,
        temperature: float = 0.2,
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
        self.purifier = torch.nn.ModuleDict({
            m: torch.nn.Linear(d, d) for m in self.modalities})
        self.fuser = BehaviorAwareFuser(self.modalities, d)
        self.item_features = torch.nn.ParameterDict()
        if self.finetune_features:
            self.item_features = trainable_features(
                item_features, self.feature_dims, num_items, 'MGCN')
        self.reset_parameters()

    def reset_parameters(self):
        r"""Re-initialises every parameter but the (fine-tuned) features."""
        torch.nn.init.xavier_uniform_(self.user_embedding.weight)
        torch.nn.init.xavier_uniform_(self.item_embedding.weight)
        for lin in [*self.proj.values(), *self.purifier.values()]:
            lin.reset_parameters()
        self.fuser.reset_parameters()
        self.clear_cache()

    def set_graph(self, data: HeteroData,
                  schema: Optional[Schema] = None) -> 'MGCN':
        r"""Records the degrees (see
        :meth:`~pyg_brmrs.nn.Recommender.set_graph`) and, per modality, the
        cosine-weighted :math:`k`-NN graph of the features of :obj:`data`
        (the model's graph ``"knn_<m>"``)."""
        super().set_graph(data, schema)
        xs = check_features(self.schema.canonical(data), self.feature_dims,
                            self.num_items)
        device = self.item_embedding.weight.device
        for m in self.modalities:
            ei, ew = cosine_knn_graph(xs[m], self.knn_k, 'cosine', 'sym',
                                      self.chunk_size)
            self.register_graph(f'knn_{m}', ITEM, ei.to(device),
                                ew.to(device))
        return self

    def views(self, graph: RecGraph) -> Tuple[Dict[str, Tensor],
                                              Dict[str, Tensor]]:
        r"""The modality views ``({m: V_U}, {m: V_I})`` (steps 2 and 3)."""
        feats = feature_rows(graph, self)
        e_item = graph.item_rows(self.item_embedding.weight)
        to_users = graph.user_item().user_block()
        users, items = {}, {}
        for m in self.modalities:
            lin = self.proj[m]
            h = e_item * torch.sigmoid(self.purifier[m](
                lin(feats[m].to(lin.weight.dtype))))
            knn = graph.own(f'knn_{m}')
            for _ in range(self.num_item_layers):
                h = knn.matmul(h)
            items[m] = h
            users[m] = to_users.matmul(h)
        return users, items

    def forward(self, graph: RecGraph) -> RecOutput:
        c_user, c_item = graph.user_item().layer_mean(
            graph.user_rows(self.user_embedding.weight),
            graph.item_rows(self.item_embedding.weight), self.num_layers)
        v_user, v_item = self.views(graph)
        s_user = self.fuser(v_user, c_user)
        s_item = self.fuser(v_item, c_item)
        return graph.output(
            {FUSED: c_user + s_user}, {FUSED: c_item + s_item},
            extras={'side_user': s_user, 'side_item': s_item,
                    'content_user': c_user, 'content_item': c_item})

    def auxiliary_loss(self, out: RecOutput, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor) -> Dict[str, Tensor]:
        r"""``{"view_cl": cl_weight * (InfoNCE of the items + of the
        users)}`` (see the class description); empty for
        :obj:`cl_weight=0`."""
        if self.cl_weight == 0:
            return {}
        ex, tau = out.extras, self.temperature
        s_i = take_rows(ex['side_item'], pos_items)
        c_i = take_rows(ex['content_item'], pos_items)
        s_u = take_rows(ex['side_user'], users)
        c_u = take_rows(ex['content_user'], users)
        cl = cosine_info_nce(s_i, c_i, c_i, tau) + \
            cosine_info_nce(s_u, c_u, c_u, tau)
        return {'view_cl': self.cl_weight * cl}

    def regularization(self, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor,
                       out: Optional[RecOutput] = None) -> Tensor:
        r""":math:`\frac{1}{2B}(\lVert \mathbf{Z}_u \rVert^2 + \lVert
        \mathbf{Z}_{i^+} \rVert^2 + \lVert \mathbf{Z}_{i^-} \rVert^2)` of
        the batch's final representations (MMRec's ``bpr_loss``
        regulariser)."""
        return final_rows_regularization(self, out, users, pos_items,
                                         neg_items)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, modalities={self.modalities}, '
                f'embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers}, '
                f'num_item_layers={self.num_item_layers}, '
                f'knn_k={self.knn_k}, cl_weight={self.cl_weight})')
