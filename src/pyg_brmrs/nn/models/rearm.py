from typing import Dict, List, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_brmrs.data.schema import ITEM_SIM, RATES, USER_SIM, Schema
from pyg_brmrs.loss import info_nce, orthogonality
from pyg_brmrs.nn.base import FUSED, Recommender, RecOutput
from pyg_brmrs.nn.graph import RecGraph
from pyg_brmrs.nn.graph.rec_graph import check_features
from pyg_brmrs.nn.models._common import (
    check_feature_dims,
    feature_rows,
    mmrec_modality_order,
    trainable_features,
)
from pyg_brmrs.utils.checks import check_float, check_int
from pyg_brmrs.utils.rows import take_rows


class ModalityAttention(torch.nn.Module):
    r"""REARM's attention between the entries of two modality vectors of
    one node: every vector :math:`\mathbf{h} \in \mathbb{R}^d` is read as
    a sequence of :math:`d` one-dimensional tokens, and one-head
    attention of embedding size 1 (:class:`torch.nn.MultiheadAttention`
    ``(1, 1)``, so :math:`q_a = w_q h^{q}_a + b_q`, :math:`k_c = w_k
    h^{kv}_c + b_k`, :math:`v_c = w_v h^{kv}_c + b_v`) mixes them,

    .. math::
        \mathbf{o} = \mathrm{PReLU}\Big(\mathrm{LN}\big(\mathbf{h}^{res} +
        w_o\,\mathrm{softmax}_c(q_a k_c)\,\mathbf{v} + b_o\big)\Big),

    with dropout :obj:`dropout` on the attention weights in training. Self
    attention: :math:`\mathbf{h}^q = \mathbf{h}^{kv} = \mathbf{h}^{res}`;
    REARM's cross attention (text to visual): query the text vector,
    keys, values and residual the visual one. The LayerNorm and the PReLU
    are passed in (REARM shares one of each among its four blocks).

    Shapes:
        - **input:** query :math:`(N, d)`, key/value :math:`(N, d)`,
          residual :math:`(N, d)`
        - **output:** :math:`(N, d)`
    """
    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.dropout = check_float(dropout, 'dropout', 0.0, 1.0)
        self.attention = torch.nn.MultiheadAttention(
            1, 1, dropout=self.dropout, batch_first=True)

    def reset_parameters(self):
        self.attention._reset_parameters()

    def forward(self, query: Tensor, key_value: Tensor, residual: Tensor,
                norm: torch.nn.Module, act: torch.nn.Module) -> Tensor:
        # the module's math with its parameters, as [N, d, d] broadcasts
        mha = self.attention
        w, b = mha.in_proj_weight.view(3), mha.in_proj_bias
        q = query * w[0] + b[0]
        k = key_value * w[1] + b[1]
        v = key_value * w[2] + b[2]
        att = torch.softmax(q.unsqueeze(2) * k.unsqueeze(1), dim=2)
        if self.training and self.dropout > 0:  # F.dropout's law, cheaper
            keep = torch.rand_like(att) >= self.dropout
            att = att * keep / (1.0 - self.dropout) \
                if self.dropout < 1 else torch.zeros_like(att)
        out = torch.bmm(att, v.unsqueeze(2)).squeeze(2)
        out = out * mha.out_proj.weight.view(()) + mha.out_proj.bias
        return act(norm(residual + out))

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(dropout={self.dropout})'


