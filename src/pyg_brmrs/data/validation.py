r"""Input checks shared by every reader of :mod:`pyg_brmrs.data`.

All readers (:func:`~pyg_brmrs.data.read_mmrec`,
:func:`~pyg_brmrs.data.read_diffmm`, :func:`~pyg_brmrs.data.from_interactions`)
parse their input into plain arrays and then go through the checks of this
module, so that every error message has the same shape::

    <source>: <where> (<row or line>): <what is wrong>

A *locator* is a callable mapping a 0-based data-row index to a human-readable
position, *e.g.* ``'row 3'`` for arrays or ``'line 5'`` for a file with a
header line.
"""
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from .schema import ITEM, RATES, USER

Locator = Callable[[int], str]

#: The largest number of users or items (ids must be below it): node ids
#: are indexed with 32-bit integers by sparse kernels, and a larger count
#: almost always means raw ids that should be re-indexed. Checked before
#: anything of that size is allocated.
MAX_NODES = 2**31 - 1

#: Accepted split labels (case-insensitive for strings).
SPLIT_LABELS: Dict[Any, int] = {
    'train': 0,
    'training': 0,
    'valid': 1,
    'val': 1,
    'validation': 1,
    'test': 2,
}


def row_locator(first_line: Optional[int] = None) -> Locator:
    r"""Returns a locator that names data row :obj:`i` as ``'row i'``
    (0-based), or, when :obj:`first_line` is given, as the 1-based file line
    ``'line {first_line + i}'``."""
    if first_line is None:
        return lambda i: f'row {int(i)}'
    return lambda i: f'line {int(i) + first_line}'


def _is_missing(value: Any) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _fmt(value: Any) -> str:
    if isinstance(value, (np.generic, )):
        value = value.item()
    return repr(value)


def to_int_ids(values: np.ndarray, *, source: str, field: str,
               locate: Locator) -> np.ndarray:
    r"""Converts :obj:`values` to non-negative ``int64`` ids.

    Integer arrays are taken as they are; floating-point arrays must hold
    integral values; object/string arrays must hold integers or strings of
    integers (as a CSV column with a stray non-numeric entry is parsed).

    Raises:
        ValueError: naming :obj:`field` and the first offending row, for a
            missing value, a non-integer value or a negative id.
    """
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f'{source}: {field} must be one-dimensional, got '
                         f'shape {tuple(values.shape)}')
    if values.dtype == np.bool_:
        raise ValueError(f'{source}: {field} holds booleans, expected '
                         f'integer ids')
    if np.issubdtype(values.dtype, np.integer):
        ids = values.astype(np.int64, copy=False)
    else:
        if np.issubdtype(values.dtype, np.floating):
            num = values.astype(np.float64, copy=False)
        else:
            num = pd.to_numeric(pd.Series(values, copy=False),
                                errors='coerce').to_numpy(dtype=np.float64)
        with np.errstate(invalid='ignore'):
            bad = ~np.isfinite(num) | (num != np.round(num))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            value = values[i]
            if _is_missing(value):
                what = 'is missing'
            else:
                what = f'{_fmt(value)} is not an integer id'
            raise ValueError(f'{source}: {field}, {locate(i)}: {what} '
                             f'({int(bad.sum())} such row(s); pass '
                             f'reindex=True to map arbitrary ids to '
                             f'0..n-1)')
        ids = num.astype(np.int64)
    neg = ids < 0
    if neg.any():
        i = int(np.flatnonzero(neg)[0])
        raise ValueError(f'{source}: {field}, {locate(i)}: id {int(ids[i])} '
                         f'is negative (ids must be 0-based; '
                         f'{int(neg.sum())} negative id(s))')
    return ids


