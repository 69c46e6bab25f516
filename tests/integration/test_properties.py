r"""Property-based tests (hypothesis) of the graph transform, the negative
samplers and the ranking metrics."""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch_geometric.data import HeteroData

from pyg_brmrs.data import ITEM_SIM, RATES, USER_SIM
from pyg_brmrs.evaluation import full_ranking_metrics
from pyg_brmrs.sampling import (
    CrossModalHardNegativeSampler,
    UniformNegativeSampler,
)
from pyg_brmrs.transforms import HomogeneousKNNGraph

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
GRAPH_SETTINGS = settings(SETTINGS, max_examples=20)


@st.composite
def interactions(draw, max_users=12, max_items=12, modalities=2):
    r"""A random dataset: unique (user, item) pairs, each labelled train,
    valid or test, and continuous random item features (no exact ties of
    similarity)."""
    num_users = draw(st.integers(2, max_users))
    num_items = draw(st.integers(3, max_items))
    seed = draw(st.integers(0, 2**32 - 1))
    density = draw(st.floats(0.1, 0.7))
    rng = np.random.default_rng(seed)
    mask = rng.random((num_users, num_items)) < density
    mask[0, 0] = True
    pairs = np.argwhere(mask)  # row-major: (0, 0) comes first
    split = rng.choice(3, size=len(pairs), p=[0.7, 0.15, 0.15])
    split[0] = 0  # at least one training interaction
    data = HeteroData()
    data['user'].num_nodes = num_users
    data['item'].num_nodes = num_items
    for code, key in ((0, 'edge_index'), (1, 'val_edge_index'),
                      (2, 'test_edge_index')):
        data[RATES][key] = torch.from_numpy(pairs[split == code].T.copy()
                                            ).long().view(2, -1)
    for m in range(modalities):
        data['item'][f'x_m{m}'] = torch.from_numpy(
            rng.standard_normal((num_items, 4)).astype(np.float32))
    return data


def graph_kwargs(k, alpha, loop):
    return dict(k_item=k, k_user=k, alpha_item=alpha, alpha_user=alpha,
                loop=loop)


def rows(edge_index, edge_weight, num_nodes):
    r"""The sorted weights of every target row."""
    out = [[] for _ in range(num_nodes)]
    for (j, i), w in zip(edge_index.t().tolist(), edge_weight.tolist()):
        out[i].append(w)
    return [sorted(r) for r in out]


# ----------------------------------------------------------------------
# HomogeneousKNNGraph
@GRAPH_SETTINGS
@given(interactions(), st.integers(1, 5), st.sampled_from([0.0, 0.3, 1.0]),
       st.booleans())
def test_graph_loops_and_row_sizes(data, k, alpha, loop):
    out = HomogeneousKNNGraph(**graph_kwargs(k, alpha, loop))(data.clone())
    parts = (alpha > 0) + (alpha < 1) * 2  # co-occurrence + 2 modalities
    for edge_type, n in ((ITEM_SIM, data['item'].num_nodes),
                         (USER_SIM, data['user'].num_nodes)):
        if edge_type not in out.edge_types:
            continue
        ei = out[edge_type].edge_index
        if not loop:
            assert not bool((ei[0] == ei[1]).any())
        per_row = torch.bincount(ei[1], minlength=n)
        assert int(per_row.max()) <= k * parts
        if alpha in (0.0, 1.0) and parts == 1:
            assert int(per_row.max()) <= k


@GRAPH_SETTINGS
@given(interactions(modalities=1), st.integers(1, 4),
       st.sampled_from([0.0, 1.0]), st.booleans())
def test_graph_single_part_keeps_at_most_k_per_row(data, k, alpha, loop):
    out = HomogeneousKNNGraph(**graph_kwargs(k, alpha, loop))(data.clone())
    for edge_type, n in ((ITEM_SIM, data['item'].num_nodes),
                         (USER_SIM, data['user'].num_nodes)):
        if edge_type in out.edge_types:
            ei = out[edge_type].edge_index
            assert int(torch.bincount(ei[1], minlength=n).max()) <= k


