r"""Recall, build time and peak memory of the approximate modality top-k of
``HomogeneousKNNGraph(knn="faiss")`` against the exact top-k.

For each feature matrix ``[n, F]`` and index setting, the worker runs
``pyg_brmrs.transforms._ann.ann_cosine_topk(x, k)`` (the function the
transform calls per modality: unit rows, index build, search of k + 1
proposals for every row, exact re-scoring) and reports

* ``recall``: the fraction of the exact top-k pairs that the approximate
  lists hold. Up to 60,000 rows the exact lists of *all* rows are computed
  (``cosine_topk``, the exact path, whose time is reported too); above, the
  exact top-k of a seeded random sample of ``--queries`` rows is computed by
  brute force against all rows, and the exact time is extrapolated from it
  (``exact_s`` marked ``~``);
* ``build_s``: CPU time (``time.process_time``) of the whole approximate
  top-k (index build and search of every row); on the loaded recording
  machine wall time mostly measured the other jobs (it is in the JSON as
  ``build_wall_s``), while with one thread CPU time is what an idle
  machine's wall time would be;
* ``peak_mb`` / ``extra_mb``: peak RSS of the worker process and its
  increase over the RSS after loading the features.

Feature sets: TikTok's real image and audio features (6,710 x 128, skipped
with a reason when the data is absent); Clothing-size (23,033 items x 384)
and ``--sizes`` (default 1,000,000) x 64-d *synthetic clustered* features
(1,000 Gaussian centres, unit noise relative to centre spread 2: isotropic
random vectors have no neighbour structure and are not what item
embeddings look like; the generator is ``clustered`` below).

Every configuration runs in its own subprocess (its own peak RSS) with
``--threads`` threads (default 1: the recording machine was loaded by two
other long jobs; times are upper bounds).

Usage::

    python benchmarks/bench_ann.py                       # all, 1M synthetic
    python benchmarks/bench_ann.py --sizes 100000 --skip-real
    python benchmarks/bench_ann.py --sweep 8 16 32 63 128 --spreads 2 1 0.5
"""
import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

EXACT_FULL_MAX = 60000


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_mb() -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS'):
                return int(line.split()[1]) / 1024
    return float('nan')


