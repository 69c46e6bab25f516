from typing import Dict, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from pyg_brmrs.nn.base import FUSED, Recommender, RecOutput
from pyg_brmrs.nn.graph import Adjacency, RecGraph
from pyg_brmrs.nn.graph.adjacency import check_backend
from pyg_brmrs.nn.models._common import (
    check_feature_dims,
    feature_rows,
    global_batch,
    id_pair_regularization,
    mmrec_modality_order,
)
from pyg_brmrs.utils.cache import tensor_key
from pyg_brmrs.utils.checks import check_int


def mean_adjacency(edge_index: Tensor, num_users: int, num_items: int,
                   backend: str = 'auto') -> Adjacency:
    r"""The mean over the neighbours on the homogeneous user–item graph
    (:math:`N = U + I` nodes, items shifted by :math:`U`, both directions of
    every interaction, no self loops): weights :math:`1/\deg(t)` of the
    target; a node without neighbours gets zero."""
    num = num_users + num_items
    user, item = edge_index[0], edge_index[1] + num_users
    src = torch.cat([user, item])
    dst = torch.cat([item, user])
    deg = torch.zeros(num, device=dst.device).index_add_(
        0, dst, torch.ones(dst.numel(), device=dst.device))
    return Adjacency(torch.stack([src, dst]), 1.0 / deg[dst], (num, num),
                     backend)


class ModalityGCN(torch.nn.Module):
    r"""One modality's graph network of MMGCN (MMRec's ``GCN``): three
    layers over the user–item graph, each

    .. math::
        \mathbf{h} = \phi(\bar{\mathbf{A}} \mathbf{X} \mathbf{W}_c), \quad
        \hat{\mathbf{x}} = \phi(\mathbf{W}_l \mathbf{x} + \mathbf{b}_l) +
        \mathbf{e}, \quad
        \mathbf{x} \leftarrow \phi(\mathbf{W}_g [\mathbf{h} \,\Vert\,
        \hat{\mathbf{x}}] + \mathbf{b}_g),

    with :math:`\bar{\mathbf{A}}` the neighbour mean, :math:`\phi` the
    leaky ReLU (slope 0.01), :math:`\mathbf{e}` the shared ID embeddings,
    and the input :math:`\mathbf{X}^{(0)} = \mathrm{L2norm}([\mathbf{P};
    \mathbf{F}])`: the modality's user preferences :math:`\mathbf{P}` above
    the item features :math:`\mathbf{F}`, projected to :obj:`latent_dim`
    first when it is given (a linear layer). Layer 1 works in the input
    width :math:`F'` (``W_c`` is :math:`F' \times F'`), layers 2 and 3 in
    :math:`d`.

    Shapes:
        - **input:** features ``[I, F]``, ID embeddings ``[U + I, d]``,
          the mean operator
        - **output:** ``[U + I, d]``
    """
    def __init__(self, num_users: int, feature_dim: int, embedding_dim: int,
                 latent_dim: Optional[int], train_preference: bool):
        super().__init__()
        width = latent_dim or feature_dim
        self.latent_dim = latent_dim
        self.mlp = torch.nn.Linear(feature_dim, latent_dim) \
            if latent_dim else None
        pref = torch.empty(num_users, width)
        if train_preference:
            self.preference = torch.nn.Parameter(pref)
        else:
            self.register_buffer('preference', pref)
        dims = [width, embedding_dim, embedding_dim]
        self.conv = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.empty(f, f)) for f in dims])
        self.linear = torch.nn.ModuleList(
            [torch.nn.Linear(f, embedding_dim) for f in dims])
        self.gate = torch.nn.ModuleList(
            [torch.nn.Linear(f + embedding_dim, embedding_dim)
             for f in dims])
        self.reset_parameters()

    def reset_parameters(self):
        r"""MMRec's initialisation: :func:`~torch.nn.init.xavier_normal_`
        on the preferences, the graph weights, the linear layers' weights
        and the first gate's weight; :class:`torch.nn.Linear`'s own for the
        projection, the biases and the other two gates."""
        with torch.no_grad():
            torch.nn.init.xavier_normal_(self.preference)
        if self.mlp is not None:
            self.mlp.reset_parameters()
        for w, lin, gate in zip(self.conv, self.linear, self.gate):
            torch.nn.init.xavier_normal_(w)
            lin.reset_parameters()
            torch.nn.init.xavier_normal_(lin.weight)
            gate.reset_parameters()
        torch.nn.init.xavier_normal_(self.gate[0].weight)

    def forward(self, features: Tensor, preference: Tensor, ids: Tensor,
                op: Adjacency) -> Tensor:
        features = features.to(self.conv[0].dtype)
        x = self.mlp(features) if self.mlp is not None else features
        x = F.normalize(torch.cat([preference, x]), dim=-1)
        for w, lin, gate in zip(self.conv, self.linear, self.gate):
            h = F.leaky_relu(op.matmul(x @ w))
            x_hat = F.leaky_relu(lin(x)) + ids
            x = F.leaky_relu(gate(torch.cat([h, x_hat], dim=-1)))
        return x


