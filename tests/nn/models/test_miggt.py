r"""MIG-GT against a re-implementation of its authors' ``mirf_gt.py``
(``MIGGT.forward`` with its ``MGDCF`` modules and ``Transformer``) and the
loss of their ``main.py``, on small random data."""
import math

import pytest
import torch
import torch.nn.functional as F

from pyg_brmrs.app import recipes
from pyg_brmrs.nn import MIGGT
from pyg_brmrs.nn.models.miggt import sampled_attention

from dense_reference import RATES, toy_data


def dense_self_loop_adj(ei, U, I):
    N = U + I
    A = torch.eye(N, dtype=torch.float64)
    for k in range(ei.size(1)):
        u, i = int(ei[0, k]), U + int(ei[1, k])
        A[u, i] = A[i, u] = 1.0
    deg = A.sum(0)
    return deg.rsqrt()[:, None] * A * deg.rsqrt()[None, :]


def mgdcf(A, h0, k, alpha, beta):
    h = h0
    for _ in range(k):
        h = beta * (A @ h) + alpha * h0
    return h / (beta ** k + alpha * sum(beta ** t for t in range(k)))


def reference(model, data, index):
    U, I = model.num_users, model.num_items
    A = dense_self_loop_adj(data[RATES].edge_index, U, I)
    d = model.embedding_dim
    h = mgdcf(A, torch.cat([model.user_embedding, torch.zeros(I, d,
                                                              dtype=A.dtype)]),
              model.id_layers, model.alpha, model.beta)
    for m in model.modalities:
        x = data['item'][f'x_{m}'].double()
        if m == model.random_projection:
            x = x @ model.projection
            x = x / (torch.norm(x, dim=-1, keepdim=True) + 1e-8)
        enc = model.encoders[m]
        x = enc(x)  # eval: BatchNorm with its running statistics
        h = h + mgdcf(A, torch.cat([torch.zeros(U, d, dtype=A.dtype), x]),
                      model.modality_layers[m], model.alpha, model.beta)
    seq = torch.cat([h.unsqueeze(1), h[U:][index]], 1)
    Q = seq @ model.q_proj.weight.t() + model.q_proj.bias
    K = seq @ model.k_proj.weight.t() + model.k_proj.bias
    sim = torch.softmax(Q @ K.transpose(-2, -1) / math.sqrt(Q.size(-1)), -1)
    out = 0.1 * (sim @ seq) + 0.9 * seq
    return out


@pytest.mark.parametrize('dims', [(('image', 6), ('text', 4)),
                                  (('audio', 5), ('image', 7)),
                                  (('text', 3), )])
def test_forward_equals_the_reference(dims):
    data = toy_data(dims=dims)
    torch.manual_seed(0)
    model = MIGGT.from_data(data, embedding_dim=4, hidden_dim=8,
                            num_samples=3, eval_seed=None).double().eval()
    if 'image' in dict(dims) and len(dims) > 1:
        other = [m for m, _ in dims if m != 'image'][0]
        assert model.projection.shape == (dict(dims)['image'],
                                          dict(dims)[other])
    torch.manual_seed(5)
    with torch.no_grad():
        out = model(data)
    torch.manual_seed(5)
    U, I = model.num_users, model.num_items
    index = torch.randint(I, (U + I, 3))
    with torch.no_grad():
        ref = reference(model, data, index)
    assert torch.allclose(out.user_emb, ref[:U, 0], rtol=1e-6, atol=1e-7)
    assert torch.allclose(out.item_emb, ref[U:, 0], rtol=1e-6, atol=1e-7)
    assert torch.allclose(out.extras['memory'], ref[U:], rtol=1e-6,
                          atol=1e-7)


def test_sampled_attention_by_loops():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(3, 4, generator=g, dtype=torch.float64)
    mem = torch.randn(3, 2, 4, generator=g, dtype=torch.float64)
    q = torch.nn.Linear(4, 2).double()
    k = torch.nn.Linear(4, 2).double()
    with torch.no_grad():
        got = sampled_attention(h, mem, q, k)
        check_loops(got, h, mem, q, k)


