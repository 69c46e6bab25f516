import math

import pytest
import torch
from torch_geometric.typing import WITH_TORCH_SPARSE

from torch_geometric.nn.models import LightGCN as PyGLightGCN

from pyg_brmrs.nn import BPRMF, FREEDOM, VBPR, LightGCNRecommender, RecOutput
from pyg_brmrs.transforms import mixed_cosine_knn_graph
from pyg_brmrs.objectives import BPRObjective
from pyg_brmrs.nn.graph import degree_sensitive_edge_pruning
from pyg_brmrs.utils.sparse import bipartite_to_homogeneous

from dense_reference import (  # noqa: E402  (tests/nn/models)
    dense_lightgcn,
    dense_norm_adj,
    toy_data,
)

RATES = ('user', 'rates', 'item')


def dense_knn(xs, k, weights):
    n = next(iter(xs.values())).size(0)
    S = torch.zeros(n, n, dtype=torch.float64)
    for m, x in xs.items():
        x = x.double()
        cos = torch.zeros(n, n, dtype=torch.float64)
        for i in range(n):
            for j in range(n):
                cos[i, j] = (x[i] @ x[j]) / (x[i].norm() * x[j].norm())
        A = torch.zeros(n, n, dtype=torch.float64)
        for i in range(n):
            A[i, cos[i].topk(k).indices] = 1.0
        deg = A.sum(1)
        S += weights[m] * (deg.pow(-0.5)[:, None] * A * deg.pow(-0.5)[None])
    return S


def frobenius_reg(*mats):
    return sum(math.sqrt(float((m.detach().double()**2).sum()))
               for m in mats) / \
        mats[-1].size(0)


# ---------------------------------------------------------------------------
# BPR-MF
# ---------------------------------------------------------------------------
def test_mf_forward_and_regularization():
    data = toy_data()
    model = BPRMF.from_data(data, embedding_dim=8)
    out = model(data)
    assert out.branches == ['fused'] and out.ranking_branch == 'fused'
    U, I = model.num_users, model.num_items
    eu = model.user_embedding.weight.detach()
    ei = model.item_embedding.weight.detach()
    users, items = torch.tensor([0, 3, 5]), torch.tensor([1, 1, 7])
    expected = [float(sum(eu[u, c] * ei[i, c] for c in range(8)))
                for u, i in zip(users.tolist(), items.tolist())]
    assert torch.allclose(out.score(users, items),
                          torch.tensor(expected), atol=1e-6)
    assert out.user_emb.shape == (U, 8) and out.item_emb.shape == (I, 8)
    neg = torch.tensor([2, 0, 9])
    reg = model.regularization(users, items, neg)
    assert math.isclose(float(reg.detach()),
                        frobenius_reg(eu[users], ei[items], ei[neg]),
                        rel_tol=1e-5)
    sq = BPRMF.from_data(data, embedding_dim=8, reg_norm='squared')
    sq.load_state_dict(model.state_dict())
    ref = (eu[users].pow(2).sum() + ei[items].pow(2).sum() +
           ei[neg].pow(2).sum()) / 6
    assert torch.allclose(sq.regularization(users, items, neg), ref)
    assert repr(model) == 'BPRMF(12, 10, embedding_dim=8)'


def test_mf_xavier_normal_init():
    model = BPRMF(2000, 30, embedding_dim=16)
    std = model.user_embedding.weight.std().item()
    assert abs(std - math.sqrt(2 / (2000 + 16))) < 0.1 * std
    std = model.item_embedding.weight.std().item()
    assert abs(std - math.sqrt(2 / (30 + 16))) < 0.15 * std


# ---------------------------------------------------------------------------
# LightGCN
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('L', [0, 1, 3])
@pytest.mark.parametrize('backend', ['csr', 'edge_index', 'torch_sparse',
                                     'auto'])
