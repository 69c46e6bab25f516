from typing import Optional

import torch
from torch import Tensor

from pyg_brmrs.nn.base import FUSED, Recommender, RecOutput
from pyg_brmrs.nn.graph import Adjacency, RecGraph
from pyg_brmrs.nn.graph.adjacency import check_backend
from pyg_brmrs.utils.cache import tensor_key
from pyg_brmrs.utils.checks import check_int


def check_rate(value: float, name: str) -> float:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"'{name}' must lie in [0, 1) (got {value})")
    return float(value)


def diffusion_normalizer(alpha: float, beta: float, num_layers: int) -> float:
    r""":math:`\gamma = \beta^K + \alpha \sum_{t=0}^{K-1} \beta^t`, the sum
    of the weights that :math:`K` steps of :math:`\mathbf{H} \leftarrow
    \beta \hat{\mathbf{A}} \mathbf{H} + \alpha \mathbf{H}^{(0)}` give the
    layers :math:`\hat{\mathbf{A}}^t \mathbf{H}^{(0)}`, :math:`t = 0..K`."""
    return beta ** num_layers + alpha * sum(beta ** t
                                            for t in range(num_layers))


def self_loop_adjacency(edge_index: Tensor, num_users: int,
                        num_items: int, backend: str = 'auto') -> Adjacency:
    r""":math:`\hat{\mathbf{A}} = \tilde{\mathbf{D}}^{-1/2}(\mathbf{A} +
    \mathbf{I})\tilde{\mathbf{D}}^{-1/2}` on the homogeneous user–item graph
    (:math:`N = U + I` nodes, items shifted by :math:`U`, both directions of
    every distinct interaction and one self loop per node;
    :math:`\tilde{\mathbf{D}} = \mathbf{D} + \mathbf{I}`)."""
    num = num_users + num_items
    if edge_index.device.type == 'meta':  # shapes only: nothing to dedupe
        user, item = edge_index[0], edge_index[1] + num_users
    else:
        pairs = torch.unique(edge_index[0] * num_items + edge_index[1])
        user = torch.div(pairs, num_items, rounding_mode='floor')
        item = pairs - user * num_items + num_users
    loop = torch.arange(num, device=edge_index.device)
    src = torch.cat([user, item, loop])
    dst = torch.cat([item, user, loop])
    deg = torch.zeros(num, device=dst.device).index_add_(
        0, dst, torch.ones(dst.numel(), device=dst.device))
    weight = deg[src].rsqrt() * deg[dst].rsqrt()
    return Adjacency(torch.stack([src, dst]), weight, (num, num), backend)


def markov_diffusion(op: Adjacency, h0: Tensor, num_layers: int,
                     alpha: float, beta: float) -> Tensor:
    r""":math:`\mathbf{H}^{(K)} / \gamma` for :math:`\mathbf{H}^{(t+1)} =
    \beta\, \mathbf{A} \mathbf{H}^{(t)} + \alpha \mathbf{H}^{(0)}`,
    :math:`\mathbf{H}^{(0)} = ` :obj:`h0`, :math:`\mathbf{A}` = :obj:`op`
    (:func:`diffusion_normalizer`)."""
    h = h0
    for _ in range(num_layers):
        h = beta * op.matmul(h) + alpha * h0
    return h / diffusion_normalizer(alpha, beta, num_layers)


def drop_edge_weights(op: Adjacency, rate: float) -> Adjacency:
    r""":obj:`op` with :class:`torch.nn.Dropout` applied to its edge weights
    (each weight zeroed with probability :obj:`rate`, the others scaled by
    :math:`1/(1 - \mathrm{rate})`)."""
    weight = torch.nn.functional.dropout(op.edge_weight, rate)
    return Adjacency(op.edge_index, weight, op.size, op.backend)


