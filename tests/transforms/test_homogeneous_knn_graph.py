import itertools
import math

import numpy as np
import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.nn import MessagePassing

from pyg_brmrs.data import ITEM_SIM, RATES, USER_SIM
from pyg_brmrs.transforms import HomogeneousKNNGraph
from pyg_brmrs.transforms import similarity as _similarity
from pyg_brmrs.transforms._topk import row_topk


# --------------------------------------------------------------------------
# Random test graphs
# --------------------------------------------------------------------------
def make_data(seed=0, num_users=19, num_items=14, dims=(5, 3, 4),
              density=0.25, ties=True, grid=1000):
    r"""A small random HeteroData with the awkward cases built in:
    an isolated user (last) and an isolated item (last), two users with the
    same item set, duplicate training edges, duplicate feature rows, an
    all-zero feature row, a user whose only item has a zero feature row in
    one modality, and validation/test edges that must be ignored."""
    rng = np.random.default_rng(seed)
    inter = rng.random((num_users, num_items)) < density
    inter[-1, :] = False  # user without training items
    inter[:, -1] = False  # item without training users
    if ties:
        inter[1] = inter[0]  # equal co-occurrence counts
        inter[2] = False
        inter[2, 4] = True  # only item 4, whose 'm1' feature row is zero
    users, items = np.nonzero(inter)
    dup = rng.choice(len(users), size=3)
    users = np.concatenate([users, users[dup]])  # duplicate interactions
    items = np.concatenate([items, items[dup]])

    data = HeteroData()
    data['user'].num_nodes = num_users
    data['item'].num_nodes = num_items
    data[RATES].edge_index = torch.tensor(np.stack([users, items]))
    held = torch.stack([torch.randint(0, num_users, (30, )),
                        torch.randint(0, num_items, (30, ))])
    data[RATES].val_edge_index = held[:, :15]
    data[RATES].test_edge_index = held[:, 15:]
    for t, dim in enumerate(dims):
        # Multiples of 1/8: sums of them are exact in float32 and float64, so
        # users whose items have the same features (in any order) get
        # bitwise equal profiles, i.e. exact ties, in both computations.
        x = (rng.integers(-grid, grid, (num_items, dim)) / 8).astype(
            np.float32)
        if ties and num_items >= 10:
            x[5] = x[3]  # exact similarity ties
            x[7] = x[3]
            x[9] = x[8]
        if t == 1:
            x[4] = 0.0  # no direction: no edges, never a neighbour
        data['item'][f'x_m{t}'] = torch.from_numpy(x)
    return data


# --------------------------------------------------------------------------
# Naive dense reference (numpy float64, Python loops over rows)
# --------------------------------------------------------------------------
def reference(data, node, k, alpha, betas, mode, norm, loop):
    num_users = data['user'].num_nodes
    num_items = data['item'].num_nodes
    ei = data[RATES].edge_index.numpy()
    R = np.zeros((num_users, num_items))
    R[ei[0], ei[1]] = 1.0  # duplicates count once
    M = R if node == 'user' else R.T  # rows: the nodes of the graph
    n = M.shape[0]
    sets = [set(np.nonzero(M[i])[0]) for i in range(n)]
    out = {}

    def add(i, j, w):
        out[(i, j)] = out.get((i, j), 0.0) + w

    if alpha > 0:
        C = np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                C[i, j] = len(sets[i] & sets[j])
        for i in range(n):
            cand = [j for j in range(n) if C[i, j] > 0 and (loop or j != i)]
            if mode == 'jaccard':
                score = {j: C[i, j] / len(sets[i] | sets[j]) for j in cand}
            elif mode == 'overlap':
                score = {j: C[i, j] / min(len(sets[i]), len(sets[j]))
                         for j in cand}
            else:
                score = {j: C[i, j] for j in cand}
            kept = sorted(cand, key=lambda j: (-score[j], j))[:k]
            if not kept:
                continue
            s = np.array([score[j] for j in kept])
            if mode == 'softmax':
                w = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
            else:
                w = s / s.sum()
            for j, wj in zip(kept, w):
                add(i, j, alpha * wj)

    if alpha < 1:
        for m, beta in betas.items():
            if beta == 0:
                continue
            X = data['item'][f'x_{m}'].numpy().astype(np.float64)
            if node == 'user':
                V = np.zeros((n, X.shape[1]))
                for u in range(n):
                    if sets[u]:
                        V[u] = X[sorted(sets[u])].mean(axis=0)
            else:
                V = X
            nrm = np.linalg.norm(V, axis=1)
            valid = [i for i in range(n) if nrm[i] > 0]
            lists = {}
            for i in valid:
                cos = {j: float(V[i] @ V[j] / (nrm[i] * nrm[j]))
                       for j in valid if loop or j != i}
                lists[i] = sorted(cos, key=lambda j: (-cos[j], j))[:k]
                lists[i] = [(j, cos[j]) for j in lists[i]]
            deg = {i: len(lst) for i, lst in lists.items()}
            for i, lst in lists.items():
                for j, c in lst:
                    w = c / math.sqrt(deg[i] * deg[j]) if norm == 'sym' else c
                    add(i, j, (1 - alpha) * beta * w)
    return out


