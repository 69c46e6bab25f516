import pytest
import torch

from pyg_brmrs.nn import MultiModalLGConv
from torch_geometric.typing import WITH_TORCH_SPARSE
from pyg_brmrs.utils import CSRAdjacency, bipartite_to_homogeneous, to_csr


def random_graph(num_nodes=30, num_edges=120, symmetric=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, num_nodes, (2, num_edges), generator=g)
    ei = ei[:, ei[0] != ei[1]]
    if symmetric:
        ei = torch.cat([ei, ei.flip(0)], dim=1)
    ei = torch.unique(ei, dim=1)
    w = torch.rand(ei.size(1), generator=g) + 0.1
    if symmetric:  # same weight in both directions
        key = torch.minimum(ei[0], ei[1]) * num_nodes + torch.maximum(
            ei[0], ei[1])
        w = torch.rand(int(key.max()) + 1, generator=g)[key] + 0.1
    return ei, w


def dense_operator(ei, w, n, normalize):
    """A[i, j] = weight of edge j -> i, optionally D^-1/2 A D^-1/2 with
    deg(i) = sum_j A[i, j]."""
    A = torch.zeros(n, n, dtype=torch.float64)
    for k in range(ei.size(1)):
        A[ei[1, k], ei[0, k]] += 1.0 if w is None else float(w[k])
    if normalize:
        deg = A.sum(dim=1)
        dinv = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
        A = dinv.view(-1, 1) * A * dinv.view(1, -1)
    return A


def available_backends():
    out = ['csr', 'edge_index']
    if WITH_TORCH_SPARSE:
        out.append('torch_sparse')
    return out


@pytest.mark.parametrize('backend', ['csr', 'edge_index', 'torch_sparse'])
@pytest.mark.parametrize('normalize', [True, False])
@pytest.mark.parametrize('weighted', [True, False])
def test_matches_dense_power_series(backend, normalize, weighted):
    if backend not in available_backends():
        pytest.skip('torch-sparse is not installed')
    n, C, d, L = 30, 3, 5, 3
    ei, w = random_graph(n)
    w = w if weighted else None
    A = dense_operator(ei, w, n, normalize)
    x = torch.randn(n, C, d, dtype=torch.float64)
    conv = MultiModalLGConv(normalize=normalize, backend=backend)
    out, ref = x, x
    mean_out, mean_ref = x.clone(), x.clone()
    for _ in range(L):
        out = conv(out, ei, w)
        ref = torch.einsum('ij,jcd->icd', A, ref)
        mean_out, mean_ref = mean_out + out, mean_ref + ref
    assert out.shape == x.shape
    assert torch.allclose(out, ref, atol=1e-10)
    assert torch.allclose(mean_out / (L + 1), mean_ref / (L + 1), atol=1e-10)


def test_channels_are_independent_and_match_lgconv():
    from torch_geometric.nn import LGConv
    n = 25
    ei, w = random_graph(n, seed=3)
    x = torch.randn(n, 4, 8)
    conv = MultiModalLGConv()
    out = conv(x, ei, w)
    lg = LGConv()
    for c in range(4):
        assert torch.allclose(out[:, c], lg(x[:, c], ei, w), atol=1e-6)
    # 2-D and dict inputs:
    assert torch.allclose(conv(x[:, 0], ei, w), out[:, 0], atol=1e-6)
    out_dict = conv({'a': x[:, 0], 'b': x[:, 1:].reshape(n, -1)}, ei, w)
    assert set(out_dict) == {'a', 'b'}
    assert torch.allclose(out_dict['a'], out[:, 0], atol=1e-6)
    assert torch.allclose(out_dict['b'], out[:, 1:].reshape(n, -1), atol=1e-6)


def test_directed_graph_and_gradients_agree_across_backends():
    n = 20
    ei, w = random_graph(n, symmetric=False, seed=5)
    x = torch.randn(n, 2, 3, dtype=torch.float64, requires_grad=True)
    grads, outs = [], []
    for backend in available_backends():
        conv = MultiModalLGConv(normalize=False, backend=backend)
        y = conv(conv(x, ei, w), ei, w)
        (g, ) = torch.autograd.grad((y * torch.arange(y.numel()).view_as(y)
                                     ).sum(), x)
        outs.append(y.detach())
        grads.append(g)
    for y, g in zip(outs[1:], grads[1:]):
        assert torch.allclose(y, outs[0], atol=1e-10)
        assert torch.allclose(g, grads[0], atol=1e-10)


