r"""LightGCN's bipartite user-item operator: values and gradients against a
dense reference, with and without the mini-batch (Horvitz-Thompson) factors,
restricted user rows, and every kernel it falls back to."""
import pytest
import torch

from pyg_brmrs.nn.graph import BipartiteAdjacency
from pyg_brmrs.nn.conv import MultiModalLGConv
from pyg_brmrs.utils.sparse import CSRAdjacency, bipartite_to_homogeneous


@pytest.fixture(params=['mkl', 'reduce'])
def kernel(request, monkeypatch):
    # both CPU kernels: MKL's product into an uninitialised output, and
    # torch.sparse.mm(reduce="sum") (the path without MKL)
    if request.param == 'mkl':
        if not torch.backends.mkl.is_available():
            pytest.skip('this torch is built without MKL')
    else:
        monkeypatch.setattr(torch.backends.mkl, 'is_available',
                            lambda: False)
    return request.param


def test_layer_means_agree_across_kernels(monkeypatch):
    # values and gradients of the homogeneous and bipartite layer sums are
    # the same with either kernel (up to float rounding)
    g = torch.Generator().manual_seed(1)
    ei = torch.randint(0, 12, (2, 40), generator=g)
    w = torch.rand(40, generator=g)
    bi = torch.stack([torch.randint(0, 10, (30, ), generator=g),
                      torch.randint(0, 6, (30, ), generator=g)])
    x = torch.randn(12, 4, generator=g, requires_grad=True)
    xu = torch.randn(10, 4, generator=g, requires_grad=True)
    xi = torch.randn(6, 4, generator=g, requires_grad=True)
    results = []
    for mkl in (True, False):
        if not mkl:
            monkeypatch.setattr(torch.backends.mkl, 'is_available',
                                lambda: False)
        h = CSRAdjacency(ei, w, (12, 12)).layer_mean(x, 3)
        hu, hi = BipartiteAdjacency(bi, 10, 6).layer_mean(xu, xi, 2)
        loss = (h.pow(2).sum() + (hu * torch.arange(4.)).sum() +
                hi.pow(3).sum())
        grads = torch.autograd.grad(loss, [x, xu, xi])
        results.append([h, hu, hi, *grads])
    for a, b in zip(*results):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def bipartite_case(seed=0, num_users=11, num_items=7):
    g = torch.Generator().manual_seed(seed)
    ei = torch.stack([torch.randint(0, num_users - 1, (30, ), generator=g),
                      torch.randint(0, num_items, (30, ), generator=g)])
    return BipartiteAdjacency(ei, num_users, num_items), g  # last user: none


@pytest.mark.parametrize('num_layers', [0, 1, 2, 3])
@pytest.mark.parametrize('last,scale', [(False, None), (False, 1.0),
                                        (True, None)])
def test_bipartite_layer_mean_on_user_rows(kernel, num_layers, last, scale):
    # the restricted output equals the rows of the full one, values and
    # gradients of both inputs (repeated rows, a user without items)
    op, g = bipartite_case()
    rows = torch.tensor([3, 10, 0, 3, 7])
    xu = torch.randn(11, 5, generator=g, dtype=torch.float64,
                     requires_grad=True)
    xi = torch.randn(7, 5, generator=g, dtype=torch.float64,
                     requires_grad=True)
    wu = torch.randn(5, 5, generator=g, dtype=torch.float64)
    wi = torch.randn(7, 5, generator=g, dtype=torch.float64)
    full_u, full_i = op.layer_mean(xu, xi, num_layers, last=last,
                                   scale=scale)
    part_u, part_i = op.with_user_rows(rows).layer_mean(
        xu, xi, num_layers, last=last, scale=scale)
    assert part_u.shape == (5, 5)
    assert torch.allclose(part_u, full_u[rows])
    assert torch.allclose(part_i, full_i)
    want = torch.autograd.grad((full_u[rows] * wu).sum() +
                               (full_i * wi).sum(), [xu, xi])
    got = torch.autograd.grad((part_u * wu).sum() + (part_i * wi).sum(),
                              [xu, xi])
    for a, b in zip(got, want):
        assert torch.allclose(a, b)
    # without autograd: the same values
    with torch.no_grad():
        u, i = op.with_user_rows(rows).layer_mean(xu, xi, num_layers,
                                                  last=last, scale=scale)
    assert torch.allclose(u, full_u[rows]) and torch.allclose(i, full_i)


def test_bipartite_layer_mean_user_rows_edge_cases_and_errors(kernel):
    op, g = bipartite_case()
    xu, xi = torch.randn(11, 3, generator=g), torch.randn(7, 3, generator=g)
    u, i = op.with_user_rows(torch.zeros(0, dtype=torch.long)).layer_mean(
        xu, xi, 2)
    assert u.shape == (0, 3)
    assert torch.allclose(i, op.layer_mean(xu, xi, 2)[1])
    for bad, error, match in (
            (torch.tensor([0.5]), TypeError, "'user_rows' must be an integer"),
            (torch.tensor([True]), TypeError, 'must be an integer'),
            ([1, 2], TypeError, 'must be an integer'),
            (torch.tensor([[1]]), ValueError, r'1-D tensor of ids \(got '
             r'shape \[1, 1\]'),
            (torch.tensor([11]), ValueError, r'outside \[0, 11\) \(min 11'),
            (torch.tensor([-1]), ValueError, r'outside \[0, 11\)')):
        with pytest.raises(error, match=match):
            op.with_user_rows(bad).layer_mean(xu, xi, 2)