@GRAPH_SETTINGS
@given(interactions(), st.integers(1, 4), st.sampled_from([0.0, 0.5, 1.0]),
       st.integers(0, 2**32 - 1))
def test_graph_never_reads_validation_or_test(data, k, alpha, seed):
    r"""Replacing the held-out interactions by any others changes
    nothing."""
    other = data.clone()
    rng = np.random.default_rng(seed)
    nu, ni = data['user'].num_nodes, data['item'].num_nodes
    for key in ('val_edge_index', 'test_edge_index'):
        n = int(rng.integers(0, 20))
        other[RATES][key] = torch.stack([
            torch.from_numpy(rng.integers(0, nu, n)),
            torch.from_numpy(rng.integers(0, ni, n))]).long()
    transform = HomogeneousKNNGraph(**graph_kwargs(k, alpha, False))
    a, b = transform(data.clone()), transform(other)
    assert set(a.edge_types) == set(b.edge_types)
    for edge_type in (ITEM_SIM, USER_SIM):
        if edge_type in a.edge_types:
            assert torch.equal(a[edge_type].edge_index,
                               b[edge_type].edge_index)
            assert torch.equal(a[edge_type].edge_weight,
                               b[edge_type].edge_weight)


@GRAPH_SETTINGS
@given(interactions(), st.integers(1, 4), st.sampled_from([0.0, 1.0]),
       st.booleans(), st.integers(0, 2**32 - 1))
def test_graph_is_invariant_to_item_relabelling(data, k, alpha, loop, seed):
    r"""Relabelling the items permutes the item graph: row ``perm[i]`` of
    the relabelled graph has the weights of row ``i`` (compared as sorted
    lists, so that equal co-occurrence counts may pick other neighbours),
    and every user row keeps its weights."""
    ni = data['item'].num_nodes
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(ni))
    relabelled = data.clone()
    for key in ('edge_index', 'val_edge_index', 'test_edge_index'):
        ei = relabelled[RATES][key].clone()
        ei[1] = perm[ei[1]]
        relabelled[RATES][key] = ei
    inverse = torch.argsort(perm)
    for m in ('x_m0', 'x_m1'):
        relabelled['item'][m] = data['item'][m][inverse]
    transform = HomogeneousKNNGraph(**graph_kwargs(k, alpha, loop))
    a, b = transform(data.clone()), transform(relabelled)
    for edge_type, n, relabel in ((ITEM_SIM, ni, perm),
                                  (USER_SIM, data['user'].num_nodes, None)):
        if edge_type not in a.edge_types:
            assert edge_type not in b.edge_types
            continue
        ra = rows(a[edge_type].edge_index, a[edge_type].edge_weight, n)
        rb = rows(b[edge_type].edge_index, b[edge_type].edge_weight, n)
        for i in range(n):
            j = int(relabel[i]) if relabel is not None else i
            assert np.allclose(ra[i], rb[j], atol=1e-6), (i, ra[i], rb[j])


# ----------------------------------------------------------------------
# Samplers
@st.composite
def training_graph(draw):
    num_users = draw(st.integers(1, 10))
    num_items = draw(st.integers(2, 15))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # every user keeps at least one allowed item
    degree = rng.integers(0, num_items, size=num_users)
    pairs = [(u, int(i)) for u in range(num_users)
             for i in rng.choice(num_items, size=degree[u], replace=False)]
    dup = pairs[:2]  # duplicate training edges are allowed
    edge_index = torch.tensor(pairs + dup, dtype=torch.long).view(-1, 2).t()
    return edge_index, num_users, num_items, seed


