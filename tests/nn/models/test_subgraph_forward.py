r"""Mini-batch subgraph forward of every model: batches built with PyG's
subgraph utilities (``HeteroData.subgraph``, ``k_hop_subgraph``), ``n_id``
on the node stores. A batch holding the whole neighbourhood of its seed
nodes gives them their full-graph representations; the whole graph as a
shuffled "subgraph" gives every node its full-graph representation."""
import pytest
import torch
from torch_geometric.utils import k_hop_subgraph

from pyg_brmrs.data import make_synthetic
from pyg_brmrs.nn import BPRMF, BRMRS, FREEDOM, VBPR, LightGCNRecommender
from pyg_brmrs.transforms import HomogeneousKNNGraph

ATOL = 1e-5

MODELS = [
    (BPRMF, {}),
    (LightGCNRecommender, {}),
    (LightGCNRecommender, {'backend': 'pyg', 'num_layers': 3}),
    (VBPR, {}),
    (FREEDOM, {}),
    (FREEDOM, {'finetune_features': False, 'num_item_layers': 2,
               'knn_k': 4}),
    (BRMRS, {}),  # the paper's model
    (BRMRS, {'id_mode': 'concat', 'user_mode': 'profile',
             'fusion': 'concat'}),  # the tuned variant
    (BRMRS, {'id_mode': 'add', 'homogeneous': 'last', 'num_item_layers': 2,
             'finetune_features': True, 'fusion': 'gated'}),
]


def ids(param):
    cls, kw = param
    return cls.__name__ + ''.join(f'-{k}={v}' for k, v in kw.items())


@pytest.fixture(scope='module')
def data():
    # sparse, so that the neighbourhoods of a few seeds are small
    data = make_synthetic(300, 400, feature_dim=8, seed=1,
                          min_interactions=3, mean_extra_interactions=0.5)
    return HomogeneousKNNGraph(k_item=4, k_user=4)(data)


def batch(data, users, items):
    sub = data.subgraph({'user': users, 'item': items})
    sub['user'].n_id = users
    sub['item'].n_id = items
    return sub


def assert_rows_equal(full, part, user_rows, item_rows, user_sel=None,
                      item_sel=None):
    user_sel = slice(None) if user_sel is None else user_sel
    item_sel = slice(None) if item_sel is None else item_sel
    assert set(full.user) == set(part.user)
    for b in full.user:
        torch.testing.assert_close(part.user[b][user_sel],
                                   full.user[b][user_rows], atol=ATOL,
                                   rtol=1e-5)
        torch.testing.assert_close(part.item[b][item_sel],
                                   full.item[b][item_rows], atol=ATOL,
                                   rtol=1e-5)


@pytest.mark.parametrize('param', MODELS, ids=ids)
def test_whole_graph_shuffled(data, param):
    cls, kw = param
    torch.manual_seed(0)
    model = cls.from_data(data, embedding_dim=8, **kw).eval()
    perm_u = torch.randperm(data['user'].num_nodes)
    perm_i = torch.randperm(data['item'].num_nodes)
    full = model(data)
    part = model(batch(data, perm_u, perm_i))
    assert torch.equal(part.user_n_id, perm_u)
    assert torch.equal(part.item_n_id, perm_i)
    assert_rows_equal(full, part, perm_u, perm_i)


def closure(data, users, items, hops, knn_hops, profile, item_graph=None):
    r"""The users and items within :obj:`hops` user–item hops of the
    seeds, plus everything their (homogeneous-graph, and for profiles
    user–item) inputs need."""
    nu = data['user'].num_nodes
    ei = data['user', 'rates', 'item'].edge_index
    hom = torch.cat([torch.stack([ei[0], ei[1] + nu]),
                     torch.stack([ei[1] + nu, ei[0]])], dim=1)
    seeds = torch.cat([users, items + nu])
    nodes, _, _, _ = k_hop_subgraph(seeds, hops, hom, num_nodes=nu +
                                    data['item'].num_nodes)
    u = set(nodes[nodes < nu].tolist())
    i = set((nodes[nodes >= nu] - nu).tolist())
    for _ in range(knn_hops):  # sources of the kNN edges into the set
        for t, s in ((('user', 'similar', 'user'), u),
                     (('item', 'similar', 'item'), i)):
            src, dst = data[t].edge_index
            if item_graph is not None:  # FREEDOM's own item graph only
                if t[0] == 'user':
                    continue
                src, dst = item_graph
            s |= set(src[torch.isin(dst, torch.tensor(sorted(s)))].tolist())
    if profile:  # every training item of every user
        i |= set(ei[1][torch.isin(ei[0], torch.tensor(sorted(u)))].tolist())
    return torch.tensor(sorted(u)), torch.tensor(sorted(i))


@pytest.mark.parametrize('param', MODELS, ids=ids)
def test_full_neighbourhood_batch(data, param):
    cls, kw = param
    torch.manual_seed(0)
    model = cls.from_data(data, embedding_dim=8, **kw).eval()
    full = model(data)
    layers = {'BPRMF': 0, 'VBPR': 0}.get(cls.__name__, None)
    if layers is None:
        layers = model.num_layers
    knn = 0
    if cls is BRMRS:
        knn = max(model.num_item_layers, model.num_user_layers)
    elif cls is FREEDOM:
        knn = model.num_item_layers
    seed_users, seed_items = torch.tensor([3, 17]), torch.tensor([5, 31])
    users, items = closure(data, seed_users, seed_items, layers, knn,
                           getattr(model, 'user_mode', '') == 'profile',
                           model.knn_edge_index if cls is FREEDOM else None)
    # a part of the graph, in a shuffled order:
    assert users.numel() + items.numel() < 500
    users = users[torch.randperm(users.numel())]
    items = items[torch.randperm(items.numel())]
    part = model(batch(data, users, items))
    us = (users.unsqueeze(1) == seed_users).nonzero()[:, 0]
    its = (items.unsqueeze(1) == seed_items).nonzero()[:, 0]
    assert_rows_equal(full, part, users[us], items[its], us, its)