def test_lightgcn_matches_dense(backend, L):
    if backend == 'torch_sparse' and not WITH_TORCH_SPARSE:
        pytest.skip('torch-sparse is not installed')
    data = toy_data()
    model = LightGCNRecommender.from_data(data, embedding_dim=5,
                                          num_layers=L, backend=backend)
    out = model(data)
    U, I = model.num_users, model.num_items
    ref = dense_lightgcn(model.embedding.weight.detach(),
                         dense_norm_adj(data[RATES].edge_index, U, I), L)
    assert torch.allclose(out.user_emb.double(), ref[:U], atol=1e-6)
    assert torch.allclose(out.item_emb.double(), ref[U:], atol=1e-6)
    # isolated user / item keep alpha_0 * x0:
    x0 = model.embedding.weight.detach()
    assert torch.allclose(out.user_emb[U - 1], x0[U - 1] / (L + 1))
    assert torch.allclose(out.item_emb[I - 1], x0[U + I - 1] / (L + 1))


def test_lightgcn_backends_agree_with_each_other_and_pyg():
    data = toy_data()
    a = LightGCNRecommender.from_data(data, embedding_dim=6, num_layers=3,
                                      backend='csr')
    b = LightGCNRecommender.from_data(data, embedding_dim=6, num_layers=3,
                                      backend='edge_index')
    b.load_state_dict(a.state_dict())
    oa, ob = a(data), b(data)
    assert torch.allclose(oa.user_emb, ob.user_emb, atol=1e-6)
    assert torch.allclose(oa.item_emb, ob.item_emb, atol=1e-6)
    w = torch.randn(a.num_users, 6)
    v = torch.randn(a.num_items, 6)
    ((oa.user_emb * w).sum() + (oa.item_emb * v).pow(2).sum()).backward()
    ((ob.user_emb * w).sum() + (ob.item_emb * v).pow(2).sum()).backward()
    ga, gb = a.embedding.weight.grad, b.embedding.weight.grad
    assert ga.abs().sum() > 0
    assert torch.allclose(ga, gb, atol=1e-5)

    # PyG's own model with the same weights:
    pyg = PyGLightGCN(a.num_users + a.num_items, 6, 3)
    pyg.embedding.weight.data.copy_(a.embedding.weight.data)
    ref = pyg.get_embedding(
        bipartite_to_homogeneous(data[RATES].edge_index, a.num_users))
    assert torch.allclose(torch.cat([oa.user_emb, oa.item_emb]), ref,
                          atol=1e-6)
    # The model *is* a PyG LightGCN:
    assert isinstance(a.lightgcn, PyGLightGCN)
    assert torch.allclose(a.lightgcn.alpha, torch.full((4, ), 0.25))


def test_lightgcn_is_not_pyg_lightgcn_by_name():
    import torch_geometric.nn

    import pyg_brmrs.nn
    assert LightGCNRecommender is not torch_geometric.nn.LightGCN
    assert 'LightGCN' not in pyg_brmrs.nn.__all__
    with pytest.raises(AttributeError):
        pyg_brmrs.nn.LightGCN


def test_lightgcn_mmrec_init_and_regularization():
    U, I, d = 1000, 10, 8
    model = LightGCNRecommender(U, I, embedding_dim=d)
    w = model.embedding.weight.detach()
    bu, bi = math.sqrt(6 / (U + d)), math.sqrt(6 / (I + d))
    assert w[:U].abs().max() <= bu
    assert w[U:].abs().max() <= bi
    # PyG's whole-table init would bound the items by sqrt(6 / (U + I + d)):
    assert w[U:].abs().max() > math.sqrt(6 / (U + I + d))
    users, pos, neg = torch.tensor([0, 5]), torch.tensor([1, 2]), \
        torch.tensor([3, 3])
    reg = model.regularization(users, pos, neg)
    assert math.isclose(float(reg.detach()),
                        frobenius_reg(w[users], w[U + pos], w[U + neg]),
                        rel_tol=1e-5)


