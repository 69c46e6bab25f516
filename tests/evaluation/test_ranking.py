import math

import pytest
import torch

from pyg_brmrs.evaluation import (
    RankingEvaluator,
    full_ranking_metrics,
    topk_items,
)

METRICS = ('recall', 'ndcg', 'precision', 'map', 'hit')


# Naive reference: a Python loop over users with an explicit sorted ranking.

def _sets(edge_index):
    out = {}
    if edge_index is None:
        return out
    for u, i in edge_index.t().tolist():
        out.setdefault(u, set()).add(i)
    return out


def _metrics_of_ranking(ranked, pos, k):
    hits = [1 if i in pos else 0 for i in ranked[:k]]
    hits += [0] * (k - len(hits))
    n_hit = sum(hits)
    n_rel = min(len(pos), k)
    dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
    idcg = sum(1 / math.log2(j + 2) for j in range(n_rel))
    ap, run = 0.0, 0
    for j, h in enumerate(hits):
        run += h
        if h:
            ap += run / (j + 1)
    return {
        'recall': n_hit / len(pos),
        'precision': n_hit / k,
        'ndcg': dcg / idcg,
        'map': ap / n_rel,
        'hit': float(n_hit > 0),
    }


def reference(user_emb, item_emb, train, held_out, ks, exclude=None,
              ties='index'):
    r"""Per-user metrics by brute force. ``ties``: ``'index'`` breaks ties by
    item id, ``'best'`` / ``'worst'`` puts held-out items first / last among
    equal scores."""
    scores = (user_emb.double() @ item_emb.double().t()).tolist()
    masked = _sets(train)
    for u, s in _sets(exclude).items():
        masked.setdefault(u, set()).update(s)
    pos = _sets(held_out)
    out = {}
    for u in sorted(pos):
        cand = [i for i in range(item_emb.size(0))
                if i not in masked.get(u, set())]

        def key(i):
            tie = {'index': 0, 'best': -(i in pos[u]),
                   'worst': int(i in pos[u])}[ties]
            return (-scores[u][i], tie, i)

        ranked = sorted(cand, key=key)
        out[u] = {}
        for k in ks:
            for name, value in _metrics_of_ranking(ranked, pos[u], k).items():
                out[u][f'{name}@{k}'] = value
    return out


def reference_mean(per_user):
    names = next(iter(per_user.values())).keys()
    return {n: sum(v[n] for v in per_user.values()) / len(per_user)
            for n in names}


def random_case(num_users=30, num_items=25, dim=8, seed=0):
    r"""Random float64 embeddings and interactions covering the edge cases:
    a user with more held-out items than K, users without held-out items, a
    user whose training items cover all but two items."""
    gen = torch.Generator().manual_seed(seed)
    user_emb = torch.randn(num_users, dim, generator=gen, dtype=torch.double)
    item_emb = torch.randn(num_items, dim, generator=gen, dtype=torch.double)
    train, held = [], []
    for u in range(num_users):
        perm = torch.randperm(num_items, generator=gen).tolist()
        if u == 0:  # many held-out items (more than K = 3 or 5)
            train += [(u, i) for i in perm[:3]]
            held += [(u, i) for i in perm[3:15]]
        elif u == 1:  # training covers almost every item
            train += [(u, i) for i in perm[:-2]]
            held += [(u, perm[-1])]
        elif u in (2, 3):  # no held-out item: must be skipped
            train += [(u, i) for i in perm[:4]]
        else:
            n_tr = int(torch.randint(1, 6, (1, ), generator=gen))
            n_he = int(torch.randint(1, 4, (1, ), generator=gen))
            train += [(u, i) for i in perm[:n_tr]]
            held += [(u, i) for i in perm[n_tr:n_tr + n_he]]
    train = torch.tensor(train).t()
    held = torch.tensor(held).t()
    return user_emb, item_emb, train, held


def assert_close_dict(out, expected, tol=1e-12):
    assert set(out) == set(expected)
    for key in expected:
        assert abs(out[key] - expected[key]) <= tol, (key, out[key],
                                                      expected[key])


