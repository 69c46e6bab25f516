from typing import Dict, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.typing import OptTensor, SparseTensor
from torch_geometric.utils import is_torch_sparse_tensor

from pyg_brmrs.nn.graph.adjacency import Adjacency, check_backend
from pyg_brmrs.utils.cache import tensor_key
from pyg_brmrs.utils.checks import check_edge_index, is_compiling
from pyg_brmrs.utils.sparse import check_scale, layer_sum

MultiChannel = Union[Tensor, Dict[str, Tensor]]


def _device(t) -> torch.device:
    return t.device() if isinstance(t, SparseTensor) else t.device


def check_inputs(x: MultiChannel, edge_index, edge_weight: OptTensor) -> None:
    r"""Refuses, with the argument named, channels that are not
    floating-point (a propagation averages them) and inputs on different
    devices."""
    channels = x.items() if isinstance(x, dict) else [('x', x)]
    device = _device(edge_index)
    for name, t in channels:
        where = 'x' if name == 'x' else f"x['{name}']"
        if not isinstance(t, Tensor):
            raise TypeError(f"'{where}' must be a tensor (got "
                            f"{type(t).__name__})")
        if not t.is_floating_point():
            raise TypeError(f"'{where}' must be a floating-point tensor "
                            f"(got {t.dtype}); convert it, e.g. with "
                            f"x.float()")
        if t.device != device:
            raise ValueError(f"'{where}' is on {t.device} but 'edge_index' "
                             f"on {device}: move both to one device")
    if edge_weight is not None and edge_weight.device != device:
        raise ValueError(f"'edge_weight' is on {edge_weight.device} but "
                         f"'edge_index' on {device}: move both to one "
                         f"device")


