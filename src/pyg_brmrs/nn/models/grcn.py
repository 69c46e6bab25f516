from typing import List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.utils import dropout_edge, softmax

from pyg_brmrs.nn.base import FUSED, Recommender, RecOutput
from pyg_brmrs.nn.graph import RecGraph
from pyg_brmrs.nn.models._common import (
    check_feature_dims,
    feature_rows,
    global_batch,
    id_pair_regularization,
    mmrec_modality_order,
)
from pyg_brmrs.nn.models.mgdn import check_rate
from pyg_brmrs.utils.checks import check_int
from pyg_brmrs.utils.rows import take_rows

ROUTINGS = ('reference', 'paper')


def attention_aggregate(x: Tensor, src: Tensor, dst: Tensor,
                        num_nodes: int) -> Tuple[Tensor, Tensor]:
    r"""GRCN's parameter-free graph attention: for every edge :math:`s \to
    t`, :math:`\alpha_{st} = \mathrm{softmax}_{s' \to t}
    \langle \mathbf{x}_t, \mathbf{x}_{s'} \rangle` over the target's
    incoming edges, and :math:`\hat{\mathbf{x}}_t = \sum_{s \to t}
    \alpha_{st} \mathbf{x}_s`. Returns ``(x_hat [N, F], alpha [E])``."""
    x_src = take_rows(x, src)
    alpha = softmax((take_rows(x, dst) * x_src).sum(-1), dst,
                    num_nodes=num_nodes)
    out = torch.zeros_like(x).index_add_(0, dst, x_src * alpha[:, None])
    return out, alpha


class ContentGCN(torch.nn.Module):
    r"""One modality's content graph of GRCN (MMRec's ``CGCN``):
    item content :math:`\mathbf{f}_i = \mathrm{L2norm}(\phi(\mathbf{W}
    \mathbf{x}_i + \mathbf{b}))` (leaky ReLU) and user preferences
    :math:`\mathbf{p}_u` (L2-normalised), refined by :obj:`num_routing`
    routing steps :math:`\mathbf{p}_u \leftarrow \mathrm{L2norm}(
    \mathbf{p}_u + \sum_i \alpha_{iu} \mathbf{f}_i)`, then one attention
    layer over both directions of the user–item edges,
    :math:`\mathbf{c} = \mathbf{x} + \hat{\mathbf{x}}`
    (:func:`attention_aggregate`), whose attention :math:`\alpha` it
    returns for the edge weights of the ID graph.

    With :obj:`routing="reference"` the routing steps aggregate along the
    user→item direction only, as MMRec's code does (its ``edge_index`` is
    ``[user, item]`` and messages flow from row 0 to row 1), so the users'
    rows of the aggregate are zero and routing only re-normalises the
    preferences; :obj:`"paper"` routes item content to the users, as the
    paper describes.
    """
    def __init__(self, num_users: int, feature_dim: int, dim: int,
                 num_routing: int, routing: str):
        super().__init__()
        self.num_users = num_users
        self.num_routing = num_routing
        self.routing = routing
        self.preference = torch.nn.Parameter(torch.empty(num_users, dim))
        self.mlp = torch.nn.Linear(feature_dim, dim)
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_normal_(self.preference)
        self.mlp.reset_parameters()
        torch.nn.init.xavier_normal_(self.mlp.weight)

    def forward(self, features: Tensor, user: Tensor, item: Tensor
                ) -> Tuple[Tensor, Tensor]:
        r"""``features [I, F]``; :obj:`user`, :obj:`item` the edges' node
        ids on the homogeneous graph (items shifted by :math:`U`). Returns
        ``([U + I, dim], alpha [2E])`` (alpha over the edges user→item,
        then item→user)."""
        feats = F.leaky_relu(self.mlp(features.to(self.mlp.weight.dtype)))
        feats = F.normalize(feats, dim=-1)
        pref = F.normalize(self.preference, dim=-1)
        num = self.num_users + feats.size(0)
        # 'reference': the aggregate's user rows are zero (user->item
        # messages reach items only), so the steps leave the normalised
        # preferences as they are and are skipped
        for _ in range(self.num_routing if self.routing == 'paper' else 0):
            x = torch.cat([pref, feats])
            agg, _ = attention_aggregate(x, item, user, num)
            pref = F.normalize(pref + agg[:self.num_users], dim=-1)
        x = torch.cat([pref, feats])
        src, dst = torch.cat([user, item]), torch.cat([item, user])
        agg, alpha = attention_aggregate(x, src, dst, num)
        return x + agg, alpha