@pytest.mark.parametrize('ks', [(1, 3, 5), (10, 20), (24, )])
def test_matches_naive_reference(ks):
    user_emb, item_emb, train, held = random_case()
    out = full_ranking_metrics(user_emb, item_emb, train, held, ks,
                               metrics=METRICS)
    expected = reference_mean(reference(user_emb, item_emb, train, held, ks))
    assert_close_dict(out, expected)
    assert list(out)[:len(ks)] == [f'recall@{k}' for k in sorted(ks)]
    assert all(isinstance(v, float) for v in out.values())


def test_default_keys_and_per_user():
    user_emb, item_emb, train, held = random_case(seed=1)
    out, per_user = full_ranking_metrics(user_emb, item_emb, train, held,
                                         return_per_user=True)
    assert list(out) == [f'{m}@{k}' for m in ('recall', 'ndcg', 'precision',
                                              'map') for k in (10, 20)]
    ref = reference(user_emb, item_emb, train, held, (10, 20))
    assert per_user['user'].tolist() == sorted(ref)
    for name in out:
        expected = torch.tensor([ref[u][name] for u in sorted(ref)],
                                dtype=torch.double)
        assert torch.allclose(per_user[name], expected, atol=1e-12)
        assert abs(per_user[name].mean().item() - out[name]) < 1e-12


def test_users_without_held_out_items_are_skipped():
    user_emb, item_emb, train, held = random_case(seed=2)
    out, per_user = full_ranking_metrics(user_emb, item_emb, train, held,
                                         (5, ), return_per_user=True)
    users = per_user['user'].tolist()
    assert 2 not in users and 3 not in users
    assert len(users) == held[0].unique().numel()
    # Not counted as zero: the mean is over the evaluated users only.
    ref = reference(user_emb, item_emb, train, held, (5, ))
    assert len(ref) == len(users)
    assert abs(out['recall@5'] -
               sum(r['recall@5'] for r in ref.values()) / len(ref)) < 1e-12


def test_k_larger_than_unmasked_items():
    # User 1 has only 2 unmasked items; K = 24 and K = 40 > num_items.
    user_emb, item_emb, train, held = random_case(seed=3)
    ks = (24, 40)
    out, per_user = full_ranking_metrics(user_emb, item_emb, train, held, ks,
                                         metrics=METRICS,
                                         return_per_user=True)
    expected = reference_mean(reference(user_emb, item_emb, train, held, ks))
    assert_close_dict(out, expected)
    # Every user's held-out items are unmasked, so recall is 1 at K >= #items:
    assert torch.allclose(per_user['recall@40'],
                          torch.ones_like(per_user['recall@40']))
    row = per_user['user'].tolist().index(1)
    assert per_user['precision@40'][row].item() == pytest.approx(1 / 40)


def test_masked_item_is_never_a_hit():
    # A held-out pair that is also a training pair is masked and cannot hit,
    # even when K covers every item.
    user_emb = torch.randn(2, 4, dtype=torch.double)
    item_emb = torch.randn(5, 4, dtype=torch.double)
    train = torch.tensor([[0, 0, 1], [1, 2, 3]])
    held = torch.tensor([[0, 0, 1], [1, 4, 0]])  # (0, 1) is also training
    out = full_ranking_metrics(user_emb, item_emb, train, held, (5, ),
                               metrics=('recall', ))
    assert out['recall@5'] == pytest.approx((0.5 + 1.0) / 2)


def test_exclude_edge_index():
    user_emb, item_emb, train, held = random_case(seed=4)
    gen = torch.Generator().manual_seed(0)
    # Extra pairs to mask (e.g. validation items when scoring test), not
    # overlapping the held-out pairs:
    extra = torch.stack([torch.randint(0, 30, (40, ), generator=gen),
                         torch.randint(0, 25, (40, ), generator=gen)])
    held_set = set(map(tuple, held.t().tolist()))
    keep = torch.tensor([tuple(p) not in held_set for p in extra.t().tolist()])
    extra = extra[:, keep]
    ks = (3, 10)
    out = full_ranking_metrics(user_emb, item_emb, train, held, ks,
                               metrics=METRICS, exclude_edge_index=extra)
    expected = reference_mean(
        reference(user_emb, item_emb, train, held, ks, exclude=extra))
    assert_close_dict(out, expected)
    plain = full_ranking_metrics(user_emb, item_emb, train, held, ks,
                                 metrics=METRICS)
    assert out != plain
    # Masking more non-positive items can only help recall:
    assert out['recall@10'] >= plain['recall@10']