def test_csr_gradcheck_directed():
    n = 8
    ei, w = random_graph(n, num_edges=20, symmetric=False, seed=7)
    conv = MultiModalLGConv(normalize=True, backend='csr')
    x = torch.randn(n, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: conv(t, ei, w.double()), (x, ))


def test_isolated_nodes_and_empty_graph():
    n = 6
    ei = torch.tensor([[0, 1], [1, 0]])
    x = torch.randn(n, 2, 3)
    out = MultiModalLGConv()(x, ei)
    assert torch.allclose(out[2:], torch.zeros(n - 2, 2, 3))
    assert torch.allclose(out[0], x[1]) and torch.allclose(out[1], x[0])
    empty = torch.empty(2, 0, dtype=torch.long)
    for backend in available_backends():
        out = MultiModalLGConv(backend=backend)(x, empty)
        assert torch.count_nonzero(out) == 0


def test_cache_reuse_and_invalidation():
    n = 10
    ei, w = random_graph(n, seed=1)
    conv = MultiModalLGConv(cached=True)
    x = torch.randn(n, 4)
    y1 = conv(x, ei, w)
    op = conv._cache
    y2 = conv(x, ei, w)
    assert conv._cache is op and torch.equal(y1, y2)
    ei2, w2 = random_graph(n, seed=2)
    y3 = conv(x, ei2, w2)
    assert conv._cache is not op
    assert torch.allclose(y3, MultiModalLGConv()(x, ei2, w2))
    conv.reset_parameters()
    assert conv._cache is None


def test_learnable_edge_weight_falls_back_to_edge_index():
    n = 10
    ei, w = random_graph(n, seed=4)
    w = w.clone().requires_grad_()
    x = torch.randn(n, 3)
    out = MultiModalLGConv(normalize=False)(x, ei, w)
    out.sum().backward()
    assert w.grad is not None and torch.count_nonzero(w.grad) > 0


def test_bad_inputs():
    with pytest.raises(ValueError, match='Unknown backend'):
        MultiModalLGConv(backend='dense')
    conv = MultiModalLGConv()
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match=r'\[2, E\]'):
        conv(x, torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match='node ids'):
        conv(x, torch.tensor([[0, 7], [7, 0]]))
    with pytest.raises(ValueError, match='edge_weight'):
        conv(x, torch.tensor([[0, 1], [1, 0]]), torch.ones(3))
    with pytest.raises(ValueError, match='shape'):
        conv(torch.randn(5, 2, 2, 2), torch.tensor([[0, 1], [1, 0]]))
    if not WITH_TORCH_SPARSE:
        with pytest.raises(ImportError, match='torch-sparse'):
            MultiModalLGConv(backend='torch_sparse')


def test_csr_helpers():
    ei = torch.tensor([[0, 0, 2, 2], [1, 1, 0, 1]])  # duplicate 0->1
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    A = to_csr(ei, w, (3, 3)).to_dense()
    expected = torch.zeros(3, 3)
    expected[1, 0] = 3.0
    expected[0, 2] = 3.0
    expected[1, 2] = 4.0
    assert torch.equal(A, expected)
    op = CSRAdjacency(ei, w, (3, 3))
    x = torch.randn(3, 2, requires_grad=True)
    y = op.matmul(x)
    assert torch.allclose(y, expected @ x)
    (g, ) = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(g, expected.t() @ torch.ones(3, 2))
    assert 'nnz=3' in repr(op)
    h = bipartite_to_homogeneous(torch.tensor([[0, 1], [0, 2]]), num_users=2)
    assert h.tolist() == [[0, 1, 2, 4], [2, 4, 0, 1]]


@pytest.mark.gpu
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip('CUDA is not available')
    n = 30
    ei, w = random_graph(n)
    x = torch.randn(n, 3, 4)
    ref = MultiModalLGConv()(x, ei, w)
    out = MultiModalLGConv()(x.cuda(), ei.cuda(), w.cuda())
    assert out.device.type == 'cuda'
    assert torch.allclose(out.cpu(), ref, atol=1e-5)


