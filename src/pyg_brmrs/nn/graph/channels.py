r"""Channels of node rows propagated together over one graph, with affine
projections of fixed features propagated once and cached."""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from pyg_brmrs.nn.graph.adjacency import Adjacency
from pyg_brmrs.utils.cache import tensor_key

#: Cost of one stored entry of a sparse-dense product relative to one dense
#: multiply-add (a sparse entry is an indirect, cache-unfriendly load, a
#: dense multiply-add a vectorised one); decides whether an affine channel
#: with a :attr:`Affine.pre` operator is propagated once on its raw input.
SPARSE_COST = 8


@dataclass
class Affine:
    r"""A channel that is an affine projection of input rows,

    .. math::
        \mathbf{H} = \mathbf{P}(\mathbf{X}\mathbf{W}^{\top}) +
        \mathbf{1}\mathbf{b}^{\top} = (\mathbf{P}\mathbf{X})
        \mathbf{W}^{\top} + \mathbf{1}\mathbf{b}^{\top},

    with an optional operator :math:`\mathbf{P}` (:attr:`pre`, *e.g.* the
    users' mean over their items) applied before the bias.

    Attributes:
        x (torch.Tensor): The input ``[N_in, F]``.
        weight (torch.Tensor): :math:`\mathbf{W}` ``[d, F]``.
        bias (torch.Tensor): :math:`\mathbf{b}` ``[d]``.
        pre (Adjacency, optional): :math:`\mathbf{P}` ``[N, N_in]``.
        dtype (torch.dtype, optional): Multiply in this dtype (*e.g.*
            :obj:`torch.bfloat16`) and cast the result back to the
            weight's. (default: :obj:`None`)
        name (str): A name for cached casts of a fixed :attr:`x`.
    """
    x: Tensor
    weight: Tensor
    bias: Tensor
    pre: Optional[Adjacency] = None
    dtype: Optional[torch.dtype] = None
    name: str = ''

    @property
    def fixed(self) -> bool:
        r"""Whether the input is a constant (no gradient flows into it)."""
        return not self.x.requires_grad


Channel = Union[Tensor, Affine]


def extend_with_column(x: Tensor, column: Tensor) -> Tensor:
    r"""``[x | column]``: the ``[N, F + 1]`` input of :func:`stacked_affine`
    for a fixed ``[N, F]`` :obj:`x` whose affine map adds the bias
    :math:`\mathbf{b}` scaled by the ``[N, 1]`` :obj:`column` (a column of
    ones for a plain linear layer; the propagated ones column when
    :obj:`x` was propagated over a graph).

    (A row stride of :math:`F + 1` also keeps a power-of-two feature size
    such as 4096 from mapping every row to the same cache sets in the
    weight gradient's product.)"""
    if x.dim() != 2 or column.dim() != 2 or column.size(1) != 1 or \
            column.size(0) != x.size(0):
        raise ValueError(f"Expected 'x' [N, F] and 'column' [N, 1] (got "
                         f"{list(x.shape)} and {list(column.shape)})")
    return torch.cat([x, column.to(x.dtype)], dim=1)


class StackedAffine(torch.autograd.Function):
    r"""The autograd function of :func:`stacked_affine`."""
    @staticmethod
    def forward(ctx, xs: Sequence[Tensor], *params: Tensor) -> Tensor:
        num = len(xs)
        weights, biases = params[:num], params[num:]
        d = weights[0].size(0)
        out = weights[0].new_empty(xs[0].size(0), num, d)
        for j, (x, w, b) in enumerate(zip(xs, weights, biases)):
            # [W | b] [d, F + 1]: the bias rides on the constant column
            w_ext = torch.cat([w, b.unsqueeze(1)], dim=1)
            torch.mm(x, w_ext.t(), out=out[:, j])
        ctx.xs = xs
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        xs = ctx.xs
        num = len(xs)
        grads_w, grads_b = [None] * num, [None] * num
        for j, x in enumerate(xs):
            if not (ctx.needs_input_grad[1 + j]
                    or ctx.needs_input_grad[1 + num + j]):
                continue
            g = grad[:, j].t() @ x  # [d, F + 1]
            grads_w[j], grads_b[j] = g[:, :-1], g[:, -1]
        return (None, *grads_w, *grads_b)


