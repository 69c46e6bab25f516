from typing import Dict, List, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from pyg_brmrs.nn.base import FUSED, Recommender, RecOutput
from pyg_brmrs.nn.graph import RecGraph
from pyg_brmrs.nn.graph.adjacency import check_backend
from pyg_brmrs.nn.models._common import (
    check_feature_dims,
    mmrec_modality_order,
)
from pyg_brmrs.utils.checks import check_int
from pyg_brmrs.utils.rows import take_rows


def in_batch_info_nce(a: Tensor, b: Tensor, temperature: float,
                      normalize: bool = True) -> Tensor:
    r"""The in-batch softmax of row :math:`k` of :obj:`a` against all rows
    of :obj:`b`, its own row :math:`k` the positive:
    :math:`\frac{1}{B}\sum_k -\log \frac{e^{\langle \mathbf{a}_k,
    \mathbf{b}_k \rangle / \tau}}{\sum_j e^{\langle \mathbf{a}_k,
    \mathbf{b}_j \rangle / \tau}}`, on L2-normalised rows with
    :obj:`normalize` (a repeated user or item of the batch is one of its own
    negatives, as SLMRec computes it)."""
    if normalize:
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.t() / temperature
    target = torch.arange(a.size(0), device=a.device)
    return F.cross_entropy(logits, target)


