r"""The top-:math:`k` of the *combined* edge weight of Eq. 1, one block of
rows at a time.

For a block of rows :math:`i \in [s, e)` the dense ``[e - s, n]`` matrix

.. math::
    E_{ij} = \alpha \, o_{ij} + (1 - \alpha) \sum_m \beta_m \cos_m(i, j)

is assembled from one sparse co-occurrence product (the overlap
:math:`o_{ij}`, a raw count or a Jaccard index) and one dense cosine block
per modality, and cut to its top-:math:`k` per row with :func:`row_topk`.
Peak memory is :math:`O(\text{chunk} \cdot n)` per block, never
:math:`n^2`.
"""
from typing import Callable, Dict, List, Tuple

import torch
from torch import Tensor

from ..utils.sparse import csr_tensor

from ._cooccurrence import csr_row_block, overlap_score
from .similarity import SPARSE_COST, user_profile
from ._topk import row_topk

Block = Callable[[int, int], Tensor]


def unit_rows(x: Tensor) -> Tensor:
    r"""The rows of :obj:`x` scaled to unit :math:`L_2` norm; all-zero rows
    stay zero (their cosine with every row is taken as :math:`0`)."""
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    return x / torch.where(norm > 0, norm, torch.ones_like(norm))


def cosine_block(x: Tensor) -> Block:
    r"""``block(s, e)`` = rows ``s:e`` of the cosine-similarity matrix of the
    rows of :obj:`x` ``[n, F]`` (``[e - s, n]``; zero rows give zeros)."""
    xn = unit_rows(x.float())
    xn_t = xn.t()
    return lambda start, end: xn[start:end] @ xn_t


def profile_cosine_block(mat: Tensor, x: Tensor, chunk_size: int) -> Block:
    r"""``block(s, e)`` = rows ``s:e`` of the cosine-similarity matrix of the
    user profiles :math:`\mathbf{P} = \mathbf{A}\mathbf{X}` (the sum of the
    features of each user's training items; the mean has the same
    direction), with :obj:`mat` = :math:`\mathbf{A}` (binary CSR ``[n, m]``)
    and :obj:`x` ``[m, F]``. Users with a zero profile get zero similarity.

    As in :func:`~pyg_brmrs.transforms.similarity.profile_cosine_topk`, the
    block is computed directly from the ``[n, F]`` unit profiles, or, when
    :math:`m F + 64\,\mathrm{nnz}(\mathbf{A}) < n F`, in the factored form
    :math:`(\hat{\mathbf{P}}_c \mathbf{X}^{\top}) \hat{\mathbf{A}}^{\top}`
    that never materialises the profiles."""
    num_rows, num_cols = mat.shape
    x = x.float()
    feat = x.size(1)
    if num_cols * feat + SPARSE_COST * mat.values().numel() >= num_rows * feat:
        return cosine_block(user_profile(mat, x, chunk_size))

    norm = torch.cat([
        torch.linalg.vector_norm(
            csr_row_block(mat, s, min(s + chunk_size, num_rows)) @ x, dim=1)
        for s in range(0, num_rows, chunk_size)
    ]) if num_rows > 0 else x.new_zeros(0)
    scale = torch.where(norm > 0, 1.0 / torch.where(norm > 0, norm,
                                                     torch.ones_like(norm)),
                        torch.zeros_like(norm))
    deg = mat.crow_indices().diff()
    row = torch.repeat_interleave(torch.arange(num_rows, device=x.device),
                                  deg)
    scaled = csr_tensor(mat.crow_indices(), mat.col_indices(), scale[row],
                        (num_rows, num_cols))
    x_t = x.t()

    def block(start: int, end: int) -> Tensor:
        p = csr_row_block(scaled, start, end) @ x  # [c, F], unit rows
        t = p @ x_t  # [c, m]
        return (scaled @ t.t()).t().contiguous()  # [c, n]

    return block


