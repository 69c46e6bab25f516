r"""The sparse operator of the graphs: every kernel against a dense matrix,
layer means, learnable weights, half precision and the meta device."""
import pytest
import torch
from torch_geometric.typing import WITH_TORCH_SPARSE

from pyg_brmrs.nn.graph import Adjacency

KERNELS = ['csr', 'edge_index', 'torch_sparse']


def case(num_dst=6, num_src=5, nnz=14, seed=0):
    g = torch.Generator().manual_seed(seed)
    ei = torch.stack([torch.randint(num_src, (nnz,), generator=g),
                      torch.randint(num_dst - 1, (nnz,), generator=g)])
    ei = torch.cat([ei, ei[:, :2]], dim=1)  # duplicates are summed
    w = torch.rand(ei.size(1), generator=g, dtype=torch.float64)
    dense = torch.zeros(num_dst, num_src, dtype=torch.float64)
    for (s, t), v in zip(ei.t().tolist(), w.tolist()):
        dense[t, s] += v  # the last target row stays empty
    return ei, w, dense


def skip_missing(kernel):
    if kernel == 'torch_sparse' and not WITH_TORCH_SPARSE:
        pytest.skip('torch-sparse is not installed')


@pytest.mark.parametrize('kernel', KERNELS)
def test_matmul_matches_dense_for_any_trailing_shape(kernel):
    skip_missing(kernel)
    ei, w, dense = case()
    op = Adjacency(ei, w, (6, 5), kernel)
    for shape in ((5, 3), (5, 2, 4)):
        x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        out = op.matmul(x)
        ref = (dense @ x.reshape(5, -1)).view(6, *shape[1:])
        assert out.shape == ref.shape
        assert torch.allclose(out, ref)
        assert torch.equal(out[5], torch.zeros_like(out[5]))
        g = torch.randn_like(out)
        got, = torch.autograd.grad((out * g).sum(), x)
        want, = torch.autograd.grad((ref * g).sum(), x)
        assert torch.allclose(got, want)
    with pytest.raises(ValueError, match='5 source rows'):
        op.matmul(torch.randn(4, 3, dtype=torch.float64))


@pytest.mark.parametrize('kernel', KERNELS)
@pytest.mark.parametrize('last,scale', [(False, None), (True, None),
                                        (False, 1.0)])
def test_layer_mean_matches_power_series(kernel, last, scale):
    skip_missing(kernel)
    ei, w, dense = case(6, 6, 20, seed=1)
    op = Adjacency(ei, w, (6, 6), kernel)
    x = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    L = 3
    h, outs = x.reshape(6, -1), [x.reshape(6, -1)]
    for _ in range(L):
        h = dense @ h
        outs.append(h)
    s = 1 / (L + 1) if scale is None else scale
    ref = (outs[-1] if last else s * torch.stack(outs).sum(0)).view(6, 2, 3)
    out = op.layer_mean(x, L, last=last, scale=scale)
    assert torch.allclose(out, ref)
    got, = torch.autograd.grad(out.pow(2).sum(), x)
    want, = torch.autograd.grad(ref.pow(2).sum(), x)
    assert torch.allclose(got, want)
    with pytest.raises(ValueError, match='square'):
        Adjacency(ei, w, (7, 6), kernel).layer_mean(x, 1)


def test_learnable_weights_use_gather_scatter_and_get_gradients():
    ei, w, dense = case()
    w = w.clone().requires_grad_()
    op = Adjacency(ei, w, (6, 5))
    assert op.backend == 'edge_index'
    x = torch.randn(5, 3, dtype=torch.float64)
    op.matmul(x).sum().backward()
    want = x[ei[0]].sum(1)  # d/dw_e of sum(A x) = sum of the source row
    assert torch.allclose(w.grad, want)
    # the CSR kernel treats the weights as constants
    assert not Adjacency(ei, w, (6, 5), 'csr').edge_weight.requires_grad


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
@pytest.mark.parametrize('kernel', ['csr', 'edge_index'])
def test_half_precision_inputs(dtype, kernel):
    ei, w, dense = case()
    op = Adjacency(ei, w.float(), (6, 5), kernel)
    x = torch.randn(5, 4).to(dtype)
    out = op.matmul(x)
    assert out.dtype == dtype
    ref = (dense.float() @ x.float())
    assert torch.allclose(out.float(), ref, atol=5e-2, rtol=2e-2)
    sq = Adjacency(*case(6, 6, 20, seed=1)[:2], (6, 6), kernel)
    y = torch.randn(6, 4).to(dtype)
    assert sq.layer_mean(y, 2).dtype == dtype


def test_meta_device_and_errors():
    ei, w, _ = case()
    op = Adjacency(ei.to('meta'), w.float().to('meta'), (6, 5))
    assert op.backend == 'edge_index'
    out = op.matmul(torch.randn(5, 2, 3, device='meta'))
    assert out.shape == (6, 2, 3) and out.device.type == 'meta'
    moved = Adjacency(ei, w.float(), (6, 5), 'csr').to('meta')
    assert moved.backend == 'edge_index'
    with pytest.raises(ValueError, match="Unknown backend 'dense'"):
        Adjacency(ei, w, (6, 5), 'dense')