def as_dict(store):
    ei, w = store.edge_index, store.edge_weight
    assert ei.dtype == torch.long and ei.dim() == 2 and ei.size(0) == 2
    assert w.dtype == torch.float32 and w.shape == (ei.size(1), )
    # Sorted by (target, source), no duplicates:
    key = ei[1] * 10**6 + ei[0]
    assert bool((key[1:] > key[:-1]).all())
    return {(int(i), int(j)): float(v) for j, i, v in
            zip(ei[0], ei[1], w)}


def assert_same(got, want):
    assert set(got) == set(want), (sorted(set(got) ^ set(want)))[:10]
    for key, w in want.items():
        assert got[key] == pytest.approx(w, abs=1e-5, rel=1e-5), key


def run_and_compare(data, *, k_item, k_user, alpha_item, alpha_user,
                    betas_item, betas_user, mode, norm, loop, chunk):
    transform = HomogeneousKNNGraph(
        k_item=k_item, k_user=k_user, alpha_item=alpha_item,
        alpha_user=alpha_user, modality_weights_item=betas_item,
        modality_weights_user=betas_user, cooccurrence=mode,
        normalization=norm, loop=loop, chunk_size=chunk)
    out = transform(data)
    mods = sorted(k[2:] for k in data['item'].keys() if k.startswith('x_'))
    equal = {m: 1 / len(mods) for m in mods}
    for node, edge_type, k, alpha, betas in [
        ('item', ITEM_SIM, k_item, alpha_item, betas_item),
        ('user', USER_SIM, k_user, alpha_user, betas_user),
    ]:
        if k == 0:
            assert edge_type not in out.edge_types
            continue
        want = reference(data, node, k, alpha, betas or equal, mode, norm,
                         loop)
        assert_same(as_dict(out[edge_type]), want)
    return out


# --------------------------------------------------------------------------
# Exactness against the reference
# --------------------------------------------------------------------------
@pytest.mark.parametrize('mode', ['softmax', 'count', 'jaccard', 'overlap'])
@pytest.mark.parametrize('norm', ['sym', 'none'])
@pytest.mark.parametrize('alpha', [0.0, 0.3, 1.0])
@pytest.mark.parametrize('loop', [False, True])
def test_matches_reference(mode, norm, alpha, loop):
    data = make_data(seed=1)
    for chunk, k_item, k_user, betas in [
        (1, 3, 4, {'m0': 0.5, 'm1': 0.25, 'm2': 0.25}),  # 3 modalities
        (3, 2, 5, {'m0': 0.7, 'm2': 0.3}),  # 2 of 3 modalities
        (1000, 4, 3, None),  # equal weights, one chunk
    ]:
        run_and_compare(data, k_item=k_item, k_user=k_user, alpha_item=alpha,
                        alpha_user=alpha, betas_item=betas,
                        betas_user={'m1': 0.2, 'm2': 0.8}, mode=mode,
                        norm=norm, loop=loop, chunk=chunk)