def clustered(n: int, dim: int, seed: int = 0, centres: int = 1000,
              spread: float = 2.0):
    r"""``[n, dim]`` float32 rows: one of :obj:`centres` Gaussian centres
    (standard deviation :obj:`spread`) plus unit Gaussian noise. The smaller
    :obj:`spread`, the more the clusters overlap and the harder the
    approximate search."""
    import numpy as np
    import torch
    rng = np.random.default_rng(seed)
    centre = spread * rng.standard_normal((centres, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    step = 1 << 18
    for s in range(0, n, step):
        e = min(n, s + step)
        out[s:e] = centre[rng.integers(0, centres, e - s)]
        out[s:e] += rng.standard_normal((e - s, dim), dtype=np.float32)
    return torch.from_numpy(out)


def features(spec):
    if spec['data'] == 'tiktok':
        data = _common.load_tiktok()
        return data['item'][f"x_{spec['modality']}"].float()
    return clustered(spec['n'], spec['dim'], seed=spec.get('seed', 0),
                     spread=spec.get('spread', 2.0))


def exact_sample(x, queries, k):
    r"""Exact top-k (self excluded, ties to the smaller index) of the rows
    ``queries`` against all rows, by brute force in blocks."""
    import torch

    from pyg_brmrs.transforms._topk import row_topk
    xn = x / x.norm(dim=1, keepdim=True).clamp_min(1e-30)
    out = []
    for s in range(0, queries.numel(), 64):
        q = queries[s:s + 64]
        sim = xn[q] @ xn.t()
        sim[torch.arange(q.numel()), q] = float('-inf')
        out.append(row_topk(sim, k)[1])
    return torch.cat(out)


def sweep_worker(spec):
    r"""Builds the default IVF index once and searches the ``queries``
    sampled rows at every ``nprobe`` of ``spec['nprobes']``: recall of the
    exact top-k of those rows and the search CPU time, extrapolated to all
    rows (the dominant cost of the graph build at large n)."""
    import torch
    torch.set_num_threads(spec['threads'])
    from pyg_brmrs.transforms._ann import (build_index, check_knn_kwargs,
                                           ivf_sizes, search)
    x = features(spec)
    n, k = x.size(0), spec['k']
    xn = x / x.norm(dim=1, keepdim=True).clamp_min(1e-30)
    params = check_knn_kwargs('faiss', {'index': 'ivf'})
    nlist, default_nprobe, train = ivf_sizes(n, params)
    gen = torch.Generator().manual_seed(0)
    rows = torch.randperm(n, generator=gen)[:spec['queries']]
    t = time.process_time()
    want = exact_sample(x, rows, k)
    exact_s = (time.process_time() - t) * n / rows.numel()
    t = time.process_time()
    index, keep = build_index(xn, k, params)
    build_s = time.process_time() - t
    out = dict(n=n, dim=x.size(1), nlist=nlist, default_nprobe=default_nprobe,
               train_size=train, index_build_s=build_s, exact_s=exact_s,
               exact_estimated=rows.numel() < n, sweep=[])
    for nprobe in spec['nprobes']:
        index.nprobe = min(nprobe, nlist)
        t = time.process_time()
        got = search(index, xn[rows], k + 1, params['query_batch'])
        search_s = time.process_time() - t
        got = got.masked_fill(got == rows.unsqueeze(1), -1)
        hit = (got.unsqueeze(2) == want.unsqueeze(1)).any(1).sum()
        out['sweep'].append(dict(
            nprobe=int(index.nprobe), recall=float(hit) / want.numel(),
            search_s=search_s * n / rows.numel()))
    out['peak_mb'] = peak_mb()
    del index, keep
    return out


def sweep(args) -> int:
    r"""``--sweep``: recall and search cost against ``nprobe``."""
    rows, results = [], []
    sets = []
    if not args.skip_real and _common.load_tiktok() is not None:
        for m in ('image', 'audio'):
            sets.append((f'TikTok {m} (real, 6,710 x 128)',
                         dict(data='tiktok', modality=m)))
    elif not args.skip_real:
        print('SKIP TikTok: no data under', _common.data_dir())
    for n in args.sizes:
        for spread in args.spreads:
            sets.append((f'synthetic {n:,} x {args.dim}, spread {spread}',
                         dict(data='synthetic', n=n, dim=args.dim,
                              spread=spread)))
    for name, ds in sets:
        spec = dict(ds, k=args.k, threads=args.threads, queries=args.queries,
                    nprobes=args.sweep, mode='sweep')
        print(name, '...', flush=True)
        res = _common.run_worker(__file__, spec)
        res['dataset'] = name
        results.append(res)
        if 'error' in res:
            rows.append([name, '', '', res['error'], '', '', ''])
            continue
        for p in res['sweep']:
            rows.append([
                name, f"{res['nlist']}",
                f"{p['nprobe']}" + (' (default)' if p['nprobe'] ==
                                    res['default_nprobe'] else ''),
                f"{p['recall']:.4f}", f"{p['search_s']:.1f}",
                f"{res['index_build_s']:.1f}",
                ('~' if res['exact_estimated'] else '') +
                f"{res['exact_s']:.0f}"])
        print('   ', rows[-len(res['sweep']):], flush=True)
    table = _common.markdown_table(
        ['features', 'nlist', 'nprobe', f'recall@{args.k}',
         'search all rows CPU s', 'index train+add CPU s', 'exact CPU s'],
        rows)
    notes = (
        f'\n\nIVF-Flat with the default nlist and training sample, built '
        f'once per feature set; recall of the exact top-{args.k} on '
        f'{args.queries} seeded random rows (all rows when fewer); `search '
        'all rows` = CPU seconds of searching those rows, extrapolated '
        'linearly to every row (what the graph build spends in search); '
        f'`exact` = brute force on the same rows, extrapolated. '
        f'{args.threads} thread(s).\n')
    payload = dict(machine=_common.machine_info(), results=results)
    path = _common.write_results(args.name + '_sweep', payload, table + notes)
    print(table + notes)
    print('written', path)
    return 0


def worker(spec):
    import torch
    torch.set_num_threads(spec['threads'])
    if spec.get('mode') == 'sweep':
        return sweep_worker(spec)
    from pyg_brmrs.transforms._ann import ann_cosine_topk
    from pyg_brmrs.transforms.similarity import cosine_topk
    x = features(spec)
    n, k = x.size(0), spec['k']
    base = current_mb()
    res = dict(n=n, dim=x.size(1))
    if spec['index'] == 'exact':
        t = time.process_time()
        cosine_topk(x, k, chunk_size=1024)
        res.update(build_s=time.process_time() - t, recall=1.0)
    else:
        params = {key: v for key, v in spec.items() if key in (
            'index', 'nlist', 'nprobe', 'hnsw_m', 'ef_construction',
            'ef_search', 'train_size', 'target_recall', 'recall_sample')}
        info = {}
        t, wall = time.process_time(), time.perf_counter()
        row, col, _ = ann_cosine_topk(x, k, params=params, info=info)
        res['tuning'] = info
        res['build_s'] = time.process_time() - t
        res['build_wall_s'] = time.perf_counter() - wall
        res['peak_mb'] = peak_mb()
        got = torch.full((n, k), -1, dtype=torch.long)
        count = torch.bincount(row, minlength=n)
        first = torch.cumsum(count, 0) - count
        got[row, torch.arange(row.numel()) - first[row]] = col
        del row, col
        if n <= EXACT_FULL_MAX:
            t = time.process_time()
            r2, c2, _ = cosine_topk(x, k, chunk_size=1024)
            res['exact_s'] = time.process_time() - t
            want = c2.view(n, k)
            rows = torch.arange(n)
        else:
            gen = torch.Generator().manual_seed(0)
            rows = torch.randperm(n, generator=gen)[:spec['queries']]
            t = time.process_time()
            want = exact_sample(x, rows, k)
            res['exact_s'] = (time.process_time() - t) * n / rows.numel()
            res['exact_estimated'] = True
        g = got[rows]
        hit = (g.unsqueeze(2) == want.unsqueeze(1)).any(1).sum()
        res['recall'] = float(hit) / want.numel()
        res['recall_rows'] = int(rows.numel())
    res['peak_mb'] = max(res.get('peak_mb', 0.0), peak_mb())
    res['extra_mb'] = res['peak_mb'] - base
    res['base_mb'] = base
    return res


def launch(spec):
    label = ' '.join(f'{k}={v}' for k, v in spec.items())
    print(f'  {label} ...', flush=True)
    res = _common.run_worker(__file__, spec)
    if 'error' in res:
        return dict(res, spec=spec)
    res['spec'] = spec
    print(f"    recall {res['recall']:.4f}, {res['build_s']:.1f} s, peak "
          f"{res['peak_mb']:.0f} MB", flush=True)
    return res


def label(spec):
    if spec['index'] == 'exact':
        return 'exact (cosine_topk)'
    parts = [spec['index']] + [f'{k}={spec[k]}' for k in (
        'nlist', 'nprobe', 'hnsw_m', 'ef_construction', 'ef_search',
        'target_recall') if k in spec]
    if len(parts) == 1:
        parts.append('defaults')
    return ' '.join(parts)


def report(results, args):
    rows = []
    for r in results:
        if 'error' in r:
            rows.append([r['dataset'], label(r['spec']), r['error'], '', '',
                         '', ''])
            continue
        exact = r.get('exact_s')
        tuned = r.get('tuning') or {}
        chosen = ', '.join(f'{k} {v:.3f}' if isinstance(v, float) else
                           f'{k} {v}' for k, v in tuned.items()
                           if k != 'sample')
        rows.append([
            r['dataset'], label(r['spec']) + (f' → {chosen}' if chosen
                                              else ''),
            f"{r['recall']:.4f}",
            f"{r['build_s']:.1f}",
            '' if exact is None else
            (('~' if r.get('exact_estimated') else '') + f'{exact:.1f}'),
            f"{r['peak_mb']:.0f}", f"{r['extra_mb']:.0f}"])
    table = _common.markdown_table(
        ['features', 'index', f'recall@{args.k}', 'time s', 'exact s',
         'peak RSS MB', 'extra MB'], rows)
    notes = (
        f'\n\nk = {args.k}, {args.threads} thread(s); the machine was loaded '
        'by two other long jobs (2 cores): times are CPU seconds of the '
        'worker process (wall times in the JSON). '
        '`time` = the whole approximate top-k (index build + search of '
        'every row + exact re-scoring); `exact s` = the exact chunked '
        'top-k of the same rows (`~`: extrapolated from '
        f'{args.queries} brute-force rows, whose exact lists also give the '
        'recall estimate above 60,000 rows). `extra` = peak RSS minus '
        'RSS after loading the features. An index with a recall target '
        '(the default, 0.95) shows the breadth it chose and its estimate '
        '(→ ...); its time includes the estimate.\n')
    payload = dict(machine=_common.machine_info(), results=results)
    path = _common.write_results(args.name, payload, table + notes)
    print(table + notes)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--worker')
    parser.add_argument('--sizes', type=int, nargs='*', default=[1000000])
    parser.add_argument('--dim', type=int, default=64)
    parser.add_argument('--k', type=int, default=10)
    parser.add_argument('--queries', type=int, default=1000)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--skip-real', action='store_true')
    parser.add_argument('--configs', default=None,
                        help='JSON list of index settings (default: the '
                        'defaults of ivf and hnsw, and a sweep)')
    parser.add_argument('--spreads', type=float, nargs='*', default=[2.0],
                        help='centre spread of the synthetic clusters '
                        '(smaller = more overlap = harder)')
    parser.add_argument('--sweep', type=int, nargs='*', default=None,
                        help='nprobe values: build the default IVF index '
                        'once per feature set and report recall and search '
                        'cost for each (writes <name>_sweep.md)')
    parser.add_argument('--name', default='bench_ann')
    args = parser.parse_args()
    if args.worker:
        print('RESULT ' + json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.sweep:
        return sweep(args)

    configs = json.loads(args.configs) if args.configs else [
        {'index': 'ivf'}, {'index': 'hnsw'},
        {'index': 'ivf', 'nprobe': 8}, {'index': 'hnsw', 'ef_search': 32},
    ]
    base = dict(k=args.k, threads=args.threads, queries=args.queries)
    datasets = []
    if not args.skip_real:
        if _common.load_tiktok() is None:
            print('SKIP TikTok: no data under', _common.data_dir())
        else:
            for m in ('image', 'audio'):
                datasets.append((f'TikTok {m} (real, 6,710 x 128)',
                                 dict(data='tiktok', modality=m)))
        datasets.append(('Clothing-size synthetic (23,033 x 384)',
                         dict(data='synthetic', n=23033, dim=384)))
    for n in args.sizes:
        for spread in args.spreads:
            datasets.append((f'synthetic {n:,} x {args.dim}, spread {spread}',
                             dict(data='synthetic', n=n, dim=args.dim,
                                  spread=spread)))
    results = []
    for name, ds in datasets:
        print(name, flush=True)
        specs = list(configs)
        if ds.get('n', 0) <= EXACT_FULL_MAX:
            specs = [{'index': 'exact'}] + specs
        for cfg in specs:
            res = launch({**base, **ds, **cfg})
            res['dataset'] = name
            results.append(res)
            path = report(results, args)  # rewritten after every row
    print('written', path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
