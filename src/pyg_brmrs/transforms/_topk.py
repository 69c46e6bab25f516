r"""Row-wise top-:math:`k` with a deterministic tie-break.

:func:`torch.topk` returns the :math:`k` largest values of each row but does
not promise *which* of several equal values it keeps at the boundary, nor in
which order equal values come out. :func:`row_topk` fixes both: it keeps, per
row, the :math:`k` entries that come first in the order

.. math::
    (v, j) \prec (v', j') \iff v > v' \;\text{ or }\; (v = v' \text{ and }
    j < j'),

*i.e.* larger value first, then smaller column index, and returns them in that
order. The extra work over a plain :func:`torch.topk` is one more entry per
row (the :math:`(k+1)`-th tells whether a tie crosses the boundary) and, on
the rows that really have such a tie, a second :func:`torch.topk` over the
column indices of the boundary value.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor


def row_topk(
    value: Tensor,
    k: int,
    index: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    r"""The :math:`k` largest entries of every row of :obj:`value`, ties broken
    by the smaller column index.

    Entries equal to :math:`-\infty` count as absent: they are returned only
    in rows with fewer than :math:`k` finite entries, at the end of the row,
    and the caller should drop them (``torch.isfinite``).

    Args:
        value (torch.Tensor): ``[R, L]`` floating-point block (no NaN).
        k (int): How many entries to keep per row (clamped to :math:`L`).
        index (torch.Tensor, optional): ``[R, L]`` integer column index of
            every entry, unique within a row among the finite entries (for a
            padded sparse block). ``None`` means the position in the row,
            ``0 .. L-1``. (default: :obj:`None`)

    Returns:
        ``(value, index)``, both ``[R, min(k, L)]``, each row ordered by
        value descending, then index ascending.
    """
    num_rows, length = value.shape
    k = min(int(k), length)
    if k <= 0 or num_rows == 0:
        empty = value.new_empty((num_rows, 0))
        return empty, empty.long()

    # One entry more than needed tells which rows have a tie across the
    # boundary: there `torch.topk` chose arbitrarily among equal values.
    # Equal neighbours anywhere in the sorted output flag both that and runs
    # of equal values inside the top-k (whose order is arbitrary too).
    extra = int(k < length)
    top_val, top_pos = value.topk(k + extra, dim=1, largest=True, sorted=True)
    equal = (top_val[:, 1:] == top_val[:, :-1]) & torch.isfinite(
        top_val[:, 1:])
    any_equal = bool(equal.any()) if equal.numel() > 0 else False
    if extra:
        top_val = top_val[:, :k].contiguous()
        top_pos = top_pos[:, :k].contiguous()
    top_idx = top_pos if index is None else index.gather(1, top_pos)
    if not any_equal:  # the common case for real-valued similarities
        return top_val, top_idx

    thresh = top_val[:, k - 1]
    if extra:
        ambiguous = equal[:, k - 1]
    else:
        ambiguous = torch.zeros_like(thresh, dtype=torch.bool)
    if bool(ambiguous.any()):
        rows = ambiguous.nonzero().view(-1)
        val, t = value[rows], thresh[rows].unsqueeze(1)
        if index is None:
            col = torch.arange(length, device=value.device).expand_as(val)
        else:
            col = index[rows]
        sentinel = torch.iinfo(torch.long).max
        eq_col = torch.where(val == t, col.long(), sentinel)
        # Entries strictly above the boundary are all in the top-k already
        # and come first there (sorted descending); the rest of the row is
        # filled with the smallest column indices among the boundary value.
        num_gt = (top_val[rows] > t).sum(dim=1, keepdim=True)
        need = k - num_gt
        max_need = int(need.max())
        smallest = eq_col.topk(max_need, dim=1, largest=False,
                               sorted=True).values
        pos = torch.arange(k, device=value.device).unsqueeze(0)
        take_top = pos < num_gt
        fill = (pos - num_gt).clamp(0, max_need - 1)
        top_idx[rows] = torch.where(take_top, top_idx[rows],
                                    smallest.gather(1, fill).to(top_idx.dtype))
        top_val[rows] = torch.where(take_top, top_val[rows], t)

    # `top_val` is sorted descending; only runs of equal values may be in an
    # arbitrary order. Put them in index order (index ascending, then a
    # stable sort by value descending), on the rows that have such runs.
    if k > 1:
        rows = equal[:, :k - 1].any(dim=1).nonzero().view(-1)
        if rows.numel() > 0:
            val, idx = top_val[rows], top_idx[rows]
            idx, perm = idx.sort(dim=1)
            val = val.gather(1, perm)
            val, perm = val.sort(dim=1, descending=True, stable=True)
            top_val[rows], top_idx[rows] = val, idx.gather(1, perm)
    return top_val, top_idx


