r"""A fixed sparse operator on node rows, with interchangeable kernels."""
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.typing import WITH_TORCH_SPARSE, SparseTensor

from pyg_brmrs.utils.checks import is_compiling
from pyg_brmrs.utils.sparse import (
    CSRAdjacency,
    check_scale,
    edge_spmm,
    layer_sum,
)

#: The kernels of :class:`Adjacency`.
BACKENDS = ('auto', 'csr', 'torch_sparse', 'edge_index')

#: Floating dtypes the CPU sparse kernels multiply natively; other inputs
#: (bfloat16, float16) are multiplied in float32 and cast back.
NATIVE_SPARSE_DTYPES = (torch.float32, torch.float64)


def check_backend(backend: str) -> str:
    r"""Returns :obj:`backend` if it is one of :data:`BACKENDS` and usable
    here (:obj:`"torch_sparse"` needs the optional package).

    Raises:
        ValueError: for an unknown name.
        ImportError: for :obj:`"torch_sparse"` without ``torch-sparse``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend '{backend}' (choose from "
                         f"{list(BACKENDS)})")
    if backend == 'torch_sparse' and not WITH_TORCH_SPARSE:
        raise ImportError("backend='torch_sparse' requires the optional "
                          "'torch-sparse' package (pip install "
                          "'pyg-brmrs[sparse]')")
    return backend


def resolve_backend(backend: str, device: torch.device,
                    edge_weight: Optional[Tensor] = None) -> str:
    r"""The kernel :obj:`"auto"` stands for: :obj:`"edge_index"` on the
    ``meta`` device (no values to build a CSR matrix from) and for
    learnable edge weights (the CSR kernels treat the weights as
    constants), :obj:`"csr"` otherwise."""
    if backend != 'auto':
        return backend
    if device.type == 'meta':
        return 'edge_index'
    if edge_weight is not None and edge_weight.requires_grad:
        return 'edge_index'
    return 'csr'


class Adjacency:
    r"""The sparse linear operator :math:`\mathbf{A} \in
    \mathbb{R}^{N_t \times N_s}` of weighted edges :math:`s \to t`,

    .. math::
        (\mathbf{A}\mathbf{X})_t = \sum_{(s, t) \in \mathcal{E}} w_{st}\,
        \mathbf{x}_s,

    applied to node rows of any trailing shape (``[N_s, F]``,
    ``[N_s, C, F]``, ...) in one sparse product, and LightGCN's layer
    combination :meth:`layer_mean`. Duplicate edges are summed.

    The kernels compute the same thing:

    * :obj:`"csr"`: a ``torch.sparse_csr`` matrix and its transpose, built
      once on first use (:class:`~pyg_brmrs.utils.sparse.CSRAdjacency`), so
      the backward pass is one CSR product too, and :meth:`layer_mean` is
      one autograd node. The weights are constants. Under
      :func:`torch.compile` the product runs as one opaque operator
      (:func:`~pyg_brmrs.utils.sparse.edge_spmm`).
    * :obj:`"torch_sparse"`: a :class:`torch_sparse.SparseTensor`.
    * :obj:`"edge_index"`: gather and scatter over the edge list; works on
      the ``meta`` device and lets gradients flow into learnable weights.

    :obj:`"auto"` is :obj:`"csr"`, except :obj:`"edge_index"` on the
    ``meta`` device and for weights that require a gradient. On the CPU,
    inputs in a floating dtype its sparse kernels do not multiply
    (bfloat16, float16) are multiplied in float32 and the result is cast
    back to the input's dtype.

    Args:
        edge_index (torch.Tensor): ``[2, E]`` (source, target) ids.
        edge_weight (torch.Tensor, optional): ``[E]`` weights (ones when
            :obj:`None`).
        size ((int, int)): ``(N_t, N_s)``.
        backend (str, optional): The kernel. (default: :obj:`"auto"`)
        cache_key (optional): What the operator was derived from, for
            values that may be cached along with it (see
            :meth:`~pyg_brmrs.nn.RecGraph.propagate`); :obj:`None` for an
            operator of one mini-batch. (default: :obj:`None`)
    """
    def __init__(self, edge_index: Tensor, edge_weight: Optional[Tensor],
                 size: Tuple[int, int], backend: str = 'auto',
                 cache_key=None):
        self.edge_index = edge_index.long()
        self.size = (int(size[0]), int(size[1]))
        self.backend = resolve_backend(check_backend(backend),
                                       edge_index.device, edge_weight)
        if edge_weight is not None and self.backend != 'edge_index':
            edge_weight = edge_weight.detach()
        self.edge_weight = edge_weight
        self.cache_key = cache_key
        self._csr: Optional[CSRAdjacency] = None
        self._sparse = None

    def __deepcopy__(self, memo) -> 'Adjacency':
        # A constant operator: copies of a model may share it.
        return self

    @property
    def nnz(self) -> int:
        r"""The number of edges :math:`|\mathcal{E}|`."""
        return int(self.edge_index.size(1))

    @property
    def is_square(self) -> bool:
        return self.size[0] == self.size[1]

    @property
    def csr(self) -> CSRAdjacency:
        r"""The CSR matrices (built on first use)."""
        if self._csr is None:
            self._csr = CSRAdjacency(self.edge_index, self.edge_weight,
                                     self.size)
        return self._csr

    def _torch_sparse(self):
        if self._sparse is None:
            ei, w = self.edge_index, self.edge_weight
            if w is None:
                w = torch.ones(ei.size(1), device=ei.device)
            self._sparse = SparseTensor(row=ei[1], col=ei[0], value=w,
                                        sparse_sizes=self.size)
        return self._sparse

    def _matmul_2d(self, x: Tensor) -> Tensor:
        if self.backend == 'csr':
            if is_compiling():
                return edge_spmm(self.edge_index, self.edge_weight, x,
                                 self.size[0])
            return self.csr.matmul(x)
        if self.backend == 'torch_sparse':
            adj = self._torch_sparse()
            if adj.dtype() != x.dtype:
                adj = adj.to(x.dtype)
            return adj.matmul(x)
        src, dst = self.edge_index
        msg = x.index_select(0, src)
        if self.edge_weight is not None:
            msg = msg * self.edge_weight.to(x.dtype).view(-1, 1)
        return x.new_zeros(self.size[0], x.size(1)).index_add_(0, dst, msg)

    def matmul(self, x: Tensor) -> Tensor:
        r""":math:`\mathbf{A}\mathbf{X}` for ``x`` of shape ``[N_s, *]``
        (returns ``[N_t, *]``)."""
        if x.size(0) != self.size[1]:
            raise ValueError(f"The operator has {self.size[1]} source rows "
                             f"but 'x' has {x.size(0)} rows")
        shape = x.shape
        x2 = x.reshape(shape[0], -1)
        low = _needs_upcast(x2)
        if low:
            x2 = x2.float()
        out = self._matmul_2d(x2)
        if low:
            out = out.to(x.dtype)
        return out.view(self.size[0], *shape[1:])

    def layer_mean(self, x: Tensor, num_layers: int, last: bool = False,
                   scale: Optional[float] = None) -> Tensor:
        r""":math:`s \sum_{l=0}^{L} \mathbf{A}^l \mathbf{X}` (:math:`s` =
        :obj:`scale`, default :math:`1/(L+1)`: the layer mean; :obj:`1.0`
        the plain layer sum, one pass less), or :math:`\mathbf{A}^L
        \mathbf{X}` with :obj:`last=True`, for a square operator and ``x``
        of shape ``[N, *]``. With the CSR kernel all layers are one autograd
        node whose backward pass is Horner's scheme over the cached
        transpose (the layer outputs are not kept)."""
        if not self.is_square:
            raise ValueError(f"'layer_mean' needs a square operator (got "
                             f"size {self.size})")
        check_scale(scale, last)
        shape = x.shape
        x2 = x.reshape(shape[0], -1)
        if num_layers > 0 and self.backend == 'csr' and \
                not is_compiling() and not _needs_upcast(x2):
            return self.csr.layer_mean(x2, num_layers, last,
                                       scale).view(shape)
        return layer_sum(self.matmul, x, num_layers, last, scale)

    def to(self, device) -> 'Adjacency':
        r"""The operator on :obj:`device` (a new object)."""
        w = None if self.edge_weight is None else self.edge_weight.to(device)
        return Adjacency(self.edge_index.to(device), w, self.size,
                         self.backend if torch.device(device).type != 'meta'
                         else 'edge_index', self.cache_key)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(size={self.size}, '
                f'nnz={self.nnz}, backend={self.backend})')


def _needs_upcast(x: Tensor) -> bool:
    return x.device.type == 'cpu' and x.is_floating_point() and \
        x.dtype not in NATIVE_SPARSE_DTYPES
