r"""LGMRec against dense references of MMRec's ``lgmrec.py``: hypergraph
memberships and propagation, the contrast, the whole forward pass, the
losses; deterministic evaluation; full graph only."""
import math

import pytest
import torch
import torch.nn.functional as F

from pyg_brmrs.data import make_synthetic
from pyg_brmrs.nn import LGMRec
from pyg_brmrs.loss import cosine_info_nce
from pyg_brmrs.nn.models.lgmrec import (
    factored_contrast,
    hypergraph_memberships,
    hypergraph_propagate,
)
from pyg_brmrs.objectives import BPRObjective
from pyg_brmrs.training import TrainConfig, Trainer

from dense_reference import RATES, dense_lightgcn, dense_norm_adj, toy_data


def test_memberships_noise_free_and_gumbel():
    logits = torch.randn(7, 4)
    soft = hypergraph_memberships(logits, 0.2, sample=False)
    assert torch.allclose(soft, torch.softmax(logits / 0.2, dim=1))
    torch.manual_seed(3)
    a = hypergraph_memberships(logits, 0.2, sample=True)
    torch.manual_seed(3)
    want = F.gumbel_softmax(logits, tau=0.2, hard=False, dim=1)
    assert torch.equal(a, want)
    assert torch.allclose(a.sum(1), torch.ones(7))
    assert not torch.allclose(a, soft)


@pytest.mark.parametrize('layers', [1, 2, 3])
def test_hypergraph_propagation_matches_loops(layers):
    g = torch.Generator().manual_seed(0)
    Hi, Hu = torch.rand(6, 3, generator=g), torch.rand(5, 3, generator=g)
    E = torch.randn(6, 4, generator=g, dtype=torch.float64)
    user, item, latent = hypergraph_propagate(Hi.double(), Hu.double(), E,
                                              layers)
    e = E.clone()
    for layer in range(layers):
        # every hyperedge h gathers sum_i H_ih e_i, then spreads it back
        lat = [sum(Hi[i, h].item() * e[i] for i in range(6))
               for h in range(3)]
        new = torch.stack([sum(Hi[i, h].item() * lat[h] for h in range(3))
                           for i in range(6)])
        u = torch.stack([sum(Hu[v, h].item() * lat[h] for h in range(3))
                         for v in range(5)])
        e = new
    assert torch.allclose(item, e) and torch.allclose(user, u)
    assert torch.allclose(latent, torch.stack(lat))
    with pytest.raises(ValueError, match="'num_layers' must be at least 1"):
        hypergraph_propagate(Hi, Hu, E.float(), 0)


def test_contrast_matches_the_reference_ratio():
    g = torch.Generator().manual_seed(1)
    a, p = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    coef, basis = torch.rand(9, 2, generator=g), torch.randn(2, 3,
                                                             generator=g)
    c = coef @ basis
    total = 0.0
    for b in range(4):  # LGMRec's ssl_triple_loss, term by term
        pos = math.exp(F.cosine_similarity(a[b], p[b], dim=0).item() / 0.2)
        ttl = sum(math.exp(F.cosine_similarity(a[b], c[j], dim=0).item()
                           / 0.2) for j in range(9))
        total += -math.log(pos / ttl)
    got = factored_contrast(a, p, coef, basis, 0.2)
    assert got.item() == pytest.approx(total, rel=1e-5)
    full = cosine_info_nce(a, p, c, 0.2, reduction='sum')
    assert full.item() == pytest.approx(total, rel=1e-5)
    # the same gradients through the factors as through the full rows
    coef.requires_grad_(), basis.requires_grad_(), a.requires_grad_()
    factored_contrast(a, p, coef, basis, 0.2).backward()
    grads = [t.grad.clone() for t in (a, coef, basis)]
    for t in (a, coef, basis):
        t.grad = None
    cosine_info_nce(a, p, coef @ basis, 0.2, reduction='sum').backward()
    for got, t in zip(grads, (a, coef, basis)):
        assert torch.allclose(got, t.grad, atol=1e-5)


def dense_forward(model, data):
    r"""MMRec's ``forward`` without noise and dropout (evaluation here):
    cge + normalised mge per modality + alpha * normalised hypergraph."""
    U, I = model.num_users, model.num_items
    ei = data[RATES].edge_index
    A = dense_norm_adj(ei, U, I)
    R = torch.zeros(U, I, dtype=torch.float64)
    R[ei[0], ei[1]] = 1.0
    deg = R.sum(1)
    e = torch.cat([model.user_embedding.weight, model.item_embedding.weight])
    cge = dense_lightgcn(e, A, model.num_layers)
    total = cge.clone()
    ghe = 0.0
    hyper = {}
    for m in model.modalities:
        x = data['item'][f'x_{m}'].double()
        f_i = x @ model.proj[m].double()
        f_u = (R @ f_i) / deg.clamp(min=1)[:, None]
        mge = torch.cat([f_u, f_i])
        for _ in range(model.num_modality_layers):
            mge = A @ mge
        total = total + F.normalize(mge, dim=1)
        li = x @ model.hyper[m].double()
        hi = torch.softmax(li / model.temperature, dim=1)
        hu = torch.softmax((R @ li) / model.temperature, dim=1)
        item = cge[U:]
        for _ in range(model.num_hyper_layers):
            lat = hi.t() @ item
            item, user = hi @ lat, hu @ lat
        hyper[m] = (user, item)
        ghe = ghe + torch.cat([user, item])
    total = total + model.alpha * F.normalize(ghe, dim=1)
    return total[:U], total[U:], hyper


