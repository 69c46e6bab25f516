r"""Peak memory of the two chunked scorers against their chunk size, at
1 M users x 1 M items: the full-ranking evaluation
(:class:`~pyg_brmrs.evaluation.RankingEvaluator`, ``max_scores``) and the
CHNS candidate scoring
(:class:`~pyg_brmrs.sampling.CrossModalHardNegativeSampler`,
``max_gather``).

Each configuration runs in a fresh process on the synthetic catalogue of
``bench_scale.py`` (training pairs only; random 64-d embeddings, since the
cost does not depend on their values). The peak is the process's
``VmHWM`` during the call after a reset, minus the RSS before it (``+MB``):
the memory the scorer itself needs. Times are CPU seconds.

* evaluation: validation pairs of ``--eval-users`` sampled users ranked
  against all items, training items masked, users in batches of 4096 and
  items in blocks so that at most ``max_scores`` scores exist at once;
* CHNS: one call on ``--chns-batch`` users with ``--candidates``
  candidates each, the two modality branches (as the objective's default
  ``assignment="cross"`` scores them), gathering at most ``max_gather``
  candidate rows at once
  (``none``: the whole batch).

    python benchmarks/bench_chunks.py
    python benchmarks/bench_chunks.py --n 100000 --eval-users 5000

Writes ``benchmarks/results/bench_chunks.json`` and ``.md``.
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
from bench_scale import make_interactions, reset_peak, rss  # noqa: E402


def catalogue(n: int, seed: int = 0):
    r"""The training pairs ``[2, E]`` and the validation pairs of
    ``bench_scale``'s catalogue (:func:`bench_scale.make_interactions`)."""
    store = make_interactions(n, seed)['user', 'rates', 'item']
    return store.edge_index, store.val_edge_index


def worker(spec):
    import torch
    torch.set_num_threads(spec['threads'])
    n = spec['n']
    train, val = catalogue(n)
    gen = torch.Generator().manual_seed(0)
    out = dict(n=n, kind=spec['kind'], chunk=spec['chunk'])
    if spec['kind'] == 'eval':
        from pyg_brmrs.evaluation import RankingEvaluator
        users = val[0]
        k = min(spec['eval_users'], users.numel())
        chosen = users[torch.randperm(users.numel(), generator=gen)[:k]]
        mask = torch.zeros(n, dtype=torch.bool)
        mask[chosen] = True
        sub = val[:, mask[val[0]]]
        user_emb = torch.randn(n, 64, generator=gen)
        item_emb = torch.randn(n, 64, generator=gen)
        evaluator = RankingEvaluator(train, sub, n, ks=(10, 20),
                                     max_scores=spec['chunk'])
        base = rss()
        reset_peak()
        t = time.process_time()
        res = evaluator(user_emb, item_emb)
        out['s'] = time.process_time() - t
        out['users'] = k
        out['recall@20'] = res['recall@20']
    else:
        from pyg_brmrs.sampling import CrossModalHardNegativeSampler
        sampler = CrossModalHardNegativeSampler(
            train, n, num_candidates=spec['candidates'], num_users=n,
            generator=gen, max_gather=spec['chunk'])
        names = ('image', 'text')  # the objective's 'cross' branches
        user_emb = {b: torch.randn(n, 64, generator=gen) for b in names}
        item_emb = {b: torch.randn(n, 64, generator=gen) for b in names}
        users = train[0, torch.randint(train.size(1), (spec['batch'], ),
                                       generator=gen)]
        base = rss()
        reset_peak()
        t = time.process_time()
        sampler(users, user_emb, item_emb)
        out['s'] = time.process_time() - t
        out['batch'] = spec['batch']
        out['candidates'] = spec['candidates']
    out['extra_mb'] = rss('VmHWM') - base
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--worker')
    parser.add_argument('--n', type=int, default=1_000_000)
    parser.add_argument('--eval-users', type=int, default=20_000)
    parser.add_argument('--max-scores', type=int, nargs='+',
                        default=[1 << 22, 1 << 24, 1 << 26, 1 << 28])
    parser.add_argument('--chns-batch', type=int, default=16384)
    parser.add_argument('--candidates', type=int, default=256)
    parser.add_argument('--max-gather', nargs='+',
                        default=['none', str(1 << 16), str(1 << 18),
                                 str(1 << 20)])
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--name', default='bench_chunks')
    args = parser.parse_args()
    if args.worker:
        print('RESULT ' + json.dumps(worker(json.loads(args.worker))))
        return 0
    results, rows = [], []
    specs = [dict(kind='eval', chunk=m, eval_users=args.eval_users)
             for m in args.max_scores]
    specs += [dict(kind='chns', chunk=None if g == 'none' else int(g),
                   batch=args.chns_batch, candidates=args.candidates)
              for g in args.max_gather]
    for spec in specs:
        spec.update(n=args.n, threads=args.threads)
        print(f"  {spec['kind']} chunk={spec['chunk']} ...", flush=True)
        r = _common.run_worker(__file__, spec)
        r.update(kind=spec['kind'], chunk=spec['chunk'])
        results.append(r)
        chunk = 'whole batch' if spec['chunk'] is None else \
            f"{spec['chunk']:,}"
        if 'error' in r:
            rows.append([spec['kind'], chunk, r['error'], '', '', ''])
            continue
        if spec['kind'] == 'eval':
            what = f"{r['users']:,} users x {args.n:,} items"
            bound = spec['chunk'] * 4 / 2**20
        else:
            what = (f"{r['batch']:,} users x {r['candidates']} candidates "
                    f"x 2 branches")
            bound = (r['batch'] * r['candidates'] if spec['chunk'] is None
                     else spec['chunk']) * 64 * 4 / 2**20
        rows.append(['evaluation (max_scores)' if spec['kind'] == 'eval'
                     else 'CHNS scoring (max_gather)', chunk, what,
                     f"{r['s']:.1f}", f"{r['extra_mb']:.0f}",
                     f'{bound:.1f}'])
    table = _common.markdown_table(
        ['scorer', 'chunk', 'work', 'CPU s', 'peak +MB',
         'chunk buffer MB (scores or gathered rows x 64 x 4 B)'], rows)
    notes = (f'\n\n{args.n:,} users x {args.n:,} items (synthetic, '
             f'bench_scale catalogue), d = 64, {args.threads} thread(s). '
             'peak +MB = peak RSS during the call minus the RSS before '
             'it (embeddings, masks and the sampler\'s index are allocated '
             'before). The last column is the size of the largest '
             'buffer the chunk allows: one score block for the '
             'evaluation, one gather of candidate rows for CHNS.\n')
    return _common.report(args.name, results, table + notes,
                          threads=args.threads)


if __name__ == '__main__':
    sys.exit(main())
