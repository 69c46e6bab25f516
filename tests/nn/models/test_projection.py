import pytest
import torch

from pyg_brmrs.nn.models._projection import extend_with_column, stacked_affine


def _inputs(n=7, dims=(5, 3), d=4, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(n, f, generator=g, dtype=dtype) for f in dims]
    cols = [torch.rand(n, 1, generator=g, dtype=dtype) for _ in dims]
    ws = [torch.randn(d, f, generator=g, dtype=dtype).requires_grad_()
          for f in dims]
    bs = [torch.randn(d, generator=g, dtype=dtype).requires_grad_()
          for _ in dims]
    return xs, cols, ws, bs


def test_stacked_affine_matches_loop_reference():
    xs, cols, ws, bs = _inputs()
    ext = [extend_with_column(x, c) for x, c in zip(xs, cols)]
    out = stacked_affine(ext, ws, bs)
    assert out.shape == (7, 2, 4)
    # naive reference: every entry as a loop over the features
    ref = torch.zeros(7, 2, 4, dtype=torch.float64)
    for j in range(2):
        for n in range(7):
            for k in range(4):
                ref[n, j, k] = sum(xs[j][n, f] * ws[j][k, f]
                                   for f in range(xs[j].size(1))) + \
                    cols[j][n, 0] * bs[j][k]
    assert torch.allclose(out, ref.detach())

    # gradients against autograd through the plain formula
    g = torch.randn(7, 2, 4, dtype=torch.float64)
    grads = torch.autograd.grad((out * g).sum(), ws + bs)
    plain = torch.stack([x @ w.t() + c * b for x, c, w, b in
                         zip(xs, cols, ws, bs)], dim=1)
    expected = torch.autograd.grad((plain * g).sum(), ws + bs)
    for got, want in zip(grads, expected):
        assert got.shape == want.shape
        assert torch.allclose(got, want)


def test_stacked_affine_gradcheck_and_partial_grads():
    xs, cols, ws, bs = _inputs(n=4, dims=(3, 2), d=2)
    ext = [extend_with_column(x, c) for x, c in zip(xs, cols)]
    assert torch.autograd.gradcheck(
        lambda *p: stacked_affine(ext, p[:2], p[2:]), (*ws, *bs))
    # a channel whose parameters are frozen gets no gradient computed
    ws[1].requires_grad_(False)
    bs[1].requires_grad_(False)
    out = stacked_affine(ext, ws, bs)
    gw, gb = torch.autograd.grad(out.sum(), [ws[0], bs[0]])
    assert torch.allclose(gw, ext[0][:, :-1].sum(0).expand(2, -1))
    assert torch.allclose(gb, ext[0][:, -1].sum().expand(2))


def test_stacked_affine_edge_cases():
    # no rows: an empty result and zero gradients
    xs, cols, ws, bs = _inputs(n=0)
    ext = [extend_with_column(x, c) for x, c in zip(xs, cols)]
    out = stacked_affine(ext, ws, bs)
    assert out.shape == (0, 2, 4)
    grads = torch.autograd.grad(out.sum(), ws + bs)
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads)
    # a float64 input is multiplied in the parameters' dtype
    xs, cols, ws, bs = _inputs(dims=(3, ), dtype=torch.float32)
    ext = [extend_with_column(xs[0].double(), cols[0].double())]
    assert stacked_affine(ext, ws, bs).dtype == torch.float32


def test_stacked_affine_bad_inputs():
    xs, cols, ws, bs = _inputs()
    ext = [extend_with_column(x, c) for x, c in zip(xs, cols)]
    with pytest.raises(ValueError, match='as many inputs'):
        stacked_affine(ext, ws[:1], bs)
    with pytest.raises(ValueError, match='at least one'):
        stacked_affine([], [], [])
    with pytest.raises(ValueError, match=r'Channel 1: expected an input'):
        stacked_affine([ext[0], xs[1]], ws, bs)  # no constant column
    with pytest.raises(ValueError, match=r'Channel 0: expected .* bias'):
        stacked_affine(ext, ws, [bs[0][:2], bs[1]])
    with pytest.raises(ValueError, match='must be fixed'):
        stacked_affine([ext[0].requires_grad_(), ext[1]], ws, bs)
    with pytest.raises(ValueError, match=r"'x' \[N, F\] and 'column'"):
        extend_with_column(xs[0], cols[0][:3])
    with pytest.raises(ValueError, match=r"'x' \[N, F\] and 'column'"):
        extend_with_column(xs[0], xs[1])
