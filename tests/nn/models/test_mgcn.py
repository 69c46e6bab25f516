r"""MGCN against dense references of MMRec's ``mgcn.py``: the purifier, the
cosine kNN item views, the fuser, the forward pass, the losses."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from pyg_brmrs.data import make_synthetic
from pyg_brmrs.nn import MGCN
from pyg_brmrs.loss import cosine_info_nce
from pyg_brmrs.nn.models.mgcn import BehaviorAwareFuser
from pyg_brmrs.objectives import BPRObjective
from pyg_brmrs.training import TrainConfig, Trainer
from pyg_brmrs.transforms import cosine_knn_graph

from dense_reference import (
    RATES,
    dense_lightgcn,
    dense_norm_adj,
    sparse_to_dense,
    toy_data,
)


def test_fuser_matches_a_per_node_loop():
    torch.manual_seed(0)
    fuser = BehaviorAwareFuser(['image', 'text', 'audio'], 4).double()
    views = {m: torch.randn(5, 4, dtype=torch.float64)
             for m in fuser.modalities}
    c = torch.randn(5, 4, dtype=torch.float64)
    got = fuser(views, c)
    W1, b1 = fuser.query[0].weight, fuser.query[0].bias
    q = fuser.query[2].weight.view(-1)
    for n in range(5):
        scores = torch.stack([q @ torch.tanh(W1 @ views[m][n] + b1)
                              for m in fuser.modalities])
        beta = torch.softmax(scores, 0)
        common = sum(beta[j] * views[m][n]
                     for j, m in enumerate(fuser.modalities))
        out = common.clone()
        for m in fuser.modalities:
            gate = torch.sigmoid(fuser.prefer[m].weight @ c[n]
                                 + fuser.prefer[m].bias)
            out = out + gate * (views[m][n] - common)
        assert torch.allclose(got[n], out / 4)


def test_info_nce_matches_the_reference_ratio():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    total = 0.0
    for r in range(6):
        pos = math.exp(F.cosine_similarity(a[r], b[r], dim=0).item() / 0.2)
        ttl = sum(math.exp(F.cosine_similarity(a[r], b[c], dim=0).item()
                           / 0.2) for c in range(6))
        total += -math.log(pos / ttl)
    assert cosine_info_nce(a, b, b, 0.2).item() == pytest.approx(total / 6,
                                                                 rel=1e-5)


def dense_forward(model, data):
    model = copy.deepcopy(model).double()  # the same parameters, float64
    U, I = model.num_users, model.num_items
    ei = data[RATES].edge_index
    A = dense_norm_adj(ei, U, I)
    e_u = model.user_embedding.weight.double()
    e_i = model.item_embedding.weight.double()
    c = dense_lightgcn(torch.cat([e_u, e_i]), A, model.num_layers)
    R = A[:U, U:]  # the normalised user-item block
    views_u, views_i = {}, {}
    for m in model.modalities:
        x = model.item_features[m].double()
        lin, gate = model.proj[m], model.purifier[m]
        h = e_i * torch.sigmoid(gate(lin(x)))
        S = sparse_to_dense(*cosine_knn_graph(data['item'][f'x_{m}'],
                                              model.knn_k, 'cosine'), I)
        for _ in range(model.num_item_layers):
            h = S @ h
        views_i[m], views_u[m] = h, R @ h
    s_u, s_i = model.fuser(views_u, c[:U]), model.fuser(views_i, c[U:])
    return c[:U] + s_u, c[U:] + s_i, s_u, s_i, c


@pytest.mark.parametrize('layers', [(2, 1), (1, 2), (0, 0)])
def test_forward_matches_the_reference(layers):
    data = toy_data(I=14, E=60)
    torch.manual_seed(0)
    model = MGCN.from_data(data, embedding_dim=5, num_layers=layers[0],
                           num_item_layers=layers[1], knn_k=4)
    model.eval()
    out = model(data)
    u, i, s_u, s_i, c = dense_forward(model, data)
    assert torch.allclose(out.user_emb.double(), u, atol=1e-5)
    assert torch.allclose(out.item_emb.double(), i, atol=1e-5)
    assert torch.allclose(out.extras['side_item'].double(), s_i, atol=1e-5)
    # the recorded graphs are the cosine-weighted kNN graphs
    ei, ew = model.own_graphs()['knn_text'].edge_index, \
        model.own_graphs()['knn_text'].edge_weight
    want = cosine_knn_graph(data['item'].x_text, 4, 'cosine')
    assert torch.equal(ei, want[0]) and torch.equal(ew, want[1])


def test_losses_match_the_reference():
    data = toy_data(I=14, E=60)
    torch.manual_seed(1)
    model = MGCN.from_data(data, embedding_dim=4, knn_k=3, cl_weight=0.3)
    model.eval()
    ei = data[RATES].edge_index
    users, pos = ei[0, :8], ei[1, :8]
    neg = torch.randint(0, model.num_items, (8, ))
    out = model(data)
    ex = out.extras
    c_i, c_u = ex['content_item'][pos], ex['content_user'][users]
    want = cosine_info_nce(ex['side_item'][pos], c_i, c_i, 0.2) + \
        cosine_info_nce(ex['side_user'][users], c_u, c_u, 0.2)
    aux = model.auxiliary_loss(out, users, pos, neg)
    assert aux['view_cl'].item() == pytest.approx(0.3 * want.item())
    reg = model.regularization(users, pos, neg, out)
    want = 0.5 * (out.user_emb[users].pow(2).sum()
                  + out.item_emb[pos].pow(2).sum()
                  + out.item_emb[neg].pow(2).sum()) / 8
    assert reg.item() == pytest.approx(want.item(), rel=1e-6)
    model.cl_weight = 0.0
    assert model.auxiliary_loss(out, users, pos, neg) == {}


def test_features_fine_tuned_graph_from_initial_features():
    data = make_synthetic(num_users=60, num_items=50, feature_dim=6, seed=1)
    torch.manual_seed(0)
    model = MGCN.from_data(data, embedding_dim=8)
    graphs = {k: g.edge_weight.clone() for k, g in model.own_graphs().items()}
    obj = BPRObjective.from_data(data, reg_weight=1e-4)
    before = model.item_features['image'].detach().clone()
    res = Trainer(model, obj, data, TrainConfig(
        epochs=3, batch_size=128, lr=1e-2, lr_decay=(0.96, 50),
        device='cpu')).fit()
    assert not torch.equal(model.item_features['image'].detach(), before)
    assert all(torch.equal(g.edge_weight, graphs[k])  # frozen graphs
               for k, g in model.own_graphs().items())
    assert res.history[-1]['bpr'] < res.history[0]['bpr']
    assert res.history[1]['lr'] == pytest.approx(1e-2 * 0.96 ** (1 / 50))


@pytest.mark.bad_input
def test_bad_arguments():
    data = toy_data()
    for kw, name in [({'knn_k': 0}, 'knn_k'), ({'cl_weight': -1.0},
                                                'cl_weight'),
                     ({'temperature': 0.0}, 'temperature')]:
        with pytest.raises(ValueError, match=f"'{name}'"):
            MGCN.from_data(data, **kw)
    with pytest.raises(ValueError, match="needs 'item_features'"):
        MGCN(10, 10, {'image': 3})
    model = MGCN.from_data(data, embedding_dim=4)
    with pytest.raises(ValueError, match='needs the forward output'):
        model.regularization(torch.tensor([0]), torch.tensor([0]),
                             torch.tensor([1]))
    assert 'MGCN(' in repr(model) and 'knn_k=10' in repr(model)
