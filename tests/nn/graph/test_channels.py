import pytest
import torch

from pyg_brmrs.nn.graph.channels import extend_with_column, stacked_affine


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


# ----------------------------------------------------------------------
# propagate: tensor channels and affine channels over one operator
def graph_case(n=7, n_in=5, seed=0):
    from pyg_brmrs.nn.graph import Adjacency
    g = torch.Generator().manual_seed(seed)
    ei = torch.stack([torch.randint(n, (18,), generator=g),
                      torch.randint(n, (18,), generator=g)])
    op = Adjacency(ei, torch.rand(18, generator=g, dtype=torch.float64),
                   (n, n), cache_key='op')
    pre_ei = torch.stack([torch.randint(n_in, (10,), generator=g),
                          torch.randint(n, (10,), generator=g)])
    pre = Adjacency(pre_ei, torch.rand(10, generator=g,
                                       dtype=torch.float64), (n, n_in),
                    cache_key='pre')
    return op, pre, g


def dense_of(op):
    A = torch.zeros(op.size, dtype=torch.float64)
    for (s, t), v in zip(op.edge_index.t().tolist(), op.edge_weight):
        A[t, s] += v
    return A


@pytest.mark.parametrize('last,scale', [(False, None), (True, None),
                                        (False, 1.0)])
@pytest.mark.parametrize('cached', [True, False])
def test_propagate_matches_projection_then_propagation(last, scale, cached):
    from pyg_brmrs.nn.graph import Affine, propagate
    from pyg_brmrs.utils.cache import KeyedCache
    op, pre, g = graph_case()
    S, P = dense_of(op), dense_of(pre)
    d = 3
    emb = torch.randn(7, 2, d, generator=g, dtype=torch.float64,
                      requires_grad=True)
    x1 = torch.randn(7, 4, generator=g, dtype=torch.float64)
    x2 = torch.randn(5, 6, generator=g, dtype=torch.float64)
    w1 = torch.randn(d, 4, generator=g, dtype=torch.float64,
                     requires_grad=True)
    w2 = torch.randn(d, 6, generator=g, dtype=torch.float64,
                     requires_grad=True)
    b1 = torch.randn(d, generator=g, dtype=torch.float64, requires_grad=True)
    b2 = torch.randn(d, generator=g, dtype=torch.float64, requires_grad=True)
    store = KeyedCache()
    cache = store.get if cached else None
    channels = [Affine(x1, w1, b1, name='a'), emb,
                Affine(x2, w2, b2, pre=pre, name='b')]
    L = 2
    out = propagate(op, channels, L, last=last, scale=scale, cache=cache,
                    cache_key='op')
    # reference: every channel as written, propagated layer by layer
    h = torch.cat([(x1 @ w1.t() + b1).unsqueeze(1), emb,
                   (P @ (x2 @ w2.t()) + b2).unsqueeze(1)], dim=1)
    flat, outs = h.reshape(7, -1), [h.reshape(7, -1)]
    for _ in range(L):
        flat = S @ flat
        outs.append(flat)
    if last:
        ref = outs[-1]
    else:
        ref = torch.stack(outs).sum(0)
        ref = ref / (L + 1) if scale is None else ref * scale
    ref = ref.view(7, 4, d)
    assert out.shape == (7, 4, d)
    assert torch.allclose(out, ref)
    params = [emb, w1, w2, b1, b2]
    got = torch.autograd.grad(out.pow(2).sum(), params)
    want = torch.autograd.grad(ref.pow(2).sum(), params)
    for a, b in zip(got, want):
        assert torch.allclose(a, b)
    if cached:
        assert any('propagated' in slot for slot in store._slots)
        again = propagate(op, channels, L, last=last, scale=scale,
                          cache=cache, cache_key='op')
        assert torch.allclose(again, out)


def test_propagate_without_operator_and_channel_order():
    from pyg_brmrs.nn.graph import Affine, propagate
    from pyg_brmrs.utils.cache import KeyedCache
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 5, generator=g)
    w, b = torch.randn(2, 5, generator=g), torch.randn(2, generator=g)
    e = torch.randn(4, 2, generator=g)
    store = KeyedCache()
    out = propagate(None, [Affine(x, w, b, name='x'), e], 3,
                    cache=store.get)
    assert torch.allclose(out[:, 0], x @ w.t() + b, atol=1e-6)
    assert torch.equal(out[:, 1], e)
    # a trainable input is never precomputed
    xt = x.clone().requires_grad_()
    propagate(None, [Affine(xt, w, b, name='t')], 1,
              cache=KeyedCache().get)
    assert not xt.requires_grad or xt.grad is None
