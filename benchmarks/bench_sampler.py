r"""Cost of cross-modal hard negative sampling (CHNS) against the candidate
pool size C, as a share of a full BR-MRS training step, on Baby-shaped data
(real Baby training interactions, random image 4096-d / text 384-d
features, REARM's Baby graph settings) — plus the bare sampler throughput.

For each C in ``--candidates`` (default 1 4 16 64 256): one warm-up epoch,
then ``--steps`` timed training steps (batch 2048) with a timer around the
sampler; the table gives the sampler's seconds per step, the step time and
the share.

    python benchmarks/bench_sampler.py [--threads 2] [--steps 20]

Writes ``benchmarks/results/bench_sampler.json`` and ``.md``.
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    load_baby,
    machine_info,
    markdown_table,
    median_time,
    skip,
    write_results,
)
from bench_train import BABY_GRAPH, Timers, TimedProxy  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--candidates', type=int, nargs='+',
                        default=[1, 4, 16, 64, 256])
    parser.add_argument('--steps', type=int, default=20)
    parser.add_argument('--batch-size', type=int, default=2048)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = load_baby()
    if data is None:
        return skip('the Baby interactions are not available (see '
                    '../shared/data/INDEX.md or set PYG_BRMRS_DATA)')
    from pyg_brmrs.app import recipes
    from pyg_brmrs.training import make_adam
    info = machine_info('cpu')
    data = recipes.prepare('brmrs', data, **BABY_GRAPH)
    edge_index = data['user', 'rates', 'item'].edge_index
    rows, payload = [], []
    for C in args.candidates:
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(0)
        model, objective = recipes.build('brmrs', data, generator=gen,
                                         num_candidates=C, **BABY_GRAPH)
        optimizer = make_adam(model.parameters(), lr=1e-3)

        def step(timers=None):
            idx = torch.randint(0, edge_index.size(1), (args.batch_size, ),
                                generator=gen)
            terms = objective(model, data, edge_index[0, idx],
                              edge_index[1, idx])
            optimizer.zero_grad()
            terms['loss'].backward()
            optimizer.step()

        for _ in range(3):
            step()  # warm-up: caches, allocator
        timers = Timers(torch.device('cpu'))
        sampler = objective.sampler
        objective.sampler = TimedProxy(sampler, timers, 'sampling')
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        step_s = (time.perf_counter() - start) / args.steps
        samp_s = timers.total['sampling'] / args.steps

        # the bare sampler on fixed embeddings, for throughput:
        with torch.no_grad():
            out = model(data)
        users = edge_index[0, :args.batch_size]
        names = [b for b in out.branches if b != 'fused']
        bare, _ = median_time(lambda: sampler(
            users, {m: out.user[m] for m in names},
            {m: out.item[m] for m in names}), runs=10)
        row = dict(C=C, sampling_s=samp_s, step_s=step_s,
                   share=samp_s / step_s, bare_sampler_s=bare,
                   pairs_per_s=args.batch_size / bare)
        payload.append(row)
        rows.append([C, samp_s * 1e3, step_s * 1e3,
                     f'{100 * row["share"]:.1f}%', bare * 1e3,
                     f'{row["pairs_per_s"]:.3g}'])
        print(rows[-1], flush=True)
    md = ('### CHNS cost vs candidate pool size C (Baby-shaped, batch '
          f'{args.batch_size})\n\n' + markdown_table(
              ['C', 'sampling ms/step', 'step ms', 'share of step',
               'bare sampler ms', 'pairs/s'], rows))
    print('\n' + md)
    path = write_results('bench_sampler', {'machine': info,
                                           'args': vars(args),
                                           'rows': payload}, md)
    print(f'\nwritten: {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
