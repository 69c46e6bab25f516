r"""Argument checks shared by every layer, so that the same argument is
validated by the same rule, with the same message, wherever it is passed.

Every check names the argument (``name``) in its message and raises
:class:`TypeError` for a value of the wrong kind and :class:`ValueError` for a
value of the right kind but out of range. Checks that would read tensor
*values* (:func:`check_edge_index`'s id range) are skipped on the ``meta``
device and while :func:`torch.compile` traces, where values do not exist or
reading them would break the graph; shape and dtype checks always run.
"""
import math
import numbers
import operator
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

__all__ = [
    'is_compiling',
    'can_inspect_values',
    'check_int',
    'check_float',
    'check_choice',
    'check_edge_index',
    'check_ids',
    'check_modality_weights',
]


def is_compiling() -> bool:
    r"""Whether the caller is being traced by :func:`torch.compile`
    (:func:`torch.compiler.is_compiling`; :obj:`False` on a torch without
    it)."""
    fn = getattr(getattr(torch, 'compiler', None), 'is_compiling', None)
    return fn is not None and bool(fn())


def can_inspect_values(tensor: Tensor) -> bool:
    r"""Whether the values of :obj:`tensor` can be read without breaking a
    :func:`torch.compile` graph or failing on the ``meta`` device."""
    if tensor.device.type == 'meta':
        return False
    return not is_compiling()


def check_int(value, name: str, minimum: int = 1) -> int:
    r"""Returns :obj:`value` as an :class:`int` if it is an integer (a Python
    or NumPy integer, not a :class:`bool`) of at least :obj:`minimum`.

    Raises:
        TypeError: :obj:`value` is not an integer.
        ValueError: :obj:`value` is below :obj:`minimum`.
    """
    try:
        if isinstance(value, bool):
            raise TypeError
        out = operator.index(value)
    except TypeError:
        raise TypeError(f"'{name}' must be an int >= {minimum} (got "
                        f"{value!r} of type {type(value).__name__})") from None
    if out < minimum:
        raise ValueError(f"'{name}' must be an int >= {minimum} (got {out})")
    return out


def check_float(value, name: str, minimum: float = 0.0,
                maximum: float = math.inf, *,
                strict_minimum: bool = False) -> float:
    r"""Returns :obj:`value` as a :class:`float` if it is a finite real number
    (not a :class:`bool`) in :math:`[\mathrm{minimum}, \mathrm{maximum}]`
    (:math:`(\mathrm{minimum}, \mathrm{maximum}]` with
    :obj:`strict_minimum=True`). The defaults accept any non-negative finite
    float.

    Raises:
        TypeError: :obj:`value` is not a real number.
        ValueError: :obj:`value` is not finite or out of range.
    """
    if minimum == 0 and maximum == math.inf:
        what = ('a positive' if strict_minimum else 'a non-negative') + \
            ' finite float'
    else:
        lo = '(' if strict_minimum else '['
        hi = ']' if maximum < math.inf else ')'
        what = f'a finite float in {lo}{minimum:g}, {maximum:g}{hi}'
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"'{name}' must be {what} (got {value!r} of type "
                        f"{type(value).__name__})")
    out = float(value)
    below = out <= minimum if strict_minimum else out < minimum
    if not math.isfinite(out) or below or out > maximum:
        raise ValueError(f"'{name}' must be {what} (got {value!r})")
    return out


def check_choice(value, name: str, choices: Sequence):
    r"""Returns :obj:`value` if it is one of :obj:`choices` (a mode name,
    for instance).

    Raises:
        ValueError: :obj:`value` is not one of :obj:`choices` (whatever its
            type).
    """
    if value not in choices:
        raise ValueError(f"'{name}' must be one of {choices} (got {value!r})")
    return value


