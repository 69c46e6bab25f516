r"""The :math:`k`-NN graphs the multimodal baselines build for themselves:
item–item graphs of modality features in their two forms, **binary**
(FREEDOM, DRAGON) and **cosine-weighted** (MGCN, LATTICE), each
symmetric-normalised, their mixture over modalities, and the users'
co-occurrence graph (DRAGON, :func:`cooccurrence_knn_graph`).

Both forms keep, for every row :math:`i`, the :math:`k` rows :math:`j` of
largest :math:`\cos(\mathbf{x}_i, \mathbf{x}_j)`, the row itself included
(it is its own nearest neighbour, as in a :func:`torch.topk` over the full
similarity row), computed a block of rows at a time by
:func:`~pyg_brmrs.transforms.similarity.cosine_topk` (no :math:`n \times n`
matrix). With :math:`\mathcal{N}_k(i)` the kept neighbours,

.. math::
    A_{ij} = \begin{cases} 1 & \text{binary} \\
    \cos(\mathbf{x}_i, \mathbf{x}_j) & \text{cosine} \end{cases}
    \quad (j \in \mathcal{N}_k(i)), \qquad
    d_i = \sum_{j \in \mathcal{N}_k(i)} A_{ij}, \qquad
    \hat{A}_{ij} = \frac{A_{ij}}{\sqrt{d_i d_j}}

(:obj:`normalization="sym"`; :obj:`"none"` keeps :math:`A_{ij}`). :math:`d`
is the *row* sum of the directed :math:`k`-NN relation (:math:`k` for every
row in the binary form), as the reference implementations compute it, not
the in-degree. A layer is :math:`\mathbf{h}_i = \sum_j \hat{A}_{ij}
\mathbf{e}_j`.

Rules the reference code leaves open: ties are broken by the smaller index;
an all-zero feature row has no neighbours and is nobody's neighbour (the
reference produces NaN similarities); a row keeps :math:`\min(k, n')`
neighbours among the :math:`n'` non-zero rows; a row whose kept similarities
sum to :math:`d_i \le 0` (possible only with negative cosines) gets weight
0 on its entries instead of NaN.
"""
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.utils import coalesce

from pyg_brmrs.transforms.similarity import cosine_topk
from pyg_brmrs.utils.checks import check_int, check_modality_weights

#: The two forms of the graph, see the module description.
WEIGHTINGS = ('binary', 'cosine')
#: The normalisations, see the module description.
KNN_NORMALIZATIONS = ('sym', 'none')
#: MMRec's ``mm_image_weight`` for the modalities {image, text}.
MMREC_MODALITY_WEIGHTS = {'image': 0.1, 'text': 0.9}

__all__ = [
    'WEIGHTINGS',
    'cosine_knn_graph',
    'cooccurrence_knn_graph',
    'mixed_cosine_knn_graph',
    'default_modality_weights',
    'resolve_modality_weights',
]