@pytest.mark.parametrize('layers', [(2, 2, 1), (1, 0, 2), (0, 1, 1)])
def test_forward_matches_the_reference(layers):
    data = toy_data(dims=(('text', 4), ('image', 6)))
    torch.manual_seed(0)
    L, Lm, Lh = layers
    model = LGMRec.from_data(data, embedding_dim=5, num_layers=L,
                             num_modality_layers=Lm, num_hyper_layers=Lh,
                             num_hyperedges=3, alpha=0.7)
    assert model.modalities == ['image', 'text']  # MMRec's v_feat first
    model.eval()
    out = model(data)
    u, i, hyper = dense_forward(model, data)
    assert torch.allclose(out.user_emb.double(), u, atol=1e-5)
    assert torch.allclose(out.item_emb.double(), i, atol=1e-5)
    for m in model.modalities:
        assert torch.allclose(out.extras[f'hyper_user_{m}'].double(),
                              hyper[m][0], atol=1e-5)
    # evaluation is deterministic; the reference's noisy evaluation is an
    # option
    assert torch.equal(model(data).user_emb, out.user_emb)
    model.eval_gumbel_noise = True
    assert not torch.allclose(model(data).user_emb, out.user_emb)


def test_losses_match_the_reference():
    data = toy_data()
    torch.manual_seed(2)
    model = LGMRec.from_data(data, embedding_dim=4, num_hyperedges=3,
                             cl_weight=0.5)
    model.eval()
    ei = data[RATES].edge_index
    users, pos = ei[0, :8], ei[1, :8]
    neg = torch.randint(0, model.num_items, (8, ))
    out = model(data)
    aux = model.auxiliary_loss(out, users, pos, neg)
    hu = {m: out.extras[f'hyper_user_{m}'] for m in model.modalities}
    hi = {m: out.extras[f'hyper_item_{m}'] for m in model.modalities}
    v, t = model.modalities
    want = cosine_info_nce(hu[v][users], hu[t][users], hu[t], 0.2,
                           'sum') + \
        cosine_info_nce(hi[v][pos], hi[t][pos], hi[t], 0.2, 'sum')
    assert aux['hypergraph_cl'].item() == pytest.approx(0.5 * want.item(),
                                                        rel=1e-5)
    reg = model.regularization(users, pos, neg, out)
    want = (out.user_emb[users].norm() + out.item_emb[pos].norm()
            + out.item_emb[neg].norm()) / 8
    assert reg.item() == pytest.approx(want.item(), rel=1e-6)
    assert model.auxiliary_loss(out, users, pos, neg) != {}
    model.cl_weight = 0.0
    assert model.auxiliary_loss(out, users, pos, neg) == {}


def test_one_modality_keeps_its_terms_and_has_no_contrast():
    data = toy_data(dims=(('audio', 5), ))
    model = LGMRec.from_data(data, embedding_dim=4, num_hyperedges=2)
    model.eval()
    out = model(data)
    u, _, _ = dense_forward(model, data)
    assert torch.allclose(out.user_emb.double(), u, atol=1e-5)
    ei = data[RATES].edge_index
    assert model.auxiliary_loss(out, ei[0, :3], ei[1, :3], ei[1, :3]) == {}


def test_training_draws_noise_and_dropout_and_learns():
    data = make_synthetic(num_users=60, num_items=50, feature_dim=6, seed=1)
    torch.manual_seed(0)
    model = LGMRec.from_data(data, embedding_dim=8)
    model.train()
    assert not torch.equal(model(data).user_emb, model(data).user_emb)
    obj = BPRObjective.from_data(data, reg_weight=1e-6)
    res = Trainer(model, obj, data, TrainConfig(epochs=4, batch_size=128,
                                                lr=1e-2, device='cpu')).fit()
    assert res.history[-1]['bpr'] < res.history[0]['bpr']
    assert 'hypergraph_cl' in res.history[0]


@pytest.mark.bad_input
def test_full_graph_only_and_bad_arguments():
    data = toy_data()
    model = LGMRec.from_data(data, embedding_dim=4)
    batch = data.subgraph({'user': torch.arange(5), 'item': torch.arange(6)})
    batch['user'].n_id, batch['item'].n_id = torch.arange(5), torch.arange(6)
    with pytest.raises(ValueError, match="'LGMRec' computes every "
                       "representation from the whole graph"):
        model(batch)
    from pyg_brmrs.training.batching import make_steps
    with pytest.raises(ValueError, match="batching='full'"):
        make_steps(TrainConfig(batching='neighbor'), data, model,
                   torch.device('cpu'))
    for kw, name in [({'num_hyper_layers': 0}, 'num_hyper_layers'),
                     ({'keep_rate': 0.0}, 'keep_rate'),
                     ({'temperature': 0.0}, 'temperature'),
                     ({'num_hyperedges': 0}, 'num_hyperedges')]:
        with pytest.raises(ValueError, match=f"'{name}'"):
            LGMRec.from_data(data, **kw)
    with pytest.raises(ValueError, match='needs the forward output'):
        model.regularization(torch.tensor([0]), torch.tensor([0]),
                             torch.tensor([1]))
    assert 'LGMRec(' in repr(model) and 'num_hyperedges=4' in repr(model)


def test_contrast_with_zero_candidate_rows_has_finite_gradients():
    # dropout can zero every membership of a node: a zero candidate row
    g = torch.Generator().manual_seed(4)
    a, p = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    coef = torch.rand(5, 2, generator=g)
    coef[1] = 0.0
    coef.requires_grad_()
    basis = torch.randn(2, 4, generator=g, requires_grad=True)
    loss = factored_contrast(a, p, coef, basis, 0.2)
    loss.backward()
    assert torch.isfinite(coef.grad).all() and torch.isfinite(basis.grad).all()
    want = cosine_info_nce(a, p, coef.detach() @ basis.detach(), 0.2, 'sum')
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
