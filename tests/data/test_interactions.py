import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from pyg_brmrs.data import (
    RATES,
    check_data,
    from_interactions,
    modalities,
    split_sizes,
)


def edges(data, key='edge_index'):
    return data[RATES][key]


def naive_edges(users, items, split, code):
    pairs = sorted((u, i) for u, i, s in zip(users, items, split) if s == code)
    return torch.tensor(pairs, dtype=torch.long).view(-1, 2).t()


def test_from_arrays_matches_naive_reference():
    rng = np.random.default_rng(0)
    pairs = rng.choice(30 * 20, size=150, replace=False)
    users, items = pairs // 20, pairs % 20
    split = rng.integers(0, 3, size=150)
    split[np.unique(users, return_index=True)[1]] = 0  # no cold start
    feats = {'image': rng.random((20, 5)), 'text': rng.random((20, 3))}
    data = from_interactions(users, items, split, feats, num_users=30)
    check_data(data)
    assert data['user'].num_nodes == 30 and data['item'].num_nodes == 20
    assert modalities(data) == ['image', 'text']
    for code, key in enumerate(['edge_index', 'val_edge_index',
                                'test_edge_index']):
        ei = edges(data, key)
        assert ei.dtype == torch.long and ei.is_contiguous()
        assert torch.equal(ei, naive_edges(users, items, split, code))
    assert sum(split_sizes(data)) == 150
    x = data['item'].x_image
    assert x.dtype == torch.float32 and x.is_contiguous()
    assert torch.allclose(x, torch.from_numpy(feats['image']).float())


def test_defaults_and_torch_input():
    users = torch.tensor([0, 2, 1])
    items = torch.tensor([3, 0, 1])
    data = from_interactions(users, items)
    assert data['user'].num_nodes == 3 and data['item'].num_nodes == 4
    assert torch.equal(edges(data), torch.tensor([[0, 1, 2], [3, 1, 0]]))
    assert edges(data, 'val_edge_index').shape == (2, 0)
    assert edges(data, 'test_edge_index').shape == (2, 0)
    assert modalities(data) == []


def test_num_items_defaults_to_feature_rows():
    data = from_interactions([0, 1], [0, 1],
                             features={'a': np.zeros((10, 2))})
    assert data['item'].num_nodes == 10


def test_string_split_labels_and_feature_dtypes():
    users = [0, 0, 0, 1, 1, 1, 1]
    items = [0, 1, 2, 0, 1, 2, 3]
    split = ['train', 'VAL', 'test', 'train', 'valid', ' Test ', 'training']
    feats = {'a': np.ones((4, 2), np.float16),
             'b': torch.ones(4, 3, dtype=torch.float64),
             'c': np.ones((4, 1), np.int32)}
    data = from_interactions(users, items, split, feats)
    assert split_sizes(data) == [3, 2, 2]
    for m in 'abc':
        assert data['item'][f'x_{m}'].dtype == torch.float32


def test_dataframe_input():
    df = pd.DataFrame({'userID': [0, 0, 1, 1], 'itemID': [0, 1, 1, 2],
                       'x_label': [0, 2, 0, 1]})
    data = from_interactions(df)
    assert split_sizes(data) == [2, 1, 1]
    # Without a split column everything is training:
    data = from_interactions(df.drop(columns='x_label'))
    assert split_sizes(data) == [4, 0, 0]
    # Custom column names:
    df2 = df.rename(columns={'userID': 'u', 'itemID': 'i', 'x_label': 's'})
    data = from_interactions(df2, user_col='u', item_col='i', split_col='s')
    assert split_sizes(data) == [2, 1, 1]
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['x'\]"):
        from_interactions(df, split_col='x')
    with pytest.raises(ValueError, match="lacks column.*'userID'"):
        from_interactions(df2)
    with pytest.raises(TypeError, match='either a DataFrame'):
        from_interactions(df, [1, 2])


def test_dataframe_errors_name_the_column_and_row():
    df = pd.DataFrame({'userID': [0, 1, 2], 'itemID': [0, -4, 1]})
    with pytest.raises(ValueError, match=r"column 'itemID', row 1: id -4 "
                       r'is negative'):
        from_interactions(df)


