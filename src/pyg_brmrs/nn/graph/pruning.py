r"""FREEDOM's degree-sensitive pruning of the user–item training graph,
redrawn once per epoch."""
from typing import Optional

import torch
from torch import Tensor

from pyg_brmrs.nn.graph.bipartite import BipartiteAdjacency
from pyg_brmrs.nn.graph.rec_graph import RecGraph
from pyg_brmrs.utils.cache import tensor_key
from pyg_brmrs.utils.checks import check_float


def degree_sensitive_edge_pruning(
    edge_index: Tensor,
    num_users: int,
    num_items: int,
    edge_dropout: float,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    r"""FREEDOM's degree-sensitive edge pruning (MMRec
    ``pre_epoch_processing``): keeps
    :math:`K = \lfloor |\mathcal{E}| \cdot (1 - p) \rfloor` of the user→item
    edges (Python's ``int(E * (1. - edge_dropout))``, as MMRec), drawn
    **without replacement** with probability proportional to

    .. math::
        w_{ui} = \frac{1}{\sqrt{\deg(u)\deg(i)}}

    (degrees in the full training graph), *i.e.* edges between popular nodes
    are dropped more often. The draw is the Efraimidis–Spirakis scheme (keep
    the :math:`K` largest keys :math:`\log(r_e) / w_e`, :math:`r_e \sim
    U(0, 1)`), which has exactly the distribution of
    :func:`torch.multinomial` without replacement that MMRec calls (and no
    :math:`2^{24}` category limit).

    Args:
        edge_index (torch.Tensor): User→item training edges ``[2, E]``.
        num_users (int): The number of users.
        num_items (int): The number of items.
        edge_dropout (float): The pruning ratio :math:`p \in [0, 1)`.
        generator (torch.Generator, optional): The random generator; the
            random numbers are drawn on its device. (default: :obj:`None`,
            the global generator of the device of :obj:`edge_index`)

    Returns:
        The kept edges ``[2, K]``, in their original order.
    """
    if not 0.0 <= edge_dropout < 1.0:
        raise ValueError(f"'edge_dropout' must lie in [0, 1) (got "
                         f"{edge_dropout})")
    num_edges = edge_index.size(1)
    num_keep = int(num_edges * (1. - edge_dropout))
    if num_keep >= num_edges:
        return edge_index
    if num_keep <= 0:
        return edge_index[:, :0]
    deg_u = torch.bincount(edge_index[0], minlength=num_users)
    deg_i = torch.bincount(edge_index[1], minlength=num_items)
    weight = (deg_u[edge_index[0]] * deg_i[edge_index[1]]).double().rsqrt()
    device = edge_index.device if generator is None else generator.device
    rand = torch.rand(num_edges, generator=generator, device=device,
                      dtype=torch.float64).to(edge_index.device)
    keys = rand.log() / weight
    kept = keys.topk(num_keep).indices.sort().values
    return edge_index[:, kept]


class EdgePruning:
    r"""The user–item graph a model trains on under FREEDOM's
    degree-sensitive pruning (:func:`degree_sensitive_edge_pruning` with
    ratio :math:`p`): in training mode on the full graph, the graph of the
    kept edges (re-normalised with their own degrees), one draw per epoch;
    otherwise (evaluation, :math:`p = 0`, a mini-batch subgraph, which
    propagates over its sampled edges) the graph's own user–item operator.

    :meth:`redraw` (called from a model's ``on_epoch_start``) requests a new
    draw, made with the generator given there by the next training-mode
    call; a training-mode call before any :meth:`redraw` draws with the
    global generator. The draw is kept while the training edges stay the
    same tensor.

    Args:
        edge_dropout (float): The pruning ratio :math:`p \in [0, 1)`.
    """
    def __init__(self, edge_dropout: float = 0.0):
        self.edge_dropout = check_float(edge_dropout, 'edge_dropout', 0.0,
                                        1.0)
        if self.edge_dropout >= 1.0:
            raise ValueError(f"'edge_dropout' must lie in [0, 1) (got "
                             f"{edge_dropout})")
        self._due = True
        self._generator: Optional[torch.Generator] = None
        self._key = None
        self.edge_index: Optional[Tensor] = None

    def redraw(self, generator: Optional[torch.Generator] = None) -> None:
        r"""Requests a new draw, made with :obj:`generator`."""
        self._due, self._generator = True, generator

    def clear(self) -> None:
        r"""Forgets the current draw."""
        self._due, self._generator, self._key = True, None, None
        self.edge_index = None

    def __call__(self, graph: RecGraph, training: bool,
                 dtype: torch.dtype = torch.float32) -> BipartiteAdjacency:
        if not training or self.edge_dropout == 0 or graph.is_batch:
            return graph.user_item(dtype=dtype)
        edges = graph.edge_index
        key = tensor_key(edges)
        if self._due or self.edge_index is None or self._key != key:
            graph.user_item(dtype=dtype)  # checks the edges
            self.edge_index = degree_sensitive_edge_pruning(
                edges, graph.num_users, graph.num_items, self.edge_dropout,
                self._generator)
            self._key = key
            self._due, self._generator = False, None
        return graph.user_item(self.edge_index, dtype=dtype)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(edge_dropout={self.edge_dropout})'
