r"""Speed and peak memory of :class:`pyg_brmrs.transforms.HomogeneousKNNGraph`.

Builds the item–item and user–user graphs of BR-MRS / REARM on the real
Amazon Baby training interactions (and on Clothing-size data) with random
features of the true shapes (image 4096-d, text 384-d; the real Amazon
feature files are not available here), with REARM's Baby settings (item
k=10, user k=40, alpha_item=0.2, alpha_user=0.4, beta_image=0 for items and
0.2 for users), and compares

* ``ours``: the transform (chunked, sparse co-occurrence), broken down into
  co-occurrence, similarity (user profiles, chunked products, top-k,
  normalisation) and mixing;
* ``dense``: a dense reference path in the same run: the full ``n x n``
  co-occurrence and similarity matrices and ``torch.topk`` over them, the way
  REARM builds its graphs but without its Python pair loops (same semantics
  as ours, so its graphs are compared with ours edge by edge);
* ``floor``: the similarity matrix products alone, in the same chunks, of
  unit features / profiles (what REARM and any direct kNN build multiply),
  and ``own floor``: the products the transform itself does (it computes the
  users' 4096-d image similarities in a factored form with fewer
  multiply-adds), both timed in the same process right after ``ours``;
* a ``chunk_size`` sweep of ``ours`` (memory vs. speed);
* ``verify``: the user similarity parts and the co-occurrence weights of
  the real Baby graph against float64;
* ``--topk-modes``: the build time and peak memory of the two ``topk``
  modes (``per_part``, REARM's union of per-part lists, and ``combined``,
  the paper's top-k of the combined weight) with the Baby settings, written
  to ``bench_graphs_topk.{json,md}`` instead of the full report.

Every configuration runs in its own subprocess and reports its own peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``), so one configuration's peak
cannot pollute another's. ``base_rss_mb`` is the RSS after loading the data,
before the measured work (Python + torch + data).

Usage::

    python benchmarks/bench_graphs.py                 # Baby + Clothing
    python benchmarks/bench_graphs.py --datasets baby --chunks 1024
    python benchmarks/bench_graphs.py --datasets baby --topk-modes

Results go to ``benchmarks/results/bench_graphs.{json,md}``. Skips with a
message when the data is absent (set ``PYG_BRMRS_DATA`` to the shared/data
folder).
"""
import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get('PYG_BRMRS_DATA', ROOT.parent / 'shared' / 'data'))
FILES = {
    'baby': DATA / 'amazon-baby-jclaf' / 'baby_jclaf_derived.tsv',
    'clothing': DATA / 'mmhcl-lattice-inter' / 'clothing.inter',
}
SIZES = {'baby': (19445, 7050), 'clothing': (39387, 23033)}
DIMS = {'image': 4096, 'text': 384}
SETTINGS = dict(k_item=10, k_user=40, alpha_item=0.2, alpha_user=0.4,
                modality_weights_item={'image': 0.0, 'text': 1.0},
                modality_weights_user={'image': 0.2, 'text': 0.8})
FLOOR_CHUNK = 1024


# --------------------------------------------------------------------------
# Worker side: one configuration per process
# --------------------------------------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def load(dataset: str):
    import numpy as np
    import pandas as pd
    import torch
    from torch_geometric.data import HeteroData

    from pyg_brmrs.data.schema import ITEM, RATES, USER, feature_key

    df = pd.read_csv(FILES[dataset], sep='\t',
                     usecols=['userID', 'itemID', 'x_label'])
    train = df[df['x_label'] == 0]
    num_users, num_items = SIZES[dataset]
    assert int(df['userID'].max()) < num_users
    assert int(df['itemID'].max()) < num_items
    data = HeteroData()
    data[USER].num_nodes = num_users
    data[ITEM].num_nodes = num_items
    data[RATES].edge_index = torch.from_numpy(
        np.stack([train['userID'].to_numpy(), train['itemID'].to_numpy()]))
    gen = torch.Generator().manual_seed(0)
    for m, dim in DIMS.items():
        data[ITEM][feature_key(m)] = torch.randn(num_items, dim,
                                                 generator=gen)
    del df, train
    return data


