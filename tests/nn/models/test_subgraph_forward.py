r"""Mini-batch subgraph forward of the models in configurations beyond the
recipes' (the recipes themselves: ``tests/test_conformance.py``): batches
built with PyG's subgraph utilities (``HeteroData.subgraph``,
``k_hop_subgraph``), ``n_id`` on the node stores. A batch holding exactly
the neighbourhood its seed nodes depend on (the hops of each model) gives
them their full-graph representations; the whole graph as a shuffled
"subgraph" gives every node its full-graph representation."""
import pytest
import torch
from torch_geometric.utils import k_hop_subgraph

import conformance

from pyg_brmrs.data import make_synthetic
from pyg_brmrs.nn import BPRMF, BRMRS, FREEDOM, VBPR, LightGCNRecommender
from pyg_brmrs.transforms import HomogeneousKNNGraph

MODELS = [
    (BPRMF, {}),
    (LightGCNRecommender, {}),
    (LightGCNRecommender, {'backend': 'edge_index', 'num_layers': 3}),
    (VBPR, {}),
    (FREEDOM, {}),
    (FREEDOM, {'finetune_features': False, 'num_item_layers': 2,
               'knn_k': 4}),
    (BRMRS, {}),  # the paper's model
    (BRMRS, {'user_mode': 'shared'}),
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


batch = conformance.subgraph_batch


@pytest.mark.parametrize('param', MODELS, ids=ids)
def test_whole_graph_shuffled(data, param):
    cls, kw = param
    torch.manual_seed(0)
    model = cls.from_data(data, embedding_dim=8, **kw)
    conformance.check_shuffled_whole_graph(ids(param), data, model)


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
                           model.knn_graph[0] if cls is FREEDOM else None)
    # a part of the graph, in a shuffled order:
    assert users.numel() + items.numel() < 500
    users = users[torch.randperm(users.numel())]
    items = items[torch.randperm(items.numel())]
    part = model(batch(data, users, items))
    us = (users.unsqueeze(1) == seed_users).nonzero()[:, 0]
    its = (items.unsqueeze(1) == seed_items).nonzero()[:, 0]
    conformance.assert_rows(ids(param), 'k-hop batch', full, part,
                            users[us], items[its], us, its)


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
    with pytest.raises(ValueError, match=r"data\['user'\].n_id' holds ids outside"):
        model(bad)
    bad['user'].n_id = torch.arange(4)
    with pytest.raises(ValueError, match="4 ids but the store has 5"):
        model(bad)


@pytest.mark.bad_input
def test_brmrs_subgraph_needs_knn_degrees(data):
    bare = data.clone()
    del bare['item', 'similar', 'item']
    del bare['user', 'similar', 'user']
    model = BRMRS.from_data(bare, embedding_dim=8)  # never saw the graphs
    assert model.item_similar_item_in_degree is None
    with pytest.raises(ValueError, match=r"'similar', 'item'\) edges"):
        model(batch(data, torch.arange(10), torch.arange(12)))
    model.set_graph(data)
    assert model(batch(data, torch.arange(10), torch.arange(12))) \
        .user_emb.shape == (10, 8)