def test_lightgcn_caches_graph():
    data = toy_data()
    model = LightGCNRecommender.from_data(data, embedding_dim=4)
    first = model.graph(data).user_item()
    assert model.graph(data).user_item().blocks() is first.blocks()
    data[RATES].edge_index = data[RATES].edge_index[:, :-3].clone()
    assert model.graph(data).user_item() is not first
    uncached = LightGCNRecommender.from_data(data, embedding_dim=4,
                                             cached=False)
    assert uncached.graph(data).user_item() is not \
        uncached.graph(data).user_item()


# ---------------------------------------------------------------------------
# VBPR
# ---------------------------------------------------------------------------
def test_vbpr_matches_dense_and_mmrec_dims():
    data = toy_data()
    d = 4
    model = VBPR.from_data(data, embedding_dim=d)
    torch.nn.init.normal_(model.item_linear.bias)
    out = model(data)
    U, I = model.num_users, model.num_items
    assert out.user_emb.shape == (U, 2 * d)  # MMRec: u_embedding [U, 2d]
    assert out.item_emb.shape == (I, 2 * d)  # [e_i (d) || W f_i (d)]
    assert model.item_linear.in_features == 6 + 4
    W, b = model.item_linear.weight.double(), model.item_linear.bias.double()
    for i in range(I):
        f = torch.cat([data['item'].x_image[i], data['item'].x_text[i]])
        q = torch.cat([model.item_embedding[i].double(), W @ f.double() + b])
        assert torch.allclose(out.item_emb[i].double(), q, atol=1e-6)
    assert torch.equal(out.user_emb, model.user_embedding)

    users, pos, neg = torch.tensor([0, 1, 4]), torch.tensor([2, 3, 3]), \
        torch.tensor([5, 0, 8])
    reg = model.regularization(users, pos, neg, out)
    ref = frobenius_reg(out.user_emb[users], out.item_emb[pos],
                        out.item_emb[neg])
    assert math.isclose(float(reg.detach()), ref, rel_tol=1e-5)
    # The MMRec regulariser reaches the linear layer:
    reg.backward()
    assert model.item_linear.weight.grad.abs().sum() > 0


def test_vbpr_init_dropout_and_single_modality():
    data = toy_data(dims=(('audio', 3), ))
    model = VBPR.from_data(data, embedding_dim=4, dropout=0.5)
    assert torch.equal(model.item_linear.bias, torch.zeros(4))
    model.eval()
    a, b = model(data), model(data)
    assert torch.equal(a.item_emb, b.item_emb)  # no dropout in eval
    model.train()
    c = model(data)
    assert (c.user_emb == 0).any()
    with pytest.raises(ValueError, match="forward output 'out'"):
        VBPR.from_data(data).regularization(torch.tensor([0]),
                                            torch.tensor([0]),
                                            torch.tensor([1]))


# ---------------------------------------------------------------------------
# FREEDOM (its item-item graph form: tests/transforms/test_knn_graph.py)
# ---------------------------------------------------------------------------
def test_freedom_item_graph_is_built_once_and_used():
    data = toy_data()
    model = FREEDOM.from_data(data, embedding_dim=4, knn_k=3,
                              edge_dropout=0.0)
    model.eval()
    ei, ew = model.knn_graph  # recorded by from_data (set_graph)
    want = mixed_cosine_knn_graph({m: data['item'][f'x_{m}']
                                   for m in ('image', 'text')}, 3)
    assert torch.equal(ei, want[0]) and torch.equal(ew, want[1])
    op = model.graph(data).own('knn')
    assert model.graph(data).own('knn') is op  # cached operator
    model(data)
    assert model.knn_graph[0] is ei
    # built with the constructor: recorded on the first full-graph forward
    fresh = FREEDOM(model.num_users, model.num_items, model.feature_dims,
                    4, knn_k=3, finetune_features=False)
    with pytest.raises(ValueError, match='no item graph yet'):
        fresh.knn_graph
    fresh.eval()(data)
    assert torch.equal(fresh.knn_graph[0], ei)