TOPK_MODES = [('per_part', 'softmax'), ('per_part', 'jaccard'),
              ('combined', 'jaccard'), ('combined', 'count')]


def run_topk(data, chunk, topk, cooccurrence):
    from pyg_brmrs.data.schema import ITEM_SIM, USER_SIM
    from pyg_brmrs.transforms import HomogeneousKNNGraph

    transform = HomogeneousKNNGraph(**SETTINGS, chunk_size=chunk, topk=topk,
                                    cooccurrence=cooccurrence)
    t = time.perf_counter()
    out = transform(data)
    total = time.perf_counter() - t
    return dict(total_s=total,
                num_edges={'item': out[ITEM_SIM].edge_index.size(1),
                           'user': out[USER_SIM].edge_index.size(1)})


def run_ours(data, chunk, save=None):
    import torch

    from pyg_brmrs.data.schema import ITEM_SIM, USER_SIM
    from pyg_brmrs.transforms import HomogeneousKNNGraph
    from pyg_brmrs.transforms import homogeneous_knn_graph as mod

    buckets = {'cooccurrence': 0.0, 'similarity_topk': 0.0, 'mixing': 0.0}

    def timed(fn, bucket):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            buckets[bucket] += time.perf_counter() - t
            return out
        return wrapper

    mod.cooccurrence_topk = timed(mod.cooccurrence_topk, 'cooccurrence')
    mod.cosine_topk = timed(mod.cosine_topk, 'similarity_topk')
    mod.profile_cosine_topk = timed(mod.profile_cosine_topk,
                                    'similarity_topk')
    mod.normalize_similarity = timed(mod.normalize_similarity,
                                     'similarity_topk')
    mod._store = timed(mod._store, 'mixing')

    transform = HomogeneousKNNGraph(**SETTINGS, chunk_size=chunk)
    t = time.perf_counter()
    out = transform(data)
    total = time.perf_counter() - t
    buckets['other'] = total - sum(buckets.values())
    res = dict(total_s=total, parts_s=buckets,
               num_edges={'item': out[ITEM_SIM].edge_index.size(1),
                          'user': out[USER_SIM].edge_index.size(1)})
    if save:
        torch.save({et[0]: (out[et].edge_index, out[et].edge_weight)
                    for et in (ITEM_SIM, USER_SIM)}, save)
    return res


def _graph_inputs(data):
    r"""``(node, k, alpha, betas, vectors)`` per graph, with the vectors of
    every modality that has a non-zero weight (items: features; users: sum
    of the training items' features, see the transform)."""
    from pyg_brmrs.data.schema import ITEM, RATES, feature_key
    from pyg_brmrs.transforms._cooccurrence import binary_csr

    ei = data[RATES].edge_index
    nu, ni = data['user'].num_nodes, data[ITEM].num_nodes
    A = binary_csr(ei[0], ei[1], (nu, ni))
    A_t = binary_csr(ei[1], ei[0], (ni, nu))
    out = []
    for node, mat, mat_t, k, alpha, betas in [
        ('item', A_t, A, SETTINGS['k_item'], SETTINGS['alpha_item'],
         SETTINGS['modality_weights_item']),
        ('user', A, A_t, SETTINGS['k_user'], SETTINGS['alpha_user'],
         SETTINGS['modality_weights_user']),
    ]:
        def vectors(m, node=node):
            x = data[ITEM][feature_key(m)]
            return x if node == 'item' else A @ x
        out.append((node, mat, mat_t, k, alpha, betas, vectors))
    return out


