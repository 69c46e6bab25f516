r"""Sparse-matrix helpers: CSR construction, CSR products (MKL's kernel on
the CPU), a fixed CSR operator whose backward reuses a cached transpose, an
opaque edge-list product for :func:`torch.compile`, and row normalisation
with a hand-written backward."""
import math
import warnings
from typing import Callable, Optional, Tuple

import torch
from torch import Tensor



def to_csr(
    edge_index: Tensor,
    edge_weight: Optional[Tensor],
    num_nodes: Tuple[int, int],
) -> Tensor:
    r"""Builds the sparse CSR matrix :math:`\mathbf{A}` with
    :math:`A_{ij} = w_{ji \to}` for the edges :math:`j \to i` in
    :obj:`edge_index` (row = target ``edge_index[1]``, column = source
    ``edge_index[0]``), so that :math:`\mathbf{A}\mathbf{X}` aggregates the
    messages of the sources into their targets, as PyG's
    ``flow="source_to_target"`` does. Duplicate edges are summed.

    Args:
        edge_index (torch.Tensor): ``[2, E]`` (source, target) indices.
        edge_weight (torch.Tensor, optional): ``[E]`` weights (default: ones).
        num_nodes ((int, int)): ``(num_targets, num_sources)``.

    Returns:
        A ``torch.sparse_csr`` tensor of shape ``num_nodes``.
    """
    num_dst, num_src = num_nodes
    src, dst = edge_index[0], edge_index[1]
    if edge_weight is None:
        edge_weight = torch.ones(src.numel(), device=src.device)
    key = dst * num_src + src
    key, perm = torch.sort(key)
    value = edge_weight[perm]
    # Sum duplicates:
    unique, inverse = torch.unique_consecutive(key, return_inverse=True)
    if unique.numel() != key.numel():
        value = torch.zeros(unique.numel(), dtype=value.dtype,
                            device=value.device).index_add_(0, inverse, value)
        key = unique
    row = torch.div(key, num_src, rounding_mode='floor')
    col = key - row * num_src
    counts = torch.bincount(row, minlength=num_dst)
    crow = torch.zeros(num_dst + 1, dtype=torch.long, device=src.device)
    crow[1:] = torch.cumsum(counts, 0)
    return csr_tensor(crow, col, value, (num_dst, num_src))