class GRCN(Recommender):
    r"""GRCN from "Graph-Refined Convolutional Network for Multimedia
    Recommendation with Implicit Feedback" (ACM MM'20), as MMRec's
    ``grcn.py`` computes it.

    Every modality's :class:`ContentGCN` scores the user–item edges by
    attention; the edge weights of the ID graph are

    .. math::
        w_{s \to t} = \mathrm{ReLU}\Big(\max_m \alpha^{(m)}_{st}\,
        c^{(m)}_s\Big)

    with a learnable confidence :math:`c^{(m)}_v` per node and modality (of
    the edge's source: the user for user→item, the item for item→user;
    ReLU prunes the edges). The ID graph (MMRec's ``EGCN``) propagates the
    L2-normalised free embeddings :math:`\mathbf{x}` twice with these
    weights, :math:`\mathbf{x}^{(l+1)}_t = \sum_{s \to t} w_{s \to t}
    \mathbf{x}^{(l)}_s`, and sums :math:`\mathbf{x} + \mathbf{x}^{(1)} +
    \mathbf{x}^{(2)}`. The representation is :math:`[\mathbf{x}_{id}
    \,\Vert\, \mathbf{c}^{(1)} \,\Vert\, \dots \,\Vert\, \mathbf{c}^{(M)}]`
    (ID first, modalities in MMRec's order) and :math:`s(u, i) = \langle
    \mathbf{z}_u, \mathbf{z}_i \rangle`.

    The regulariser (:meth:`regularization`, MMRec's) is, with the batch's
    users repeated once per item (:math:`2B` rows), :math:`\overline{
    \mathbf{e}_{u}^2 + \mathbf{e}_{i}^2}` of the free embeddings, plus the
    mean squared image preference over all users, plus every modality's
    mean squared preference over the batch's users (the confidences are not
    regularised: MMRec computes that term and drops it).

    **Departures and traps.** MMRec drops edges with PyG's ``dropout_adj``
    at rate 0 (a no-op); here :obj:`edge_dropout` uses
    :func:`torch_geometric.utils.dropout_edge` (its successor), also 0 by
    default. MMRec's routing is a no-op (see :class:`ContentGCN`):
    :obj:`routing="reference"` (the default, for parity) keeps it,
    :obj:`"paper"` routes as the paper says. MMRec ranks with the
    representation of the last training step; here evaluation computes it
    afresh.

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        feature_dims (Mapping[str, int]): modality → feature size.
        embedding_dim (int, optional): :math:`d` of the ID part.
            (default: :obj:`64`)
        content_dim (int, optional): The width of every modality's part
            (MMRec's ``latent_embedding``). (default: :obj:`64`)
        num_routing (int, optional): Routing steps (MMRec's ``n_layers``).
            (default: :obj:`3`)
        routing (str, optional): :obj:`"reference"` or :obj:`"paper"`.
            (default: :obj:`"reference"`)
        edge_dropout (float, optional): Edge dropout in training.
            (default: :obj:`0.0`)

    Shapes:
        - **input:** the full graph's :class:`~pyg_brmrs.nn.graph.RecGraph`
          (full graph only: the edge weights couple every edge)
        - **output:** :class:`~pyg_brmrs.nn.RecOutput` with one branch
          :obj:`"fused"`: users :math:`(U, d + M d_c)`, items
          :math:`(I, d + M d_c)`
    """
    graph_edge_types = ()
    supports_subgraph = False

    def __init__(self, num_users: int, num_items: int,
                 feature_dims: Mapping[str, int], embedding_dim: int = 64,
                 content_dim: int = 64, num_routing: int = 3,
                 routing: str = 'reference', edge_dropout: float = 0.0):
        super().__init__(num_users, num_items)
        if routing not in ROUTINGS:
            raise ValueError(f"Unknown routing '{routing}' (choose from "
                             f"{list(ROUTINGS)})")
        self.feature_dims = check_feature_dims(feature_dims)
        self.modalities: List[str] = mmrec_modality_order(self.feature_dims)
        self.embedding_dim = check_int(embedding_dim, 'embedding_dim')
        self.content_dim = check_int(content_dim, 'content_dim')
        self.num_routing = check_int(num_routing, 'num_routing', 0)
        self.routing = routing
        self.edge_dropout = check_rate(edge_dropout, 'edge_dropout')
        self.finetune_features = False
        self.content = torch.nn.ModuleDict({
            m: ContentGCN(num_users, self.feature_dims[m], content_dim,
                          self.num_routing, routing)
            for m in self.modalities})
        n = num_users + num_items
        self.id_embedding = torch.nn.Parameter(torch.empty(n, embedding_dim))
        self.confidence = torch.nn.Parameter(
            torch.empty(n, len(self.modalities)))
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_normal_(self.id_embedding)
        torch.nn.init.xavier_normal_(self.confidence)
        for gcn in self.content.values():
            gcn.reset_parameters()
        self.clear_cache()

    def forward(self, graph: RecGraph) -> RecOutput:
        ei = graph.edge_index
        if self.training and self.edge_dropout > 0:
            ei, _ = dropout_edge(ei, p=self.edge_dropout)
        user, item = ei[0], ei[1] + graph.num_users
        feats = feature_rows(graph, self)
        parts, alphas = [], []
        for m in self.modalities:
            rep, alpha = self.content[m](feats[m], user, item)
            parts.append(rep)
            alphas.append(alpha)
        src, dst = torch.cat([user, item]), torch.cat([item, user])
        weight = torch.stack(alphas, 1) * take_rows(self.confidence, src)
        weight = torch.relu(weight.max(dim=1).values)
        x = F.normalize(self.id_embedding, dim=-1)
        out, h = x, x
        for _ in range(2):
            h = torch.zeros_like(h).index_add_(
                0, dst, take_rows(h, src) * weight[:, None])
            out = out + h
        z = torch.cat([out] + parts, dim=-1)
        users, items = z.split([graph.num_users, graph.num_items])
        return graph.output({FUSED: users}, {FUSED: items})

    def regularization(self, users: Tensor, pos_items: Tensor,
                       neg_items: Tensor,
                       out: Optional[RecOutput] = None) -> Tensor:
        users, pos_items, neg_items = global_batch(out, users, pos_items,
                                                   neg_items)
        reg, user_t = id_pair_regularization(
            self.id_embedding, self.num_users, users, pos_items, neg_items)
        if 'image' in self.content:
            reg = reg + self.content['image'].preference.pow(2).mean()
        for gcn in self.content.values():
            reg = reg + take_rows(gcn.preference, user_t).pow(2).mean()
        return reg

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, modalities={self.modalities}, '
                f'embedding_dim={self.embedding_dim}, '
                f'content_dim={self.content_dim}, routing={self.routing!r})')
