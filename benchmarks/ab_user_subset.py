r"""A/B of BR-MRS's training step on the batch's users only
(``BRMRS.forward(data, users=...)``, what :class:`~pyg_brmrs.objectives.
BRMRSObjective` asks for) against the step on every user's rows, on
Baby-shaped data (``brmrs_paper``, Baby preset, batch 2048, Adam), with
LightGCN's step as the common yardstick. The two ``brmrs_paper`` steps are
the same model and objective; the full-rows one runs with the model's
``supports_user_subset`` switched off. The three steps are timed in turn in
``--rounds`` rounds of ``--steps`` steps.

    python benchmarks/ab_user_subset.py --threads 2
    python benchmarks/ab_user_subset.py --threads 1

Writes ``benchmarks/results/ab_user_subset_<threads>t.json`` and ``.md``.
"""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from step_split import make_step, step_bench_args  # noqa: E402


def main() -> int:
    args, data = step_bench_args(__doc__)
    if data is None:
        return _common.skip('ab_user_subset: the Baby data is absent')
    from pyg_brmrs.nn import BRMRS

    subset = make_step('brmrs_paper', data)
    full_step = make_step('brmrs_paper', data)

    def full():
        BRMRS.supports_user_subset = False
        try:
            full_step()
        finally:
            BRMRS.supports_user_subset = True

    steps = {'lightgcn': make_step('lightgcn', data),
             'brmrs_paper, batch users': subset,
             'brmrs_paper, all users': full}
    for step in steps.values():  # warm-up: builds the cached operators
        for _ in range(3):
            step()
    rounds = []
    for r in range(args.rounds):
        row = {}
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            row[name] = 1e3 * (time.perf_counter() - start) / args.steps
        rounds.append(row)
        print(f'round {r + 1}/{args.rounds}: ' + ', '.join(
            f'{k} {v:.1f} ms' for k, v in row.items()), flush=True)
    results, rows = [], []
    for name in steps:
        ms = statistics.median(r[name] for r in rounds)
        rel = statistics.median(r[name] / r['lightgcn'] for r in rounds)
        vs_full = statistics.median(r[name] / r['brmrs_paper, all users']
                                    for r in rounds)
        results.append(dict(step=name, ms=ms, per_lightgcn=rel,
                            per_all_users=vs_full,
                            rounds_ms=[r[name] for r in rounds]))
        rows.append([name, f'{ms:.1f}', f'{rel:.2f}x', f'{vs_full:.2f}x'])
    table = _common.markdown_table(
        ['step', 'ms per step', "/ LightGCN's step",
         '/ brmrs_paper on all users'], rows)
    notes = (f"\n\n{args.threads} thread(s); {args.rounds} rounds of "
             f"{args.steps} steps per row, wall clock; medians over the "
             "rounds (ratios: medians of the per-round ratios).\n")
    return _common.report(args.name or f'ab_user_subset_{args.threads}t',
                          results, table + notes, threads=args.threads)


if __name__ == '__main__':
    sys.exit(main())
