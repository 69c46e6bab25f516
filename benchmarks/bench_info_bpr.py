r"""InfoBPR's scores, gathered or dense: one forward and backward pass of
the loss per setting, both ways, interleaved; which one ``scoring="auto"``
picks.

``InfoBPRObjective.scores`` computes ``<u_b, item[c_bj]>`` for a batch of
B users and 1 + S candidates each either by gathering the B (1 + S) item
rows (memory traffic O(B S d) and a scatter in the backward pass) or by one
product of the batch's users with the whole item table, O(B I d)
arithmetic, whose candidate columns are picked. This measures the two on
random embeddings (values identical up to rounding) over item counts and
negatives; the defaults include MGDCF's trainer on TikTok (B = 8000,
S = 300, I = 6710, d = 64) and MIG-GT's (S = 1).

    python benchmarks/bench_info_bpr.py --threads 1
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, report  # noqa: E402

from pyg_brmrs.objectives import InfoBPRObjective  # noqa: E402


def step(objective: InfoBPRObjective, u, table, items):
    logits = objective.scores(u, table, items)
    loss = (torch.logsumexp(logits, dim=1) - logits[:, 0]).sum()
    loss.backward()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--batch', type=int, default=8000)
    p.add_argument('--dim', type=int, default=64)
    p.add_argument('--items', type=int, nargs='+',
                   default=[1000, 6710, 20000, 60000])
    p.add_argument('--negatives', type=int, nargs='+', default=[1, 16, 300])
    p.add_argument('--runs', type=int, default=3)
    p.add_argument('--max-dense-scores', type=int, default=2**28,
                   help='skip the dense pass above this many scores')
    p.add_argument('--threads', type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    results, rows = [], []
    for num_items in args.items:
        for s in args.negatives:
            u = torch.randn(args.batch, args.dim, generator=gen,
                            requires_grad=True)
            table = torch.randn(num_items, args.dim, generator=gen,
                                requires_grad=True)
            items = torch.randint(num_items, (args.batch, 1 + s),
                                  generator=gen)
            ways = {w: InfoBPRObjective(None, num_negatives=s, scoring=w)
                    for w in ('gather', 'dense')}
            auto = InfoBPRObjective(None, num_negatives=s)
            dense_ok = args.batch * num_items <= args.max_dense_scores
            times = {w: [] for w in ways if w == 'gather' or dense_ok}
            for w in times:  # warm-up
                step(ways[w], u, table, items)
            for _ in range(args.runs):
                for w in times:  # interleaved
                    u.grad = table.grad = None
                    start = time.perf_counter()
                    step(ways[w], u, table, items)
                    times[w].append(time.perf_counter() - start)
            med = {w: statistics.median(t) for w, t in times.items()}
            pick = 'dense' if auto.dense(args.batch, num_items) else 'gather'
            best = min(med, key=med.get)
            results.append({'items': num_items, 'negatives': s,
                            'median_s': med, 'auto': pick, 'faster': best})
            rows.append([num_items, s, f"{med['gather']:.3f}",
                         f"{med['dense']:.3f}" if 'dense' in med else
                         '(skipped)',
                         f"{med['gather'] / med['dense']:.2f}"
                         if 'dense' in med else '', pick,
                         'yes' if pick == best else 'no'])
            print(rows[-1], flush=True)
    md = (f'B = {args.batch} users, d = {args.dim}, forward + backward of '
          f'the summed InfoBPR term, median of {args.runs} interleaved '
          f'runs.\n\n' +
          markdown_table(['items I', 'negatives S', 'gather s', 'dense s',
                          'gather / dense', 'auto picks',
                          'auto is the faster'], rows))
    return report('bench_info_bpr', results, md, threads=args.threads,
                  args=vars(args))


if __name__ == '__main__':
    sys.exit(main())
