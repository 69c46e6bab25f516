from typing import Optional

import torch
from torch import Tensor

from pyg_brmrs.nn.base import FUSED, Recommender, RecOutput
from pyg_brmrs.nn.graph import Adjacency, RecGraph
from pyg_brmrs.nn.graph.adjacency import check_backend
from pyg_brmrs.nn.models._common import global_batch
from pyg_brmrs.nn.models.mgdn import check_rate
from pyg_brmrs.utils.checks import check_int

KERNELS = ('heat', 'ppr')
POOLS = ('sum', 'mean', 'final', 'concat')


def hop_weights(t: Tensor, num_layers: int, kernel: str) -> Tensor:
    r"""The per-node hop weights ``[N, K + 1]`` of ApeGNN from the node
    parameters :math:`t_v` ``[N]``: the heat kernel
    :math:`w_k(t) = e^{-t} t^k / k!` (:obj:`kernel="heat"`) or personalised
    PageRank :math:`w_k(t) = t (1 - t)^k` (:obj:`"ppr"`), :math:`k = 0..K`.
    """
    k = torch.arange(num_layers + 1, device=t.device, dtype=t.dtype)
    t = t.unsqueeze(-1)
    if kernel == 'heat':
        log_fact = torch.lgamma(k + 1)
        return torch.exp(-t) * t.pow(k) / torch.exp(log_fact)
    if kernel == 'ppr':
        return t * (1 - t).pow(k)
    raise ValueError(f"Unknown kernel '{kernel}' (choose from "
                     f"{list(KERNELS)})")


def degree_times(degree: Tensor, eps: float = 1e-7) -> Tensor:
    r"""ApeGNN's initial node parameters :math:`t_v =
    \sigma(\log(\deg(v) + \epsilon))` (:math:`= \deg/(\deg + 1)` up to
    :math:`\epsilon`)."""
    return torch.sigmoid(torch.log(degree.double() + eps)).float()


