r"""The objectives recomputed by hand: the returned ``"loss"`` of the BR-MRS
objective (both recipes, every assignment, both synergy negatives, with and
without ``detach_reference``) and of REARM's objective equals its formula
evaluated in the test from the model's scores and the sampler's draws
(re-seeding the generator reproduces them); gradients follow the formula
(no gradient through candidate scoring, none through the max term with
``detach_reference=True``)."""
import math

import pytest
import torch
import torch.nn.functional as F

from pyg_brmrs.app import recipes
from pyg_brmrs.data import make_synthetic
from pyg_brmrs.loss import SynergyBPRLoss
from pyg_brmrs.objectives import info_nce, orthogonality

LAMBDA_H, LAMBDA_S, THETA, REG = 0.7, 1.3, 0.2, 0.05


@pytest.fixture(scope='module')
def data():
    d = make_synthetic(num_users=60, num_items=45, feature_dim=6, seed=3)
    return recipes.prepare('brmrs_paper', d, k_item=4, k_user=5)


def build(name, data, **kw):
    torch.manual_seed(0)
    kw = {'lambda_h': LAMBDA_H, **kw}
    model, objective = recipes.build(
        name, data, embedding_dim=6, num_layers=2, num_candidates=5,
        lambda_s=LAMBDA_S, theta=THETA, reg_weight=REG, **kw)
    model = model.double()
    if name == 'brmrs_paper':  # let the fusion heads be non-trivial
        for fuse in (model.user_fusion, model.item_fusion):
            for p in fuse.parameters():
                torch.nn.init.normal_(p, std=0.3)
    return model, objective


def batch(data, size=16, seed=1):
    ei = data['user', 'rates', 'item'].edge_index
    idx = torch.randperm(ei.size(1),
                         generator=torch.Generator().manual_seed(seed))[:size]
    return ei[0, idx], ei[1, idx]


def dot(out, branch, u, i):
    return float(out.user[branch][u] @ out.item[branch][i])


def naive_negatives(out, users, candidates, modalities, assignment):
    r"""Hard negatives by explicit loops over the pool (first max wins)."""
    negatives = {m: [] for m in modalities}
    for b, u in enumerate(users.tolist()):
        pool = candidates[b].tolist()

        def argmax(score):
            best = max(range(len(pool)), key=lambda c: (score(pool[c]), -c))
            return pool[best]

        for m in modalities:
            if assignment == 'same':
                neg = argmax(lambda j: dot(out, m, u, j))
            elif assignment == 'fused':
                neg = argmax(lambda j: dot(out, 'fused', u, j))
            else:
                others = [k for k in modalities if k != m]
                neg = argmax(lambda j: sum(dot(out, k, u, j)
                                           for k in others))
            negatives[m].append(neg)
    return {m: torch.tensor(v) for m, v in negatives.items()}


def naive_reg(model, users, pos, neg):
    total = 0.0
    if model.id_mode != 'none':
        total = (model.user_embedding.weight[users].pow(2).sum() +
                 model.item_embedding.weight[pos].pow(2).sum() +
                 model.item_embedding.weight[neg].pow(2).sum())
    if model.user_mode == 'embedding':
        total = total + model.user_modality_embedding[users].pow(2).sum()
    return total / (2 * users.numel())


def naive_loss(model, objective, data, users, pos, seed):
    r"""The objective's formula, with the draws redone by re-seeding."""
    gen = torch.Generator().manual_seed(seed)
    sampler = objective.sampler
    C = sampler.num_candidates
    candidates = sampler.uniform.sample(users, C, gen)
    uniform = sampler.uniform.sample(users, None, gen)
    if objective.syn_negative == 'pool':
        pick = torch.randint(C, (users.numel(), 1), generator=gen)
        syn_neg = candidates.gather(1, pick).view(-1)
        assert all(int(syn_neg[b]) in candidates[b].tolist()
                   for b in range(users.numel()))
    else:
        syn_neg = uniform
    out = model(data)
    mods = model.modalities
    neg = naive_negatives(out.detach(), users, candidates, mods,
                          sampler.assignment)

    def s(branch, items):
        return (out.user[branch][users] * out.item[branch][items]).sum(-1)

    chns = sum((-F.logsigmoid(s(m, pos) - s(m, neg[m]))).mean()
               for m in mods)
    delta = {b: s(b, pos) - s(b, syn_neg) for b in mods + ['fused']}
    ref = torch.stack([delta[m] for m in mods]).max(0).values
    if objective.syn_loss.detach_reference:
        ref = ref.detach()
    syn = (-F.logsigmoid(delta['fused'] - ref - THETA)).mean()
    reg = naive_reg(model, users, pos, syn_neg)
    return LAMBDA_H * chns + LAMBDA_S * syn + REG * reg, (chns, syn, reg)