def stacked_affine(xs: Sequence[Tensor], weights: Sequence[Tensor],
                   biases: Sequence[Tensor]) -> Tensor:
    r"""The channels :math:`\mathbf{H}_{:, j} = \mathbf{X}_j
    \mathbf{W}_j^{\top} + \mathbf{c}_j \mathbf{b}_j^{\top}` of fixed inputs
    as one ``[N, S, d]`` tensor, for extended inputs
    :math:`[\mathbf{X}_j \,|\, \mathbf{c}_j]` ``[N, F_j + 1]``
    (:func:`extend_with_column`), weights ``[d, F_j]`` and biases ``[d]``.

    Each channel is one matrix product with :math:`[\mathbf{W}_j \,|\,
    \mathbf{b}_j]`, written straight into its slot, and its backward pass
    is one product :math:`\mathbf{G}_{:, j}^{\top} [\mathbf{X}_j \,|\,
    \mathbf{c}_j]` whose last column is the bias gradient
    :math:`\mathbf{G}_{:, j}^{\top}\mathbf{c}_j`: no separate passes for
    the bias, its gradient or the stacking of the channels (same values up
    to float rounding). No gradient flows into the inputs."""
    if not (len(xs) == len(weights) == len(biases)) or not xs:
        raise ValueError(f"Expected as many inputs, weights and biases, at "
                         f"least one (got {len(xs)}, {len(weights)}, "
                         f"{len(biases)})")
    n, d = xs[0].size(0), weights[0].size(0)
    for j, (x, w, b) in enumerate(zip(xs, weights, biases)):
        if x.dim() != 2 or x.size(0) != n or w.dim() != 2 or \
                w.size(0) != d or x.size(1) != w.size(1) + 1 or \
                b.shape != (d, ):
            raise ValueError(
                f"Channel {j}: expected an input [{n}, F + 1], a weight "
                f"[{d}, F] and a bias [{d}] (got {list(x.shape)}, "
                f"{list(w.shape)}, {list(b.shape)})")
        if x.requires_grad:
            raise ValueError(f"Channel {j}: the input must be fixed (it "
                             f"requires a gradient)")
    xs = [x.to(weights[0].dtype).contiguous() for x in xs]
    return StackedAffine.apply(xs, *weights, *biases)


Cache = Callable[[str, object, Callable[[], object]], object]


def _no_cache(name: str, key, build):
    return build()


def project(x: Tensor, weight: Tensor, dtype: Optional[torch.dtype] = None,
            cast: Optional[Callable[[], Tensor]] = None) -> Tensor:
    r"""``x @ weight.T``, in :obj:`dtype` when given (the result cast back
    to the weight's dtype); :obj:`cast` returns :obj:`x` already cast (a
    cached cast of a fixed input)."""
    if dtype is None or dtype == weight.dtype:
        return F.linear(x.to(weight.dtype), weight)
    xc = cast() if cast is not None else x.to(dtype)
    return F.linear(xc, weight.to(dtype)).to(weight.dtype)


def _affine_rows(ch: Affine, cache: Cache) -> Tensor:
    r"""The ``[N, d]`` rows of an :class:`Affine` channel, computed as
    written (projection, then :attr:`~Affine.pre`, then bias)."""
    cast = None
    if ch.dtype is not None and ch.fixed:
        def cast():
            return cache(f'cast:{ch.name}', (tensor_key(ch.x), ch.dtype),
                         lambda: ch.x.detach().to(ch.dtype))
    h = project(ch.x, ch.weight, ch.dtype, cast)
    if ch.pre is not None:
        h = ch.pre.matmul(h)
    return h + ch.bias


