r"""Shared pieces of the models: the mini-batch embedding regularisers,
argument checks, feature access and the (pruned) user–item graph.

MMRec's ``EmbLoss`` (used by its BPR, LightGCN and VBPR) is *not* the
squared :math:`L_2` norm of :func:`~pyg_brmrs.nn.base.ego_regularization`:
it sums the (unsquared) Frobenius norms of the batch matrices and divides by
the batch size. The baselines default to MMRec's form so that MMRec's
``reg_weight`` values mean the same here.
"""
from typing import Dict, Mapping, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_brmrs.data.schema import ITEM, USER, features, modalities
from pyg_brmrs.nn.base import Recommender, RecOutput, ego_regularization
from pyg_brmrs.utils.cache import KeyedCache, tensor_key
from pyg_brmrs.utils.checks import check_edge_index, check_float
from pyg_brmrs.utils.dropout import degree_sensitive_edge_pruning
from pyg_brmrs.utils.sparse import CSRAdjacency, bipartite_to_homogeneous

REG_NORMS = ('frobenius', 'squared')


def frobenius_regularization(*embeddings: Tensor) -> Tensor:
    r"""MMRec's ``EmbLoss``: :math:`\frac{1}{B} \sum_t \lVert \mathbf{E}_t
    \rVert_F` for mini-batch matrices :math:`\mathbf{E}_t` of ``B`` rows
    (the norm of the whole ``[B, F]`` matrix, not squared)."""
    batch_size = embeddings[-1].size(0)
    total = sum(e.norm(p=2) for e in embeddings)
    return total / max(batch_size, 1)


def batch_regularization(reg_norm: str, *embeddings: Tensor) -> Tensor:
    r"""Dispatches to :func:`frobenius_regularization` (:obj:`"frobenius"`,
    MMRec) or :func:`~pyg_brmrs.nn.base.ego_regularization`
    (:obj:`"squared"`, :math:`\frac{1}{2B}\sum_t \lVert \mathbf{E}_t
    \rVert_F^2`)."""
    if reg_norm == 'frobenius':
        return frobenius_regularization(*embeddings)
    return ego_regularization(*embeddings)


def global_batch(out: Optional[RecOutput], users: Tensor, pos_items: Tensor,
                 neg_items: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    r"""The global ids of a BPR batch given as rows of the forward output
    :obj:`out` (:meth:`~pyg_brmrs.nn.RecOutput.global_ids`: mapped through a
    mini-batch subgraph's ``n_id``); unchanged without :obj:`out`."""
    if out is None:
        return users, pos_items, neg_items
    return out.global_ids(users, pos_items, neg_items)


def check_reg_norm(reg_norm: str) -> str:
    if reg_norm not in REG_NORMS:
        raise ValueError(f"Unknown 'reg_norm' '{reg_norm}' (choose from "
                         f"{list(REG_NORMS)})")
    return reg_norm


def check_feature_dims(feature_dims) -> dict:
    if not hasattr(feature_dims, 'items') or len(feature_dims) < 1:
        raise ValueError("'feature_dims' must map at least one modality name "
                         "to its feature size")
    for name, dim in feature_dims.items():
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"Feature size of modality '{name}' must be a "
                             f"positive int (got {dim!r})")
    return {m: int(feature_dims[m]) for m in sorted(feature_dims)}


def check_counts(model: Recommender, data: HeteroData) -> None:
    num_users, num_items = int(data[USER].num_nodes), int(data[ITEM].num_nodes)
    if num_users != model.num_users or num_items != model.num_items:
        raise ValueError(f"'{model.__class__.__name__}' was built for "
                         f"{model.num_users} users and {model.num_items} "
                         f"items but the data has {num_users} users and "
                         f"{num_items} items")


