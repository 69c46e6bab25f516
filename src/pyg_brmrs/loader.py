r"""Neighbour-sampled mini-batches of training pairs, built with PyG's
:class:`~torch_geometric.loader.LinkNeighborLoader`.

A training step on pairs :math:`(u_b, i^+_b)` needs, besides the pairs, the
items an objective scores against them (uniform negatives, CHNS candidate
pools, drawn by :meth:`~pyg_brmrs.objectives.Objective.draw`).
:class:`PairNeighborLoader` takes the pairs as the seed edges of a
:class:`~torch_geometric.loader.LinkNeighborLoader` and the drawn items as
additional item seeds (PyG's ``"triplet"`` negative sampling, with the
objective's items in place of PyG's random ones), so every score the
objective needs is computed in the sampled subgraph; the models compute
the batch's representations from it (see :mod:`pyg_brmrs.nn.base`).

The sampling graph holds the training interactions in both directions
(``('item', 'rated_by', 'user')`` is added so that users receive item
neighbours) and the kNN graphs of
:class:`~pyg_brmrs.transforms.HomogeneousKNNGraph` when present, with their
weights. The batch's two interaction edge types are merged back into
``('user', 'rates', 'item')`` (each sampled pair once), which the models
use in both directions.

Sampling runs on :class:`TorchNeighborSampler`, a vectorised pure-torch
sampler with the semantics of PyG's, unless ``pyg-lib`` is installed
(then PyG's compiled sampler; ``backend="pyg"`` also takes torch-sparse's).
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.sampler import (
    HeteroSamplerOutput,
    NegativeSampling,
    NeighborSampler,
)
from torch_geometric.utils import coalesce

from pyg_brmrs.data.schema import (
    ITEM,
    ITEM_SIM,
    RATES,
    USER,
    USER_SIM,
    FEATURE_PREFIX,
    Schema,
    canonical,
    mark_canonical,
)

#: The reverse interaction edge type of the sampling graph.
RATED_BY = (ITEM, 'rated_by', USER)

INSTALL_HINT = ('install pyg-lib or torch-sparse (pip install '
                '"pyg-brmrs[sparse]", which builds torch-scatter and '
                'torch-sparse; or a pyg-lib wheel matching your torch)')


def sampling_backend() -> Optional[str]:
    r"""The neighbour-sampling backend PyG will use: :obj:`"pyg-lib"`,
    :obj:`"torch-sparse"` or :obj:`None` when neither is installed."""
    from torch_geometric import typing as pyg_typing
    if pyg_typing.WITH_PYG_LIB and getattr(pyg_typing, 'WITH_SAMPLED_OP',
                                           True):
        return 'pyg-lib'
    if pyg_typing.WITH_TORCH_SPARSE:
        return 'torch-sparse'
    return None


#: The samplers :class:`PairNeighborLoader` can run on.
LOADER_BACKENDS = ('auto', 'torch', 'pyg')


class TorchNeighborSampler(NeighborSampler):
    r"""PyG's :class:`~torch_geometric.sampler.NeighborSampler` with its
    heterogeneous node sampling (:meth:`_sample`) written in torch, for
    installations without ``pyg-lib`` or ``torch-sparse``: everything else
    (link seeds, negative seeds, the batch's assembly) is PyG's own.

    Semantics of PyG's directional sampling without replacement: hop
    :math:`h` takes, for every edge type :math:`(s, r, t)` and every
    :math:`t`-node added at hop :math:`h - 1` (the seeds at hop 0),
    :math:`\min(k_h, \deg)` of its incoming :math:`s`-neighbours uniformly
    without replacement (all of them for :math:`k_h = -1`); a sampled
    neighbour not yet in the batch is added (in order of first
    appearance) and expands at the next hop; every sampled edge is kept.
    The draw is vectorised over all frontier nodes of an edge type (one
    random key per candidate edge, the :math:`k_h` smallest kept per node)
    and uses torch's global random generator. Each of a node's
    :math:`\deg` neighbours is drawn with probability :math:`k_h/\deg`
    (tested); PyG's torch-sparse backend (0.6.18) draws the same number
    but not uniformly over the neighbour positions (measured: :math:`k = 2`
    of 6 neighbours, 2000 draws: 0.40 for each of the first four, 0.20
    and 0.19 for the last two). Homogeneous data, induced subgraphs,
    disjoint, weighted and temporal sampling are not covered (use PyG's
    backends)."""
    def _sample(self, seed, seed_time=None, **kwargs):
        if not isinstance(seed, dict):
            raise NotImplementedError(
                f"'{self.__class__.__name__}' samples heterogeneous graphs "
                f"only")
        if self.disjoint or self.replace or seed_time is not None or \
                getattr(self, 'edge_weight', None) or \
                str(self.subgraph_type) not in ('SubgraphType.directional',
                                                'directional'):
            raise NotImplementedError(
                f"'{self.__class__.__name__}' covers directional sampling "
                f"without replacement only")
        fanout = self.num_neighbors.get_mapped_values(self.edge_types)
        num_hops = max((len(v) for v in fanout.values()), default=0)
        node, local = {}, {}
        for t in self.node_types:
            ids = first_occurrences(
                seed.get(t, torch.empty(0, dtype=torch.long)).long())
            local[t] = torch.full((int(self.num_nodes[t]), ), -1,
                                  dtype=torch.long)
            local[t][ids] = torch.arange(ids.numel())
            node[t] = ids
        frontier = dict(node)
        rows = {e: [] for e in self.edge_types}
        cols = {e: [] for e in self.edge_types}
        edges = {e: [] for e in self.edge_types}
        for hop in range(num_hops):
            added = {t: [] for t in self.node_types}
            for edge_type in self.edge_types:
                src, _, dst = edge_type
                rel = self.to_rel_type[edge_type]
                ks = fanout[rel]
                k = ks[hop] if hop < len(ks) else 0
                targets = frontier[dst]
                if k == 0 or targets.numel() == 0:
                    continue
                colptr, row = self.colptr_dict[rel], self.row_dict[rel]
                start = colptr[targets]
                deg = colptr[targets + 1] - start
                owner = torch.repeat_interleave(
                    torch.arange(targets.numel()), deg)
                pos = torch.arange(owner.numel()) - torch.repeat_interleave(
                    torch.cumsum(deg, 0) - deg, deg) + start[owner]
                if k > 0 and owner.numel() > 0:
                    key = torch.rand(owner.numel())
                    order = torch.argsort(key)
                    order = order[torch.argsort(owner[order], stable=True)]
                    rank = torch.arange(order.numel()) - torch.repeat_interleave(
                        torch.cumsum(deg, 0) - deg, deg)
                    keep = order[rank < k]
                    keep = keep.sort().values
                    owner, pos = owner[keep], pos[keep]
                nbr = row[pos]
                # neighbours new to the batch, in order of first appearance
                new = nbr[local[src][nbr] < 0]
                if new.numel() > 0:
                    uniq = first_occurrences(new)
                    base = node[src].numel() + sum(
                        a.numel() for a in added[src])
                    local[src][uniq] = torch.arange(base,
                                                    base + uniq.numel())
                    added[src].append(uniq)
                rows[edge_type].append(local[src][nbr])
                cols[edge_type].append(local[dst][targets[owner]])
                edges[edge_type].append(pos)
            for t in self.node_types:
                if added[t]:
                    node[t] = torch.cat([node[t], *added[t]])
                frontier[t] = torch.cat(added[t]) if added[t] else \
                    torch.empty(0, dtype=torch.long)
        empty = torch.empty(0, dtype=torch.long)
        row = {e: torch.cat(v) if v else empty for e, v in rows.items()}
        col = {e: torch.cat(v) if v else empty for e, v in cols.items()}
        edge = {e: torch.cat(v) if v else empty for e, v in edges.items()}
        return HeteroSamplerOutput(node=node, row=row, col=col, edge=edge,
                                   batch=None)


def first_occurrences(ids: Tensor) -> Tensor:
    r"""The distinct values of :obj:`ids` in the order of their first
    occurrence."""
    if ids.numel() == 0:
        return ids
    uniq, inv = torch.unique(ids, return_inverse=True)
    first = torch.full((uniq.numel(), ), ids.numel(), dtype=torch.long
                       ).scatter_reduce_(0, inv, torch.arange(ids.numel()),
                                         'amin')
    return uniq[torch.argsort(first)]


def require_sampling_backend(where: str = 'neighbour sampling') -> str:
    r"""The backend of :func:`sampling_backend`; an :class:`ImportError`
    naming :obj:`where` and how to install one when there is none."""
    backend = sampling_backend()
    if backend is None:
        raise ImportError(f"{where} needs PyG's neighbour sampler, which needs "
                          f"pyg-lib or torch-sparse; neither is installed: "
                          f"{INSTALL_HINT}")
    return backend


def check_num_neighbors(num_neighbors, name: str = 'num_neighbors'
                        ) -> List[int]:
    r"""A non-empty list of ints :math:`\ge 1` or :math:`-1` (all
    neighbours), one per hop."""
    values = list(num_neighbors) if isinstance(num_neighbors,
                                               (list, tuple)) else None
    if not values or not all(isinstance(v, int) and not isinstance(v, bool)
                             and (v >= 1 or v == -1) for v in values):
        raise ValueError(f"'{name}' must be a non-empty list of fan-outs, one "
                         f"per hop, each a positive int or -1 for all "
                         f"neighbours (got {num_neighbors!r})")
    return values


class _GivenItems(NegativeSampling):
    r"""PyG's ``"triplet"`` negative sampling, returning the items set in
    :attr:`items` (pair-major ``[B * amount]``) instead of random ones."""
    def __init__(self):
        super().__init__('triplet', 1)
        self.items: Optional[Tensor] = None

    def sample(self, num_samples: int, endpoint: str = 'dst',
               num_nodes: Optional[int] = None) -> Tensor:
        items, self.items = self.items, None
        if items is None or items.numel() != num_samples:
            raise RuntimeError(f"PairNeighborLoader: expected {num_samples} "
                               f"given items, got "
                               f"{None if items is None else items.numel()}")
        return items


@dataclass
class PairBatch:
    r"""A sampled mini-batch of training pairs.

    Attributes:
        data (HeteroData): The subgraph in the canonical names (node stores
            with ``n_id``, local ``edge_index``; the interaction edges in
            ``('user', 'rates', 'item')``), marked canonical.
        users (torch.Tensor): ``[B]`` local user ids of the pairs.
        pos_items (torch.Tensor): ``[B]`` local positive item ids.
        items (torch.Tensor, optional): ``[B, K]`` local ids of the given
            items (:obj:`None` without).
    """
    data: HeteroData
    users: Tensor
    pos_items: Tensor
    items: Optional[Tensor] = None

    def to(self, device) -> 'PairBatch':
        self.data = mark_canonical(self.data.to(device))
        self.users, self.pos_items = self.users.to(device), \
            self.pos_items.to(device)
        if self.items is not None:
            self.items = self.items.to(device)
        return self


class PairNeighborLoader:
    r"""Samples the subgraph of a mini-batch of training pairs with PyG's
    :class:`~torch_geometric.loader.LinkNeighborLoader` (see the module
    description): the pairs are its seed edges, the items given per pair
    are added to its item seeds, and :obj:`num_neighbors[h]` neighbours are
    sampled per node and edge type at hop :math:`h`.

    The sampler draws from torch's global random generator (seed it with
    :func:`torch.manual_seed` for reproducible batches).

    .. code-block:: python

        loader = PairNeighborLoader(data, num_neighbors=[10, 10])
        draws = objective.draw(users)                     # global item ids
        items = torch.cat([draws['candidates'], draws['uniform'][:, None]], 1)
        batch = loader(index, items)                      # index: pair ids
        out = model(batch.data)                           # the batch's rows

    Args:
        data (HeteroData): The dataset (training edges, features, kNN
            graphs), in the names of :obj:`schema`.
        num_neighbors (Sequence[int]): The fan-out per hop (every edge
            type), :obj:`-1` for all neighbours.
        schema (Schema, optional): The names of :obj:`data`.
            (default: :obj:`None`, the canonical names)
        edge_types (Sequence[tuple], optional): The kNN graphs to sample
            besides the interactions, among ``('item', 'similar', 'item')``
            and ``('user', 'similar', 'user')`` (canonical names); a graph
            not listed is left out of the batches, so a model that does
            not read it does not pay for its hops (pass the model's
            :attr:`~pyg_brmrs.nn.Recommender.graph_edge_types`).
            (default: :obj:`None`, every kNN graph present in :obj:`data`)

        backend (str, optional): The sampler: :obj:`"pyg"` (PyG's compiled
            one, pyg-lib or torch-sparse), :obj:`"torch"`
            (:class:`TorchNeighborSampler`, no compiled extension) or
            :obj:`"auto"` (PyG's with pyg-lib, the pure-torch one
            otherwise: with torch-sparse, PyG's sampler took 2.5× the
            time per batch in ``benchmarks/bench_sampler.py`` and draws
            non-uniformly). (default: :obj:`"auto"`)

    Raises:
        ImportError: for :obj:`backend="pyg"` when neither pyg-lib nor
            torch-sparse is installed.
        ValueError: for an :obj:`edge_types` entry that is not a kNN graph
            type, or an unknown :obj:`backend`.
    """
    def __init__(self, data: HeteroData, num_neighbors: Sequence[int],
                 schema: Optional[Schema] = None,
                 edge_types: Optional[Sequence[Tuple[str, str, str]]] = None,
                 backend: str = 'auto'):
        if backend not in LOADER_BACKENDS:
            raise ValueError(f"Unknown sampler backend {backend!r} (choose "
                             f"from {list(LOADER_BACKENDS)})")
        if backend == 'pyg':
            require_sampling_backend('PairNeighborLoader(backend="pyg")')
        if backend == 'auto':  # torch-sparse's is slower and not uniform
            backend = 'pyg' if sampling_backend() == 'pyg-lib' else 'torch'
        self.backend = backend
        from torch_geometric.loader import LinkNeighborLoader

        self.num_neighbors = check_num_neighbors(num_neighbors)
        if edge_types is not None:
            edge_types = [tuple(t) for t in edge_types]
            for t in edge_types:
                if t not in (ITEM_SIM, USER_SIM):
                    raise ValueError(
                        f"'edge_types' lists the kNN graphs to sample, "
                        f"{ITEM_SIM} and/or {USER_SIM} (got {t!r})")
        self.edge_types = edge_types
        data = canonical(data, schema)
        view = HeteroData()
        view[USER].num_nodes = int(data[USER].num_nodes)
        view[ITEM].num_nodes = int(data[ITEM].num_nodes)
        for key, value in data[ITEM].items():
            if key.startswith(FEATURE_PREFIX) and isinstance(value, Tensor):
                view[ITEM][key] = value.cpu()
        edge_index = data[RATES].edge_index.cpu()
        self.edge_index = edge_index
        view[RATES].edge_index = edge_index
        view[RATED_BY].edge_index = edge_index.flip(0)
        for edge_type in (ITEM_SIM, USER_SIM):
            if edge_type in data.edge_types and (
                    edge_types is None or edge_type in edge_types):
                store = data[edge_type]
                view[edge_type].edge_index = store.edge_index.cpu()
                if store.get('edge_weight') is not None:
                    view[edge_type].edge_weight = store.edge_weight.cpu()
        self.view = view
        self._given = _GivenItems()
        sampler = None
        if backend == 'torch':
            import warnings
            with warnings.catch_warnings():  # PyG's "install pyg-lib"
                warnings.simplefilter('ignore')
                sampler = TorchNeighborSampler(view, self.num_neighbors)
        self._loader = LinkNeighborLoader(
            view, num_neighbors=self.num_neighbors,
            edge_label_index=(RATES, edge_index), neg_sampling=self._given,
            batch_size=1, shuffle=False, neighbor_sampler=sampler)
        self._plain = LinkNeighborLoader(
            view, num_neighbors=self.num_neighbors,
            edge_label_index=(RATES, edge_index), batch_size=1,
            shuffle=False, neighbor_sampler=self._loader.link_sampler)

    def __call__(self, index: Tensor,
                 items: Optional[Tensor] = None) -> PairBatch:
        r"""The batch of the training pairs :obj:`index` ``[B]`` (positions
        in ``edge_index``) with the items :obj:`items` ``[B]`` or
        ``[B, K]`` (global ids; :obj:`None`: none) among its item seeds."""
        index = index.cpu().long()
        num = index.numel()
        if items is None:
            batch = self._plain(index)
            label = batch[RATES].edge_label_index
            users, pos, local = label[0], label[1], None
        else:
            items = items.reshape(num, -1).cpu().long()
            self._given.amount = items.size(1)
            self._given.items = items.reshape(-1)
            batch = self._loader(index)
            users = batch[USER].src_index
            pos = batch[ITEM].dst_pos_index
            local = batch[ITEM].dst_neg_index.reshape(num, -1)
        # The sampled interactions of both directions, once each:
        parts = [batch[RATES].edge_index]
        if RATED_BY in batch.edge_types:
            parts.append(batch[RATED_BY].edge_index.flip(0))
            del batch[RATED_BY]
        ei = torch.cat(parts, dim=1)
        num_u, num_i = batch[USER].num_nodes, batch[ITEM].num_nodes
        batch[RATES].edge_index = coalesce(
            ei, num_nodes=max(num_u, num_i))
        for key in ('e_id', 'edge_label_index', 'edge_label',
                    'edge_label_time', 'input_id'):
            if key in batch[RATES]:
                del batch[RATES][key]
        return PairBatch(mark_canonical(batch), users, pos, local)

    def __repr__(self) -> str:
        graphs = '' if self.edge_types is None else \
            f', edge_types={self.edge_types}'
        return (f'{self.__class__.__name__}(num_neighbors='
                f'{self.num_neighbors}{graphs}, '
                f'backend={self.backend!r})')


def flatten_draws(draws: Dict[str, Tensor]) -> Tuple[Tensor, List]:
    r"""``{name: [B] or [B, k]}`` → ``[B, K]`` (columns in order) and what
    :func:`unflatten_draws` needs to undo it."""
    first = next(iter(draws.values()))
    num = first.size(0)
    cols = [v.reshape(num, -1) for v in draws.values()]
    layout = [(k, tuple(v.shape), c.size(1)) for (k, v), c in
              zip(draws.items(), cols)]
    return torch.cat(cols, dim=1), layout


def unflatten_draws(flat: Tensor, layout: List) -> Dict[str, Tensor]:
    r"""The inverse of :func:`flatten_draws` (for ``[B, K]`` local ids)."""
    out, start = {}, 0
    for key, shape, width in layout:
        out[key] = flat[:, start:start + width].reshape(shape)
        start += width
    return out