def check_id_bound(ids: np.ndarray, count: Optional[int], *, source: str,
                   field: str, locate: Locator, what: str,
                   count_reason: str = '') -> None:
    r"""Raises a :class:`ValueError` if an id reaches :obj:`MAX_NODES` or
    the node :obj:`count` (:obj:`what`: ``'num_users'`` /
    ``'num_items'``) exceeds it, before any array of that size is
    allocated; the message names the first such row and suggests
    re-indexing."""
    hint = 'pass reindex=True to map arbitrary ids to 0..n-1'
    if count is not None and int(count) > MAX_NODES:
        why = f' ({count_reason})' if count_reason not in ('', what) else ''
        raise ValueError(f'{source}: {what} is {int(count)}{why}, more than '
                         f'the {MAX_NODES} supported ({hint})')
    if ids.size == 0:
        return
    i = int(np.argmax(ids))
    if int(ids[i]) >= MAX_NODES:
        raise ValueError(f'{source}: {field}, {locate(i)}: id {int(ids[i])} '
                         f'is too large (ids must be dense, 0-based and '
                         f'< {MAX_NODES}; {hint})')


def check_id_range(ids: np.ndarray, bound: int, *, source: str, field: str,
                   locate: Locator, reason: str) -> None:
    r"""Raises a :class:`ValueError` if any id is :obj:`bound` or larger;
    :obj:`reason` says where :obj:`bound` comes from."""
    out = ids >= bound
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise ValueError(f'{source}: {field}, {locate(i)}: id {int(ids[i])} '
                         f'is out of range, {reason} (ids must be < {bound}; '
                         f'{int(out.sum())} row(s) out of range)')


def check_dense_ids(ids: np.ndarray, *, source: str, field: str,
                    locate: Locator, what: str) -> None:
    r"""Raises a :class:`ValueError` when the largest id is far beyond the
    number of distinct ids (more than ten times, plus 1,000): the node
    count is inferred as the largest id + 1, and ids like 10⁹ among a few
    thousand rows would allocate tables of that size for nodes that do not
    exist. The message names the row and suggests renumbering."""
    if ids.size == 0:
        return
    top = int(ids.max())
    distinct = int(np.unique(ids).size)
    if top + 1 > 10 * distinct + 1000:
        i = int(np.argmax(ids))
        raise ValueError(
            f'{source}: {field}, {locate(i)}: id {top} is far beyond the '
            f'{distinct:,} distinct {what} ids (ids must be dense, 0 .. '
            f'number of {what}s - 1, since the {what} count is the largest '
            f'id + 1); renumber them (from_interactions(..., reindex=True))')


def reindex_ids(values: np.ndarray, *, source: str,
                field: str, locate: Locator) -> Tuple[np.ndarray, Any]:
    r"""Maps arbitrary hashable ids to dense ``0..n-1`` in the sorted order of
    the unique ids. Returns ``(codes, uniques)``; :obj:`uniques` is a
    ``long`` tensor for integer ids and a Python list otherwise."""
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f'{source}: {field} must be one-dimensional, got '
                         f'shape {tuple(values.shape)}')
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError as e:  # Mixed, unorderable types.
        raise ValueError(f'{source}: {field} mixes id types that cannot be '
                         f'sorted ({e})') from None
    missing = codes < 0
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise ValueError(f'{source}: {field}, {locate(i)}: id is missing')
    uniques = np.asarray(uniques)
    if np.issubdtype(uniques.dtype, np.integer):
        raw = torch.from_numpy(uniques.astype(np.int64))
    else:
        raw = uniques.tolist()
    return codes.astype(np.int64, copy=False), raw


