r"""MGDN against a dense reference of MGDCF's ``torch_mgdcf/layers/mgdcf.py``
(the self-looped normalisation, K steps of h <- beta*A h + alpha*h0, the
normaliser gamma, the output regulariser) and the InfoBPR objective of its
``losses.py``."""
import math

import pytest
import torch

from pyg_brmrs.app import recipes
from pyg_brmrs.nn import MGDN
from pyg_brmrs.nn.models.mgdn import diffusion_normalizer

from dense_reference import RATES, toy_data


def dense_self_loop_adj(ei, U, I):
    r"""dgl: add_reverse_edges + add_self_loop + to_simple, then
    deg^-1/2 (A + I) deg^-1/2 with in-degrees (self loop included)."""
    N = U + I
    A = torch.eye(N, dtype=torch.float64)
    for k in range(ei.size(1)):
        u, i = int(ei[0, k]), U + int(ei[1, k])
        A[u, i] = A[i, u] = 1.0
    deg = A.sum(0)
    return deg.rsqrt()[:, None] * A * deg.rsqrt()[None, :]


def test_gamma_is_the_sum_of_the_layer_weights():
    # unrolling h_K = beta^K A^K h0 + alpha * sum_{t<K} beta^t A^t h0: with
    # A = identity the output must be h0 itself
    for alpha, beta, K in [(0.1, 0.9, 4), (1.0, 0.0, 3), (0.3, 0.5, 0)]:
        want = beta ** K + alpha * sum(beta ** t for t in range(K))
        assert diffusion_normalizer(alpha, beta, K) == pytest.approx(want)


@pytest.mark.parametrize('K,alpha,beta', [(4, 0.1, 0.9), (2, 0.5, 0.3),
                                          (0, 0.2, 0.7)])
def test_forward_equals_dense_diffusion(K, alpha, beta):
    data = toy_data()
    ei = data[RATES].edge_index
    # a duplicate interaction counts once, as dgl.to_simple makes it
    data[RATES].edge_index = torch.cat([ei, ei[:, :3]], dim=1)
    model = MGDN.from_data(data, embedding_dim=5, num_layers=K, alpha=alpha,
                           beta=beta).double().eval()
    with torch.no_grad():
        out = model(data)
    U, I = model.num_users, model.num_items
    A = dense_self_loop_adj(ei, U, I)
    h0 = model.embedding.weight.detach().double()
    h = h0
    for _ in range(K):
        h = beta * A @ h + alpha * h0
    gamma = beta ** K + alpha * sum(beta ** t for t in range(K))
    z = h / gamma
    # the operator keeps its weights in float32, as every graph operator
    assert torch.allclose(out.user_emb, z[:U], rtol=1e-6, atol=1e-7)
    assert torch.allclose(out.item_emb, z[U:], rtol=1e-6, atol=1e-7)
    # the isolated user and item: only their self loop
    assert torch.allclose(out.user_emb[U - 1], h0[U - 1], atol=1e-12)
    reg = model.regularization(torch.tensor([0]), torch.tensor([0]),
                               torch.tensor([1]), out)
    assert reg.item() == pytest.approx(0.5 * float((z ** 2).sum()),
                                       rel=1e-6)
    with pytest.raises(ValueError, match='forward output'):
        model.regularization(torch.tensor([0]), torch.tensor([0]),
                             torch.tensor([1]))


def test_dropouts_apply_in_training_only():
    data = toy_data()
    torch.manual_seed(0)
    model = MGDN.from_data(data, embedding_dim=6, x_dropout=0.3,
                           edge_dropout=0.5, z_dropout=0.1)
    model.eval()
    a, b = model(data), model(data)
    assert torch.equal(a.user_emb, b.user_emb)
    model.train()
    c = model(data)
    assert not torch.allclose(c.user_emb, a.user_emb)
    # edge dropout alone: every weight kept is scaled by 1/(1-p)
    model = MGDN.from_data(data, x_dropout=0.0, edge_dropout=0.5,
                           z_dropout=0.0).train()
    op = model.operator(model.graph(data))
    base = model.eval().operator(model.graph(data))
    kept = op.edge_weight != 0
    assert 0 < int(kept.sum()) < op.edge_weight.numel()
    assert torch.allclose(op.edge_weight[kept], 2 * base.edge_weight[kept])


def test_bad_arguments():
    for kw, msg in [(dict(x_dropout=1.0), 'x_dropout'),
                    (dict(edge_dropout=-0.1), 'edge_dropout'),
                    (dict(alpha=-1.0), 'alpha'),
                    (dict(alpha=0.0, beta=0.0), 'both be 0'),
                    (dict(num_layers=-1), 'num_layers')]:
        with pytest.raises(ValueError, match=msg):
            MGDN(4, 5, **kw)


