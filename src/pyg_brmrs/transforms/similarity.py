r"""Cosine-similarity neighbours, computed one block of rows at a time: the
similarity part of :class:`~pyg_brmrs.transforms.HomogeneousKNNGraph`,
public so that models that build their own kNN graphs (FREEDOM's frozen item
graph) use the same neighbour rule, tie-breaking and normalisation.

Every function returns COO triples ``(row, col, value)`` with rows ascending
and, within a row, values descending then columns ascending; no function
materialises an :math:`n \times n` matrix.
"""
from typing import Callable, Tuple

import torch
from torch import Tensor

from ..utils.sparse import csr_tensor

from ._cooccurrence import csr_row_block
from ._topk import row_topk

NORMALIZATIONS = ('sym', 'none')

# Cost of one stored entry of a sparse-dense product, in dense
# multiply-adds (a sparse entry is an indirect, cache-unfriendly load and a
# scatter; a dense multiply-add is vectorised), used to choose how the users'
# profile similarities are computed (see `profile_cosine_topk`).
SPARSE_COST = 64

Triple = Tuple[Tensor, Tensor, Tensor]

__all__ = [
    'NORMALIZATIONS',
    'cosine_topk',
    'knn_from_blocks',
    'normalize_similarity',
    'profile_cosine_topk',
    'user_profile',
]


def knn_from_blocks(
    num_nodes: int,
    block: Callable[[int, int], Tensor],
    k: int,
    loop: bool,
    chunk_size: int,
    device,
) -> Triple:
    r"""Per-row top-:math:`k` of an :math:`n \times n` similarity matrix that
    is only ever materialised :obj:`chunk_size` rows at a time:
    ``block(start, end)`` returns rows ``start:end`` (``[end - start, n]``).
    The diagonal is excluded unless :obj:`loop`; ties go to the smaller
    column index (:func:`row_topk`).

    Returns:
        ``(row, col, value)`` with :math:`\min(k, n - 1)` (:math:`\min(k, n)`
        with :obj:`loop`) entries per row, rows ascending, each row by value
        descending, then column ascending.
    """
    empty = torch.empty(0, dtype=torch.long, device=device)
    k = min(k, num_nodes - (0 if loop else 1))
    if k <= 0:
        return empty, empty.clone(), torch.empty(0, device=device)
    cols, vals = [], []
    for start in range(0, num_nodes, chunk_size):
        end = min(start + chunk_size, num_nodes)
        sim = block(start, end)  # [c, n]
        if not loop:
            sim.diagonal(offset=start).fill_(float('-inf'))
        val, idx = row_topk(sim, k)
        del sim
        cols.append(idx.view(-1))
        vals.append(val.view(-1))
    row = torch.arange(num_nodes, device=device).repeat_interleave(k)
    return row, torch.cat(cols), torch.cat(vals)


def cosine_topk(
    x: Tensor,
    k: int,
    loop: bool = False,
    chunk_size: int = 1024,
    inplace: bool = False,
) -> Triple:
    r"""Per-row top-:math:`k` cosine-similarity neighbours of the rows of
    :obj:`x`.

    Rows whose vector is all zero have no defined direction: they get no
    neighbours and are nobody's neighbour. Among the :math:`n'` non-zero rows,
    the candidates of row :math:`i` are all :math:`j` (:math:`j \ne i` unless
    :obj:`loop`), and row :math:`i` keeps the first
    :math:`\min(k, n' - 1)` (:math:`\min(k, n')` with :obj:`loop`) by
    (:math:`\cos(\mathbf{x}_i, \mathbf{x}_j)` descending, :math:`j`
    ascending), ties being exact ties of the float32 values. The similarity
    of a block of :obj:`chunk_size` rows with all rows is one ``[chunk, n']``
    matrix product, so peak memory is :math:`O(\text{chunk} \cdot n' +
    n' \cdot F)`, never :math:`n^2`.

    Args:
        x (torch.Tensor): Float features ``[n, F]``.
        k (int): Neighbours per row.
        loop (bool): Whether a row may pick itself.
        chunk_size (int): Rows per block.
        inplace (bool): Whether :obj:`x` may be overwritten (saves one copy).

    Returns:
        ``(row, col, cos)`` float32 ``cos`` of the kept pairs, rows ascending,
        each row by similarity descending, then :obj:`col` ascending.
    """
    norm = torch.linalg.vector_norm(x, dim=1)
    valid = norm > 0
    if bool(valid.all()):
        node = None
        x = x.div_(norm.unsqueeze(1)) if inplace else x / norm.unsqueeze(1)
    else:
        node = valid.nonzero().view(-1)
        x = x[node] / norm[node].unsqueeze(1)
    del norm, valid

    x_t = x.t()
    row, col, val = knn_from_blocks(
        x.size(0), lambda start, end: x[start:end] @ x_t, k, loop,
        chunk_size, x.device)
    if node is not None:
        row, col = node[row], node[col]
    return row, col, val