def parse_split(labels: Optional[Any], n: int, *, source: str, field: str,
                locate: Locator) -> np.ndarray:
    r"""Converts split labels to ``int64`` codes 0 (train), 1 (valid) and
    2 (test).

    Accepted labels: the integers 0/1/2 (also as integral floats or numeric
    strings) and the strings ``'train'``/``'training'``,
    ``'valid'``/``'val'``/``'validation'`` and ``'test'`` (case-insensitive).
    :obj:`None` marks every row as training.
    """
    if labels is None:
        return np.zeros(n, dtype=np.int64)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f'{source}: {field} must be one-dimensional, got '
                         f'shape {tuple(labels.shape)}')
    if np.issubdtype(labels.dtype, np.integer):
        codes = labels.astype(np.int64)
        bad = (codes < 0) | (codes > 2)
    else:
        series = pd.Series(labels, copy=False)
        if np.issubdtype(labels.dtype, np.floating):
            num = labels.astype(np.float64)
        else:
            num = pd.to_numeric(series, errors='coerce').to_numpy(np.float64)
            words = series.astype(str).str.strip().str.lower().map(
                SPLIT_LABELS).to_numpy(dtype=np.float64, na_value=np.nan)
            num = np.where(np.isnan(num), words, num)
        with np.errstate(invalid='ignore'):
            bad = ~np.isin(num, (0.0, 1.0, 2.0))
        codes = np.where(bad, -1, np.nan_to_num(num)).astype(np.int64)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        value = labels[i]
        if _is_missing(value):
            raise ValueError(f'{source}: {field}, {locate(i)}: split label '
                             f'is missing ({int(bad.sum())} row(s) with a '
                             f'missing or unknown label)')
        raise ValueError(f'{source}: {field}, {locate(i)}: unknown split '
                         f'label {_fmt(value)} (expected 0/1/2 or '
                         f"'train'/'valid'/'val'/'test'; "
                         f'{int(bad.sum())} such row(s))')
    return codes


def find_duplicate(users: np.ndarray,
                   items: np.ndarray) -> Optional[Tuple[int, int, int]]:
    r"""Returns ``(first_row, second_row, count)`` for the duplicate
    ``(user, item)`` pair whose second occurrence comes first, and the total
    number of duplicate rows, or :obj:`None` if all pairs are unique."""
    n = users.shape[0]
    rows = np.arange(n)
    order = np.lexsort((rows, items, users))
    su, si = users[order], items[order]
    dup = np.zeros(n, dtype=bool)
    dup[1:] = (su[1:] == su[:-1]) & (si[1:] == si[:-1])
    if not dup.any():
        return None
    start = np.maximum.accumulate(np.where(dup, 0, rows))
    pos = np.flatnonzero(dup)
    p = pos[np.argmin(order[pos])]
    return int(order[start[p]]), int(order[p]), int(dup.sum())


