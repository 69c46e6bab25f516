from typing import Optional

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.nn.models import LightGCN as PyGLightGCN

from pyg_brmrs.data.schema import ITEM, RATES, USER, Schema, canonical
from pyg_brmrs.nn.base import FUSED, Recommender, RecOutput, subgraph_ids
from pyg_brmrs.nn.conv import MultiModalLGConv
from pyg_brmrs.nn.models._common import (
    UserItemGraph,
    batch_regularization,
    check_counts,
    check_reg_norm,
    global_batch,
    subgraph_ui_operator,
)
from pyg_brmrs.utils.checks import check_int

LIGHTGCN_BACKENDS = ('csr', 'torch_sparse', 'edge_index', 'pyg')


class LightGCNRecommender(Recommender):
    r"""The LightGCN model from `"LightGCN: Simplifying and Powering Graph
    Convolution Network for Recommendation" <https://arxiv.org/abs/
    2002.02126>`_, as a :class:`~pyg_brmrs.nn.Recommender` built on PyG's
    :class:`torch_geometric.nn.models.LightGCN`.

    Named so as not to shadow PyG's class, whose interface differs (this one
    maps a :class:`~torch_geometric.data.HeteroData` to a
    :class:`~pyg_brmrs.nn.RecOutput`; PyG's maps an ``edge_index`` to
    embeddings or scores). The former name ``pyg_brmrs.nn.LightGCN`` still
    imports this class, with a :class:`DeprecationWarning`.

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
    layer weights :math:`\alpha_l`). The backends compute the same thing:

    * :obj:`"csr"` (default): one cached, normalised CSR operator with a
      cached-transpose backward (:class:`~pyg_brmrs.nn.MultiModalLGConv`);
      much faster on large graphs.
    * :obj:`"torch_sparse"`, :obj:`"edge_index"`: the other backends of
      :class:`~pyg_brmrs.nn.MultiModalLGConv` (a cached
      :class:`torch_sparse.SparseTensor`, or gather/scatter message passing
      on the cached normalised edges).
    * :obj:`"pyg"`: PyG's own :meth:`LightGCN.get_embedding` (its
      :class:`~torch_geometric.nn.conv.LGConv` layers re-normalise the graph
      at every call).

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
        backend (str, optional): :obj:`"csr"`, :obj:`"torch_sparse"`,
            :obj:`"edge_index"` or :obj:`"pyg"`.
            (default: :obj:`"csr"`)
        cached (bool, optional): Cache the homogeneous graph and its
            normalised operator while the same training :obj:`edge_index`
            tensor is passed. (default: :obj:`True`)
        reg_norm (str, optional): :obj:`"frobenius"` (MMRec) or
            :obj:`"squared"`. (default: :obj:`"frobenius"`)

    **Mini-batch subgraphs.** When the user and item stores carry
    ``n_id``, :math:`\mathbf{X}^{(0)}` is gathered by ``n_id`` and the
    layers run over the batch's user–item edges :math:`\mathcal{E}_b` (both
    directions) with the *global* normalisation and each node's sum scaled
    to estimate its full-graph sum,

    .. math::
        \mathbf{x}^{(l+1)}_v = \frac{\deg(v)}{\deg_b(v)}
        \sum_{w : (v, w) \in \mathcal{E}_b}
        \frac{\mathbf{x}^{(l)}_w}{\sqrt{\deg(v)\deg(w)}},

    :math:`\deg` the degrees in the full training graph
    (:meth:`~pyg_brmrs.nn.Recommender.set_graph`), :math:`\deg_b(v)` the
    node's edges in the batch. The factor makes the sum over a uniform
    sample of a node's edges (PyG's neighbour sampler) an unbiased estimate
    of the full sum, and is :math:`1` for a node with all its edges in the
    batch: a node whose :math:`L`-hop neighbourhood lies in the batch gets
    exactly its full-graph representation. Every backend computes it the
    same way.

    Shapes:
        - **input:** a :class:`~torch_geometric.data.HeteroData` with
          ``data['user', 'rates', 'item'].edge_index`` :math:`(2, |E|)`,
          or a mini-batch subgraph (``n_id`` :math:`(U_b)`, :math:`(I_b)`
          on the node stores, local ``edge_index`` :math:`(2, |E_b|)`)
        - **output:** :class:`~pyg_brmrs.nn.RecOutput` with one branch
          :obj:`"fused"`: users :math:`(|\mathcal{U}|, d)`, items
          :math:`(|\mathcal{I}|, d)` (:math:`(U_b, d)`, :math:`(I_b, d)`
          for a subgraph, in its local order)
    """
    graph_edge_types = ()  # reads no kNN graph of the data

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64,
                 num_layers: int = 2, backend: str = 'csr',
                 cached: bool = True, reg_norm: str = 'frobenius'):
        super().__init__(num_users, num_items)
        self.embedding_dim = check_int(embedding_dim, 'embedding_dim')
        self.num_layers = check_int(num_layers, 'num_layers', 0)
        if backend not in LIGHTGCN_BACKENDS:
            raise ValueError(f"Unknown backend '{backend}' in "
                             f"'{self.__class__.__name__}' (choose from "
                             f"{list(LIGHTGCN_BACKENDS)})")
        self.backend = backend
        self.cached = cached
        self.reg_norm = check_reg_norm(reg_norm)
        self.lightgcn = PyGLightGCN(num_users + num_items, embedding_dim,
                                    num_layers)
        self.conv = MultiModalLGConv(
            normalize=True, cached=cached,
            backend='csr' if backend == 'pyg' else backend)
        self.ui_graph = UserItemGraph(num_users, num_items, 0.0,
                                      cached=cached)
        self.reset_parameters()

    @classmethod
    def from_data(cls, data: HeteroData, schema: Optional[Schema] = None,
                  **kwargs) -> 'LightGCNRecommender':
        r"""Builds the model with the node counts of :obj:`data` (names
        given by :obj:`schema`, a :class:`~pyg_brmrs.data.Schema`) and
        records its degrees for subgraph batches."""
        data = canonical(data, schema)
        return cls(int(data[USER].num_nodes), int(data[ITEM].num_nodes),
                   **kwargs)._from_data(data, schema)

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
        self.conv.reset_parameters()
        self.ui_graph.clear()

    def homogeneous_edge_index(self, edge_index: Tensor) -> Tensor:
        r"""The ``[2, 2E]`` user–item graph on :math:`N` nodes (cached)."""
        return self.ui_graph.full(edge_index)

    def node_embedding(self, edge_index: Tensor) -> Tensor:
        r"""The final embeddings :math:`\mathbf{X}` ``[N, d]`` for the
        user→item training edges :obj:`edge_index` ``[2, E]``."""
        ei = self.homogeneous_edge_index(edge_index)
        if self.backend == 'pyg':
            return self.lightgcn.get_embedding(ei)
        alpha = self.lightgcn.alpha
        x = self.lightgcn.embedding.weight
        out = x * alpha[0]
        for i in range(self.num_layers):
            x = self.conv(x, ei)
            out = out + x * alpha[i + 1]
        return out

    def forward(self, data: HeteroData) -> RecOutput:
        ids = subgraph_ids(data)
        if ids is not None:
            return self._subgraph_forward(data, *ids)
        check_counts(self, data)
        out = self.node_embedding(data[RATES].edge_index)
        return RecOutput({FUSED: out[:self.num_users]},
                         {FUSED: out[self.num_users:]})

    def _subgraph_forward(self, data: HeteroData, user_n_id: Tensor,
                          item_n_id: Tensor) -> RecOutput:
        user_deg, item_deg = self.subgraph_degrees(user_n_id, item_n_id)
        op = subgraph_ui_operator(data[RATES].edge_index, user_deg, item_deg)
        weight = self.lightgcn.embedding.weight
        x = torch.cat([weight[user_n_id], weight[self.num_users + item_n_id]])
        alpha = self.lightgcn.alpha
        out, h = x * alpha[0], x
        for i in range(self.num_layers):
            h = op.matmul(h)
            out = out + h * alpha[i + 1]
        nu = user_n_id.numel()
        return RecOutput({FUSED: out[:nu]}, {FUSED: out[nu:]},
                         user_n_id=user_n_id, item_n_id=item_n_id)

    def regularization(self, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor,
                       out: Optional[RecOutput] = None) -> Tensor:
        users, pos_items, neg_items = global_batch(out, users, pos_items,
                                                   neg_items)
        weight = self.lightgcn.embedding.weight
        return batch_regularization(self.reg_norm, weight[users],
                                    weight[self.num_users + pos_items],
                                    weight[self.num_users + neg_items])

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers}, backend={self.backend})')