# ---------------------------------------------------------------------------
# FREEDOM: degree-sensitive edge pruning
# ---------------------------------------------------------------------------
def test_pruning_count_subset_reproducible():
    data = toy_data(U=30, I=20, E=150)
    ei = data[RATES].edge_index
    E = ei.size(1)
    for p in (0.8, 0.5, 0.33):
        g = torch.Generator().manual_seed(7)
        kept = degree_sensitive_edge_pruning(ei, 30, 20, p, g)
        assert kept.size(1) == int(E * (1. - p))  # MMRec's count
        assert abs(kept.size(1) - round((1 - p) * E)) <= 1
        all_keys = set((ei[0] * 20 + ei[1]).tolist())
        keys = (kept[0] * 20 + kept[1]).tolist()
        assert set(keys) <= all_keys  # never invents an edge
        assert len(set(keys)) == len(keys)  # without replacement
        again = degree_sensitive_edge_pruning(
            ei, 30, 20, p, torch.Generator().manual_seed(7))
        assert torch.equal(kept, again)
        other = degree_sensitive_edge_pruning(
            ei, 30, 20, p, torch.Generator().manual_seed(8))
        assert not torch.equal(kept, other)
    assert torch.equal(degree_sensitive_edge_pruning(ei, 30, 20, 0.0), ei)
    with pytest.raises(ValueError, match='edge_dropout'):
        degree_sensitive_edge_pruning(ei, 30, 20, 1.0)


def test_pruning_prefers_low_degree_edges():
    # user 0 and item 0 are hubs; edge (1, 1) joins two degree-1 nodes.
    users = [0] * 8 + [1, 2, 3]
    items = list(range(8)) + [8, 0, 0]
    ei = torch.tensor([users, items])
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(ei.size(1))
    for _ in range(400):
        kept = degree_sensitive_edge_pruning(ei, 4, 9, 0.7, g)
        key = kept[0] * 9 + kept[1]
        counts += torch.isin(ei[0] * 9 + ei[1], key).float()
    hub_hub = 0  # (0, 0): deg 8 * 3
    leaf_leaf = 8  # (1, 8): deg 1 * 1
    assert counts[leaf_leaf] > 3 * counts[hub_hub]


def test_freedom_pruned_graph_per_epoch_and_full_graph_in_eval():
    data = toy_data(U=20, I=15, E=90)
    U, I = 20, 15
    model = FREEDOM.from_data(data, embedding_dim=4, knn_k=3,
                              edge_dropout=0.6, num_layers=2)
    E = data[RATES].edge_index.size(1)

    def dense_ref(edge_index):
        xs = {m: data['item'][f'x_{m}'] for m in ('image', 'text')}
        S = dense_knn(xs, 3, {'image': 0.1, 'text': 0.9})
        h = S @ model.item_embedding.weight.detach().double()
        x0 = torch.cat([model.user_embedding.weight,
                        model.item_embedding.weight]).detach()
        z = dense_lightgcn(x0, dense_norm_adj(edge_index, U, I), 2)
        return z[:U], z[U:] + h

    model.train()
    model.on_epoch_start(0, torch.Generator().manual_seed(1))
    out0 = model(data)
    kept0 = model.pruned_edge_index
    assert kept0.size(1) == int(E * (1 - 0.6))
    ru, ri = dense_ref(kept0)
    assert torch.allclose(out0.user_emb.double(), ru, atol=1e-6)
    assert torch.allclose(out0.item_emb.double(), ri, atol=1e-6)
    # Same graph for every batch of the epoch:
    model(data)
    assert model.pruned_edge_index is kept0
    model.on_epoch_start(1, torch.Generator().manual_seed(2))
    model(data)
    assert not torch.equal(model.pruned_edge_index, kept0)

    # Reproducible with a seeded generator:
    again = FREEDOM.from_data(data, embedding_dim=4, knn_k=3,
                              edge_dropout=0.6)
    gen = torch.Generator().manual_seed(1)
    again.on_epoch_start(0, gen)
    again(data)
    assert torch.equal(again.pruned_edge_index, kept0)

    # Evaluation uses the full training graph:
    model.eval()
    full = model(data)
    ru, ri = dense_ref(data[RATES].edge_index)
    assert torch.allclose(full.user_emb.double(), ru, atol=1e-6)
    assert torch.allclose(full.item_emb.double(), ri, atol=1e-6)
    emb = model.embed(data)
    assert torch.allclose(emb.user_emb, full.user_emb)
    # edge_dropout=0 trains on the full graph too:
    nodrop = FREEDOM.from_data(data, embedding_dim=4, knn_k=3,
                               edge_dropout=0.0)
    nodrop.load_state_dict(model.state_dict())
    nodrop.train()
    assert torch.allclose(nodrop(data).user_emb, full.user_emb, atol=1e-6)