@pytest.mark.parametrize('seed', range(4))
def test_matches_reference_random_graphs(seed):
    rng = np.random.default_rng(100 + seed)
    data = make_data(seed=100 + seed, num_users=int(rng.integers(8, 30)),
                     num_items=int(rng.integers(8, 25)), dims=(6, 3),
                     density=float(rng.uniform(0.1, 0.5)), ties=seed % 2 == 0)
    for mode, norm, loop in itertools.product(['softmax', 'jaccard',
                                               'overlap'],
                                              ['sym', 'none'], [False, True]):
        run_and_compare(data, k_item=int(rng.integers(1, 6)),
                        k_user=int(rng.integers(1, 8)), alpha_item=0.2,
                        alpha_user=0.4, betas_item={'m0': 0.0, 'm1': 1.0},
                        betas_user={'m0': 0.2, 'm1': 0.8}, mode=mode,
                        norm=norm, loop=loop,
                        chunk=int(rng.integers(1, 10)))


@pytest.mark.parametrize('loop', [False, True])
@pytest.mark.parametrize('chunk', [1, 3, None])
def test_k_at_least_n(loop, chunk):
    # Every other (non-zero) node is kept; co-occurrence keeps every
    # co-occurring node.
    data = make_data(seed=2, num_users=9, num_items=10)
    out = run_and_compare(data, k_item=50, k_user=9, alpha_item=0.3,
                          alpha_user=0.5, betas_item=None, betas_user=None,
                          mode='count', norm='sym', loop=loop, chunk=chunk)
    ei = out[ITEM_SIM].edge_index
    # Item 9 (no training user) keeps every other item as a similarity
    # neighbour (item 4, zero in 'm1', comes from 'm0' and 'm2').
    assert int((ei[1] == 9).sum()) == 9 + int(loop)


@pytest.mark.parametrize('factored', [False, True])
def test_user_profile_paths(monkeypatch, factored):
    # Users' profile similarities: direct (materialised profiles) and
    # factored ((P X^T) A^T) products give the same graph. Small feature
    # values keep every sum exact in float32, so exact ties stay exact.
    monkeypatch.setattr(_similarity, 'SPARSE_COST',
                        -10**9 if factored else 10**9)
    data = make_data(seed=11, num_users=25, num_items=12, grid=16)
    for loop, chunk, k in [(False, 1, 3), (True, 4, 5), (False, None, 40)]:
        run_and_compare(data, k_item=0, k_user=k, alpha_item=0.0,
                        alpha_user=0.25, betas_item=None,
                        betas_user={'m0': 0.3, 'm1': 0.3, 'm2': 0.4},
                        mode='count', norm='sym', loop=loop, chunk=chunk)


def test_exact_ties_break_by_smaller_index():
    # 3 distinct directions repeated: almost every comparison is a tie.
    base = torch.tensor([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.1]])
    which = torch.tensor([0, 1, 0, 2, 1, 0, 2, 1, 0, 0, 1])
    data = HeteroData()
    data['user'].num_nodes = 4
    data['item'].num_nodes = len(which)
    data['item'].x_a = base[which]
    data[RATES].edge_index = torch.tensor([[0, 0, 1, 1, 2, 3, 3],
                                           [0, 2, 5, 8, 9, 0, 9]])
    for chunk in [1, 3, 100]:
        out = HomogeneousKNNGraph(k_item=3, k_user=0, alpha_item=0.0,
                                  normalization='none',
                                  chunk_size=chunk)(data)
        got = as_dict(out[ITEM_SIM])
        # item 0 has the direction of items 2, 5, 8, 9: keeps 2, 5, 8.
        assert sorted(j for (i, j) in got if i == 0) == [2, 5, 8]
        # item 3 (direction 2) has only item 6 with the same direction; next
        # comes direction 1 (cos = -0.52, items 1, 4, 7, 10) before
        # direction 0 (cos = -0.995): the smallest indices 1, 4.
        assert sorted(j for (i, j) in got if i == 3) == [1, 4, 6]
        want = reference(data, 'item', 3, 0.0, {'a': 1.0}, 'count', 'none',
                         False)
        assert_same(got, want)