def adjacency_forms(ei, w, n):
    r"""Every adjacency form LGConv accepts, for the edges ``ei`` (source,
    target) with weights ``w``: (name, adjacency, edge_weight)."""
    from torch_geometric import EdgeIndex
    ei = ei.contiguous()
    adj_t = torch.sparse_coo_tensor(ei.flip(0), w, (n, n)).coalesce()
    forms = [('edge_index', ei, w),
             ('EdgeIndex', EdgeIndex(ei, sparse_size=(n, n)), w),
             ('sparse_coo', adj_t, None),
             ('sparse_csr', adj_t.to_sparse_csr(), None),
             ('sparse_csc', adj_t.to_sparse_csc(), None)]
    if WITH_TORCH_SPARSE:
        from torch_geometric.typing import SparseTensor
        forms.append(('SparseTensor', SparseTensor.from_torch_sparse_coo_tensor(
            adj_t), None))
    return forms


@pytest.mark.parametrize('backend', ['auto', 'csr', 'edge_index'])
@pytest.mark.parametrize('normalize', [True, False])
@pytest.mark.parametrize('cached', [True, False])
def test_every_adjacency_form_matches_stacked_lgconv(backend, normalize,
                                                     cached):
    from torch_geometric.nn import LGConv
    n, C, d = 30, 3, 5
    ei, w = random_graph(n, seed=5)
    x = torch.randn(n, C, d)
    ref = torch.stack([LGConv(normalize=normalize)(x[:, c], ei, w)
                       for c in range(C)], dim=1)
    for name, adj, ew in adjacency_forms(ei, w, n):
        if name == 'SparseTensor' and backend != 'auto':
            continue  # a SparseTensor runs on the torch_sparse backend
        try:  # LGConv on the same form (it has no CSC normalisation)
            ref_form = torch.stack([LGConv(normalize=normalize)(x[:, c], adj,
                                                                ew)
                                    for c in range(C)], dim=1)
            assert torch.allclose(ref_form, ref, atol=1e-5), name
        except NotImplementedError:
            assert name == 'sparse_csc' and normalize
        conv = MultiModalLGConv(normalize=normalize, cached=cached,
                                backend=backend)
        for _ in range(2):  # a second call may hit the cache
            out = conv(x, adj, ew)
            assert torch.allclose(out, ref, atol=1e-5), name


def test_sparse_adjacency_cache_follows_in_place_changes():
    n = 12
    ei, w = random_graph(n, seed=6)
    adj_t = torch.sparse_coo_tensor(ei.flip(0), w, (n, n)).coalesce()
    conv = MultiModalLGConv(normalize=False, cached=True)
    x = torch.randn(n, 4)
    y1 = conv(x, adj_t)
    adj_t.values().mul_(2)  # same tensor, new values: the cache is stale
    y2 = conv(x, adj_t)
    assert torch.allclose(y2, 2 * y1, atol=1e-6)


def test_sparse_adjacency_bad_inputs():
    n = 5
    ei, w = random_graph(n, num_edges=8, seed=7)
    adj_t = torch.sparse_coo_tensor(ei.flip(0), w, (n, n))
    conv = MultiModalLGConv()
    with pytest.raises(ValueError, match="'edge_weight' must be None"):
        conv(torch.randn(n, 2), adj_t, w)
    with pytest.raises(ValueError, match='sparse adjacency has shape'):
        conv(torch.randn(n + 1, 2), adj_t)


def test_runs_on_the_meta_device():
    n, C, d = 8, 2, 3
    ei, _ = random_graph(n, num_edges=20, seed=8)
    x = torch.empty(n, C, d, device='meta')
    for normalize in (True, False):
        out = MultiModalLGConv(normalize=normalize)(x, ei.to('meta'))
        assert out.shape == (n, C, d) and out.device.type == 'meta'


@pytest.mark.skipif(not hasattr(torch.library, 'custom_op'),
                    reason='needs torch >= 2.4 (torch.library.custom_op)')
