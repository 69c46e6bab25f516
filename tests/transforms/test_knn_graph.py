r"""The modality kNN graphs of the baselines (binary: FREEDOM, DRAGON;
cosine-weighted: MGCN) against dense loop references."""
import math

import pytest
import torch

from pyg_brmrs.transforms import (
    cooccurrence_knn_graph,
    cosine_knn_graph,
    default_modality_weights,
    mixed_cosine_knn_graph,
)


def dense_graph(x, k, weighting, normalization='sym'):
    r"""The reference: the full cosine matrix, top-k per row (itself
    included), binary or cosine values, row-sum symmetric normalisation."""
    x = x.double()
    n = x.size(0)
    cos = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            cos[i, j] = (x[i] @ x[j]) / (x[i].norm() * x[j].norm())
    A = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        idx = cos[i].topk(k).indices
        A[i, idx] = 1.0 if weighting == 'binary' else cos[i, idx]
    if normalization == 'none':
        return A
    d = A.sum(1)
    inv = torch.where(d > 0, d.clamp(min=1e-300).pow(-0.5),
                      torch.zeros_like(d))  # d <= 0: weight 0 (not NaN)
    return inv[:, None] * A * inv[None]


def to_dense(ei, ew, n):
    S = torch.zeros(n, n, dtype=torch.float64)
    for e in range(ei.size(1)):
        S[ei[1, e], ei[0, e]] += float(ew[e])  # row = target (centre)
    return S


def features(n=13, f=5, seed=0):
    return torch.randn(n, f, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize('weighting', ['binary', 'cosine'])
@pytest.mark.parametrize('normalization', ['sym', 'none'])
@pytest.mark.parametrize('k', [1, 4, 13, 20])  # k >= n keeps every row
def test_cosine_knn_graph_matches_dense(weighting, normalization, k):
    x = features()
    ei, ew = cosine_knn_graph(x, k, weighting, normalization, chunk_size=4)
    want = dense_graph(x, min(k, 13), weighting, normalization)
    assert torch.allclose(to_dense(ei, ew, 13), want, atol=1e-6)
    # every row keeps min(k, n) neighbours, itself first (cos = 1)
    assert torch.equal(torch.bincount(ei[1], minlength=13),
                       torch.full((13, ), min(k, 13)))
    first = torch.cat([torch.tensor([0]),
                       torch.bincount(ei[1]).cumsum(0)[:-1]])
    assert torch.equal(ei[0, first], torch.arange(13))
    # chunking changes nothing
    ei2, ew2 = cosine_knn_graph(x, k, weighting, normalization,
                                chunk_size=1000)
    assert torch.equal(ei, ei2) and torch.allclose(ew, ew2)


def test_binary_weights_are_one_over_k_and_cosine_ones_differ():
    x = features(n=30)
    _, binary = cosine_knn_graph(x, 5, 'binary')
    assert torch.allclose(binary, torch.full_like(binary, 0.2))
    ei, cosine = cosine_knn_graph(x, 5, 'cosine')
    assert not torch.allclose(cosine, binary)
    # the diagonal of the cosine form is 1 / d_i (cos(x_i, x_i) = 1)
    loops = ei[0] == ei[1]
    row_sum = to_dense(*cosine_knn_graph(x, 5, 'cosine', 'none'),
                       30).sum(1)
    assert torch.allclose(cosine[loops].double(), 1 / row_sum[ei[1, loops]],
                          atol=1e-6)


def test_ties_break_by_the_smaller_index():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    ei, _ = cosine_knn_graph(x, 2, 'binary')
    # rows 0, 1, 2 are one direction: each keeps {0, 1} (itself among them
    # when it is 0 or 1; row 2 picks 0 and 1 over itself, all cos = 1)
    nbrs = {int(i): sorted(ei[0, ei[1] == i].tolist()) for i in range(4)}
    assert nbrs[0] == [0, 1] and nbrs[1] == [0, 1] and nbrs[2] == [0, 1]


def test_zero_rows_have_no_neighbours():
    x = features(n=8, f=3)
    x[2] = 0.0
    for weighting in ('binary', 'cosine'):
        ei, ew = cosine_knn_graph(x, 3, weighting)
        assert not (ei == 2).any()
        assert torch.isfinite(ew).all()
        assert torch.equal(torch.bincount(ei[1], minlength=8),
                           torch.tensor([3, 3, 0, 3, 3, 3, 3, 3]))


def test_non_positive_row_sums_give_zero_weights_not_nan():
    # row 0's kept cosines: 1 (itself) and two of -1 -> d_0 = -1
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])
    ei, ew = cosine_knn_graph(x, 3, 'cosine')
    assert torch.isfinite(ew).all()
    assert (ew[(ei[1] == 0) | (ei[0] == 0)] == 0).all()


