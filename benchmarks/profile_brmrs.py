r"""The operators that a BR-MRS training step spends its time in, by
:mod:`torch.profiler`, on Baby-shaped data (the real Amazon Baby training
interactions with random features of the true shapes) with the Baby preset
of :mod:`pyg_brmrs.app.recipes`, next to our LightGCN's step for scale.

Each model is built as ``benchmarks/bench_train.py`` builds it, a few warm-up
steps are run (they build the cached operators), then ``--steps`` training
steps (objective, backward, Adam) are profiled on CPU. The table lists the
operators with the largest self time over the profiled steps.

    python benchmarks/profile_brmrs.py --threads 1
    python benchmarks/profile_brmrs.py --models brmrs_paper --steps 10 \
        --top 30 --out-name profile_brmrs_paper

Writes ``benchmarks/results/<out-name>.json`` and ``.md``.
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
    skip,
    write_results,
)
from bench_train import recipe_params  # noqa: E402


def steps(model, objective, data, optimizer, batches):
    for users, pos in batches:
        terms = objective(model, data, users, pos)
        optimizer.zero_grad(set_to_none=True)
        terms['loss'].backward()
        optimizer.step()


def profile_model(name, data, args):
    from torch.profiler import ProfilerActivity, profile

    from pyg_brmrs.app import recipes
    from pyg_brmrs.training import make_adam
    params = recipe_params(name, 'baby')
    data = recipes.prepare(name, data.clone(), **params)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model, objective = recipes.build(name, data, generator=generator,
                                     **params)
    optimizer = make_adam(model.parameters(), lr=1e-3)
    edge_index = data['user', 'rates', 'item'].edge_index
    perm = torch.randperm(edge_index.size(1), generator=generator)
    batches = [(edge_index[0, idx], edge_index[1, idx])
               for idx in perm.split(args.batch_size)]
    model.train()
    model.on_epoch_start(0, generator)
    steps(model, objective, data, optimizer, batches[:args.warmup])
    run = batches[args.warmup:args.warmup + args.steps]
    start = time.perf_counter()
    steps(model, objective, data, optimizer, run)
    plain = (time.perf_counter() - start) / len(run)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        steps(model, objective, data, optimizer, run)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    rows = sorted(events, key=lambda e: e.self_cpu_time_total,
                  reverse=True)[:args.top]
    return {
        'model': name,
        'params': {k: str(v) for k, v in params.items()},
        'step_s': plain,
        'num_steps': len(run),
        'ops': [{
            'op': e.key,
            'calls': e.count // len(run),
            'self_ms_per_step': e.self_cpu_time_total / 1e3 / len(run),
            'share': e.self_cpu_time_total / total,
        } for e in rows],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+',
                        default=['lightgcn', 'brmrs_paper', 'brmrs'])
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--top', type=int, default=15)
    parser.add_argument('--batch-size', type=int, default=2048)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--out-name', default='profile_brmrs_baby')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_baby()
    if data is None:
        return skip('the baby data is not available (see '
                    '../shared/data/INDEX.md or set PYG_BRMRS_DATA)')
    info = machine_info('cpu')
    results, md = [], []
    for name in args.models:
        res = profile_model(name, data, args)
        results.append(res)
        table = [[o['op'], o['calls'], o['self_ms_per_step'],
                  f"{100 * o['share']:.1f}%"] for o in res['ops']]
        md.append(f"### {name}: {res['step_s']:.3f} s per step (without "
                  f"the profiler), top {args.top} operators by self CPU "
                  f"time over {res['num_steps']} steps\n\n"
                  f"Parameters: {res['params']}\n\n" +
                  markdown_table(['operator', 'calls / step',
                                  'self ms / step', 'share'], table))
        print(md[-1] + '\n', flush=True)
    path = write_results(args.out_name, {'machine': info, 'args': vars(args),
                                         'models': results},
                         '\n\n'.join(md))
    print(f'written: {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