@pytest.mark.parametrize('name', ['brmrs', 'brmrs_paper'])
@pytest.mark.parametrize('assignment', ['cross', 'same', 'fused'])
@pytest.mark.parametrize('detach', [False, True])
def test_brmrs_loss_equals_formula(data, name, assignment, detach):
    syn_negative = 'pool' if assignment == 'same' else 'uniform'
    model, objective = build(name, data, assignment=assignment,
                             detach_reference=detach,
                             syn_negative=syn_negative)
    users, pos = batch(data)
    seed = 11
    objective.generator = torch.Generator().manual_seed(seed)
    terms = objective(model, data, users, pos)
    grads = torch.autograd.grad(terms['loss'], list(model.parameters()),
                                allow_unused=True)

    want, (chns, syn, reg) = naive_loss(model, objective, data, users, pos,
                                        seed)
    assert terms['loss'].item() == pytest.approx(want.item(), rel=1e-9)
    assert terms['chns'].item() == pytest.approx(chns.item(), rel=1e-9)
    assert terms['syn'].item() == pytest.approx(syn.item(), rel=1e-9)
    assert terms['reg'].item() == pytest.approx(reg.item(), rel=1e-9)
    # Same gradient as the formula in which the negatives are constants
    # (candidate scoring carries no gradient) and, with detach_reference,
    # the max term is a constant:
    want_grads = torch.autograd.grad(want, list(model.parameters()),
                                     allow_unused=True)
    for (pname, _), g, w in zip(model.named_parameters(), grads,
                                want_grads):
        if w is None:
            assert g is None or bool((g == 0).all()), pname
        else:
            assert torch.allclose(g, w, rtol=1e-7, atol=1e-12), pname


def test_detach_reference_changes_the_gradient(data):
    # The max term passes gradient unless detached: the two settings give
    # the same loss but different gradients.
    users, pos = batch(data)
    losses, grads = [], []
    for detach in (False, True):
        model, objective = build('brmrs_paper', data,
                                 detach_reference=detach, lambda_h=0.0)
        objective.generator = torch.Generator().manual_seed(5)
        loss = objective(model, data, users, pos)['loss']
        losses.append(loss.item())
        grads.append(torch.autograd.grad(loss, model.proj['image'].weight))
    assert losses[0] == pytest.approx(losses[1], rel=1e-12)
    assert not torch.allclose(grads[0][0], grads[1][0])


def test_candidate_scores_carry_no_gradient(data):
    model, objective = build('brmrs', data)
    users, _ = batch(data)
    out = model(data)  # with gradient
    names = model.modalities
    res = objective.sampler(users, {m: out.user[m] for m in names},
                            {m: out.item[m] for m in names})
    for m in names:
        assert not res.scores[m].requires_grad
        # hard[m] is the argmax of the candidate scores:
        best = res.candidates.gather(1, res.scores[m].argmax(1, True))
        assert torch.equal(res.hard[m], best.view(-1))


def test_synergy_loss_gradient_through_the_max_term():
    pos_f = torch.tensor([1.0, 0.5], requires_grad=True)
    neg_f = torch.tensor([0.2, 0.1], requires_grad=True)
    pos_m = torch.tensor([[0.9, 0.1], [0.3, 0.8]], requires_grad=True)
    neg_m = torch.tensor([[0.1, 0.0], [0.2, 0.1]], requires_grad=True)
    for detach in (False, True):
        loss = SynergyBPRLoss(0.1, detach_reference=detach)(
            pos_f, neg_f, pos_m, neg_m)
        g_pf, g_pm = torch.autograd.grad(loss, [pos_f, pos_m],
                                         allow_unused=True)
        # d/d delta_f of -log sigma(x) / B = -(1 - sigma(x)) / B
        delta = torch.tensor([0.8, 0.4]) - torch.tensor([0.8, 0.7]) - 0.1
        want = -(1 - torch.sigmoid(delta)) / 2
        assert torch.allclose(g_pf, want)
        if detach:
            assert g_pm is None or bool((g_pm == 0).all())
        else:
            # only the arg-max branch of each pair gets -grad
            expect = torch.zeros(2, 2)
            expect[0, 0] = -want[0]  # branch 0 has the larger margin (0.8)
            expect[1, 1] = -want[1]  # branch 1 (0.7)
            assert torch.allclose(g_pm, expect)


