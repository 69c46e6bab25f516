from typing import Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from pyg_brmrs.loss import product_logsumexp
from pyg_brmrs.nn.base import FUSED, Recommender, RecOutput
from pyg_brmrs.nn.graph import RecGraph
from pyg_brmrs.nn.models._common import (
    check_feature_dims,
    frobenius_regularization,
    mmrec_modality_order,
)
from pyg_brmrs.utils.checks import check_float, check_int
from pyg_brmrs.utils.rows import take_rows


def hypergraph_memberships(logits: Tensor, temperature: float,
                           sample: bool) -> Tensor:
    r"""Soft hyperedge memberships of the rows of :obj:`logits` ``[N, H]``:
    :math:`\mathrm{softmax}((\mathbf{l} + \mathbf{g}) / \tau)` with Gumbel
    noise :math:`\mathbf{g}` when :obj:`sample` (the Gumbel-softmax,
    :func:`torch.nn.functional.gumbel_softmax` with ``hard=False``), its
    noise-free form :math:`\mathrm{softmax}(\mathbf{l} / \tau)` otherwise.
    """
    if sample:
        return F.gumbel_softmax(logits, tau=temperature, hard=False, dim=1)
    return torch.softmax(logits / temperature, dim=1)


def hypergraph_propagate(item_hyper: Tensor, user_hyper: Tensor,
                         item_emb: Tensor, num_layers: int
                         ) -> Tuple[Tensor, Tensor, Tensor]:
    r"""LGMRec's hypergraph layers: with item memberships
    :math:`\mathbf{H}_I` ``[I, H]``, user memberships :math:`\mathbf{H}_U`
    ``[U, H]`` and :math:`\mathbf{E}^{(0)} = ` :obj:`item_emb` ``[I, d]``,

    .. math::
        \mathbf{\Lambda}^{(l)} = \mathbf{H}_I^{\top}\mathbf{E}^{(l-1)},
        \qquad \mathbf{E}^{(l)} = \mathbf{H}_I \mathbf{\Lambda}^{(l)},
        \qquad \mathbf{U} = \mathbf{H}_U \mathbf{\Lambda}^{(L)}

    (every hyperedge gathers its items, then spreads to its items and
    users), returned as ``(U [U, d], E^{(L)} [I, d], Λ^{(L)} [H, d])`` for
    :math:`L \ge 1` :obj:`num_layers`: both outputs are the memberships
    times the last layer's hyperedge embeddings :math:`\mathbf{\Lambda}`.
    """
    if num_layers < 1:
        raise ValueError(f"'num_layers' must be at least 1 (got "
                         f"{num_layers})")
    item = item_emb
    for _ in range(num_layers):
        latent = item_hyper.t() @ item  # [H, d]
        item = item_hyper @ latent
    return user_hyper @ latent, item, latent


def factored_contrast(anchor: Tensor, positive: Tensor,
                      candidate_coef: Tensor, candidate_basis: Tensor,
                      temperature: float) -> Tensor:
    r"""LGMRec's ``ssl_triple_loss`` summed over the batch,

    .. math::
        -\sum_b \log \frac{\exp(\cos(\mathbf{a}_b, \mathbf{p}_b) / \tau)}
        {\sum_j \exp(\cos(\mathbf{a}_b, \mathbf{c}_j) / \tau)},

    for candidates given in factored form, :math:`\mathbf{c}_j =
    \mathbf{w}_j^{\top} \mathbf{\Lambda}` (:obj:`candidate_coef`
    ``[N, H]``, :obj:`candidate_basis` ``[H, d]``: the rows of a hypergraph
    output, :func:`hypergraph_propagate`). The score matrix
    :math:`[\cos(\mathbf{a}_b, \mathbf{c}_j)]` is computed through the
    :math:`H`-dimensional factors, :math:`(\bar{\mathbf{a}}
    \mathbf{\Lambda}^{\top})(\mathbf{w}_j / \lVert \mathbf{c}_j
    \rVert)`: the same values as
    :func:`~pyg_brmrs.loss.cosine_info_nce` over the full rows (up to float
    rounding) at :math:`H / d` of the cost of its products."""
    a = F.normalize(anchor, dim=1) / temperature
    pos = (a * F.normalize(positive, dim=1)).sum(-1)
    gram = candidate_basis @ candidate_basis.t()  # [H, H]
    # |c_j| as F.normalize: max(|c_j|, 1e-12), with a zero gradient below
    # (a row whose memberships were all dropped is a zero row)
    sq = ((candidate_coef @ gram) * candidate_coef).sum(1)
    keys = candidate_coef / sq.clamp_min(1e-24).sqrt().unsqueeze(1)
    lse = product_logsumexp(a @ candidate_basis.t(), keys,
                            bound=1.0 / temperature)
    return (lse - pos).sum()


