import math

import pytest
import torch

from pyg_brmrs.loss import (
    CrossModalBPRLoss,
    SynergyBPRLoss,
    bpr_loss,
    cosine_info_nce,
    product_logsumexp,
)


def naive_log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x > -30 else x


def test_bpr_loss_formula():
    pos = torch.tensor([2.0, 0.5, -1.0])
    neg = torch.tensor([1.0, 0.5, 1.0])
    expected = [-naive_log_sigmoid(p - n) for p, n in zip(pos.tolist(),
                                                          neg.tolist())]
    assert torch.allclose(bpr_loss(pos, neg, 'none'), torch.tensor(expected))
    assert math.isclose(float(bpr_loss(pos, neg)), sum(expected) / 3,
                        rel_tol=1e-6)
    assert math.isclose(float(bpr_loss(pos, neg, 'sum')), sum(expected),
                        rel_tol=1e-6)
    with pytest.raises(ValueError, match='same shape'):
        bpr_loss(pos, neg[:2])


def test_cross_modal_bpr_hand_computed():
    pos = [torch.tensor([1.0, 2.0]), torch.tensor([0.0, -1.0])]
    neg = [torch.tensor([0.0, 3.0]), torch.tensor([1.0, -1.0])]
    terms = [[-naive_log_sigmoid(p - n) for p, n in zip(pm.tolist(),
                                                         nm.tolist())]
             for pm, nm in zip(pos, neg)]
    loss = CrossModalBPRLoss()(pos, neg)
    expected = sum(sum(t) / 2 for t in terms)  # sum over m, mean over B
    assert math.isclose(float(loss), expected, rel_tol=1e-6)
    none = CrossModalBPRLoss('none')(pos, neg)
    assert none.shape == (2, 2)
    assert torch.allclose(none, torch.tensor(terms))
    assert math.isclose(float(CrossModalBPRLoss('sum')(pos, neg)),
                        sum(map(sum, terms)), rel_tol=1e-6)
    # [M, B] tensors work as well:
    assert torch.allclose(CrossModalBPRLoss()(torch.stack(pos),
                                              torch.stack(neg)), loss)


def test_synergy_hand_computed():
    theta = 0.5
    pos_f = torch.tensor([3.0, 1.0])
    neg_f = torch.tensor([1.0, 1.0])
    pos_u = [torch.tensor([1.0, 0.0]), torch.tensor([2.0, 1.0])]
    neg_u = [torch.tensor([0.0, 2.0]), torch.tensor([0.0, 0.0])]
    # Delta_f = [2, 0]; Delta_1 = [1, -2]; Delta_2 = [2, 1]; max = [2, 1]
    expected = [-naive_log_sigmoid(2 - 2 - theta),
                -naive_log_sigmoid(0 - 1 - theta)]
    loss = SynergyBPRLoss(theta, reduction='none')(pos_f, neg_f, pos_u, neg_u)
    assert torch.allclose(loss, torch.tensor(expected))
    mean = SynergyBPRLoss(theta)(pos_f, neg_f, pos_u, neg_u)
    assert math.isclose(float(mean), sum(expected) / 2, rel_tol=1e-6)


def test_synergy_gradient_routing():
    theta = 0.1
    pos_f = torch.tensor([1.0], requires_grad=True)
    neg_f = torch.tensor([0.0], requires_grad=True)
    pos_u = [torch.tensor([0.5], requires_grad=True),
             torch.tensor([2.0], requires_grad=True)]  # branch 1 is the max
    neg_u = [torch.zeros(1), torch.zeros(1)]
    SynergyBPRLoss(theta)(pos_f, neg_f, pos_u, neg_u).backward()
    assert pos_f.grad.item() < 0  # push the fused margin up
    assert pos_u[1].grad.item() > 0  # pull the best unimodal margin down
    assert pos_u[0].grad is None or pos_u[0].grad.item() == 0
    for t in [pos_f, *pos_u]:
        t.grad = None
    SynergyBPRLoss(theta, detach_reference=True)(pos_f, neg_f, pos_u,
                                                 neg_u).backward()
    assert pos_f.grad.item() < 0
    assert pos_u[1].grad is None and pos_u[0].grad is None


def test_gradcheck_double():
    torch.manual_seed(0)
    B, M = 5, 3
    args = [torch.randn(B, dtype=torch.float64, requires_grad=True)
            for _ in range(2)]
    pu = torch.randn(M, B, dtype=torch.float64, requires_grad=True)
    nu = torch.randn(M, B, dtype=torch.float64, requires_grad=True)
    syn = SynergyBPRLoss(0.3)
    assert torch.autograd.gradcheck(lambda a, b, c, d: syn(a, b, c, d),
                                    (*args, pu, nu))
    cross = CrossModalBPRLoss()
    assert torch.autograd.gradcheck(lambda c, d: cross(c, d), (pu, nu))
    assert torch.autograd.gradcheck(lambda a, b: bpr_loss(a, b), args)


@pytest.mark.parametrize('scale', [1e4, -1e4])
def test_no_overflow_for_large_scores(scale):
    B = 4
    pos = torch.full((B, ), scale, requires_grad=True)
    neg = torch.full((B, ), -scale, requires_grad=True)
    for loss in [
            bpr_loss(pos, neg),
            CrossModalBPRLoss()([pos, pos], [neg, neg]),
            SynergyBPRLoss(1.0)(pos, neg, [pos * 0.5, neg], [neg, pos]),
    ]:
        loss.backward()
        assert torch.isfinite(loss)
        assert torch.isfinite(pos.grad).all() and torch.isfinite(
            neg.grad).all()
        pos.grad = neg.grad = None
    # a hugely wrong ranking costs about |margin|:
    big = bpr_loss(torch.tensor([-scale]), torch.tensor([scale]))
    assert torch.isfinite(big)


