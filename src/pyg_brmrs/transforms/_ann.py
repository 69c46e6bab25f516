r"""Approximate cosine top-:math:`k` through a `faiss <https://faiss.ai>`_
index (:obj:`HomogeneousKNNGraph(knn="faiss")`).

The rows are scaled to unit :math:`L_2` norm, so that the inner product is
the cosine, and put into an inner-product index:

* :obj:`"ivf"` (default): ``IndexIVFFlat`` with :math:`n_\text{list}`
  k-means cells trained on a seeded sample of rows; a query scans the
  :math:`n_\text{probe}` nearest cells, about :math:`n \cdot
  n_\text{probe} / n_\text{list}` rows, instead of all :math:`n`.
  Deterministic. :math:`n_\text{probe} = n_\text{list}` is exact search.
* :obj:`"hnsw"`: ``IndexHNSWFlat`` (a navigable small-world graph with
  :math:`M` links per node, search breadth ``ef_search``). Its build is not
  deterministic with more than one thread.
* :obj:`"flat"`: ``IndexFlatIP``, exact brute force (for checking).

The index only *proposes* candidates: the :math:`k + 1` returned per row
(one more, for the row itself) are re-scored exactly in float32 and cut
with :func:`~pyg_brmrs.transforms._topk.row_topk`, so kept weights are
exact cosines and ties go to the smaller index as in the exact path; a row
differs from the exact top-:math:`k` only where the index missed a true
neighbour. With faiss-gpu installed and the features on a CUDA device,
``"ivf"`` and ``"flat"`` indexes run on that GPU.
"""
import math
from numbers import Integral, Real
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from ..utils.checks import check_choice, check_int
from ._topk import row_topk

KNN_MODES = ('exact', 'faiss')
ANN_INDEXES = ('ivf', 'hnsw', 'flat')

#: The defaults of :obj:`knn_kwargs` (see :func:`check_knn_kwargs`).
#: They were chosen by measuring recall of the exact top-k against build
#: and search cost (``benchmarks/bench_ann.py``, its ``--sweep`` mode for
#: ``nprobe``) on real 128-d item features and on synthetic 1M x 64-d rows.
DEFAULT_KNN_KWARGS: Dict[str, Any] = {
    'index': 'ivf',
    'nlist': None,        # None: 4 * sqrt(n), at least 1, at most n / 39
    'nprobe': None,       # None: max(32, round(sqrt(nlist)))
    'train_size': None,   # None: min(n, 64 * nlist)
    'hnsw_m': 32,
    'ef_construction': 80,
    'ef_search': None,    # None: max(64, 4 * k)
    'query_batch': 65536,
    'gpu': None,          # None: the GPU when faiss-gpu and CUDA features
    'seed': 0,
    'target_recall': 0.95,  # None: keep nprobe / ef_search as given
    'recall_sample': 1000,  # query rows of the recall estimate
}

_POSITIVE = ('nlist', 'nprobe', 'train_size', 'hnsw_m', 'ef_construction',
             'ef_search', 'query_batch', 'recall_sample')


def import_faiss():
    r"""Imports :mod:`faiss`, or raises an :class:`ImportError` that names
    the optional extra that installs it."""
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "knn='faiss' needs the faiss package: pip install "
            "'pyg-brmrs[ann]' (faiss-cpu), or install faiss-gpu") from e
    return faiss


