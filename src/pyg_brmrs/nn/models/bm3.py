from typing import Dict, List, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from pyg_brmrs.nn.base import FUSED, Recommender, RecOutput
from pyg_brmrs.nn.graph import RecGraph
from pyg_brmrs.nn.models._common import (
    feature_rows,
    check_feature_dims,
    frobenius_regularization,
    trainable_features,
)
from pyg_brmrs.utils.checks import check_float, check_int
from pyg_brmrs.utils.rows import take_rows


def negative_cosine(online: Tensor, target: Tensor) -> Tensor:
    r""":math:`1 - \frac{1}{B}\sum_b \cos(\mathbf{o}_b, \mathbf{t}_b)`
    for ``[B, d]`` rows (the target is not differentiated)."""
    return 1 - F.cosine_similarity(online, target.detach(), dim=-1).mean()


class BM3(Recommender):
    r"""The BM3 model from `"Bootstrap Latent Representations for
    Multi-modal Recommendation" <https://arxiv.org/abs/2207.05969>`_,
    reproducing MMRec's ``src/models/bm3.py``: a negative-free bootstrap
    that aligns each user with its items and each item's modality views with
    its ID view, the targets being dropout-perturbed copies of the online
    representations.

    1. **Online representations.** LightGCN over the symmetric-normalised
       user–item graph, mean over layers :math:`0..L`, with the item ID
       embedding added back:
       :math:`[\mathbf{Z}_U; \mathbf{Z}'_I] = \frac{1}{L+1}\sum_{l=0}^{L}
       \hat{\mathbf{A}}^l [\mathbf{E}_U; \mathbf{E}_I]`,
       :math:`\mathbf{Z}_I = \mathbf{Z}'_I + \mathbf{E}_I`; the modality
       views :math:`\mathbf{T}^{(m)} = \mathbf{X}^{(m)} \mathbf{W}_m +
       \mathbf{b}_m \in \mathbb{R}^{|\mathcal{I}| \times d}`.
    2. **Targets** (no gradient): :math:`\tilde{\mathbf{Z}} =
       \mathrm{dropout}_p(\mathbf{Z})`, :math:`\tilde{\mathbf{T}}^{(m)} =
       \mathrm{dropout}_p(\mathbf{T}^{(m)})` (each element zeroed with
       probability :math:`p`), drawn in training mode only.
    3. **Loss** of a batch of pairs :math:`(u_b, i_b)` with the shared
       predictor :math:`g(\mathbf{z}) = \mathbf{W}_g\mathbf{z} +
       \mathbf{b}_g` and :math:`c(\mathbf{a}, \mathbf{b}) = 1 -
       \frac{1}{B}\sum_b \cos(\mathbf{a}_b, \mathbf{b}_b)`
       (:meth:`positive_loss`, no negatives:
       :class:`~pyg_brmrs.objectives.NegativeFreeObjective`):

       .. math::
           \mathcal{L} = c(g(\mathbf{z}_u), \tilde{\mathbf{z}}_i) +
           c(g(\mathbf{z}_i), \tilde{\mathbf{z}}_u) + \lambda_{cl}\sum_m
           \left[c(g(\mathbf{t}^{(m)}_i), \tilde{\mathbf{z}}_i) +
           c(g(\mathbf{t}^{(m)}_i), \tilde{\mathbf{t}}^{(m)}_i)\right] +
           \lambda \frac{\lVert \mathbf{Z}_U \rVert_F + \lVert
           \mathbf{Z}_I \rVert_F}{|\mathcal{I}|}

       (:math:`\lambda_{cl}` = :obj:`cl_weight`; :math:`\lambda` is the
       objective's ``reg_weight`` over :meth:`regularization`, MMRec's
       ``EmbLoss`` of the whole online tables).
    4. **Scores** :math:`s(u, i) = \langle g(\mathbf{z}_u),
       g(\mathbf{z}_i) \rangle` (the ranking branch holds the predicted
       representations).

    **Features.** MMRec fine-tunes the raw features
    (``nn.Embedding.from_pretrained(..., freeze=False)``, trained through
    the modality terms); :obj:`finetune_features=True` (default) does the
    same, :obj:`False` reads them frozen from the data.

    **Departures** from the reference, each without effect on the math of
    a training step: the targets' dropout is drawn in training mode only
    (MMRec's ``F.dropout`` is always on, but its loss is only computed in
    training); the degrees of the normalised graph are exact (MMRec adds
    :math:`10^{-7}`). On a mini-batch subgraph the regulariser's norms run
    over the batch's rows (divided by its item rows), the rest is per row.

    **Initialisation** (MMRec): :func:`~torch.nn.init.xavier_uniform_` on the
    ID tables, :func:`~torch.nn.init.xavier_normal_` on the weights of the
    predictor and of the projections (their biases keep
    :class:`~torch.nn.Linear`'s default).

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        feature_dims (Mapping[str, int]): modality → feature size
            :math:`F_m` (use :meth:`from_data`).
        embedding_dim (int, optional): :math:`d` (MMRec's
            ``embedding_size``). (default: :obj:`64`)
        num_layers (int, optional): LightGCN layers :math:`L` (MMRec
            ``n_layers``, grid :math:`\{1, 2\}`). (default: :obj:`1`)
        dropout (float, optional): The targets' dropout :math:`p` (grid
            :math:`\{0.3, 0.5\}`). (default: :obj:`0.5`)
        cl_weight (float, optional): :math:`\lambda_{cl}`.
            (default: :obj:`2.0`)
        finetune_features (bool, optional): Train the features, as MMRec.
            (default: :obj:`True`)
        item_features (Mapping[str, torch.Tensor], optional): The initial
            features when :obj:`finetune_features=True` (:meth:`from_data`
            passes the data's). (default: :obj:`None`)
        cached (bool, optional): Cache the graph operators while the same
            tensors are passed. (default: :obj:`True`)

    Shapes:
        - **input:** the :class:`~pyg_brmrs.nn.graph.RecGraph` of a
          :class:`~torch_geometric.data.HeteroData` with
          ``data['item'][f'x_{m}']`` :math:`(|\mathcal{I}|, F_m)` and the
          training ``edge_index`` :math:`(2, |E|)`, or of a mini-batch
          subgraph
        - **output:** :class:`~pyg_brmrs.nn.RecOutput`, branch
          :obj:`"fused"`: :math:`g(\mathbf{Z}_U)` :math:`(|\mathcal{U}|, d)`,
          :math:`g(\mathbf{Z}_I)` :math:`(|\mathcal{I}|, d)`; ``extras``:
          ``"user_online"`` :math:`\mathbf{Z}_U`, ``"item_online"``
          :math:`\mathbf{Z}_I` and ``f"online_{m}"``
          :math:`\mathbf{T}^{(m)}` :math:`(|\mathcal{I}|, d)`
    """
    graph_edge_types = ()  # reads no kNN graph of the data

    def __init__(
        self,
        num_users: int,
        num_items: int,
        feature_dims: Mapping[str, int],
        embedding_dim: int = 64,
        *,
        num_layers: int = 1,
        dropout: float = 0.5,
        cl_weight: float = 2.0,
        finetune_features: bool = True,
        item_features: Optional[Mapping[str, Tensor]] = None,
        cached: bool = True,
    ):
        super().__init__(num_users, num_items)
        self.feature_dims = check_feature_dims(feature_dims)
        self.modalities: List[str] = list(self.feature_dims)
        self.embedding_dim = check_int(embedding_dim, 'embedding_dim')
        self.num_layers = check_int(num_layers, 'num_layers', 0)
        self.dropout = check_float(dropout, 'dropout', 0.0, 1.0)
        if self.dropout == 1.0:
            raise ValueError("'dropout' must be below 1 (a target of zeros "
                             "has no direction)")
        self.cl_weight = check_float(cl_weight, 'cl_weight')
        self.finetune_features = bool(finetune_features)
        self.cached = bool(cached)
        d = self.embedding_dim
        self.user_embedding = torch.nn.Embedding(num_users, d)
        self.item_embedding = torch.nn.Embedding(num_items, d)
        self.predictor = torch.nn.Linear(d, d)
        self.proj = torch.nn.ModuleDict({
            m: torch.nn.Linear(self.feature_dims[m], d)
            for m in self.modalities
        })
        self.item_features = torch.nn.ParameterDict()
        if self.finetune_features:
            self.item_features = trainable_features(
                item_features, self.feature_dims, num_items, 'BM3')
        self.reset_parameters()

    def reset_parameters(self):
        r"""Re-initialises every parameter but the (fine-tuned) features."""
        torch.nn.init.xavier_uniform_(self.user_embedding.weight)
        torch.nn.init.xavier_uniform_(self.item_embedding.weight)
        for lin in [self.predictor, *self.proj.values()]:
            lin.reset_parameters()
            torch.nn.init.xavier_normal_(lin.weight)
        self.clear_cache()

    def forward(self, graph: RecGraph) -> RecOutput:
        e_item = graph.item_rows(self.item_embedding.weight)
        user, item = graph.user_item().layer_mean(
            graph.user_rows(self.user_embedding.weight), e_item,
            self.num_layers)
        item = item + e_item
        feats = feature_rows(graph, self)
        extras = {'user_online': user, 'item_online': item}
        for m in self.modalities:
            lin = self.proj[m]
            extras[f'online_{m}'] = lin(feats[m].to(lin.weight.dtype))
        return graph.output({FUSED: self.predictor(user)},
                            {FUSED: self.predictor(item)}, extras=extras)

    def _target(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return F.dropout(x, self.dropout, training=self.training)

    def positive_loss(self, out: RecOutput, users: Tensor,
                      pos_items: Tensor) -> Dict[str, Tensor]:
        r"""``{"align": user–item terms, "modality_align": cl_weight *
        modality terms}`` of the batch (see the class description; the
        targets are drawn here, with torch's global generator)."""
        user_t = self._target(out.extras['user_online'])
        item_t = take_rows(self._target(out.extras['item_online']),
                           pos_items)
        align = (negative_cosine(take_rows(out.user_emb, users), item_t)
                 + negative_cosine(take_rows(out.item_emb, pos_items),
                                   take_rows(user_t, users)))
        terms = {'align': align}
        if self.cl_weight > 0:
            total = align.new_zeros(())
            for m in self.modalities:
                online = out.extras[f'online_{m}']
                pred = self.predictor(take_rows(online, pos_items))
                total = total + negative_cosine(pred, item_t) + \
                    negative_cosine(pred, take_rows(self._target(online),
                                                    pos_items))
            terms['modality_align'] = self.cl_weight * total
        return terms

    def regularization(self, users: Tensor, pos_items: Tensor,
                       neg_items: Optional[Tensor] = None,
                       out: Optional[RecOutput] = None) -> Tensor:
        r""":math:`(\lVert \mathbf{Z}_U \rVert_F + \lVert \mathbf{Z}_I
        \rVert_F) / |\mathcal{I}|` of the online tables of :obj:`out`
        (MMRec's ``EmbLoss``; the batch does not enter)."""
        if out is None:
            raise ValueError("'BM3.regularization' needs the forward output "
                             "'out' (it regularises the online tables)")
        return frobenius_regularization(out.extras['user_online'],
                                        out.extras['item_online'])

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, modalities={self.modalities}, '
                f'embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers}, dropout={self.dropout}, '
                f'cl_weight={self.cl_weight})')