def check_bipartite(edge_index: Tensor, num_users: int,
                    num_items: int) -> None:
    r"""Checks user→item training edges ``[2, E]`` (long, ids in range)."""
    if isinstance(edge_index, Tensor) and edge_index.dim() == 2 \
            and edge_index.dtype not in (torch.long, torch.bool) \
            and not edge_index.dtype.is_floating_point:
        raise ValueError(f"The training 'edge_index' must be a long tensor "
                         f"(got {edge_index.dtype})")
    check_edge_index(edge_index, 'edge_index', num_nodes=(num_users, num_items),
                     kinds=('user', 'item'))


def item_features(data: HeteroData, feature_dims: Mapping[str, int],
                  num_items: int) -> Dict[str, Tensor]:
    r"""The raw features ``{m: [num_items, F_m]}`` of the modalities in
    :obj:`feature_dims`, checked against the sizes a model was built for."""
    have = modalities(data)
    missing = [m for m in feature_dims if m not in have]
    if missing:
        raise ValueError(f"The data lacks the modalities {missing} this "
                         f"model was built for (it has {have})")
    out = {}
    for m, dim in feature_dims.items():
        x = features(data, m)
        if x.dim() != 2 or tuple(x.shape) != (num_items, dim):
            raise ValueError(f"Features of modality '{m}' must have shape "
                             f"[{num_items}, {dim}] (got {tuple(x.shape)})")
        out[m] = x
    return out


def trainable_features(item_features: Optional[Mapping[str, Tensor]],
                       feature_dims: Mapping[str, int], num_items: int,
                       model: str) -> torch.nn.ParameterDict:
    r"""Fine-tunable copies of the item features (``finetune_features=True``),
    float32 :class:`~torch.nn.Parameter` per modality."""
    if item_features is None or set(item_features) != set(feature_dims):
        raise ValueError(f"'finetune_features=True' needs 'item_features' for "
                         f"the modalities {sorted(feature_dims)} (use "
                         f"{model}.from_data, or finetune_features=False)")
    out = torch.nn.ParameterDict()
    for m, dim in feature_dims.items():
        x = item_features[m]
        if tuple(x.shape) != (num_items, dim):
            raise ValueError(f"'item_features[{m!r}]' must have shape "
                             f"[{num_items}, {dim}] (got {tuple(x.shape)})")
        out[m] = torch.nn.Parameter(x.detach().clone().float())
    return out