def cosine_knn_graph(
    x: Tensor,
    k: int = 10,
    weighting: str = 'binary',
    normalization: str = 'sym',
    chunk_size: int = 1024,
) -> Tuple[Tensor, Tensor]:
    r"""The :math:`k`-NN graph :math:`\hat{\mathbf{A}}` of the rows of
    :obj:`x` in the form :obj:`weighting` (see the module description).

    Args:
        x (torch.Tensor): Features ``[n, F]`` (read, not modified).
        k (int, optional): Neighbours per row, the row itself included.
            (default: :obj:`10`)
        weighting (str, optional): :obj:`"binary"` or :obj:`"cosine"`.
            (default: :obj:`"binary"`)
        normalization (str, optional): :obj:`"sym"` or :obj:`"none"`.
            (default: :obj:`"sym"`)
        chunk_size (int, optional): Rows per similarity block.
            (default: :obj:`1024`)

    Returns:
        ``(edge_index, edge_weight)`` in PyG's ``source_to_target`` flow:
        ``edge_index[1]`` is the row :math:`i`, ``edge_index[0]`` its
        neighbour :math:`j`, ``edge_weight`` :math:`\hat{A}_{ij}`
        (float32), sorted by :math:`i` then by similarity.

    Raises:
        ValueError: for an unknown :obj:`weighting` or
            :obj:`normalization`, a :obj:`k` below 1, or :obj:`x` that is not
            a 2-D floating tensor.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"Unknown weighting '{weighting}' (choose from "
                         f"{list(WEIGHTINGS)})")
    if normalization not in KNN_NORMALIZATIONS:
        raise ValueError(f"Unknown normalization '{normalization}' (choose "
                         f"from {list(KNN_NORMALIZATIONS)})")
    k = check_int(k, 'k')
    if not isinstance(x, Tensor) or x.dim() != 2 or \
            not x.dtype.is_floating_point:
        raise ValueError(f"'x' must be a 2-D floating tensor of features "
                         f"(got {getattr(x, 'dtype', type(x).__name__)} of "
                         f"shape {tuple(getattr(x, 'shape', ()))})")
    n = x.size(0)
    row, col, cos = cosine_topk(x.detach().float(), k, loop=True,
                                chunk_size=check_int(chunk_size,
                                                     'chunk_size'))
    value = torch.ones_like(cos) if weighting == 'binary' else cos
    if normalization == 'sym' and row.numel() > 0:
        deg = torch.zeros(n, dtype=value.dtype,
                          device=value.device).index_add_(0, row, value)
        norm = (deg[row] * deg[col]).sqrt()
        value = torch.where((deg[row] > 0) & (deg[col] > 0),
                            value / norm, torch.zeros_like(value))
    return torch.stack([col, row]), value


def default_modality_weights(names: List[str]) -> Dict[str, float]:
    r"""MMRec's :math:`\beta_{image} = 0.1, \beta_{text} = 0.9`
    (``mm_image_weight=0.1``) for exactly the modalities
    :obj:`{"image", "text"}`, equal weights :math:`1/M` otherwise."""
    if sorted(names) == sorted(MMREC_MODALITY_WEIGHTS):
        return dict(MMREC_MODALITY_WEIGHTS)
    return {m: 1.0 / len(names) for m in names}


def resolve_modality_weights(
        names: List[str],
        modality_weights: Optional[Mapping[str, float]]) -> Dict[str, float]:
    r"""The checked :obj:`modality_weights` (one non-negative weight per
    modality, summing to one: the rule of
    :class:`~pyg_brmrs.transforms.HomogeneousKNNGraph` too), or
    :func:`default_modality_weights` for :obj:`None`."""
    if modality_weights is None:
        return default_modality_weights(names)
    return check_modality_weights(modality_weights, 'modality_weights',
                                  modalities=names)


def mixed_cosine_knn_graph(
    xs: Mapping[str, Tensor],
    k: int = 10,
    modality_weights: Optional[Mapping[str, float]] = None,
    weighting: str = 'binary',
    chunk_size: int = 1024,
) -> Tuple[Tensor, Tensor]:
    r"""The mixture :math:`\mathbf{S} = \sum_m \beta_m
    \hat{\mathbf{A}}_m` of the per-modality graphs
    :func:`cosine_knn_graph` (symmetric-normalised), as FREEDOM and DRAGON
    build their frozen item–item graph (MMRec's ``get_knn_adj_mat`` mixed
    with ``mm_image_weight``).

    Args:
        xs (Mapping[str, torch.Tensor]): modality → features
            :math:`(n, F_m)`.
        k (int, optional): Neighbours per row and modality.
            (default: :obj:`10`)
        modality_weights (Mapping[str, float], optional): :math:`\beta_m`
            (default: :func:`default_modality_weights`).
        weighting (str, optional): The form of every
            :math:`\hat{\mathbf{A}}_m`. (default: :obj:`"binary"`)
        chunk_size (int, optional): Rows per similarity block.
            (default: :obj:`1024`)

    Returns:
        ``(edge_index, edge_weight)`` as :func:`cosine_knn_graph`, sorted by
        (target, source); a pair kept by several modalities carries the sum
        of its weighted entries; a modality of weight 0 adds nothing.
    """
    names = sorted(xs)
    if not names:
        raise ValueError("'xs' must hold the features of at least one "
                         "modality")
    weights = resolve_modality_weights(names, modality_weights)
    sizes = {m: int(xs[m].size(0)) for m in names}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"All modalities must have the same number of rows "
                         f"(got {sizes})")
    n = sizes[names[0]]
    parts, values = [], []
    for m in names:
        if weights[m] == 0:
            continue
        ei, ew = cosine_knn_graph(xs[m], k, weighting, 'sym', chunk_size)
        parts.append(ei)
        values.append(weights[m] * ew)
    device = next(iter(xs.values())).device
    if not parts:
        return (torch.empty(2, 0, dtype=torch.long, device=device),
                torch.empty(0, device=device))
    return coalesce(torch.cat(parts, dim=1), torch.cat(values), n,
                    reduce='sum', sort_by_row=False)



def cooccurrence_knn_graph(
    edge_index: Tensor,
    num_users: int,
    num_items: int,
    k: int = 40,
    node_type: str = 'user',
    chunk_size: int = 1024,
    ties: str = 'random',
    seed: int = 0,
) -> Tuple[Tensor, Tensor]:
    r"""The co-occurrence :math:`k`-NN graph of the users (or items) of the
    interactions :obj:`edge_index`, as DRAGON's (and DualGNN's) user graph:
    the neighbours of user :math:`u` are the :math:`k` users :math:`v \ne
    u` sharing the most training items, :math:`c_{uv} = |\mathcal{N}_u
    \cap \mathcal{N}_v| > 0` (ties as :obj:`ties` says), with softmax
    weights :math:`w_{uv} = \exp(c_{uv}) / \sum_{v' \in K_u}
    \exp(c_{uv'})`. Computed with sparse products a block of rows at a
    time: no :math:`n \times n` matrix (the reference fills a dense count
    matrix in a Python loop over all user pairs).

    Args:
        edge_index (torch.Tensor): user→item interactions ``[2, E]``
            (duplicates count once).
        num_users (int): The number of users.
        num_items (int): The number of items.
        k (int, optional): Neighbours per node. (default: :obj:`40`)
        node_type (str, optional): :obj:`"user"` (shared items) or
            :obj:`"item"` (shared users). (default: :obj:`"user"`)
        chunk_size (int, optional): Memory scale of the blocks.
            (default: :obj:`1024`)
        ties (str, optional): Which of the candidates with equal counts are
            kept when they do not all fit: :obj:`"random"` (a seeded random
            order that differs from row to row — row :math:`u` ranks
            candidate :math:`v` by :math:`\pi((v + s_u) \bmod n)` for a
            random permutation :math:`\pi` and random shifts :math:`s` —
            so every tied candidate is equally likely and none wins the
            ties of every row, as the reference's per-row dense
            ``torch.topk`` leaves them) or :obj:`"index"` (the smaller
            index first). On real data most counts are 1 or 2, so the tie
            order decides who fills the lists: on TikTok's training users
            (k = 40) the top 1 % of users hold 35.5 % of all neighbour
            slots and 365 users are nobody's neighbour with
            :obj:`"random"`, 35.1 % and 417 with MMRec's lists, 59 % and
            2,200 with :obj:`"index"` (one random order shared by all rows
            gives 35.5 % but 1,670). (default: :obj:`"random"`)
        seed (int, optional): The seed of the random order.
            (default: :obj:`0`)

    Returns:
        ``(edge_index, edge_weight)``: ``edge_index[1]`` the node :math:`u`,
        ``edge_index[0]`` its neighbour :math:`v` (PyG's
        ``source_to_target`` flow), sorted by :math:`u`, then by
        :math:`c_{uv}` descending and the tie order; the softmax weights
        (float32).
    """
    from pyg_brmrs.transforms._cooccurrence import (
        binary_csr,
        cooccurrence_topk,
    )
    if node_type not in ('user', 'item'):
        raise ValueError(f"'node_type' must be 'user' or 'item' (got "
                         f"{node_type!r})")
    if ties not in ('random', 'index'):
        raise ValueError(f"'ties' must be 'random' or 'index' (got "
                         f"{ties!r})")
    k = check_int(k, 'k')
    user, item = edge_index.long()
    A = binary_csr(user, item, (num_users, num_items))
    A_t = binary_csr(item, user, (num_items, num_users))
    mat, mat_t = (A, A_t) if node_type == 'user' else (A_t, A)
    tie_rank = tie_shift = None
    if ties == 'random':
        gen = torch.Generator().manual_seed(check_int(seed, 'seed', 0))
        n = mat.size(0)
        tie_rank = torch.randperm(n, generator=gen).to(mat.device)
        tie_shift = torch.randint(n, (n,), generator=gen).to(mat.device)
    row, col, weight = cooccurrence_topk(mat, mat_t, k, 'softmax', False,
                                         check_int(chunk_size, 'chunk_size'),
                                         tie_rank=tie_rank,
                                         tie_shift=tie_shift)
    order = torch.sort(row, stable=True).indices  # keeps each row's order
    return torch.stack([col[order], row[order]]), weight[order]