def _precompute_worth_it(ch: Affine, op: Optional[Adjacency],
                         num_layers: int) -> bool:
    r"""Whether propagating a fixed :class:`Affine` input once costs less
    per step than propagating its projection at every step: always without
    :attr:`~Affine.pre`; with it, when projecting the ``[N, F]`` propagated
    input costs no more than the sparse work it saves plus projecting the
    ``[N_in, F]`` input, :math:`N F \le c\,(\mathrm{nnz}(\mathbf{P}) + L\,
    \mathrm{nnz}(\mathbf{S})) + N_{in} F`."""
    if ch.pre is None:
        return True
    n_out, n_in = ch.pre.size
    width = ch.x.size(1)
    sparse = ch.pre.nnz + (num_layers * op.nnz if op is not None else 0)
    return n_out * width <= SPARSE_COST * sparse + n_in * width


def propagate(op: Optional[Adjacency], channels: Sequence[Channel],
              num_layers: int, *, last: bool = False,
              scale: Optional[float] = None, cache: Optional[Cache] = None,
              cache_key=None) -> Tensor:
    r"""The ``[N, C, d]`` channels :math:`s\sum_{l=0}^{L}
    \mathbf{S}^l \mathbf{H}_c` (:obj:`scale` :math:`s`, default
    :math:`1/(L+1)`; :math:`\mathbf{S}^L \mathbf{H}_c` with :obj:`last`) of
    the square operator :obj:`op` (:obj:`None` or :math:`L = 0`: the
    channels as they are), in the order given.

    A tensor channel (``[N, d]``, or ``[N, k, d]`` for :math:`k` channels)
    is propagated at every call; all of them together, in one product per
    layer. An :class:`Affine` channel of a fixed input is computed, when
    :obj:`cache` is given, from its propagated input, since propagation is
    linear: :math:`\mathbf{S}(\mathbf{X}\mathbf{W}^{\top} +
    \mathbf{1}\mathbf{b}^{\top}) = (\mathbf{S}\mathbf{X})\mathbf{W}^{\top}
    + (\mathbf{S}\mathbf{1})\mathbf{b}^{\top}`: the propagated
    :math:`[\mathbf{X} \,|\, \mathbf{1}]` is computed once and cached
    (:obj:`cache(name, key, build)`, keyed by :obj:`cache_key` and the
    input tensors), and every call costs one projection per channel
    (:func:`stacked_affine`), no sparse product. The results are the same
    up to float rounding. Other :class:`Affine` channels are projected and
    propagated with the tensor channels.

    Args:
        op (Adjacency, optional): The operator :math:`\mathbf{S}`.
        channels (Sequence[torch.Tensor or Affine]): The channels.
        num_layers (int): :math:`L`.
        last (bool, optional): Return the last layer. (default: :obj:`False`)
        scale (float, optional): :math:`s`. (default: :obj:`None`)
        cache (callable, optional): ``cache(name, key, build) -> value``
            for values of fixed inputs; :obj:`None` computes everything at
            every call (*e.g.* for a mini-batch). (default: :obj:`None`)
        cache_key (optional): What identifies :obj:`op`. (default: :obj:`None`)
    """
    if op is None:
        num_layers = 0
    kinds: List[str] = []
    dynamic: List[Tensor] = []
    static: List[Affine] = []
    for ch in channels:
        if isinstance(ch, Affine):
            if cache is not None and ch.fixed and \
                    _precompute_worth_it(ch, op, num_layers):
                static.append(ch)
                kinds.append('s')
                continue
            ch = _affine_rows(ch, cache or _no_cache)
        block = ch.unsqueeze(1) if ch.dim() == 2 else ch
        dynamic.append(block)
        kinds += ['d'] * block.size(1)
    block = None
    if static:
        block = _static_block(op, static, num_layers, last, scale,
                              cache or _no_cache, cache_key)
    if not dynamic:
        return block
    x = dynamic[0] if len(dynamic) == 1 else torch.cat(dynamic, dim=1)
    h = x if num_layers == 0 and (scale is None or scale == 1.0) else \
        op.layer_mean(x, num_layers, last, scale) if op is not None else \
        x * scale
    if block is None:
        return h
    kinds_str = ''.join(kinds)
    if kinds_str == 'd' * h.size(1) + 's' * block.size(1):
        return torch.cat([h, block], dim=1)
    parts = {'d': iter(h.unbind(dim=1)), 's': iter(block.unbind(dim=1))}
    return torch.stack([next(parts[k]) for k in kinds_str], dim=1)


