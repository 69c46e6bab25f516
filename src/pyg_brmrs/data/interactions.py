r"""Building the :mod:`pyg_brmrs` :class:`~torch_geometric.data.HeteroData`
from interaction arrays: the single core behind every reader."""
import warnings
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from .schema import ITEM, RATES, USER, Schema, feature_key, resolve_schema
from .validation import (
    Locator,
    check_features,
    check_dense_ids,
    check_id_bound,
    check_id_range,
    find_duplicate,
    parse_split,
    reindex_ids,
    row_locator,
    to_int_ids,
)

_DEFAULT_SPLIT_COL = 'x_label'


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, (pd.Series, pd.Index)):
        return value.to_numpy()
    return np.asarray(value)


def _parse_reindex(reindex: Union[bool, str]) -> Tuple[bool, bool]:
    if isinstance(reindex, (bool, np.bool_)):
        return bool(reindex), bool(reindex)
    if reindex in ('user', 'item'):
        return reindex == 'user', reindex == 'item'
    raise ValueError(f"reindex must be True, False, 'user' or 'item', got "
                     f'{reindex!r}')


def _dense_ids(ids: np.ndarray, count: Optional[int], reindex: bool,
               kind: str, source: str, field: str,
               locate: Locator) -> Tuple[np.ndarray, Optional[int], Any]:
    r"""The ``user`` or ``item`` (:obj:`kind`) ids as dense integer ids, with
    their count and their original ids: mapped to ``0..n-1`` with
    :obj:`reindex` (then :obj:`count` must not be given), checked as given
    otherwise (original ids :obj:`None`)."""
    if not reindex:
        return (to_int_ids(ids, source=source, field=field, locate=locate),
                count, None)
    if count is not None:
        raise ValueError(f'{source}: num_{kind}s cannot be combined with '
                         f're-indexed {kind} ids')
    ids, raw = reindex_ids(ids, source=source, field=field, locate=locate)
    return ids, len(raw), raw