def check_features(
    features: Optional[Mapping[str, Any]],
    *,
    source: str,
    num_items: Optional[int] = None,
    num_items_reason: str = '',
    sources: Optional[Mapping[str, str]] = None,
) -> Tuple[Dict[str, Tensor], Optional[int]]:
    r"""Checks a dictionary ``modality -> [num_items, F_m]`` of item features
    and converts each matrix to a contiguous ``float32`` tensor (on the
    tensor's device for tensor input; float16/float64/integer input is
    converted, which is documented and not considered a repair).

    Args:
        features (dict, optional): The features.
        source (str): Names the input in error messages.
        num_items (int, optional): The expected number of rows.
        num_items_reason (str): Why :obj:`num_items` is expected.
        sources (dict, optional): A per-modality source name (*e.g.* the
            ``.npy`` file) used in error messages instead of :obj:`source`.

    Returns:
        ``(features, num_rows)`` where :obj:`num_rows` is the common row
        count (:obj:`None` without features).
    """
    if features is None:
        return {}, None
    if not isinstance(features, Mapping):
        raise TypeError(f'{source}: features must be a dict mapping modality '
                        f'name -> [num_items, F] array, got '
                        f'{type(features).__name__}')
    sources = sources or {}
    out: Dict[str, Tensor] = {}
    rows: Dict[str, int] = {}
    for m, value in features.items():
        if not isinstance(m, str) or not m or m.strip() != m:
            raise ValueError(f'{source}: modality names must be non-empty '
                             f'strings without surrounding blanks, got '
                             f'{m!r}')
        src = sources.get(m, source)
        what = f"features of modality '{m}'"
        if isinstance(value, Tensor):
            x = value.detach()
        else:
            arr = np.asarray(value)
            if not (np.issubdtype(arr.dtype, np.number)
                    or arr.dtype == np.bool_):
                raise TypeError(f'{src}: {what} must be numeric, got dtype '
                                f'{arr.dtype}')
            arr = np.ascontiguousarray(arr)
            if not arr.flags.writeable:  # e.g. a read-only memory map
                arr = arr.copy()
            x = torch.from_numpy(arr)
        if x.is_complex():
            raise TypeError(f'{src}: {what} must be real, got {x.dtype}')
        if x.dim() != 2:
            raise ValueError(f'{src}: {what} must be 2-D [num_items, F], got '
                             f'shape {tuple(x.shape)}')
        if x.size(1) == 0:
            raise ValueError(f'{src}: {what} have 0 columns')
        x32 = x.to(torch.float32)
        stages = [('', x)] if x.is_floating_point() else []
        if x.dtype != torch.float32:
            stages.append((' after conversion to float32', x32))
        for stage, t in stages:
            bad = ~torch.isfinite(t)
            if bool(bad.any()):
                bad_rows = bad.any(dim=1).nonzero().view(-1)
                r = int(bad_rows[0])
                c = int(bad[r].nonzero().view(-1)[0])
                v = float(t[r, c])
                raise ValueError(
                    f'{src}: {what} have a non-finite value ({v}) at row '
                    f'{r}, column {c}{stage} ({bad_rows.numel()} row(s) '
                    f'with NaN/inf)')
        out[m] = x32.contiguous()
        rows[m] = int(x.size(0))
    if not out:
        return out, None
    if num_items is not None:
        why = f' ({num_items_reason})' if num_items_reason else ''
        for m, r in rows.items():
            if r != num_items:
                raise ValueError(
                    f"{sources.get(m, source)}: features of modality '{m}' "
                    f'have {r} rows but there are {num_items} items{why}; '
                    f'the feature row count must equal the number of items')
        return out, num_items
    if len(set(rows.values())) > 1:
        desc = ', '.join(f"'{m}': {r}" for m, r in rows.items())
        raise ValueError(f'{source}: the modalities have different numbers '
                         f'of feature rows ({desc}); each must have one row '
                         f'per item')
    return out, next(iter(rows.values()))


def check_data(data: HeteroData) -> None:
    r"""Checks that :obj:`data` follows the schema of
    :mod:`pyg_brmrs.data.schema`: node counts, ``[2, E]`` long edge indices
    with ids in range, and ``float32`` ``[num_items, F]`` finite features.

    Raises:
        ValueError: naming the attribute that breaks the schema.
    """
    for t in (USER, ITEM):
        if t not in data.node_types or 'num_nodes' not in data[t]:
            raise ValueError(f"data['{t}'].num_nodes is missing")
    nu, ni = int(data[USER].num_nodes), int(data[ITEM].num_nodes)
    if RATES not in data.edge_types:
        raise ValueError(f'data{RATES} is missing')
    store = data[RATES]
    for key in ('edge_index', 'val_edge_index', 'test_edge_index'):
        if key not in store:
            raise ValueError(f'data{RATES}.{key} is missing')
        ei = store[key]
        if not isinstance(ei, Tensor) or ei.dtype != torch.long or \
                ei.dim() != 2 or ei.size(0) != 2:
            raise ValueError(f'data{RATES}.{key} must be a long tensor of '
                             f'shape [2, E]')
        if ei.numel() > 0 and (int(ei.min()) < 0 or int(ei[0].max()) >= nu
                               or int(ei[1].max()) >= ni):
            raise ValueError(f'data{RATES}.{key} holds ids out of range '
                             f'(num_users={nu}, num_items={ni})')
    for key in data[ITEM].keys():
        value = data[ITEM][key]
        if key.startswith('x_') and isinstance(value, Tensor):
            if value.dtype != torch.float32 or value.dim() != 2 or \
                    value.size(0) != ni:
                raise ValueError(f"data['item'].{key} must be float32 of "
                                 f'shape [{ni}, F], got {value.dtype} '
                                 f'{tuple(value.shape)}')
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"data['item'].{key} has NaN/inf values")