def test_freedom_layer_names_match_the_other_models():
    # num_layers = user-item (LightGCN) depth, num_item_layers = item-item
    # depth, as in BRMRS; checked against the dense reference.
    data = toy_data(U=20, I=15, E=90)
    U = 20
    model = FREEDOM.from_data(data, embedding_dim=4, knn_k=3, num_layers=3,
                              num_item_layers=2).eval()
    assert (model.num_layers, model.num_item_layers) == (3, 2)
    xs = {m: data['item'][f'x_{m}'] for m in ('image', 'text')}
    S = dense_knn(xs, 3, {'image': 0.1, 'text': 0.9})
    h = S @ (S @ model.item_embedding.weight.detach().double())
    x0 = torch.cat([model.user_embedding.weight,
                    model.item_embedding.weight]).detach()
    z = dense_lightgcn(x0, dense_norm_adj(data[RATES].edge_index, U, 15), 3)
    out = model(data)
    assert torch.allclose(out.user_emb.double(), z[:U], atol=1e-6)
    assert torch.allclose(out.item_emb.double(), z[U:] + h, atol=1e-6)
    # MMRec's defaults: n_ui_layers=2, n_mm_layers=1, pruning ratio 0.8.
    default = FREEDOM.from_data(data)
    assert (default.num_layers, default.num_item_layers,
            default.edge_dropout) == (2, 1, 0.8)
    # The depths are keyword-only: an old positional call cannot swap them.
    with pytest.raises(TypeError):
        FREEDOM(3, 3, {'image': 2}, 8, 1, 2, finetune_features=False)


def test_freedom_training_forward_without_epoch_start_prunes():
    data = toy_data()
    model = FREEDOM.from_data(data, embedding_dim=4, knn_k=3)
    model(data)
    assert model.pruned_edge_index.size(1) == int(
        data[RATES].edge_index.size(1) * (1 - 0.8))


def test_freedom_auxiliary_loss_formula_and_finetuning():
    data = toy_data()
    model = FREEDOM.from_data(data, embedding_dim=4, knn_k=3,
                              modality_bpr_weight=0.3)
    model.on_epoch_start(0, torch.Generator().manual_seed(0))
    out = model(data)
    users, pos, neg = torch.tensor([0, 2, 4, 4]), torch.tensor([1, 3, 5, 0]), \
        torch.tensor([6, 6, 2, 7])
    aux = model.auxiliary_loss(out, users, pos, neg)
    assert list(aux) == ['modality_bpr']
    ref = 0.0
    for m in ('image', 'text'):
        x = data['item'][f'x_{m}'].double()
        W = model.proj[m].weight.detach().double()
        b = model.proj[m].bias.detach().double()
        terms = []
        for u, p, n in zip(users.tolist(), pos.tolist(), neg.tolist()):
            zu = out.user_emb[u].detach().double()
            diff = zu @ (W @ x[p] + b) - zu @ (W @ x[n] + b)
            terms.append(-math.log(1 / (1 + math.exp(-float(diff)))))
        ref += sum(terms) / len(terms)
    assert math.isclose(float(aux['modality_bpr'].detach()), 0.3 * ref,
                        rel_tol=1e-5)
    # MMRec fine-tunes the features through this term (freeze=False):
    aux['modality_bpr'].backward()
    g = model.item_features['image'].grad
    touched = torch.unique(torch.cat([pos, neg]))
    assert g[touched].abs().sum() > 0
    untouched = torch.ones(model.num_items, dtype=torch.bool)
    untouched[touched] = False
    assert g[untouched].abs().sum() == 0
    # Frozen variant: no feature parameters; no L2 term; weight 0 -> {}.
    frozen = FREEDOM.from_data(data, finetune_features=False,
                               modality_bpr_weight=0.0)
    assert len(frozen.item_features) == 0
    assert frozen.auxiliary_loss(frozen(data), users, pos, neg) == {}
    assert float(frozen.regularization(users, pos, neg)) == 0.0