def build_data(
    users: Any,
    items: Any,
    split: Any = None,
    features: Optional[Mapping[str, Any]] = None,
    *,
    num_users: Optional[int] = None,
    num_users_reason: str = 'num_users',
    num_items: Optional[int] = None,
    num_items_reason: str = 'num_items',
    reindex: Union[bool, str] = False,
    drop_cold_start: bool = True,
    source: str = '<arrays>',
    fields: Tuple[str, str, str] = ("argument 'users'", "argument 'items'",
                                    "argument 'split'"),
    locate: Optional[Locator] = None,
    feature_sources: Optional[Mapping[str, str]] = None,
) -> HeteroData:
    r"""The validating core of :func:`from_interactions`, also used by the
    file readers (which pass file-specific :obj:`source`, :obj:`fields` and
    :obj:`locate` so that errors name the file, column and line, and say
    where a given :obj:`num_users` / :obj:`num_items` comes from in
    :obj:`num_users_reason` / :obj:`num_items_reason`)."""
    locate = locate or row_locator()
    f_user, f_item, f_split = fields
    device = users.device if isinstance(users, Tensor) else None

    users, items = _as_array(users), _as_array(items)
    lengths = {f_user: users.shape[0] if users.ndim else -1,
               f_item: items.shape[0] if items.ndim else -1}
    if split is not None:
        split = _as_array(split)
        lengths[f_split] = split.shape[0] if split.ndim else -1
    if len(set(lengths.values())) > 1:
        desc = ', '.join(f'{k} has {v} entries' for k, v in lengths.items())
        raise ValueError(f'{source}: mismatched lengths ({desc})')
    n = users.shape[0]
    if n == 0:
        raise ValueError(f'{source}: no interactions (empty input)')

    re_user, re_item = _parse_reindex(reindex)
    users, num_users, raw_user = _dense_ids(
        users, num_users, re_user, 'user', source, f_user, locate)
    items, num_items, raw_item = _dense_ids(
        items, num_items, re_item, 'item', source, f_item, locate)
    if re_item:
        num_items_reason = (f'{num_items} distinct item ids after '
                            f're-indexing')

    check_id_bound(users, num_users, source=source, field=f_user,
                   locate=locate, what='num_users',
                   count_reason=num_users_reason)
    check_id_bound(items, num_items, source=source, field=f_item,
                   locate=locate, what='num_items',
                   count_reason=num_items_reason)
    split = parse_split(split, n, source=source, field=f_split,
                        locate=locate)

    feats, rows = check_features(features, source=source, num_items=num_items,
                                 num_items_reason=num_items_reason,
                                 sources=feature_sources)
    if num_items is None:
        if rows is not None:
            num_items = rows
            desc = ', '.join(f"'{m}'" for m in feats)
            item_reason = (f'the features ({desc}) have {rows} rows, one per '
                           f'item')
        else:
            check_dense_ids(items, source=source, field=f_item,
                            locate=locate, what='item')
            num_items = int(items.max()) + 1
            item_reason = ''
    else:
        item_reason = f'{num_items_reason} is {num_items}'
    if num_users is None:
        check_dense_ids(users, source=source, field=f_user, locate=locate,
                        what='user')
        num_users = int(users.max()) + 1
        user_reason = ''
    else:
        user_reason = f'{num_users_reason} is {num_users}'
    if int(num_users) < 0 or int(num_items) < 0:
        raise ValueError(f'{source}: num_users and num_items must be '
                         f'non-negative')
    num_users, num_items = int(num_users), int(num_items)
    check_id_range(users, num_users, source=source, field=f_user,
                   locate=locate, reason=user_reason)
    check_id_range(items, num_items, source=source, field=f_item,
                   locate=locate, reason=item_reason)

    dup = find_duplicate(users, items)
    if dup is not None:
        a, b, count = dup
        raise ValueError(f'{source}: duplicate interaction (user '
                         f'{int(users[b])}, item {int(items[b])}) at '
                         f'{locate(a)} and {locate(b)} ({count} duplicate '
                         f'row(s) in total); each (user, item) pair may '
                         f'appear only once')

    if drop_cold_start:
        has_train = np.zeros(num_users, dtype=bool)
        has_train[users[split == 0]] = True
        cold = (split > 0) & ~has_train[users]
        if cold.any():
            n_val = int((split[cold] == 1).sum())
            n_test = int((split[cold] == 2).sum())
            n_users = int(np.unique(users[cold]).size)
            warnings.warn(
                f'{source}: dropped {int(cold.sum())} held-out interaction(s) '
                f'({n_val} valid, {n_test} test) of {n_users} cold-start '
                f'user(s) without any training interaction, as MMRec does '
                f'(pass drop_cold_start=False to keep them)', UserWarning,
                stacklevel=3)
            keep = ~cold
            users, items, split = users[keep], items[keep], split[keep]

    data = HeteroData()
    data[USER].num_nodes = num_users
    data[ITEM].num_nodes = num_items
    if raw_user is not None:
        data[USER].raw_id = raw_user
    if raw_item is not None:
        data[ITEM].raw_id = raw_item
    for m in sorted(feats):
        data[ITEM][feature_key(m)] = feats[m]
    store = data[RATES]
    for code, key in ((0, 'edge_index'), (1, 'val_edge_index'),
                      (2, 'test_edge_index')):
        mask = split == code
        u, i = users[mask], items[mask]
        order = np.lexsort((i, u))
        edge_index = torch.from_numpy(np.stack([u[order], i[order]]))
        store[key] = edge_index.to(torch.long).contiguous().to(device)
    return data