class MultiModalLGConv(MessagePassing):
    r"""The Light Graph Convolution of `"LightGCN: Simplifying and Powering
    Graph Convolution Network for Recommendation"
    <https://arxiv.org/abs/2002.02126>`_, applied to several channels
    (*e.g.*, an ID channel and one channel per modality) in **one** sparse
    product:

    .. math::
        \mathbf{x}^{\prime (c)}_i = \sum_{j \in \mathcal{N}(i)}
        \frac{e_{j,i}}{\sqrt{\deg(i)\deg(j)}} \mathbf{x}^{(c)}_j
        \qquad \text{for every channel } c,

    with :math:`\deg(i) = \sum_{j} e_{j,i}` (no self-loops are added). With
    :obj:`normalize=False` the edge weights :math:`e_{j,i}` are used as they
    are (*e.g.*, for the already normalised graphs of
    :class:`~pyg_brmrs.transforms.HomogeneousKNNGraph`).

    The channels are stacked into one ``[N, C * F]`` matrix, so a layer costs
    one sparse-dense product whatever the number of channels. The backends
    give the same result:

    * :obj:`"csr"` (default for an :obj:`edge_index` tensor): the normalised
      operator as a :class:`~pyg_brmrs.nn.graph.Adjacency`, built once (see
      :obj:`cached`), whose backward pass reuses a cached transpose. The
      edge weights are treated as constants (no gradient flows into them).
    * :obj:`"torch_sparse"`: a :class:`torch_sparse.SparseTensor` (used
      automatically when one is passed as :obj:`edge_index`; requires the
      optional ``torch-sparse`` package).
    * :obj:`"edge_index"`: PyG's gather/scatter message passing
      (:meth:`propagate`; works with learnable edge weights).

    :obj:`"auto"` picks :obj:`"torch_sparse"` for a
    :class:`~torch_sparse.SparseTensor` input and :obj:`"csr"` otherwise,
    except that learnable edge weights (``edge_weight.requires_grad``) fall
    back to :obj:`"edge_index"`.

    **As** :class:`~torch_geometric.nn.conv.LGConv`. :obj:`flow` is honoured
    by every backend (``"target_to_source"`` sends the messages from
    ``edge_index[1]`` to ``edge_index[0]``, and is refused for a sparse
    adjacency input, as LGConv refuses it). Half-precision inputs
    (bfloat16, float16) work: on the CPU, whose sparse kernels do not
    multiply them, the CSR product runs in float32 and the result is cast
    back to the input's dtype. While an explainer is attached (*e.g.*
    :class:`~torch_geometric.explain.algorithm.GNNExplainer`'s edge mask) or
    a propagate / message / aggregate hook is registered, every backend
    runs :meth:`propagate`, so the mask and the hooks act on the messages
    as they do in LGConv (:meth:`message_passing`).

    **Compilation.** Under :func:`torch.compile` (``fullgraph=True`` works on
    the default path, an :obj:`edge_index` tensor with the :obj:`"csr"`
    backend) the normalisation is traced and the CSR product runs as one
    opaque operator (:func:`pyg_brmrs.utils.sparse.edge_spmm`, torch ≥ 2.4),
    because the compiler supports no sparse tensors; the operator is then
    rebuilt at every call (:obj:`cached` applies to eager mode only) and
    value checks on the indices are skipped, as on the ``meta`` device.
    :func:`torch.jit.script` is not supported: the input may be a
    dictionary of channels or one of several adjacency types, which
    TorchScript cannot express in one signature.

    Args:
        normalize (bool, optional): Apply the symmetric normalisation
            :math:`\mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}`.
            (default: :obj:`True`)
        cached (bool, optional): Cache the prepared (normalised) operator and
            reuse it while the same :obj:`edge_index` / :obj:`edge_weight`
            tensors are passed (transductive training on a fixed graph). A
            different tensor object, or an in-place change of the same one,
            invalidates the cache; :meth:`reset_parameters` clears it.
            (default: :obj:`False`)
        backend (str, optional): :obj:`"auto"`, :obj:`"csr"`,
            :obj:`"torch_sparse"` or :obj:`"edge_index"`.
            (default: :obj:`"auto"`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F)`, :math:`(|\mathcal{V}|, C,
          F)` or a dictionary of :math:`(|\mathcal{V}|, F_c)` tensors,
          edge indices :math:`(2, |\mathcal{E}|)` (a tensor or a PyG
          :class:`~torch_geometric.EdgeIndex`), a :mod:`torch.sparse`
          ``adj_t`` (COO, CSR or CSC; entry ``[target, source]``) or a
          :class:`~torch_sparse.SparseTensor` — every form
          :class:`~torch_geometric.nn.conv.LGConv` accepts, with the same
          result; on the ``meta`` device :obj:`"auto"` uses
          :obj:`"edge_index"`,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*
        - **output:** node features of the same shape (a dictionary with the
          same keys for a dictionary input)
    """
    def __init__(self, normalize: bool = True, cached: bool = False,
                 backend: str = 'auto', **kwargs):
        kwargs.setdefault('aggr', 'add')
        super().__init__(**kwargs)
        check_backend(backend)
        self.normalize = normalize
        self.cached = cached
        self.backend = backend
        self._cache_key: Optional[Tuple] = None
        self._cache = None

    def reset_parameters(self):
        super().reset_parameters()
        self._cache_key = None
        self._cache = None

    # ------------------------------------------------------------------
    def forward(self, x: MultiChannel, edge_index: Union[Tensor,
                                                          SparseTensor],
                edge_weight: OptTensor = None) -> MultiChannel:
        check_inputs(x, edge_index, edge_weight)
        if isinstance(x, dict):
            keys = list(x.keys())
            sizes = [x[k].size(-1) for k in keys]
            out = self._propagate_2d(torch.cat([x[k] for k in keys], dim=-1),
                                     edge_index, edge_weight)
            return dict(zip(keys, out.split(sizes, dim=-1)))
        if x.dim() not in (2, 3):
            raise ValueError(f"'x' must have shape [N, F] or [N, C, F] "
                             f"(got {tuple(x.shape)})")
        out = self._propagate_2d(x.reshape(x.size(0), -1), edge_index,
                                 edge_weight)
        return out.view(x.shape)

    def _resolve_backend(self, edge_index, edge_weight, x: Tensor) -> str:
        if self.backend != 'auto':
            return self.backend
        if isinstance(edge_index, SparseTensor):
            return 'torch_sparse'
        if x.device.type == 'meta':  # no values: gather/scatter only
            return 'edge_index'
        if edge_weight is not None and edge_weight.requires_grad:
            return 'edge_index'
        if is_torch_sparse_tensor(edge_index) and edge_index.requires_grad:
            return 'edge_index'
        return 'csr'

    #: The hook registries of :class:`MessagePassing`; with any hook
    #: registered, the conv runs :meth:`propagate` so that it is called.
    HOOKS = ('_propagate_forward_pre_hooks', '_propagate_forward_hooks',
             '_message_forward_pre_hooks', '_message_forward_hooks',
             '_aggregate_forward_pre_hooks', '_aggregate_forward_hooks',
             '_message_and_aggregate_forward_pre_hooks',
             '_message_and_aggregate_forward_hooks')

    def message_passing(self) -> bool:
        r"""Whether the next call runs PyG's :meth:`propagate` (messages
        gathered and scattered edge by edge) instead of one sparse product:
        with the :obj:`"edge_index"` backend, while an explainer is
        attached (``explain``, *e.g.* :class:`~torch_geometric.explain.
        algorithm.GNNExplainer`'s edge mask) or while a propagate, message,
        aggregate or message-and-aggregate hook is registered."""
        return bool(self.explain) or any(getattr(self, name, None)
                                         for name in self.HOOKS)

    def _propagate_2d(self, x: Tensor, edge_index, edge_weight) -> Tensor:
        num_nodes = x.size(0)
        sparse = isinstance(edge_index, SparseTensor) or (
            isinstance(edge_index, Tensor) and
            edge_index.layout != torch.strided)
        if sparse and self.flow != 'source_to_target':
            raise ValueError(f'Flow direction "{self.flow}" is invalid for '
                             f'a sparse adjacency input (read as adj_t, '
                             f'entry [target, source]); pass an edge_index '
                             f'tensor or use flow="source_to_target", as '
                             f'LGConv requires')
        backend = self._resolve_backend(edge_index, edge_weight, x)
        if backend == 'edge_index' or self.message_passing():
            ei, ew = self._normalized(edge_index, edge_weight, num_nodes,
                                      x.dtype)
            # propagate_type: (x: Tensor, edge_weight: OptTensor)
            return self.propagate(ei, x=x, edge_weight=ew)
        return self._prepare(edge_index, edge_weight, num_nodes, backend,
                             x.dtype).matmul(x)

    def _prepare(self, edge_index, edge_weight, num_nodes: int, backend: str,
                 dtype: torch.dtype):
        r"""The operator of one layer: the normalised
        :class:`~pyg_brmrs.nn.graph.Adjacency` with the messages flowing as
        :attr:`flow` says (a :class:`torch_sparse.SparseTensor` input is
        used as it is), cached while the same tensors are passed (not while
        :func:`torch.compile` traces)."""
        key = (backend, tensor_key(edge_index), tensor_key(edge_weight),
               num_nodes, dtype, self.flow)
        compiling = is_compiling()
        if self.cached and not compiling and self._cache_key == key:
            return self._cache
        if isinstance(edge_index, SparseTensor):
            if backend != 'torch_sparse':
                raise ValueError(f"A SparseTensor 'edge_index' needs backend "
                                 f"'torch_sparse' or 'auto' (got "
                                 f"'{backend}')")
            op = edge_index
            if self.normalize:
                op = gcn_norm(op, None, num_nodes, add_self_loops=False,
                              flow=self.flow, dtype=dtype)
        else:
            ei, ew = self._normalized(edge_index, edge_weight, num_nodes,
                                      dtype)
            if self.flow == 'target_to_source':
                ei = ei.flip(0)  # messages from edge_index[1] to [0]
            op = Adjacency(ei, ew, (num_nodes, num_nodes), backend)
        if self.cached and not compiling:
            self._cache_key, self._cache = key, op
        return op

    def _normalized(self, edge_index, edge_weight, num_nodes: int,
                    dtype: torch.dtype) -> Tuple[Tensor, OptTensor]:
        r"""The checked ``(edge_index, edge_weight)`` of any adjacency form,
        symmetric-normalised with :obj:`normalize=True`."""
        edge_index, edge_weight = adjacency_to_edge_index(
            edge_index, edge_weight, num_nodes)
        ew = None if edge_weight is None else edge_weight.to(dtype)
        if self.normalize:
            edge_index, ew = gcn_norm(edge_index, ew, num_nodes,
                                      add_self_loops=False, flow=self.flow,
                                      dtype=dtype)
        return edge_index, ew

    def message(self, x_j: Tensor, edge_weight: OptTensor) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(normalize={self.normalize}, '
                f'cached={self.cached}, backend={self.backend})')