class LowRankMetaNetwork(torch.nn.Module):
    r"""REARM's extraction of the modal-shared part: a personalised low-rank
    transform of the ID representation whose weights a meta-network reads
    from the node's modal representation.

    With :math:`\mathbf{f} \in \mathbb{R}^{2d}` the node's concatenated
    modal representation and :math:`\mathbf{z} \in \mathbb{R}^d` its ID
    representation: the knowledge :math:`\boldsymbol{\kappa} =
    \mathrm{sg}(\mathbf{W}_\kappa \mathbf{f} + \mathbf{b}_\kappa)`
    (:math:`\mathrm{sg}`: no gradient, as REARM's ``.detach()``, so
    :math:`\mathbf{W}_\kappa` keeps its initial values), two MLPs
    :math:`g_j(\boldsymbol{\kappa}) = \mathrm{normalize}(\mathbf{W}_{j2}\,
    \mathrm{PReLU}(\mathbf{W}_{j1}\boldsymbol{\kappa} + \mathbf{b}_{j1}) +
    \mathbf{b}_{j2})` (:math:`L_2` over all :math:`dr` outputs) shaped
    :math:`\mathbf{M}_1 \in \mathbb{R}^{d \times r}`, :math:`\mathbf{M}_2
    \in \mathbb{R}^{r \times d}`, a bias that is their mean over the
    :math:`N` nodes of the call, and a softmax over the first axis:

    .. math::
        \mathbf{P}_1 = \mathrm{softmax}_{\text{dim } 0}(\mathbf{M}_1 +
        \bar{\mathbf{M}}_1), \quad
        \mathbf{P}_2 = \mathrm{softmax}_{\text{dim } 0}(\mathbf{M}_2 +
        \bar{\mathbf{M}}_2), \quad
        \mathbf{s} = \mathbf{P}_2^{\top}\,(\mathbf{P}_1^{\top}\mathbf{z}).

    Shapes:
        - **input:** :math:`\mathbf{Z}` :math:`(N, d)`, :math:`\mathbf{F}`
          :math:`(N, 2d)`
        - **output:** :math:`\mathbf{S}` :math:`(N, d)`
    """
    def __init__(self, embedding_dim: int, rank: int = 3,
                 feature_dim: Optional[int] = None):
        super().__init__()
        d = self.embedding_dim = check_int(embedding_dim, 'embedding_dim')
        r = self.rank = check_int(rank, 'rank')
        self.knowledge = torch.nn.Linear(feature_dim or 2 * d, d)

        def mlp():
            return torch.nn.Sequential(torch.nn.Linear(d, d * r),
                                       torch.nn.PReLU(),
                                       torch.nn.Linear(d * r, d * r))
        self.first, self.second = mlp(), mlp()

    def reset_parameters(self):
        self.knowledge.reset_parameters()
        for seq in (self.first, self.second):
            for layer in seq:
                layer.reset_parameters()

    def forward(self, z: Tensor, f: Tensor) -> Tensor:
        n, d, r = z.size(0), self.embedding_dim, self.rank
        kappa = self.knowledge(f).detach()
        m1 = F.normalize(self.first(kappa), dim=-1).view(n, d, r)
        m2 = F.normalize(self.second(kappa), dim=-1).view(n, r, d)
        p1 = torch.softmax(m1 + m1.mean(dim=0), dim=1)
        p2 = torch.softmax(m2 + m2.mean(dim=0), dim=1)
        mid = torch.einsum('nd,ndr->nr', z, p1)
        return torch.einsum('nr,nrd->nd', mid, p2)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.embedding_dim}, '
                f'rank={self.rank})')