def check_knn_kwargs(knn: str,
                     knn_kwargs: Optional[Mapping[str, Any]]
                     ) -> Dict[str, Any]:
    r"""Validates :obj:`knn` and :obj:`knn_kwargs` and returns the full
    parameter dict (defaults of :obj:`DEFAULT_KNN_KWARGS` filled in).

    Keys: ``index`` (:obj:`"ivf"`, :obj:`"hnsw"`, :obj:`"flat"`), ``nlist``
    and ``nprobe`` (IVF cells and cells scanned per query), ``train_size``
    (rows sampled to train the IVF quantiser), ``hnsw_m``,
    ``ef_construction``, ``ef_search`` (HNSW), ``query_batch`` (queries per
    search call), ``gpu`` (bool or :obj:`None` for automatic), ``seed``
    (of the training sample and of the recall sample), ``target_recall``
    (see :func:`ann_candidates`; :obj:`None` turns the estimate off) and
    ``recall_sample`` (its query rows). :obj:`None` means the
    size-dependent default.
    """
    check_choice(knn, 'knn', KNN_MODES)
    if knn_kwargs is None:
        knn_kwargs = {}
    if not isinstance(knn_kwargs, Mapping):
        raise TypeError(f"'knn_kwargs' must be a mapping or None (got "
                        f"{type(knn_kwargs).__name__})")
    if knn == 'exact':
        if len(knn_kwargs) > 0:
            raise ValueError(f"'knn_kwargs' is only used with knn='faiss' "
                             f"(got {dict(knn_kwargs)} with knn='exact')")
        return {}
    unknown = sorted(set(knn_kwargs) - set(DEFAULT_KNN_KWARGS))
    if unknown:
        raise ValueError(f"'knn_kwargs' has unknown keys {unknown} (known: "
                         f"{sorted(DEFAULT_KNN_KWARGS)})")
    out = dict(DEFAULT_KNN_KWARGS)
    out.update(knn_kwargs)
    check_choice(out['index'], 'knn_kwargs["index"]', ANN_INDEXES)
    for key in _POSITIVE:
        value = out[key]
        if value is None:
            continue
        out[key] = check_int(value, f'knn_kwargs["{key}"]')
    if out['gpu'] is not None and not isinstance(out['gpu'], bool):
        raise TypeError(f"'knn_kwargs[\"gpu\"]' must be a bool or None "
                        f"(got {out['gpu']!r})")
    seed = out['seed']
    if isinstance(seed, bool) or not isinstance(seed, (Integral, Real)) \
            or int(seed) != seed or seed < 0:
        raise ValueError(f"'knn_kwargs[\"seed\"]' must be a non-negative int "
                         f"(got {seed!r})")
    out['seed'] = int(seed)
    target = out['target_recall']
    if target is not None and (isinstance(target, bool) or
                               not isinstance(target, Real) or
                               not 0 < target <= 1):
        raise ValueError(f"'knn_kwargs[\"target_recall\"]' must be in (0, 1] "
                         f"or None (got {target!r})")
    import_faiss()
    return out