def test_rearm_terms_equal_naive_formulas():
    torch.manual_seed(0)
    a, b = torch.randn(7, 4, dtype=torch.float64), torch.randn(
        7, 4, dtype=torch.float64)
    tau = 0.3
    nce = 0.0
    for n in range(7):
        def cos(x, y):
            return float(x @ y / (x.norm() * y.norm()))
        num = math.exp(cos(a[n], b[n]) / tau)
        den = sum(math.exp(cos(a[n], b[k]) / tau) for k in range(7))
        nce -= math.log(num / den) / 7
    assert info_nce(a, b, tau).item() == pytest.approx(nce, rel=1e-10)

    ca = a - a.mean(0)
    cb = b - b.mean(0)
    ca = ca / (ca.norm(dim=1, keepdim=True) + 1e-6)
    cb = cb / (cb.norm(dim=1, keepdim=True) + 1e-6)
    total = 0.0
    for i in range(4):
        for j in range(4):
            total += float(sum(ca[n, i] * cb[n, j] for n in range(7))) ** 2
    assert orthogonality(a, b).item() == pytest.approx(total / 16,
                                                       rel=1e-10)


def test_rearm_objective_total(data):
    torch.manual_seed(0)
    model, objective = recipes.build('rearm_objective_on_brmrs', data, embedding_dim=6,
                                     num_layers=1, cl_weight=0.3,
                                     orth_weight=0.2, temperature=0.4,
                                     reg_weight=REG)
    model = model.double()
    users, pos = batch(data)
    objective.generator = torch.Generator().manual_seed(2)
    terms = objective(model, data, users, pos)

    neg = objective.sampler(users,
                            generator=torch.Generator().manual_seed(2))
    out = model(data)
    s_pos = (out.user_emb[users] * out.item_emb[pos]).sum(-1)
    s_neg = (out.user_emb[users] * out.item_emb[neg]).sum(-1)
    bpr = (-F.logsigmoid(s_pos - s_neg)).mean()
    uu, ii = torch.unique(users), torch.unique(torch.cat([pos, neg]))
    uc = out.extras['user_channels'][uu][:, 1:]
    ic = out.extras['item_channels'][ii][:, 1:]
    cl = (info_nce(uc[:, 0], uc[:, 1], 0.4) +
          info_nce(ic[:, 0], ic[:, 1], 0.4))
    orth = orthogonality(uc[:, 0], uc[:, 1]) + orthogonality(ic[:, 0],
                                                             ic[:, 1])
    reg = (model.user_embedding.weight[users].pow(2).sum() +
           model.item_embedding.weight[pos].pow(2).sum() +
           model.item_embedding.weight[neg].pow(2).sum()) / (2 * 16)
    want = bpr + 0.3 * cl + 0.2 * orth + REG * reg
    assert terms['loss'].item() == pytest.approx(want.item(), rel=1e-9)
    assert terms['cl'].item() == pytest.approx(cl.item(), rel=1e-9)
    assert terms['orth'].item() == pytest.approx(orth.item(), rel=1e-9)


def test_batch_scores_equal_one_score_per_call(data):
    from pyg_brmrs.objectives import batch_scores
    model, _ = build('brmrs_paper', data)
    out = model(data)
    users, pos = batch(data)
    g = torch.Generator().manual_seed(2)
    neg = torch.randint(0, data['item'].num_nodes, pos.shape, generator=g)
    items = {'image': [pos, neg], 'fused': [neg, pos, neg]}
    scores = batch_scores(out, users, items)
    for b, lists in items.items():
        assert len(scores[b]) == len(lists)
        for s, i in zip(scores[b], lists):
            assert torch.allclose(s, out.score(users, i, b), rtol=1e-12,
                                  atol=0)


@pytest.mark.parametrize('name', ['brmrs', 'brmrs_paper'])
def test_brmrs_objective_on_the_batch_users_equals_full_output(data, name):
    # The objective runs the model on the batch's users only (BRMRS
    # supports it); the terms and gradients equal those of the full output,
    # with the same draws (repeated users in the batch included).
    users, pos = batch(data, size=24, seed=5)
    users = torch.cat([users, users[:4]])
    pos = torch.cat([pos, pos[:4]])
    results = []
    for subset in (True, False):
        model, objective = build(name, data)
        assert model.supports_user_subset
        if not subset:
            model.supports_user_subset = False
        objective.generator = torch.Generator().manual_seed(3)
        terms = objective(model, data, users, pos)
        grads = torch.autograd.grad(terms['loss'], list(model.parameters()),
                                    allow_unused=True)
        results.append((terms, grads))
    (t1, g1), (t2, g2) = results
    assert set(t1) == set(t2)
    for key in t1:
        assert t1[key].item() == pytest.approx(t2[key].item(), rel=1e-9)
    for a, b in zip(g1, g2):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize('name', ['brmrs', 'brmrs_paper'])