def random_bipartite(U=9, I=7, E=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    ei = torch.stack([torch.randint(0, U - 1, (E, ), generator=g),
                      torch.randint(0, I - 1, (E, ), generator=g)])
    # duplicates are summed; user U-1 and item I-1 are isolated
    return torch.cat([ei, ei[:, :3]], dim=1)


@pytest.mark.parametrize('num_layers', [0, 1, 3])
@pytest.mark.parametrize('last,scale', [(False, None), (True, None),
                                        (False, 1.0), (False, 0.3)])
def test_bipartite_layer_mean_matches_dense_power_series(num_layers, last,
                                                         scale):
    U, I = 9, 7
    ei = random_bipartite(U, I)
    A = torch.zeros(U + I, U + I, dtype=torch.float64)
    for u, i in ei.t().tolist():
        A[u, U + i] += 1.0
        A[U + i, u] += 1.0
    deg = A.sum(1)
    dinv = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    A = dinv.view(-1, 1) * A * dinv.view(1, -1)
    xu = torch.randn(U, 2, 3, dtype=torch.float64, requires_grad=True)
    xi = torch.randn(I, 2, 3, dtype=torch.float64, requires_grad=True)
    op = BipartiteAdjacency(ei, U, I, dtype=torch.float64)
    ou, oi = op.layer_mean(xu.reshape(U, -1), xi.reshape(I, -1), num_layers,
                           last=last, scale=scale)
    x = torch.cat([xu, xi]).reshape(U + I, -1)
    h, outs = x, [x]
    for _ in range(num_layers):
        h = A @ h
        outs.append(h)
    s = 1.0 / (num_layers + 1) if scale is None else scale
    ref = outs[-1] if last else s * torch.stack(outs).sum(0)
    assert torch.allclose(torch.cat([ou, oi]), ref, atol=1e-12)
    w = torch.randn(U + I, 6, dtype=torch.float64)
    ga = torch.autograd.grad((torch.cat([ou, oi]) * w).sum(), (xu, xi))
    gr = torch.autograd.grad((ref * w).sum(), (xu, xi))
    for a, b in zip(ga, gr):
        assert torch.allclose(a, b, atol=1e-12)
    with torch.no_grad():  # the path without autograd gives the same
        nu, ni = op.layer_mean(xu.reshape(U, -1), xi.reshape(I, -1),
                               num_layers, last=last, scale=scale)
    assert torch.equal(nu, ou) and torch.equal(ni, oi)
    with pytest.raises(ValueError, match='user rows'):
        op.layer_mean(xi.reshape(I, -1), xu.reshape(U, -1), num_layers)


def test_bipartite_and_csr_layer_mean_equal_the_layer_by_layer_path():
    """float32: the two-block product, the fused layer mean and autograd
    through MultiModalLGConv layer by layer give the same numbers."""
    from pyg_brmrs.nn.conv import layer_mean
    U, I, L = 40, 30, 3
    ei = random_bipartite(U, I, E=200, seed=1)
    homo = bipartite_to_homogeneous(ei, U)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(U + I, 2, 4, generator=g).requires_grad_()
    w = torch.randn(U + I, 2, 4, generator=g)
    conv = MultiModalLGConv(cached=True)
    # reference: autograd through L calls of the conv
    h, acc = x, None
    for _ in range(L):
        h = conv(h, homo)
        acc = h + x if acc is None else acc + h
    ref = acc * (1.0 / (L + 1))
    (g_ref, ) = torch.autograd.grad((ref * w).sum(), x)
    fused = layer_mean(conv, x, homo, None, L)
    (g_fused, ) = torch.autograd.grad((fused * w).sum(), x)
    op = BipartiteAdjacency(ei, U, I)
    ou, oi = op.layer_mean(x[:U].reshape(U, -1), x[U:].reshape(I, -1), L)
    blocks = torch.cat([ou, oi]).view_as(x)
    (g_blocks, ) = torch.autograd.grad((blocks * w).sum(), x)
    for out, grad in [(fused, g_fused), (blocks, g_blocks)]:
        assert torch.allclose(out, ref, rtol=0, atol=1e-6)
        assert torch.allclose(grad, g_ref, rtol=0, atol=1e-6)
    assert torch.equal(fused, blocks) and torch.equal(g_fused, g_blocks)
    last = layer_mean(conv, x, homo, None, L, last=True)
    assert torch.allclose(last, h, atol=1e-6)


def dense_sampled(ei, U, I, deg_u, deg_i):
    r"""The dense [U + I, U + I] operator of a sample's edges with the full
    graph's degrees and each target's sum scaled by deg / deg_b."""
    A = torch.zeros(U + I, U + I, dtype=torch.float64)
    present = torch.zeros(U + I, dtype=torch.float64)
    for u, i in ei.t().tolist():
        present[u] += 1
        present[U + i] += 1
    deg = torch.cat([deg_u, deg_i]).double()
    for u, i in ei.t().tolist():
        w = 1.0 / (deg[u] * deg[U + i]).sqrt()
        A[u, U + i] += w * deg[u] / present[u]
        A[U + i, u] += w * deg[U + i] / present[U + i]
    return A


@pytest.mark.parametrize('backend', ['csr', 'edge_index'])
@pytest.mark.parametrize('last,scale', [(False, None), (True, None),
                                        (False, 1.0)])
def test_sampled_operator_matches_dense_reference(backend, last, scale):
    # a sample of a larger graph: global degrees, Horvitz-Thompson factors;
    # the operator is not symmetric, so the backward pass needs the
    # transposed blocks
    U, I, L = 8, 6, 3
    ei = random_bipartite(U, I, E=20, seed=3)
    deg_u = torch.bincount(ei[0], minlength=U).double() + \
        torch.arange(U) % 3
    deg_i = torch.bincount(ei[1], minlength=I).double() + \
        torch.arange(I) % 2
    op = BipartiteAdjacency(ei, U, I, deg_u, deg_i, dtype=torch.float64,
                            backend=backend)
    A = dense_sampled(ei, U, I, deg_u, deg_i)
    assert not torch.allclose(A, A.t())
    xu = torch.randn(U, 3, dtype=torch.float64, requires_grad=True)
    xi = torch.randn(I, 3, dtype=torch.float64, requires_grad=True)
    ou, oi = op.layer_mean(xu, xi, L, last=last, scale=scale)
    x = torch.cat([xu, xi])
    h, outs = x, [x]
    for _ in range(L):
        h = A @ h
        outs.append(h)
    s = 1.0 / (L + 1) if scale is None else scale
    ref = outs[-1] if last else s * torch.stack(outs).sum(0)
    assert torch.allclose(torch.cat([ou, oi]), ref, atol=1e-12)
    w = torch.randn(U + I, 3, dtype=torch.float64)
    got = torch.autograd.grad((torch.cat([ou, oi]) * w).sum(), (xu, xi),
                              retain_graph=True)
    want = torch.autograd.grad((ref * w).sum(), (xu, xi), retain_graph=True)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-12)
    # restricted user rows: the rows of the full output, same gradients
    rows = torch.tensor([5, 0, 5, 7])
    pu, pi = op.with_user_rows(rows).layer_mean(xu, xi, L, last=last,
                                                scale=scale)
    assert torch.allclose(pu, ou[rows]) and torch.allclose(pi, oi)
    got = torch.autograd.grad((pu * w[rows]).sum() + (pi * w[U:]).sum(),
                              (xu, xi))
    want = torch.autograd.grad((ref[:U][rows] * w[rows]).sum() +
                               (ref[U:] * w[U:]).sum(), (xu, xi))
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-12)