def _static_block(op: Optional[Adjacency], static: List[Affine],
                  num_layers: int, last: bool, scale: Optional[float],
                  cache: Cache, cache_key) -> Tensor:
    r"""The ``[N, S, d]`` projections of the precomputed propagated inputs
    of the :class:`Affine` channels :obj:`static` (fixed inputs)."""
    inputs = _propagated_inputs(op, static, num_layers, last, scale, cache,
                                cache_key)
    dtype = static[0].dtype
    weight = static[0].weight
    if dtype is None or dtype == weight.dtype:
        return stacked_affine(inputs, [ch.weight for ch in static],
                              [ch.bias for ch in static])
    out = []
    for ch, x in zip(static, inputs):
        w_ext = torch.cat([ch.weight, ch.bias.unsqueeze(1)], dim=1)
        out.append(project(x, w_ext, dtype, lambda x=x: cache(
            f'cast:static:{ch.name}', (tensor_key(x), dtype),
            lambda: x.to(dtype))))
    return torch.stack(out, dim=1)


def _propagated_inputs(op: Optional[Adjacency], static: List[Affine],
                       num_layers: int, last: bool, scale: Optional[float],
                       cache: Cache, cache_key) -> List[Tensor]:
    r"""Per channel, :math:`[\mathbf{P}\mathbf{X} \,|\, \mathbf{1}]`
    propagated over :obj:`op` (``[N, F + 1]``); the channels sharing a
    :attr:`~Affine.pre` are propagated in one product."""
    groups: Dict[int, List[int]] = {}
    for j, ch in enumerate(static):
        groups.setdefault(id(ch.pre), []).append(j)
    out: List[Optional[Tensor]] = [None] * len(static)
    for members in groups.values():
        chans = [static[j] for j in members]
        pre = chans[0].pre
        key = (cache_key, num_layers, last, scale,
               None if pre is None else pre.cache_key,
               tuple(tensor_key(ch.x) for ch in chans))
        name = 'propagated:' + ','.join(ch.name for ch in chans)
        parts = cache(name, key, lambda chans=chans, pre=pre: _propagate_raw(
            op, chans, pre, num_layers, last, scale))
        for j, part in zip(members, parts):
            out[j] = part
    return out


def _propagate_raw(op: Optional[Adjacency], chans: List[Affine],
                   pre: Optional[Adjacency], num_layers: int, last: bool,
                   scale: Optional[float]) -> Tuple[Tensor, ...]:
    with torch.no_grad():
        xs = [ch.x.float() for ch in chans]
        if pre is not None:
            xs = [pre.matmul(x) for x in xs]
        ones = xs[0].new_ones((xs[0].size(0), 1))
        x = torch.cat(xs + [ones], dim=1)
        if op is not None and num_layers > 0:
            x = op.layer_mean(x, num_layers, last, scale)
        elif scale is not None and scale != 1.0:
            x = x * scale
        parts = x.split([ch.x.size(1) for ch in chans] + [1], dim=1)
    return tuple(extend_with_column(p, parts[-1]) for p in parts[:-1])