class MMGCN(Recommender):
    r"""MMGCN from "MMGCN: Multi-modal Graph Convolution Network for
    Personalized Recommendation of Micro-video" (ACM MM'19), as MMRec's
    ``mmgcn.py`` computes it: one
    :class:`ModalityGCN` per modality over the user–item graph, sharing the
    ID embeddings, averaged,

    .. math::
        \mathbf{Z} = \frac{1}{M}\sum_m \mathrm{GCN}_m(\mathbf{F}_m,
        \mathbf{P}_m, \mathbf{E}), \qquad s(u, i) = \langle \mathbf{z}_u,
        \mathbf{z}_i \rangle,

    with BPR and the regulariser (:meth:`regularization`)
    :math:`\frac{1}{2Bd}\sum_b (2\lVert \mathbf{e}_{u_b} \rVert^2 +
    \lVert \mathbf{e}_{i^+_b} \rVert^2 + \lVert \mathbf{e}_{i^-_b}
    \rVert^2) + \overline{\mathbf{P}_m^2}` for the modalities with a
    latent projection (MMRec: the image network's preferences, the mean of
    their squared entries).

    **MMRec's traps, decided here:**

    * Its ``concate = 'False'`` is a non-empty string, so every layer
      *concatenates* :math:`[\mathbf{h} \,\Vert\, \hat{\mathbf{x}}]` before
      the gate (the paper's other option, the sum, is never taken); this
      model does what the code does.
    * Its ID embeddings and user preferences are plain tensors, never
      registered as parameters, so they are never trained (the same in the
      authors' code). :obj:`train_free_embeddings=True` (the default)
      trains them, as the paper describes; :obj:`False` keeps them at their
      random initialisation, as the reference code runs.
    * It always stacks three layers (its ``n_layers`` is ignored), the
      image network projects to :math:`256` first (``dim_latent``), the
      others do not: :obj:`latent_dims` says this per modality.
    * It ranks with the representations of the last training step (its
      ``full_sort_predict`` reads ``self.result``, one optimizer step
      stale); here evaluation computes them afresh.

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        feature_dims (Mapping[str, int]): modality → feature size.
        embedding_dim (int, optional): :math:`d`. (default: :obj:`64`)
        latent_dims (Mapping[str, int], optional): modality → width of its
            input projection (modalities left out have none).
            (default: :obj:`None`: 256 for ``"image"``, as MMRec)
        train_free_embeddings (bool, optional): See above.
            (default: :obj:`True`)
        backend (str, optional): The kernel of the graph operator.
            (default: :obj:`"auto"`)
        cached (bool, optional): Cache the operator. (default: :obj:`True`)

    Shapes:
        - **input:** the full graph's :class:`~pyg_brmrs.nn.graph.RecGraph`
          (its item features and training edges; full graph only)
        - **output:** :class:`~pyg_brmrs.nn.RecOutput` with one branch
          :obj:`"fused"`: users :math:`(U, d)`, items :math:`(I, d)`
    """
    graph_edge_types = ()
    supports_subgraph = False

    def __init__(self, num_users: int, num_items: int,
                 feature_dims: Mapping[str, int], embedding_dim: int = 64,
                 latent_dims: Optional[Mapping[str, int]] = None,
                 train_free_embeddings: bool = True, backend: str = 'auto',
                 cached: bool = True):
        super().__init__(num_users, num_items)
        self.feature_dims = check_feature_dims(feature_dims)
        self.modalities = mmrec_modality_order(self.feature_dims)
        self.embedding_dim = check_int(embedding_dim, 'embedding_dim')
        if latent_dims is None:
            latent_dims = {'image': 256} if 'image' in self.feature_dims \
                else {}
        unknown = set(latent_dims) - set(self.feature_dims)
        if unknown:
            raise ValueError(f"'latent_dims' names modalities the data does "
                             f"not have: {sorted(unknown)}")
        self.latent_dims: Dict[str, int] = {
            m: check_int(v, f'latent_dims[{m!r}]')
            for m, v in latent_dims.items()}
        self.train_free_embeddings = bool(train_free_embeddings)
        self.backend = check_backend(backend)
        self.cached = bool(cached)
        self.finetune_features = False
        self.gcn = torch.nn.ModuleDict({
            m: ModalityGCN(num_users, self.feature_dims[m], embedding_dim,
                           self.latent_dims.get(m), train_free_embeddings)
            for m in self.modalities})
        ids = torch.empty(num_users + num_items, embedding_dim)
        if train_free_embeddings:
            self.id_embedding = torch.nn.Parameter(ids)
        else:
            self.register_buffer('id_embedding', ids)
        self.reset_parameters()

    def reset_parameters(self):
        with torch.no_grad():
            torch.nn.init.xavier_normal_(self.id_embedding)
        for gcn in self.gcn.values():
            gcn.reset_parameters()
        self.clear_cache()

    def forward(self, graph: RecGraph) -> RecOutput:
        ei = graph.edge_index
        op = graph.cached('mmgcn', (tensor_key(ei), self.backend),
                          lambda: mean_adjacency(ei, graph.num_users,
                                                 graph.num_items,
                                                 self.backend))
        feats = feature_rows(graph, self)
        z = sum(self.gcn[m](feats[m], self.gcn[m].preference,
                            self.id_embedding, op)
                for m in self.modalities) / len(self.modalities)
        user, item = z.split([graph.num_users, graph.num_items])
        return graph.output({FUSED: user}, {FUSED: item})

    def regularization(self, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor,
                       out: Optional[RecOutput] = None) -> Tensor:
        users, pos_items, neg_items = global_batch(out, users, pos_items,
                                                   neg_items)
        reg, _ = id_pair_regularization(
            self.id_embedding, self.num_users, users, pos_items, neg_items)
        for m, gcn in self.gcn.items():
            if m in self.latent_dims:
                reg = reg + gcn.preference.pow(2).mean()
        return reg

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, modalities={self.modalities}, '
                f'embedding_dim={self.embedding_dim}, '
                f'train_free_embeddings={self.train_free_embeddings})')
