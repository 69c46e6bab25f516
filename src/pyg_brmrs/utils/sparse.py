r"""Sparse-matrix helpers shared by the layers: CSR adjacency construction and
a sparse-dense product whose backward reuses a cached transpose."""
import warnings
from typing import Optional, Tuple

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


def csr_matmul(adj: Tensor, x: Tensor) -> Tensor:
    r"""``adj @ x`` for a CSR :obj:`adj` and a dense :obj:`x`. On CPU this is
    :func:`torch.sparse.mm` with ``reduce="sum"`` (a row-parallel kernel that
    writes the output directly, where ``adj @ x`` goes through a
    column-major temporary); on other devices ``adj @ x``."""
    if x.device.type == 'cpu' and x.dtype in (torch.float32, torch.float64):
        return torch.sparse.mm(adj, x.contiguous(), 'sum')
    return adj @ x


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
    :obj:`num_users`), with both directions: ``[2, 2E]``."""
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
