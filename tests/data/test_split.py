import numpy as np
import pandas as pd
import pytest
import torch

from pyg_brmrs.data import (
    from_interactions,
    mmrec_split,
    mmrec_split_sizes,
    split_sizes,
)
from conftest import require


def naive_sizes(n):
    # MMRec preprocessing/1splitting.ipynb, plus our choice for n <= 2.
    if n == 1:
        return [1, 0, 0]
    if n == 2:
        return [1, 0, 1]
    if n < 10:
        return [n - 2, 1, 1]
    val_test = int(n * 0.2)
    return [n - val_test, val_test // 2, val_test - val_test // 2]


def test_split_sizes_match_mmrec_rule():
    n = np.arange(1, 400)
    expected = np.array([naive_sizes(int(k)) for k in n])
    assert np.array_equal(mmrec_split_sizes(n), expected)
    assert mmrec_split_sizes([9])[0].tolist() == [7, 1, 1]
    assert mmrec_split_sizes([10])[0].tolist() == [8, 1, 1]
    assert mmrec_split_sizes([15])[0].tolist() == [12, 1, 2]
    assert mmrec_split_sizes([25])[0].tolist() == [20, 2, 3]


def test_split_per_user_counts_and_alignment():
    rng = np.random.default_rng(1)
    counts = rng.integers(1, 40, size=200)
    users = np.repeat(np.arange(200), counts)
    perm = rng.permutation(users.size)
    users = users[perm] * 7 + 3  # arbitrary ids in arbitrary order
    labels = mmrec_split(users, seed=5)
    assert labels.shape == users.shape and labels.dtype == np.int64
    for u in np.unique(users):
        got = np.bincount(labels[users == u], minlength=3).tolist()
        assert got == naive_sizes(int((users == u).sum()))


def test_split_is_seeded_and_shuffles():
    users = np.repeat(np.arange(50), 20)
    a = mmrec_split(users, seed=1)
    assert np.array_equal(a, mmrec_split(users, seed=1))
    assert not np.array_equal(a, mmrec_split(users, seed=2))
    # Held-out rows are not always the last ones of a user (shuffled):
    assert (a.reshape(50, 20)[:, :16] > 0).any()
    # Every position is held out about equally often over seeds:
    freq = np.mean([mmrec_split(users, seed=s).reshape(50, 20) > 0
                    for s in range(20)], axis=(0, 1))
    assert freq.min() > 0.05 and freq.max() < 0.4


def test_split_accepts_dataframe_strings_and_tensors():
    df = pd.DataFrame({'userID': ['a'] * 12 + ['b'] * 3 + ['c'] * 2 +
                       ['d'], 'itemID': range(18)})
    labels = mmrec_split(df, seed=0)
    df['x_label'] = labels
    counts = df.groupby('userID')['x_label'].apply(
        lambda s: np.bincount(s, minlength=3).tolist()).to_dict()
    assert counts == {'a': [10, 1, 1], 'b': [1, 1, 1], 'c': [1, 0, 1],
                      'd': [1, 0, 0]}
    data = from_interactions(df, reindex=True)  # No cold-start user left.
    assert split_sizes(data) == [13, 2, 3]
    t = mmrec_split(torch.tensor([0, 0, 0, 1, 1, 1]), seed=0)
    assert np.bincount(t).tolist() == [2, 2, 2]


def test_split_bad_input():
    with pytest.raises(ValueError, match='empty input'):
        mmrec_split([])
    with pytest.raises(ValueError, match='mismatched lengths'):
        mmrec_split([0, 1], [0])
    with pytest.raises(ValueError, match="lacks column 'userID'"):
        mmrec_split(pd.DataFrame({'u': [0]}))
    with pytest.raises(ValueError, match='row 1: user id is missing'):
        mmrec_split(np.array([0, None], dtype=object))
    with pytest.raises(ValueError, match='holdout_ratio'):
        mmrec_split([0, 1], holdout_ratio=1.5)


def test_split_rule_on_real_baby(shared_data):
    path = require(shared_data / 'amazon-baby-jclaf' /
                   'baby_jclaf_derived.tsv')
    df = pd.read_csv(path, sep='\t')
    users = df['userID'].to_numpy()

    def per_user(labels):  # [U, 3] counts of train/valid/test per user
        return np.bincount(users * 3 + labels,
                           minlength=3 * (users.max() + 1)).reshape(-1, 3)

    # The real per-user valid/test counts follow the rule exactly:
    real = per_user(df['x_label'].to_numpy())
    assert np.array_equal(real, mmrec_split_sizes(real.sum(1)))
    # ...and so does our split of the same log:
    labels = mmrec_split(df, seed=999)
    assert np.array_equal(per_user(labels), real)
    assert np.bincount(labels).tolist() == [118551, 20559, 21682]
