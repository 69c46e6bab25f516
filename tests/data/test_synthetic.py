import time

import numpy as np
import pytest
import torch

from pyg_brmrs.data import (
    RATES,
    check_data,
    make_synthetic,
    mmrec_split_sizes,
    modalities,
    split_sizes,
)


def dense(data, key, num_users, num_items):
    ei = data[RATES][key].numpy()
    out = np.zeros((num_users, num_items), dtype=bool)
    out[ei[0], ei[1]] = True
    return out


def recall_at_k(score, train, test, k=20):
    r"""Mean Recall@k over users with a test item, training items masked
    (naive numpy reference)."""
    score = np.where(train, -np.inf, score)
    top = np.argsort(-score, axis=1, kind='stable')[:, :k]
    hits = np.take_along_axis(test, top, axis=1).sum(1)
    n = test.sum(1)
    ok = n > 0
    return float((hits[ok] / n[ok]).mean())


def standardize(x):
    return (x - x.mean(0)) / x.std(0)


def profile_cosine(data, train, mods):
    x = np.concatenate([standardize(data['item'][f'x_{m}'].numpy())
                        for m in mods], axis=1)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    prof = train @ x / train.sum(1, keepdims=True)
    return prof @ x.T


def r_squared(x, y):
    r"""R^2 of the least-squares regression of y on [x, 1]."""
    x1 = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
    coef, *_ = np.linalg.lstsq(x1, y, rcond=None)
    res = y - x1 @ coef
    return 1 - (res**2).sum() / ((y - y.mean(0))**2).sum()


@pytest.fixture(scope='module')
def synthetic():
    return make_synthetic(return_latents=True)


def test_schema_shapes_and_dtypes(synthetic):
    data, lat = synthetic
    check_data(data)
    assert data['user'].num_nodes == 1000 and data['item'].num_nodes == 800
    assert modalities(data) == ['image', 'text']
    for m in ['image', 'text']:
        x = data['item'][f'x_{m}']
        assert x.shape == (800, 32) and x.dtype == torch.float32
        assert lat['item_unique'][m].shape == (800, 8)
        assert lat['user_unique'][m].shape == (1000, 8)
        assert lat['projection'][m].shape == (16, 32)
    assert lat['affinity'].shape == (1000, 800)
    assert lat['type_names'] == ['generic', 'unique:image', 'unique:text',
                                 'synergy']
    assert torch.bincount(lat['user_type']).tolist() == [400, 150, 150, 300]


def test_interactions_follow_the_model(synthetic):
    data, lat = synthetic
    train, val, test = (dense(data, k, 1000, 800) for k in
                        ('edge_index', 'val_edge_index', 'test_edge_index'))
    assert not (train & val).any() and not (train & test).any()
    n = train.sum(1) + val.sum(1) + test.sum(1)
    assert n.min() >= 5 and 13 < n.mean() < 17  # 5 + Poisson(10)
    # The split is MMRec's rule:
    sizes = mmrec_split_sizes(n)
    assert np.array_equal(val.sum(1), sizes[:, 1])
    assert np.array_equal(test.sum(1), sizes[:, 2])
    # Chosen items have a much higher affinity than the others:
    a = lat['affinity'].numpy()
    inter = train | val | test
    assert a[inter].mean() > a[~inter].mean() + 2.0
    # The affinity is the documented sum of terms:
    u, i = 3, 17
    expect = lat['user_shared'][u] @ lat['item_shared'][i] + \
        lat['user_collab'][u] @ lat['item_collab'][i] + lat['item_bias'][i]
    for m in ['image', 'text']:
        expect += lat['user_unique'][m][u] @ lat['item_unique'][m][i]
    assert torch.isclose(lat['affinity'][u, i], expect, atol=1e-4)


def test_features_see_only_their_own_unique_factor(synthetic):
    data, lat = synthetic
    x = {m: data['item'][f'x_{m}'].numpy() for m in ['image', 'text']}
    z = {m: lat['item_unique'][m].numpy() for m in ['image', 'text']}
    c = lat['item_shared'].numpy()
    assert r_squared(x['image'], z['image']) > 0.7
    assert r_squared(x['text'], z['text']) > 0.7
    assert r_squared(x['image'], c) > 0.7
    # 33 regressors on 800 items: chance level is about 0.04.
    assert r_squared(x['image'], z['text']) < 0.1
    assert r_squared(x['text'], z['image']) < 0.1
    assert r_squared(x['image'], lat['item_collab'].numpy()) < 0.1


