r"""Affine projections of fixed inputs whose constant column carries the
bias, written into the channel slots of one ``[N, S, d]`` tensor."""
from typing import Sequence

import torch
from torch import Tensor


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


class _StackedAffine(torch.autograd.Function):
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
    return stacked_affine_function.apply(xs, *weights, *biases)


#: The autograd function of :func:`stacked_affine` (a module attribute so
#: that ``benchmarks/step_split.py`` can time its passes).
stacked_affine_function = _StackedAffine
