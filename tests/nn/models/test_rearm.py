r"""REARM against dense references of its authors' ``model.py`` and
``utils/helper.py``: the attention between modality entries, the low-rank
meta-network, the whole forward pass over dense graphs, the InfoNCE and
orthogonality terms as REARM writes them, and the inputs it refuses."""
import math

import pytest
import torch
import torch.nn.functional as F

from pyg_brmrs.data.schema import ITEM_SIM, USER_SIM
from pyg_brmrs.nn import REARM
from pyg_brmrs.nn.models.rearm import LowRankMetaNetwork, ModalityAttention
from pyg_brmrs.transforms import HomogeneousKNNGraph

from dense_reference import (
    RATES,
    dense_lightgcn,
    dense_norm_adj,
    sparse_to_dense,
    toy_data,
)


def naive_attention(block, q, kv, res, norm, act):
    r"""One-head attention of embedding size 1 over the d entries, a loop
    per node and entry."""
    mha = block.attention
    (wq, wk, wv) = mha.in_proj_weight.double().view(3)
    (bq, bk, bv) = mha.in_proj_bias.double()
    wo = float(mha.out_proj.weight.detach())
    bo = float(mha.out_proj.bias)
    q, kv = q.double(), kv.double()
    out = torch.zeros_like(q)
    for n in range(q.size(0)):
        keys = wk * kv[n] + bk
        vals = wv * kv[n] + bv
        for a in range(q.size(1)):
            att = torch.softmax((wq * q[n, a] + bq) * keys, dim=0)
            out[n, a] = wo * (att * vals).sum() + bo
    x = res.double() + out
    x = F.layer_norm(x, (x.size(1), ), norm.weight.double(),
                     norm.bias.double(), norm.eps)
    return torch.where(x >= 0, x, float(act.weight) * x)


def test_modality_attention_is_one_head_scalar_attention():
    torch.manual_seed(0)
    block = ModalityAttention(dropout=0.3).eval()
    norm, act = torch.nn.LayerNorm(5), torch.nn.PReLU()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.2, 0.2)
    q, kv, res = torch.randn(4, 5), torch.randn(4, 5), torch.randn(4, 5)
    got = block(q, kv, res, norm, act)
    want = naive_attention(block, q, kv, res, norm, act)
    assert got.shape == (4, 5)
    assert torch.allclose(got.double(), want, atol=1e-5)
    # dropout acts on the attention weights in training only
    block.train()
    torch.manual_seed(1)
    assert not torch.allclose(block(q, kv, res, norm, act), got)


def naive_meta(net, z, f):
    n, d, r = z.size(0), net.embedding_dim, net.rank
    kappa = net.knowledge(f).detach()
    m1 = torch.stack([F.normalize(net.first(kappa[i]), dim=0).view(d, r)
                      for i in range(n)])
    m2 = torch.stack([F.normalize(net.second(kappa[i]), dim=0).view(r, d)
                      for i in range(n)])
    b1, b2 = m1.mean(0), m2.mean(0)
    out = torch.zeros(n, d)
    for i in range(n):
        p1 = torch.softmax(m1[i] + b1, dim=0)  # over the d rows
        p2 = torch.softmax(m2[i] + b2, dim=0)  # over the r rows
        out[i] = p2.t() @ (p1.t() @ z[i])
    return out


def test_meta_network_is_a_personalised_low_rank_transform():
    torch.manual_seed(0)
    net = LowRankMetaNetwork(6, rank=2)
    z, f = torch.randn(7, 6), torch.randn(7, 12, requires_grad=True)
    got = net(z, f)
    assert got.shape == (7, 6)
    assert torch.allclose(got, naive_meta(net, z, f), atol=1e-5)
    # the knowledge is detached: its weights get no gradient
    got.sum().backward()
    assert net.knowledge.weight.grad is None and f.grad is None
    assert net.first[0].weight.grad is not None


def rearm_data(seed=0):
    data = toy_data(U=14, I=11, dims=(('image', 6), ('text', 4)), E=60,
                    seed=seed)
    return HomogeneousKNNGraph(k_item=3, k_user=4, loop='similarity',
                               padding='rearm', seed=0)(data)