class REARM(Recommender):
    r"""The REARM model from `"Refining Contrastive Learning and Homography
    Relations for Multi-Modal Recommendation" (ACM MM'25)
    <https://github.com/MrShouxingMa/REARM>`_, reproducing its authors'
    ``model.py``: homogeneous propagation of [ID ‖ visual ‖ textual] over
    user–user and item–item graphs, attention between the item modalities,
    heterogeneous (user–item) propagation, and a low-rank meta-network that
    extracts the modal-shared part; exactly two modalities (MMRec's order:
    ``"image"`` is the visual one, the other takes the text slot, *e.g.*
    audio).

    1. **Inputs.** Items: the projected (fine-tuned) features
       :math:`\mathbf{x}^{(m)}_i\mathbf{W}^{(m)}_I + \mathbf{b}`; users:
       the projected *interest vectors* :math:`\mathbf{q}^{(m)}_u = \frac{1}
       {|\mathcal{N}_u|}\sum_{i \in \mathcal{N}_u}\mathbf{x}^{(m)}_i` (mean
       raw feature of the training items, fixed; :math:`\mathbf{0}` for a
       user without any); ID tables :math:`\mathbf{E}_U, \mathbf{E}_I`.
    2. **Homogeneous propagation** over the data's graphs
       ``('item', 'similar', 'item')`` :math:`\mathbf{S}_I` and
       ``('user', 'similar', 'user')`` :math:`\mathbf{S}_U` (REARM's: see
       :class:`~pyg_brmrs.transforms.HomogeneousKNNGraph` with
       ``loop="similarity", padding="rearm"``), last layer only, then
       :math:`L_2`-normalised over the whole row:
       :math:`[\mathbf{z}_i \| \mathbf{g}^v_i \| \mathbf{g}^t_i] =
       \mathrm{normalize}(\mathbf{S}_I^{L_I}[\mathbf{E}_I \|
       \mathbf{X}^v \| \mathbf{X}^t])_i`, likewise users with
       :math:`L_U`.
    3. **Item attention** (:class:`ModalityAttention`, one shared
       LayerNorm and PReLU): self attention
       :math:`\mathbf{a}^v = \mathrm{SA}_1(\mathbf{g}^v)`,
       :math:`\mathbf{a}^t = \mathrm{SA}_2(\mathbf{g}^t)`, then cross
       attention :math:`\mathbf{c}^v = \mathrm{CA}_1(q = \mathbf{a}^t,
       kv = \mathbf{a}^v)`, :math:`\mathbf{c}^t = \mathrm{CA}_2(q =
       \mathbf{a}^v, kv = \mathbf{a}^t)` (residual: the key side). Users:
       :math:`\mathrm{PReLU}(\mathbf{g}^v_u)`, :math:`\mathrm{PReLU}
       (\mathbf{g}^t_u)`.
    4. **Heterogeneous propagation**: with the symmetric-normalised
       user–item graph :math:`\hat{\mathbf{A}}` and the layer mean
       :math:`\mathrm{LM}(\mathbf{X}) = \frac{1}{L+1}\sum_{l=0}^{L}
       \hat{\mathbf{A}}^l\mathbf{X}`: the modal representations
       :math:`\mathbf{F} = \mathrm{LM}([\mathbf{c}^v \| \mathbf{c}^t])`
       (users: their two vectors) :math:`(N, 2d)` and the ID
       representations :math:`\mathbf{Z} = \mathrm{LM}(\mathbf{z})`.
    5. **Shared part** :math:`\mathbf{S} =`
       :class:`LowRankMetaNetwork` :math:`(\mathbf{Z}, \mathbf{F})`, one
       network for users and one for items (rank :math:`r`).
    6. **Representation** :math:`[\mathrm{PReLU}(\mathbf{F}^v) +
       \mathbf{Z} \,\|\, \mathrm{PReLU}(\mathbf{F}^t) + \mathbf{Z} \,\|\,
       \mathrm{PReLU}(\mathbf{S}) + \mathbf{Z}]` :math:`(N, 3d)`; scores
       are inner products.
    7. **Loss** (:class:`~pyg_brmrs.objectives.BPRObjective` with no
       :math:`L_2` term; the regulariser is AdamW's weight decay, the
       ``rearm`` recipe's training setting) plus :meth:`auxiliary_loss`:
       :math:`\lambda_{cl}` times the InfoNCE between
       :math:`\mathbf{F}^v` and :math:`\mathbf{F}^t` (temperature
       :math:`\tau`) over the batch's unique users and over its unique
       (positive and negative) items, and :math:`\lambda_{o}` times the
       orthogonality loss between them
       (:func:`~pyg_brmrs.loss.orthogonality`) over the batch's users and
       positive items (duplicates kept, as REARM).

    **Departures** from the reference: REARM's negatives exclude the
    user's validation and test items as well (a peek at the held-out
    data); the package's sampler excludes the training items only. Its
    user interest vectors are wrapped in a ``Parameter`` that ``.to(
    device)`` copies, so on the GPU it trains with they are never updated:
    they are fixed buffers here. The graph operators' degrees are exact
    (REARM adds :math:`10^{-7}`). Ties of the graphs' top-:math:`k` go to
    the smaller index.

    **Full graph only** (:attr:`~pyg_brmrs.nn.Recommender.
    supports_subgraph` is :obj:`False`): the meta-network's bias is a mean
    over every node.

    **Initialisation** (REARM): :math:`\mathcal{N}(0, 0.1^2)` ID tables,
    :func:`~torch.nn.init.xavier_normal_` on the four projections' weights,
    the defaults of :mod:`torch.nn` elsewhere.

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        feature_dims (Mapping[str, int]): The two modalities → :math:`F_m`.
        embedding_dim (int, optional): :math:`d`. (default: :obj:`64`)
        num_layers (int, optional): :math:`L` (``num_layer``).
            (default: :obj:`4`)
        num_item_layers (int, optional): :math:`L_I` (``n_ii_layers``).
            (default: :obj:`1`)
        num_user_layers (int, optional): :math:`L_U` (``n_uu_layers``).
            (default: :obj:`1`)
        rank (int, optional): :math:`r`. (default: :obj:`3`)
        self_dropout (float, optional): Of the self attention
            (``s_drop``). (default: :obj:`0.4`)
        cross_dropout (float, optional): Of the cross attention
            (``m_drop``). (default: :obj:`0.6`)
        cl_weight (float, optional): :math:`\lambda_{cl}`
            (``cl_loss_weight``). (default: :obj:`5e-6`)
        orth_weight (float, optional): :math:`\lambda_o`
            (``diff_loss_weight``). (default: :obj:`5e-5`)
        temperature (float, optional): :math:`\tau` (``cl_tmp``).
            (default: :obj:`0.6`)
        finetune_features (bool, optional): Train the item features, as
            REARM. (default: :obj:`True`)
        item_features (Mapping[str, torch.Tensor], optional): Their initial
            values (:meth:`from_data` passes the data's).
            (default: :obj:`None`)
        cached (bool, optional): Cache the graph operators while the same
            tensors are passed. (default: :obj:`True`)

    Shapes:
        - **input:** the :class:`~pyg_brmrs.nn.graph.RecGraph` of a
          :class:`~torch_geometric.data.HeteroData` with
          ``data['item'][f'x_{m}']`` :math:`(|\mathcal{I}|, F_m)`, the
          training ``edge_index`` and the two homogeneous graphs
        - **output:** :class:`~pyg_brmrs.nn.RecOutput`, branch
          :obj:`"fused"`: users :math:`(|\mathcal{U}|, 3d)`, items
          :math:`(|\mathcal{I}|, 3d)`; ``extras``: ``"modal_user"``,
          ``"modal_item"`` (:math:`\mathbf{F}`, :math:`(\cdot, 2d)`)
    """
    graph_edge_types = (ITEM_SIM, USER_SIM)
    supports_subgraph = False  # the meta-network's bias: a mean over nodes

    def __init__(
        self,
        num_users: int,
        num_items: int,
        feature_dims: Mapping[str, int],
        embedding_dim: int = 64,
        *,
        num_layers: int = 4,
        num_item_layers: int = 1,
        num_user_layers: int = 1,
        rank: int = 3,
        self_dropout: float = 0.4,
        cross_dropout: float = 0.6,
        cl_weight: float = 5e-6,
        orth_weight: float = 5e-5,
        temperature: float = 0.6,
        finetune_features: bool = True,
        item_features: Optional[Mapping[str, Tensor]] = None,
        cached: bool = True,
    ):
        super().__init__(num_users, num_items)
        self.feature_dims = check_feature_dims(feature_dims)
        if len(self.feature_dims) != 2:
            raise ValueError(f"REARM attends between exactly two modalities "
                             f"(got {sorted(self.feature_dims)})")
        self.modalities: List[str] = mmrec_modality_order(self.feature_dims)
        self.embedding_dim = check_int(embedding_dim, 'embedding_dim')
        self.num_layers = check_int(num_layers, 'num_layers', 0)
        self.num_item_layers = check_int(num_item_layers, 'num_item_layers',
                                         0)
        self.num_user_layers = check_int(num_user_layers, 'num_user_layers',
                                         0)
        self.rank = check_int(rank, 'rank')
        self.cl_weight = check_float(cl_weight, 'cl_weight')
        self.orth_weight = check_float(orth_weight, 'orth_weight')
        self.temperature = check_float(temperature, 'temperature',
                                       strict_minimum=True)
        self.finetune_features = bool(finetune_features)
        self.cached = bool(cached)
        d = self.embedding_dim
        self.user_embedding = torch.nn.Embedding(num_users, d)
        self.item_embedding = torch.nn.Embedding(num_items, d)
        self.item_proj = torch.nn.ModuleDict({
            m: torch.nn.Linear(self.feature_dims[m], d)
            for m in self.modalities})
        self.user_proj = torch.nn.ModuleDict({
            m: torch.nn.Linear(self.feature_dims[m], d)
            for m in self.modalities})
        self.self_attention = torch.nn.ModuleList(
            [ModalityAttention(self_dropout) for _ in range(2)])
        self.cross_attention = torch.nn.ModuleList(
            [ModalityAttention(cross_dropout) for _ in range(2)])
        self.norm = torch.nn.LayerNorm(d)
        self.act = torch.nn.PReLU()
        self.user_meta = LowRankMetaNetwork(d, self.rank)
        self.item_meta = LowRankMetaNetwork(d, self.rank)
        self.item_features = torch.nn.ParameterDict()
        if self.finetune_features:
            self.item_features = trainable_features(
                item_features, self.feature_dims, num_items, 'REARM')
        for m in self.modalities:  # set by set_graph
            self.register_buffer(f'user_interest_{m}', None, persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Re-initialises every parameter but the (fine-tuned) features."""
        torch.nn.init.normal_(self.user_embedding.weight, std=0.1)
        torch.nn.init.normal_(self.item_embedding.weight, std=0.1)
        for lin in [*self.item_proj.values(), *self.user_proj.values()]:
            lin.reset_parameters()
            torch.nn.init.xavier_normal_(lin.weight)
        for block in [*self.self_attention, *self.cross_attention]:
            block.reset_parameters()
        self.norm.reset_parameters()
        self.act.reset_parameters()
        self.user_meta.reset_parameters()
        self.item_meta.reset_parameters()
        self.clear_cache()

    def set_graph(self, data: HeteroData,
                  schema: Optional[Schema] = None) -> 'REARM':
        r"""Records the degrees (see
        :meth:`~pyg_brmrs.nn.Recommender.set_graph`) and the users'
        interest vectors, the mean raw features of their training items
        (non-persistent buffers)."""
        super().set_graph(data, schema)
        data = self.schema.canonical(data)
        xs = check_features(data, self.feature_dims, self.num_items)
        user, item = data[RATES].edge_index
        device = self.user_embedding.weight.device
        deg = self.user_degree.to(user.device).float().clamp(min=1)
        for m in self.modalities:
            x = xs[m].float()
            total = torch.zeros(self.num_users, x.size(1), device=x.device,
                                dtype=x.dtype).index_add_(
                0, user.to(x.device), x[item.to(x.device)])
            setattr(self, f'user_interest_{m}',
                    (total / deg.to(x.device).unsqueeze(1)).to(device))
        return self

    def _interest(self, m: str) -> Tensor:
        out = getattr(self, f'user_interest_{m}')
        if out is None:
            raise ValueError("REARM has no user interest vectors yet: build "
                             "it with REARM.from_data(data) or call "
                             "model.set_graph(data)")
        return out

    def forward(self, graph: RecGraph) -> RecOutput:
        d = self.embedding_dim
        feats = feature_rows(graph, self)
        items = [self.item_embedding.weight] + [
            self.item_proj[m](feats[m].to(self.item_proj[m].weight.dtype))
            for m in self.modalities]
        users = [self.user_embedding.weight] + [
            self.user_proj[m](self._interest(m)) for m in self.modalities]
        h_item = self._homogeneous(graph, ITEM_SIM, torch.cat(items, 1),
                                   self.num_item_layers)
        h_user = self._homogeneous(graph, USER_SIM, torch.cat(users, 1),
                                   self.num_user_layers)
        # item attention between the modalities
        g_v, g_t = h_item[:, d:2 * d], h_item[:, 2 * d:]
        norm, act = self.norm, self.act
        a_v = self.self_attention[0](g_v, g_v, g_v, norm, act)
        a_t = self.self_attention[1](g_t, g_t, g_t, norm, act)
        c_v = self.cross_attention[0](a_t, a_v, a_v, norm, act)
        c_t = self.cross_attention[1](a_v, a_t, a_t, norm, act)
        modal_user = act(h_user[:, d:])
        modal_item = torch.cat([c_v, c_t], dim=1)
        ui = graph.user_item()
        f_user, f_item = ui.layer_mean(modal_user, modal_item,
                                       self.num_layers)
        z_user, z_item = ui.layer_mean(h_user[:, :d], h_item[:, :d],
                                       self.num_layers)
        user = self._represent(f_user, z_user,
                               self.user_meta(z_user, f_user))
        item = self._represent(f_item, z_item,
                               self.item_meta(z_item, f_item))
        return graph.output({FUSED: user}, {FUSED: item},
                            extras={'modal_user': f_user,
                                    'modal_item': f_item})

    def _homogeneous(self, graph: RecGraph, edge_type, x: Tensor,
                     num_layers: int) -> Tensor:
        if num_layers > 0:
            op = graph.homogeneous(edge_type)
            if op is None:
                raise ValueError(
                    f"REARM propagates over data{edge_type}, which the "
                    f"data lacks: add it with HomogeneousKNNGraph (the "
                    f"'rearm' recipe does)")
            x = op.layer_mean(x, num_layers, last=True)
        return F.normalize(x, dim=1)

    def _represent(self, f: Tensor, z: Tensor, shared: Tensor) -> Tensor:
        d = self.embedding_dim
        act = self.act
        return torch.cat([act(f[:, :d]) + z, act(f[:, d:]) + z,
                          act(shared) + z], dim=1)

    def auxiliary_loss(self, out: RecOutput, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor) -> Dict[str, Tensor]:
        r"""``{"cl": cl_weight * (InfoNCE of the unique items + of the
        unique users), "orth": orth_weight * (orthogonality of the
        positive items + of the users)}`` between the two halves of the
        modal representations :math:`\mathbf{F}` (see the class
        description)."""
        d, tau = self.embedding_dim, self.temperature
        f_user, f_item = out.extras['modal_user'], out.extras['modal_item']
        terms = {}
        if self.cl_weight > 0:
            uu = take_rows(f_user, torch.unique(users))
            ii = take_rows(f_item, torch.unique(torch.cat([pos_items,
                                                           neg_items])))
            terms['cl'] = self.cl_weight * (
                info_nce(ii[:, :d], ii[:, d:], tau) +
                info_nce(uu[:, :d], uu[:, d:], tau))
        if self.orth_weight > 0:
            ub, ib = take_rows(f_user, users), take_rows(f_item, pos_items)
            terms['orth'] = self.orth_weight * (
                orthogonality(ib[:, :d], ib[:, d:]) +
                orthogonality(ub[:, :d], ub[:, d:]))
        return terms

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, modalities={self.modalities}, '
                f'embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers}, '
                f'num_item_layers={self.num_item_layers}, '
                f'num_user_layers={self.num_user_layers}, rank={self.rank}, '
                f'cl_weight={self.cl_weight}, '
                f'orth_weight={self.orth_weight})')
