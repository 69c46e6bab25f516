from typing import Optional

import torch
from torch import Tensor
from torch_geometric.nn.models import LightGCN as PyGLightGCN

from pyg_brmrs.nn.base import FUSED, Recommender, RecOutput
from pyg_brmrs.nn.graph import RecGraph
from pyg_brmrs.nn.graph.adjacency import check_backend
from pyg_brmrs.nn.models._common import (
    batch_regularization,
    check_reg_norm,
    global_batch,
)
from pyg_brmrs.utils.checks import check_int


class LightGCNRecommender(Recommender):
    r"""The LightGCN model from `"LightGCN: Simplifying and Powering Graph
    Convolution Network for Recommendation" <https://arxiv.org/abs/
    2002.02126>`_, as a :class:`~pyg_brmrs.nn.Recommender` built on PyG's
    :class:`torch_geometric.nn.models.LightGCN`.

    Named so as not to shadow PyG's class, whose interface differs (this one
    maps a :class:`~torch_geometric.data.HeteroData` to a
    :class:`~pyg_brmrs.nn.RecOutput`; PyG's maps an ``edge_index`` to
    embeddings or scores).

    On the homogeneous user–item graph with :math:`N = |\mathcal{U}| +
    |\mathcal{I}|` nodes (items shifted by :math:`|\mathcal{U}|`, both
    directions of every training interaction) and the free embeddings
    :math:`\mathbf{X}^{(0)} \in \mathbb{R}^{N \times d}`,

    .. math::
        \mathbf{X}^{(l+1)} = \mathbf{D}^{-1/2} \mathbf{A} \mathbf{D}^{-1/2}
        \mathbf{X}^{(l)}, \qquad
        \mathbf{X} = \sum_{l=0}^{L} \alpha_l \mathbf{X}^{(l)}, \quad
        \alpha_l = \frac{1}{L + 1},

    (no self-loops) and :math:`s(u, i) = \langle \mathbf{x}_u, \mathbf{x}_i
    \rangle`. This is MMRec's ``LightGCN`` (mean over layers :math:`0..L`).

    The parameters are those of a :class:`torch_geometric.nn.models.LightGCN`
    instance (:attr:`lightgcn`: its embedding table, users first, and its
    layer weights :math:`\alpha_l`), and the result is that of its
    :meth:`~torch_geometric.nn.models.LightGCN.get_embedding` (up to float
    rounding); the layers run on the graph's cached, normalised operator
    (:class:`~pyg_brmrs.nn.graph.Adjacency`, whose :obj:`backend` picks the
    kernel: a CSR matrix with a cached transpose by default, much faster
    on large graphs than re-normalising and message passing at every call).

    **Initialisation.** PyG applies :func:`~torch.nn.init.xavier_uniform_` to
    the whole :math:`N \times d` table; MMRec applies it to the user table
    :math:`|\mathcal{U}| \times d` and the item table :math:`|\mathcal{I}|
    \times d` separately (bounds :math:`\sqrt{6 / (|\mathcal{U}| + d)}` and
    :math:`\sqrt{6 / (|\mathcal{I}| + d)}`). :meth:`reset_parameters` does
    what MMRec does.

    **Regularisation.** The ego embeddings
    :math:`\mathbf{x}^{(0)}` of the mini-batch, :obj:`reg_norm` as in
    :class:`~pyg_brmrs.nn.models.BPRMF` (MMRec's ``EmbLoss`` by default).

    Differences from MMRec: MMRec's degree is :math:`\deg + 10^{-7}` (a
    relative change below :math:`10^{-7}`), and it collapses duplicate
    interactions into one edge while here they count twice (the readers of
    :mod:`pyg_brmrs.data` reject duplicates).

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        embedding_dim (int, optional): The size :math:`d`.
            (default: :obj:`64`)
        num_layers (int, optional): The number of layers :math:`L`
            (:obj:`0` gives matrix factorisation). (default: :obj:`2`)
        backend (str, optional): The kernel of the graph operator,
            :obj:`"auto"`, :obj:`"csr"`, :obj:`"torch_sparse"` or
            :obj:`"edge_index"` (see :class:`~pyg_brmrs.nn.graph.Adjacency`).
            (default: :obj:`"auto"`)
        cached (bool, optional): Cache the normalised graph operator while
            the same training :obj:`edge_index` tensor is passed.
            (default: :obj:`True`)
        reg_norm (str, optional): :obj:`"frobenius"` (MMRec) or
            :obj:`"squared"`. (default: :obj:`"frobenius"`)

    **Mini-batch subgraphs.** On a batch's
    :class:`~pyg_brmrs.nn.graph.RecGraph`, :math:`\mathbf{X}^{(0)}` is
    gathered by ``n_id`` and the layers run over the batch's user–item edges
    with the full graph's normalisation and each node's sum scaled by
    :math:`\deg(v)/\deg_b(v)`; a node whose :math:`L`-hop neighbourhood
    lies in the batch gets exactly its full-graph representation.

    Shapes:
        - **input:** the :class:`~pyg_brmrs.nn.graph.RecGraph` of a
          :class:`~torch_geometric.data.HeteroData` with
          ``data['user', 'rates', 'item'].edge_index`` :math:`(2, |E|)`,
          or of a mini-batch subgraph (``n_id`` :math:`(U_b)`,
          :math:`(I_b)` on the node stores, local ``edge_index``
          :math:`(2, |E_b|)`)
        - **output:** :class:`~pyg_brmrs.nn.RecOutput` with one branch
          :obj:`"fused"`: users :math:`(|\mathcal{U}|, d)`, items
          :math:`(|\mathcal{I}|, d)` (:math:`(U_b, d)`, :math:`(I_b, d)`
          for a subgraph, in its local order)
    """
    graph_edge_types = ()  # reads no kNN graph of the data

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64,
                 num_layers: int = 2, backend: str = 'auto',
                 cached: bool = True, reg_norm: str = 'frobenius'):
        super().__init__(num_users, num_items)
        self.embedding_dim = check_int(embedding_dim, 'embedding_dim')
        self.num_layers = check_int(num_layers, 'num_layers', 0)
        self.backend = check_backend(backend)
        self.cached = bool(cached)
        self.reg_norm = check_reg_norm(reg_norm)
        self.lightgcn = PyGLightGCN(num_users + num_items, embedding_dim,
                                    num_layers)
        self.reset_parameters()

    @property
    def embedding(self) -> torch.nn.Embedding:
        r"""The free embeddings :math:`\mathbf{X}^{(0)}` (users first)."""
        return self.lightgcn.embedding

    def reset_parameters(self):
        weight = self.lightgcn.embedding.weight
        for conv in self.lightgcn.convs:
            conv.reset_parameters()
        # MMRec: separate xavier_uniform_ on the user and the item table.
        torch.nn.init.xavier_uniform_(weight[:self.num_users])
        torch.nn.init.xavier_uniform_(weight[self.num_users:])
        self.clear_cache()

    def forward(self, graph: RecGraph) -> RecOutput:
        op = graph.user_item().homogeneous()
        x = graph.node_rows(self.lightgcn.embedding.weight, self.num_users)
        alpha = self.lightgcn.alpha
        out = x * alpha[0]
        for i in range(self.num_layers):
            x = op.matmul(x)
            out = out + x * alpha[i + 1]
        user, item = out.split([graph.num_users, graph.num_items])
        return graph.output({FUSED: user}, {FUSED: item})

    def regularization(self, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor,
                       out: Optional[RecOutput] = None) -> Tensor:
        users, pos_items, neg_items = global_batch(out, users, pos_items,
                                                   neg_items)
        weight = self.lightgcn.embedding.weight
        return batch_regularization(
            self.reg_norm, weight.index_select(0, users),
            weight.index_select(0, self.num_users + pos_items),
            weight.index_select(0, self.num_users + neg_items))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers}, backend={self.backend})')