def user_profile(mat: Tensor, x: Tensor, chunk_size: int) -> Tensor:
    r"""The users' modality profiles up to a positive factor per user:
    :math:`\mathbf{A}\mathbf{X}`, the *sum* of the features of each user's
    training items (the mean has the same direction, hence the same cosines,
    and is zero exactly when the sum is). Computed in row blocks into one
    output, which avoids the transient second copy of a single sparse
    product."""
    out = x.new_empty((mat.size(0), x.size(1)))
    for start in range(0, mat.size(0), chunk_size):
        end = min(start + chunk_size, mat.size(0))
        out[start:end] = csr_row_block(mat, start, end) @ x
    return out


def profile_cosine_topk(
    mat: Tensor,
    x: Tensor,
    k: int,
    loop: bool = False,
    chunk_size: int = 1024,
) -> Triple:
    r"""Per-row top-:math:`k` cosine neighbours of the profiles
    :math:`\mathbf{p}_u = \sum_{i \in N_u} \mathbf{x}_i` (rows of
    :math:`\mathbf{P} = \mathbf{A}\mathbf{X}`, :obj:`mat` = :math:`\mathbf{A}`
    binary CSR ``[n, m]``, :obj:`x` ``[m, F]``), with the semantics of
    :func:`cosine_topk`.

    Two exact ways to get a ``[chunk, n]`` block of
    :math:`\hat{\mathbf{P}}\hat{\mathbf{P}}^{\top}` (hats: unit rows):

    * *direct*: materialise :math:`\hat{\mathbf{P}}` (``[n, F]``) and
      multiply, :math:`n F` multiply-adds per row;
    * *factored*: :math:`(\hat{\mathbf{P}}_c \mathbf{X}^{\top})
      \hat{\mathbf{A}}^{\top}` with :math:`\hat{\mathbf{A}}` the rows of
      :math:`\mathbf{A}` scaled by :math:`1 / \|\mathbf{p}_u\|`:
      :math:`m F` dense multiply-adds plus one sparse product over the
      :math:`\text{nnz}(\mathbf{A})` interactions per row, and no
      ``[n, F]`` matrix.

    The factored form is used when :math:`m F + 64\,\text{nnz}(\mathbf{A})
    < n F` (*e.g.* high-dimensional image features of users with few
    interactions each); both give the same similarities up to float32
    rounding.
    """
    num_rows, num_cols = mat.shape
    feat = x.size(1)
    if num_cols * feat + SPARSE_COST * mat.values().numel() >= num_rows * feat:
        profile = user_profile(mat, x, chunk_size)
        return cosine_topk(profile, k, loop, chunk_size, inplace=True)

    device = x.device
    norm = torch.cat([
        torch.linalg.vector_norm(
            csr_row_block(mat, s, min(s + chunk_size, num_rows)) @ x, dim=1)
        for s in range(0, num_rows, chunk_size)
    ]) if num_rows > 0 else x.new_zeros(0)
    valid = norm > 0
    node = valid.nonzero().view(-1)
    # \hat{A}: the rows of the non-zero profiles, scaled by 1 / ||p_u||.
    deg = mat.crow_indices().diff()
    deg_valid = deg[node]
    crow = deg.new_zeros(node.numel() + 1)
    crow[1:] = torch.cumsum(deg_valid, dim=0)
    first = mat.crow_indices()[node]
    local = torch.repeat_interleave(
        torch.arange(node.numel(), device=device), deg_valid)
    src = first[local] + torch.arange(local.numel(), device=device) - (
        crow[:-1][local])
    scaled = csr_tensor(crow, mat.col_indices()[src],
                        (1.0 / norm[node])[local], (node.numel(), num_cols))
    del norm, valid, deg, first, local, src
    x_t = x.t()

    def block(start: int, end: int) -> Tensor:
        p = csr_row_block(scaled, start, end) @ x  # [c, F], unit rows
        t = p @ x_t  # [c, m]
        return (scaled @ t.t()).t().contiguous()  # [c, n']

    row, col, val = knn_from_blocks(node.numel(), block, k, loop,
                                    chunk_size, device)
    return node[row], node[col], val


def normalize_similarity(row: Tensor, col: Tensor, value: Tensor,
                         num_nodes: int, normalization: str) -> Tensor:
    r"""Normalises kNN similarity weights.

    * :obj:`"sym"` (REARM): :math:`w_{ij} = s_{ij} / \sqrt{d_i d_j}` with
      :math:`d_i` the number of entries kept in row :math:`i` (the degree of
      the *binary* kNN adjacency, as REARM's ``get_knn_adj_mat``).
    * :obj:`"none"`: :math:`w_{ij} = s_{ij}`.
    """
    if normalization == 'none' or row.numel() == 0:
        return value
    deg = torch.bincount(row, minlength=num_nodes).to(value.dtype)
    return value / (deg[row] * deg[col]).sqrt()