def test_equal_counts_break_by_smaller_index():
    # Users 1..6 all share exactly one item with user 0.
    data = HeteroData()
    data['user'].num_nodes = 7
    data['item'].num_nodes = 3
    data[RATES].edge_index = torch.tensor([[0, 0, 6, 5, 4, 3, 2, 1],
                                           [0, 1, 1, 0, 1, 0, 1, 0]])
    for chunk in [1, 2, 7]:
        out = HomogeneousKNNGraph(k_item=0, k_user=3, alpha_user=1.0,
                                  cooccurrence='count',
                                  chunk_size=chunk)(data)
        got = as_dict(out[USER_SIM])
        assert sorted(j for (i, j) in got if i == 0) == [1, 2, 3]
        assert got[(0, 1)] == pytest.approx(1 / 3)
        # user 1 shares item 0 with users 0, 3, 5 (1 each)
        assert sorted(j for (i, j) in got if i == 1) == [0, 3, 5]


def test_isolated_nodes_and_zero_rows():
    data = make_data(seed=3)
    out = HomogeneousKNNGraph(k_item=3, k_user=3, alpha_item=0.5,
                              alpha_user=0.5,
                              modality_weights_item={'m1': 1.0},
                              modality_weights_user={'m1': 1.0})(data)
    item_ei, user_ei = out[ITEM_SIM].edge_index, out[USER_SIM].edge_index
    # Item 4 has a zero 'm1' row: no similarity edge into or out of it; it
    # may only have co-occurrence edges, to items sharing a training user.
    num_items = data['item'].num_nodes
    R = torch.zeros(data['user'].num_nodes, num_items)
    R[data[RATES].edge_index[0], data[RATES].edge_index[1]] = 1
    co = (R.t() @ R) > 0
    for j, i in item_ei.t().tolist():
        if 4 in (i, j):
            assert bool(co[i, j]) and i != j
    # The isolated item (last) has no co-occurrence edge, only similarity:
    last = num_items - 1
    assert int((item_ei[1] == last).sum()) == 3
    # The isolated user (last) is isolated in the user graph as well.
    assert not bool((user_ei == data['user'].num_nodes - 1).any())
    # User 2 only has item 4, whose 'm1' row is zero: zero profile, so only
    # co-occurrence edges (with users who also rated item 4).
    for j, i in user_ei.t().tolist():
        if 2 in (i, j):
            assert bool(R[i, 4] and R[j, 4])


def test_ignores_held_out_edges():
    data = make_data(seed=4)
    t = HomogeneousKNNGraph(k_item=3, k_user=4)
    a = t(data)
    del data[RATES].val_edge_index
    data[RATES].test_edge_index = torch.zeros(2, 0, dtype=torch.long)
    b = t(data)
    for et in (ITEM_SIM, USER_SIM):
        assert torch.equal(a[et].edge_index, b[et].edge_index)
        assert torch.equal(a[et].edge_weight, b[et].edge_weight)


class WeightedSum(MessagePassing):
    def __init__(self):
        super().__init__(aggr='add')  # flow='source_to_target'

    def forward(self, x, edge_index, edge_weight):
        return self.propagate(edge_index, x=x, edge_weight=edge_weight)

    def message(self, x_j, edge_weight):
        return edge_weight.view(-1, 1) * x_j