def from_interactions(
    users: Any,
    items: Any = None,
    split: Any = None,
    features: Optional[Mapping[str, Any]] = None,
    *,
    num_users: Optional[int] = None,
    num_items: Optional[int] = None,
    reindex: Union[bool, str] = False,
    drop_cold_start: bool = True,
    user_col: str = 'userID',
    item_col: str = 'itemID',
    split_col: Optional[str] = None,
    source: Optional[str] = None,
    schema: Optional[Schema] = None,
) -> HeteroData:
    r"""Builds the :mod:`pyg_brmrs` :class:`~torch_geometric.data.HeteroData`
    from interaction arrays or a :class:`pandas.DataFrame`, plus a dictionary
    of item features.

    .. code-block:: python

        data = from_interactions(users, items, split,
                                 features={'image': img, 'text': txt})
        data = from_interactions(df, features=feats)  # userID/itemID/x_label

    The result holds (see :mod:`pyg_brmrs.data.schema`)
    ``data['user'].num_nodes``, ``data['item'].num_nodes``,
    ``data['item'][f'x_{m}']`` (``float32`` ``[num_items, F_m]``,
    contiguous) and ``data['user', 'rates', 'item'].edge_index`` (training),
    ``.val_edge_index`` and ``.test_edge_index`` (each ``long``
    ``[2, E]``, row 0 users, row 1 items, sorted by ``(user, item)``).

    **Split labels** are the integers ``0`` (train), ``1`` (valid), ``2``
    (test) (integral floats and numeric strings are accepted) or the strings
    ``'train'``, ``'valid'``/``'val'``/``'validation'``, ``'test'``
    (case-insensitive). Without :obj:`split` every interaction is a training
    interaction.

    **Ids.** Without :obj:`reindex`, ids must be non-negative integers
    (integral floats and numeric strings are accepted);
    :obj:`num_users` defaults to ``max(users) + 1`` and :obj:`num_items` to
    the feature row count, or to ``max(items) + 1`` without features. With
    :obj:`reindex=True` (or ``'user'`` / ``'item'`` for one side only),
    arbitrary hashable ids are mapped to ``0..n-1`` in the sorted order of
    the unique ids, and the original ids are kept as
    ``data['user'].raw_id`` / ``data['item'].raw_id`` (``raw_id[k]`` is the
    original id of dense id ``k``; a ``long`` tensor for integer ids, a
    Python list otherwise). With re-indexed items, feature row ``k`` belongs
    to the item with the ``k``-th smallest original id.

    **Features** may be :class:`numpy.ndarray` or :class:`torch.Tensor` of
    any real dtype; they are converted to contiguous ``float32`` (a
    documented conversion, not a repair).

    **Cold-start users.** As in MMRec, held-out (valid/test) interactions of
    users without any training interaction are dropped with a
    :class:`UserWarning` that says how many rows and users were dropped
    (:obj:`drop_cold_start=True`, the default); with
    :obj:`drop_cold_start=False` they are kept. Nothing else is repaired.

    Args:
        users (array-like or pandas.DataFrame): User id per interaction
            ``[E]``, or a DataFrame with the columns :obj:`user_col`,
            :obj:`item_col` and (optionally) :obj:`split_col`.
        items (array-like, optional): Item id per interaction ``[E]``
            (must be :obj:`None` for DataFrame input).
        split (array-like, optional): Split label per interaction ``[E]``
            (must be :obj:`None` for DataFrame input).
        features (dict, optional): Modality name ``m`` to an item feature
            matrix ``[num_items, F_m]``.
        num_users (int, optional): The number of users.
        num_items (int, optional): The number of items.
        reindex (bool or str, optional): Map arbitrary ids to dense ids
            (:obj:`True`, :obj:`False`, ``'user'`` or ``'item'``).
            (default: :obj:`False`)
        drop_cold_start (bool, optional): Drop held-out interactions of users
            without training interactions. (default: :obj:`True`)
        user_col (str, optional): The user column of a DataFrame.
            (default: ``'userID'``)
        item_col (str, optional): The item column of a DataFrame.
            (default: ``'itemID'``)
        split_col (str, optional): The split column of a DataFrame; by
            default ``'x_label'`` is used when present (else every
            interaction is a training one), an explicitly named column must
            exist.
        source (str, optional): Names the input in error messages.
        schema (Schema, optional): Names the output's node, edge and
            feature attributes (:meth:`~pyg_brmrs.data.Schema.rename` of
            the canonical data; tensors shared). (default: :obj:`None`,
            the canonical names)

    Raises:
        ValueError: for mismatched lengths, empty input, non-integer,
            negative or out-of-range ids, unknown split labels, duplicate
            ``(user, item)`` pairs, features that are not 2-D, contain
            NaN/inf, or whose row count differs from the number of items.
            The message names the argument or column, the 0-based row and
            the problem.
        TypeError: for features that are not a dict of numeric arrays.
    """
    if isinstance(users, pd.DataFrame):
        df = users
        source = source or 'from_interactions(DataFrame)'
        if items is not None or split is not None:
            raise TypeError(f'{source}: pass either a DataFrame or the '
                            f'users/items/split arrays, not both')
        cols = [user_col, item_col]
        if split_col is not None:
            cols.append(split_col)
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(f'{source}: DataFrame lacks column(s) {missing} '
                             f'(columns: {list(df.columns)}); set user_col/'
                             f'item_col/split_col')
        if split_col is None and _DEFAULT_SPLIT_COL in df.columns:
            split_col = _DEFAULT_SPLIT_COL
        users, items = df[user_col].to_numpy(), df[item_col].to_numpy()
        split = None if split_col is None else df[split_col].to_numpy()
        fields = (f"column '{user_col}'", f"column '{item_col}'",
                  f"column '{split_col}'")
    else:
        source = source or 'from_interactions'
        if items is None:
            raise TypeError(f'{source}: items is required unless users is a '
                            f'pandas DataFrame')
        fields = ("argument 'users'", "argument 'items'", "argument 'split'")
    return resolve_schema(schema).rename(build_data(
        users, items, split, features, num_users=num_users,
        num_items=num_items, reindex=reindex,
        drop_cold_start=drop_cold_start, source=source, fields=fields))


def split_sizes(data: HeteroData) -> Sequence[int]:
    r"""The numbers of train / valid / test interactions of :obj:`data`."""
    store = data[RATES]
    return [int(store[k].size(1)) for k in
            ('edge_index', 'val_edge_index', 'test_edge_index')]