def test_bad_arguments():
    x = features()
    with pytest.raises(ValueError, match='weighting'):
        cosine_knn_graph(x, 3, 'jaccard')
    with pytest.raises(ValueError, match='normalization'):
        cosine_knn_graph(x, 3, 'binary', 'rw')
    with pytest.raises(ValueError, match="'k'"):
        cosine_knn_graph(x, 0)
    with pytest.raises(ValueError, match="'x' must be a 2-D floating"):
        cosine_knn_graph(torch.arange(6).view(3, 2), 2)


@pytest.mark.parametrize('names,weights', [
    (('image', 'text'), None),
    (('image', 'text'), {'image': 0.3, 'text': 0.7}),
    (('audio', 'image', 'text'), None),
    (('text', ), None),
])
@pytest.mark.parametrize('weighting', ['binary', 'cosine'])
def test_mixed_graph_matches_dense(names, weights, weighting):
    xs = {m: features(f=3 + i, seed=i) for i, m in enumerate(names)}
    ei, ew = mixed_cosine_knn_graph(xs, 4, weights, weighting, chunk_size=5)
    w = weights or default_modality_weights(list(xs))
    want = sum(w[m] * dense_graph(x, 4, weighting) for m, x in xs.items())
    assert torch.allclose(to_dense(ei, ew, 13), want, atol=1e-6)
    if names == ('image', 'text') and weights is None:
        assert w == {'image': 0.1, 'text': 0.9}  # MMRec's mm_image_weight
    if len(names) == 3:
        assert all(math.isclose(v, 1 / 3) for v in w.values())
    key = ei[1] * 13 + ei[0]  # no duplicate pairs, sorted by target
    assert torch.equal(key, torch.unique(key))


def test_mixed_graph_zero_weight_and_bad_input():
    x, y = features(n=8, f=3), features(n=8, f=5, seed=1)
    ei, ew = cosine_knn_graph(x, 3)
    ei0, ew0 = mixed_cosine_knn_graph({'image': x, 'text': y}, 3,
                                      {'image': 1.0, 'text': 0.0})
    assert torch.equal(to_dense(ei0, ew0, 8), to_dense(ei, ew, 8))
    with pytest.raises(ValueError, match='same number of rows'):
        mixed_cosine_knn_graph({'image': x, 'text': y[:7]}, 3)
    with pytest.raises(ValueError, match='at least one modality'):
        mixed_cosine_knn_graph({}, 3)
    with pytest.raises(ValueError, match='modality_weights'):
        mixed_cosine_knn_graph({'image': x, 'text': y}, 3,
                               {'image': 0.5, 'text': 0.6})


def dense_cooccurrence(ei, U, I, k, rank):
    # rank(u, v): the tie order of candidate v in row u (smaller first)
    R = torch.zeros(U, I, dtype=torch.float64)
    R[ei[0], ei[1]] = 1.0
    C = R @ R.t()
    C.fill_diagonal_(0)
    W = torch.zeros(U, U, dtype=torch.float64)
    for u in range(U):
        cand = sorted((v for v in range(U) if C[u, v] > 0),
                      key=lambda v: (-C[u, v].item(), rank(u, v)))[:k]
        z = sum(math.exp(C[u, v].item()) for v in cand)
        for v in cand:
            W[u, v] = math.exp(C[u, v].item()) / z
    return W


@pytest.mark.parametrize('ties', ['index', 'random'])
@pytest.mark.parametrize('k', [1, 3, 50])  # 50 >= n: every candidate
def test_cooccurrence_graph_matches_dense(ties, k):
    gen = torch.Generator().manual_seed(k)
    U, I = 12, 6
    ei = torch.stack([torch.randint(U - 1, (30,), generator=gen),
                      torch.randint(I, (30,), generator=gen)])  # user 11:
    # no interaction, no neighbour
    if ties == 'index':
        def rank(u, v):
            return v
    else:  # the documented order: a seeded permutation, rotated per row
        g = torch.Generator().manual_seed(5)
        perm = torch.randperm(U, generator=g)
        shift = torch.randint(U, (U,), generator=g)

        def rank(u, v):
            return int(perm[(v + shift[u]) % U])
    out, w = cooccurrence_knn_graph(ei, U, I, k, ties=ties, seed=5)
    got = torch.zeros(U, U, dtype=torch.float64)
    got[out[1], out[0]] = w.double()
    torch.testing.assert_close(got, dense_cooccurrence(ei, U, I, k, rank),
                               atol=1e-6, rtol=0)
    assert not bool((out[1] == 11).any())