@pytest.mark.parametrize('shuffle', [False, True])
def test_batch_size_invariance(shuffle):
    user_emb, item_emb, train, held = random_case(num_users=40, seed=5)
    if shuffle:  # unsorted inputs go through the sorting path
        train = train[:, torch.randperm(train.size(1))]
        held = held[:, torch.randperm(held.size(1))]
    results = [
        full_ranking_metrics(user_emb, item_emb, train, held, (1, 5, 20),
                             metrics=METRICS, batch_size=bs,
                             return_per_user=True)
        for bs in (1, 3, 7, 4096)
    ]
    first, first_pu = results[0]
    for out, pu in results[1:]:
        assert out == first
        for name in pu:
            assert torch.equal(pu[name], first_pu[name])
    expected = reference_mean(
        reference(user_emb, item_emb, train, held, (1, 5, 20)))
    assert_close_dict(first, expected)


def test_agrees_with_torch_geometric_link_pred_metrics():
    from torch_geometric.metrics import (
        LinkPredHitRatio,
        LinkPredMAP,
        LinkPredMetricCollection,
        LinkPredNDCG,
        LinkPredPrecision,
        LinkPredRecall,
    )
    user_emb, item_emb, train, held = random_case(num_users=50,
                                                  num_items=60, seed=6)
    ks = (5, 10, 20)
    out = full_ranking_metrics(user_emb, item_emb, train, held, ks,
                               metrics=METRICS)

    users = held[0].unique()
    pred = topk_items(user_emb, item_emb, users, max(ks),
                      train_edge_index=train)
    # User 1 has only 2 unmasked items: its ranks past them are -1; give PyG
    # an id that is never held out instead.
    assert (pred[:, 2:] == -1).any()
    pred = pred.masked_fill(pred == -1, item_emb.size(0))
    local = torch.searchsorted(users, held[0].contiguous())
    classes = {'recall': LinkPredRecall, 'ndcg': LinkPredNDCG,
               'precision': LinkPredPrecision, 'map': LinkPredMAP,
               'hit': LinkPredHitRatio}
    collection = LinkPredMetricCollection(
        {f'{m}@{k}': cls(k=k) for m, cls in classes.items() for k in ks})
    collection.update(pred, torch.stack([local, held[1]]))
    pyg = {name: float(value) for name, value in collection.compute().items()}
    # PyG computes in float32:
    assert_close_dict(out, pyg, tol=1e-6)


def test_ties_give_a_valid_ranking():
    # Integer embeddings produce many exactly equal scores.
    gen = torch.Generator().manual_seed(7)
    user_emb = torch.randint(0, 2, (30, 3), generator=gen).double()
    item_emb = torch.randint(0, 2, (25, 3), generator=gen).double()
    _, _, train, held = random_case(seed=7)
    ks = (1, 3, 5, 10)
    out, per_user = full_ranking_metrics(user_emb, item_emb, train, held, ks,
                                         metrics=METRICS,
                                         return_per_user=True)
    best = reference(user_emb, item_emb, train, held, ks, ties='best')
    worst = reference(user_emb, item_emb, train, held, ks, ties='worst')
    users = per_user['user'].tolist()
    num_strict = 0
    for name in out:
        assert 0.0 <= out[name] <= 1.0
        for row, u in enumerate(users):
            value = per_user[name][row].item()
            assert worst[u][name] - 1e-12 <= value <= best[u][name] + 1e-12
            num_strict += worst[u][name] < best[u][name]
    assert num_strict > 0  # the case does have ties that matter

    # The returned top-k lists are valid rankings: non-increasing scores, no
    # masked item, nothing left out that scores higher than the last item.
    pred = topk_items(user_emb, item_emb, per_user['user'], 10,
                      train_edge_index=train)
    scores = user_emb @ item_emb.t()
    masked = _sets(train)
    for row, u in enumerate(users):
        items = pred[row].tolist()
        s = scores[u, items]
        assert (s[1:] <= s[:-1]).all()
        assert not set(items) & masked.get(u, set())
        rest = [i for i in range(25)
                if i not in items and i not in masked.get(u, set())]
        assert all(scores[u, i] <= s[-1] for i in rest)