def test_compiles_without_graph_breaks_and_matches_eager():
    from pyg_brmrs.nn.conv import layer_mean
    n, C, d = 12, 3, 4
    ei, w = random_graph(n, num_edges=30, seed=9)
    conv = MultiModalLGConv(cached=True)  # the default path: CSR backend
    plain = MultiModalLGConv(normalize=False, backend='csr')

    def step(x, ei, w):
        h = layer_mean(conv, x, ei, w, 2)  # [N, C, d], weighted
        return h, plain(x[:, 0], ei)  # [N, d], unweighted

    torch._dynamo.reset()
    # fullgraph=True raises on any graph break; aot_eager also traces the
    # backward through the CSR operator:
    compiled = torch.compile(step, fullgraph=True, backend='aot_eager')
    x = torch.randn(n, C, d, requires_grad=True)
    out, out2 = compiled(x, ei, w)
    ref, ref2 = step(x, ei, w)
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(out2, ref2, atol=1e-6)
    grad, = torch.autograd.grad(out.pow(2).sum() + out2.sum(), x)
    grad_ref, = torch.autograd.grad(ref.pow(2).sum() + ref2.sum(), x)
    assert torch.allclose(grad, grad_ref, atol=1e-5)
    # the compiled graph calls the opaque CSR operator, not message passing:
    explanation = torch._dynamo.explain(step)(x, ei, w)
    assert explanation.graph_break_count == 0
    assert 'pyg_brmrs.edge_spmm' in str(explanation.graphs[0].code)
    torch._dynamo.reset()