def test_message_passing_convention():
    # out_i = sum_j e_ij x_j over i's own list (edge_index[1] = centre).
    data = make_data(seed=5)
    out = HomogeneousKNNGraph(k_item=3, k_user=2)(data)
    ei, w = out[ITEM_SIM].edge_index, out[ITEM_SIM].edge_weight
    n = data['item'].num_nodes
    W = torch.zeros(n, n)
    for (i, j), v in as_dict(out[ITEM_SIM]).items():
        W[i, j] = v
    x = torch.randn(n, 5)
    h = WeightedSum()(x, ei, w)
    assert torch.allclose(h, W @ x, atol=1e-6)
    # Every node has at most k per part in its own list:
    assert int(torch.bincount(ei[1]).max()) <= 3 * 4


def test_skip_graphs_and_chunk_invariance():
    data = make_data(seed=6)
    out = HomogeneousKNNGraph(k_item=0, k_user=3)(data)
    assert ITEM_SIM not in out.edge_types and USER_SIM in out.edge_types
    out = HomogeneousKNNGraph(k_item=3, k_user=0)(data)
    assert USER_SIM not in out.edge_types and ITEM_SIM in out.edge_types
    assert ITEM_SIM not in data.edge_types  # the input is not modified
    ref = HomogeneousKNNGraph(k_item=4, k_user=5, chunk_size=None)(data)
    for chunk in [1, 2, 5, 64]:
        got = HomogeneousKNNGraph(k_item=4, k_user=5, chunk_size=chunk)(data)
        for et in (ITEM_SIM, USER_SIM):
            assert torch.equal(got[et].edge_index, ref[et].edge_index)
            assert torch.allclose(got[et].edge_weight, ref[et].edge_weight)


def test_rearm_special_case():
    # alpha = 0, one modality, loop=True: REARM's get_knn_adj_mat, i.e. the
    # top-k cosine (self included) divided by k.
    torch.manual_seed(0)
    x = torch.randn(12, 6)
    data = HeteroData()
    data['user'].num_nodes = 2
    data['item'].num_nodes = 12
    data['item'].x_t = x
    data[RATES].edge_index = torch.tensor([[0, 1], [0, 1]])
    out = HomogeneousKNNGraph(k_item=4, k_user=0, alpha_item=0.0,
                              loop=True)(data)
    xn = torch.nn.functional.normalize(x, dim=1)
    val, ind = torch.topk(xn @ xn.t(), 4, dim=-1)
    dense = torch.zeros(12, 12).scatter_(1, ind, val) / 4
    got = torch.zeros(12, 12)
    ei = out[ITEM_SIM].edge_index
    got[ei[1], ei[0]] = out[ITEM_SIM].edge_weight
    assert torch.allclose(got, dense, atol=1e-6)


# --------------------------------------------------------------------------
# The deterministic top-k helper
# --------------------------------------------------------------------------
@pytest.mark.parametrize('with_index', [False, True])
def test_row_topk(with_index):
    gen = torch.Generator().manual_seed(0)
    value = torch.randint(0, 4, (40, 13), generator=gen).float()
    value[value == 0] = float('-inf')  # absent entries
    index = None
    if with_index:
        index = torch.stack([torch.randperm(50, generator=gen)[:13]
                             for _ in range(40)])
    for k in [1, 3, 7, 13, 20]:
        val, idx = row_topk(value, k, index)
        assert val.shape == idx.shape == (40, min(k, 13))
        for r in range(40):
            cols = list(range(13)) if index is None else index[r].tolist()
            ent = sorted((-float(v), c) for v, c in zip(value[r], cols)
                         if math.isfinite(float(v)))[:k]
            n = len(ent)
            assert idx[r, :n].tolist() == [c for _, c in ent]
            assert val[r, :n].tolist() == [-v for v, _ in ent]
            assert bool(torch.isinf(val[r, n:]).all())


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------
@pytest.mark.parametrize('kwargs, error, match', [
    (dict(k_item=-1), ValueError, 'k_item'),
    (dict(k_user=2.5), TypeError, 'k_user'),
    (dict(k_user=True), TypeError, 'k_user'),
    (dict(alpha_item=1.5), ValueError, 'alpha_item'),
    (dict(alpha_user=-0.1), ValueError, 'alpha_user'),
    (dict(alpha_user='0.4'), TypeError, 'alpha_user'),
    (dict(modality_weights_item={'a': -0.5, 'b': 1.5}), ValueError,
     'non-negative'),
    (dict(modality_weights_user={'a': 0.5, 'b': 0.4}), ValueError,
     'sum to 1'),
    (dict(modality_weights_user={}), ValueError, 'empty'),
    (dict(modality_weights_item=[0.5, 0.5]), TypeError, 'mapping'),
    (dict(cooccurrence='cosine'), ValueError, 'cooccurrence'),
    (dict(normalization='rw'), ValueError, 'normalization'),
    (dict(loop=1), TypeError, 'loop'),
    (dict(chunk_size=0), ValueError, 'chunk_size'),
])
def test_invalid_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        HomogeneousKNNGraph(**kwargs)