def test_ties_consistent_with_reported_order():
    # The metrics equal the naive ones computed from the returned ranking.
    gen = torch.Generator().manual_seed(8)
    user_emb = torch.randint(-1, 2, (30, 2), generator=gen).double()
    item_emb = torch.randint(-1, 2, (25, 2), generator=gen).double()
    _, _, train, held = random_case(seed=8)
    out, per_user = full_ranking_metrics(user_emb, item_emb, train, held,
                                         (4, ), metrics=METRICS,
                                         return_per_user=True)
    pred = topk_items(user_emb, item_emb, per_user['user'], 4,
                      train_edge_index=train)
    pos = _sets(held)
    for row, u in enumerate(per_user['user'].tolist()):
        ref = _metrics_of_ranking(pred[row].tolist(), pos[u], 4)
        for name, value in ref.items():
            assert per_user[f'{name}@4'][row].item() == pytest.approx(value)


def test_evaluator_is_reusable():
    user_emb, item_emb, train, held = random_case(seed=9)
    evaluator = RankingEvaluator(train, held, num_items=25, ks=(5, 10),
                                 metrics=METRICS, batch_size=8)
    assert 'RankingEvaluator(num_users=' in repr(evaluator)
    assert evaluator.num_users == held[0].unique().numel()
    for seed in range(3):
        user_emb = torch.randn(30, 8, dtype=torch.double)
        out = evaluator(user_emb, item_emb)
        assert out == full_ranking_metrics(user_emb, item_emb, train, held,
                                           (5, 10), metrics=METRICS)
    hits = evaluator.hit_matrix(user_emb, item_emb)
    assert hits.shape == (evaluator.num_users, 10) and hits.dtype == torch.bool


def test_float32_and_grad_embeddings():
    user_emb, item_emb, train, held = random_case(seed=10)
    ref = full_ranking_metrics(user_emb, item_emb, train, held)
    u32 = user_emb.float().requires_grad_()
    i32 = item_emb.float().requires_grad_()
    out = full_ranking_metrics(u32, i32, train, held)
    assert_close_dict(out, ref, tol=1e-6)


def test_topk_items():
    user_emb = torch.randn(4, 3, dtype=torch.double)
    item_emb = torch.randn(6, 3, dtype=torch.double)
    scores = user_emb @ item_emb.t()
    train = torch.tensor([[0, 0, 2], [1, 5, 0]])
    users = torch.tensor([2, 0, 2, 3])  # duplicates and any order
    out = topk_items(user_emb, item_emb, users, 8, train_edge_index=train,
                     batch_size=1)
    assert out.shape == (4, 8) and out.dtype == torch.long
    for row, u in enumerate(users.tolist()):
        masked = {i for uu, i in train.t().tolist() if uu == u}
        expected = sorted((i for i in range(6) if i not in masked),
                          key=lambda i: -scores[u, i])
        expected += [-1] * (8 - len(expected))
        assert out[row].tolist() == expected
    assert topk_items(user_emb, item_emb, None, 2).shape == (4, 2)
    excl = topk_items(user_emb, item_emb, torch.tensor([1]), 6,
                      exclude_edge_index=torch.tensor([[1], [3]]))
    assert 3 not in excl[0, :5].tolist() and excl[0, 5].item() == -1


def test_hit_metric_and_single_k():
    user_emb, item_emb, train, held = random_case(seed=11)
    out = full_ranking_metrics(user_emb, item_emb, train, held, 7,
                               metrics='hit')
    expected = reference_mean(reference(user_emb, item_emb, train, held,
                                        (7, )))
    assert list(out) == ['hit@7']
    assert out['hit@7'] == pytest.approx(expected['hit@7'])