@SETTINGS
@given(training_graph(), st.integers(1, 8))
def test_uniform_sampler_never_returns_a_training_positive(graph, samples):
    edge_index, nu, ni, seed = graph
    positives = set(map(tuple, edge_index.t().tolist()))
    sampler = UniformNegativeSampler(edge_index, ni, num_users=nu)
    gen = torch.Generator().manual_seed(seed)
    users = torch.arange(nu).repeat(3)
    neg = sampler(users, samples, generator=gen)
    assert neg.shape == (users.numel(), samples)
    assert int(neg.min()) >= 0 and int(neg.max()) < ni
    for u, row in zip(users.tolist(), neg.tolist()):
        assert not any((u, i) in positives for i in row)


@SETTINGS
@given(training_graph(), st.integers(1, 6),
       st.sampled_from(['cross', 'same']))
def test_hard_negatives_are_argmax_and_never_positive(graph, candidates,
                                                      assignment):
    edge_index, nu, ni, seed = graph
    positives = set(map(tuple, edge_index.t().tolist()))
    gen = torch.Generator().manual_seed(seed)
    emb = {m: (torch.randn(nu, 3, generator=gen),
               torch.randn(ni, 3, generator=gen)) for m in ('a', 'b')}
    sampler = CrossModalHardNegativeSampler(edge_index, ni, candidates,
                                            assignment, num_users=nu)
    users = torch.arange(nu).repeat(2)
    res = sampler(users, {m: e[0] for m, e in emb.items()},
                  {m: e[1] for m, e in emb.items()}, generator=gen)
    picked = [res.candidates, res.uniform.view(-1, 1)] + \
        [v.view(-1, 1) for v in (*res.hard.values(),
                                 *res.negatives.values())]
    for tensor in picked:
        for u, row in zip(users.tolist(), tensor.tolist()):
            assert not any((u, i) in positives for i in row)
    for m, (ue, ie) in emb.items():
        for b, u in enumerate(users.tolist()):
            cands = res.candidates[b].tolist()
            scores = [float(ue[u] @ ie[j]) for j in cands]
            hard = int(res.hard[m][b])
            assert hard in cands
            assert float(ue[u] @ ie[hard]) >= max(scores) - 1e-5


# ----------------------------------------------------------------------
# Metrics
def naive_metrics(user_emb, item_emb, train, held, ks):
    r"""Recall@K and NDCG@K by the definitions, one user at a time."""
    scores = (user_emb.double() @ item_emb.double().t()).tolist()
    train_items, held_items = {}, {}
    for u, i in train.t().tolist():
        train_items.setdefault(u, set()).add(i)
    for u, i in held.t().tolist():
        held_items.setdefault(u, set()).add(i)
    out = {f'{m}@{k}': [] for m in ('recall', 'ndcg') for k in ks}
    for u, pos in held_items.items():
        seen = train_items.get(u, set())
        ranked = sorted((i for i in range(len(scores[u])) if i not in seen),
                        key=lambda i: -scores[u][i])
        for k in ks:
            hits = [1.0 if i in pos else 0.0 for i in ranked[:k]]
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(len(pos), k)))
            out[f'recall@{k}'].append(sum(hits) / len(pos))
            out[f'ndcg@{k}'].append(dcg / idcg)
    return {key: sum(v) / len(v) for key, v in out.items()}


@SETTINGS
@given(interactions(max_users=10, max_items=14, modalities=0),
       st.integers(0, 2**32 - 1), st.sampled_from([(1, 3), (2, 5), (4,)]))
def test_metrics_in_unit_interval_and_equal_to_naive(data, seed, ks):
    store = data[RATES]
    if store.test_edge_index.size(1) == 0:
        return
    gen = torch.Generator().manual_seed(seed)
    nu, ni = data['user'].num_nodes, data['item'].num_nodes
    user_emb = torch.randn(nu, 4, generator=gen)
    item_emb = torch.randn(ni, 4, generator=gen)
    out = full_ranking_metrics(user_emb, item_emb, store.edge_index,
                               store.test_edge_index, ks=ks)
    expected = naive_metrics(user_emb, item_emb, store.edge_index,
                             store.test_edge_index, ks)
    for key, value in expected.items():
        assert 0.0 <= out[key] <= 1.0, (key, out[key])
        assert out[key] == pytest.approx(value, abs=1e-6), key