class LGMRec(Recommender):
    r"""The LGMRec model from `"LGMRec: Local and Global Graph Learning for
    Multimodal Recommendation" <https://arxiv.org/abs/2312.16400>`_,
    reproducing MMRec's ``src/models/lgmrec.py``.

    With the symmetric-normalised user–item graph
    :math:`\hat{\mathbf{A}}` and the frozen features
    :math:`\mathbf{X}^{(m)}`:

    1. **Collaborative graph embedding** (local, IDs):
       :math:`\mathbf{C} = \frac{1}{L+1}\sum_{l=0}^{L}\hat{\mathbf{A}}^l
       [\mathbf{E}_U; \mathbf{E}_I]` (:obj:`num_layers` :math:`= L`).
    2. **Modality graph embedding** (local, features): items
       :math:`\mathbf{F}^{(m)}_I = \mathbf{X}^{(m)} \mathbf{W}_m` (no bias),
       users the mean over their items
       :math:`\mathbf{F}^{(m)}_U = \mathbf{D}_U^{-1}\mathbf{R}
       \mathbf{F}^{(m)}_I`, then :math:`L_m` layers, last layer kept:
       :math:`\mathbf{M}^{(m)} = \hat{\mathbf{A}}^{L_m}[\mathbf{F}^{(m)}_U;
       \mathbf{F}^{(m)}_I]` (:obj:`num_modality_layers` :math:`= L_m`).
    3. **Global hypergraph embedding.** Hyperedge logits
       :math:`\mathbf{L}^{(m)}_I = \mathbf{X}^{(m)}\mathbf{V}_m`
       ``[I, H]`` and :math:`\mathbf{L}^{(m)}_U = \mathbf{R}
       \mathbf{L}^{(m)}_I` (sums over the user's items), memberships
       :func:`hypergraph_memberships` (Gumbel-softmax at temperature
       :math:`\tau`) with dropout :math:`1 - \kappa` (:obj:`keep_rate`
       :math:`= \kappa`), propagated by :func:`hypergraph_propagate` from
       the item rows of :math:`\mathbf{C}` (:obj:`num_hyper_layers`):
       :math:`\mathbf{G}^{(m)}`, :math:`\mathbf{G} = \sum_m
       \mathbf{G}^{(m)}`.
    4. **Representation**
       :math:`\mathbf{Z} = \mathbf{C} + \sum_m \bar{\mathbf{M}}^{(m)} +
       \alpha \bar{\mathbf{G}}` (:math:`\bar{\cdot}`: rows scaled to unit
       norm), :math:`s(u, i) = \langle \mathbf{z}_u, \mathbf{z}_i
       \rangle`.
    5. **Loss** (with :class:`~pyg_brmrs.objectives.BPRObjective`): BPR
       :math:`+\ \lambda` :meth:`regularization` (MMRec's ``reg_loss``:
       :math:`(\lVert \mathbf{Z}_{u} \rVert_F + \lVert \mathbf{Z}_{i^+}
       \rVert_F + \lVert \mathbf{Z}_{i^-} \rVert_F) / B` of the batch's
       rows) :math:`+` :meth:`auxiliary_loss`, the hypergraph contrast
       :math:`\lambda_{cl}\sum_{a < b}
       [\ell(\mathbf{G}^{(a)}_{U,u}, \mathbf{G}^{(b)}_{U,u},
       \mathbf{G}^{(b)}_U) + \ell(\mathbf{G}^{(a)}_{I,i^+},
       \mathbf{G}^{(b)}_{I,i^+}, \mathbf{G}^{(b)}_I)]` with the InfoNCE
       :math:`\ell` of :func:`factored_contrast` (every row of the other
       view a candidate) at temperature :math:`\tau`, summed over the
       batch, over the modality pairs in the order image
       first (MMRec's ``v_feat``), then the others by name: for
       {image, text} or {image, audio} the reference's single term.

    **Evaluation is deterministic** (a departure): MMRec's
    ``F.gumbel_softmax`` draws new Gumbel noise on every forward pass, its
    evaluation included, so its rankings (and validation-based early
    stopping) are random; here evaluation mode uses the noise-free
    memberships :math:`\mathrm{softmax}(\mathbf{L}/\tau)`. Training draws
    the noise as the reference does. :obj:`eval_gumbel_noise=True` restores
    the reference's random evaluation.

    **Full graph only** (:attr:`~pyg_brmrs.nn.Recommender.supports_subgraph`
    is :obj:`False`): every hyperedge gathers all items, so a mini-batch
    subgraph cannot give a node its representation. The features are
    frozen, as in MMRec (``freeze=True``).

    Other departures, without effect: exact degrees (MMRec adds
    :math:`10^{-7}`), the contrast computed as a log-sum-exp (MMRec: the
    ratio of exponentials, which overflows for small :math:`\tau`), and
    any number of modalities (MMRec: exactly image and text; with one it
    falls back to :math:`\mathbf{C}` alone, here one modality keeps its
    local and global terms and has no contrast).

    **Initialisation** (MMRec): :func:`~torch.nn.init.xavier_uniform_` on
    the ID tables, :math:`\mathbf{W}_m` and :math:`\mathbf{V}_m`.

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        feature_dims (Mapping[str, int]): modality → :math:`F_m`.
        embedding_dim (int, optional): :math:`d` (MMRec's
            ``embedding_size`` = ``feat_embed_dim``). (default: :obj:`64`)
        num_layers (int, optional): :math:`L` (``n_ui_layers``).
            (default: :obj:`2`)
        num_modality_layers (int, optional): :math:`L_m`
            (``n_mm_layers``). (default: :obj:`2`)
        num_hyper_layers (int, optional): Hypergraph layers, at least 1
            (``n_hyper_layer``). (default: :obj:`1`)
        num_hyperedges (int, optional): :math:`H` (``hyper_num``).
            (default: :obj:`4`)
        keep_rate (float, optional): :math:`\kappa`, in :math:`(0, 1]`.
            (default: :obj:`0.5`)
        alpha (float, optional): :math:`\alpha`. (default: :obj:`0.3`)
        cl_weight (float, optional): :math:`\lambda_{cl}`.
            (default: :obj:`1e-4`)
        temperature (float, optional): :math:`\tau` of the memberships and
            the contrast. (default: :obj:`0.2`)
        eval_gumbel_noise (bool, optional): Draw Gumbel noise in evaluation
            mode too, as MMRec. (default: :obj:`False`)
        cached (bool, optional): Cache the graph operators while the same
            tensors are passed. (default: :obj:`True`)

    Shapes:
        - **input:** the :class:`~pyg_brmrs.nn.graph.RecGraph` of a
          :class:`~torch_geometric.data.HeteroData` with
          ``data['item'][f'x_{m}']`` :math:`(|\mathcal{I}|, F_m)` and the
          training ``edge_index`` (full graph only)
        - **output:** :class:`~pyg_brmrs.nn.RecOutput`, branch
          :obj:`"fused"`: :math:`\mathbf{Z}` users
          :math:`(|\mathcal{U}|, d)`, items :math:`(|\mathcal{I}|, d)`;
          ``extras``: ``f"hyper_user_{m}"`` :math:`(|\mathcal{U}|, d)` and
          ``f"hyper_item_{m}"`` :math:`(|\mathcal{I}|, d)`, the
          :math:`\mathbf{G}^{(m)}`, and their factors: the memberships
          ``f"hyper_user_coef_{m}"`` :math:`(|\mathcal{U}|, H)`,
          ``f"hyper_item_coef_{m}"`` :math:`(|\mathcal{I}|, H)` and the
          hyperedge embeddings ``f"hyper_latent_{m}"`` :math:`(H, d)`
    """
    graph_edge_types = ()  # reads no kNN graph of the data
    supports_subgraph = False  # the hyperedges couple every item

    def __init__(
        self,
        num_users: int,
        num_items: int,
        feature_dims: Mapping[str, int],
        embedding_dim: int = 64,
        *,
        num_layers: int = 2,
        num_modality_layers: int = 2,
        num_hyper_layers: int = 1,
        num_hyperedges: int = 4,
        keep_rate: float = 0.5,
        alpha: float = 0.3,
        cl_weight: float = 1e-4,
        temperature: float = 0.2,
        eval_gumbel_noise: bool = False,
        cached: bool = True,
    ):
        super().__init__(num_users, num_items)
        self.feature_dims = check_feature_dims(feature_dims)
        #: The modalities, image first (MMRec's ``v_feat``), then by name.
        self.modalities: List[str] = mmrec_modality_order(self.feature_dims)
        self.embedding_dim = check_int(embedding_dim, 'embedding_dim')
        self.num_layers = check_int(num_layers, 'num_layers', 0)
        self.num_modality_layers = check_int(num_modality_layers,
                                             'num_modality_layers', 0)
        self.num_hyper_layers = check_int(num_hyper_layers,
                                          'num_hyper_layers', 1)
        self.num_hyperedges = check_int(num_hyperedges, 'num_hyperedges')
        self.keep_rate = check_float(keep_rate, 'keep_rate', 0.0, 1.0,
                                     strict_minimum=True)
        self.alpha = check_float(alpha, 'alpha')
        self.cl_weight = check_float(cl_weight, 'cl_weight')
        self.temperature = check_float(temperature, 'temperature',
                                       strict_minimum=True)
        self.eval_gumbel_noise = bool(eval_gumbel_noise)
        self.cached = bool(cached)
        d, h = self.embedding_dim, self.num_hyperedges
        self.user_embedding = torch.nn.Embedding(num_users, d)
        self.item_embedding = torch.nn.Embedding(num_items, d)
        self.proj = torch.nn.ParameterDict({
            m: torch.nn.Parameter(torch.empty(self.feature_dims[m], d))
            for m in self.modalities})
        self.hyper = torch.nn.ParameterDict({
            m: torch.nn.Parameter(torch.empty(self.feature_dims[m], h))
            for m in self.modalities})
        self.membership_dropout = torch.nn.Dropout(1.0 - self.keep_rate)
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.user_embedding.weight)
        torch.nn.init.xavier_uniform_(self.item_embedding.weight)
        for p in [*self.proj.values(), *self.hyper.values()]:
            torch.nn.init.xavier_uniform_(p)
        self.clear_cache()

    def forward(self, graph: RecGraph) -> RecOutput:
        ui = graph.user_item()
        user, item = ui.layer_mean(graph.user_rows(self.user_embedding.weight),
                                   graph.item_rows(self.item_embedding.weight),
                                   self.num_layers)
        item_c = item
        feats = graph.features(self.feature_dims)
        mean, user_sum = graph.user_mean(), graph.user_sum()
        sample = self.training or self.eval_gumbel_noise
        hyper_user, hyper_item = 0, 0
        extras: Dict[str, Tensor] = {}
        for m in self.modalities:
            x = feats[m].to(self.proj[m].dtype)
            f_item = x @ self.proj[m]
            f_user = mean.matmul(f_item)
            m_user, m_item = ui.layer_mean(f_user, f_item,
                                           self.num_modality_layers,
                                           last=True)
            user = user + F.normalize(m_user, dim=1)
            item = item + F.normalize(m_item, dim=1)
            logits = x @ self.hyper[m]
            h_item = hypergraph_memberships(logits, self.temperature, sample)
            h_user = hypergraph_memberships(user_sum.matmul(logits),
                                            self.temperature, sample)
            h_item = self.membership_dropout(h_item)
            h_user = self.membership_dropout(h_user)
            g_user, g_item, latent = hypergraph_propagate(
                h_item, h_user, item_c, self.num_hyper_layers)
            extras[f'hyper_user_{m}'] = g_user
            extras[f'hyper_item_{m}'] = g_item
            extras[f'hyper_user_coef_{m}'] = h_user
            extras[f'hyper_item_coef_{m}'] = h_item
            extras[f'hyper_latent_{m}'] = latent
            hyper_user = hyper_user + g_user
            hyper_item = hyper_item + g_item
        user = user + self.alpha * F.normalize(hyper_user, dim=1)
        item = item + self.alpha * F.normalize(hyper_item, dim=1)
        return graph.output({FUSED: user}, {FUSED: item}, extras=extras)

    def auxiliary_loss(self, out: RecOutput, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor) -> Dict[str, Tensor]:
        r"""``{"hypergraph_cl": cl_weight * sum of the contrasts}`` (see
        the class description); empty for one modality or
        :obj:`cl_weight=0`."""
        if self.cl_weight == 0 or len(self.modalities) < 2:
            return {}
        total = out.user_emb.new_zeros(())
        for a, m in enumerate(self.modalities):
            for n in self.modalities[a + 1:]:
                for side, ids in (('user', users), ('item', pos_items)):
                    ex = out.extras
                    total = total + factored_contrast(
                        take_rows(ex[f'hyper_{side}_{m}'], ids),
                        take_rows(ex[f'hyper_{side}_{n}'], ids),
                        ex[f'hyper_{side}_coef_{n}'],
                        ex[f'hyper_latent_{n}'], self.temperature)
        return {'hypergraph_cl': self.cl_weight * total}

    def regularization(self, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor,
                       out: Optional[RecOutput] = None) -> Tensor:
        r"""MMRec's ``reg_loss`` of the batch's final representations:
        :math:`(\lVert \mathbf{Z}_u \rVert_F + \lVert \mathbf{Z}_{i^+}
        \rVert_F + \lVert \mathbf{Z}_{i^-} \rVert_F) / B`."""
        if out is None:
            raise ValueError("'LGMRec.regularization' needs the forward "
                             "output 'out'")
        return frobenius_regularization(take_rows(out.user_emb, users),
                                        take_rows(out.item_emb, pos_items),
                                        take_rows(out.item_emb, neg_items))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, modalities={self.modalities}, '
                f'embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers}, '
                f'num_modality_layers={self.num_modality_layers}, '
                f'num_hyper_layers={self.num_hyper_layers}, '
                f'num_hyperedges={self.num_hyperedges}, '
                f'keep_rate={self.keep_rate}, alpha={self.alpha}, '
                f'cl_weight={self.cl_weight})')
