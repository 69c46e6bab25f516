r"""LightGCN's normalised user–item graph as two CSR blocks, with its layer
combination as one autograd node."""
import copy
from typing import Optional, Tuple

import torch
from torch import Tensor

from pyg_brmrs.nn.graph.adjacency import (
    Adjacency,
    check_backend,
    resolve_backend,
)
from pyg_brmrs.utils.checks import check_ids, is_compiling
from pyg_brmrs.utils.sparse import (
    bipartite_to_homogeneous,
    check_scale,
    csr_addmm,
    csr_matmul,
    csr_rows,
    layer_scale,
    to_csr,
)


def _layer_mean(R: Tensor, R_t: Tensor, x_user: Tensor, x_item: Tensor,
                num_layers: int, last: bool,
                scale: float) -> Tuple[Tensor, Tensor]:
    h_user, h_item = x_user, x_item
    acc_user: Optional[Tensor] = None
    acc_item: Optional[Tensor] = None
    for _ in range(num_layers):
        h_user, h_item = csr_matmul(R, h_item), csr_matmul(R_t, h_user)
        if last:
            continue
        if acc_user is None or acc_item is None:
            acc_user, acc_item = h_user + x_user, h_item + x_item
        else:
            acc_user.add_(h_user)
            acc_item.add_(h_item)
    if last or acc_user is None or acc_item is None:
        return h_user, h_item
    if scale == 1.0:
        return acc_user, acc_item
    return acc_user.mul_(scale), acc_item.mul_(scale)


class _LayerMean(torch.autograd.Function):
    r""":meth:`BipartiteAdjacency.layer_mean` as one autograd node. With
    :math:`\mathbf{A} = [\mathbf{0}, \mathbf{R}; \mathbf{R}_t,
    \mathbf{0}]`, the backward pass is Horner's scheme
    :math:`\mathbf{r} \leftarrow s\mathbf{g} + \mathbf{A}^{\top}\mathbf{r}`
    with the blocks of :math:`\mathbf{A}^{\top}`, :math:`\mathbf{R}_t^{\top}`
    ``[U, I]`` and :math:`\mathbf{R}^{\top}` ``[I, U]`` (the forward blocks
    themselves when :math:`\mathbf{A}` is symmetric)."""
    @staticmethod
    def forward(ctx, x_user: Tensor, x_item: Tensor, R: Tensor, R_t: Tensor,
                B_user: Tensor, B_item: Tensor, num_layers: int, last: bool,
                scale: float):
        ctx.B_user, ctx.B_item = B_user, B_item
        ctx.num_layers, ctx.last, ctx.scale = num_layers, last, scale
        return _layer_mean(R, R_t, x_user, x_item, num_layers, last, scale)

    @staticmethod
    def backward(ctx, grad_user: Tensor, grad_item: Tensor):
        B_user, B_item = ctx.B_user, ctx.B_item
        grad_user, grad_item = grad_user.contiguous(), grad_item.contiguous()
        if ctx.last:
            r_user, r_item = grad_user, grad_item
            for _ in range(ctx.num_layers):
                r_user, r_item = (csr_matmul(B_user, r_item),
                                  csr_matmul(B_item, r_user))
        else:
            scale = ctx.scale
            g_user, g_item = grad_user, grad_item
            if scale != 1.0:
                g_user, g_item = grad_user * scale, grad_item * scale
            r_user, r_item = g_user, g_item
            for _ in range(ctx.num_layers):
                r_user, r_item = (csr_addmm(g_user, B_user, r_item),
                                  csr_addmm(g_item, B_item, r_user))
        return (r_user, r_item) + (None, ) * 7


def _layer_mean_rows(R: Tensor, R_t: Tensor, R_rows: Tensor, rows: Tensor,
                     x_user: Tensor, x_item: Tensor, num_layers: int,
                     last: bool, scale: float) -> Tuple[Tensor, Tensor]:
    r""":func:`_layer_mean` whose user output holds the rows :obj:`rows`
    only: the last layer's user product runs on those rows
    (:obj:`R_rows`) and the user layers are summed on them."""
    h_user, h_item = x_user, x_item
    acc_user = None if last else x_user.index_select(0, rows)
    acc_item: Optional[Tensor] = None
    for layer in range(num_layers):
        final = layer == num_layers - 1
        new_item = csr_matmul(R_t, h_user)
        if final:
            new_user_rows = csr_matmul(R_rows, h_item)
        else:
            h_user = csr_matmul(R, h_item)
            new_user_rows = h_user.index_select(0, rows)
        h_item = new_item
        if last:
            if final:
                acc_user = new_user_rows
            continue
        acc_user.add_(new_user_rows)
        acc_item = new_item + x_item if acc_item is None else \
            acc_item.add_(new_item)
    if last:
        return acc_user, h_item
    if scale == 1.0:
        return acc_user, acc_item
    return acc_user.mul_(scale), acc_item.mul_(scale)


