r"""LATTICE against dense references of MMRec's ``lattice.py`` and
``utils/utils.py`` (``build_sim``, ``build_knn_neighbourhood``,
``compute_normalized_laplacian``): the learned graph and its gradient, the
mixture with the frozen graph, the forward pass over D^-1(A+I), and when
the learned graph is rebuilt."""
import pytest
import torch
import torch.nn.functional as F

from pyg_brmrs.nn import LATTICE
from pyg_brmrs.nn.models.lattice import learned_knn_graph, propagate_entries

from dense_reference import RATES, toy_data


def dense_knn(x, k):
    r"""MMRec: cosine similarity, top-k per row kept with its value."""
    xn = x / x.norm(dim=-1, keepdim=True)
    sim = xn @ xn.t()
    val, ind = torch.topk(sim, k, dim=-1)
    return torch.zeros_like(sim).scatter_(-1, ind, val)


def dense_laplacian(adj):
    d = adj.sum(-1).pow(-0.5)
    d[torch.isinf(d)] = 0
    return torch.diagflat(d) @ adj @ torch.diagflat(d)


def to_dense(entries, n):
    row, col, val = entries
    G = torch.zeros(n, n, dtype=val.dtype)
    return G.index_put((row, col), val, accumulate=True)


def test_learned_graph_and_its_gradient_equal_mmrecs_dense_build():
    g = torch.Generator().manual_seed(0)
    xa = torch.randn(15, 6, generator=g, dtype=torch.float64,
                     requires_grad=True)
    xb = torch.randn(15, 4, generator=g, dtype=torch.float64,
                     requires_grad=True)
    omega = torch.tensor([0.3, -0.2], dtype=torch.float64,
                         requires_grad=True)
    w = torch.softmax(omega, 0)
    got = to_dense(learned_knn_graph({'image': xa, 'text': xb}, w, 4), 15)
    want = dense_laplacian(w[0] * dense_knn(xa, 4) + w[1] * dense_knn(xb, 4))
    assert torch.allclose(got, want, atol=1e-10)
    probe = torch.randn(15, 15, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((got * probe).sum(), (xa, xb, omega),
                                retain_graph=True)
    ref = torch.autograd.grad((want * probe).sum(), (xa, xb, omega))
    for a, b in zip(grads, ref):
        assert torch.allclose(a, b, atol=1e-8)


def dense_forward(model, data):
    U, I = model.num_users, model.num_items
    ei = data[RATES].edge_index
    n = U + I
    A = torch.eye(n, dtype=torch.float64)
    A[ei[0], U + ei[1]] = 1
    A[U + ei[1], ei[0]] = 1
    A = A / A.sum(1, keepdim=True)  # D^-1 (A + I)
    w = torch.softmax(model.modal_weight.double(), 0)
    learned = sum(w[j] * dense_knn(model.proj[m](
        model.item_features[m]).double(), model.knn_k)
        for j, m in enumerate(model.modalities))
    original = sum(w[j] * dense_laplacian(dense_knn(
        data['item'][f'x_{m}'].double(), model.knn_k))
        for j, m in enumerate(model.modalities))
    G = (1 - model.lambda_coeff) * dense_laplacian(learned) + \
        model.lambda_coeff * original
    h = G @ model.item_embedding.weight.double()
    x = torch.cat([model.user_embedding.weight,
                   model.item_embedding.weight]).double()
    out, cur = x, x
    for _ in range(model.num_layers):
        cur = A @ cur
        out = out + cur
    out = out / (model.num_layers + 1)
    return out[:U], out[U:] + F.normalize(h, dim=1)


@pytest.mark.parametrize('training', [False, True])
def test_forward_matches_a_dense_reference(training):
    data = toy_data(U=14, I=12, E=60, seed=1)
    torch.manual_seed(0)
    model = LATTICE.from_data(data, embedding_dim=8, knn_k=3)
    with torch.no_grad():
        model.modal_weight.copy_(torch.tensor([0.4, -0.1]))
    model.train(training)
    out = model(data)
    user, item = dense_forward(model, data)
    assert torch.allclose(out.user_emb.double(), user, atol=1e-5)
    assert torch.allclose(out.item_emb.double(), item, atol=1e-5)


def test_learned_graph_is_rebuilt_once_per_epoch_with_its_gradient():
    data = toy_data(U=14, I=12, E=60, seed=2)
    torch.manual_seed(0)
    model = LATTICE.from_data(data, embedding_dim=8, knn_k=3).train()
    model.on_epoch_start(0)
    model(data).item_emb.sum().backward()  # the epoch's first step
    assert model.modal_weight.grad is not None
    assert float(model.modal_weight.grad.abs().sum()) > 0
    first = model._graph
    model.zero_grad()
    with torch.no_grad():  # a step changes the projections
        model.proj['image'].weight.add_(0.5)
    out = model(data)  # same epoch: the kept graph, detached
    assert model._graph is first
    out.item_emb.sum().backward()
    assert model.modal_weight.grad is None
    assert model.proj['image'].weight.grad is None
    model.on_epoch_start(1)
    model(data)
    assert model._graph is not first
    # evaluation builds from the current parameters every call
    model.eval()
    a = model(data).item_emb
    with torch.no_grad():
        model.proj['text'].weight.mul_(-1.0)
    assert not torch.allclose(model(data).item_emb, a)


def test_propagation_of_entries_is_a_sparse_product():
    row = torch.tensor([0, 0, 2])
    col = torch.tensor([1, 2, 0])
    val = torch.tensor([0.5, 2.0, -1.0])
    x = torch.randn(3, 4)
    want = torch.stack([0.5 * x[1] + 2.0 * x[2], torch.zeros(4), -x[0]])
    assert torch.allclose(propagate_entries((row, col, val), x), want)


def test_bad_inputs_are_named():
    data = toy_data()
    with pytest.raises(ValueError, match="'lambda_coeff'"):
        LATTICE.from_data(data, lambda_coeff=1.5)
    with pytest.raises(ValueError, match="'knn_k'"):
        LATTICE.from_data(data, knn_k=0)
    with pytest.raises(ValueError, match='needs the forward output'):
        LATTICE.from_data(data).regularization(
            torch.tensor([0]), torch.tensor([0]), torch.tensor([1]))
