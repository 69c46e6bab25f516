from typing import List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_brmrs.data.schema import ITEM, RATES, USER, Schema
from pyg_brmrs.nn.base import FUSED, Recommender, RecOutput
from pyg_brmrs.nn.graph import RecGraph
from pyg_brmrs.nn.graph.rec_graph import check_features
from pyg_brmrs.nn.models._common import (
    check_feature_dims,
    mmrec_modality_order,
)
from pyg_brmrs.transforms.knn_graph import (
    cooccurrence_knn_graph,
    mixed_cosine_knn_graph,
    resolve_modality_weights,
)
from pyg_brmrs.utils.checks import check_int
from pyg_brmrs.utils.rows import take_rows


def polya_padding(row: Tensor, num_nodes: int, k: int,
                  generator: Optional[torch.Generator] = None) -> Tensor:
    r"""How often every neighbour appears once each node's list is padded
    to :obj:`k` entries by DRAGON's rule (``topk_sample``): a node with
    :math:`0 < n < k` neighbours appends, :math:`k - n` times, an entry
    drawn uniformly from its *current* list (the padded entries included:
    a Pólya urn, not :math:`k - n` independent draws); nodes with no or at
    least :math:`k` neighbours are left as they are.

    Args:
        row (torch.Tensor): The node of every neighbour entry ``[E]``,
            sorted (a node's entries contiguous).
        num_nodes (int): The number of nodes.
        k (int): The list length.
        generator (torch.Generator, optional): The random generator.

    Returns:
        The multiplicity :math:`m \ge 1` of every entry ``[E]`` (float32;
        a node's multiplicities sum to :math:`\max(n, k)` when :math:`n >
        0`).
    """
    device = row.device
    deg = torch.bincount(row, minlength=num_nodes)
    out = torch.ones(row.numel(), device=device)
    short = ((deg > 0) & (deg < k)).nonzero().view(-1)
    if short.numel() == 0:
        return out
    n = deg[short]  # [S]
    start = torch.cumsum(deg, 0) - deg  # first entry of every node
    origin = torch.arange(k, device=device).repeat(short.numel(), 1)
    rows = torch.arange(short.numel(), device=device)
    for s in range(int(n.min()), k):
        draw = (torch.rand(short.numel(), generator=generator,
                           device=device) * s).long().clamp(max=s - 1)
        active = n <= s
        origin[rows[active], s] = origin[rows[active], draw[active]]
    counts = torch.zeros(short.numel(), k, device=device).scatter_add_(
        1, origin, torch.ones(short.numel(), k, device=device))
    idx = start[short].unsqueeze(1) + torch.arange(k, device=device)
    keep = torch.arange(k, device=device).unsqueeze(0) < n.unsqueeze(1)
    out[idx[keep]] = counts[keep]
    return out