def check_edge_index(
    edge_index: Tensor,
    name: str = 'edge_index',
    *,
    num_nodes: Union[None, int, Tuple[Optional[int], Optional[int]]] = None,
    kinds: Tuple[str, str] = ('node', 'node'),
    edge_weight: Optional[Tensor] = None,
    allow_empty: bool = True,
) -> Tensor:
    r"""Checks an edge index ``[2, E]`` of integer ids and returns it as a
    :obj:`torch.long` tensor (the same tensor when it already is one).

    Args:
        edge_index (torch.Tensor): The pairs ``[2, E]``.
        name (str, optional): The argument name used in messages.
        num_nodes (int or (int, int), optional): Bounds of row 0 and row 1
            (one int bounds both; :obj:`None` checks only that ids are
            non-negative).
        kinds ((str, str), optional): What the ids of row 0 and row 1 are
            (*e.g.* ``('user', 'item')``), for messages.
        edge_weight (torch.Tensor, optional): Weights that must have one entry
            per edge.
        allow_empty (bool, optional): Whether ``E = 0`` is accepted.

    Raises:
        TypeError: :obj:`edge_index` is not a tensor.
        ValueError: wrong shape or dtype, negative or out-of-range ids, or an
            :obj:`edge_weight` of the wrong size.
    """
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"'{name}' must be a torch.Tensor of shape [2, E] "
                        f"(got {type(edge_index).__name__})")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'{name}' must have shape [2, E] "
                         f"(got {list(edge_index.size())})")
    if edge_index.dtype.is_floating_point or edge_index.dtype == torch.bool \
            or edge_index.is_complex():
        raise ValueError(f"'{name}' must hold integer ids "
                         f"(got dtype {edge_index.dtype})")
    if edge_weight is not None and edge_weight.numel() != edge_index.size(1):
        raise ValueError(f"'edge_weight' has {edge_weight.numel()} entries "
                         f"but '{name}' has {edge_index.size(1)} edges")
    if not allow_empty and edge_index.size(1) == 0:
        raise ValueError(f"'{name}' is empty (it must hold at least one "
                         f"pair)")
    edge_index = edge_index.long()
    if edge_index.numel() == 0 or not can_inspect_values(edge_index):
        return edge_index
    if not isinstance(num_nodes, Sequence):
        num_nodes = (num_nodes, num_nodes)
    if num_nodes[0] == num_nodes[1] and kinds[0] == kinds[1]:
        bounds = edge_index.aminmax()  # both rows share the bound
        rows = [(bounds, num_nodes[0], kinds[0])]
    else:
        rows = [(edge_index[r].aminmax(), num_nodes[r], kinds[r])
                for r in (0, 1)]
    for (lo, hi), bound, kind in rows:
        lo, hi = int(lo), int(hi)
        if lo < 0:
            raise ValueError(f"'{name}' holds negative {kind} ids (ids in "
                             f"[{lo}, {hi}])")
        if bound is not None and hi >= bound:
            raise ValueError(f"'{name}' holds {kind} ids in [{lo}, {hi}] but "
                             f"there are only {bound} {kind}s (largest "
                             f"{kind} id {hi})")
    return edge_index


def check_ids(ids, name: str, num: int) -> Tensor:
    r"""A 1-D integer tensor of ids in ``[0, num)`` (:obj:`name` is the
    argument's name), returned as int64. The id range is read only where
    :func:`can_inspect_values` allows it."""
    if not isinstance(ids, Tensor) or ids.dtype.is_floating_point or \
            ids.dtype.is_complex or ids.dtype == torch.bool:
        raise TypeError(f"'{name}' must be an integer tensor of ids (got "
                        f"{getattr(ids, 'dtype', type(ids).__name__)})")
    if ids.dim() != 1:
        raise ValueError(f"'{name}' must be a 1-D tensor of ids (got shape "
                         f"{list(ids.shape)})")
    if ids.numel() and can_inspect_values(ids):
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= num:
            raise ValueError(f"'{name}' holds ids outside [0, {num}) (min "
                             f"{low}, max {high})")
    return ids.long()


def check_modality_weights(
    weights: Optional[Mapping[str, float]],
    name: str,
    modalities: Optional[Sequence[str]] = None,
) -> Optional[Dict[str, float]]:
    r"""Checks modality weights :math:`\beta_m` (a mapping modality name →
    non-negative finite float summing to one) and returns them as a plain
    dict of floats; :obj:`None` passes through (the caller's default).

    Args:
        weights (Mapping[str, float], optional): The weights.
        name (str): The argument name used in messages.
        modalities (Sequence[str], optional): When given, the weights must
            have exactly one entry per modality.
    """
    if weights is None:
        return None
    if not isinstance(weights, Mapping):
        raise TypeError(f"'{name}' must be a mapping modality -> weight or "
                        f"None (got {type(weights).__name__})")
    if len(weights) == 0:
        raise ValueError(f"'{name}' must not be empty")
    if modalities is not None and set(weights) != set(modalities):
        raise ValueError(f"'{name}' must have one entry per modality "
                         f"{sorted(modalities)} (got {sorted(weights)})")
    out = {}
    for m, w in weights.items():
        if not isinstance(m, str):
            raise TypeError(f"'{name}': modality names must be str "
                            f"(got {m!r})")
        out[m] = check_float(w, f'{name}[{m!r}]')
    total = sum(out.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"'{name}' must sum to 1 (got {total:.6g} for "
                         f"{out})")
    return out