def test_bad_arguments():
    with pytest.raises(ValueError, match='theta'):
        SynergyBPRLoss(0.0)
    with pytest.raises(ValueError, match='theta'):
        SynergyBPRLoss(-1.0)
    with pytest.raises(ValueError, match='theta'):
        SynergyBPRLoss(float('nan'))
    with pytest.raises(ValueError, match='reduction'):
        SynergyBPRLoss(0.1, reduction='max')
    with pytest.raises(ValueError, match='reduction'):
        CrossModalBPRLoss('avg')
    loss = SynergyBPRLoss(0.1)
    with pytest.raises(ValueError, match=r'\[B\]'):
        loss(torch.zeros(3), torch.zeros(2), [torch.zeros(3)], [torch.zeros(3)])
    with pytest.raises(ValueError, match='B = 3'):
        loss(torch.zeros(3), torch.zeros(3), [torch.zeros(2)], [torch.zeros(2)])
    with pytest.raises(ValueError, match='equal size'):
        CrossModalBPRLoss()([torch.zeros(3), torch.zeros(2)],
                            [torch.zeros(3), torch.zeros(2)])
    with pytest.raises(ValueError, match='same shape'):
        CrossModalBPRLoss()([torch.zeros(3)], [torch.zeros(3), torch.zeros(3)])
    with pytest.raises(ValueError, match='at least one'):
        CrossModalBPRLoss()([], [])
    assert 'theta=0.1' in repr(loss)


@pytest.mark.parametrize('scale', [1.0, 100.0])  # large: exp would overflow
def test_product_logsumexp_matches_torch(scale):
    g = torch.Generator().manual_seed(0)
    q = (scale * torch.randn(5, 3, generator=g, dtype=torch.float64)
         ).requires_grad_()
    k = torch.randn(7, 3, generator=g, dtype=torch.float64,
                    requires_grad=True)
    w = torch.randn(5, generator=g, dtype=torch.float64)
    got = product_logsumexp(q, k)
    want = torch.logsumexp(q @ k.t(), dim=1)
    assert torch.isfinite(got).all()
    assert torch.allclose(got, want)
    dq, dk = torch.autograd.grad((got * w).sum(), (q, k))
    eq, ek = torch.autograd.grad((want * w).sum(), (q, k))
    assert torch.allclose(dq, eq) and torch.allclose(dk, ek)
    assert torch.autograd.gradcheck(product_logsumexp, (q.detach().div(
        scale).requires_grad_(), k))
    # one candidate: the score itself
    one = product_logsumexp(q.detach(), k.detach()[:1])
    assert torch.allclose(one, (q.detach() @ k.detach()[:1].t())[:, 0])


def test_product_logsumexp_bad_input():
    with pytest.raises(ValueError, match='no candidate'):
        product_logsumexp(torch.randn(2, 3), torch.randn(0, 3))
    with pytest.raises(ValueError, match=r"\[B, D\] and \[N, D\]"):
        product_logsumexp(torch.randn(2, 3), torch.randn(4, 2))


def test_cosine_info_nce_against_a_loop():
    g = torch.Generator().manual_seed(3)
    a, p = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    c = torch.randn(6, 5, generator=g)
    terms = []
    for b in range(4):
        cos = torch.nn.functional.cosine_similarity
        pos = math.exp(cos(a[b], p[b], dim=0).item() / 0.5)
        ttl = sum(math.exp(cos(a[b], c[j], dim=0).item() / 0.5)
                  for j in range(6))
        terms.append(-math.log(pos / ttl))
    assert cosine_info_nce(a, p, c, 0.5).item() == pytest.approx(
        sum(terms) / 4, rel=1e-5)
    assert cosine_info_nce(a, p, c, 0.5, 'sum').item() == pytest.approx(
        sum(terms), rel=1e-5)
    none = cosine_info_nce(a, p, c, 0.5, 'none')
    assert none.shape == (4, ) and none[2].item() == pytest.approx(
        terms[2], rel=1e-5)
    # a tiny temperature stays finite (the ratio of exponentials overflows)
    assert torch.isfinite(cosine_info_nce(a, p, c, 1e-3))
    with pytest.raises(ValueError, match='reduction'):
        cosine_info_nce(a, p, c, 0.5, 'max')


def test_product_logsumexp_bound_skips_the_shift_only_when_safe():
    g = torch.Generator().manual_seed(5)
    q = torch.nn.functional.normalize(torch.randn(4, 3, generator=g)) / 0.2
    k = torch.nn.functional.normalize(torch.randn(6, 3, generator=g))
    want = torch.logsumexp(q @ k.t(), dim=1)
    for bound in (None, 5.0, 1e4):  # 1e4: too large, the shift is kept
        assert torch.allclose(product_logsumexp(q, k, bound), want)
    big = q * 100  # scores up to 500: exp overflows without the shift
    assert torch.isfinite(product_logsumexp(big, k, bound=500.0)).all()


@pytest.mark.bad_input
def test_synergy_loss_refuses_bad_theta_and_an_empty_batch():
    from pyg_brmrs.loss import SynergyBPRLoss
    for theta in ('abc', True, 0.0, float('nan'), float('inf'), -1):
        with pytest.raises(ValueError, match="'theta' must be a finite"):
            SynergyBPRLoss(theta)
    loss = SynergyBPRLoss(0.1)
    empty = torch.empty(0)
    with pytest.raises(ValueError, match='batch is empty'):
        loss(empty, empty, [empty, empty], [empty, empty])
    assert SynergyBPRLoss(0.1, reduction='sum')(
        empty, empty, [empty, empty], [empty, empty]).item() == 0.0