def test_planted_signal_beats_popularity(synthetic):
    data, lat = synthetic
    train = dense(data, 'edge_index', 1000, 800)
    test = dense(data, 'test_edge_index', 1000, 800)
    pop = np.broadcast_to(train.sum(0).astype(float), train.shape)
    r_pop = recall_at_k(pop, train, test)
    r_true = recall_at_k(lat['affinity'].numpy(), train, test)
    r_cos = recall_at_k(profile_cosine(data, train, ['image', 'text']),
                        train, test)
    assert r_true > 3 * r_pop and r_true > 0.5
    assert r_cos > r_pop + 0.05


def test_unique_users_need_their_modality(synthetic):
    data, lat = synthetic
    train = dense(data, 'edge_index', 1000, 800)
    test = dense(data, 'test_edge_index', 1000, 800)
    img = profile_cosine(data, train, ['image'])
    txt = profile_cosine(data, train, ['text'])
    t = lat['user_type'].numpy()
    for k, (own, other) in enumerate([(img, txt), (txt, img)], start=1):
        mask = t == k
        r_own = recall_at_k(own[mask], train[mask], test[mask])
        r_other = recall_at_k(other[mask], train[mask], test[mask])
        assert r_own > 3 * r_other
    # Synergy users: the sum of both modalities beats each one alone.
    mask = t == 3
    both = profile_cosine(data, train, ['image', 'text'])
    r_both = recall_at_k(both[mask], train[mask], test[mask])
    for single in (img, txt):
        assert r_both > recall_at_k(single[mask], train[mask], test[mask])


def test_determinism():
    a = make_synthetic(200, 100, seed=3)
    b = make_synthetic(200, 100, seed=3)
    c = make_synthetic(200, 100, seed=4)
    for key in ('edge_index', 'val_edge_index', 'test_edge_index'):
        assert torch.equal(a[RATES][key], b[RATES][key])
    assert torch.equal(a['item'].x_image, b['item'].x_image)
    assert not torch.equal(a['item'].x_image, c['item'].x_image)
    assert a[RATES].edge_index.shape != c[RATES].edge_index.shape or \
        not torch.equal(a[RATES].edge_index, c[RATES].edge_index)


def test_three_modalities_and_options():
    data, lat = make_synthetic(300, 150, modalities=('image', 'text',
                                                     'audio'),
                               feature_dim={'image': 16, 'text': 8,
                                            'audio': 4},
                               unique_fraction=0.6, synergy_fraction=0.2,
                               return_latents=True)
    check_data(data)
    assert modalities(data) == ['audio', 'image', 'text']
    assert data['item'].x_audio.shape == (150, 4)
    assert lat['type_names'][-1] == 'synergy'
    assert torch.bincount(lat['user_type']).tolist() == [60, 60, 60, 60, 60]
    n_train, n_val, n_test = split_sizes(data)
    assert n_val >= 300 and n_test >= 300  # At least one each per user.
    x, z = data['item'].x_audio.numpy(), lat['item_unique']
    assert r_squared(x, z['image'].numpy()) < 0.15


def test_bad_arguments():
    with pytest.raises(ValueError, match='must be at most 1'):
        make_synthetic(unique_fraction=0.7, synergy_fraction=0.5)
    with pytest.raises(ValueError, match='modalities must be distinct'):
        make_synthetic(modalities=('a', 'a'))
    with pytest.raises(ValueError, match='min_interactions must be at '
                       'least 3'):
        make_synthetic(min_interactions=2)
    with pytest.raises(ValueError, match='feature_dim'):
        make_synthetic(feature_dim={'image': 4})
    with pytest.raises(ValueError, match='temperature'):
        make_synthetic(temperature=0)


def test_default_size_is_fast():
    make_synthetic(100, 50)  # warm-up
    t = time.perf_counter()
    make_synthetic()
    assert time.perf_counter() - t < 1.0