def ivf_sizes(n: int, params: Mapping[str, Any]) -> Tuple[int, int, int]:
    r"""``(nlist, nprobe, train_size)`` of an IVF index over :obj:`n` rows:
    the given values, else :math:`n_\text{list} = 4\sqrt{n}` (at most
    :math:`n / 39`, faiss's minimum of training points per cell),
    :math:`n_\text{probe} = \max(32, \sqrt{n_\text{list}})` (rounded) and
    :math:`\min(n, 64\, n_\text{list})` training rows.

    A query scans :math:`n \cdot n_\text{probe} / n_\text{list}` rows, so
    with these defaults the search of all :math:`n` rows costs
    :math:`O(n^{7/4})` distance evaluations instead of the exact
    :math:`O(n^2)`; a fixed fraction of cells (e.g.
    :math:`n_\text{list} / 16`) would keep it at :math:`O(n^2)`. Raise
    ``nprobe`` when recall matters more than time."""
    nlist = params.get('nlist')
    if nlist is None:
        nlist = max(1, min(int(round(4 * math.sqrt(n))), n // 39))
    nlist = max(1, min(nlist, n))
    nprobe = params.get('nprobe')
    if nprobe is None:
        nprobe = max(32, int(round(math.sqrt(nlist))))
    nprobe = min(nprobe, nlist)
    train = params.get('train_size')
    if train is None:
        train = min(n, 64 * nlist)
    return nlist, nprobe, max(min(train, n), nlist)


class _Threads:
    r"""Runs faiss with :func:`torch.get_num_threads` OpenMP threads."""
    def __init__(self, faiss):
        self.faiss = faiss

    def __enter__(self):
        self.before = self.faiss.omp_get_max_threads()
        self.faiss.omp_set_num_threads(torch.get_num_threads())

    def __exit__(self, *exc):
        self.faiss.omp_set_num_threads(self.before)


def build_index(xn: Tensor, k: int, params: Mapping[str, Any]):
    r"""A faiss inner-product index over the unit rows :obj:`xn`
    ``[n, F]`` (float32), as :obj:`params` says; returns it ready to
    search, and the objects that must stay alive while it is used."""
    faiss = import_faiss()
    n, dim = xn.shape
    data = xn.detach().to('cpu', torch.float32).contiguous().numpy()
    kind = params['index']
    use_gpu = params['gpu']
    has_gpu = hasattr(faiss, 'StandardGpuResources') and \
        faiss.get_num_gpus() > 0
    if use_gpu is None:
        use_gpu = has_gpu and xn.is_cuda and kind != 'hnsw'
    elif use_gpu and (not has_gpu or kind == 'hnsw'):
        raise ValueError("knn_kwargs gpu=True needs faiss-gpu with a visible "
                         "GPU and index 'ivf' or 'flat'")
    with _Threads(faiss):
        if kind == 'flat':
            index = faiss.IndexFlatIP(dim)
        elif kind == 'hnsw':
            index = faiss.IndexHNSWFlat(dim, params['hnsw_m'],
                                        faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = params['ef_construction']
            index.hnsw.efSearch = params['ef_search'] or max(64, 4 * k)
        else:
            nlist, nprobe, train = ivf_sizes(n, params)
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nlist,
                                       faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = params['seed']
            index.cp.verbose = False
            gen = torch.Generator().manual_seed(params['seed'])
            sample = torch.randperm(n, generator=gen)[:train].sort().values
            index.train(data[sample.numpy()])
            index.nprobe = nprobe
        keep = [index]
        if use_gpu:
            res = faiss.StandardGpuResources()
            keep.append(res)
            index = faiss.index_cpu_to_gpu(res, xn.device.index or 0, index)
            if kind == 'ivf':
                index.nprobe = nprobe
        index.add(data)
    return index, keep


def search(index, xn: Tensor, num: int,
           query_batch: int) -> Tensor:
    r"""The :obj:`num` nearest rows (by inner product) of every row of
    :obj:`xn` in :obj:`index`: ``[n, num]`` long on the device of
    :obj:`xn`, :obj:`-1` where the index found fewer."""
    faiss = import_faiss()
    data = xn.detach().to('cpu', torch.float32).contiguous().numpy()
    out = []
    with _Threads(faiss):
        for start in range(0, data.shape[0], query_batch):
            _, idx = index.search(data[start:start + query_batch], num)
            out.append(torch.from_numpy(idx))
    return torch.cat(out).to(xn.device, torch.long)


def exact_neighbours(xn: Tensor, rows: Tensor, k: int,
                     budget: int = 1 << 24) -> Tensor:
    r"""The exact top-:math:`k` inner-product neighbours ``[m, k]`` of the
    rows :obj:`rows` of the unit rows :obj:`xn` (each row itself excluded),
    in blocks of at most :obj:`budget` scores."""
    n = xn.size(0)
    step = max(1, budget // max(1, n))
    out = []
    for start in range(0, rows.numel(), step):
        r = rows[start:start + step]
        score = xn[r] @ xn.t()
        score[torch.arange(r.numel(), device=xn.device), r] = float('-inf')
        out.append(score.topk(k, dim=1).indices)
    return torch.cat(out)


def tune_recall(index, xn: Tensor, k: int,
                params: Mapping[str, Any]) -> Dict[str, Any]:
    r"""Raises the index's search breadth until its estimated recall of
    the exact top-:math:`k` reaches ``params["target_recall"]``.

    The estimate: ``recall_sample`` query rows drawn with ``seed``, their
    exact top-:math:`k` (:func:`exact_neighbours`) against the index's
    :math:`k + 1` proposals (self removed), the fraction of true neighbours
    found. Below the target, IVF's ``nprobe`` doubles (up to ``nlist``) and
    HNSW's ``efSearch`` doubles (up to :math:`n`) and the sample is searched
    again; a flat index is exact. Returns the chosen breadth and the
    estimate (``{"nprobe" or "ef_search": ..., "recall_estimate": ...,
    "sample": m}``; empty when the estimate is off or there is nothing to
    estimate)."""
    target = params.get('target_recall')
    n = xn.size(0)
    kind = params['index']
    if target is None or kind == 'flat' or k < 1 or n < 2:
        return {}
    m = min(params['recall_sample'], n)
    gen = torch.Generator().manual_seed(params['seed'] + 1)
    rows = torch.randperm(n, generator=gen)[:m].sort().values.to(xn.device)
    truth = exact_neighbours(xn, rows, k)
    queries = xn[rows]
    faiss_index = index
    name = 'nprobe' if kind == 'ivf' else 'ef_search'
    limit = (faiss_index.nlist if kind == 'ivf' else n)

    def breadth():
        return faiss_index.nprobe if kind == 'ivf' else \
            faiss_index.hnsw.efSearch

    def set_breadth(value):
        if kind == 'ivf':
            faiss_index.nprobe = value
        else:
            faiss_index.hnsw.efSearch = value

    while True:
        found = search(faiss_index, queries, min(k + 1, n),
                       params['query_batch'])
        hit = (found.unsqueeze(2) == truth.unsqueeze(1)).any(1)
        recall = float(hit.float().mean())
        if recall >= target or breadth() >= limit:
            break
        set_breadth(min(2 * breadth(), limit))
    return {name: int(breadth()), 'recall_estimate': recall, 'sample': m}


def ann_candidates(xn: Tensor, k: int, params: Mapping[str, Any],
                   info: Optional[Dict[str, Any]] = None) -> Tensor:
    r"""The :math:`\min(k + 1, n)` rows of :obj:`xn` ``[n, F]`` (unit rows)
    nearest to every row by the index of :obj:`params`, ``[n, s]`` long,
    :obj:`-1` where the index found fewer; the row itself (normally
    among them) is replaced by :obj:`-1`. With ``target_recall`` the
    index's search breadth is first raised until its estimated recall of
    the exact top-:math:`k` reaches it (:func:`tune_recall`); the chosen
    breadth and the estimate go into :obj:`info` when given."""
    n = xn.size(0)
    index, keep = build_index(xn, k, params)
    tuned = tune_recall(index, xn, min(k, n - 1), params)
    if info is not None:
        info.update(tuned)
    cand = search(index, xn, min(k + 1, n), params['query_batch'])
    del index, keep
    self_col = torch.arange(n, device=cand.device).unsqueeze(1)
    return cand.masked_fill(cand == self_col, -1)


def rescore_topk(xn: Tensor, cand: Tensor, k: int,
                 budget: int = 1 << 24) -> Tuple[Tensor, Tensor]:
    r"""Exact cosines of the candidates and their top-:math:`k` per row.

    Args:
        xn (torch.Tensor): Unit rows ``[n, F]``.
        cand (torch.Tensor): Candidate columns ``[n, s]``, :obj:`-1` for
            none, unique within a row.
        k (int): Entries to keep per row.
        budget (int): Gathered floats per block (memory bound).

    Returns:
        ``(value, index)`` ``[n, min(k, s)]``: value descending, then index
        ascending (:func:`row_topk`); :math:`-\infty` / arbitrary index
        where a row has fewer than :math:`k` candidates.
    """
    n, s = cand.shape
    dim = xn.size(1)
    rows = max(1, budget // max(1, s * dim))
    values, indices = [], []
    for start in range(0, n, rows):
        end = min(start + rows, n)
        c = cand[start:end]
        valid = c >= 0
        q = xn.index_select(0, c.clamp(min=0).view(-1)).view(end - start, s,
                                                            dim)
        score = torch.bmm(q, xn[start:end].unsqueeze(-1)).squeeze(-1)
        score = score.masked_fill(~valid, float('-inf'))
        index = torch.where(valid, c, n)  # unique sentinel per row
        val, idx = row_topk(score, k, index)
        values.append(val)
        indices.append(idx)
    return torch.cat(values), torch.cat(indices)


def ann_cosine_topk(
    x: Tensor,
    k: int,
    loop: bool = False,
    params: Optional[Mapping[str, Any]] = None,
    info: Optional[Dict[str, Any]] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Per-row top-:math:`k` cosine neighbours of the rows of :obj:`x`
    ``[n, F]`` through a faiss index: the semantics and output of
    :func:`~pyg_brmrs.transforms.similarity.cosine_topk` (zero rows get
    and are no neighbours; self excluded unless :obj:`loop`; rows
    ascending, each by cosine descending then column ascending; ``cos``
    exact float32), except that a row's list holds only the true
    neighbours the index found: the :math:`k` best of its
    :math:`k + 1` proposals (plus the row itself with :obj:`loop`), and
    fewer than :math:`\min(k, n' - 1)` entries only where the index
    returned fewer.

    :obj:`info` (a dict) receives the recall estimate of
    :func:`tune_recall`.

    Memory: the index holds the :math:`n' \times F` unit rows (plus
    :math:`n_\text{list}` centroids, or :math:`2M` links per row for HNSW);
    candidates are re-scored in blocks of at most :math:`2^{24}` gathered
    floats.
    """
    params = check_knn_kwargs('faiss', params)
    norm = torch.linalg.vector_norm(x, dim=1)
    node = (norm > 0).nonzero().view(-1)
    xn = x[node].float() / norm[node].unsqueeze(1).float()
    del norm
    n = xn.size(0)
    device = x.device
    kk = min(k, n - (0 if loop else 1))
    if kk <= 0:
        empty = torch.empty(0, dtype=torch.long, device=device)
        return empty, empty.clone(), torch.empty(0, device=device)
    cand = ann_candidates(xn, kk, params, info)
    self_col = torch.arange(n, device=device).unsqueeze(1)
    if loop:
        cand = torch.cat([cand, self_col], dim=1)
    val, idx = rescore_topk(xn, cand, kk)
    keep = torch.isfinite(val)
    row = self_col.expand_as(idx)[keep]
    return node[row], node[idx[keep]], val[keep]


def modality_candidates(x: Tensor, k: int, params: Mapping[str, Any],
                        info: Optional[Dict[str, Any]] = None
                        ) -> Tuple[Tensor, Tensor]:
    r"""Unit rows and index proposals of one modality: returns
    ``(xn, cand)`` with :obj:`xn` ``[n, F]`` the rows of :obj:`x` scaled to
    unit norm (zero rows stay zero) and :obj:`cand` ``[n, min(k + 1, n')]``
    the ids of the rows the index proposes for every row (:obj:`-1` for
    none; zero rows propose and are proposed nothing; the row itself is
    never proposed)."""
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True).float()
    xn = x.float() / torch.where(norm > 0, norm, torch.ones_like(norm))
    node = (norm.view(-1) > 0).nonzero().view(-1)
    n = x.size(0)
    width = min(k + 1, node.numel())
    cand = torch.full((n, max(width, 0)), -1, dtype=torch.long,
                      device=x.device)
    if node.numel() > 1:
        local = ann_candidates(xn[node], min(k, node.numel() - 1), params,
                               info)
        cand[node] = torch.where(local >= 0, node[local.clamp(min=0)],
                                 local)
    return xn, cand


def pair_dot(xn: Tensor, row: Tensor, col: Tensor,
             budget: int = 1 << 24) -> Tensor:
    r""":math:`\langle \mathbf{x}_r, \mathbf{x}_c \rangle` for every pair
    ``(row[p], col[p])``, gathering at most :obj:`budget` floats at once."""
    out = xn.new_empty(row.numel())
    step = max(1, budget // max(1, 2 * xn.size(1)))
    for s in range(0, row.numel(), step):
        r, c = row[s:s + step], col[s:s + step]
        out[s:s + step] = (xn.index_select(0, r) *
                           xn.index_select(0, c)).sum(dim=1)
    return out


def combined_ann_topk(
    overlap: Optional[Callable[[int, int], Tuple[Tensor, Tensor, Tensor]]],
    num_rows: int,
    k: int,
    alpha: float,
    similarity: List[Tuple[float, Tensor, Tensor]],
    loop: bool,
    chunk_size: int,
    device: Optional[torch.device] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Per-row top-:math:`k` of the combined weight

    .. math::
        e_{ij} = \alpha \, o_{ij} + \sum_m w_m \cos_m(i, j)

    over the candidate set of row :math:`i`: the union of the index
    proposals of every modality and of the :math:`j` with
    :math:`o_{ij} > 0`, every candidate scored exactly (all modalities,
    float32). With one modality this is the exact top-:math:`k` whenever
    the index returns the true :math:`k + 1` nearest rows (a :math:`j`
    outside both sets has :math:`o_{ij} = 0` and a cosine below
    :math:`k` candidates'); with several, a :math:`j` that is in no
    modality's list and shares no interaction with :math:`i` is missed.

    Args:
        overlap (callable, optional): ``overlap(s, e)`` returns the
            non-zero overlaps ``(row, col, value)`` of rows ``s:e`` (``row``
            local to the block); :obj:`None` when :math:`\alpha = 0`.
        num_rows (int): :math:`n`.
        k (int): Neighbours per row.
        alpha (float): :math:`\alpha`.
        similarity: ``(w_m, xn_m, cand_m)``: weight, unit rows ``[n, F_m]``
            and proposals ``[n, s_m]`` of every modality
            (:func:`modality_candidates`).
        loop (bool): Whether :math:`j = i` is a candidate.
        chunk_size (int): Rows per block.
        device (torch.device, optional): Where the output lives (default:
            that of the first modality, else the CPU).

    Returns:
        ``(row, col, weight)``: rows ascending, each by weight descending,
        then column ascending; only :math:`e_{ij} > 0`.
    """
    if device is None:
        device = similarity[0][1].device if similarity else torch.device(
            'cpu')
    n = num_rows
    rows_out, cols_out, vals_out = [], [], []
    for start in range(0, n, chunk_size):
        end = min(start + chunk_size, n)
        parts_r, parts_c = [], []
        for _, _, cand in similarity:
            c = cand[start:end]
            r = torch.arange(end - start, device=device).unsqueeze(1)
            valid = c >= 0
            parts_r.append(r.expand_as(c)[valid])
            parts_c.append(c[valid])
        if loop:
            parts_r.append(torch.arange(end - start, device=device))
            parts_c.append(torch.arange(start, end, device=device))
        if overlap is not None and alpha > 0:
            o_r, o_c, o_v = overlap(start, end)
            parts_r.append(o_r)
            parts_c.append(o_c)
        key = torch.unique(torch.cat(parts_r) * n + torch.cat(parts_c),
                           sorted=True)
        pr, pc = key // n, key % n
        e = torch.zeros(key.numel(), device=device)
        for weight, xn, _ in similarity:
            if weight > 0:
                e.add_(pair_dot(xn, pr + start, pc), alpha=weight)
        if overlap is not None and alpha > 0 and o_r.numel() > 0:
            pos = torch.searchsorted(key, o_r * n + o_c)
            e.index_add_(0, pos, (alpha * o_v).float())
        keep = e > 0
        if not loop:
            keep &= (pr + start) != pc
        pr, pc, e = pr[keep], pc[keep], e[keep]
        # (row asc, e desc, col asc): keys are sorted by (row, col); two
        # stable sorts put e descending within each row.
        order = torch.sort(e, descending=True, stable=True).indices
        order = order[torch.sort(pr[order], stable=True).indices]
        pr, pc, e = pr[order], pc[order], e[order]
        count = torch.bincount(pr, minlength=end - start)
        first = torch.cumsum(count, 0) - count
        rank = torch.arange(pr.numel(), device=device) - first[pr]
        top = rank < k
        rows_out.append(pr[top] + start)
        cols_out.append(pc[top])
        vals_out.append(e[top])
    if not rows_out:
        empty = torch.empty(0, dtype=torch.long, device=device)
        return empty, empty.clone(), torch.empty(0, device=device)
    return torch.cat(rows_out), torch.cat(cols_out), torch.cat(vals_out)
