r"""GRCN against a loop re-implementation of MMRec's ``grcn.py`` (its
``GATConv`` attention, ``CGCN``, ``EGCN`` with the confidence-weighted
edges, the concatenated representation and the regulariser), and the
routing as the paper describes it."""
import math

import pytest
import torch
import torch.nn.functional as F

from pyg_brmrs.nn import GRCN
from pyg_brmrs.nn.models.grcn import attention_aggregate

from dense_reference import RATES, toy_data


def loop_attention(x, src, dst, N):
    r"""For every target: softmax over its incoming edges of <x_t, x_s>."""
    out = torch.zeros_like(x)
    alpha = torch.zeros(len(src), dtype=x.dtype)
    for t in range(N):
        edges = [k for k in range(len(src)) if dst[k] == t]
        if not edges:
            continue
        logits = torch.stack([x[t] @ x[src[k]] for k in edges])
        a = torch.softmax(logits, 0)
        for k, ak in zip(edges, a):
            alpha[k] = ak
            out[t] = out[t] + ak * x[src[k]]
    return out, alpha


def test_attention_aggregate_equals_loops():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, generator=g, dtype=torch.float64)
    src = torch.tensor([0, 1, 2, 0, 3, 5])
    dst = torch.tensor([4, 4, 4, 5, 5, 6])
    got, ga = attention_aggregate(x, src, dst, 7)
    want, wa = loop_attention(x, src.tolist(), dst.tolist(), 7)
    assert torch.allclose(got, want) and torch.allclose(ga, wa)
    assert torch.equal(got[:4], torch.zeros(4, 3))  # no incoming edge


def reference_forward(model, data, routing):
    U, I = model.num_users, model.num_items
    N = U + I
    ei = data[RATES].edge_index
    user = ei[0].tolist()
    item = [U + i for i in ei[1].tolist()]
    src, dst = user + item, item + user
    parts, alphas = [], []
    for m in model.modalities:
        gcn = model.content[m]
        feats = F.normalize(F.leaky_relu(
            data['item'][f'x_{m}'].double() @ gcn.mlp.weight.t() +
            gcn.mlp.bias), dim=1)
        pref = F.normalize(gcn.preference, dim=1)
        for _ in range(model.num_routing):
            x = torch.cat([pref, feats])
            if routing == 'paper':   # item -> user
                agg, _ = loop_attention(x, item, user, N)
            else:                    # MMRec: user -> item, users get 0
                agg, _ = loop_attention(x, user, item, N)
            pref = F.normalize(pref + agg[:U], dim=1)
        x = torch.cat([pref, feats])
        agg, alpha = loop_attention(x, src, dst, N)
        parts.append(x + agg)
        alphas.append(alpha)
    conf = model.confidence
    w = []
    for k in range(len(src)):
        w.append(max(alphas[j][k] * conf[src[k], j]
                     for j in range(len(alphas))))
    w = torch.relu(torch.stack(w))
    x = F.normalize(model.id_embedding, dim=1)
    out, h = x, x
    for _ in range(2):
        nxt = torch.zeros_like(h)
        for k in range(len(src)):
            nxt[dst[k]] = nxt[dst[k]] + w[k] * h[src[k]]
        h = nxt
        out = out + h
    return torch.cat([out] + parts, 1)


@pytest.mark.parametrize('routing', ['reference', 'paper'])
def test_forward_equals_reference_loops(routing):
    data = toy_data(U=8, I=7, E=25)
    torch.manual_seed(0)
    model = GRCN.from_data(data, embedding_dim=3, content_dim=4,
                           num_routing=2, routing=routing).double()
    with torch.no_grad():  # mixed signs: ReLU prunes some edges
        model.confidence.normal_()
    out = model(data)
    z = reference_forward(model, data, routing)
    U = model.num_users
    assert out.user_emb.shape == (8, 3 + 2 * 4)
    assert torch.allclose(out.user_emb, z[:U], atol=1e-10)
    assert torch.allclose(out.item_emb, z[U:], atol=1e-10)


def test_reference_routing_is_a_no_op_and_the_papers_is_not():
    data = toy_data(U=8, I=7, E=25)
    torch.manual_seed(0)
    base = GRCN.from_data(data, embedding_dim=3, content_dim=4,
                          num_routing=0).double()
    want = base(data).user_emb
    for routing, same in (('reference', True), ('paper', False)):
        model = GRCN.from_data(data, embedding_dim=3, content_dim=4,
                               num_routing=3, routing=routing).double()
        model.load_state_dict(base.state_dict())
        got = model(data).user_emb
        assert torch.allclose(got, want) == same, routing


def test_regulariser_equals_mmrecs_and_gradients_reach_everything():
    data = toy_data()
    model = GRCN.from_data(data, embedding_dim=4, content_dim=4).double()
    users, pos, neg = torch.tensor([0, 3]), torch.tensor([1, 2]), \
        torch.tensor([4, 0])
    U = model.num_users
    user_t = users.repeat_interleave(2)
    item_t = torch.stack([pos + U, neg + U]).t().reshape(-1)
    e = model.id_embedding
    want = (e[user_t] ** 2 + e[item_t] ** 2).mean() + \
        (model.content['image'].preference ** 2).mean() + \
        (model.content['image'].preference[user_t] ** 2).mean() + \
        (model.content['text'].preference[user_t] ** 2).mean()
    assert torch.allclose(model.regularization(users, pos, neg), want)
    out = model(data)
    (out.score(users, pos).sum() + model.regularization(users, pos, neg)
     ).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and math.isfinite(float(p.grad.sum())), \
            name


def test_edge_dropout_in_training_only_and_bad_arguments():
    data = toy_data()
    model = GRCN.from_data(data, edge_dropout=0.5)
    model.eval()
    a = model(data).user_emb
    assert torch.equal(a, model(data).user_emb)
    model.train()
    torch.manual_seed(1)
    assert not torch.allclose(model(data).user_emb, a)
    with pytest.raises(ValueError, match='routing'):
        GRCN.from_data(data, routing='capsule')
    with pytest.raises(ValueError, match='edge_dropout'):
        GRCN.from_data(data, edge_dropout=1.0)