def adjacency_to_edge_index(adj, edge_weight: OptTensor,
                            num_nodes: int) -> Tuple[Tensor, OptTensor]:
    r"""Any adjacency :class:`~torch_geometric.nn.conv.LGConv` accepts, as a
    checked ``(edge_index, edge_weight)`` pair with ``edge_index[0]`` the
    sources and ``edge_index[1]`` the targets:

    * an ``edge_index`` tensor ``[2, E]`` (or a PyG
      :class:`~torch_geometric.EdgeIndex`) with optional weights ``[E]``;
    * a :mod:`torch.sparse` matrix (COO, CSR or CSC) read as PyG's
      ``adj_t``, *i.e.* entry ``[target, source]`` holds the weight of the
      edge ``source -> target`` (duplicate entries are summed);
    * a :class:`torch_sparse.SparseTensor`, also as ``adj_t``.
    """
    if isinstance(adj, SparseTensor):
        row, col, value = adj.coo()
        return torch.stack([col, row]), value
    if isinstance(adj, Tensor) and adj.layout != torch.strided:
        if edge_weight is not None:
            raise ValueError("'edge_weight' must be None when 'edge_index' is "
                             "a sparse adjacency matrix (its values are the "
                             "weights)")
        if tuple(adj.shape) != (num_nodes, num_nodes):
            raise ValueError(f"The sparse adjacency has shape "
                             f"{tuple(adj.shape)} but 'x' has {num_nodes} "
                             f"nodes")
        coo = adj.to_sparse_coo().coalesce()
        row, col = coo.indices()
        return torch.stack([col, row]), coo.values()
    if isinstance(adj, Tensor) and hasattr(adj, 'as_tensor'):  # EdgeIndex
        adj = adj.as_tensor()
    edge_index = check_edge_index(adj, 'edge_index', num_nodes=num_nodes,
                                  edge_weight=edge_weight)
    if edge_index is not adj:
        raise ValueError(f"'edge_index' must be a long tensor (got "
                         f"{adj.dtype})")
    return edge_index, edge_weight


