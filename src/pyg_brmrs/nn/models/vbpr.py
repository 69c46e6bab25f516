from typing import List, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from pyg_brmrs.nn.base import FUSED, Recommender, RecOutput
from pyg_brmrs.nn.graph import RecGraph
from pyg_brmrs.nn.models._common import (
    batch_regularization,
    check_feature_dims,
    check_reg_norm,
)
from pyg_brmrs.utils.checks import check_int
from pyg_brmrs.utils.rows import take_rows


class VBPR(Recommender):
    r"""The VBPR model from `"VBPR: Visual Bayesian Personalized Ranking from
    Implicit Feedback" <https://arxiv.org/abs/1510.01784>`_, in MMRec's
    version (``src/models/vbpr.py``), for any set of modalities.

    With the item features of all modalities concatenated,
    :math:`\mathbf{f}_i = [\mathbf{x}^{(1)}_i \,\Vert\, \dots \,\Vert\,
    \mathbf{x}^{(M)}_i] \in \mathbb{R}^{F}`, :math:`F = \sum_m F_m`,

    .. math::
        \mathbf{q}_i = \left[\mathbf{e}_i \,\Vert\, \mathbf{W}\mathbf{f}_i +
        \mathbf{b}\right] \in \mathbb{R}^{2d}, \qquad
        \mathbf{p}_u = \left[\boldsymbol{\gamma}_u \,\Vert\,
        \boldsymbol{\theta}_u\right] \in \mathbb{R}^{2d}, \qquad
        s(u, i) = \langle \mathbf{p}_u, \mathbf{q}_i \rangle,

    where :math:`\mathbf{e}_i \in \mathbb{R}^d` is a free item embedding,
    :math:`\mathbf{W} \in \mathbb{R}^{d \times F}` one linear layer over the
    concatenated features, and :math:`\mathbf{p}_u` one free
    :math:`2d`-vector (its first half :math:`\boldsymbol{\gamma}_u` meets the
    collaborative part, its second half :math:`\boldsymbol{\theta}_u` the
    visual part). **Dimensions follow MMRec**: with ``embedding_size`` =
    :obj:`embedding_dim` = :math:`d`, users are ``[U, 2d]`` and items
    ``[I, d + d]``, so the scores are inner products in :math:`2d = 128`
    dimensions for :math:`d = 64`. As in MMRec, there are no bias terms
    :math:`\beta_i, \beta'^{\top}\mathbf{f}_i` of the original paper and the
    features are not fine-tuned. (MMRec concatenates text before image; the
    order is irrelevant, here it is the sorted modality order.)

    **Initialisation** (MMRec): :func:`~torch.nn.init.xavier_uniform_` on
    the user ``[U, 2d]`` and item ``[I, d]`` tables,
    :func:`~torch.nn.init.xavier_normal_` on :math:`\mathbf{W}`,
    :math:`\mathbf{b} = 0`.

    **Dropout.** MMRec's ``forward`` has a dropout argument that is always 0
    during training and evaluation; :obj:`dropout` (default :obj:`0`) applies
    it to the entries of :math:`\mathbf{P}` and :math:`\mathbf{Q}` in
    training mode only. This is feature dropout, as :obj:`dropout` means in
    PyG; VBPR uses no graph, so it has no :obj:`edge_dropout` (the pruning
    of the user–item graph of :class:`~pyg_brmrs.nn.FREEDOM` and
    :class:`~pyg_brmrs.nn.BRMRS`).

    **Regularisation** (MMRec): :meth:`regularization` penalises the *full*
    representations of the mini-batch, :math:`\frac{1}{B}(\lVert
    \mathbf{P}_U \rVert_F + \lVert \mathbf{Q}_{I^+} \rVert_F + \lVert
    \mathbf{Q}_{I^-} \rVert_F)` (MMRec's ``EmbLoss`` on ``user_e, pos_e,
    neg_e``), which includes the projected features
    :math:`\mathbf{W}\mathbf{f}_i + \mathbf{b}` and so regularises
    :math:`\mathbf{W}, \mathbf{b}` too. It uses the feature tensors of the
    most recent :meth:`forward` call (the objective always calls
    :meth:`forward` first). MMRec's grid for its weight is
    :math:`\{2, 1, 10^{-1}, \dots, 10^{-5}\}`.

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        feature_dims (Mapping[str, int]): modality name → feature size
            :math:`F_m` (use :meth:`from_data`).
        embedding_dim (int, optional): :math:`d`. (default: :obj:`64`)
        dropout (float, optional): Dropout on the entries of the user and
            item representations in training mode. (default: :obj:`0.0`)
        reg_norm (str, optional): :obj:`"frobenius"` (MMRec) or
            :obj:`"squared"`. (default: :obj:`"frobenius"`)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.HeteroData` with
          ``data['item'][f'x_{m}']`` :math:`(|\mathcal{I}|, F_m)` for every
          modality, or a mini-batch subgraph (``n_id`` on the node stores,
          the batch's features :math:`(I_b, F_m)`; no message passing, so
          every batch node gets its full-graph representation)
        - **output:** :class:`~pyg_brmrs.nn.RecOutput` with one branch
          :obj:`"fused"`: users :math:`(|\mathcal{U}|, 2d)`, items
          :math:`(|\mathcal{I}|, 2d)` (:math:`(U_b, 2d)`, :math:`(I_b,
          2d)` for a subgraph)
    """
    graph_edge_types = ()  # reads no kNN graph of the data

    def __init__(self, num_users: int, num_items: int,
                 feature_dims: Mapping[str, int], embedding_dim: int = 64,
                 dropout: float = 0.0, reg_norm: str = 'frobenius'):
        super().__init__(num_users, num_items)
        self.feature_dims = check_feature_dims(feature_dims)
        self.modalities: List[str] = list(self.feature_dims)
        self.embedding_dim = check_int(embedding_dim, 'embedding_dim')
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"'dropout' must lie in [0, 1) (got {dropout})")
        self.dropout = float(dropout)
        self.reg_norm = check_reg_norm(reg_norm)
        d = embedding_dim
        self.user_embedding = torch.nn.Parameter(torch.empty(num_users, 2 * d))
        self.item_embedding = torch.nn.Parameter(torch.empty(num_items, d))
        self.item_linear = torch.nn.Linear(sum(self.feature_dims.values()), d)
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.user_embedding)
        torch.nn.init.xavier_uniform_(self.item_embedding)
        torch.nn.init.xavier_normal_(self.item_linear.weight)
        torch.nn.init.zeros_(self.item_linear.bias)

    def project(self, xs: Mapping[str, Tensor]) -> Tensor:
        r""":math:`\mathbf{W}\mathbf{f} + \mathbf{b}` for feature rows
        ``{m: [n, F_m]}`` (computed per modality with the matching column
        block of :math:`\mathbf{W}`, without materialising the
        concatenation)."""
        weight, out, offset = self.item_linear.weight, None, 0
        for m in self.modalities:
            dim = self.feature_dims[m]
            x = xs[m].to(weight.dtype)
            h = F.linear(x, weight[:, offset:offset + dim])
            out = h if out is None else out + h
            offset += dim
        return out + self.item_linear.bias

    def forward(self, graph: RecGraph) -> RecOutput:
        feats = graph.features(self.feature_dims)
        item = torch.cat([graph.item_rows(self.item_embedding),
                          self.project(feats)], dim=-1)
        user = graph.user_rows(self.user_embedding)
        if self.dropout > 0:
            user = F.dropout(user, self.dropout, self.training)
            item = F.dropout(item, self.dropout, self.training)
        return graph.output({FUSED: user}, {FUSED: item})

    def regularization(self, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor,
                       out: Optional[RecOutput] = None) -> Tensor:
        if out is None:
            raise ValueError(f"'{self.__class__.__name__}.regularization' "
                             f"needs the forward output 'out' (MMRec "
                             f"regularises the full item representations)")
        return batch_regularization(self.reg_norm,
                                    take_rows(out.user_emb, users),
                                    take_rows(out.item_emb, pos_items),
                                    take_rows(out.item_emb, neg_items))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, modalities={self.modalities}, '
                f'embedding_dim={self.embedding_dim})')