def csr_tensor(crow: Tensor, col: Tensor, value: Tensor,
               size: Tuple[int, int]) -> Tensor:
    r""":func:`torch.sparse_csr_tensor` without invariant checks (the callers
    build valid CSR arrays), with torch's one-time "CSR support is in beta"
    and "invariant checks are disabled" warnings silenced *here only*, so
    that no global warnings filter is needed."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)
        return torch.sparse_csr_tensor(crow, col, value, size=size,
                                       check_invariants=False)


def _mkl_csr(adj: Tensor, x: Tensor) -> bool:
    r"""Whether ``adj @ x`` runs on MKL's sparse kernel: a CPU CSR product
    in float32/float64 with a torch built with MKL (faster than
    ``torch.sparse.mm(reduce="sum")`` at the widths the models use, with
    the same numbers, measured when the kernel was chosen)."""
    return x.device.type == 'cpu' and adj.layout == torch.sparse_csr and \
        x.dtype in (torch.float32, torch.float64) and \
        torch.backends.mkl.is_available()


def csr_matmul(adj: Tensor, x: Tensor) -> Tensor:
    r"""``adj @ x`` for a CSR :obj:`adj` and a dense :obj:`x`. On CPU this is
    MKL's sparse product written into an uninitialised output
    (``torch.addmm`` with ``beta=0``, which never reads it) where torch has
    MKL, else :func:`torch.sparse.mm` with ``reduce="sum"`` (a row-parallel
    kernel that writes the output directly, where ``adj @ x`` goes through a
    column-major temporary); on other devices ``adj @ x``."""
    if _mkl_csr(adj, x):
        x = x.contiguous()
        return torch.addmm(x.new_empty(adj.size(0), x.size(1)), adj, x,
                           beta=0)
    if x.device.type == 'cpu' and x.dtype in (torch.float32, torch.float64):
        return torch.sparse.mm(adj, x.contiguous(), 'sum')
    return adj @ x


def csr_addmm(base: Tensor, adj: Tensor, x: Tensor) -> Tensor:
    r"""``base + adj @ x`` as a new tensor (:obj:`base` is not modified):
    one pass with MKL's sparse kernel where :func:`csr_matmul` uses it (the
    same value up to float rounding: the product's terms are added to
    :obj:`base` one by one), else :func:`csr_matmul` and an in-place
    addition."""
    if _mkl_csr(adj, x):
        return torch.addmm(base.contiguous(), adj, x.contiguous())
    return csr_matmul(adj, x).add_(base)


class _CSRMatMul(torch.autograd.Function):
    r"""``adj @ x`` whose backward is ``adj_t @ grad`` with a transpose that
    was built once, instead of being rebuilt by autograd at every call."""
    @staticmethod
    def forward(ctx, adj: Tensor, adj_t: Tensor, x: Tensor) -> Tensor:
        ctx.adj_t = adj_t
        return csr_matmul(adj, x)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        grad_x = None
        if ctx.needs_input_grad[2]:
            grad_x = csr_matmul(ctx.adj_t, grad_out)
        return None, None, grad_x


def layer_scale(num_layers: int, scale: Optional[float]) -> float:
    r"""The factor of a layer sum: :obj:`scale`, or :math:`1/(L+1)` (the
    layer mean) when it is :obj:`None`."""
    return 1.0 / (num_layers + 1) if scale is None else float(scale)


def layer_sum(step: Callable[[Tensor], Tensor], x: Tensor, num_layers: int,
              last: bool = False, scale: Optional[float] = None) -> Tensor:
    r""":math:`s\sum_{l=0}^{L} f^l(\mathbf{x})` (:math:`s` = :obj:`scale`,
    default :math:`1/(L+1)`), or :math:`f^L(\mathbf{x})` with
    :obj:`last=True`, for a linear :obj:`step` :math:`f` applied layer by
    layer, the sum accumulated in place in one buffer (the layer outputs
    are not kept)."""
    check_scale(scale, last)
    if num_layers == 0:
        return x if scale is None or scale == 1.0 else x * scale
    h, acc = x, None
    for _ in range(num_layers):
        h = step(h)
        if not last:
            acc = h + x if acc is None else acc.add_(h)
    if last:
        return h
    s = layer_scale(num_layers, scale)
    return acc if s == 1.0 else acc.mul_(s)


def check_scale(scale: Optional[float], last: bool) -> None:
    r"""Raises a :class:`ValueError` for a :obj:`scale` that is not a
    positive finite number, or one given with :obj:`last=True` (which
    returns the last layer, unscaled)."""
    if scale is None:
        return
    if last:
        raise ValueError("'scale' applies to the layer sum; it cannot be "
                         "given with 'last=True'")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or \
            not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"'scale' must be a positive finite number (got "
                         f"{scale!r})")


def _layer_mean(adj: Tensor, x: Tensor, num_layers: int, last: bool,
                scale: float) -> Tensor:
    h, acc = x, None
    for _ in range(num_layers):
        h = csr_matmul(adj, h)
        if not last:
            acc = h + x if acc is None else acc.add_(h)
    if last:
        return h
    return acc if scale == 1.0 else acc.mul_(scale)


class _CSRLayerMean(torch.autograd.Function):
    r"""LightGCN's layer combination :math:`s \sum_{l=0}^{L}
    \mathbf{A}^l \mathbf{X}` (or :math:`\mathbf{A}^L \mathbf{X}`) as one
    autograd node: the forward pass accumulates the layers in place without
    recording them, the backward pass is Horner's scheme
    :math:`\mathbf{R} \leftarrow s\mathbf{G} + \mathbf{A}^{\top}
    \mathbf{R}` with the cached transpose (:math:`L` products, the same
    operations in the same order as autograd through the layers)."""
    @staticmethod
    def forward(ctx, x: Tensor, adj: Tensor, adj_t: Tensor, num_layers: int,
                last: bool, scale: float) -> Tensor:
        ctx.adj_t, ctx.num_layers, ctx.last = adj_t, num_layers, last
        ctx.scale = scale
        return _layer_mean(adj, x, num_layers, last, scale)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        if ctx.last:
            r = grad_out
            for _ in range(ctx.num_layers):
                r = csr_matmul(ctx.adj_t, r)
            return r, None, None, None, None, None
        g = grad_out.contiguous() if ctx.scale == 1.0 else \
            grad_out * ctx.scale
        r = g
        for _ in range(ctx.num_layers):
            r = csr_addmm(g, ctx.adj_t, r)
        return r, None, None, None, None, None


class CSRAdjacency:
    r"""A fixed sparse operator :math:`\mathbf{A}` stored as CSR together
    with its transpose, so that both :math:`\mathbf{A}\mathbf{X}` and its
    gradient :math:`\mathbf{A}^{\top}\mathbf{G}` are plain CSR products.

    The values are constants: no gradient flows into the edge weights (use an
    ``edge_index`` backend for learnable edge weights).

    Args:
        edge_index (torch.Tensor): ``[2, E]`` (source, target) indices.
        edge_weight (torch.Tensor, optional): ``[E]`` weights.
        num_nodes ((int, int)): ``(num_targets, num_sources)``.
    """
    def __init__(self, edge_index: Tensor, edge_weight: Optional[Tensor],
                 num_nodes: Tuple[int, int]):
        if edge_weight is not None:
            edge_weight = edge_weight.detach()
        self.size = (int(num_nodes[0]), int(num_nodes[1]))
        self.adj = to_csr(edge_index, edge_weight, self.size)
        self.adj_t = to_csr(edge_index.flip(0), edge_weight,
                            (self.size[1], self.size[0]))

    def __deepcopy__(self, memo) -> 'CSRAdjacency':
        # A constant operator: copies of a model may share it (sparse CSR
        # tensors cannot be deep-copied).
        return self

    @property
    def nnz(self) -> int:
        return int(self.adj.values().numel())

    def matmul(self, x: Tensor) -> Tensor:
        r"""Returns :math:`\mathbf{A}\mathbf{X}` for a dense ``[num_sources,
        F]`` matrix :math:`\mathbf{X}`."""
        adj, adj_t = self.adj, self.adj_t
        if adj.dtype != x.dtype:
            adj, adj_t = adj.to(x.dtype), adj_t.to(x.dtype)
        if torch.is_grad_enabled() and x.requires_grad:
            return _CSRMatMul.apply(adj, adj_t, x)
        return csr_matmul(adj, x)

    def layer_mean(self, x: Tensor, num_layers: int, last: bool = False,
                   scale: Optional[float] = None) -> Tensor:
        r"""Returns :math:`s\sum_{l=0}^{L} \mathbf{A}^l \mathbf{X}` for
        :math:`L` = :obj:`num_layers` and :math:`s` = :obj:`scale`
        (default :math:`1/(L+1)`: the layer mean), or
        :math:`\mathbf{A}^L \mathbf{X}` with :obj:`last=True`, for a dense
        ``[N, F]`` matrix :math:`\mathbf{X}` of a square operator, with one
        autograd node for all layers (its backward pass costs :math:`L`
        transposed products and keeps no layer outputs). :obj:`scale=1.0`
        (the plain layer sum) saves a pass over the output forward and over
        the gradient backward, *e.g.* when the result is
        :math:`L_2`-normalised next."""
        if self.size[0] != self.size[1]:
            raise ValueError(f"'layer_mean' needs a square operator (got "
                             f"size {self.size})")
        check_scale(scale, last)
        if num_layers == 0:
            return x if scale is None or scale == 1.0 else x * scale
        adj, adj_t = self.adj, self.adj_t
        if adj.dtype != x.dtype:
            adj, adj_t = adj.to(x.dtype), adj_t.to(x.dtype)
        x = x.contiguous()
        s = layer_scale(num_layers, scale)
        if torch.is_grad_enabled() and x.requires_grad:
            return _CSRLayerMean.apply(x, adj, adj_t, num_layers, last, s)
        return _layer_mean(adj, x, num_layers, last, s)

    def to(self, device) -> 'CSRAdjacency':
        self.adj = self.adj.to(device)
        self.adj_t = self.adj_t.to(device)
        return self

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(size={self.size}, '
                f'nnz={self.nnz})')


def bipartite_to_homogeneous(edge_index: Tensor, num_users: int) -> Tensor:
    r"""Turns user→item edges ``[2, E]`` into the undirected user–item graph
    on ``num_users + num_items`` nodes (items are shifted by
    :obj:`num_users`), with both directions: ``[2, 2E]`` (the user→item
    edges first)."""
    user, item = edge_index[0], edge_index[1] + num_users
    return torch.stack([torch.cat([user, item]), torch.cat([item, user])])


def _spmm_reference(edge_index: Tensor, edge_weight: Tensor, x: Tensor,
                    num_rows: int) -> Tensor:
    return csr_matmul(to_csr(edge_index, edge_weight, (num_rows, x.size(0))),
                      x)


if hasattr(torch.library, 'custom_op'):  # torch >= 2.4
    @torch.library.custom_op('pyg_brmrs::edge_spmm', mutates_args=())
    def _edge_spmm(edge_index: Tensor, edge_weight: Tensor, x: Tensor,
                   num_rows: int) -> Tensor:
        return _spmm_reference(edge_index, edge_weight, x, num_rows)

    @_edge_spmm.register_fake
    def _(edge_index, edge_weight, x, num_rows):
        return x.new_empty((num_rows, x.size(1)))

    def _edge_spmm_setup(ctx, inputs, output):
        edge_index, edge_weight, x, _ = inputs
        ctx.save_for_backward(edge_index, edge_weight)
        ctx.num_cols = x.size(0)

    def _edge_spmm_backward(ctx, grad):
        edge_index, edge_weight = ctx.saved_tensors
        grad_x = _edge_spmm(edge_index.flip(0), edge_weight,
                            grad.contiguous(), ctx.num_cols)
        return None, None, grad_x, None

    _edge_spmm.register_autograd(_edge_spmm_backward,
                                 setup_context=_edge_spmm_setup)
else:  # pragma: no cover - older torch: no opaque operator
    _edge_spmm = _spmm_reference


def edge_spmm(edge_index: Tensor, edge_weight: Optional[Tensor], x: Tensor,
              num_rows: int) -> Tensor:
    r""":math:`\mathbf{A}\mathbf{X}` for the operator :math:`\mathbf{A}` of
    :func:`to_csr` (``[num_rows, x.size(0)]``, :math:`A_{ij}` the weight of
    the edge :math:`j \to i`), built and applied inside one opaque
    operator (``torch.ops.pyg_brmrs.edge_spmm``, torch ≥ 2.4).

    This is the form of the CSR product that :func:`torch.compile` can
    trace without a graph break: the compiler supports no sparse tensors,
    so the CSR arrays are built inside the operator, whose output shape
    ``[num_rows, F]`` does not depend on the data. Its backward is the same
    operator on the reversed edges. The edge weights are constants (no
    gradient), as in :class:`CSRAdjacency`; unlike it, nothing is cached,
    so the CSR arrays are rebuilt at every call.

    Args:
        edge_index (torch.Tensor): ``[2, E]`` (source, target) indices.
        edge_weight (torch.Tensor, optional): ``[E]`` weights (default:
            ones).
        x (torch.Tensor): Dense ``[num_sources, F]`` features.
        num_rows (int): The number of targets.
    """
    if edge_weight is None:
        edge_weight = x.new_ones(edge_index.size(1))
    return _edge_spmm(edge_index, edge_weight.detach().to(x.dtype),
                      x.contiguous(), num_rows)


def csr_rows(adj: Tensor, rows: Tensor) -> Tuple[Tensor, Tensor]:
    r"""The rows :obj:`rows` of a CSR matrix ``[N, M]`` as a CSR matrix
    ``[B, M]`` (row :math:`b` = row ``rows[b]``; repeated rows allowed) and
    its transpose ``[M, B]``, both CSR."""
    crow, col, val = adj.crow_indices(), adj.col_indices(), adj.values()
    start, end = crow[rows], crow[rows + 1]
    counts = end - start
    new_crow = torch.zeros(rows.numel() + 1, dtype=crow.dtype,
                           device=crow.device)
    torch.cumsum(counts, 0, out=new_crow[1:])
    total = int(new_crow[-1])
    offset = torch.arange(total, device=crow.device) - \
        torch.repeat_interleave(new_crow[:-1], counts, output_size=total)
    idx = torch.repeat_interleave(start, counts, output_size=total) + offset
    cols, vals = col[idx], val[idx]
    size = (rows.numel(), adj.size(1))
    sub = torch.sparse_csr_tensor(new_crow, cols, vals, size=size,
                                  check_invariants=False)
    local = torch.repeat_interleave(
        torch.arange(rows.numel(), device=crow.device), counts,
        output_size=total)
    sub_t = to_csr(torch.stack([local, cols]), vals, (size[1], size[0]))
    return sub, sub_t


class _RowNormalize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, eps: float, scale: float) -> Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        denom = norm.clamp_min(eps)
        if scale != 1.0:
            denom = denom / scale  # [N, 1]: s x / |x| at no extra pass
        y = x / denom
        ctx.save_for_backward(y, denom, norm > eps)
        ctx.scale = scale
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        y, denom, active = ctx.saved_tensors
        # y = s x / max(|x|, eps): dy/dx g = (g - y <g, y> / s^2) s / |x|
        # where |x| > eps, g s / eps elsewhere (denom holds |x| / s)
        dot = (grad * y).sum(dim=-1, keepdim=True).mul_(active)
        if ctx.scale != 1.0:
            dot.mul_(1.0 / ctx.scale**2)
        return torch.addcmul(grad, y, dot, value=-1.0).div_(denom), None, \
            None


def normalize_rows(x: Tensor, eps: float = 1e-12,
                   scale: float = 1.0) -> Tensor:
    r""":func:`torch.nn.functional.normalize` along the last dimension,
    times :obj:`scale`: :math:`s\,\mathbf{x} / \max(\lVert \mathbf{x}
    \rVert_2, \epsilon)`, with a hand-written backward pass,
    :math:`s(\mathbf{g} - \hat{\mathbf{y}}\langle \mathbf{g},
    \hat{\mathbf{y}} \rangle) / \lVert \mathbf{x} \rVert_2`
    (:math:`\hat{\mathbf{y}}` the unit vector), that makes three passes
    over the tensor instead of autograd's chain of division, norm and clamp
    nodes (same gradient up to float rounding). The factor :math:`s` folds
    into the per-row divisor, so a constant scale that follows the
    normalisation (*e.g.* the :math:`1/(L+1)` of a layer mean) costs no
    pass of its own."""
    check_scale(scale, last=False)
    scale = float(scale)
    if torch.is_grad_enabled() and x.requires_grad:
        return _RowNormalize.apply(x, eps, scale)
    y = torch.nn.functional.normalize(x, dim=-1, eps=eps)
    return y if scale == 1.0 else y.mul_(scale)