def test_cooccurrence_ties_random_spreads_index_does_not():
    # user 0 shares one item with each of users 1..8: eight candidates, all
    # with count 1, three kept
    U, I = 9, 8
    ei = torch.tensor([[0] * 8 + list(range(1, 9)),
                       list(range(8)) * 2])
    kept_index = set()
    picks = torch.zeros(U)
    for seed in range(400):
        out, _ = cooccurrence_knn_graph(ei, U, I, 3, ties='index', seed=seed)
        kept_index.add(tuple(sorted(out[0][out[1] == 0].tolist())))
        out, _ = cooccurrence_knn_graph(ei, U, I, 3, seed=seed)
        picks[out[0][out[1] == 0]] += 1
    assert kept_index == {(1, 2, 3)}  # the lowest ids win every tie
    share = picks[1:] / 400  # each tied candidate: 3/8 = 0.375
    assert float(share.min()) > 0.3 and float(share.max()) < 0.45
    with pytest.raises(ValueError, match="'ties'"):
        cooccurrence_knn_graph(ei, U, I, 3, ties='first')


def test_cooccurrence_random_ties_differ_between_rows():
    # users 0..7 each share one item with each of users 8..15 (item u for
    # user u): every count is 1, two of eight kept per row. One global tie
    # order would hand every row of users 0..7 the same two winners.
    U, I = 16, 8
    ei = torch.tensor([list(range(8)) + [v for v in range(8, 16)
                                         for _ in range(8)],
                       list(range(8)) + list(range(8)) * 8])
    winners = set()
    for seed in range(3):
        out, _ = cooccurrence_knn_graph(ei, U, I, 2, seed=seed)
        for u in range(8):
            kept = out[0][out[1] == u].tolist()
            assert len(kept) == 2 and all(8 <= v < 16 for v in kept)
            winners.update(kept)
        heads = {tuple(sorted(out[0][out[1] == u].tolist()))
                 for u in range(8)}
        assert len(heads) > 1  # not the same pair in every row
    assert winners == set(range(8, 16))


@pytest.mark.parametrize('shifted', [False, True])
@pytest.mark.parametrize('mode', ['jaccard', 'count'])
def test_cooccurrence_topk_tie_rank_orders_equal_scores(mode, shifted):
    from pyg_brmrs.transforms._cooccurrence import (
        binary_csr,
        cooccurrence_topk,
    )
    gen = torch.Generator().manual_seed(11)
    U, I, k = 14, 5, 4
    ei = torch.stack([torch.randint(U, (35,), generator=gen),
                      torch.randint(I, (35,), generator=gen)])
    A = binary_csr(ei[0], ei[1], (U, I))
    At = binary_csr(ei[1], ei[0], (I, U))
    rank = torch.randperm(U, generator=gen)
    shift = (torch.randint(U, (U,), generator=gen) if shifted
             else torch.zeros(U, dtype=torch.long))
    row, col, _ = cooccurrence_topk(A, At, k, mode, False, 1024,
                                    tie_rank=rank,
                                    tie_shift=shift if shifted else None)
    R = torch.zeros(U, I, dtype=torch.float64)
    R[ei[0], ei[1]] = 1.0
    C = R @ R.t()
    size = R.sum(1)
    for u in range(U):
        def score(v):
            c = C[u, v].item()
            return c / (size[u] + size[v] - c).item() if mode == 'jaccard' \
                else c
        cand = sorted((v for v in range(U) if v != u and C[u, v] > 0),
                      key=lambda v: (-score(v),
                                     int(rank[(v + shift[u]) % U])))[:k]
        assert col[row == u].tolist() == cand
    with pytest.raises(ValueError, match="'tie_shift' needs 'tie_rank'"):
        cooccurrence_topk(A, At, k, mode, False, 1024, tie_shift=shift)