def test_reindex():
    users = ['bob', 'alice', 'bob', 'carol']
    items = [30, 10, 10, 20]
    feats = {'a': np.arange(3, dtype=np.float32).reshape(3, 1)}
    data = from_interactions(users, items, features=feats, reindex=True)
    assert data['user'].raw_id == ['alice', 'bob', 'carol']
    assert torch.equal(data['item'].raw_id, torch.tensor([10, 20, 30]))
    assert torch.equal(edges(data), torch.tensor([[0, 1, 1, 2],
                                                  [0, 0, 2, 1]]))
    # Only the users:
    data = from_interactions(users, [2, 0, 0, 1], reindex='user')
    assert data['item'].num_nodes == 3 and 'raw_id' not in data['item']
    assert data['user'].raw_id == ['alice', 'bob', 'carol']
    with pytest.raises(ValueError, match='3 rows but there are 2 items.*'
                       're-indexing'):
        from_interactions(['a', 'b'], ['x', 'y'], features=feats,
                          reindex=True)
    with pytest.raises(ValueError, match='num_users cannot be combined'):
        from_interactions(users, items, reindex=True, num_users=5)
    with pytest.raises(ValueError, match='reindex must be'):
        from_interactions(users, items, reindex='both')
    with pytest.raises(ValueError, match="argument 'users', row 1: id is "
                       'missing'):
        from_interactions(np.array(['a', None], dtype=object), [0, 1],
                          reindex=True)


def test_cold_start_drop_warns_and_is_optional():
    users = [0, 0, 0, 1, 1, 2]
    items = [0, 1, 2, 0, 1, 2]
    split = [0, 1, 2, 1, 2, 0]  # user 1 has no training interaction
    with pytest.warns(UserWarning, match=r'dropped 2 held-out .*\(1 valid, '
                      r'1 test\) of 1 cold-start user'):
        data = from_interactions(users, items, split)
    assert split_sizes(data) == [2, 1, 1]
    assert data['user'].num_nodes == 3
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        data = from_interactions(users, items, split, drop_cold_start=False)
    assert split_sizes(data) == [2, 2, 2]


# Bad input ###################################################################


def test_empty_input():
    with pytest.raises(ValueError, match=r'no interactions \(empty input\)'):
        from_interactions([], [])