class UserItemGraph:
    r"""The undirected user–item graph ``[2, 2E]`` on ``num_users +
    num_items`` nodes (items shifted by ``num_users``) of the training edges,
    and FREEDOM's degree-sensitive pruned version of it
    (:func:`~pyg_brmrs.utils.degree_sensitive_edge_pruning`) that BRMRS and
    FREEDOM train on when :obj:`edge_dropout > 0`.

    :meth:`full` is cached (with :obj:`cached`) while the same training
    ``edge_index`` (same tensor, same version) is passed. :meth:`pruned`
    draws a new subgraph on its first call after :meth:`redraw` (the models
    call it from ``on_epoch_start``) or when the training edges change, and
    returns the same subgraph otherwise. :meth:`clear` drops both.

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        edge_dropout (float): The pruning ratio :math:`p \in [0, 1)`.
        cached (bool, optional): Cache the full graph. (default: :obj:`True`)
    """
    def __init__(self, num_users: int, num_items: int, edge_dropout: float,
                 cached: bool = True):
        self.num_users = num_users
        self.num_items = num_items
        self.edge_dropout = check_float(edge_dropout, 'edge_dropout', 0.0,
                                        1.0)
        if self.edge_dropout >= 1.0:
            raise ValueError(f"'edge_dropout' must lie in [0, 1) (got "
                             f"{edge_dropout})")
        self.cached = cached
        self.cache = KeyedCache()
        self._due = True
        self._generator: Optional[torch.Generator] = None

    def full(self, edge_index: Tensor) -> Tensor:
        r"""The homogeneous graph ``[2, 2E]`` of the user→item edges
        :obj:`edge_index` ``[2, E]``."""
        def build():
            check_bipartite(edge_index, self.num_users, self.num_items)
            return bipartite_to_homogeneous(edge_index, self.num_users)

        return self.cache.get('full', tensor_key(edge_index), build,
                              enabled=self.cached)

    def redraw(self, generator: Optional[torch.Generator] = None) -> None:
        r"""Requests a new pruned subgraph, drawn with :obj:`generator` by
        the next :meth:`pruned`."""
        self._due, self._generator = True, generator

    def pruned(self, edge_index: Tensor) -> Tensor:
        r"""The homogeneous graph ``[2, 2K]`` of the kept user→item edges,
        :math:`K = \lfloor E (1 - p) \rfloor`."""
        key = tensor_key(edge_index)
        hit = self.cache.lookup('pruned', key)
        if self._due or hit is None:
            check_bipartite(edge_index, self.num_users, self.num_items)
            kept = degree_sensitive_edge_pruning(
                edge_index, self.num_users, self.num_items,
                self.edge_dropout, self._generator)
            hit = self.cache.put(
                'pruned', key,
                (kept, bipartite_to_homogeneous(kept, self.num_users)))
            self._due, self._generator = False, None
        return hit[1]

    def __call__(self, edge_index: Tensor, training: bool) -> Tensor:
        r""":meth:`pruned` when :obj:`training` and :obj:`edge_dropout > 0`,
        else :meth:`full`."""
        if training and self.edge_dropout > 0:
            return self.pruned(edge_index)
        return self.full(edge_index)

    def bipartite(self, edge_index: Tensor, training: bool) -> Tensor:
        r"""The user→item edges ``[2, K]`` of the graph that
        :meth:`__call__` returns (the kept edges of the pruned graph, or
        :obj:`edge_index` itself)."""
        if training and self.edge_dropout > 0:
            self.pruned(edge_index)
            return self.cache.lookup('pruned')[0]
        self.full(edge_index)  # checks the edges (once while cached)
        return edge_index

    @property
    def pruned_edge_index(self) -> Optional[Tensor]:
        r"""The kept user→item edges ``[2, K]`` of the current pruned graph
        (:obj:`None` before the first draw)."""
        hit = self.cache.lookup('pruned')
        return None if hit is None else hit[0]

    def clear(self) -> None:
        r"""Drops the cached graphs and requests a new draw."""
        self.cache.clear()
        self._due, self._generator = True, None


# ----------------------------------------------------------------------
# Mini-batch subgraphs (see pyg_brmrs.nn.base): the batch's edges,
# normalised with the global degrees gathered by n_id, every node's incoming
# sum scaled up to an estimate of its full-graph sum.
def sampled_scale(target: Tensor, full_degree: Tensor) -> Tensor:
    r"""Per edge, :math:`\deg(t) / \deg_b(t)` of its target :math:`t`
    (:obj:`target` ``[E_b]``, local ids): the node's in-degree in the full
    graph (:obj:`full_degree` ``[N_b]``, gathered by ``n_id``) over its
    in-degree among the batch's edges.

    Scaling a node's incoming messages by it turns the sum over the
    :math:`\deg_b(t)` edges present into the Horvitz–Thompson estimate of
    the sum over all :math:`\deg(t)` edges, unbiased when the present edges
    are a uniform sample of the node's edges (as PyG's neighbour sampler
    draws them), and exactly :math:`1` when all of them are present, so
    that a node whose whole neighbourhood is in the batch keeps its
    full-graph sum."""
    present = torch.bincount(target, minlength=full_degree.numel())
    scale = full_degree.float() / present.clamp(min=1).float()
    return scale[target]