# ---------------------------------------------------------------------------
# Training with BPRObjective
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('name', ['mf', 'lightgcn', 'lightgcn-edge_index',
                                  'vbpr', 'freedom'])
def test_training_reduces_loss(name):
    torch.manual_seed(0)
    data = toy_data(U=25, I=20, E=120, seed=1)
    model = {
        'mf': lambda: BPRMF.from_data(data, embedding_dim=8),
        'lightgcn': lambda: LightGCNRecommender.from_data(data,
                                                          embedding_dim=8),
        'lightgcn-edge_index': lambda: LightGCNRecommender.from_data(
            data, embedding_dim=8, backend='edge_index'),
        'vbpr': lambda: VBPR.from_data(data, embedding_dim=8),
        'freedom': lambda: FREEDOM.from_data(data, embedding_dim=8, knn_k=3,
                                             modality_bpr_weight=0.1),
    }[name]()
    ei = data[RATES].edge_index
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(0)
    objective = BPRObjective.from_data(data, generator=gen, reg_weight=1e-3)

    def loss_with_fixed_negatives():
        objective.generator = torch.Generator().manual_seed(123)
        model.on_epoch_start(0, torch.Generator().manual_seed(5))
        with torch.no_grad():
            terms = objective(model, data, ei[0], ei[1])
        objective.generator = gen
        return float(terms['loss'])

    before = loss_with_fixed_negatives()
    for epoch in range(25):
        model.on_epoch_start(epoch, gen)
        terms = objective(model, data, ei[0], ei[1])
        opt.zero_grad()
        terms['loss'].backward()
        opt.step()
        assert torch.isfinite(terms['loss'])
    if name == 'freedom':
        assert 'modality_bpr' in terms
    after = loss_with_fixed_negatives()
    assert after < 0.8 * before, (before, after)