def test_complete_sample_equals_the_full_operator():
    # every edge present: the factors are exactly 1
    U, I = 9, 7
    ei = random_bipartite(U, I)
    full = BipartiteAdjacency(ei, U, I)
    deg_u = torch.bincount(ei[0], minlength=U).float()
    deg_i = torch.bincount(ei[1], minlength=I).float()
    sample = BipartiteAdjacency(ei, U, I, deg_u, deg_i)
    assert torch.equal(sample.weight_user, full.weight_user)
    assert torch.equal(sample.weight_item, full.weight_item)
    with pytest.raises(ValueError, match="both 'user_degree' and"):
        BipartiteAdjacency(ei, U, I, deg_u, None)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_half_precision_inputs_run_in_float32(dtype):
    U, I = 9, 7
    op = BipartiteAdjacency(random_bipartite(U, I), U, I)
    xu, xi = torch.randn(U, 4), torch.randn(I, 4)
    ref_u, ref_i = op.layer_mean(xu.to(dtype).float(), xi.to(dtype).float(),
                                 2)
    xu_h = xu.to(dtype).requires_grad_()
    ou, oi = op.layer_mean(xu_h, xi.to(dtype), 2)
    assert ou.dtype == dtype and oi.dtype == dtype
    assert torch.allclose(ou.float(), ref_u, atol=2e-2)
    assert torch.allclose(oi.float(), ref_i, atol=2e-2)
    ou.float().sum().backward()
    assert xu_h.grad.dtype == dtype


def test_meta_device_shapes():
    U, I = 9, 7
    ei = random_bipartite(U, I).to('meta')
    op = BipartiteAdjacency(ei, U, I)
    assert op.backend == 'edge_index'
    ou, oi = op.with_user_rows(torch.zeros(3, dtype=torch.long,
                                           device='meta')).layer_mean(
        torch.randn(U, 2, 4, device='meta'),
        torch.randn(I, 2, 4, device='meta'), 2)
    assert ou.shape == (3, 2, 4) and oi.shape == (I, 2, 4)
    assert ou.device.type == 'meta'