def run_floor(data, chunk=FLOOR_CHUNK, factored=False):
    r"""Times the similarity products alone, :obj:`chunk` rows at a time
    (inputs prepared outside the timer, outputs discarded). Direct: the
    products of unit features / profiles, as REARM (and every dense kNN
    build) does them. :obj:`factored`: for the user modalities where the
    transform uses the factored form (see
    ``pyg_brmrs.transforms.similarity.profile_cosine_topk``), its products
    instead: ``(P_c X^T) A^T``."""
    import torch

    from pyg_brmrs.transforms import similarity as _similarity

    times, total = {}, 0.0
    for node, mat, _, _, alpha, betas, vectors in _graph_inputs(data):
        for m, beta in betas.items():
            if beta == 0 or alpha == 1:
                continue
            x = data['item'][f'x_{m}']
            use_factored = factored and node == 'user' and (
                mat.size(1) * x.size(1) + _similarity.SPARSE_COST *
                mat.values().numel() < mat.size(0) * x.size(1))
            if use_factored:
                scaled = torch.sparse_csr_tensor(
                    mat.crow_indices(), mat.col_indices(),
                    mat.values() / 4.0, size=mat.shape)
                x_t = x.t()
                t = time.perf_counter()
                for start in range(0, mat.size(0), chunk):
                    end = min(start + chunk, mat.size(0))
                    p = _similarity.csr_row_block(scaled, start, end) @ x
                    sim = (scaled @ (p @ x_t).t()).t().contiguous()
                    del sim, p
                dt = time.perf_counter() - t
                key = f'{node}_{m}_factored'
            else:
                x = torch.nn.functional.normalize(vectors(m), dim=1)
                x_t = x.t()
                t = time.perf_counter()
                for start in range(0, x.size(0), chunk):
                    sim = x[start:start + chunk] @ x_t
                    del sim
                dt = time.perf_counter() - t
                key = f'{node}_{m}'
            times[key] = dt
            total += dt
            del x, x_t
    return dict(total_s=total, parts_s=times)


