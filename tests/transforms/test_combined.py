r"""``HomogeneousKNNGraph(topk="combined")`` against a naive dense reference:
the top-k of the combined weight of Eq. 1 computed before normalisation."""
import math

import numpy as np
import pytest
import torch

from pyg_brmrs.data import ITEM_SIM, RATES, USER_SIM
from pyg_brmrs.transforms import HomogeneousKNNGraph, _combined
from pyg_brmrs.transforms import similarity as _similarity

from test_homogeneous_knn_graph import as_dict, assert_same, make_data


def reference_combined(data, node, k, alpha, betas, measure, norm, loop):
    r"""Dense float64 reference with Python loops over the rows."""
    num_users = data['user'].num_nodes
    num_items = data['item'].num_nodes
    ei = data[RATES].edge_index.numpy()
    R = np.zeros((num_users, num_items))
    R[ei[0], ei[1]] = 1.0
    M = R if node == 'user' else R.T
    n = M.shape[0]
    sets = [set(np.nonzero(M[i])[0]) for i in range(n)]
    E = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            inter = len(sets[i] & sets[j])
            if inter == 0:
                continue
            if measure == 'jaccard':
                o = inter / len(sets[i] | sets[j])
            elif measure == 'overlap':
                o = inter / min(len(sets[i]), len(sets[j]))
            else:
                o = inter
            E[i, j] += alpha * o
    for m, beta in betas.items():
        if beta == 0 or alpha == 1:
            continue
        X = data['item'][f'x_{m}'].numpy().astype(np.float64)
        V = np.zeros((n, X.shape[1]))
        for i in range(n):
            if node == 'user':
                if sets[i]:
                    V[i] = X[sorted(sets[i])].mean(axis=0)
            else:
                V[i] = X[i]
        nrm = np.linalg.norm(V, axis=1)
        for i in range(n):
            for j in range(n):
                if nrm[i] > 0 and nrm[j] > 0:
                    E[i, j] += (1 - alpha) * beta * (V[i] @ V[j]) / (
                        nrm[i] * nrm[j])
    lists = {}
    for i in range(n):
        cand = [j for j in range(n) if (loop or j != i) and E[i, j] > 0]
        lists[i] = sorted(cand, key=lambda j: (-E[i, j], j))[:k]
    deg = {i: len(lst) for i, lst in lists.items()}
    out = {}
    for i, lst in lists.items():
        for j in lst:
            w = E[i, j]
            if norm == 'sym':
                w = w / math.sqrt(deg[i] * deg[j])
            out[(i, j)] = w
    return out


def run_combined(data, *, k_item, k_user, alpha, betas_item, betas_user,
                 mode, norm, loop, chunk):
    out = HomogeneousKNNGraph(
        k_item=k_item, k_user=k_user, alpha_item=alpha, alpha_user=alpha,
        modality_weights_item=betas_item, modality_weights_user=betas_user,
        cooccurrence=mode, normalization=norm, loop=loop, chunk_size=chunk,
        topk='combined')(data)
    mods = sorted(k[2:] for k in data['item'].keys() if k.startswith('x_'))
    equal = {m: 1 / len(mods) for m in mods}
    for node, edge_type, k, betas in [('item', ITEM_SIM, k_item, betas_item),
                                      ('user', USER_SIM, k_user,
                                       betas_user)]:
        if k == 0:
            assert edge_type not in out.edge_types
            continue
        want = reference_combined(data, node, k, alpha, betas or equal,
                                  mode, norm, loop)
        got = as_dict(out[edge_type])
        assert_same(got, want)
        # At most k kept per row:
        centres = out[edge_type].edge_index[1]
        assert int(torch.bincount(centres).max()) <= k
    return out