def test_invalid_data():
    data = make_data(seed=7, dims=(4, 3))
    with pytest.raises(ValueError, match=r"unknown modalities \['image'\].*"
                       r"available modalities: \['m0', 'm1'\]"):
        HomogeneousKNNGraph(modality_weights_item={'image': 1.0})(data)

    no_feat = make_data(seed=7, dims=())
    with pytest.raises(ValueError, match='needs item features'):
        HomogeneousKNNGraph()(no_feat)
    # co-occurrence only needs no features:
    out = HomogeneousKNNGraph(alpha_item=1.0, alpha_user=1.0)(no_feat)
    assert out[ITEM_SIM].edge_index.size(1) > 0

    bad = make_data(seed=7, dims=(4, ))
    bad['item'].x_m0 = bad['item'].x_m0[:-1]
    with pytest.raises(ValueError, match=r'x_m0 must have shape'):
        HomogeneousKNNGraph()(bad)
    bad['item'].x_m0 = torch.full((14, 4), float('nan'))
    with pytest.raises(ValueError, match='NaN'):
        HomogeneousKNNGraph()(bad)

    no_edges = make_data(seed=7)
    del no_edges[RATES].edge_index
    with pytest.raises(ValueError, match='training edges'):
        HomogeneousKNNGraph()(no_edges)
    empty = make_data(seed=7)
    empty[RATES].edge_index = torch.zeros(2, 0, dtype=torch.long)
    with pytest.raises(ValueError, match='no training edges'):
        HomogeneousKNNGraph()(empty)
    out_of_range = make_data(seed=7)
    out_of_range[RATES].edge_index[1, 0] = 99
    with pytest.raises(ValueError, match='out of range'):
        HomogeneousKNNGraph()(out_of_range)


def test_repr():
    t = HomogeneousKNNGraph(k_item=5, modality_weights_user={'text': 1.0},
                            cooccurrence='jaccard', chunk_size=None)
    assert repr(t) == (
        "HomogeneousKNNGraph(k_item=5, k_user=40, alpha_item=0.2, "
        "alpha_user=0.4, modality_weights_item=None, "
        "modality_weights_user={'text': 1.0}, cooccurrence='jaccard', "
        "normalization='sym', loop=False, chunk_size=None, "
        "topk='per_part')")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_matches_cpu():
    data = make_data(seed=8)
    t = HomogeneousKNNGraph(k_item=3, k_user=4, chunk_size=5)
    cpu = t(data)
    gpu = t(data.to('cuda'))
    for et in (ITEM_SIM, USER_SIM):
        assert gpu[et].edge_index.is_cuda
        assert torch.equal(gpu[et].edge_index.cpu(), cpu[et].edge_index)
        assert torch.allclose(gpu[et].edge_weight.cpu(), cpu[et].edge_weight,
                              atol=1e-6)