def run_dense(data, compare=None):
    r"""Full ``n x n`` matrices + ``torch.topk``, same semantics as ours:
    self excluded, co-occurrence ties by the smaller index (encoded in the
    key ``count * n + (n - 1 - j)``, exact in float32 here), similarity ties
    (none with random features) left to ``torch.topk``."""
    import torch

    buckets = {'cooccurrence': 0.0, 'similarity_topk': 0.0, 'mixing': 0.0}
    graphs = {}
    for node, mat, mat_t, k, alpha, betas, vectors in _graph_inputs(data):
        n = mat.size(0)
        rows, cols, weights = [], [], []
        t = time.perf_counter()
        # Dense co-occurrence counts, as REARM's creat_co_occur_matrix:
        C = (mat @ mat_t).to_dense()
        C.fill_diagonal_(0)
        assert float(C.max()) * n + n < 2**24, 'key not exact in float32'
        present = C > 0
        C.mul_(n).add_(torch.arange(n - 1, -1, -1, dtype=C.dtype))
        C[~present] = float('-inf')
        del present
        key, idx = C.topk(k, dim=1)
        del C
        keep = torch.isfinite(key)
        count = (key.clamp(min=0).long() // n).float()
        w = torch.softmax(count.masked_fill(~keep, float('-inf')), dim=1)
        rows.append(torch.arange(n).view(-1, 1).expand_as(idx)[keep])
        cols.append(idx[keep])
        weights.append(alpha * w[keep])
        buckets['cooccurrence'] += time.perf_counter() - t

        t = time.perf_counter()
        for m, beta in betas.items():
            if beta == 0:
                continue
            x = torch.nn.functional.normalize(vectors(m), dim=1)
            S = x @ x.t()  # [n, n], as REARM's get_knn_adj_mat
            del x
            S.fill_diagonal_(float('-inf'))
            val, idx = S.topk(k, dim=1)
            del S
            # REARM's D^-1/2 S D^-1/2 with the binary degree (k per row):
            rows.append(torch.arange(n).repeat_interleave(k))
            cols.append(idx.reshape(-1))
            weights.append((1 - alpha) * beta * val.reshape(-1) / k)
        buckets['similarity_topk'] += time.perf_counter() - t

        t = time.perf_counter()
        A = torch.sparse_coo_tensor(
            torch.stack([torch.cat(rows), torch.cat(cols)]),
            torch.cat(weights), (n, n)).coalesce()
        graphs[node] = A
        buckets['mixing'] += time.perf_counter() - t
    res = dict(total_s=sum(buckets.values()), parts_s=buckets)

    if compare:
        ours = torch.load(compare)
        agree = {}
        for node, A in graphs.items():
            ei, w = ours[node]
            idx = A.indices()
            key_ref = idx[0] * A.size(0) + idx[1]
            key_ours = ei[1] * A.size(0) + ei[0]
            common, ia, ib = _intersect(key_ref, key_ours)
            agree[node] = dict(
                edges_dense=int(key_ref.numel()),
                edges_ours=int(key_ours.numel()), common=int(common),
                max_abs_weight_diff=float(
                    (A.values()[ia] - w[ib]).abs().max()))
        res['agreement_with_ours'] = agree
    return res


def run_verify(data):
    r"""Checks the transform's parts against float64 on the real graph:
    every user similarity part (both user modalities, whatever product form
    the transform picks) against float64 profiles, and the co-occurrence
    softmax weights against float64. A kept set may differ from float64
    only at (near-)ties of the k-th value; the largest float64 gap between
    a swapped entry and the k-th value is reported."""
    import torch

    from pyg_brmrs.data.schema import RATES
    from pyg_brmrs.transforms._cooccurrence import (binary_csr,
                                                    cooccurrence_topk)
    from pyg_brmrs.transforms.similarity import profile_cosine_topk

    ei = data[RATES].edge_index
    nu, ni = data['user'].num_nodes, data['item'].num_nodes
    A = binary_csr(ei[0], ei[1], (nu, ni))
    A_t = binary_csr(ei[1], ei[0], (ni, nu))
    k = SETTINGS['k_user']
    out = {}
    t = time.perf_counter()
    for m in ('image', 'text'):
        x = data['item'][f'x_{m}']
        row, col, val = profile_cosine_topk(A, x, k, False, 1024)
        ours = col.view(nu, k)
        A64 = torch.sparse_csr_tensor(A.crow_indices(), A.col_indices(),
                                      A.values().double(), size=A.shape)
        P = A64 @ x.double()  # float64 profiles (sums; same cosines)
        P = P / P.norm(dim=1, keepdim=True)
        rows_diff, gap, err = 0, 0.0, 0.0
        for s in range(0, nu, 2048):
            S = P[s:s + 2048] @ P.t()
            S.diagonal(offset=s).fill_(float('-inf'))
            kth = S.topk(k, dim=1).values[:, -1]
            got = ours[s:s + 2048]
            # ours' kept entries must all be >= the float64 k-th value,
            # up to the gap reported here:
            below = (kth.unsqueeze(1) - S.gather(1, got)).clamp(min=0)
            rows_diff += int((below > 0).any(dim=1).sum())
            gap = max(gap, float(below.max()))
            err = max(err, float((S.gather(1, got) - val.view(nu, k)[
                s:s + 2048].double()).abs().max()))
        out[f'user_{m}'] = dict(rows_not_float64_topk=rows_diff,
                                max_float64_gap_to_kth=gap,
                                max_abs_cos_error=err)
    for node, mat, mat_t, kk, n in [('user', A, A_t, k, nu),
                                    ('item', A_t, A, SETTINGS['k_item'], ni)]:
        r, c, w = cooccurrence_topk(mat, mat_t, kk, 'softmax', False, 1024)
        C = (mat @ mat_t).to_sparse_coo()  # exact counts
        key, perm = torch.sort(C.indices()[0] * n + C.indices()[1])
        pos = torch.searchsorted(key, r * n + c)
        assert bool((key[pos] == r * n + c).all())
        cnt = C.values().double()[perm][pos]
        mx = torch.full((n, ), float('-inf'), dtype=torch.float64)
        mx = mx.scatter_reduce(0, r, cnt, 'amax')
        e = (cnt - mx[r]).exp()
        ref = e / torch.zeros(n, dtype=torch.float64).index_add_(0, r, e)[r]
        out[f'{node}_cooccurrence_softmax'] = dict(
            max_abs_weight_error=float((w.double() - ref).abs().max()))
    return dict(total_s=time.perf_counter() - t, parts_s={}, checks=out)


def _intersect(a, b):
    import torch
    both = torch.cat([a, b])
    uniq, inv, counts = torch.unique(both, return_inverse=True,
                                     return_counts=True)
    pos = torch.full((uniq.numel(), ), -1, dtype=torch.long)
    pos_a, pos_b = pos.clone(), pos.clone()
    pos_a[inv[:a.numel()]] = torch.arange(a.numel())
    pos_b[inv[a.numel():]] = torch.arange(b.numel())
    mask = (pos_a >= 0) & (pos_b >= 0)
    return int(mask.sum()), pos_a[mask], pos_b[mask]


def worker(spec: dict) -> dict:
    import torch
    t = time.perf_counter()
    data = load(spec['dataset'])
    load_s = time.perf_counter() - t
    base = current_rss_mb()
    if spec.get('threads'):
        torch.set_num_threads(spec['threads'])
    if spec['kind'] == 'ours':
        res = run_ours(data, spec['chunk'], spec.get('save'))
        if spec.get('with_floor'):
            # Peak RSS of ours first, then the floor in the same process,
            # right after, so that both see the same machine load.
            res['peak_rss_mb'] = peak_rss_mb()
            floor = run_floor(data)
            res['floor_s'] = floor['total_s']
            res['floor_parts_s'] = floor['parts_s']
            res['ratio'] = res['total_s'] / floor['total_s']
            own = run_floor(data, factored=True)
            res['own_floor_s'] = own['total_s']
            res['own_floor_parts_s'] = own['parts_s']
            res['own_ratio'] = res['total_s'] / own['total_s']
    elif spec['kind'] == 'floor':
        res = run_floor(data)
    elif spec['kind'] == 'verify':
        res = run_verify(data)
    elif spec['kind'] == 'dense':
        res = run_dense(data, spec.get('compare'))
    elif spec['kind'] == 'topk':
        res = run_topk(data, spec['chunk'], spec['topk'],
                       spec['cooccurrence'])
    else:
        raise ValueError(spec['kind'])
    res.setdefault('peak_rss_mb', peak_rss_mb())
    res.update(load_s=load_s, base_rss_mb=base,
               threads=torch.get_num_threads())
    res['spec'] = {k: v for k, v in spec.items()
                   if k not in ('save', 'compare')}
    return res


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------
def launch(spec: dict) -> dict:
    label = '/'.join(f'{k}={v}' for k, v in spec.items()
                     if k not in ('save', 'compare'))
    print(f'  running {label} ...', flush=True)
    proc = subprocess.run(
        [sys.executable, __file__, '--worker', json.dumps(spec)],
        capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines()
             if ln.startswith('RESULT ')]
    if proc.returncode != 0 or not lines:
        print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
        return dict(spec={k: v for k, v in spec.items()
                          if k not in ('save', 'compare')},
                    error=f'exit code {proc.returncode}')
    res = json.loads(lines[-1][len('RESULT '):])
    msg = f"    {res['total_s']:.2f} s, peak RSS {res['peak_rss_mb']:.0f} MB"
    if 'ratio' in res:
        msg += (f", floor {res['floor_s']:.2f} s, ratio {res['ratio']:.2f}, "
                f"own floor {res['own_floor_s']:.2f} s, ratio "
                f"{res['own_ratio']:.2f}")
    print(msg, flush=True)
    return res


def machine_info() -> dict:
    import torch
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import cpu_model
    return dict(
        date=datetime.datetime.now().isoformat(timespec='seconds'),
        cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
        torch=torch.__version__, python=platform.python_version(),
        platform=platform.platform(), processor=cpu_model(),
        loadavg_at_start=os.getloadavg())


def fmt_parts(parts: dict) -> str:
    return ', '.join(f'{k} {v:.2f}' for k, v in parts.items())


def median(values):
    values = sorted(values)
    n = len(values)
    return (values[n // 2] + values[(n - 1) // 2]) / 2 if n else float('nan')


def to_markdown(report: dict) -> str:
    m = report['machine']
    out = ['# HomogeneousKNNGraph: speed and peak memory', '',
           f"Command: `{report['command']}`  ",
           f"Date: {m['date']}; {m['cpu_count']} CPUs ({m['processor']}), "
           f"torch {m['torch']} ({m['torch_threads']} threads by default), "
           f"Python {m['python']}; load average at start "
           f"{[round(x, 2) for x in m['loadavg_at_start']]}.  ",
           'Settings (REARM Baby): ' + json.dumps(SETTINGS) + '; random '
           'features image 4096-d, text 384-d (seed 0); training '
           'interactions only (x_label 0).  ',
           'Every row is its own subprocess. Peak RSS = `ru_maxrss` of that '
           'process (Python, torch and the data included; base RSS = after '
           'loading the data). "ours + floor" rows time the transform and '
           'then, in the same process, the matmul floor: the chunked '
           'similarity products alone (chunk 1024) of unit features / '
           'profiles, i.e. what every dense or chunked kNN build (REARM '
           'included) must multiply. "own floor" = the products the '
           'transform itself does (for the users\' 4096-d image profiles it '
           'uses the factored form (P_c X^T) A^T, which needs fewer '
           'multiply-adds than P P^T, so ours can be faster than the '
           'floor). Both floors run in the same process right after ours, '
           'so that they see the same machine load; the machine is shared, '
           'absolute times are noisy and the ratios are what count.', '']
    for ds, res in report['results'].items():
        n_u, n_i = SIZES[ds]
        out += [f"## {ds} ({n_u} users, {n_i} items, "
                f"{res['num_train']} training interactions)", '',
                '### Transform vs. matmul floor', '',
                '| threads | chunk | ours (s) | floor (s) | ours / floor | '
                'own floor (s) | ours / own floor | peak RSS ours (MB) | '
                'base RSS (MB) | ours breakdown (s) | floor breakdown (s) | '
                'own floor breakdown (s) |',
                '|---|---|---|---|---|---|---|---|---|---|---|---|']
        for r in res['pairs']:
            if 'error' in r:
                out.append(f"| {r['spec'].get('threads', 'default')} | "
                           f"failed: {r['error']} | | | | | | | |")
                continue
            out.append(
                f"| {r['threads']} | {r['spec']['chunk']} | "
                f"{r['total_s']:.2f} | {r['floor_s']:.2f} | "
                f"**{r['ratio']:.2f}** | {r['own_floor_s']:.2f} | "
                f"{r['own_ratio']:.2f} | {r['peak_rss_mb']:.0f} | "
                f"{r['base_rss_mb']:.0f} | {fmt_parts(r['parts_s'])} | "
                f"{fmt_parts(r['floor_parts_s'])} | "
                f"{fmt_parts(r['own_floor_parts_s'])} |")
        if res.get('dense'):
            r = res['dense']
            out += ['', '### Dense reference (full n x n matrices + topk, '
                    'as REARM builds them, without its Python pair loops)',
                    '']
            if 'error' in r:
                out.append(f"failed: {r['error']}")
            else:
                out += ['| time (s) | peak RSS (MB) | breakdown (s) |',
                        '|---|---|---|',
                        f"| {r['total_s']:.2f} | {r['peak_rss_mb']:.0f} | "
                        f"{fmt_parts(r['parts_s'])} |", '',
                        'Agreement with ours (same semantics; the dense path '
                        'breaks exact ties, e.g. users with identical item '
                        'sets, in torch.topk\'s arbitrary order, and rounds '
                        'differently in float32): ' +
                        json.dumps(r.get('agreement_with_ours'))]
        if res.get('verify'):
            r = res['verify']
            out += ['', '### Exactness on the real graph (float64 check)', '',
                    'User similarity parts (k=40, both modalities, as the '
                    'transform computes them) against float64 profiles, and '
                    'the co-occurrence softmax weights against float64: ' +
                    json.dumps(r.get('checks', r.get('error')))]
        if res.get('sweep'):
            out += ['', '### chunk_size sweep (ours)', '',
                    '| chunk | time (s) | peak RSS (MB) | breakdown (s) |',
                    '|---|---|---|---|']
            for r in res['sweep']:
                chunk = r['spec']['chunk']
                chunk = 'all (None)' if chunk is None else chunk
                if 'error' in r:
                    out.append(f"| {chunk} | failed: {r['error']} | | |")
                    continue
                out.append(f"| {chunk} | {r['total_s']:.2f} | "
                           f"{r['peak_rss_mb']:.0f} | "
                           f"{fmt_parts(r['parts_s'])} |")
        out.append('')
    if report.get('targets'):
        out += ['## Targets', '']
        out += [f'- {t}' for t in report['targets']]
    return '\n'.join(out) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--datasets', nargs='+', default=['baby', 'clothing'],
                        choices=list(FILES))
    parser.add_argument('--repeats', type=int, default=3,
                        help='ours + floor pairs per dataset (Clothing: '
                        'at most 2)')
    parser.add_argument('--chunks', nargs='+',
                        default=['256', '1024', '4096', 'all'],
                        help="chunk sizes of the Baby sweep ('all' = None)")
    parser.add_argument('--no-dense', action='store_true',
                        help='skip the dense reference')
    parser.add_argument('--no-verify', action='store_true',
                        help='skip the float64 check of the Baby graphs')
    parser.add_argument('--no-single-thread', action='store_true',
                        help='skip the 1-thread ours + floor pair')
    parser.add_argument('--topk-modes', action='store_true',
                        help='only compare the topk modes (per_part vs '
                        'combined); writes bench_graphs_topk.{json,md}')
    parser.add_argument('--out', default=str(ROOT / 'benchmarks' / 'results'))
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        res = worker(json.loads(args.worker))
        print('RESULT ' + json.dumps(res), flush=True)
        return

    missing = [ds for ds in args.datasets if not FILES[ds].exists()]
    for ds in missing:
        print(f'skipping {ds}: data not available ({FILES[ds]} does not '
              f'exist; set PYG_BRMRS_DATA to the shared/data folder)')
    datasets = [ds for ds in args.datasets if ds not in missing]
    if not datasets:
        return

    if args.topk_modes:
        return topk_modes(datasets, args)

    import pandas as pd
    chunks = [None if c == 'all' else int(c) for c in args.chunks]
    report = dict(command='python ' + ' '.join(sys.argv),
                  machine=machine_info(), settings=SETTINGS, results={})
    tmp = tempfile.mkdtemp(prefix='bench_graphs_')
    targets = []
    for ds in datasets:
        print(f'{ds}:', flush=True)
        save = os.path.join(tmp, f'{ds}_ours.pt')
        repeats = args.repeats if ds == 'baby' else min(args.repeats, 2)
        pairs = []
        for rep in range(repeats):
            spec = dict(dataset=ds, kind='ours', chunk=1024, with_floor=True)
            if rep == 0:
                spec['save'] = save
            pairs.append(launch(spec))
        if ds == 'baby' and not args.no_single_thread:
            pairs.append(launch(dict(dataset=ds, kind='ours', chunk=1024,
                                     with_floor=True, threads=1)))
        res = dict(pairs=pairs)
        if ds == 'baby' and not args.no_dense:
            res['dense'] = launch(dict(dataset=ds, kind='dense',
                                       compare=save))
        if ds == 'baby' and not args.no_verify:
            res['verify'] = launch(dict(dataset=ds, kind='verify'))
        if ds == 'baby':
            res['sweep'] = [launch(dict(dataset=ds, kind='ours', chunk=c))
                            for c in chunks if c != 1024]
            res['sweep'] += [p for p in pairs[:1] if 'error' not in p]
            res['sweep'].sort(key=lambda r: float('inf') if r['spec'][
                'chunk'] is None else r['spec']['chunk'])
        res['num_train'] = int((pd.read_csv(
            FILES[ds], sep='\t', usecols=['x_label'])['x_label'] == 0).sum())
        report['results'][ds] = res

        ok = [p for p in pairs if 'error' not in p
              and p['spec'].get('threads') is None]
        if ok:
            ratio = median([p['ratio'] for p in ok])
            own = median([p['own_ratio'] for p in ok])
            peak = max(p['peak_rss_mb'] for p in ok) / 1024
            limit = 1.5 if ds == 'baby' else 4.0
            targets.append(
                f"{ds}: ours / matmul floor = {ratio:.2f} (median of "
                f"{len(ok)} same-process runs, default threads; target <= "
                f"1.5: {'met' if ratio <= 1.5 else 'MISSED'}); ours / own "
                f"products = {own:.2f}; peak RSS {peak:.2f} GB (target <= "
                f"{limit} GB: {'met' if peak <= limit else 'MISSED'})")
            print('  ' + targets[-1], flush=True)
    report['targets'] = targets

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'bench_graphs.json').write_text(json.dumps(report, indent=2))
    md = to_markdown(report)
    (out / 'bench_graphs.md').write_text(md)
    print()
    print(md)


def topk_modes(datasets, args):
    report = dict(command='python ' + ' '.join(sys.argv),
                  machine=machine_info(), settings=SETTINGS, results={})
    lines = ['# HomogeneousKNNGraph: per-part vs combined top-k', '',
             f"Command: `{report['command']}`  ",
             f"Date: {report['machine']['date']}; "
             f"{report['machine']['cpu_count']} CPUs "
             f"({report['machine']['processor']}), torch "
             f"{report['machine']['torch']}; load average at start "
             f"{list(report['machine']['loadavg_at_start'])}.  ",
             f"Settings: {json.dumps(SETTINGS)}, chunk 1024; random "
             'features image 4096-d, text 384-d. Each row: median of '
             f'{args.repeats} subprocesses (peak RSS: the largest).', '']
    for ds in datasets:
        rows = []
        for topk, co in TOPK_MODES:
            runs = [launch(dict(dataset=ds, kind='topk', chunk=1024,
                                topk=topk, cooccurrence=co))
                    for _ in range(args.repeats)]
            runs = [r for r in runs if 'error' not in r]
            rows.append(dict(topk=topk, cooccurrence=co, runs=runs))
        report['results'][ds] = rows
        base = median([r['total_s'] for r in rows[0]['runs']])
        lines += [f'## {ds}', '',
                  '| topk | cooccurrence | build s | / per_part softmax | '
                  'peak RSS MB | item edges | user edges |',
                  '|---|---|---|---|---|---|---|']
        for row in rows:
            t = median([r['total_s'] for r in row['runs']])
            peak = max(r['peak_rss_mb'] for r in row['runs'])
            edges = row['runs'][0]['num_edges']
            lines.append(f"| {row['topk']} | {row['cooccurrence']} | "
                         f"{t:.2f} | {t / base:.2f} | {peak:.0f} | "
                         f"{edges['item']} | {edges['user']} |")
        lines.append('')
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'bench_graphs_topk.json').write_text(json.dumps(report, indent=2))
    md = '\n'.join(lines)
    (out / 'bench_graphs_topk.md').write_text(md)
    print(md)


if __name__ == '__main__':
    main()
