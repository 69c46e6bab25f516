r"""The graph a model's forward receives: the operators of a mini-batch
against loop references (every node's incoming sum scaled by
deg(v) / deg_b(v), full-graph in-degree over in-degree in the batch),
unbiasedness, the model's own graphs, caching and the output check."""
from itertools import combinations

import pytest
import torch
from torch_geometric.data import HeteroData

from pyg_brmrs.nn import FUSED
from pyg_brmrs.nn.graph import FullGraphStats, OwnGraph, RecGraph
from pyg_brmrs.utils.cache import KeyedCache


def batch_graph(edge_index, user_deg, item_deg, in_degree=None, own=None,
                data=None):
    r"""The RecGraph of a batch whose local ids are its rows, with the full
    graph's degrees given."""
    nu, ni = user_deg.numel(), item_deg.numel()
    if data is None:
        data = HeteroData()
    data['user'].num_nodes, data['item'].num_nodes = nu, ni
    data['user', 'rates', 'item'].edge_index = edge_index
    return RecGraph(data, num_users=nu, num_items=ni,
                    user_n_id=torch.arange(nu), item_n_id=torch.arange(ni),
                    stats=FullGraphStats(user_deg.float(), item_deg.float(),
                                         in_degree or {}),
                    own=own)


def dense_ui_reference(edge_index, user_deg, item_deg, x):
    r"""One layer over a batch's user–item edges by a loop over nodes."""
    nu, ni = user_deg.numel(), item_deg.numel()
    deg = torch.cat([user_deg, item_deg]).float()
    nbrs = {v: [] for v in range(nu + ni)}
    for u, i in edge_index.t().tolist():
        nbrs[u].append(nu + i)
        nbrs[nu + i].append(u)
    out = torch.zeros_like(x)
    for v, ws in nbrs.items():
        for w in ws:
            out[v] += x[w] / (deg[v] * deg[w]).sqrt()
        if ws:
            out[v] *= deg[v] / len(ws)
    return out


def test_batch_user_item_operator_matches_loop():
    g = torch.Generator().manual_seed(0)
    nu, ni = 7, 9
    ei = torch.stack([torch.randint(nu, (20,), generator=g),
                      torch.randint(ni, (20,), generator=g)]).unique(dim=1)
    # global degrees at least the batch degrees (the batch is a sample)
    user_deg = torch.bincount(ei[0], minlength=nu) + torch.randint(
        3, (nu,), generator=g)
    item_deg = torch.bincount(ei[1], minlength=ni) + torch.randint(
        3, (ni,), generator=g)
    x = torch.randn(nu + ni, 4, generator=g)
    graph = batch_graph(ei, user_deg, item_deg)
    op = graph.user_item()
    ref = dense_ui_reference(ei, user_deg, item_deg, x)
    torch.testing.assert_close(op.homogeneous().matmul(x), ref)
    u, i = op.layer_mean(x[:nu], x[nu:], 1, last=True)
    torch.testing.assert_close(torch.cat([u, i]), ref)


def test_sampled_sum_is_unbiased():
    r"""Averaged over every way of keeping s of a user's d edges, the
    scaled sum equals the full-graph sum (exactly, up to rounding)."""
    d, s = 6, 2
    g = torch.Generator().manual_seed(1)
    item_deg = torch.randint(1, 5, (d,), generator=g)
    x = torch.randn(1 + d, 3, generator=g)
    full_ei = torch.stack([torch.zeros(d, dtype=torch.long),
                           torch.arange(d)])

    def user_row(ei):
        op = batch_graph(ei, torch.tensor([d]), item_deg).user_item()
        return op.homogeneous().matmul(x)[0]

    full = user_row(full_ei)
    outs = [user_row(full_ei[:, list(keep)])
            for keep in combinations(range(d), s)]
    torch.testing.assert_close(torch.stack(outs).mean(0), full)
    # unscaled, the mean would be s / d of the full sum:
    assert not torch.allclose(torch.stack(outs).mean(0), full * s / d)