class _LayerMeanRows(torch.autograd.Function):
    r""":class:`_LayerMean` with the user output restricted to some rows.
    The user gradient is zero outside those rows, so the first step of
    Horner's scheme multiplies the item half by the rows' transposed block
    only, and the user gradient is added to those rows only."""
    @staticmethod
    def forward(ctx, x_user: Tensor, x_item: Tensor, R: Tensor, R_t: Tensor,
                B_user: Tensor, B_item: Tensor, R_rows: Tensor,
                R_rows_t: Tensor, rows: Tensor, num_layers: int, last: bool,
                scale: float):
        ctx.B_user, ctx.B_item, ctx.R_rows_t = B_user, B_item, R_rows_t
        ctx.num_layers, ctx.last, ctx.scale = num_layers, last, scale
        ctx.save_for_backward(rows)
        return _layer_mean_rows(R, R_t, R_rows, rows, x_user, x_item,
                                num_layers, last, scale)

    @staticmethod
    def backward(ctx, grad_rows: Tensor, grad_item: Tensor):
        rows, = ctx.saved_tensors
        B_user, B_item, R_rows_t = ctx.B_user, ctx.B_item, ctx.R_rows_t
        grad_rows, grad_item = grad_rows.contiguous(), grad_item.contiguous()
        if not ctx.last and ctx.scale != 1.0:
            grad_rows, grad_item = grad_rows * ctx.scale, \
                grad_item * ctx.scale
        # first step: the user half of r is zero outside `rows`
        if ctx.last:
            r_user = csr_matmul(B_user, grad_item)
            r_item = csr_matmul(R_rows_t, grad_rows)
        else:
            r_user = csr_matmul(B_user, grad_item).index_add_(0, rows,
                                                               grad_rows)
            r_item = csr_addmm(grad_item, R_rows_t, grad_rows)
        for _ in range(ctx.num_layers - 1):
            if ctx.last:
                r_user, r_item = csr_matmul(B_user, r_item), \
                    csr_matmul(B_item, r_user)
            else:
                r_user, r_item = (
                    csr_matmul(B_user, r_item).index_add_(0, rows, grad_rows),
                    csr_addmm(grad_item, B_item, r_user))
        return (r_user, r_item) + (None, ) * 10


