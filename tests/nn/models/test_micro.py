r"""MICRO against dense references of its authors' ``codes/Models.py``:
the contrastive term as ``batched_contrastive_loss`` computes it, the
forward pass (per-modality learned graphs, attention fusion) and the
inputs it refuses."""
import copy

import pytest
import torch
import torch.nn.functional as F

from pyg_brmrs.nn import MICRO
from pyg_brmrs.nn.models.micro import grace_contrast

from dense_reference import RATES, toy_data
from test_lattice import dense_knn, dense_laplacian


def micro_batched_contrast(z1, z2, tau, batch_size=3):
    r"""The reference's ``batched_contrastive_loss``, as written."""
    n = z1.size(0)

    def sim(a, b):
        return F.normalize(a) @ F.normalize(b).t()

    def f(x):
        return torch.exp(x / tau)
    losses = []
    for i in range((n - 1) // batch_size + 1):
        mask = torch.arange(n)[i * batch_size:(i + 1) * batch_size]
        refl = f(sim(z1[mask], z1))
        between = f(sim(z1[mask], z2))
        sl = slice(i * batch_size, (i + 1) * batch_size)
        losses.append(-torch.log(between[:, sl].diag() / (
            refl.sum(1) + between.sum(1) - refl[:, sl].diag())))
    return torch.cat(losses).mean()


@pytest.mark.parametrize('tau', [0.5, 0.2])
def test_contrast_is_the_references_batched_loss(tau):
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(10, 4, generator=g, dtype=torch.float64,
                     requires_grad=True)
    z2 = torch.randn(10, 4, generator=g, dtype=torch.float64,
                     requires_grad=True)
    got = grace_contrast(z1, z2, tau)
    want = micro_batched_contrast(z1, z2, tau)
    assert torch.allclose(got, want, atol=1e-10)
    ga = torch.autograd.grad(got, (z1, z2))
    gb = torch.autograd.grad(want, (z1, z2))
    for a, b in zip(ga, gb):
        assert torch.allclose(a, b, atol=1e-8)


def dense_forward(model, data):
    U, I = model.num_users, model.num_items
    ei = data[RATES].edge_index
    n = U + I
    A = torch.eye(n, dtype=torch.float64)
    A[ei[0], U + ei[1]] = 1
    A[U + ei[1], ei[0]] = 1
    A = A / A.sum(1, keepdim=True)
    e = model.item_embedding.weight.double()
    hs = []
    for m in model.modalities:
        learned = dense_laplacian(dense_knn(
            model.proj[m](model.item_features[m]).double(), model.knn_k))
        original = dense_laplacian(dense_knn(
            data['item'][f'x_{m}'].double(), model.knn_k))
        G = (1 - model.lambda_coeff) * learned + \
            model.lambda_coeff * original
        hs.append(G @ e)
    q = model.query.double()
    att = torch.softmax(torch.cat([q(h) for h in hs], -1), dim=-1)
    h = att[:, :1] * hs[0] + att[:, 1:] * hs[1]
    x = torch.cat([model.user_embedding.weight,
                   model.item_embedding.weight]).double()
    out, cur = x, x
    for _ in range(model.num_layers):
        cur = A @ cur
        out = out + cur
    out = out / (model.num_layers + 1)
    return out[:U], out[U:] + F.normalize(h, dim=1), hs, h


def test_forward_matches_a_dense_reference():
    data = toy_data(U=14, I=12, E=60, seed=3)
    torch.manual_seed(0)
    model = MICRO.from_data(data, embedding_dim=8, knn_k=3).eval()
    out = model(data)
    user, item, hs, h = dense_forward(copy.deepcopy(model), data)
    assert torch.allclose(out.user_emb.double(), user, atol=1e-5)
    assert torch.allclose(out.item_emb.double(), item, atol=1e-5)
    assert torch.allclose(out.extras['fused_items'].double(), h, atol=1e-5)
    terms = model.auxiliary_loss(out, None, None, None)
    want = sum(micro_batched_contrast(x, h, 0.5) for x in hs)
    assert float(terms['contrast']) == pytest.approx(0.03 * float(want),
                                                     rel=1e-4)


def test_graphs_rebuilt_once_per_epoch_in_training():
    data = toy_data(U=14, I=12, E=60, seed=4)
    torch.manual_seed(0)
    model = MICRO.from_data(data, embedding_dim=8, knn_k=3).train()
    model.on_epoch_start(0)
    model(data).item_emb.sum().backward()
    assert model.proj['image'].weight.grad is not None
    kept = model._graphs
    model.zero_grad()
    model(data).item_emb.sum().backward()
    assert model._graphs is kept
    assert model.proj['image'].weight.grad is None


def test_bad_inputs_are_named():
    data = toy_data()
    with pytest.raises(ValueError, match="'temperature'"):
        MICRO.from_data(data, temperature=0)
    with pytest.raises(ValueError, match="'lambda_coeff'"):
        MICRO.from_data(data, lambda_coeff=-0.1)
    with pytest.raises(ValueError, match='needs the forward output'):
        MICRO.from_data(data).regularization(
            torch.tensor([0]), torch.tensor([0]), torch.tensor([1]))