def test_batch_homogeneous_graph_and_user_mean_match_loop():
    g = torch.Generator().manual_seed(2)
    n = 8
    ei = torch.stack([torch.randint(n, (15,), generator=g),
                      torch.randint(n, (15,), generator=g)]).unique(dim=1)
    w = torch.rand(ei.size(1), generator=g)
    full_deg = torch.bincount(ei[1], minlength=n) + torch.randint(
        2, (n,), generator=g)
    data = HeteroData()
    data['item', 'similar', 'item'].edge_index = ei
    data['item', 'similar', 'item'].edge_weight = w
    x = torch.randn(n, 3, generator=g)
    ref = torch.zeros(n, 3)
    for t in range(n):
        into = (ei[1] == t).nonzero().view(-1).tolist()
        for e in into:
            ref[t] += w[e] * x[ei[0, e]]
        if into:
            ref[t] *= full_deg[t] / len(into)
    ui = torch.tensor([[0, 0, 2], [1, 3, 3]])
    graph = batch_graph(ui, torch.tensor([2, 1, 1]), torch.ones(n),
                        {('item', 'similar', 'item'): full_deg.float()},
                        data=data)
    op = graph.homogeneous(('item', 'similar', 'item'))
    torch.testing.assert_close(op.matmul(x), ref)
    assert graph.homogeneous(('user', 'similar', 'user')) is None
    # without the full graph's in-degrees a batch cannot be scaled:
    bare = batch_graph(ui, torch.tensor([2, 1, 1]), torch.ones(n),
                       data=data)
    with pytest.raises(ValueError, match='set_graph'):
        bare.homogeneous(('item', 'similar', 'item'))
    # the users' mean over the items they have in the batch
    graph = batch_graph(ui, torch.tensor([2, 1, 1]), torch.ones(4))
    mean = graph.user_mean().matmul(torch.eye(4))
    torch.testing.assert_close(mean, torch.tensor(
        [[0, .5, 0, .5], [0, 0, 0, 0], [0, 0, 0, 1.]]))


def test_own_graph_of_a_batch_is_restricted_and_scaled():
    # a global item graph on 6 items; the batch holds items 4, 1, 3
    ei = torch.tensor([[0, 1, 2, 3, 5, 4, 1],
                       [1, 1, 1, 4, 4, 3, 3]])
    w = torch.tensor([.1, .2, .3, .4, .5, .6, .7])
    own = {'knn': OwnGraph('item', ei, w)}
    data = HeteroData()
    data['user'].num_nodes, data['item'].num_nodes = 1, 3
    data['user', 'rates', 'item'].edge_index = torch.tensor([[0], [0]])
    items = torch.tensor([4, 1, 3])
    graph = RecGraph(data, num_users=1, num_items=3,
                     user_n_id=torch.tensor([0]), item_n_id=items,
                     stats=FullGraphStats(torch.ones(1), torch.ones(6)),
                     own=own)
    x = torch.randn(3, 2)
    ref = torch.zeros(3, 2)
    full_in = torch.bincount(ei[1], minlength=6)
    local = {int(v): k for k, v in enumerate(items)}
    for t_local, t in enumerate(items.tolist()):
        into = [e for e in range(ei.size(1)) if ei[1, e] == t and
                int(ei[0, e]) in local]
        for e in into:
            ref[t_local] += w[e] * x[local[int(ei[0, e])]]
        if into:
            ref[t_local] *= full_in[t] / len(into)
    torch.testing.assert_close(graph.own('knn').matmul(x), ref)
    with pytest.raises(KeyError, match="no graph 'other'"):
        graph.own('other')


def test_full_graph_operators_are_cached_batch_operators_are_not():
    ei = torch.tensor([[0, 1, 1, 2], [0, 0, 1, 2]])
    data = HeteroData()
    data['user'].num_nodes, data['item'].num_nodes = 3, 3
    data['user', 'rates', 'item'].edge_index = ei
    cache = KeyedCache()
    a = RecGraph(data, num_users=3, num_items=3, cache=cache)
    b = RecGraph(data, num_users=3, num_items=3, cache=cache)
    first = a.user_item().blocks()
    assert b.user_item().blocks() is first
    assert a.user_mean() is b.user_mean()
    data['user', 'rates', 'item'].edge_index = ei.clone()  # another graph
    c = RecGraph(data, num_users=3, num_items=3, cache=cache)
    assert c.user_item().blocks() is not first
    uncached = RecGraph(data, num_users=3, num_items=3)
    assert uncached.user_mean() is not RecGraph(
        data, num_users=3, num_items=3).user_mean()
    # restricted output rows: the operator returns those users' rows
    rows = torch.tensor([2, 0])
    d = RecGraph(data, num_users=3, num_items=3, users=rows, cache=cache)
    xu, xi = torch.randn(3, 2), torch.randn(3, 2)
    u, i = d.user_item().layer_mean(xu, xi, 2)
    fu, fi = c.user_item().layer_mean(xu, xi, 2)
    torch.testing.assert_close(u, fu[rows])
    torch.testing.assert_close(i, fi)


def test_output_names_the_rows_and_checks_their_number():
    ei = torch.tensor([[0, 1], [0, 1]])
    data = HeteroData()
    data['user'].num_nodes, data['item'].num_nodes = 2, 2
    data['user', 'rates', 'item'].edge_index = ei
    graph = batch_graph(ei, torch.ones(2), torch.ones(2))
    graph.user_n_id = torch.tensor([1, 0])
    out = graph.output({FUSED: torch.zeros(2, 3)}, {FUSED: torch.zeros(2, 3)})
    assert torch.equal(out.user_n_id, torch.tensor([1, 0]))
    assert torch.equal(out.item_n_id, torch.arange(2))
    with pytest.raises(ValueError, match="user branch 'fused' has 5 rows"):
        graph.output({FUSED: torch.zeros(5, 3)}, {FUSED: torch.zeros(2, 3)})