def test_bad_input():
    user_emb, item_emb, train, held = random_case(seed=12)
    run = full_ranking_metrics
    with pytest.raises(ValueError, match='eval_edge_index.*shape'):
        run(user_emb, item_emb, train, held[0])
    with pytest.raises(ValueError, match='train_edge_index.*integer'):
        run(user_emb, item_emb, train.float(), held)
    with pytest.raises(ValueError, match='eval_edge_index.*item id 25'):
        run(user_emb, item_emb, train, torch.tensor([[0], [25]]))
    with pytest.raises(ValueError, match='negative'):
        run(user_emb, item_emb, train, torch.tensor([[-1], [0]]))
    with pytest.raises(ValueError, match='user_emb.*user id 40'):
        run(user_emb, item_emb, train, torch.tensor([[40], [0]]))
    with pytest.raises(ValueError, match='duplicate.*user 5, item 7'):
        run(user_emb, item_emb, train, torch.tensor([[5, 5, 6], [7, 7, 1]]))
    with pytest.raises(ValueError, match='empty'):
        run(user_emb, item_emb, train, torch.empty(2, 0, dtype=torch.long))
    bad = user_emb.clone()
    bad[3, 1] = float('nan')
    with pytest.raises(ValueError, match="'user_emb'.*NaN"):
        run(bad, item_emb, train, held)
    with pytest.raises(ValueError, match='same embedding size'):
        run(user_emb, item_emb[:, :3], train, held)
    with pytest.raises(ValueError, match="'ks'"):
        run(user_emb, item_emb, train, held, (0, 10))
    with pytest.raises(ValueError, match="'metrics'.*'mrr'"):
        run(user_emb, item_emb, train, held, metrics=('recall', 'mrr'))
    with pytest.raises(ValueError, match="'batch_size'"):
        run(user_emb, item_emb, train, held, batch_size=0)
    with pytest.raises(TypeError, match="'user_emb'"):
        run(user_emb.numpy(), item_emb, train, held)
    evaluator = RankingEvaluator(train, held, num_items=25)
    with pytest.raises(ValueError, match="'item_emb' has 24 rows"):
        evaluator(user_emb, item_emb[:24])
    with pytest.raises(ValueError, match="'k'"):
        topk_items(user_emb, item_emb, None, 0)


@pytest.mark.data
def test_real_baby_interactions_agree_with_pyg(shared_data):
    pd = pytest.importorskip('pandas')
    from conftest import require
    from torch_geometric.metrics import (
        LinkPredMAP,
        LinkPredMetricCollection,
        LinkPredNDCG,
        LinkPredRecall,
    )
    path = require(shared_data / 'amazon-baby-jclaf' /
                   'baby_jclaf_derived.tsv')
    df = pd.read_csv(path, sep='\t')
    train = torch.tensor(df[df.x_label == 0][['userID', 'itemID']].values.T)
    val = torch.tensor(df[df.x_label == 1][['userID', 'itemID']].values.T)
    num_users, num_items = int(df.userID.max()) + 1, int(df.itemID.max()) + 1
    user_emb = torch.randn(num_users, 16)
    item_emb = torch.randn(num_items, 16)
    # Make the scores informative so that there are hits to compare:
    item_emb[val[1]] += 0.5 * user_emb[val[0]]
    out = full_ranking_metrics(user_emb, item_emb, train, val, (20, ),
                               metrics=('recall', 'ndcg', 'map'))
    assert out['recall@20'] > 0.01
    users = val[0].unique()
    pred = topk_items(user_emb, item_emb, users, 20, train_edge_index=train)
    collection = LinkPredMetricCollection({
        'recall@20': LinkPredRecall(20), 'ndcg@20': LinkPredNDCG(20),
        'map@20': LinkPredMAP(20)})
    collection.update(pred, torch.stack([torch.searchsorted(users, val[0]),
                                         val[1]]))
    for name, value in collection.compute().items():
        assert out[name] == pytest.approx(float(value), abs=1e-5)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip('CUDA not available')
    user_emb, item_emb, train, held = random_case(seed=13)
    cpu = full_ranking_metrics(user_emb, item_emb, train, held, (5, 10),
                               metrics=METRICS, return_per_user=True)
    gpu = full_ranking_metrics(user_emb.cuda(), item_emb.cuda(), train, held,
                               (5, 10), metrics=METRICS,
                               return_per_user=True)
    assert_close_dict(gpu[0], cpu[0], tol=1e-9)
    assert gpu[1]['recall@10'].device.type == 'cuda'
    evaluator = RankingEvaluator(train, held, 25, (5, 10), metrics=METRICS)
    assert_close_dict(evaluator(user_emb.cuda(), item_emb.cuda()), cpu[0],
                      tol=1e-9)