def dense_forward(model, data):
    r"""REARM's forward pass with dense graphs and the model's parameters."""
    U, I, d = model.num_users, model.num_items, model.embedding_dim
    ei = data[RATES].edge_index
    v, t = model.modalities
    S_i = sparse_to_dense(data[ITEM_SIM].edge_index,
                          data[ITEM_SIM].edge_weight, I)
    S_u = sparse_to_dense(data[USER_SIM].edge_index,
                          data[USER_SIM].edge_weight, U)
    A = torch.zeros(U, I, dtype=torch.float64)
    A[ei[0], ei[1]] = 1.0
    items = [model.item_embedding.weight.double()]
    users = [model.user_embedding.weight.double()]
    for m in (v, t):
        x = data['item'][f'x_{m}'].double()
        interest = (A @ x) / A.sum(1, keepdim=True).clamp(min=1)
        lin_i, lin_u = model.item_proj[m], model.user_proj[m]
        items.append(x @ lin_i.weight.double().t() + lin_i.bias.double())
        users.append(interest @ lin_u.weight.double().t() +
                     lin_u.bias.double())
    h_i = F.normalize(S_i @ torch.cat(items, 1), dim=1)
    h_u = F.normalize(S_u @ torch.cat(users, 1), dim=1)
    act = float(model.act.weight)

    def prelu(x):
        return torch.where(x >= 0, x, act * x)
    norm = model.norm
    g_v, g_t = h_i[:, d:2 * d], h_i[:, 2 * d:]
    a_v = naive_attention(model.self_attention[0], g_v, g_v, g_v, norm,
                          model.act)
    a_t = naive_attention(model.self_attention[1], g_t, g_t, g_t, norm,
                          model.act)
    c_v = naive_attention(model.cross_attention[0], a_t, a_v, a_v, norm,
                          model.act)
    c_t = naive_attention(model.cross_attention[1], a_v, a_t, a_t, norm,
                          model.act)
    adj = dense_norm_adj(ei, U, I)
    f = dense_lightgcn(torch.cat([prelu(h_u[:, d:]),
                                  torch.cat([c_v, c_t], 1)]), adj,
                       model.num_layers)
    z = dense_lightgcn(torch.cat([h_u[:, :d], h_i[:, :d]]), adj,
                       model.num_layers)
    f_u, f_i, z_u, z_i = f[:U], f[U:], z[:U], z[U:]
    s_u = naive_meta(model.user_meta, z_u.float(), f_u.float()).double()
    s_i = naive_meta(model.item_meta, z_i.float(), f_i.float()).double()

    def rep(f, z, s):
        return torch.cat([prelu(f[:, :d]) + z, prelu(f[:, d:]) + z,
                          prelu(s) + z], 1)
    return rep(f_u, z_u, s_u), rep(f_i, z_i, s_i), f_u, f_i


def test_forward_matches_a_dense_reference():
    data = rearm_data()
    torch.manual_seed(0)
    model = REARM.from_data(data, embedding_dim=8, num_layers=2,
                            rank=2).eval()
    with torch.no_grad():
        model.act.weight.fill_(0.3)
    out = model(data)
    user, item, f_u, f_i = dense_forward(model, data)
    assert out.user_emb.shape == (14, 24) and out.item_emb.shape == (11, 24)
    assert torch.allclose(out.user_emb.double(), user, atol=1e-4)
    assert torch.allclose(out.item_emb.double(), item, atol=1e-4)
    assert torch.allclose(out.extras['modal_item'].double(), f_i, atol=1e-5)
    # the user without training items: interest vector 0
    assert torch.equal(model.user_interest_image[-1], torch.zeros(6))
    x = data['item'].x_image
    ei = data[RATES].edge_index
    u0 = ei[1][ei[0] == 0]
    assert torch.allclose(model.user_interest_image[0], x[u0].mean(0))


def rearm_ssl_loss(a, b, index, tau):
    r"""REARM's ``ssl_loss`` as written (ratio of exponentials)."""
    index = torch.unique(index)
    x, y = F.normalize(a[index], dim=1), F.normalize(b[index], dim=1)
    pos = torch.exp((x * y).sum(1) / tau)
    every = torch.exp(x @ y.t() / tau).sum(1)
    return -torch.log(pos / every).sum() / len(index)


def rearm_diff_loss(feat, index, d):
    r"""REARM's ``cal_diff_loss`` as written."""
    a, b = feat[index, :d], feat[index, d:]
    a, b = a - a.mean(0, keepdim=True), b - b.mean(0, keepdim=True)
    a = a / (a.norm(dim=1, keepdim=True).detach() + 1e-6)
    b = b / (b.norm(dim=1, keepdim=True).detach() + 1e-6)
    return (a.t() @ b).pow(2).mean()


def test_auxiliary_terms_are_rearms_contrast_and_orthogonality():
    data = rearm_data(seed=1)
    torch.manual_seed(0)
    model = REARM.from_data(data, embedding_dim=8, num_layers=2, rank=2,
                            cl_weight=0.3, orth_weight=0.7, temperature=0.5)
    out = model(data)
    users = torch.tensor([0, 3, 3, 5, 7])
    pos = torch.tensor([1, 2, 2, 4, 6])
    neg = torch.tensor([0, 9, 2, 8, 8])
    terms = model.auxiliary_loss(out, users, pos, neg)
    f_u, f_i = out.extras['modal_user'], out.extras['modal_item']
    cl = rearm_ssl_loss(f_i[:, :8], f_i[:, 8:], torch.cat([pos, neg]),
                        0.5) + rearm_ssl_loss(f_u[:, :8], f_u[:, 8:],
                                              users, 0.5)
    orth = rearm_diff_loss(f_i, pos, 8) + rearm_diff_loss(f_u, users, 8)
    assert math.isclose(float(terms['cl']), 0.3 * float(cl), rel_tol=1e-5)
    assert math.isclose(float(terms['orth']), 0.7 * float(orth),
                        rel_tol=1e-5)
    assert REARM.from_data(data, cl_weight=0.0, orth_weight=0.0
                           ).auxiliary_loss(out, users, pos, neg) == {}


def test_bad_inputs_are_named():
    data = rearm_data()
    one = toy_data(dims=(('image', 6), ))
    with pytest.raises(ValueError, match='exactly two modalities'):
        REARM.from_data(one)
    with pytest.raises(ValueError, match="lacks: add it with "
                       "HomogeneousKNNGraph"):
        REARM.from_data(toy_data())(toy_data())
    with pytest.raises(ValueError, match="'temperature'"):
        REARM.from_data(data, temperature=0.0)
    with pytest.raises(ValueError, match="'rank'"):
        REARM.from_data(data, rank=0)
    model = REARM(14, 11, {'image': 6, 'text': 4}, finetune_features=False)
    with pytest.raises(ValueError, match='no user interest vectors yet'):
        model._interest('image')