class SLMRec(Recommender):
    r"""SLMRec from "Self-supervised Learning for Multimedia
    Recommendation" (IEEE TMM 2022), as MMRec's ``slmrec.py`` computes it
    with its default self-supervised task (``FAC``, fine and coarse
    alignment).

    Every modality :math:`m` has an item channel
    :math:`\mathbf{W}_m \mathrm{L2norm}(\mathbf{x}^{(m)}_i) + \mathbf{b}_m`
    and shares the free user embeddings; the ID channel holds the free user
    and item embeddings. Every channel is propagated by LightGCN (mean over
    layers :math:`0..L` of :math:`\mathbf{D}^{-1/2}\mathbf{A}
    \mathbf{D}^{-1/2}`), giving :math:`\mathbf{z}^{(c)}`, and the channels
    are concatenated and projected,

    .. math::
        \mathbf{p}_u = \mathbf{W}_U [\mathbf{z}^{(id)}_u \,\Vert\,
        \mathbf{z}^{(1)}_u \,\Vert\, \dots] + \mathbf{b}_U, \qquad
        \mathbf{q}_i = \mathbf{W}_I [\mathbf{z}^{(id)}_i \,\Vert\,
        \mathbf{z}^{(1)}_i \,\Vert\, \dots] + \mathbf{b}_I,

    :math:`s(u, i) = \langle \mathbf{p}_u, \mathbf{q}_i \rangle`.

    **Loss** (:meth:`positive_loss`, no sampled negatives): the in-batch
    softmax of the batch's users against its positive items
    (:func:`in_batch_info_nce`, normalised, temperature :obj:`temperature`)
    plus :obj:`ssl_weight` times the FAC task on the batch's positive
    items, a chain of un-normalised in-batch softmaxes at temperature
    :obj:`ssl_temperature`: the ID channel projected
    (:math:`\mathbf{g}_{i \to iv}`) against the first modality's
    (:math:`\mathbf{g}_{v \to iv}`), then that projection carried on
    (:math:`\mathbf{g}_{iv \to iva}`, :math:`\mathbf{g}_{iva \to ivat}`, to
    :math:`d/2`) against the second modality's (:math:`\mathbf{g}_{t \to
    ivat}`, to :math:`d/2`). The modalities are taken in MMRec's order
    (``image`` first, its ``v_feat``); one or two are supported (MMRec's
    ``FAC`` has exactly these two levels; its audio level is commented
    out). No embedding regulariser: MMRec's trainer applies weight decay
    :math:`10^{-4}` (the recipe's ``train.weight_decay``); the ``reg`` of
    its grid is never read by the model.

    Departures: MMRec ranks with the representations of the last training
    step passed through a sigmoid (monotone: the same ranking up to that
    staleness); here evaluation computes them afresh.

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        feature_dims (Mapping[str, int]): modality → feature size (one or
            two modalities).
        embedding_dim (int, optional): :math:`d` (even). (default: :obj:`64`)
        num_layers (int, optional): LightGCN layers :math:`L`.
            (default: :obj:`3`)
        temperature (float, optional): The main loss's :math:`\tau`.
            (default: :obj:`0.2`)
        ssl_weight (float, optional): MMRec's ``ssl_alpha``.
            (default: :obj:`0.1`)
        ssl_temperature (float, optional): MMRec's ``ssl_temp``.
            (default: :obj:`0.2`)
        backend (str, optional): The kernel of the graph operator.
            (default: :obj:`"auto"`)
        cached (bool, optional): Cache the operator. (default: :obj:`True`)

    Shapes:
        - **input:** the :class:`~pyg_brmrs.nn.graph.RecGraph` of the data
          (item features, training edges) or of a mini-batch subgraph
        - **output:** :class:`~pyg_brmrs.nn.RecOutput` with one branch
          :obj:`"fused"` (users :math:`(U, d)`, items :math:`(I, d)`);
          ``extras["item_channels"]`` ``[I, 1 + M, d]`` (ID first)
    """
    graph_edge_types = ()

    def __init__(self, num_users: int, num_items: int,
                 feature_dims: Mapping[str, int], embedding_dim: int = 64,
                 num_layers: int = 3, temperature: float = 0.2,
                 ssl_weight: float = 0.1, ssl_temperature: float = 0.2,
                 backend: str = 'auto', cached: bool = True):
        super().__init__(num_users, num_items)
        self.feature_dims = check_feature_dims(feature_dims)
        if len(self.feature_dims) > 2:
            raise ValueError(f"SLMRec's FAC task aligns one or two "
                             f"modalities (got {sorted(self.feature_dims)})")
        self.modalities: List[str] = mmrec_modality_order(self.feature_dims)
        self.embedding_dim = check_int(embedding_dim, 'embedding_dim', 2)
        if self.embedding_dim % 2:
            raise ValueError(f"'embedding_dim' must be even (FAC projects "
                             f"to d/2; got {embedding_dim})")
        self.num_layers = check_int(num_layers, 'num_layers', 0)
        for name, value in (('temperature', temperature),
                            ('ssl_temperature', ssl_temperature)):
            if not value > 0:
                raise ValueError(f"'{name}' must be > 0 (got {value})")
        if ssl_weight < 0:
            raise ValueError(f"'ssl_weight' must be >= 0 (got {ssl_weight})")
        self.temperature = float(temperature)
        self.ssl_weight = float(ssl_weight)
        self.ssl_temperature = float(ssl_temperature)
        self.backend = check_backend(backend)
        self.cached = bool(cached)
        d = embedding_dim
        self.user_embedding = torch.nn.Embedding(num_users, d)
        self.item_embedding = torch.nn.Embedding(num_items, d)
        self.dense = torch.nn.ModuleDict({
            m: torch.nn.Linear(self.feature_dims[m], d)
            for m in self.modalities})
        width = d * (1 + len(self.modalities))
        self.user_out = torch.nn.Linear(width, d)
        self.item_out = torch.nn.Linear(width, d)
        # FAC: ID -> first modality (d), then on to the second (d/2)
        self.g_i_iv = torch.nn.Linear(d, d)
        self.g_v_iv = torch.nn.Linear(d, d)
        self.g_iv_iva = torch.nn.Linear(d, d)
        self.g_iva_ivat = torch.nn.Linear(d, d // 2)
        self.g_t_ivat = torch.nn.Linear(d, d // 2)
        self.reset_parameters()

    def _linears(self):
        return [*self.dense.values(), self.user_out, self.item_out,
                self.g_i_iv, self.g_v_iv, self.g_iv_iva, self.g_iva_ivat,
                self.g_t_ivat]

    def reset_parameters(self):
        r"""MMRec's initialisation: :func:`~torch.nn.init.xavier_uniform_`
        on the embeddings and every linear weight, the biases as
        :class:`torch.nn.Linear` draws them."""
        torch.nn.init.xavier_uniform_(self.user_embedding.weight)
        torch.nn.init.xavier_uniform_(self.item_embedding.weight)
        for lin in self._linears():
            lin.reset_parameters()
            torch.nn.init.xavier_uniform_(lin.weight)
        self.clear_cache()

    def forward(self, graph: RecGraph) -> RecOutput:
        feats = graph.features(self.feature_dims)
        dtype = self.item_embedding.weight.dtype
        items = [graph.item_rows(self.item_embedding.weight)]
        for m in self.modalities:
            x = F.normalize(feats[m].to(dtype), dim=-1)
            items.append(self.dense[m](x))
        x_item = torch.stack(items, 1)  # [I, 1 + M, d]
        x_user = graph.user_rows(self.user_embedding.weight).unsqueeze(
            1).expand(-1, x_item.size(1), -1)
        z_user, z_item = graph.user_item(dtype=dtype).layer_mean(
            x_user, x_item, self.num_layers)
        user = self.user_out(z_user.flatten(1))
        item = self.item_out(z_item.flatten(1))
        return graph.output({FUSED: user}, {FUSED: item},
                            extras={'item_channels': z_item})

    def positive_loss(self, out: RecOutput, users: Tensor,
                      pos_items: Tensor) -> Dict[str, Tensor]:
        r"""``{"info_nce": main loss, "ssl": ssl_weight * FAC}`` of the
        batch (see the class description)."""
        main = in_batch_info_nce(take_rows(out.user_emb, users),
                                 take_rows(out.item_emb, pos_items),
                                 self.temperature)
        ch = take_rows(out.extras['item_channels'], pos_items)
        x_iv = self.g_i_iv(ch[:, 0])
        ssl = in_batch_info_nce(x_iv, self.g_v_iv(ch[:, 1]),
                                self.ssl_temperature, normalize=False)
        if len(self.modalities) == 2:
            x_ivat = self.g_iva_ivat(self.g_iv_iva(x_iv))
            ssl = ssl + in_batch_info_nce(
                x_ivat, self.g_t_ivat(ch[:, 2]), self.ssl_temperature,
                normalize=False)
        return {'info_nce': main, 'ssl': self.ssl_weight * ssl}

    def regularization(self, users: Tensor, pos_items: Tensor,
                       neg_items: Optional[Tensor],
                       out: Optional[RecOutput] = None) -> Tensor:
        r"""Zero: SLMRec regularises by the optimiser's weight decay."""
        return self.user_embedding.weight.new_zeros(())

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, modalities={self.modalities}, '
                f'embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers})')