def check_loops(got, h, mem, q, k):
    for v in range(3):
        seq = [h[v]] + [mem[v, j] for j in range(2)]
        for a in range(3):
            logits = [float(q(seq[a]) @ k(seq[b])) / math.sqrt(2)
                      for b in range(3)]
            w = torch.softmax(torch.tensor(logits, dtype=torch.float64), 0)
            want = 0.1 * sum(w[b] * seq[b] for b in range(3)) + 0.9 * seq[a]
            assert torch.allclose(got[v, a], want, atol=1e-12)


def test_loss_terms_equal_the_references():
    data = toy_data()
    torch.manual_seed(0)
    model, objective = recipes.build('miggt', data, embedding_dim=4,
                                     hidden_dim=8, num_samples=3,
                                     eval_seed=None)
    model = model.double().eval()
    ei = data[RATES].edge_index
    users, pos = ei[0, :7], ei[1, :7]
    neg = torch.randint(model.num_items, (7, 1))
    torch.manual_seed(3)
    terms = objective(model, data, users, pos, negatives={'negatives': neg})
    torch.manual_seed(3)
    with torch.no_grad():
        out = model(data)
    u = out.user_emb[users]
    logits = torch.stack([(u * out.item_emb[pos]).sum(-1),
                          (u * out.item_emb[neg[:, 0]]).sum(-1)], 1)
    info = F.cross_entropy(logits, torch.zeros(7, dtype=torch.long),
                           reduction='sum')
    mem = out.extras['memory'][pos]  # [7, 1 + S, d]
    unsmooth = F.cross_entropy((mem @ u.unsqueeze(-1)).squeeze(-1),
                               torch.zeros(7, dtype=torch.long),
                               reduction='sum')
    reg = 0.5 * (out.user_emb.pow(2).sum() + out.item_emb.pow(2).sum())
    assert terms['info_bpr'].item() == pytest.approx(info.item(), rel=1e-9)
    assert terms['unsmooth'].item() == pytest.approx(unsmooth.item(),
                                                     rel=1e-9)
    assert terms['loss'].item() == pytest.approx(
        (info + unsmooth + 1e-5 * reg).item(), rel=1e-9)
    cfg = recipes.train_config('miggt')
    assert (cfg.lr, tuple(cfg.lr_decay), cfg.batch_size) == \
        (1e-2, (0.99, 1), 8000)


def test_dropouts_in_training_and_the_projection_is_kept():
    data = toy_data()
    model = MIGGT.from_data(data, embedding_dim=4, hidden_dim=8)
    state = model.state_dict()
    assert 'projection' in state
    fresh = MIGGT.from_data(data, embedding_dim=4, hidden_dim=8)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.projection, model.projection)
    model.train()
    torch.manual_seed(0)
    a = model(data).user_emb
    torch.manual_seed(0)
    assert torch.equal(a, model(data).user_emb)  # seeded: reproducible
    b = model(data).user_emb
    assert not torch.allclose(a, b)


def test_bad_arguments():
    data = toy_data()
    for kw, msg in [(dict(modality_layers={'image': 1}), 'modality_layers'),
                    (dict(alpha=0.0, beta=0.0), 'alpha'),
                    (dict(edge_dropout=1.0), 'edge_dropout'),
                    (dict(num_samples=0), 'num_samples')]:
        with pytest.raises(ValueError, match=msg):
            MIGGT.from_data(data, **kw)


def test_evaluation_draws_are_seeded():
    data = toy_data()
    model = MIGGT.from_data(data, embedding_dim=4, hidden_dim=8)
    a, b = model.embed(data), model.embed(data)
    assert torch.equal(a.user_emb, b.user_emb)
    model.eval_seed = 1
    assert not torch.equal(model.embed(data).user_emb, a.user_emb)
    model.eval_seed = None  # the reference: a fresh draw every time
    torch.manual_seed(0)
    c = model.embed(data).user_emb
    assert not torch.equal(c, model.embed(data).user_emb)