class ApeGNN(Recommender):
    r"""ApeGNN from `"ApeGNN: Node-Wise Adaptive Aggregation in GNNs for
    Recommendation" <https://arxiv.org/abs/2301.09094>`_ (WWW'23; ID
    embeddings only), as its authors' ``ApeGNN_HT.py`` and
    ``ApeGNN_APPNP.py`` write it: LightGCN propagation whose hops every
    node weighs with its own learnable diffusion parameter.

    With :math:`\hat{\mathbf{A}} = \mathbf{D}^{-1/2}\mathbf{A}
    \mathbf{D}^{-1/2}` on the homogeneous user–item graph (no self loops),
    the free embeddings :math:`\mathbf{X}` and one learnable
    :math:`t_v` per node, initialised to :math:`\sigma(\log(\deg(v) +
    \epsilon))` (:func:`degree_times`):

    .. math::
        \mathbf{E}^{(k)} = \hat{\mathbf{A}}^k \mathbf{X}, \qquad
        \mathbf{z}_v = \mathrm{pool}_{k = 0..K}\; w_k(t_v)\,
        \mathbf{e}^{(k)}_v,

    with the heat kernel :math:`w_k(t) = e^{-t}t^k/k!`
    (:obj:`kernel="heat"`, ``ApeGNN_HT``) or personalised PageRank
    :math:`w_k(t) = t(1-t)^k` (:obj:`"ppr"`, ``ApeGNN_APPNP``;
    :func:`hop_weights`), and :obj:`pool` the sum (the authors' commands),
    mean, last hop or concatenation over the hops. The weights scale each
    hop's *output* only: the propagated state
    :math:`\hat{\mathbf{A}}^k\mathbf{X}` itself is unweighted (with
    :obj:`message_dropout`, dropout is applied to it between hops in
    training; with :obj:`edge_dropout`, each hop draws its own edge subset,
    the kept weights scaled by :math:`1/(1-p)`; both off in the authors'
    defaults). :math:`s(u, i) = \langle \mathbf{z}_u, \mathbf{z}_i \rangle`;
    the regulariser is the squared norm of the batch's ego embeddings,
    :math:`\frac{1}{2B}(\lVert \mathbf{X}_u \rVert^2 + \lVert
    \mathbf{X}_{i^+} \rVert^2 + \lVert \mathbf{X}_{i^-} \rVert^2)` (the
    reference's ``l2 * regularize / batch_size``), with BPR on one uniform
    negative (its default ``ns='rns'``, ``K=1``).

    The node parameters start from the training degrees recorded by
    :meth:`set_graph` (a model built without them starts at
    :math:`t_v = 1/2` and takes the degrees on its first full-graph
    forward, before any training step); they are parameters, so a loaded
    state dict restores the trained ones.

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        embedding_dim (int, optional): :math:`d`. (default: :obj:`64`)
        num_layers (int, optional): The hops :math:`K`. (default: :obj:`3`)
        kernel (str, optional): :obj:`"heat"` or :obj:`"ppr"`.
            (default: :obj:`"heat"`)
        pool (str, optional): :obj:`"sum"`, :obj:`"mean"`, :obj:`"final"`
            or :obj:`"concat"`. (default: :obj:`"sum"`)
        eps (float, optional): :math:`\epsilon` of the initialisation.
            (default: :obj:`1e-7`)
        edge_dropout (float, optional): Edge dropout per hop (training).
            (default: :obj:`0.0`)
        message_dropout (float, optional): Dropout of the propagated state
            (training). (default: :obj:`0.0`)
        backend (str, optional): The kernel of the graph operator.
            (default: :obj:`"auto"`)
        cached (bool, optional): Cache the normalised operator.
            (default: :obj:`True`)

    Shapes:
        - **input:** the :class:`~pyg_brmrs.nn.graph.RecGraph` of a
          :class:`~torch_geometric.data.HeteroData` with training edges
          ``data['user', 'rates', 'item'].edge_index``, or of a mini-batch
          subgraph (the hop weights are the batch nodes' own)
        - **output:** :class:`~pyg_brmrs.nn.RecOutput` with one branch
          :obj:`"fused"`: users :math:`(U, d')`, items :math:`(I, d')`,
          :math:`d' = (K + 1) d` with :obj:`pool="concat"`, :math:`d`
          otherwise
    """
    graph_edge_types = ()

    def __init__(self, num_users: int, num_items: int,
                 embedding_dim: int = 64, num_layers: int = 3,
                 kernel: str = 'heat', pool: str = 'sum', eps: float = 1e-7,
                 edge_dropout: float = 0.0, message_dropout: float = 0.0,
                 backend: str = 'auto', cached: bool = True):
        super().__init__(num_users, num_items)
        if kernel not in KERNELS:
            raise ValueError(f"Unknown kernel '{kernel}' (choose from "
                             f"{list(KERNELS)})")
        if pool not in POOLS:
            raise ValueError(f"Unknown pool '{pool}' (choose from "
                             f"{list(POOLS)})")
        if not eps > 0:
            raise ValueError(f"'eps' must be > 0 (got {eps})")
        self.embedding_dim = check_int(embedding_dim, 'embedding_dim')
        self.num_layers = check_int(num_layers, 'num_layers', 0)
        self.kernel, self.pool, self.eps = kernel, pool, float(eps)
        self.edge_dropout = check_rate(edge_dropout, 'edge_dropout')
        self.message_dropout = check_rate(message_dropout, 'message_dropout')
        self.backend = check_backend(backend)
        self.cached = bool(cached)
        n = num_users + num_items
        self.user_embedding = torch.nn.Embedding(num_users, embedding_dim)
        self.item_embedding = torch.nn.Embedding(num_items, embedding_dim)
        self.times = torch.nn.Parameter(torch.empty(n))
        # whether `times` holds degree-based (or trained) values; saved in
        # the state dict so that a loaded model is never re-initialised
        self.register_buffer('times_from_degree', torch.zeros((),
                                                              dtype=torch.bool))
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.user_embedding.weight)
        torch.nn.init.xavier_uniform_(self.item_embedding.weight)
        with torch.no_grad():
            self.times.fill_(0.5)
            self.times_from_degree.fill_(False)
        if self.user_degree is not None:
            self._init_times()
        self.clear_cache()

    def _init_times(self) -> None:
        degree = torch.cat([self.user_degree, self.item_degree])
        with torch.no_grad():
            self.times.copy_(degree_times(degree, self.eps).to(
                self.times.device))
            self.times_from_degree.fill_(True)

    def set_graph(self, data, schema=None) -> 'ApeGNN':
        r"""Records the degrees (see
        :meth:`~pyg_brmrs.nn.Recommender.set_graph`) and, unless the node
        parameters already hold degree-based or trained values, sets
        :math:`t_v = \sigma(\log(\deg(v) + \epsilon))`."""
        super().set_graph(data, schema)
        if not bool(self.times_from_degree):
            self._init_times()
        return self

    def forward(self, graph: RecGraph) -> RecOutput:
        x = torch.cat([graph.user_rows(self.user_embedding.weight),
                       graph.item_rows(self.item_embedding.weight)])
        t = torch.cat([graph.user_rows(self.times[:self.num_users]),
                       graph.item_rows(self.times[self.num_users:])])
        w = hop_weights(t, self.num_layers, self.kernel)  # [N, K + 1]
        hops = [x * w[:, :1]]
        state = x
        base = graph.user_item().homogeneous()
        for k in range(1, self.num_layers + 1):
            op = base
            if self.training and self.edge_dropout > 0:
                op = dropped(op, self.edge_dropout)
            state = op.matmul(state)
            hops.append(state * w[:, k:k + 1])
            if self.training and self.message_dropout > 0:
                state = torch.nn.functional.dropout(state,
                                                    self.message_dropout)
        z = pool_hops(hops, self.pool)
        user, item = z.split([graph.num_users, graph.num_items])
        return graph.output({FUSED: user}, {FUSED: item})

    def regularization(self, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor,
                       out: Optional[RecOutput] = None) -> Tensor:
        users, pos_items, neg_items = global_batch(out, users, pos_items,
                                                   neg_items)
        total = (self.user_embedding(users).pow(2).sum() +
                 self.item_embedding(pos_items).pow(2).sum() +
                 self.item_embedding(neg_items).pow(2).sum())
        return total / (2 * max(users.numel(), 1))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers}, kernel={self.kernel!r}, '
                f'pool={self.pool!r})')


def dropped(op, rate: float):
    r"""A copy of operator :obj:`op` with every edge dropped with
    probability :obj:`rate` and the kept weights scaled by
    :math:`1/(1 - \mathrm{rate})`."""
    weight = op.edge_weight
    if weight is None:
        weight = torch.ones(op.edge_index.size(1),
                            device=op.edge_index.device)
    keep = torch.rand_like(weight) >= rate
    return Adjacency(op.edge_index[:, keep], weight[keep] / (1 - rate),
                     op.size, op.backend)


def pool_hops(hops, pool: str) -> Tensor:
    if pool == 'sum':
        return torch.stack(hops).sum(0)
    if pool == 'mean':
        return torch.stack(hops).mean(0)
    if pool == 'final':
        return hops[-1]
    return torch.cat(hops, dim=-1)


