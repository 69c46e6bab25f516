r"""Stochastic edits of the user–item training graph."""
from typing import Optional

import torch
from torch import Tensor

from .deprecation import renamed_arguments


@renamed_arguments(dropout='edge_dropout')
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
    edges (Python's ``int(E * (1. - edge_dropout))``, as MMRec), drawn **without
    replacement** with probability proportional to

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
        edge_dropout (float): The pruning ratio :math:`p \in [0, 1)`
            (formerly :obj:`dropout`, still accepted with a
            :class:`DeprecationWarning`).
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
