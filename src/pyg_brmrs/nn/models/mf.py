from typing import Optional

import torch
from torch import Tensor

from pyg_brmrs.nn.base import FUSED, Recommender, RecOutput
from pyg_brmrs.nn.graph import RecGraph
from pyg_brmrs.nn.models._common import (
    batch_regularization,
    check_reg_norm,
    global_batch,
)
from pyg_brmrs.utils.checks import check_int


class BPRMF(Recommender):
    r"""Matrix factorisation trained with BPR, from `"BPR: Bayesian
    Personalized Ranking from Implicit Feedback"
    <https://arxiv.org/abs/1205.2618>`_ (MMRec's ``BPR`` model):

    .. math::
        s(u, i) = \langle \mathbf{e}_u, \mathbf{e}_i \rangle,

    with free embeddings :math:`\mathbf{e}_u, \mathbf{e}_i \in
    \mathbb{R}^d` initialised with :func:`torch.nn.init.xavier_normal_` (as
    MMRec's ``xavier_normal_initialization``). The graph is not used.

    :meth:`regularization` penalises the embeddings of the mini-batch,
    :math:`\frac{1}{B}(\lVert \mathbf{E}_U \rVert_F + \lVert
    \mathbf{E}_{I^+} \rVert_F + \lVert \mathbf{E}_{I^-} \rVert_F)` (MMRec's
    ``EmbLoss``, :obj:`reg_norm="frobenius"`) or :math:`\frac{1}{2B}(\lVert
    \cdot \rVert_F^2 + \dots)` (:obj:`reg_norm="squared"`); train with
    :class:`~pyg_brmrs.objectives.BPRObjective`.

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        embedding_dim (int, optional): The size :math:`d`.
            (default: :obj:`64`)
        reg_norm (str, optional): :obj:`"frobenius"` (MMRec) or
            :obj:`"squared"`. (default: :obj:`"frobenius"`)

    Shapes:
        - **input:** a :class:`~pyg_brmrs.nn.graph.RecGraph` (``model(data)``
          builds it from a :class:`~torch_geometric.data.HeteroData`; only
          the rows are read), or that of a mini-batch subgraph whose user
          and item stores carry ``n_id`` :math:`(U_b)`, :math:`(I_b)`
        - **output:** :class:`~pyg_brmrs.nn.RecOutput` with one branch
          :obj:`"fused"`: users :math:`(|\mathcal{U}|, d)`, items
          :math:`(|\mathcal{I}|, d)`; for a subgraph, the rows of the
          batch's nodes :math:`(U_b, d)`, :math:`(I_b, d)` (the embeddings
          gathered by ``n_id``)
    """
    graph_edge_types = ()  # reads no kNN graph of the data

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64,
                 reg_norm: str = 'frobenius'):
        super().__init__(num_users, num_items)
        self.embedding_dim = check_int(embedding_dim, 'embedding_dim')
        self.reg_norm = check_reg_norm(reg_norm)
        self.user_embedding = torch.nn.Embedding(num_users, embedding_dim)
        self.item_embedding = torch.nn.Embedding(num_items, embedding_dim)
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_normal_(self.user_embedding.weight)
        torch.nn.init.xavier_normal_(self.item_embedding.weight)

    def forward(self, graph: RecGraph) -> RecOutput:
        return graph.output(
            {FUSED: graph.user_rows(self.user_embedding.weight)},
            {FUSED: graph.item_rows(self.item_embedding.weight)})

    def regularization(self, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor,
                       out: Optional[RecOutput] = None) -> Tensor:
        users, pos_items, neg_items = global_batch(out, users, pos_items,
                                                   neg_items)
        return batch_regularization(self.reg_norm,
                                    self.user_embedding(users),
                                    self.item_embedding(pos_items),
                                    self.item_embedding(neg_items))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, embedding_dim={self.embedding_dim})')

