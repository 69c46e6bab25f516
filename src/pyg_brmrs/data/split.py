r"""MMRec's per-user train / valid / test split rule."""
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor

from .validation import row_locator


def mmrec_split_sizes(counts: Any, *, threshold: int = 10,
                      holdout_ratio: float = 0.2) -> np.ndarray:
    r"""The per-user numbers ``[n_train, n_valid, n_test]`` of the MMRec
    split rule for users with :obj:`counts` interactions each.

    For a user with :math:`n` interactions:

    * :math:`n \geq` :obj:`threshold` (10): :math:`h = \lfloor 0.2 n \rfloor`
      held-out interactions (computed as ``int(n * 0.2)`` in float64, exactly
      as MMRec's ``preprocessing/1splitting.ipynb``),
      :math:`\lfloor h / 2 \rfloor` valid and
      :math:`h - \lfloor h / 2 \rfloor` test (the test split gets the extra
      one when :math:`h` is odd), the rest train;
    * :math:`3 \leq n <` :obj:`threshold`: 1 valid, 1 test, :math:`n - 2`
      train (MMRec);
    * :math:`n = 2`: 1 train, 0 valid, 1 test (our choice; MMRec's notebook
      would leave no training interaction, making the user cold-start);
    * :math:`n = 1`: 1 train (our choice; MMRec's notebook would emit two
      labels for one row).

    Args:
        counts (array-like): Interactions per user ``[U]``.
        threshold (int, optional): Users with fewer interactions get exactly
            one valid and one test interaction. (default: :obj:`10`)
        holdout_ratio (float, optional): The held-out fraction (valid + test)
            for the other users. (default: :obj:`0.2`)

    Returns:
        :class:`numpy.ndarray` of shape ``[U, 3]`` (``int64``).
    """
    n = np.asarray(counts, dtype=np.int64)
    held = (n.astype(np.float64) * holdout_ratio).astype(np.int64)
    val = np.where(n < threshold, 1, held // 2)
    test = np.where(n < threshold, 1, held - held // 2)
    val = np.where(n <= 2, 0, val)
    test = np.where(n <= 1, 0, test)
    return np.stack([n - val - test, val, test], axis=1)


def mmrec_split(
    users: Any,
    items: Any = None,
    *,
    seed: int = 999,
    user_col: str = 'userID',
    threshold: int = 10,
    holdout_ratio: float = 0.2,
) -> np.ndarray:
    r"""Applies MMRec's per-user split rule to a raw interaction log and
    returns one split label per row: ``0`` (train), ``1`` (valid), ``2``
    (test).

    .. code-block:: python

        df['x_label'] = mmrec_split(df, seed=999)
        data = from_interactions(df, features=feats)

    Every user's interactions are shuffled with a random key drawn from
    :obj:`numpy.random.default_rng(seed)` (one key per row, so the result
    depends only on :obj:`seed` and the row order of the input); the first
    ``n_train`` of the shuffled interactions are training, the next
    ``n_valid`` valid and the last ``n_test`` test, with the per-user
    numbers of :func:`mmrec_split_sizes` (users with fewer than 10
    interactions: 1 valid + 1 test; otherwise ``int(0.2 n)`` held out, split
    in half with the extra one to test; users with 1 or 2 interactions keep
    one training interaction). The labels are computed with one
    :func:`numpy.lexsort` by ``(user, random key)``, without a Python loop
    over users.

    MMRec shuffles with :meth:`pandas.DataFrame.sample`, so this reproduces
    MMRec's per-user *counts* exactly but not its choice of held-out items.

    Args:
        users (array-like or pandas.DataFrame): The user of each interaction
            ``[E]`` (any hashable ids), or a DataFrame with column
            :obj:`user_col`.
        items (array-like, optional): Accepted for symmetry with
            :func:`from_interactions`; the rule does not depend on items, only
            its length is checked. (default: :obj:`None`)
        seed (int, optional): The random seed (MMRec's default is 999).
        user_col (str, optional): The user column of a DataFrame.
            (default: ``'userID'``)
        threshold (int, optional): See :func:`mmrec_split_sizes`.
        holdout_ratio (float, optional): See :func:`mmrec_split_sizes`.

    Returns:
        :class:`numpy.ndarray` ``int64`` of shape ``[E]``.
    """
    if isinstance(users, pd.DataFrame):
        if user_col not in users.columns:
            raise ValueError(f"mmrec_split: DataFrame lacks column "
                             f"'{user_col}' (columns: {list(users.columns)})")
        users = users[user_col].to_numpy()
    elif isinstance(users, Tensor):
        users = users.detach().cpu().numpy()
    users = np.asarray(users)
    if users.ndim != 1:
        raise ValueError(f"mmrec_split: argument 'users' must be "
                         f'one-dimensional, got shape {tuple(users.shape)}')
    if items is not None and len(items) != users.shape[0]:
        raise ValueError(f"mmrec_split: mismatched lengths (argument 'users' "
                         f"has {users.shape[0]} entries, argument 'items' has "
                         f'{len(items)})')
    if users.shape[0] == 0:
        raise ValueError('mmrec_split: no interactions (empty input)')
    if not 0.0 <= holdout_ratio < 1.0:
        raise ValueError(f'mmrec_split: holdout_ratio must be in [0, 1), got '
                         f'{holdout_ratio}')
    codes, _ = pd.factorize(users, sort=False)
    if (codes < 0).any():
        i = int(np.flatnonzero(codes < 0)[0])
        raise ValueError(f"mmrec_split: argument 'users', "
                         f'{row_locator()(i)}: user id is missing')
    n = codes.shape[0]
    key = np.random.default_rng(seed).random(n)
    order = np.lexsort((key, codes))
    counts = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sizes = mmrec_split_sizes(counts, threshold=threshold,
                              holdout_ratio=holdout_ratio)
    grp = codes[order]
    pos = np.arange(n) - starts[grp]
    n_train = sizes[grp, 0]
    n_val = sizes[grp, 1]
    labels = np.empty(n, dtype=np.int64)
    labels[order] = np.where(pos < n_train, 0,
                             np.where(pos < n_train + n_val, 1, 2))
    return labels