def test_normalize_rows_matches_functional_normalize():
    from pyg_brmrs.utils.sparse import normalize_rows
    x = torch.randn(20, 3, 5, dtype=torch.float64)
    x[0, 0] = 0.0
    x[1, 2] = 1e-14  # below eps: divided by eps, as F.normalize does
    x.requires_grad_()
    w = torch.randn(20, 3, 5, dtype=torch.float64)
    y = normalize_rows(x)
    ref = torch.nn.functional.normalize(x, dim=-1)
    assert torch.equal(y, ref)
    (g, ) = torch.autograd.grad((y * w).sum(), x)
    (g_ref, ) = torch.autograd.grad((ref * w).sum(), x)
    assert torch.allclose(g, g_ref, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(normalize_rows, (torch.randn(
        4, 3, dtype=torch.float64, requires_grad=True), ))


@pytest.mark.parametrize('scale', [1.0, 0.25])
def test_csr_layer_mean_scale_matches_the_layer_sum(scale):
    # scale=s gives s * sum_l A^l x (values and gradients) on the fused CSR
    # node, the no-grad path and the layer-by-layer fallback alike.
    from pyg_brmrs.nn.conv import layer_mean
    from pyg_brmrs.utils import CSRAdjacency
    n, L = 11, 2
    ei, w = random_graph(n, num_edges=40, seed=3)
    A = torch.zeros(n, n, dtype=torch.float64)
    for k in range(ei.size(1)):
        A[ei[1, k], ei[0, k]] += float(w[k])
    x = torch.randn(n, 2, 3, dtype=torch.float64, requires_grad=True)
    ref = scale * (x + torch.einsum('ij,jcd->icd', A, x) +
                   torch.einsum('ij,jcd->icd', A @ A, x))
    op = CSRAdjacency(ei, w.double(), (n, n))
    fused = op.layer_mean(x.reshape(n, -1), L, scale=scale).view_as(x)
    conv = MultiModalLGConv(normalize=False, backend='edge_index')
    fallback = layer_mean(conv, x, ei, w.double(), L, scale=scale)
    probe = torch.randn_like(ref)
    (g_ref, ) = torch.autograd.grad((ref * probe).sum(), x)
    for out in (fused, fallback):
        assert torch.allclose(out, ref, atol=1e-12)
        (g, ) = torch.autograd.grad((out * probe).sum(), x)
        assert torch.allclose(g, g_ref, atol=1e-12)
    with torch.no_grad():
        plain = op.layer_mean(x.reshape(n, -1), L, scale=scale).view_as(x)
    assert torch.equal(plain, fused.detach())


@pytest.mark.parametrize('bad', [0.0, -1.0, float('nan'), float('inf'),
                                 True, '0.5'])
def test_layer_mean_and_normalize_reject_bad_scales(bad):
    from pyg_brmrs.nn.conv import layer_mean
    from pyg_brmrs.nn.graph import BipartiteAdjacency
    from pyg_brmrs.utils import CSRAdjacency
    from pyg_brmrs.utils.sparse import normalize_rows
    ei, w = random_graph(6, num_edges=10, seed=1)
    x = torch.randn(6, 4)
    with pytest.raises(ValueError, match="'scale' must be a positive"):
        CSRAdjacency(ei, w, (6, 6)).layer_mean(x, 2, scale=bad)
    with pytest.raises(ValueError, match="'scale' must be a positive"):
        layer_mean(MultiModalLGConv(), x, ei, w, 2, scale=bad)
    with pytest.raises(ValueError, match="'scale' must be a positive"):
        BipartiteAdjacency(torch.tensor([[0, 3, 8], [1, 6, 2]]), 9,
                           7).layer_mean(
            torch.randn(9, 4), torch.randn(7, 4), 2, scale=bad)
    with pytest.raises(ValueError, match="'scale' must be a positive"):
        normalize_rows(x, scale=bad)


def test_layer_mean_scale_with_last_is_an_error():
    from pyg_brmrs.utils import CSRAdjacency
    ei, w = random_graph(6, num_edges=10, seed=1)
    with pytest.raises(ValueError, match="cannot be given with 'last=True'"):
        CSRAdjacency(ei, w, (6, 6)).layer_mean(torch.randn(6, 4), 2,
                                               last=True, scale=0.5)


@pytest.mark.parametrize('scale', [1.0, 0.2, 3.0])
def test_normalize_rows_scale_folds_into_the_divisor(scale):
    # s * x / max(|x|, eps), values and gradients, including a zero row and
    # a row below eps.
    from pyg_brmrs.utils.sparse import normalize_rows
    x = torch.randn(10, 2, 5, dtype=torch.float64)
    x[0, 0] = 0.0
    x[1, 1] = 1e-14
    x.requires_grad_()
    y = normalize_rows(x, scale=scale)
    ref = scale * torch.nn.functional.normalize(x, dim=-1)
    assert torch.allclose(y, ref, rtol=1e-14, atol=0)
    probe = torch.randn_like(ref)
    (g, ) = torch.autograd.grad((y * probe).sum(), x)
    (g_ref, ) = torch.autograd.grad((ref * probe).sum(), x)
    assert torch.allclose(g, g_ref, rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        assert torch.allclose(normalize_rows(x, scale=scale), ref,
                              rtol=1e-14, atol=0)
    assert torch.autograd.gradcheck(
        lambda t: normalize_rows(t, scale=scale),
        (torch.randn(4, 3, dtype=torch.float64, requires_grad=True), ))


# ----------------------------------------------------------------------
# Parity with LGConv: flow, half precision, explainers and hooks
def stacked_lgconv(x, edge_index, **kwargs):
    from torch_geometric.nn import LGConv
    conv = LGConv(**kwargs)
    return torch.stack([conv(x[:, c], edge_index)
                        for c in range(x.size(1))], dim=1)


def directed_case(n=7, e=18, seed=3):
    g = torch.Generator().manual_seed(seed)
    ei = torch.stack([torch.randint(n, (e,), generator=g),
                      torch.randint(n, (e,), generator=g)])
    x = torch.randn(n, 2, 3, generator=g)
    return ei, x


@pytest.mark.parametrize('flow', ['source_to_target', 'target_to_source'])
@pytest.mark.parametrize('backend', ['auto', 'csr', 'edge_index',
                                     'torch_sparse'])
@pytest.mark.parametrize('normalize', [True, False])
def test_flow_matches_stacked_lgconv(flow, backend, normalize):
    if backend == 'torch_sparse' and not WITH_TORCH_SPARSE:
        pytest.skip('torch-sparse is not installed')
    ei, x = directed_case()
    x = x.requires_grad_()
    ref = stacked_lgconv(x, ei, normalize=normalize, flow=flow)
    conv = MultiModalLGConv(normalize=normalize, flow=flow, backend=backend)
    out = conv(x, ei)
    assert torch.allclose(out, ref, atol=1e-6)
    g = torch.randn_like(out)
    got, = torch.autograd.grad((out * g).sum(), x)
    want, = torch.autograd.grad((ref * g).sum(), x)
    assert torch.allclose(got, want, atol=1e-6)


def test_target_to_source_on_a_sparse_adjacency_is_refused_like_lgconv():
    ei, x = directed_case()
    adj = torch.sparse_coo_tensor(ei.flip(0), torch.ones(ei.size(1)), (7, 7))
    with pytest.raises(ValueError, match='Flow direction "target_to_source"'
                       ' is invalid'):
        MultiModalLGConv(flow='target_to_source')(x, adj)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
@pytest.mark.parametrize('backend', ['csr', 'edge_index'])
def test_half_precision_runs_like_lgconv(dtype, backend):
    ei, x = directed_case()
    xh = x.to(dtype)
    ref = stacked_lgconv(xh, ei)
    out = MultiModalLGConv(backend=backend)(xh, ei)
    assert out.dtype == dtype
    # the CSR kernel multiplies in float32 (and casts back); LGConv
    # accumulates in the input's precision
    assert torch.allclose(out.float(), ref.float(), atol=3e-2, rtol=3e-2)
    exact = MultiModalLGConv()(xh.float(), ei)
    assert torch.allclose(out.float(), exact, atol=3e-2, rtol=3e-2)
    from pyg_brmrs.nn.conv import layer_mean
    assert layer_mean(MultiModalLGConv(backend=backend), xh, ei, None,
                      2).dtype == dtype


def test_an_attached_explainer_masks_the_messages_as_in_lgconv():
    from torch_geometric.explain.algorithm.utils import set_masks
    from torch_geometric.nn import LGConv
    ei, x = directed_case()
    mask = torch.randn(ei.size(1))
    conv, ref_conv = MultiModalLGConv(cached=True), LGConv()
    plain = conv(x, ei)
    for module in (conv, ref_conv):
        set_masks(module, torch.nn.Parameter(mask.clone()), ei,
                  apply_sigmoid=True)
    assert conv.message_passing()
    out = conv(x, ei)
    ref = torch.stack([ref_conv(x[:, c], ei) for c in range(2)], dim=1)
    assert torch.allclose(out, ref, atol=1e-6)
    assert not torch.allclose(out, plain)
    out.sum().backward()
    assert conv._edge_mask.grad is not None and \
        conv._edge_mask.grad.abs().sum() > 0
    from torch_geometric.explain.algorithm.utils import clear_masks
    clear_masks(conv)
    assert not conv.message_passing()
    assert torch.allclose(conv(x, ei), plain)


def test_gnnexplainer_explains_a_model_built_on_the_conv():
    from torch_geometric.explain import Explainer, GNNExplainer

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = MultiModalLGConv()
            self.lin = torch.nn.Linear(6, 2)

        def forward(self, x, edge_index):
            return self.lin(self.conv(x.view(-1, 2, 3),
                                      edge_index).flatten(1))

    ei, x = directed_case()
    explainer = Explainer(Model(), GNNExplainer(epochs=5), 'model',
                          edge_mask_type='object',
                          model_config=dict(mode='multiclass_classification',
                                            task_level='node',
                                            return_type='raw'))
    explanation = explainer(x.flatten(1), ei, index=0)
    mask = explanation.edge_mask
    assert mask.shape == (ei.size(1), )
    # only edges that can reach node 0 in one hop get any weight
    assert bool((mask[ei[1] != 0] == 0).all()) and mask.sum() > 0


def test_hooks_see_the_messages_and_leave_the_result_unchanged():
    ei, x = directed_case()
    conv = MultiModalLGConv()
    plain = conv(x, ei)
    seen = []
    handle = conv.register_message_forward_hook(
        lambda module, inputs, out: seen.append(out.shape))
    assert conv.message_passing()
    assert torch.allclose(conv(x, ei), plain, atol=1e-6)
    assert seen == [(ei.size(1), 6)]
    handle.remove()
    assert not conv.message_passing()
    conv(x, ei)
    assert len(seen) == 1