@pytest.mark.parametrize('mode', ['count', 'jaccard', 'overlap'])
@pytest.mark.parametrize('norm', ['sym', 'none'])
@pytest.mark.parametrize('alpha', [0.0, 0.3, 1.0])
@pytest.mark.parametrize('loop', [False, True])
def test_combined_matches_reference(mode, norm, alpha, loop):
    data = make_data(seed=1)
    for chunk, k_item, k_user, betas in [
        (1, 3, 4, {'m0': 0.5, 'm1': 0.25, 'm2': 0.25}),
        (3, 2, 5, {'m0': 0.7, 'm2': 0.3}),
        (1000, 4, 3, None),
    ]:
        run_combined(data, k_item=k_item, k_user=k_user, alpha=alpha,
                     betas_item=betas, betas_user={'m1': 0.2, 'm2': 0.8},
                     mode=mode, norm=norm, loop=loop, chunk=chunk)


@pytest.mark.parametrize('seed', range(6))
def test_combined_matches_reference_random_graphs(seed):
    rng = np.random.default_rng(200 + seed)
    data = make_data(seed=200 + seed, num_users=int(rng.integers(8, 30)),
                     num_items=int(rng.integers(8, 25)), dims=(6, 3),
                     density=float(rng.uniform(0.1, 0.5)), ties=seed % 2 == 0)
    run_combined(data, k_item=int(rng.integers(1, 30)),
                 k_user=int(rng.integers(1, 40)),
                 alpha=float(rng.uniform(0.05, 0.95)),
                 betas_item={'m0': 0.4, 'm1': 0.6},
                 betas_user={'m0': 0.2, 'm1': 0.8},
                 mode=['count', 'jaccard', 'overlap'][seed % 3], norm='sym',
                 loop=bool(seed % 3 == 0), chunk=int(rng.integers(1, 10)))


@pytest.mark.parametrize('factored', [False, True])
def test_combined_user_profile_paths(monkeypatch, factored):
    # Both ways of computing the profile cosines (materialised profiles or
    # the factored product) give the reference graph.
    monkeypatch.setattr(_similarity, 'SPARSE_COST',
                        -10**9 if factored else 10**9)
    monkeypatch.setattr(_combined, 'SPARSE_COST',
                        -10**9 if factored else 10**9)
    data = make_data(seed=11, num_users=25, num_items=12, grid=16)
    for loop, chunk, k in [(False, 1, 3), (True, 4, 5), (False, None, 40)]:
        run_combined(data, k_item=0, k_user=k, alpha=0.25, betas_item=None,
                     betas_user={'m0': 0.3, 'm1': 0.3, 'm2': 0.4},
                     mode='jaccard', norm='sym', loop=loop, chunk=chunk)


def test_combined_differs_from_per_part_and_keeps_k():
    # The union of per-part lists holds up to (1 + M) k entries per row; the
    # combined top-k holds at most k, and the two edge sets differ.
    data = make_data(seed=3, num_users=30, num_items=25, density=0.3)
    kw = dict(k_item=3, k_user=4, alpha_item=0.5, alpha_user=0.5,
              cooccurrence='jaccard')
    per_part = HomogeneousKNNGraph(**kw)(data.clone())
    combined = HomogeneousKNNGraph(**kw, topk='combined')(data.clone())
    for et, k in [(ITEM_SIM, 3), (USER_SIM, 4)]:
        deg_pp = torch.bincount(per_part[et].edge_index[1])
        deg_c = torch.bincount(combined[et].edge_index[1])
        assert int(deg_c.max()) <= k < int(deg_pp.max())
        assert set(as_dict(per_part[et])) != set(as_dict(combined[et]))


def test_combined_ignores_held_out_edges():
    data = make_data(seed=4)
    kw = dict(k_item=3, k_user=4, topk='combined', cooccurrence='jaccard')
    a = HomogeneousKNNGraph(**kw)(data.clone())
    moved = data.clone()
    store = moved[RATES]
    store.val_edge_index = torch.flip(store.val_edge_index, [1])
    store.test_edge_index = torch.zeros_like(store.test_edge_index)
    b = HomogeneousKNNGraph(**kw)(moved)
    for et in (ITEM_SIM, USER_SIM):
        assert torch.equal(a[et].edge_index, b[et].edge_index)
        assert torch.equal(a[et].edge_weight, b[et].edge_weight)


def test_invalid_topk():
    with pytest.raises(ValueError, match="'topk' must be one of"):
        HomogeneousKNNGraph(topk='union')
    assert "topk='combined'" in repr(HomogeneousKNNGraph(topk='combined'))