class BipartiteAdjacency:
    r"""LightGCN's symmetric-normalised adjacency of the undirected
    user–item graph,

    .. math::
        \mathbf{A} = \begin{bmatrix} \mathbf{0} & \mathbf{R} \\
        \mathbf{R}_t & \mathbf{0} \end{bmatrix}, \qquad
        R_{ui} = \frac{a_u}{\sqrt{\deg(u)\deg(i)}}, \quad
        (\mathbf{R}_t)_{iu} = \frac{a_i}{\sqrt{\deg(u)\deg(i)}},

    for the edges :math:`(u, i)` of :obj:`edge_index`, stored as its two
    CSR blocks :math:`\mathbf{R}` ``[U, I]`` and :math:`\mathbf{R}_t`
    ``[I, U]``: one layer is :math:`(\mathbf{R}\mathbf{X}_I,
    \mathbf{R}_t\mathbf{X}_U)`, two half-size products on the user and item
    rows without ever concatenating them.

    The degrees are those of :obj:`edge_index` and :math:`a_v = 1`
    (:math:`\mathbf{R}_t = \mathbf{R}^{\top}`), unless :obj:`user_degree`
    and :obj:`item_degree` give the degrees :math:`\deg(v)` of a larger
    graph that :obj:`edge_index` is a sample of (a mini-batch subgraph):
    then every target's incoming sum is scaled by :math:`a_v =
    \deg(v)/\deg_b(v)`, :math:`\deg_b(v)` its edges in the sample, which
    makes the sum over a uniform sample of a node's edges an unbiased
    (Horvitz–Thompson) estimate of its sum in the larger graph, and is
    exactly :math:`1` for a node with all its edges present. Duplicate edges
    are summed, as in :func:`~pyg_brmrs.utils.sparse.to_csr`.

    The CSR kernels treat the weights as constants. Where the CSR kernel is
    not available (another :obj:`backend`, the ``meta`` device,
    :func:`torch.compile`, CPU inputs in half precision) the products run
    on the homogeneous operator of :meth:`homogeneous` instead, with the
    same result up to float rounding.

    Args:
        edge_index (torch.Tensor): user→item edges ``[2, E]``.
        num_users (int): The number of users :math:`U`.
        num_items (int): The number of items :math:`I`.
        user_degree (torch.Tensor, optional): ``[U]`` degrees of the larger
            graph. (default: :obj:`None`)
        item_degree (torch.Tensor, optional): ``[I]`` degrees of the larger
            graph. (default: :obj:`None`)
        dtype (torch.dtype, optional): The dtype of the weights.
            (default: :obj:`torch.float32`)
        backend (str, optional): The kernel (see
            :class:`~pyg_brmrs.nn.graph.Adjacency`). (default: :obj:`"auto"`)
        user_rows (torch.Tensor, optional): User ids ``[B]``: the user
            output of :meth:`layer_mean` then holds these rows only (see
            there). (default: :obj:`None`)
    """
    def __init__(self, edge_index: Tensor, num_users: int, num_items: int,
                 user_degree: Optional[Tensor] = None,
                 item_degree: Optional[Tensor] = None,
                 dtype: torch.dtype = torch.float32, backend: str = 'auto',
                 user_rows: Optional[Tensor] = None):
        if (user_degree is None) != (item_degree is None):
            raise ValueError("Give both 'user_degree' and 'item_degree', or "
                             "neither")
        self.num_users, self.num_items = int(num_users), int(num_items)
        self.dtype = dtype
        self.edge_index = edge_index.long()
        user, item = self.edge_index
        device = user.device
        self.backend = resolve_backend(check_backend(backend), device)
        ones = torch.ones(user.numel(), dtype=dtype, device=device)
        # as torch_geometric's gcn_norm: deg^-1/2 with inf -> 0
        deg_user = torch.zeros(self.num_users, dtype=dtype,
                               device=device).index_add_(0, user, ones)
        deg_item = torch.zeros(self.num_items, dtype=dtype,
                               device=device).index_add_(0, item, ones)
        self.symmetric = user_degree is None
        if self.symmetric:
            inv_user, inv_item = deg_user.pow(-0.5), deg_item.pow(-0.5)
        else:
            inv_user = user_degree.to(dtype).pow(-0.5)
            inv_item = item_degree.to(dtype).pow(-0.5)
        inv_user.masked_fill_(inv_user == float('inf'), 0.0)
        inv_item.masked_fill_(inv_item == float('inf'), 0.0)
        weight = inv_user[user] * inv_item[item]
        if self.symmetric:
            self.weight_user = self.weight_item = weight
        else:  # Horvitz-Thompson factors of the targets
            a_user = user_degree.to(dtype) / deg_user.clamp(min=1)
            a_item = item_degree.to(dtype) / deg_item.clamp(min=1)
            self.weight_user = weight * a_user[user]
            self.weight_item = weight * a_item[item]
        self.user_rows = user_rows
        self._blocks: Optional[Tuple[Tensor, Tensor, Tensor, Tensor]] = None
        self._homogeneous: Optional[Adjacency] = None
        self._user_block: Optional[Adjacency] = None

    def __deepcopy__(self, memo) -> 'BipartiteAdjacency':
        return self  # a constant operator, shared by copies of a model

    @property
    def nnz(self) -> int:
        return 2 * int(self.edge_index.size(1))

    def blocks(self) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        r"""The CSR blocks ``(R, R_t, R_t^T, R^T)`` (built on first use;
        the last two are the first two when :math:`\mathbf{A}` is
        symmetric)."""
        if self._blocks is None:
            ei, size_ui = self.edge_index, (self.num_users, self.num_items)
            size_iu = (self.num_items, self.num_users)
            R = to_csr(ei.flip(0), self.weight_user, size_ui)
            R_t = to_csr(ei, self.weight_item, size_iu)
            if self.symmetric:
                self._blocks = (R, R_t, R, R_t)
            else:
                self._blocks = (R, R_t, to_csr(ei.flip(0), self.weight_item,
                                               size_ui),
                                to_csr(ei, self.weight_user, size_iu))
        return self._blocks

    def homogeneous(self) -> Adjacency:
        r"""The same operator on the ``U + I`` stacked rows (users first), as
        an :class:`~pyg_brmrs.nn.graph.Adjacency` of the edges in both
        directions."""
        if self._homogeneous is None:
            ei = bipartite_to_homogeneous(self.edge_index, self.num_users)
            n = self.num_users + self.num_items
            w = torch.cat([self.weight_item, self.weight_user])
            self._homogeneous = Adjacency(ei, w, (n, n), self.backend)
        return self._homogeneous

    def user_block(self) -> Adjacency:
        r"""The user rows of one layer on their own: :math:`\mathbf{R}`
        ``[U, I]`` as an :class:`~pyg_brmrs.nn.graph.Adjacency`, so that
        ``op.matmul(x_item)`` is :math:`\mathbf{R}\mathbf{X}_I`, the users'
        symmetric-normalised sum over their items (*e.g.* MGCN's user view
        of its item–item views). Built on first use."""
        if self._user_block is None:
            self._user_block = Adjacency(self.edge_index.flip(0),
                                         self.weight_user,
                                         (self.num_users, self.num_items),
                                         self.backend)
        return self._user_block

    def with_user_rows(self, user_rows: Optional[Tensor]
                       ) -> 'BipartiteAdjacency':
        r"""The same operator (sharing every tensor) whose
        :meth:`layer_mean` returns the user rows :obj:`user_rows`."""
        if user_rows is None and self.user_rows is None:
            return self
        out = copy.copy(self)
        out.user_rows = user_rows
        return out

    def _csr_kernel(self, x: Tensor) -> bool:
        return self.backend == 'csr' and not is_compiling() and (
            x.device.type != 'cpu' or x.dtype in (torch.float32,
                                                  torch.float64))

    def layer_mean(self, x_user: Tensor, x_item: Tensor, num_layers: int,
                   last: bool = False, scale: Optional[float] = None
                   ) -> Tuple[Tensor, Tensor]:
        r"""The user and item rows of :math:`s\sum_{l=0}^{L}
        \mathbf{A}^l \mathbf{X}`, :math:`s` = :obj:`scale` (default
        :math:`1/(L+1)`: the layer mean; :obj:`1.0` saves a pass over the
        outputs and the gradients), or of :math:`\mathbf{A}^L \mathbf{X}`
        with :obj:`last=True`, for :math:`\mathbf{X} = [\mathbf{X}_U;
        \mathbf{X}_I]`, :math:`L` = :obj:`num_layers`, :obj:`x_user`
        ``[U, *]`` and :obj:`x_item` ``[I, *]`` of one trailing shape; one
        autograd node for all layers with the CSR kernel.

        With :attr:`user_rows` (user ids ``[B]``) the user output is
        ``[B, *]``, the rows :attr:`user_rows` of the full one (the same
        values up to float rounding) at a lower cost: the last layer's user
        product runs on those rows, the user layers are summed on them, and
        the backward pass's first item product reads only their block of
        the graph."""
        check_scale(scale, last)
        if x_user.size(0) != self.num_users or \
                x_item.size(0) != self.num_items:
            raise ValueError(f"Expected {self.num_users} user rows and "
                             f"{self.num_items} item rows (got "
                             f"{x_user.size(0)} and {x_item.size(0)})")
        rows = self.user_rows
        if rows is not None:
            rows = check_ids(rows, 'user_rows',
                             self.num_users).to(x_user.device)
        shape_user, shape_item = x_user.shape, x_item.shape
        x_user = x_user.reshape(self.num_users, -1)
        x_item = x_item.reshape(self.num_items, -1)
        if num_layers == 0:
            out_user, out_item = x_user, x_item
            if rows is not None:
                out_user = x_user.index_select(0, rows)
            if scale is not None and scale != 1.0:
                out_user, out_item = out_user * scale, out_item * scale
        elif self._csr_kernel(x_user):
            out_user, out_item = self._csr_layer_mean(
                x_user, x_item, num_layers, last, scale, rows)
        else:
            out = self.homogeneous().layer_mean(
                torch.cat([x_user, x_item]), num_layers, last, scale)
            out_user, out_item = out.split([self.num_users, self.num_items])
            if rows is not None:
                out_user = out_user.index_select(0, rows)
        return (out_user.view(out_user.size(0), *shape_user[1:]),
                out_item.view(shape_item))

    def _csr_layer_mean(self, x_user, x_item, num_layers, last, scale,
                        rows) -> Tuple[Tensor, Tensor]:
        R, R_t, B_user, B_item = self.blocks()
        if R.dtype != x_user.dtype:
            R, R_t, B_user, B_item = (m.to(x_user.dtype) for m in
                                      (R, R_t, B_user, B_item))
        x_user, x_item = x_user.contiguous(), x_item.contiguous()
        s = layer_scale(num_layers, scale)
        grad = torch.is_grad_enabled() and (x_user.requires_grad
                                            or x_item.requires_grad)
        if rows is not None:
            R_rows, R_rows_t = csr_rows(R, rows)
            if grad:
                return _LayerMeanRows.apply(x_user, x_item, R, R_t, B_user,
                                            B_item, R_rows, R_rows_t, rows,
                                            num_layers, last, s)
            return _layer_mean_rows(R, R_t, R_rows, rows, x_user, x_item,
                                    num_layers, last, s)
        if grad:
            return _LayerMean.apply(x_user, x_item, R, R_t, B_user, B_item,
                                    num_layers, last, s)
        return _layer_mean(R, R_t, x_user, x_item, num_layers, last, s)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_users={self.num_users}, '
                f'num_items={self.num_items}, nnz={self.nnz}, '
                f'backend={self.backend})')