def test_from_data():
    from torch_geometric.data import HeteroData
    user_emb, item_emb, train, held = random_case(seed=14)
    half = held.size(1) // 2
    data = HeteroData()
    data['user'].num_nodes = 30
    data['item'].num_nodes = 25
    data['user', 'rates', 'item'].edge_index = train
    data['user', 'rates', 'item'].val_edge_index = held[:, :half]
    data['user', 'rates', 'item'].test_edge_index = held[:, half:]
    val = RankingEvaluator.from_data(data, 'valid', ks=5)
    assert val(user_emb, item_emb) == full_ranking_metrics(
        user_emb, item_emb, train, held[:, :half], 5)
    assert RankingEvaluator.from_data(data, ks=5)(user_emb, item_emb) == \
        val(user_emb, item_emb)  # 'valid' is the default
    test = RankingEvaluator.from_data(data, 'test', ks=5, exclude_valid=True)
    assert test(user_emb, item_emb) == full_ranking_metrics(
        user_emb, item_emb, train, held[:, half:], 5,
        exclude_edge_index=held[:, :half])
    with pytest.raises(ValueError, match="'split'"):
        RankingEvaluator.from_data(data, 'train')
    with pytest.raises(ValueError, match='exclude_valid'):
        RankingEvaluator.from_data(data, 'valid', exclude_valid=True)
    with pytest.raises(ValueError, match="'split' must be 'valid' or "
                       "'test' \\(got 'val'\\)"):
        RankingEvaluator.from_data(data, 'val', ks=5)
    del data['user', 'rates', 'item'].test_edge_index
    with pytest.raises(ValueError, match="no 'test_edge_index'"):
        RankingEvaluator.from_data(data, 'test')


def test_numpy_integers_are_accepted():
    np = pytest.importorskip('numpy')
    user_emb, item_emb, train, held = random_case(seed=15)
    out = full_ranking_metrics(user_emb, item_emb, train, held,
                               ks=np.int64(5), batch_size=np.int64(4))
    assert list(out) == ['recall@5', 'ndcg@5', 'precision@5', 'map@5']
    evaluator = RankingEvaluator(train, held, np.int64(25), [np.int32(5)])
    assert evaluator(user_emb, item_emb) == out


@pytest.mark.parametrize('max_scores', [1, 7, 30, 45, 2500, 7500, 10**9])
def test_max_scores_chunking_is_exact(max_scores):
    # Chunked by users (max_scores >= num_items) and by items too
    # (max_scores < num_items: item blocks merged): the same hit matrix,
    # per-user metrics and top-k items as one block.
    user_emb, item_emb, train, held = random_case(num_users=40, seed=11)
    num_items = item_emb.size(0)
    want = RankingEvaluator(train, held, num_items, ks=(1, 5, 20),
                            metrics=METRICS)
    got = RankingEvaluator(train, held, num_items, ks=(1, 5, 20),
                           metrics=METRICS, max_scores=max_scores)
    plan = got.plan
    assert plan.batch_size * plan.item_block <= max_scores
    rows = max_scores // num_items
    if rows >= 256:  # whole rows
        assert (plan.batch_size, plan.item_block) == (min(4096, rows),
                                                      num_items)
    else:  # item blocks for min(256, sqrt(max_scores)) users at a time
        b = max(1, min(256, math.isqrt(max_scores)))
        assert (plan.batch_size, plan.item_block) == (
            b, min(num_items, max_scores // b))
    assert torch.equal(got.hit_matrix(user_emb, item_emb),
                       want.hit_matrix(user_emb, item_emb))
    out, pu = got(user_emb, item_emb, return_per_user=True)
    ref, ref_pu = want(user_emb, item_emb, return_per_user=True)
    assert out == ref
    for name in pu:
        assert torch.equal(pu[name], ref_pu[name])
    # k beyond the unmasked items: masked ranks give -1 in both.
    k = num_items + 3
    assert torch.equal(
        topk_items(user_emb, item_emb, None, k, train_edge_index=train,
                   max_scores=max_scores),
        topk_items(user_emb, item_emb, None, k, train_edge_index=train))
    assert_close_dict(out, reference_mean(
        reference(user_emb, item_emb, train, held, (1, 5, 20))))


def test_max_scores_bad_value():
    user_emb, item_emb, train, held = random_case(num_users=10, seed=1)
    with pytest.raises(ValueError, match="'max_scores' must be an int"):
        RankingEvaluator(train, held, item_emb.size(0), max_scores=0)