def naive_info_bpr(model, data, users, pos, negs, reduction):
    with torch.no_grad():
        out = model(data)
    losses = []
    for b in range(users.numel()):
        u = out.user_emb[users[b]]
        logits = [float(u @ out.item_emb[pos[b]])]
        logits += [float(u @ out.item_emb[j]) for j in negs[b]]
        m = max(logits)
        lse = m + math.log(sum(math.exp(x - m) for x in logits))
        losses.append(lse - logits[0])
    total = sum(losses)
    return total if reduction == 'sum' else total / len(losses)


@pytest.mark.parametrize('reduction', ['mean', 'sum'])
@pytest.mark.parametrize('exclude', [True, False])
@pytest.mark.parametrize('scoring', ['gather', 'dense', 'auto'])
def test_info_bpr_equals_its_formula(reduction, exclude, scoring):
    data = toy_data()
    model, objective = recipes.build('mgdn', data, embedding_dim=4,
                                     num_negatives=7, reduction=reduction,
                                     exclude_positives=exclude,
                                     reg_weight=0.01, scoring=scoring)
    model = model.double().eval()  # no dropout: one forward = another
    ei = data[RATES].edge_index
    users, pos = ei[0, :9], ei[1, :9]
    objective.generator = torch.Generator().manual_seed(3)
    negs = objective.draw(users)['negatives']
    assert negs.shape == (9, 7)
    if exclude:
        assert not bool(objective.sampler.is_positive(
            users.repeat_interleave(7), negs.reshape(-1)).any())
    terms = objective(model, data, users, pos, negatives={'negatives': negs})
    want = naive_info_bpr(model, data, users, pos, negs.tolist(), reduction)
    assert terms['info_bpr'].item() == pytest.approx(want, rel=1e-9)
    assert terms['loss'].item() == pytest.approx(
        want + 0.01 * terms['reg'].item(), rel=1e-9)
    # one negative: BPR's -log sigmoid(s+ - s-)
    model, objective = recipes.build('mgdn', data, embedding_dim=4,
                                     num_negatives=1, reduction='mean')
    model = model.double().eval()
    out = model(data)
    neg = torch.tensor([[1]] * 9)
    terms = objective(model, data, users, pos, negatives={'negatives': neg})
    s_pos = (out.user_emb[users] * out.item_emb[pos]).sum(-1)
    s_neg = (out.user_emb[users] * out.item_emb[1]).sum(-1)
    bpr = -torch.nn.functional.logsigmoid(s_pos - s_neg).mean()
    assert terms['info_bpr'].item() == pytest.approx(bpr.item(), rel=1e-9)


def test_dense_and_gathered_scores_give_the_same_loss_and_gradients():
    data = toy_data()
    ei = data[RATES].edge_index
    users, pos = ei[0, :11], ei[1, :11]
    grads, losses = [], []
    for scoring in ('gather', 'dense'):
        torch.manual_seed(0)
        model, objective = recipes.build('mgdn', data, embedding_dim=6,
                                         num_negatives=5, scoring=scoring)
        model = model.double().eval()
        assert objective.dense(11, data['item'].num_nodes) == \
            (scoring == 'dense')
        negs = torch.randint(data['item'].num_nodes, (11, 5),
                             generator=torch.Generator().manual_seed(1))
        loss = objective(model, data, users, pos,
                         negatives={'negatives': negs})['loss']
        loss.backward()
        losses.append(loss.item())
        grads.append(model.embedding.weight.grad.clone())
    assert losses[0] == pytest.approx(losses[1], rel=1e-12)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_auto_scoring_rule():
    data = toy_data()
    _, objective = recipes.build('mgdn', data, num_negatives=300)
    assert objective.dense(8000, 6710)  # MGDCF on TikTok: I <= 64 * 301
    assert not objective.dense(8000, 20000)
    assert not objective.dense(20000, 6710)  # 1.3e8 scores > 2**26
    _, objective = recipes.build('mgdn', data, num_negatives=1)
    assert not objective.dense(8000, 6710)  # one negative: gather
    assert objective.dense(8000, 64)


def test_info_bpr_checks_its_arguments():
    data = toy_data()
    for kw, msg in [(dict(num_negatives=0), 'num_negatives'),
                    (dict(num_negatives=True), 'num_negatives'),
                    (dict(reduction='max'), 'reduction'),
                    (dict(scoring='sparse'), 'scoring')]:
        with pytest.raises(ValueError, match=msg):
            recipes.build('mgdn', data, **kw)


def test_the_recipe_carries_the_reference_trainer():
    cfg = recipes.train_config('mgdn', {})
    assert (cfg.lr, tuple(cfg.lr_decay), cfg.batch_size) == \
        (1e-2, (0.98, 1), 8000)