def layer_mean(conv: MultiModalLGConv, x: Tensor, edge_index,
               edge_weight: Optional[Tensor], num_layers: int,
               last: bool = False, scale: Optional[float] = None) -> Tensor:
    r"""LightGCN's layer combination over :obj:`num_layers` applications
    :math:`L` of :obj:`conv` (:math:`\mathbf{A}` its propagation operator):

    .. math::
        s\sum_{l=0}^{L} \mathbf{A}^l \mathbf{x}, \qquad s = \frac{1}{L+1}

    (:obj:`scale` sets another :math:`s`: :obj:`1.0` gives the plain layer
    sum and saves a pass, *e.g.* before an :math:`L_2` normalisation), or
    :math:`\mathbf{A}^L \mathbf{x}` with :obj:`last=True`; :obj:`x` (any
    shape :obj:`conv` accepts, *e.g.* ``[N, d]`` or ``[N, C, d]``) for
    :math:`L = 0`. The sum is accumulated in place in one buffer (the
    layer outputs are not kept), then scaled by :math:`s`. With
    the :obj:`"csr"` backend in eager mode all layers form one autograd node
    (:meth:`~pyg_brmrs.utils.CSRAdjacency.layer_mean`), whose backward pass
    is Horner's scheme over the cached transpose: the same products and
    sums as autograd through the layers, without their bookkeeping."""
    check_scale(scale, last)
    if num_layers == 0:
        return x if scale is None or scale == 1.0 else x * scale
    if isinstance(conv, MultiModalLGConv) and isinstance(x, Tensor) \
            and x.dim() in (2, 3) and not conv.message_passing():
        x2d = x.reshape(x.size(0), -1)
        backend = conv._resolve_backend(edge_index, edge_weight, x2d)
        if backend == 'csr':
            op = conv._prepare(edge_index, edge_weight, x.size(0), backend,
                               x2d.dtype)
            return op.layer_mean(x2d, num_layers, last,
                                 scale).view(x.shape)
    return layer_sum(lambda h: conv(h, edge_index, edge_weight), x,
                     num_layers, last, scale)