class MGDN(Recommender):
    r"""MGDCF's Markov graph diffusion network from `"MGDCF: Distance
    Learning via Markov Graph Diffusion for Neural Collaborative
    Filtering" <https://arxiv.org/abs/2204.02338>`_ (ID embeddings only),
    as its authors' ``torch_mgdcf`` writes it.

    On the homogeneous user–item graph with self loops,
    :math:`\hat{\mathbf{A}} = \tilde{\mathbf{D}}^{-1/2}(\mathbf{A} +
    \mathbf{I})\tilde{\mathbf{D}}^{-1/2}` (:math:`\tilde{\mathbf{D}} =
    \mathbf{D} + \mathbf{I}`; duplicate interactions count once), and the
    free embeddings :math:`\mathbf{X} \in \mathbb{R}^{(U + I) \times d}`:

    .. math::
        \mathbf{H}^{(0)} = \mathrm{drop}_x(\mathbf{X}), \qquad
        \mathbf{H}^{(t+1)} = \beta\, \hat{\mathbf{A}}_{\mathrm{drop}}
        \mathbf{H}^{(t)} + \alpha\, \mathbf{H}^{(0)}, \qquad
        \mathbf{Z} = \mathrm{drop}_z\!\left(\mathbf{H}^{(K)} / \gamma
        \right),

    :math:`\gamma = \beta^K + \alpha\sum_{t<K}\beta^t`
    (:func:`diffusion_normalizer`), so that :math:`\mathbf{Z}` is a weighted
    mean of :math:`\hat{\mathbf{A}}^t \mathbf{H}^{(0)}`, :math:`t = 0..K`;
    :math:`s(u, i) = \langle \mathbf{z}_u, \mathbf{z}_i \rangle`. In
    training, :math:`\mathrm{drop}_x` and :math:`\mathrm{drop}_z` are
    dropout on the entries and :math:`\hat{\mathbf{A}}_{\mathrm{drop}}`
    drops every edge weight (each direction and each self loop on its own)
    with probability :obj:`edge_dropout`, scaling the kept ones by
    :math:`1/(1 - p)` (:class:`torch.nn.Dropout` on the weights, redrawn at
    every forward pass); in evaluation none of them applies.

    The embeddings start as :math:`\mathcal{N}(0, 1/d)` entries. The
    regulariser is :math:`\frac{1}{2}(\lVert \mathbf{Z}_U \rVert_F^2 +
    \lVert \mathbf{Z}_I \rVert_F^2)` over **every** output row, at every
    step, as the reference applies it (to the outputs, not the inputs).
    Its objective is InfoBPR (:class:`~pyg_brmrs.objectives.InfoBPRObjective`,
    300 negatives drawn from all items, summed over the batch) and its
    trainer Adam with lr :math:`10^{-2}` decayed by 0.98 every epoch,
    batches of 8000 pairs (the ``mgdn`` recipe's defaults).

    Departure from the reference: none in the model; the recipe validates
    every epoch with early stopping, as every model of the comparison, where
    the reference evaluates every 20 epochs for a fixed 2000.

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        embedding_dim (int, optional): :math:`d`. (default: :obj:`64`)
        num_layers (int, optional): The diffusion steps :math:`K`.
            (default: :obj:`4`)
        alpha (float, optional): :math:`\alpha`. (default: :obj:`0.1`)
        beta (float, optional): :math:`\beta`. (default: :obj:`0.9`)
        x_dropout (float, optional): Dropout of :math:`\mathbf{X}`.
            (default: :obj:`0.3`)
        edge_dropout (float, optional): Dropout of the edge weights.
            (default: :obj:`0.5`)
        z_dropout (float, optional): Dropout of the output.
            (default: :obj:`0.1`)
        backend (str, optional): The kernel of the operator (see
            :class:`~pyg_brmrs.nn.graph.Adjacency`). (default: :obj:`"auto"`)
        cached (bool, optional): Cache :math:`\hat{\mathbf{A}}` while the
            same training graph is passed. (default: :obj:`True`)

    Shapes:
        - **input:** the :class:`~pyg_brmrs.nn.graph.RecGraph` of a
          :class:`~torch_geometric.data.HeteroData` with
          ``data['user', 'rates', 'item'].edge_index`` (full graph only:
          the self-looped normalisation has no mini-batch form here)
        - **output:** :class:`~pyg_brmrs.nn.RecOutput` with one branch
          :obj:`"fused"`: users :math:`(U, d)`, items :math:`(I, d)`
    """
    graph_edge_types = ()
    supports_subgraph = False

    def __init__(self, num_users: int, num_items: int,
                 embedding_dim: int = 64, num_layers: int = 4,
                 alpha: float = 0.1, beta: float = 0.9,
                 x_dropout: float = 0.3, edge_dropout: float = 0.5,
                 z_dropout: float = 0.1, backend: str = 'auto',
                 cached: bool = True):
        super().__init__(num_users, num_items)
        self.embedding_dim = check_int(embedding_dim, 'embedding_dim')
        self.num_layers = check_int(num_layers, 'num_layers', 0)
        for name, value in (('alpha', alpha), ('beta', beta)):
            if value < 0:
                raise ValueError(f"'{name}' must be >= 0 (got {value})")
        if alpha == 0 and beta == 0:
            raise ValueError("'alpha' and 'beta' cannot both be 0")
        self.alpha, self.beta = float(alpha), float(beta)
        self.gamma = diffusion_normalizer(self.alpha, self.beta,
                                          self.num_layers)
        self.x_dropout = check_rate(x_dropout, 'x_dropout')
        self.edge_dropout = check_rate(edge_dropout, 'edge_dropout')
        self.z_dropout = check_rate(z_dropout, 'z_dropout')
        self.backend = check_backend(backend)
        self.cached = bool(cached)
        self.embedding = torch.nn.Embedding(num_users + num_items,
                                            embedding_dim)
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.normal_(self.embedding.weight,
                              std=self.embedding_dim ** -0.5)
        self.clear_cache()

    def operator(self, graph: RecGraph) -> Adjacency:
        r""":math:`\hat{\mathbf{A}}` of the graph (cached), with its edge
        weights dropped in training."""
        ei = graph.edge_index
        op = graph.cached('mgdn', (tensor_key(ei), self.backend),
                          lambda: self_loop_adjacency(
                              ei, graph.num_users, graph.num_items,
                              self.backend))
        if self.training and self.edge_dropout > 0:
            return drop_edge_weights(op, self.edge_dropout)
        return op

    def forward(self, graph: RecGraph) -> RecOutput:
        op = self.operator(graph)
        h0 = graph.node_rows(self.embedding.weight, self.num_users)
        h0 = torch.nn.functional.dropout(h0, self.x_dropout, self.training)
        h = markov_diffusion(op, h0, self.num_layers, self.alpha, self.beta)
        z = torch.nn.functional.dropout(h, self.z_dropout, self.training)
        user, item = z.split([graph.num_users, graph.num_items])
        return graph.output({FUSED: user}, {FUSED: item})

    def regularization(self, users: Tensor, pos_items: Tensor,
                       neg_items: Optional[Tensor],
                       out: Optional[RecOutput] = None) -> Tensor:
        r""":math:`\frac{1}{2}(\lVert \mathbf{Z}_U \rVert_F^2 +
        \lVert \mathbf{Z}_I \rVert_F^2)` of the step's output :obj:`out`
        (every row; the batch does not enter)."""
        if out is None:
            raise ValueError("MGDN regularises its outputs: pass the "
                             "forward output 'out'")
        return 0.5 * (out.user[FUSED].pow(2).sum() +
                      out.item[FUSED].pow(2).sum())

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers}, alpha={self.alpha}, '
                f'beta={self.beta})')