def overlap_block(mat: Tensor, mat_t: Tensor, start: int, end: int,
                  measure: str) -> Tuple[Tensor, Tensor, Tensor]:
    r"""The non-zero overlaps of rows ``start:end``: ``(row, col, value)``
    with ``row`` local to the block; the value (float64) is the count
    :math:`n_{ij} = |N_i \cap N_j|` (:obj:`measure="count"`), the Jaccard
    index :math:`n_{ij} / (|N_i| + |N_j| - n_{ij})` (:obj:`"jaccard"`) or
    the overlap coefficient :math:`n_{ij} / \min(|N_i|, |N_j|)`
    (:obj:`"overlap"`)."""
    block = csr_row_block(mat, start, end) @ mat_t  # [c, n] counts
    crow, col, count = (block.crow_indices(), block.col_indices(),
                        block.values())
    row = torch.repeat_interleave(
        torch.arange(end - start, device=col.device), crow.diff())
    n_ij = count.double()
    if measure == 'count':
        return row, col, n_ij
    deg = mat.crow_indices().diff().double()
    return row, col, overlap_score(n_ij, deg[row + start], deg[col], measure)


def combined_topk(
    mat: Tensor,
    mat_t: Tensor,
    k: int,
    alpha: float,
    similarity: List[Tuple[float, Block]],
    measure: str,
    loop: bool,
    chunk_size: int,
) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Per-row top-:math:`k` of the combined weight

    .. math::
        e_{ij} = \alpha \, o_{ij} + \sum_m w_m \cos_m(i, j),

    where :math:`o_{ij}` is the overlap of :func:`overlap_block` and
    :obj:`similarity` lists the pairs :math:`(w_m, \text{block}_m)` with
    :math:`w_m = (1 - \alpha)\beta_m`. The candidates of row :math:`i` are
    the :math:`j` with :math:`e_{ij} > 0` (:math:`j \ne i` unless
    :obj:`loop`); row :math:`i` keeps the first :math:`k` by
    (:math:`e_{ij}` descending, :math:`j` ascending). The weights are
    summed in float64 before the top-:math:`k`.

    Args:
        mat (torch.Tensor): Binary CSR ``[n, m]`` interactions of the nodes
            of the graph (rows).
        mat_t (torch.Tensor): Its transpose as CSR ``[m, n]``.
        k (int): Neighbours per row.
        alpha (float): The overlap coefficient :math:`\alpha`.
        similarity: The weighted cosine blocks.
        measure (str): The overlap :math:`o_{ij}`: :obj:`"count"`,
            :obj:`"jaccard"` or :obj:`"overlap"` (see
            :func:`overlap_block`).
        loop (bool): Whether :math:`j = i` is a candidate.
        chunk_size (int): Rows per block.

    Returns:
        ``(row, col, weight)``: rows ascending, each row by weight
        descending, then column ascending; ``weight`` is the combined
        :math:`e_{ij}` (float32), before any normalisation.
    """
    num_rows = mat.size(0)
    device = mat.device
    rows, cols, vals = [], [], []
    for start in range(0, num_rows, chunk_size):
        end = min(start + chunk_size, num_rows)
        e = torch.zeros((end - start, num_rows), device=device)
        for weight, block in similarity:
            if weight > 0:
                e.add_(block(start, end), alpha=weight)
        if alpha > 0:
            r, c, o = overlap_block(mat, mat_t, start, end, measure)
            e.index_put_((r, c), (alpha * o).float(), accumulate=True)
        if not loop:
            e.diagonal(offset=start).fill_(0.0)
        e.masked_fill_(e <= 0, float('-inf'))
        val, idx = row_topk(e, k)
        del e
        keep = torch.isfinite(val)
        local = torch.arange(start, end, device=device).unsqueeze(1)
        rows.append(local.expand_as(idx)[keep])
        cols.append(idx[keep])
        vals.append(val[keep].float())
    if not rows:
        empty = torch.empty(0, dtype=torch.long, device=device)
        return empty, empty.clone(), torch.empty(0, device=device)
    return torch.cat(rows), torch.cat(cols), torch.cat(vals)


def similarity_blocks(kind: str, mat: Tensor, feats: Dict[str, Tensor],
                      weights: Dict[str, float],
                      chunk_size: int) -> List[Tuple[float, Block]]:
    r"""The weighted cosine blocks of :func:`combined_topk`: item features
    (:obj:`kind="item"`) or user profiles (:obj:`kind="user"`)."""
    out = []
    for m, x in feats.items():
        x = x.to(device=mat.device, dtype=torch.float32)
        block = cosine_block(x) if kind == 'item' else profile_cosine_block(
            mat, x, chunk_size)
        out.append((weights[m], block))
    return out