def test_mismatched_lengths():
    with pytest.raises(ValueError, match="mismatched lengths.*'users' has 3 "
                       "entries.*'items' has 2"):
        from_interactions([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="'split' has 1 entries"):
        from_interactions([0, 1], [0, 1], [0])


@pytest.mark.parametrize('items, match', [
    ([0, 1.5, 2], r"argument 'items', row 1: 1.5 is not an integer id"),
    (np.array(['0', 'abc', '1'], dtype=object),
     r"argument 'items', row 1: 'abc' is not an integer id"),
    ([0, np.nan, 1], r"argument 'items', row 1: is missing"),
    ([0, 1, -3], r"argument 'items', row 2: id -3 is negative"),
])
def test_bad_item_ids(items, match):
    with pytest.raises(ValueError, match=match):
        from_interactions([0, 1, 2], items)


def test_integral_floats_and_numeric_strings_are_ids():
    data = from_interactions([0.0, 1.0], np.array(['2', '0'], dtype=object))
    assert torch.equal(edges(data), torch.tensor([[0, 1], [2, 0]]))


def test_ids_out_of_range():
    with pytest.raises(ValueError, match=r"argument 'users', row 2: id 5 is "
                       r'out of range, num_users is 5 \(ids must be < 5'):
        from_interactions([0, 1, 5], [0, 1, 2], num_users=5)
    with pytest.raises(ValueError, match=r"argument 'items', row 0: id 3 is "
                       r'out of range, num_items is 3'):
        from_interactions([0, 1], [3, 1], num_items=3)
    with pytest.raises(ValueError, match=r"row 1: id 4 is out of range, the "
                       r"features \('a'\) have 4 rows"):
        from_interactions([0, 1], [0, 4], features={'a': np.zeros((4, 2))})


@pytest.mark.parametrize('split, match', [
    ([0, 3, 0], r"argument 'split', row 1: unknown split label 3"),
    ([0, 'foo', 0], r"row 1: unknown split label 'foo'"),
    ([0, 0, -1], r'row 2: unknown split label -1'),
    ([0.0, 0.5, 1.0], r'row 1: unknown split label 0.5'),
    ([0, 0, None], r'row 2: split label is missing'),
])
def test_unknown_split_labels(split, match):
    with pytest.raises(ValueError, match=match):
        from_interactions([0, 1, 2], [0, 1, 2], split)


def test_duplicates_report_the_first_duplicate_rows():
    users = [0, 1, 2, 1, 0, 2, 2]
    items = [5, 3, 1, 4, 5, 1, 1]
    # (0, 5) repeats at rows 0/4, (2, 1) at rows 2/5/6: row 4 comes first.
    with pytest.raises(ValueError, match=r'duplicate interaction \(user 0, '
                       r'item 5\) at row 0 and row 4 \(3 duplicate row'):
        from_interactions(users, items)
    # Also across splits:
    with pytest.raises(ValueError, match=r'\(user 1, item 2\) at row 1 and '
                       r'row 2'):
        from_interactions([1, 1, 1], [1, 2, 2], [0, 0, 2])


def test_non_finite_features():
    x = np.zeros((3, 4), np.float32)
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"modality 'text' have a non-finite "
                       r'value \(nan\) at row 2, column 1'):
        from_interactions([0], [0], features={'image': np.zeros((3, 2)),
                                              'text': x})
    x = torch.zeros(3, 4, dtype=torch.float16)
    x[1, 3] = float('inf')
    with pytest.raises(ValueError, match=r"'image' have a non-finite value "
                       r'\(inf\) at row 1, column 3'):
        from_interactions([0], [0], features={'image': x})
    x = np.zeros((3, 4))
    x[0, 0] = 1e300
    with pytest.raises(ValueError, match=r'row 0, column 0 after conversion '
                       r'to float32'):
        from_interactions([0], [0], features={'image': x})


def test_feature_shapes():
    with pytest.raises(ValueError, match=r"'image' must be 2-D "
                       r'\[num_items, F\], got shape \(5,\)'):
        from_interactions([0], [0], features={'image': np.zeros(5)})
    with pytest.raises(ValueError, match=r"'image' have 4 rows but there are "
                       r'5 items \(num_items\)'):
        from_interactions([0], [0], features={'image': np.zeros((4, 2))},
                          num_items=5)
    with pytest.raises(ValueError, match=r"different numbers of feature rows "
                       r"\('a': 4, 'b': 5\)"):
        from_interactions([0], [0], features={'a': np.zeros((4, 2)),
                                              'b': np.zeros((5, 2))})
    with pytest.raises(ValueError, match='0 columns'):
        from_interactions([0], [0], features={'a': np.zeros((4, 0))})


def test_feature_types():
    with pytest.raises(TypeError, match='features must be a dict'):
        from_interactions([0], [0], features=[np.zeros((2, 2))])
    with pytest.raises(TypeError, match="'a' must be numeric"):
        from_interactions([0], [0],
                          features={'a': np.array([['x']], dtype=object)})
    with pytest.raises(ValueError, match='modality names must be non-empty'):
        from_interactions([0], [0], features={'': np.zeros((2, 2))})
    with pytest.raises(TypeError, match='items is required'):
        from_interactions([0, 1])


def test_check_data_detects_schema_violations():
    data = from_interactions([0, 1], [1, 0], features={'a': np.ones((2, 2))})
    check_data(data)
    data[RATES].val_edge_index = torch.tensor([[0], [7]])
    with pytest.raises(ValueError, match='val_edge_index holds ids out of '
                       'range'):
        check_data(data)
    data[RATES].val_edge_index = torch.empty(2, 0, dtype=torch.long)
    data['item'].x_a = torch.ones(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"x_a must be float32"):
        check_data(data)