@pytest.mark.parametrize('param', MODELS, ids=ids)
def test_subgraph_gradients_and_regularisation(data, param):
    cls, kw = param
    torch.manual_seed(0)
    model = cls.from_data(data, embedding_dim=8, **kw).train()
    users, items = torch.arange(0, 300, 2), torch.arange(1, 400, 2)
    out = model(batch(data, users, items))
    loc_u, loc_p, loc_n = (torch.tensor([0, 3]), torch.tensor([1, 2]),
                           torch.tensor([4, 0]))
    reg = model.regularization(loc_u, loc_p, loc_n, out)
    if cls is VBPR:  # regularises the computed rows: compare to the full
        full = model(data)
        ref = model.regularization(users[loc_u], items[loc_p], items[loc_n],
                                   full)
    else:
        ref = model.regularization(users[loc_u], items[loc_p], items[loc_n])
    torch.testing.assert_close(reg, ref)
    loss = out.score(loc_u, loc_p).sum() + reg
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.parameters())


@pytest.mark.bad_input
def test_subgraph_errors(data):
    model = LightGCNRecommender(data['user'].num_nodes, data['item'].num_nodes,
                     embedding_dim=4)
    sub = batch(data, torch.arange(5), torch.arange(6))
    with pytest.raises(ValueError, match='set_graph'):
        model(sub)
    model.set_graph(data)
    assert model(sub).user_emb.shape == (5, 4)
    del sub['item'].n_id
    with pytest.raises(ValueError, match=r"data\['item'\] has none"):
        model(sub)
    bad = batch(data, torch.arange(5), torch.arange(6))
    bad['user'].n_id = torch.tensor([0, 1, 2, 3, 999])
    with pytest.raises(ValueError, match=r"data\['user'\].n_id holds ids"):
        model(bad)
    bad['user'].n_id = torch.arange(4)
    with pytest.raises(ValueError, match="4 ids but the store has 5"):
        model(bad)


# ----------------------------------------------------------------------
# Sampled neighbourhoods: every node's incoming sum is scaled by
# deg(v) / deg_b(v) (full-graph in-degree over in-degree in the batch).
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


def test_subgraph_ui_operator_matches_loop():
    from pyg_brmrs.nn.models._common import subgraph_ui_operator
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
    op = subgraph_ui_operator(ei, user_deg, item_deg)
    torch.testing.assert_close(op.matmul(x),
                               dense_ui_reference(ei, user_deg, item_deg, x))


def test_sampled_sum_is_unbiased():
    r"""Averaged over every way of keeping s of a user's d edges, the
    scaled sum equals the full-graph sum (exactly, up to rounding)."""
    from itertools import combinations

    from pyg_brmrs.nn.models._common import subgraph_ui_operator
    d, s = 6, 2
    g = torch.Generator().manual_seed(1)
    item_deg = torch.randint(1, 5, (d,), generator=g)
    x = torch.randn(1 + d, 3, generator=g)
    full_ei = torch.stack([torch.zeros(d, dtype=torch.long),
                           torch.arange(d)])
    full = subgraph_ui_operator(full_ei, torch.tensor([d]),
                                item_deg).matmul(x)[0]
    outs = [subgraph_ui_operator(full_ei[:, list(keep)], torch.tensor([d]),
                                 item_deg).matmul(x)[0]
            for keep in combinations(range(d), s)]
    torch.testing.assert_close(torch.stack(outs).mean(0), full)
    # unscaled, the mean would be s / d of the full sum:
    assert not torch.allclose(torch.stack(outs).mean(0), full * s / d)


def test_subgraph_homogeneous_and_user_mean_match_loop():
    from torch_geometric.data import HeteroData

    from pyg_brmrs.nn.models._common import (
        subgraph_homogeneous,
        subgraph_user_mean,
    )
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
    op = subgraph_homogeneous(data, ('item', 'similar', 'item'), full_deg)
    torch.testing.assert_close(op.matmul(x), ref)
    with pytest.raises(ValueError, match='set_graph'):
        subgraph_homogeneous(data, ('item', 'similar', 'item'), None)
    # the users' mean over the items they have in the batch
    ui = torch.tensor([[0, 0, 2], [1, 3, 3]])
    mean = subgraph_user_mean(ui, 3, 4).matmul(torch.eye(4))
    torch.testing.assert_close(mean, torch.tensor(
        [[0, .5, 0, .5], [0, 0, 0, 0], [0, 0, 0, 1.]]))


@pytest.mark.bad_input
def test_brmrs_subgraph_needs_knn_degrees(data):
    bare = data.clone()
    del bare['item', 'similar', 'item']
    del bare['user', 'similar', 'user']
    model = BRMRS.from_data(bare, embedding_dim=8)  # never saw the graphs
    assert model.item_sim_degree is None
    with pytest.raises(ValueError, match=r"'similar', 'item'\) edges"):
        model(batch(data, torch.arange(10), torch.arange(12)))
    model.set_graph(data)
    assert model(batch(data, torch.arange(10), torch.arange(12))) \
        .user_emb.shape == (10, 8)