# ---------------------------------------------------------------------------
# Bad arguments, repr, devices
# ---------------------------------------------------------------------------
def test_bad_arguments():
    data = toy_data()
    dims = {'image': 6, 'text': 4}
    with pytest.raises(ValueError, match='num_users'):
        BPRMF(0, 3)
    with pytest.raises(ValueError, match='embedding_dim'):
        BPRMF(3, 3, embedding_dim=0)
    with pytest.raises(TypeError, match='embedding_dim'):
        LightGCNRecommender(3, 3, embedding_dim=2.5)
    with pytest.raises(ValueError, match='reg_norm'):
        BPRMF(3, 3, reg_norm='l1')
    with pytest.raises(ValueError, match='backend'):
        LightGCNRecommender(3, 3, backend='dense')
    with pytest.raises(ValueError, match='num_layers'):
        LightGCNRecommender(3, 3, num_layers=-1)
    with pytest.raises(ValueError, match='feature_dims'):
        VBPR(3, 3, {})
    with pytest.raises(ValueError, match="modality 'text'"):
        VBPR(3, 3, {'text': 0})
    with pytest.raises(ValueError, match='dropout'):
        VBPR(3, 3, dims, dropout=1.0)
    with pytest.raises(ValueError, match='edge_dropout'):
        FREEDOM(3, 3, dims, edge_dropout=1.0, finetune_features=False)
    with pytest.raises(ValueError, match='knn_k'):
        FREEDOM(3, 3, dims, knn_k=0, finetune_features=False)
    with pytest.raises(ValueError, match='modality_bpr_weight'):
        FREEDOM(3, 3, dims, modality_bpr_weight=-1, finetune_features=False)
    with pytest.raises(ValueError, match='one entry per modality'):
        FREEDOM(3, 3, dims, modality_weights={'image': 1.0},
                finetune_features=False)
    with pytest.raises(ValueError, match=r"modality_weights\['text'\]"):
        FREEDOM(3, 3, dims, modality_weights={'image': 1.0, 'text': -0.5},
                finetune_features=False)
    with pytest.raises(ValueError, match='must sum to 1'):
        FREEDOM(3, 3, dims, modality_weights={'image': 0, 'text': 0},
                finetune_features=False)
    with pytest.raises(ValueError, match='item_features'):
        FREEDOM(3, 3, dims)  # MMRec fine-tuning needs the features
    with pytest.raises(ValueError, match=r"item_features\['image'\]"):
        FREEDOM(3, 3, dims, item_features={'image': torch.zeros(2, 6),
                                           'text': torch.zeros(3, 4)})

    # Data that does not fit the model:
    other = toy_data(U=13)
    for model in (BPRMF.from_data(data), LightGCNRecommender.from_data(data),
                  VBPR.from_data(data), FREEDOM.from_data(data)):
        with pytest.raises(ValueError, match='13 users'):
            model(other)
    no_text = toy_data(dims=(('image', 6), ))
    for model in (VBPR.from_data(data),
                  FREEDOM.from_data(data, finetune_features=False)):
        with pytest.raises(ValueError,
                           match=r"lacks the modalities \['text'\]"):
            model(no_text)
    wrong = toy_data(dims=(('image', 5), ('text', 4)))
    with pytest.raises(ValueError, match=r"'image' must have shape \[10, 6\]"):
        VBPR.from_data(data)(wrong)
    bad = toy_data()
    bad[RATES].edge_index = torch.tensor([[0, 1], [3, 10]])
    with pytest.raises(ValueError, match=r'item ids in \[3, 10\]'):
        LightGCNRecommender.from_data(bad)
    with pytest.raises(ValueError, match=r'item ids in \[3, 10\]'):
        FREEDOM.from_data(bad)
    model = LightGCNRecommender.from_data(data)
    with pytest.raises(ValueError, match=r'item ids in \[3, 10\]'):
        model(bad)


def test_reprs():
    data = toy_data()
    assert repr(LightGCNRecommender.from_data(data, num_layers=3)) == (
        'LightGCNRecommender(12, 10, embedding_dim=64, num_layers=3, '
        'backend=auto)')
    assert repr(VBPR.from_data(data)) == (
        "VBPR(12, 10, modalities=['image', 'text'], embedding_dim=64)")
    assert repr(FREEDOM.from_data(data)) == (
        "FREEDOM(12, 10, modalities=['image', 'text'], embedding_dim=64, "
        "num_layers=2, num_item_layers=1, edge_dropout=0.8, knn_k=10, "
        "modality_bpr_weight=0.0001)")
    out = BPRMF.from_data(data)(data)
    assert isinstance(out, RecOutput)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip('CUDA is not available')
    data = toy_data()
    for cls, kw in ((BPRMF, {}), (LightGCNRecommender, {}), (VBPR, {}),
                    (FREEDOM, {'knn_k': 3})):
        model = cls.from_data(data, **kw).eval()
        ref = model(data)
        gpu = model.cuda()(data.clone().cuda())
        assert gpu.user_emb.device.type == 'cuda'
        assert torch.allclose(gpu.user_emb.cpu(), ref.user_emb, atol=1e-5)
        assert torch.allclose(gpu.item_emb.cpu(), ref.item_emb, atol=1e-5)
    model = FREEDOM.from_data(data.clone().cuda(), knn_k=3).cuda()
    gen = torch.Generator().manual_seed(0)  # a CPU generator works too
    model.on_epoch_start(0, gen)
    model.train()(data.clone().cuda())
    assert model.pruned_edge_index.device.type == 'cuda'