class DRAGON(Recommender):
    r"""The DRAGON model from `"Enhancing Dyadic Relations with Homogeneous
    Graphs for Multimodal Recommendation" <https://arxiv.org/abs/
    2301.12097>`_, reproducing MMRec's ``src/models/dragon.py``: a
    heterogeneous user–item graph per modality, plus the two homogeneous
    graphs (users by co-occurrence, items by feature similarity).

    1. **Per-modality user–item graph.** Items encode their raw features,
       :math:`\mathbf{f}^{(m)}_i = \mathbf{W}^{(m)}_2\,
       \mathrm{LeakyReLU}(\mathbf{W}^{(m)}_1 \mathbf{x}^{(m)}_i +
       \mathbf{b}_1) + \mathbf{b}_2` (hidden size :math:`4d`); users hold a
       free preference :math:`\mathbf{p}^{(m)}_u`. With
       :math:`\mathbf{X}^{(m)}` their rows scaled to unit norm and the
       symmetric-normalised user–item graph :math:`\hat{\mathbf{A}}`,
       :math:`\mathbf{H}^{(m)} = \sum_{l=0}^{L} \hat{\mathbf{A}}^l
       \mathbf{X}^{(m)}` (:obj:`num_layers` :math:`= L`; the reference's
       ``h + x + h_1``).
    2. **Fusion by weighted concatenation**: :math:`\mathbf{u} =
       [w_{u,1}\mathbf{h}^{(1)}_u \,\|\, \dots \,\|\, w_{u,M}
       \mathbf{h}^{(M)}_u]` with trainable per-user modality weights
       :math:`w_{u,m}` (initialised to a softmax over the modalities),
       :math:`\mathbf{i} = [\mathbf{h}^{(1)}_i \,\|\, \dots]`
       (``construction="cat"``), in MMRec's order: image first.
    3. **Homogeneous graphs.** Items: the frozen mixture of binary
       :math:`k`-NN graphs of the raw features
       (:func:`~pyg_brmrs.transforms.mixed_cosine_knn_graph`, weights
       :obj:`modality_weights`), :math:`L_s` layers
       (:obj:`num_item_layers`): :math:`\mathbf{z}_i = \mathbf{i} +
       (\mathbf{S}^{L_s}\mathbf{I})_i`. Users: each user's
       :obj:`num_user_neighbors` co-occurrence neighbours
       (:func:`~pyg_brmrs.transforms.cooccurrence_knn_graph`), softmax
       weights over their counts; a user with fewer neighbours has its
       list padded every epoch by :func:`polya_padding` (duplicates
       weigh more in the softmax), :math:`\mathbf{z}_u = \mathbf{u} +
       \sum_v w_{uv}\mathbf{v}`.
    4. **Scores** :math:`s(u, i) = \langle \mathbf{z}_u, \mathbf{z}_i
       \rangle`; **loss** :math:`-\frac{1}{B}\sum_b \log_2\sigma(s(u_b,
       i^+_b) - s(u_b, i^-_b))` (:class:`~pyg_brmrs.objectives.
       BPRObjective` with ``bpr_weight`` :math:`= 1/\ln 2`) :math:`+\
       \lambda` :meth:`regularization`.

    **Per-epoch hook.** :meth:`on_epoch_start` redraws the padding with
    the trainer's generator (the reference's ``pre_epoch_processing``);
    the current draw is in the state dict (``user_graph_multiplicity``),
    so a restored model scores with the graph it was saved with. Before
    the first draw every neighbour counts once.

    **Departures** from the reference: its forward computes item encoders
    from the raw features, so its fine-tunable copy of them (and its
    ``image_trs``/``text_trs``, item weights and user MLP) never receive a
    gradient: they are left out, and the features are read frozen from
    the data. The two edge-dropped graphs it builds are never used: not
    built. It ranks with the representations of the last training batch
    (one optimiser step old), here with the current parameters. The user
    graph comes from sparse products (the reference: a dense
    :math:`|\mathcal{U}|^2` count matrix), ties among equal counts in a
    seeded random order that differs from row to row (the reference's
    per-row dense ``torch.topk`` leaves them spread over the candidates;
    by index, or by one order shared by every row, a few users would win
    most ties, see :func:`~pyg_brmrs.transforms.cooccurrence_knn_graph`);
    the :math:`\log_2\sigma` is computed stably. Any number of modalities
    (MMRec: image and text; its ``mm_image_weight`` 0.1 is the default
    weight of image for {image, text}, equal weights otherwise).

    **Initialisation** (MMRec): :func:`~torch.nn.init.xavier_normal_` on
    the preferences and on the user modality weights (then softmax over the
    modalities), :class:`~torch.nn.Linear`'s default for the encoders.

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        feature_dims (Mapping[str, int]): modality → :math:`F_m`.
        embedding_dim (int, optional): :math:`d` per modality (the
            representations have :math:`Md` entries). (default: :obj:`64`)
        num_layers (int, optional): :math:`L` (fixed to 2 in the
            reference). (default: :obj:`2`)
        num_item_layers (int, optional): :math:`L_s` (``n_mm_layers``).
            (default: :obj:`1`)
        knn_k (int, optional): Item neighbours per modality.
            (default: :obj:`10`)
        num_user_neighbors (int, optional): User neighbours (the
            reference's ``k = 40``). (default: :obj:`40`)
        modality_weights (Mapping[str, float], optional): Of the item
            graphs. (default: :obj:`None`: MMRec's 0.1 / 0.9 for
            {image, text}, equal otherwise)
        chunk_size (int, optional): Rows per block of the graph searches.
            (default: :obj:`1024`)
        cached (bool, optional): Cache the graph operators while the same
            tensors are passed. (default: :obj:`True`)

    Shapes:
        - **input:** the :class:`~pyg_brmrs.nn.graph.RecGraph` of a
          :class:`~torch_geometric.data.HeteroData` with
          ``data['item'][f'x_{m}']`` :math:`(|\mathcal{I}|, F_m)` and the
          training ``edge_index``, or of a mini-batch subgraph (the model's
          graphs ``"knn"`` and ``"users"`` restricted to the batch)
        - **output:** :class:`~pyg_brmrs.nn.RecOutput`, branch
          :obj:`"fused"`: users :math:`(|\mathcal{U}|, Md)`, items
          :math:`(|\mathcal{I}|, Md)`
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
        num_user_neighbors: int = 40,
        modality_weights: Optional[Mapping[str, float]] = None,
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
        #: One user–user layer (conformance: the hops a batch must hold).
        self.num_user_layers = 1
        self.knn_k = check_int(knn_k, 'knn_k')
        self.num_user_neighbors = check_int(num_user_neighbors,
                                            'num_user_neighbors')
        self.modality_weights = resolve_modality_weights(
            sorted(self.modalities), modality_weights)
        self.chunk_size = check_int(chunk_size, 'chunk_size')
        self.cached = bool(cached)
        d = self.embedding_dim
        self.preference = torch.nn.ParameterDict({
            m: torch.nn.Parameter(torch.empty(num_users, d))
            for m in self.modalities})
        self.encoder = torch.nn.ModuleDict({
            m: torch.nn.Sequential(
                torch.nn.Linear(self.feature_dims[m], 4 * d),
                torch.nn.LeakyReLU(), torch.nn.Linear(4 * d, d))
            for m in self.modalities})
        self.user_modality_weight = torch.nn.Parameter(
            torch.empty(num_users, len(self.modalities)))
        # the user graph's softmax weights and the padding's multiplicities
        self.register_buffer('user_graph_base_weight', None,
                             persistent=False)
        self.register_buffer('user_graph_multiplicity', None)
        self.register_load_state_dict_post_hook(_refresh_after_load)
        self.reset_parameters()

    def reset_parameters(self):
        for p in self.preference.values():
            torch.nn.init.xavier_normal_(p)
        for enc in self.encoder.values():
            enc[0].reset_parameters()
            enc[2].reset_parameters()
        w = torch.empty(self.num_users, len(self.modalities), 1)
        torch.nn.init.xavier_normal_(w)
        with torch.no_grad():
            self.user_modality_weight.copy_(torch.softmax(w, dim=1)[..., 0])
        self.clear_cache()

    # ------------------------------------------------------------------
    def set_graph(self, data: HeteroData,
                  schema: Optional[Schema] = None) -> 'DRAGON':
        r"""Records the degrees (see
        :meth:`~pyg_brmrs.nn.Recommender.set_graph`), the item graph
        ``"knn"`` of the features of :obj:`data` and the user graph
        ``"users"`` of its training interactions (every neighbour once
        until :meth:`on_epoch_start` draws a padding)."""
        super().set_graph(data, schema)
        data = self.schema.canonical(data)
        xs = check_features(data, self.feature_dims, self.num_items)
        device = self.user_modality_weight.device
        if self.num_item_layers > 0:  # (no layer: no graph to build)
            ei, ew = mixed_cosine_knn_graph(xs, self.knn_k,
                                            self.modality_weights, 'binary',
                                            self.chunk_size)
            self.register_graph('knn', ITEM, ei.to(device), ew.to(device))
        ei, w = cooccurrence_knn_graph(data[RATES].edge_index,
                                       self.num_users, self.num_items,
                                       self.num_user_neighbors, 'user',
                                       self.chunk_size)
        self.user_graph_base_weight = w.to(device)
        self.user_graph_multiplicity = torch.ones_like(
            self.user_graph_base_weight)
        ei = ei.to(device)
        self.register_graph('users', USER, ei, self._user_graph_weight(ei))
        return self

    def _user_graph_weight(self, ei: Tensor) -> Tensor:
        r""":math:`w_{uv} \propto m_{uv}\exp(c_{uv})`, normalised per user:
        the softmax over the padded list, duplicates counted."""
        w = self.user_graph_multiplicity * self.user_graph_base_weight
        total = torch.zeros(self.num_users, device=w.device).index_add_(
            0, ei[1], w)
        return w / total[ei[1]]

    def refresh_user_graph(self) -> None:
        r"""Re-weights the user graph with the current
        ``user_graph_multiplicity``."""
        if self.user_graph_base_weight is None:
            return
        ei = getattr(self, 'graph_users_edge_index')
        self.register_graph('users', USER, ei, self._user_graph_weight(ei))

    def on_epoch_start(self, epoch: int,
                       generator: Optional[torch.Generator] = None) -> None:
        r"""Draws the padding of the short neighbour lists with
        :obj:`generator` (:func:`polya_padding`) and re-weights the user
        graph."""
        if self.user_graph_base_weight is None:
            raise ValueError("DRAGON has no user graph yet: build it with "
                             "DRAGON.from_data(data) or call "
                             "model.set_graph(data)")
        ei = getattr(self, 'graph_users_edge_index')
        self.user_graph_multiplicity = polya_padding(
            ei[1], self.num_users, self.num_user_neighbors, generator)
        self.refresh_user_graph()

    # ------------------------------------------------------------------
    def modality_representations(self, graph: RecGraph
                                 ) -> Tuple[List[Tensor], List[Tensor]]:
        r"""The per-modality :math:`\mathbf{H}^{(m)}` of the users and of
        the items (step 1), in :attr:`modalities` order."""
        ui = graph.user_item()
        feats = graph.features(self.feature_dims)
        users, items = [], []
        for m in self.modalities:
            enc = self.encoder[m]
            x_item = enc(feats[m].to(enc[0].weight.dtype))
            x_user = graph.user_rows(self.preference[m])
            h_user, h_item = ui.layer_mean(F.normalize(x_user, dim=1),
                                           F.normalize(x_item, dim=1),
                                           self.num_layers, scale=1.0)
            users.append(h_user)
            items.append(h_item)
        return users, items

    def forward(self, graph: RecGraph) -> RecOutput:
        weight = graph.user_rows(self.user_modality_weight)
        users, items = self.modality_representations(graph)
        user = torch.cat([weight[:, j:j + 1] * h for j, h in
                          enumerate(users)], dim=1)
        item = torch.cat(items, dim=1)
        h = item  # no item layer: the reference's item_rep + item_rep
        if self.num_item_layers > 0:
            knn = graph.own('knn')
            for _ in range(self.num_item_layers):
                h = knn.matmul(h)
        user = user + graph.own('users').matmul(user)
        return graph.output({FUSED: user}, {FUSED: item + h})

    def regularization(self, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor,
                       out: Optional[RecOutput] = None) -> Tensor:
        r""":math:`\sum_m \overline{(\mathbf{p}^{(m)}_{u_b})^2} +
        \overline{w^2}`: the mean square of the batch users' preferences
        (one mean per modality, over the batch's rows and :math:`d`) plus
        that of all user modality weights."""
        if out is not None:
            users, = out.global_ids(users)
        total = self.user_modality_weight.pow(2).mean()
        for m in self.modalities:
            total = total + take_rows(self.preference[m],
                                      users).pow(2).mean()
        return total

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, modalities={self.modalities}, '
                f'embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers}, '
                f'num_item_layers={self.num_item_layers}, '
                f'knn_k={self.knn_k}, '
                f'num_user_neighbors={self.num_user_neighbors})')


def _refresh_after_load(module: DRAGON, incompatible_keys) -> None:
    r"""After ``load_state_dict``: weigh the user graph with the loaded
    multiplicities."""
    module.refresh_user_graph()


class DualGNN(DRAGON):
    r"""The DualGNN model from `"DualGNN: Dual Graph Neural Network for
    Multimedia Recommendation" <https://doi.org/10.1109/TMM.2021.3138298>`_
    (IEEE TMM'21), reproducing MMRec's ``src/models/dualgnn.py``: DRAGON's
    ancestor, with the per-modality user–item GCNs and the users'
    co-occurrence graph but no item–item graph, and sums instead of
    concatenations.

    1. **Per-modality user–item GCN**, as :class:`DRAGON`'s step 1:
       :math:`\mathbf{H}^{(m)} = \sum_{l=0}^{L} \hat{\mathbf{A}}^l
       \mathbf{X}^{(m)}` (unit-norm rows of the free user preferences and
       of the encoded raw item features; the reference's ``h + x + h_1``).
    2. **Fusion** (the reference's ``weighted_sum``): items
       :math:`\mathbf{i} = \sum_m \mathbf{h}^{(m)}_i`; users, with
       trainable per-user weights :math:`w_{u,m}` (initialised to a softmax
       over the modalities),

       .. math::
           \mathbf{u} = w_{u,1}\sum_{m} \mathbf{h}^{(m)}_u +
           \sum_{m > 1} w_{u,m}\,\mathbf{h}^{(m)}_u

       for :obj:`user_fusion="reference"` (the default): MMRec's code adds
       the other modalities *in place* into the first one's tensor before
       weighing the users, so the first weight multiplies the sum — what
       the reference trains; :obj:`user_fusion="weighted_sum"` gives the
       paper's :math:`\sum_m w_{u,m}\mathbf{h}^{(m)}_u`.
    3. **User graph**: :math:`\mathbf{z}_u = \mathbf{u} + \sum_v w_{uv}
       \mathbf{v}` over each user's :obj:`num_user_neighbors` co-occurrence
       neighbours, softmax weights, short lists padded every epoch
       (:func:`polya_padding`: the reference's padding loop draws from the
       growing list, as DRAGON's), as :class:`DRAGON`.
    4. **Loss**: :math:`-\frac{1}{B}\sum_b\log_2\sigma(\cdot)` (BPR with
       ``bpr_weight`` :math:`1/\ln 2`) :math:`+\ \lambda`
       :meth:`~DRAGON.regularization` (the batch users' preferences and
       the user weights).

    **Departures** from the reference: it ranks with the representations
    of the last training batch (one step old), here with the current
    parameters; its item weights ``weight_i`` enter no score (only their
    own penalty) and its ``MLP_v``, ``MLP_t``, ``MLP_user`` and
    edge-dropped graphs are never used: all left out. The user graph
    comes from sparse products, ties in a seeded random order (as
    :class:`DRAGON`). Any number of modalities (MMRec: image, then text).

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        feature_dims (Mapping[str, int]): modality → :math:`F_m`.
        embedding_dim (int, optional): :math:`d`. (default: :obj:`64`)
        num_layers (int, optional): :math:`L` (2 in the reference).
            (default: :obj:`2`)
        num_user_neighbors (int, optional): The reference's ``k = 40``.
            (default: :obj:`40`)
        user_fusion (str, optional): :obj:`"reference"` or
            :obj:`"weighted_sum"`, see step 2. (default:
            :obj:`"reference"`)
        chunk_size (int, optional): Memory scale of the user graph's
            blocks. (default: :obj:`1024`)
        cached (bool, optional): Cache the graph operators while the same
            tensors are passed. (default: :obj:`True`)

    Shapes:
        - **input:** as :class:`DRAGON`
        - **output:** :class:`~pyg_brmrs.nn.RecOutput`, branch
          :obj:`"fused"`: users :math:`(|\mathcal{U}|, d)`, items
          :math:`(|\mathcal{I}|, d)`
    """
    def __init__(
        self,
        num_users: int,
        num_items: int,
        feature_dims: Mapping[str, int],
        embedding_dim: int = 64,
        *,
        num_layers: int = 2,
        num_user_neighbors: int = 40,
        user_fusion: str = 'reference',
        chunk_size: int = 1024,
        cached: bool = True,
    ):
        if user_fusion not in USER_FUSIONS:
            raise ValueError(f"'user_fusion' must be one of "
                             f"{list(USER_FUSIONS)} (got {user_fusion!r})")
        super().__init__(num_users, num_items, feature_dims, embedding_dim,
                         num_layers=num_layers, num_item_layers=0,
                         num_user_neighbors=num_user_neighbors,
                         chunk_size=chunk_size, cached=cached)
        self.user_fusion = user_fusion

    def forward(self, graph: RecGraph) -> RecOutput:
        weight = graph.user_rows(self.user_modality_weight)
        users, items = self.modality_representations(graph)
        item = torch.stack(items).sum(0)
        first = users[0]
        if self.user_fusion == 'reference':  # the in-place sum
            first = torch.stack(users).sum(0)
        user = weight[:, :1] * first
        for j in range(1, len(users)):
            user = user + weight[:, j:j + 1] * users[j]
        user = user + graph.own('users').matmul(user)
        return graph.output({FUSED: user}, {FUSED: item})

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, modalities={self.modalities}, '
                f'embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers}, '
                f'num_user_neighbors={self.num_user_neighbors}, '
                f'user_fusion={self.user_fusion!r})')


#: :class:`DualGNN`'s user fusions.
USER_FUSIONS = ('reference', 'weighted_sum')