def subgraph_ui_operator(edge_index: Tensor, user_degree: Tensor,
                         item_degree: Tensor) -> CSRAdjacency:
    r"""The operator :math:`\hat{\mathbf{A}}_b` of a batch's user→item
    edges :obj:`edge_index` ``[2, E_b]`` (local ids) on :math:`U_b + I_b`
    nodes (items shifted by :math:`U_b`), both directions,

    .. math::
        \hat{A}_{ts} = \frac{\deg(t)}{\deg_b(t)}
        \frac{1}{\sqrt{\deg(s)\deg(t)}},

    the *global* LightGCN weights (the degrees ``[U_b]``, ``[I_b]`` of the
    full training graph, gathered by ``n_id``) with the target's incoming
    sum scaled by :func:`sampled_scale` (:math:`\deg_b(t)`: the target's
    edges in the batch; the factor is :math:`1` for a node with all its
    edges in the batch)."""
    num_users, num_items = user_degree.numel(), item_degree.numel()
    check_bipartite(edge_index, num_users, num_items)
    ei = bipartite_to_homogeneous(edge_index.long(), num_users)
    deg = torch.cat([user_degree, item_degree]).float().clamp(min=1)
    weight = (deg[ei[0]] * deg[ei[1]]).rsqrt() * sampled_scale(ei[1], deg)
    n = num_users + num_items
    return CSRAdjacency(ei, weight, (n, n))


def subgraph_user_mean(edge_index: Tensor, num_users: int,
                       num_items: int) -> CSRAdjacency:
    r"""The ``[U_b, I_b]`` operator of the users' mean over their training
    items in the batch, :math:`\frac{1}{\deg_b(u)} \sum_{i \in
    \mathcal{N}_u \cap \mathcal{I}_b}` (the full-graph mean
    :math:`\frac{1}{\deg(u)} \sum_{i \in \mathcal{N}_u}` scaled by
    :func:`sampled_scale`; equal to it when all the user's items are in
    the batch)."""
    present = torch.bincount(edge_index[0], minlength=num_users)
    w = 1.0 / present.clamp(min=1).float()[edge_index[0]]
    return CSRAdjacency(edge_index.long().flip(0), w, (num_users, num_items))


def operator_layer_mean(op: Optional[CSRAdjacency], x: Tensor,
                        num_layers: int, last: bool = False) -> Tensor:
    r""":math:`\frac{1}{L+1}\sum_{l=0}^{L}\mathbf{A}^l\mathbf{x}` (or
    :math:`\mathbf{A}^L\mathbf{x}` with :obj:`last`) for ``x`` of shape
    ``[N, F]`` or ``[N, C, F]``; :obj:`x` for :math:`L = 0` or no
    operator."""
    if op is None or num_layers == 0:
        return x
    shape = x.shape
    h = x0 = x.reshape(shape[0], -1)
    acc = x0
    for _ in range(num_layers):
        h = op.matmul(h)
        acc = acc + h
    out = h if last else acc / (num_layers + 1)
    return out.view(shape)


def subgraph_homogeneous(data: HeteroData, edge_type,
                         full_degree: Optional[Tensor]
                         ) -> Optional[CSRAdjacency]:
    r"""The operator of a batch's homogeneous graph :obj:`edge_type`: the
    stored ``edge_weight`` (ones without) of every edge into :math:`t`
    times :func:`sampled_scale`, with :obj:`full_degree` ``[N_b]`` the
    in-degrees of the batch's nodes in the full graph; :obj:`None` when
    the batch has no such edge type.

    Raises:
        ValueError: if the batch has the edge type but
            :obj:`full_degree` is :obj:`None` (the model never saw the full
            graph of that type).
    """
    if edge_type not in data.edge_types:
        return None
    if full_degree is None:
        raise ValueError(f"The batch holds {edge_type} edges but the model "
                         f"has no full-graph degrees of them: call "
                         f"model.set_graph(full_data) with data that holds "
                         f"the {edge_type} graph")
    num_nodes = full_degree.numel()
    store = data[edge_type]
    ei = check_edge_index(store.edge_index, f'data{edge_type}.edge_index',
                          num_nodes=num_nodes,
                          edge_weight=store.get('edge_weight'))
    weight = store.get('edge_weight')
    scale = sampled_scale(ei[1].long(), full_degree)
    weight = scale if weight is None else weight.float() * scale
    return CSRAdjacency(ei, weight, (num_nodes, num_nodes))


def subgraph_features(data: HeteroData, feature_dims: Mapping[str, int],
                      num_nodes: int) -> Dict[str, Tensor]:
    r"""The batch's item features ``{m: [I_b, F_m]}`` (local rows)."""
    return item_features(data, feature_dims, num_nodes)
