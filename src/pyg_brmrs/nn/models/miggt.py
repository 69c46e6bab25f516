from typing import Dict, List, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from pyg_brmrs.nn.base import FUSED, Recommender, RecOutput
from pyg_brmrs.nn.graph import RecGraph
from pyg_brmrs.nn.graph.adjacency import check_backend
from pyg_brmrs.nn.models._common import check_feature_dims
from pyg_brmrs.nn.models.mgdn import (
    check_rate,
    drop_edge_weights,
    markov_diffusion,
    self_loop_adjacency,
)
from pyg_brmrs.utils.cache import tensor_key
from pyg_brmrs.utils.checks import check_int
from pyg_brmrs.utils.rows import take_rows


class FeatureEncoder(torch.nn.Sequential):
    r"""MIG-GT's item feature MLP (its ``MyMLP`` with batch norm):
    ``Linear(F, h) → BatchNorm → PReLU → Dropout(p) → Linear(h, d) →
    BatchNorm → PReLU``, the linear weights Xavier-uniform, biases zero,
    PReLU slopes 0.25."""
    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int,
                 dropout: float):
        super().__init__(
            torch.nn.Linear(in_dim, hidden_dim),
            torch.nn.BatchNorm1d(hidden_dim), torch.nn.PReLU(init=0.25),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(hidden_dim, out_dim),
            torch.nn.BatchNorm1d(out_dim), torch.nn.PReLU(init=0.25))
        self.reset_parameters()

    def reset_parameters(self):
        for layer in self:
            if isinstance(layer, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(layer.weight)
                torch.nn.init.zeros_(layer.bias)
            elif isinstance(layer, torch.nn.BatchNorm1d):
                layer.reset_parameters()
            elif isinstance(layer, torch.nn.PReLU):
                torch.nn.init.constant_(layer.weight, 0.25)


def sampled_attention(h: Tensor, memory: Tensor, q_proj: torch.nn.Linear,
                      k_proj: torch.nn.Linear, residual: float = 0.9
                      ) -> Tensor:
    r"""MIG-GT's global transformer over a node and its sampled memory:
    for the sequence :math:`\mathbf{S}_v = [\mathbf{h}_v; \mathbf{m}_{v1};
    \dots; \mathbf{m}_{vS}]` (``[N, 1 + S, d]``, :obj:`h` ``[N, d]`` and
    :obj:`memory` ``[N, S, d]``),

    .. math::
        \mathbf{O}_v = 0.1\, \mathrm{softmax}\!\left(\frac{(\mathbf{S}_v
        \mathbf{W}_Q^{\top})(\mathbf{S}_v \mathbf{W}_K^{\top})^{\top}}
        {\sqrt{a}}\right) \mathbf{S}_v + 0.9\, \mathbf{S}_v

    (the values are the inputs themselves; :math:`a` the attention
    width, biases included in the projections). Returns ``[N, 1 + S, d]``;
    row 0 is the node's new representation."""
    seq = torch.cat([h.unsqueeze(1), memory], dim=1)
    q, k = q_proj(seq), k_proj(seq)
    att = torch.softmax(q @ k.transpose(-2, -1) / q.size(-1) ** 0.5, -1)
    return (1.0 - residual) * (att @ seq) + residual * seq


class MIGGT(Recommender):
    r"""MIG-GT from `"Modality-Independent Graph Neural Networks with Global
    Transformers for Multimodal Recommendation" <https://arxiv.org/abs/
    2412.13994>`_ (AAAI'25), as its authors' ``mig_gt/layers/mirf_gt.py``
    and ``main.py`` (``--method mig_gt``) compute it; the diffusion runs on
    :class:`~pyg_brmrs.nn.graph.Adjacency` instead of dgl.

    **Modality-independent receptive fields.** On the self-looped,
    symmetric-normalised user–item graph :math:`\hat{\mathbf{A}}`
    (:func:`~pyg_brmrs.nn.models.mgdn.self_loop_adjacency`), MGDCF's
    diffusion (:func:`~pyg_brmrs.nn.models.mgdn.markov_diffusion`,
    :math:`\alpha, \beta`) runs separately on the ID channel for
    :math:`K_e` steps — the users' free embeddings, the items starting
    from zero — and on every modality's channel for its own :math:`K_m`
    steps — the users starting from zero, the items from
    :class:`FeatureEncoder` of their features. The channels are summed,
    :math:`\mathbf{h} = \mathbf{h}_e + \sum_m \mathbf{h}_m`. Every
    diffusion draws its own edge dropout in training; the inputs get
    dropout (:obj:`feature_dropout` on the raw features,
    :obj:`user_dropout` / :obj:`item_dropout` on the diffusion inputs)
    and :math:`\mathbf{h}` gets :obj:`output_dropout`.

    **Sampled global transformer.** Every node attends over itself and
    :obj:`num_samples` items drawn uniformly (with replacement, a fresh
    draw at every training step) through :func:`sampled_attention`; row 0 of the output is
    the representation, :math:`s(u, i) = \langle \mathbf{z}_u,
    \mathbf{z}_i \rangle`. ``extras["memory"]`` keeps the items' whole
    ``[I, 1 + S, d]`` outputs for :meth:`auxiliary_loss`.

    **Loss** (the recipe): InfoBPR with one negative drawn from all items,
    summed over the batch
    (:class:`~pyg_brmrs.objectives.InfoBPRObjective`), the output
    regulariser :math:`\frac{1}{2}(\lVert \mathbf{Z}_U \rVert^2 + \lVert
    \mathbf{Z}_I \rVert^2)` over every row, and the "unsmooth" term of
    :meth:`auxiliary_loss`: for each pair, the softmax of
    :math:`\langle \mathbf{z}_u, \cdot \rangle` over the positive item's
    transformer outputs must pick the item's own row. Trainer: Adam, lr
    :math:`10^{-2}` decayed by 0.99 per epoch, batches of 8000.

    **Features.** With :obj:`random_projection` (the reference's
    ``use_rp``), that modality's features are multiplied by a fixed
    Gaussian matrix to the width of the first other modality and
    L2-normalised (:math:`+10^{-8}`), once, at construction (a buffer, so
    a loaded model keeps its projection).

    Departures: in evaluation the items are drawn with a generator seeded
    with :obj:`eval_seed`, so that every evaluation of the same weights
    gives the same ranking (the reference draws afresh, so its validation
    and test rankings of one epoch differ by the draw; :obj:`eval_seed=None`
    restores that); its unused transformers and cluster memories are left
    out (the reference builds them but its forward pass never calls them);
    the recipe validates every epoch with early stopping
    like every model of the comparison, where the reference validates every
    20 epochs.

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        feature_dims (Mapping[str, int]): modality → feature size.
        embedding_dim (int, optional): :math:`d`. (default: :obj:`64`)
        hidden_dim (int, optional): The encoders' hidden width.
            (default: :obj:`512`)
        id_layers (int, optional): :math:`K_e`. (default: :obj:`4`)
        modality_layers (Mapping[str, int], optional): :math:`K_m` per
            modality. (default: :obj:`None`: the Baby setting, 1 for
            ``"image"`` and 2 for every other modality)
        alpha (float, optional): :math:`\alpha`. (default: :obj:`0.1`)
        beta (float, optional): :math:`\beta`. (default: :obj:`0.9`)
        num_samples (int, optional): Sampled items per node.
            (default: :obj:`10`)
        attention_dim (int, optional): :math:`a`. (default: :obj:`4`)
        feature_dropout (float, optional): (default: :obj:`0.3`)
        encoder_dropout (float, optional): Dropout inside the encoders.
            (default: :obj:`0.3`)
        user_dropout (float, optional): (default: :obj:`0.3`)
        item_dropout (float, optional): (default: :obj:`0.3`)
        edge_dropout (float, optional): (default: :obj:`0.2`)
        output_dropout (float, optional): (default: :obj:`0.2`)
        random_projection (str, optional): The modality to project (only
            when the data has another one). (default: :obj:`"image"`)
        eval_seed (int, optional): The seed of the evaluation draw (see
            above). (default: :obj:`0`)
        backend (str, optional): The kernel of the graph operator.
            (default: :obj:`"auto"`)
        cached (bool, optional): Cache the operator. (default: :obj:`True`)

    Shapes:
        - **input:** the full graph's :class:`~pyg_brmrs.nn.graph.RecGraph`
          (full graph only: every node attends over sampled items)
        - **output:** :class:`~pyg_brmrs.nn.RecOutput` with one branch
          :obj:`"fused"`: users :math:`(U, d)`, items :math:`(I, d)`
    """
    graph_edge_types = ()
    supports_subgraph = False

    def __init__(self, num_users: int, num_items: int,
                 feature_dims: Mapping[str, int], embedding_dim: int = 64,
                 hidden_dim: int = 512, id_layers: int = 4,
                 modality_layers: Optional[Mapping[str, int]] = None,
                 alpha: float = 0.1, beta: float = 0.9,
                 num_samples: int = 10, attention_dim: int = 4,
                 feature_dropout: float = 0.3, encoder_dropout: float = 0.3,
                 user_dropout: float = 0.3, item_dropout: float = 0.3,
                 edge_dropout: float = 0.2, output_dropout: float = 0.2,
                 random_projection: Optional[str] = 'image',
                 eval_seed: Optional[int] = 0,
                 backend: str = 'auto', cached: bool = True):
        super().__init__(num_users, num_items)
        self.feature_dims = check_feature_dims(feature_dims)
        self.modalities: List[str] = sorted(self.feature_dims)
        self.embedding_dim = check_int(embedding_dim, 'embedding_dim')
        self.id_layers = check_int(id_layers, 'id_layers', 0)
        if modality_layers is None:
            modality_layers = {m: 1 if m == 'image' else 2
                               for m in self.modalities}
        missing = set(self.modalities) - set(modality_layers)
        if missing or set(modality_layers) - set(self.modalities):
            raise ValueError(f"'modality_layers' must name exactly the "
                             f"modalities {self.modalities} (got "
                             f"{sorted(modality_layers)})")
        self.modality_layers: Dict[str, int] = {
            m: check_int(modality_layers[m], f'modality_layers[{m!r}]', 0)
            for m in self.modalities}
        if alpha < 0 or beta < 0 or alpha == beta == 0:
            raise ValueError(f"'alpha' and 'beta' must be >= 0 and not both "
                             f"0 (got {alpha}, {beta})")
        self.alpha, self.beta = float(alpha), float(beta)
        self.num_samples = check_int(num_samples, 'num_samples')
        self.eval_seed = None if eval_seed is None else int(eval_seed)
        self.dropouts = {name: check_rate(value, name) for name, value in (
            ('feature_dropout', feature_dropout),
            ('encoder_dropout', encoder_dropout),
            ('user_dropout', user_dropout), ('item_dropout', item_dropout),
            ('edge_dropout', edge_dropout),
            ('output_dropout', output_dropout))}
        others = [m for m in self.modalities if m != random_projection]
        self.random_projection = random_projection \
            if random_projection in self.feature_dims and others else None
        in_dims = dict(self.feature_dims)
        if self.random_projection is not None:
            in_dims[self.random_projection] = self.feature_dims[others[0]]
            self.register_buffer('projection', torch.empty(
                self.feature_dims[self.random_projection],
                in_dims[self.random_projection]))
        self.backend = check_backend(backend)
        self.cached = bool(cached)
        self.user_embedding = torch.nn.Parameter(
            torch.empty(num_users, embedding_dim))
        self.encoders = torch.nn.ModuleDict({
            m: FeatureEncoder(in_dims[m], hidden_dim, embedding_dim,
                              self.dropouts['encoder_dropout'])
            for m in self.modalities})
        self.q_proj = torch.nn.Linear(embedding_dim, attention_dim)
        self.k_proj = torch.nn.Linear(embedding_dim, attention_dim)
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.normal_(self.user_embedding,
                              std=self.embedding_dim ** -0.5)
        if self.random_projection is not None:
            torch.nn.init.normal_(self.projection)
        for enc in self.encoders.values():
            enc.reset_parameters()
        for lin in (self.q_proj, self.k_proj):
            torch.nn.init.xavier_uniform_(lin.weight)
            torch.nn.init.zeros_(lin.bias)
        self.clear_cache()

    def _drop(self, x: Tensor, name: str) -> Tensor:
        return F.dropout(x, self.dropouts[name], self.training)

    def forward(self, graph: RecGraph) -> RecOutput:
        ei = graph.edge_index
        U, I = graph.num_users, graph.num_items
        base = graph.cached('miggt', (tensor_key(ei), self.backend),
                            lambda: self_loop_adjacency(ei, U, I,
                                                        self.backend))

        def op():
            rate = self.dropouts['edge_dropout']
            return drop_edge_weights(base, rate) \
                if self.training and rate > 0 else base

        feats = graph.features(self.feature_dims)
        dtype = self.user_embedding.dtype
        users = self._drop(self.user_embedding, 'user_dropout')
        h = markov_diffusion(op(), torch.cat([users, users.new_zeros(
            I, self.embedding_dim)]), self.id_layers, self.alpha, self.beta)
        for m in self.modalities:
            x = feats[m].to(dtype)
            if m == self.random_projection:
                x = x @ self.projection.to(dtype)
                x = x / (x.norm(dim=-1, keepdim=True) + 1e-8)
            x = self.encoders[m](self._drop(x, 'feature_dropout'))
            x = self._drop(x, 'item_dropout')
            h = h + markov_diffusion(
                op(), torch.cat([x.new_zeros(U, x.size(1)), x]),
                self.modality_layers[m], self.alpha, self.beta)
        h = self._drop(h, 'output_dropout')
        items = h[U:]
        gen = None
        if not self.training and self.eval_seed is not None and \
                h.device.type != 'meta':
            gen = torch.Generator(device=h.device).manual_seed(
                self.eval_seed)
        index = torch.randint(I, (U + I, self.num_samples),
                              device=h.device, generator=gen)
        out = sampled_attention(h, take_rows(items, index), self.q_proj,
                                self.k_proj)
        z = out[:, 0]
        return graph.output({FUSED: z[:U]}, {FUSED: z[U:]},
                            extras={'memory': out[U:]})

    def auxiliary_loss(self, out: RecOutput, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor) -> Dict[str, Tensor]:
        r"""``{"unsmooth": ...}``: :math:`\sum_b -\log
        \mathrm{softmax}_0(\langle \mathbf{z}_{u_b}, \mathbf{O}_{i^+_b}
        \rangle)`, the positive item's own row among its transformer
        outputs (summed over the batch, as the reference)."""
        u = take_rows(out.user_emb, users)
        memory = take_rows(out.extras['memory'], pos_items)
        logits = (memory @ u.unsqueeze(-1)).squeeze(-1)
        target = torch.zeros(u.size(0), dtype=torch.long, device=u.device)
        return {'unsmooth': F.cross_entropy(logits, target,
                                            reduction='sum')}

    def regularization(self, users: Tensor, pos_items: Tensor,
                       neg_items: Optional[Tensor],
                       out: Optional[RecOutput] = None) -> Tensor:
        r""":math:`\frac{1}{2}(\lVert \mathbf{Z}_U \rVert_F^2 +
        \lVert \mathbf{Z}_I \rVert_F^2)` of the step's output."""
        if out is None:
            raise ValueError("MIGGT regularises its outputs: pass the "
                             "forward output 'out'")
        return 0.5 * (out.user_emb.pow(2).sum() + out.item_emb.pow(2).sum())

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, modalities={self.modalities}, '
                f'embedding_dim={self.embedding_dim}, '
                f'id_layers={self.id_layers}, '
                f'modality_layers={self.modality_layers}, '
                f'num_samples={self.num_samples})')