def test_bpr_weight_adds_the_plain_fused_bpr_term(data, name):
    # L + w * mean(-log sigmoid(s_f(u, i+) - s_f(u, j))), j the L_syn
    # negative: checked against the formula, so a flipped sign fails
    w = 0.7
    model, objective = build(name, data, bpr_weight=w)
    users, pos = batch(data, seed=4)
    seed = 5
    objective.generator = torch.Generator().manual_seed(seed)
    terms = objective(model, data, users, pos)
    want, _ = naive_loss(model, objective, data, users, pos, seed)
    gen = torch.Generator().manual_seed(seed)
    objective.sampler.uniform.sample(users, objective.sampler.num_candidates,
                                     gen)
    uniform = objective.sampler.uniform.sample(users, None, gen)
    out = model(data)
    s_pos = (out.user['fused'][users] * out.item['fused'][pos]).sum(-1)
    s_neg = (out.user['fused'][users] * out.item['fused'][uniform]).sum(-1)
    bpr = (-F.logsigmoid(s_pos - s_neg)).mean()
    assert terms['bpr'].item() == pytest.approx(bpr.item(), rel=1e-9)
    assert terms['loss'].item() == pytest.approx((want + w * bpr).item(),
                                                 rel=1e-9)
    # without the term the loss is the formula alone
    model, objective = build(name, data, bpr_weight=0.0)
    objective.generator = torch.Generator().manual_seed(seed)
    terms = objective(model, data, users, pos)
    assert 'bpr' not in terms
    assert terms['loss'].item() == pytest.approx(want.item(), rel=1e-9)


@pytest.mark.parametrize('name', ['brmrs_paper', 'lightgcn', 'bm3',
                                  'rearm_objective_on_brmrs'])
def test_reg_scope_parameters_is_the_squared_norm_of_every_parameter(
        data, name):
    # reg_scope='parameters': R = sum over every trainable tensor of its
    # squared entries (a Python loop over the entries' squares here), and
    # the loss is the batch-scope loss with only that term swapped.
    torch.manual_seed(0)
    extra = dict(embedding_dim=6, reg_weight=REG)
    if name in recipes.BRMRS_RECIPES:
        extra.update(num_candidates=5)
    losses = {}
    for scope in ('batch', 'parameters'):
        torch.manual_seed(0)
        model, objective = recipes.build(name, data, reg_scope=scope,
                                         **extra)
        model = model.double()
        assert objective.reg_scope == scope
        users, pos = batch(data, seed=4)
        objective.generator = torch.Generator().manual_seed(9)
        torch.manual_seed(1)  # models that draw from the global generator
        losses[scope] = objective(model, data, users, pos)
    want = 0.0
    for p in model.parameters():
        if p.requires_grad:
            want += sum(float(v) ** 2 for v in p.detach().reshape(-1))
    got = losses['parameters']
    assert got['reg'].item() == pytest.approx(want, rel=1e-9)
    base = losses['batch']
    assert got['loss'].item() == pytest.approx(
        (base['loss'] - REG * base['reg'] + REG * got['reg']).item(),
        rel=1e-6)
    # every parameter (projections and fusion weights too) gets its
    # 2 * lambda * p share of the gradient
    got['loss'].backward()
    assert all(p.grad is not None for p in model.parameters()
               if p.requires_grad)
    assert "reg_scope='parameters'" in repr(objective)


def test_reg_scope_is_checked(data):
    with pytest.raises(ValueError, match="reg_scope 'all'"):
        recipes.build('brmrs_paper', data, reg_scope='all')
    with pytest.raises(ValueError, match="reg_scope"):
        recipes.build('lightgcn', data, reg_scope='model')


def test_parameter_norm_of_a_module_without_trainable_parameters():
    from pyg_brmrs.loss import parameter_norm
    lin = torch.nn.Linear(3, 2)
    for p in lin.parameters():
        p.requires_grad_(False)
    assert float(parameter_norm(lin)) == 0.0
    lin.weight.requires_grad_(True)
    assert parameter_norm(lin).item() == pytest.approx(
        (lin.weight.detach() ** 2).sum().item())
