r"""Co-occurrence neighbours from the training interactions.

With the binary interaction matrix :math:`\mathbf{A} \in \{0, 1\}^{|U| \times
|I|}`, the co-occurrence counts are :math:`\mathbf{C} = \mathbf{A}
\mathbf{A}^{\top}` for users (shared training items) and :math:`\mathbf{C} =
\mathbf{A}^{\top} \mathbf{A}` for items (shared training users). They are
computed with sparse CSR products, one block of rows at a time; the rows of a
block are padded to ``[rows, longest row]`` sub-blocks and cut to their
top-:math:`k` with :func:`row_topk`. Blocks and sub-blocks are sized to hold
at most :math:`\text{chunk} \cdot n / 4` entries, so memory stays
:math:`O(\text{chunk} \cdot n + n \cdot k)` with few, large operations.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..utils.sparse import csr_tensor

from ._topk import row_topk

COOCCURRENCE_MODES = ('softmax', 'count', 'jaccard', 'overlap')


def binary_csr(row: Tensor, col: Tensor, size: Tuple[int, int]) -> Tensor:
    r"""The binary ``[size[0], size[1]]`` CSR matrix with ones at
    ``(row, col)``; duplicate pairs count once. Column indices are sorted
    within each row."""
    num_rows, num_cols = size
    key = torch.unique(row.long() * num_cols + col.long(), sorted=True)
    row, col = key // num_cols, key % num_cols
    crow = row.new_zeros(num_rows + 1)
    crow[1:] = torch.cumsum(torch.bincount(row, minlength=num_rows), dim=0)
    value = torch.ones(key.numel(), dtype=torch.float32, device=key.device)
    return csr_tensor(crow, col, value, size)


def csr_row_block(mat: Tensor, start: int, end: int) -> Tensor:
    r"""Rows ``start:end`` of the CSR matrix :obj:`mat` as a CSR matrix."""
    crow = mat.crow_indices()
    lo, hi = int(crow[start]), int(crow[end])
    return csr_tensor(crow[start:end + 1] - lo, mat.col_indices()[lo:hi],
                      mat.values()[lo:hi], (end - start, mat.size(1)))


def overlap_score(n_ij: Tensor, deg_i: Tensor, deg_j: Tensor,
                  measure: str) -> Tensor:
    r"""The normalised overlap of ``overlap_block`` from the counts
    :math:`n_{ij}` and the set sizes (float64 in, float64 out)."""
    if measure == 'jaccard':
        return n_ij / (deg_i + deg_j - n_ij)
    if measure == 'overlap':
        return n_ij / torch.minimum(deg_i, deg_j)
    raise ValueError(f"Unknown overlap measure '{measure}' (choose from "
                     f"['count', 'jaccard', 'overlap'])")


def cooccurrence_topk(
    mat: Tensor,
    mat_t: Tensor,
    k: int,
    mode: str = 'softmax',
    loop: bool = False,
    chunk_size: int = 1024,
    tie_rank: Optional[Tensor] = None,
    tie_shift: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Per-row top-:math:`k` co-occurrence neighbours of the rows of
    :obj:`mat` and their normalised weights.

    With :math:`N_i` the set of columns of row :math:`i` of :obj:`mat`,
    :math:`c_{ij} = |N_i \cap N_j|`. Candidates of row :math:`i` are the
    :math:`j` with :math:`c_{ij} > 0` (and :math:`j \neq i` unless
    :obj:`loop`). The kept set :math:`K_i` is the first :math:`k` candidates
    by (score descending, then the tie order: :math:`j` ascending unless
    :obj:`tie_rank` is given), where the score is
    :math:`c_{ij}` (:obj:`"softmax"`, :obj:`"count"`) or the Jaccard index
    :math:`J_{ij} = c_{ij} / (|N_i| + |N_j| - c_{ij})` (:obj:`"jaccard"`)
    or the overlap coefficient :math:`O_{ij} = c_{ij} / \min(|N_i|, |N_j|)`
    (:obj:`"overlap"`), both computed in float64 so that equal fractions
    tie exactly. Weights:

    * :obj:`"softmax"`: :math:`w_{ij} = \exp(c_{ij}) / \sum_{l \in K_i}
      \exp(c_{il})`,
    * :obj:`"count"`: :math:`w_{ij} = c_{ij} / \sum_{l \in K_i} c_{il}`,
    * :obj:`"jaccard"`: :math:`w_{ij} = J_{ij} / \sum_{l \in K_i} J_{il}`,
    * :obj:`"overlap"`: :math:`w_{ij} = O_{ij} / \sum_{l \in K_i} O_{il}`.

    Args:
        mat (torch.Tensor): Binary CSR matrix ``[n, m]`` (from
            :func:`binary_csr`).
        mat_t (torch.Tensor): Its transpose as a CSR matrix ``[m, n]``.
        k (int): Neighbours per row (:math:`k \ge 1`).
        mode (str): :obj:`"softmax"`, :obj:`"count"`, :obj:`"jaccard"` or
            :obj:`"overlap"`.
        loop (bool): Whether :math:`j = i` is a candidate (with
            :math:`c_{ii} = |N_i|`, :math:`J_{ii} = O_{ii} = 1`).
        chunk_size (int): Memory scale: blocks hold at most
            :math:`\text{chunk} \cdot n / 4` entries.
        tie_rank (torch.Tensor, optional): A permutation of the candidates
            ``[n]``: equal scores are ordered by ``tie_rank[j]`` ascending
            instead of :math:`j` (a random permutation spreads the ties
            over the candidates; by index, the lowest ids win every tie).
            (default: :obj:`None`: by :math:`j`)
        tie_shift (torch.Tensor, optional): Per-row offsets ``[n]`` (with
            :obj:`tie_rank`): row :math:`i` orders its ties by
            ``tie_rank[(j + tie_shift[i]) % n]``, a different order in every
            row (each still a permutation of the candidates), so that no
            candidate wins the ties of every row. (default: :obj:`None`:
            the same order ``tie_rank[j]`` in every row)

    Returns:
        ``(row, col, weight)`` of the kept pairs (``row`` = :math:`i`, the
        row whose list it is; rows in no particular order, each row's
        entries by score descending, then the tie order); ``weight`` is
        float32.
    """
    num_rows = mat.size(0)
    device = mat.device
    if tie_shift is not None and tie_rank is None:
        raise ValueError("'tie_shift' needs 'tie_rank'")
    deg = mat.crow_indices().diff()
    budget = max(1, chunk_size * num_rows // 4)
    # Upper bound on the non-zeros of row i of C (sum of the degrees of its
    # columns), accumulated; blocks are cut where the bound, scaled by the
    # largest non-zeros / bound ratio seen so far (times 2 for safety),
    # reaches the budget.
    row_of = torch.repeat_interleave(torch.arange(num_rows, device=device),
                                     deg)
    bound = torch.bincount(
        row_of, minlength=num_rows,
        weights=mat_t.crow_indices().diff()[mat.col_indices()].double())
    bound = torch.cumsum(bound.clamp(max=num_rows), dim=0)
    del row_of

    rows, cols, weights = [], [], []
    start, ratio = 0, 0.5  # the first block is sized by the bound itself
    while start < num_rows:
        base = float(bound[start - 1]) if start > 0 else 0.0
        limit = bound.new_tensor([base + budget / min(1.0, 2 * ratio)])
        end = int(torch.searchsorted(bound, limit, right=True))
        end = min(max(end, start + 1), num_rows)
        block = csr_row_block(mat, start, end) @ mat_t  # [rows, n] counts
        crow, col, count = (block.crow_indices(), block.col_indices(),
                            block.values())
        del block
        seen = max(col.numel() / max(1.0, float(bound[end - 1]) - base), 1e-3)
        ratio = seen if start == 0 else max(ratio, seen)
        if col.numel() > 0:
            for out in _padded_topk(crow, col, count, start, deg, k, mode,
                                    loop, budget, tie_rank, tie_shift):
                rows.append(out[0])
                cols.append(out[1])
                weights.append(out[2])
        start = end

    if len(rows) == 0:
        empty = torch.empty(0, dtype=torch.long, device=device)
        return empty, empty.clone(), torch.empty(0, device=device)
    return torch.cat(rows), torch.cat(cols), torch.cat(weights)


def _padded_topk(crow: Tensor, col: Tensor, count: Tensor, offset: int,
                 deg: Tensor, k: int, mode: str, loop: bool, budget: int,
                 tie_rank: Optional[Tensor] = None,
                 tie_shift: Optional[Tensor] = None):
    r"""Top-:math:`k` and weights of the CSR rows ``offset + r`` given by
    ``(crow, col, count)``. Rows are taken in order of their length and
    padded to ``[rows, longest row]`` sub-blocks of at most :obj:`budget`
    entries (a single longer row is a sub-block of its own), so that a few
    long rows do not inflate the padding of the many short ones."""
    device = col.device
    num_cols = deg.numel()
    length = crow.diff()
    order = torch.argsort(length)
    lo = int((length == 0).sum())  # empty rows come first: skip them
    num_rows = length.numel()
    while lo < num_rows:
        # Largest hi with (hi - lo) * length[order[hi - 1]] <= budget:
        span = length[order[lo:]]
        area = torch.arange(1, span.numel() + 1, device=device) * span
        hi = lo + max(1, int((area <= budget).sum()))
        nodes = order[lo:hi]
        lens = span[:hi - lo]
        lo = hi

        # Gather the entries of the chosen rows, grouped by row:
        first = torch.cumsum(lens, 0) - lens  # start of each row's entries
        row = torch.repeat_interleave(
            torch.arange(nodes.numel(), device=device), lens)
        pos = torch.arange(row.numel(), device=device) - first[row]
        src = crow[nodes][row] + pos
        c, n_ij = col[src], count[src]
        width = int(lens.max())
        node = nodes + offset  # the centre node of each row
        if tie_rank is None:  # the tie order
            key = c
        elif tie_shift is None:
            key = tie_rank[c]
        else:
            key = tie_rank[(c + tie_shift[node][row]) % num_cols]
        flat = row * width + pos
        fraction = mode in ('jaccard', 'overlap')
        if fraction:
            score = overlap_score(n_ij.double(), deg[node][row].double(),
                                  deg[c].double(), mode)
        else:
            # Distinct keys count * n + (n - 1 - key) (exact in float64)
            # order by (count desc, tie key asc): no tie is left to
            # `torch.topk`.
            score = n_ij.double() * num_cols + (num_cols - 1 - key)
        padded = score.new_full((nodes.numel(), width), float('-inf'))
        padded.view(-1)[flat] = score
        if not loop:  # n_ii = |N_i| > 0 is always stored: drop it
            padded.view(-1)[flat[c == node[row]]] = float('-inf')
        if fraction:
            index = c.new_full(padded.shape, num_cols)
            index.view(-1)[flat] = key
            del flat, row, pos, src, score
            val, idx = row_topk(padded, k, index)
            del index
            if tie_rank is not None:  # back from tie ranks to ids
                inverse = torch.empty_like(tie_rank)
                inverse[tie_rank] = torch.arange(num_cols, device=device)
                pad = idx >= num_cols
                idx = inverse[idx.clamp(max=num_cols - 1)]
                if tie_shift is not None:
                    idx = (idx - tie_shift[node].unsqueeze(1)) % num_cols
                idx = idx.masked_fill(pad, num_cols)
        else:
            del flat, row, pos, src, score
            val, p = row_topk(padded, k)
            idx = c[(first.unsqueeze(1) + p).clamp(max=c.numel() - 1)]
            val = (val / num_cols).floor()  # the count; -inf stays -inf
        del padded

        if mode == 'softmax':
            w = torch.softmax(val, dim=1)  # -inf padding -> weight 0
        else:
            w = val.clamp(min=0)  # -inf padding -> 0
            w = w / w.sum(dim=1, keepdim=True)
        keep = torch.isfinite(val)
        yield (node.unsqueeze(1).expand_as(idx)[keep], idx[keep],
               w[keep].float())


def rearm_padding(row: Tensor, col: Tensor, weight: Tensor, num_nodes: int,
                  k: int, degree: Tensor,
                  generator: Optional[torch.Generator] = None
                  ) -> Tuple[Tensor, Tensor, Tensor]:
    r"""REARM's padding of softmax co-occurrence lists to :math:`k` entries
    (its ``topk_sample``), applied to the output of
    :func:`cooccurrence_topk` (mode :obj:`"softmax"`).

    * A node with :math:`0 < n_i < k` neighbours appends :math:`k - n_i`
      entries drawn uniformly, independently and with replacement from its
      own :math:`n_i` neighbours; the softmax then runs over the padded
      list, so a neighbour drawn :math:`r_{ij}` times weighs
      :math:`(1 + r_{ij})\,e^{c_{ij}} / \sum_l (1 + r_{il})\,e^{c_{il}}`
      (duplicates are summed into one edge).
    * A node with no co-occurring node takes the :math:`k` nodes with the
      most training interactions (degree descending, then index
      ascending; only nodes with at least one), with weights
      :math:`\mathrm{softmax}_j(\deg_j / \sum_{l} \deg_l)` over them.
    * Nodes with :math:`n_i \ge k` are unchanged.

    Args:
        row (torch.Tensor): The node whose list each entry belongs to
            ``[E]``.
        col (torch.Tensor): The neighbour ``[E]``.
        weight (torch.Tensor): The softmax weights ``[E]``.
        num_nodes (int): The number of nodes.
        k (int): The list length.
        degree (torch.Tensor): Training interactions per node ``[n]``.
        generator (torch.Generator, optional): The random generator of the
            draws (on the device of :obj:`row`). (default: :obj:`None`,
            torch's global one)

    Returns:
        ``(row, col, weight)`` with every node's entries contiguous (nodes
        ascending; within a node, the input's order), weights summing to 1
        per node that has any.
    """
    device = row.device
    order = torch.sort(row, stable=True).indices
    row, col, weight = row[order], col[order], weight[order].double()
    n = torch.bincount(row, minlength=num_nodes)
    start = torch.cumsum(n, 0) - n
    mult = torch.ones(row.numel(), dtype=torch.float64, device=device)
    short = ((n > 0) & (n < k)).nonzero().view(-1)
    if short.numel() > 0:
        owner = torch.repeat_interleave(short, k - n[short])
        size = n[owner]
        draw = (torch.rand(owner.numel(), generator=generator, device=device,
                           dtype=torch.float64) * size).long()
        draw = torch.minimum(draw, size - 1)
        mult += torch.bincount(start[owner] + draw,
                               minlength=row.numel()).double()
    weight = mult * weight
    total = torch.zeros(num_nodes, dtype=torch.float64,
                        device=device).index_add_(0, row, weight)
    weight = weight / total[row].clamp(min=1e-300)
    empty = (n == 0).nonzero().view(-1)
    degree = degree.to(device)
    active = int((degree > 0).sum())
    if empty.numel() > 0 and active > 0:
        by_degree = torch.sort(-degree.double(), stable=True).indices
        popular = by_degree[:min(k, active)]
        share = degree[popular].double()
        w_pop = torch.softmax(share / share.sum(), dim=0)
        row = torch.cat([row, empty.repeat_interleave(popular.numel())])
        col = torch.cat([col, popular.repeat(empty.numel())])
        weight = torch.cat([weight, w_pop.repeat(empty.numel())])
        order = torch.sort(row, stable=True).indices
        row, col, weight = row[order], col[order], weight[order]
    return row, col, weight.float()
