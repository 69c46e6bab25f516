r"""Row gathers whose backward pass is deterministic."""
from torch import Tensor


def take_rows(x: Tensor, index: Tensor) -> Tensor:
    r"""``x[index]`` for an integer :obj:`index` of any shape (rows of
    :obj:`x` along its first dimension), through :func:`torch.index_select`:
    the same values, but a backward pass that adds the gradients of
    repeated rows in a fixed order (on the CPU, the backward pass of
    advanced indexing accumulates in parallel, in an order that changes from
    run to run, and is slower)."""
    if index.dim() == 1:
        return x.index_select(0, index)
    out = x.index_select(0, index.reshape(-1))
    return out.view(*index.shape, *x.shape[1:])
