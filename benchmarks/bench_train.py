r"""Seconds per training epoch, split into propagation (the model's forward
pass: projections + graph propagation), sampling (negative / CHNS sampling),
loss + backward, and optimizer, on Baby-shaped data (the real Amazon Baby
training interactions with random features of the true shapes, image
4096-d and text 384-d) and on TikTok (real image/audio features).

Each model is built with :mod:`pyg_brmrs.recipes` (on Baby, the BR-MRS
recipes ``brmrs_paper``, ``brmrs`` and ``rearm`` use their Baby preset of
``recipes.DATASET_DEFAULTS``: REARM's graph settings and layer counts), one
warm-up epoch is run (it builds the cached graph operators
and, for FREEDOM, its kNN graph), then ``--epochs`` timed epochs exactly as
:class:`~pyg_brmrs.training.Trainer` runs them (batch 2048, Adam), with
timers around the model's forward, the sampler and the optimizer step.
The epoch is reported in wall-clock seconds and in CPU seconds of the
process (``time.process_time``; on a machine shared with other jobs the
CPU time is the steadier of the two).

    python benchmarks/bench_train.py --dataset baby --threads 2
    python benchmarks/bench_train.py --dataset tiktok
    python benchmarks/bench_train.py --dataset baby --models lightgcn brmrs \
        --backends csr edge_index torch_sparse --out-name bench_backends

Writes ``benchmarks/results/<out-name>_<dataset>.json`` and ``.md``.
"""
import argparse
import sys
import time
from pathlib import Path
from typing import Dict

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    load_baby,
    load_tiktok,
    machine_info,
    markdown_table,
    skip,
    write_results,
)

#: MMRec's own code on this kind of 2-core machine, same Baby-shaped data
#: (the issue's reference numbers).
MMREC_EPOCH_S = {'freedom': 16.9, 'lightgcn': 3.35}

#: extra rows: alias -> (recipe, parameters)
ALIASES = {'brmrs_bf16': ('brmrs', {'projection_dtype': 'bfloat16'}),
           # BRMRS's default before id_mode='concat' (branches of size d)
           'brmrs_add': ('brmrs', {'id_mode': 'add'}),
           # the 'tiktok' preset (L = 3 user-item layers)
           'brmrs_L3': ('brmrs', {'num_layers': 3})}

BABY_GRAPH = dict(k_item=10, k_user=40, alpha_item=0.2, alpha_user=0.4,
                  modality_weights_item={'image': 0.0, 'text': 1.0},
                  modality_weights_user={'image': 0.2, 'text': 0.8})

#: recipes whose Baby rows use the Baby preset of
#: ``pyg_brmrs.recipes.DATASET_DEFAULTS`` (REARM's graph settings and layer
#: counts)
BABY_PRESET = ('brmrs', 'brmrs_paper', 'rearm')


def recipe_params(name: str, dataset: str) -> Dict:
    r"""The keywords a row of recipe :obj:`name` is built with: the Baby
    preset for the BR-MRS backbone on Baby, the recipe defaults
    otherwise."""
    from pyg_brmrs import recipes
    if dataset == 'baby' and name in BABY_PRESET:
        return recipes.dataset_defaults('baby', name)
    return {}


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


class Timers:
    def __init__(self, device):
        self.device = device
        self.total: Dict[str, float] = {}

    def wrap(self, name, fn):
        def inner(*args, **kwargs):
            sync(self.device)
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            sync(self.device)
            self.add(name, time.perf_counter() - start)
            return out

        return inner

    def add(self, name, seconds):
        self.total[name] = self.total.get(name, 0.0) + seconds


class TimedProxy:
    r"""Forwards everything to :obj:`obj` and times its calls."""
    def __init__(self, obj, timers, name):
        self._obj = obj
        self._call = timers.wrap(name, obj)

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._obj, name)


def run_epoch(model, objective, data, optimizer, batch_size, generator,
              device, timers=None):
    edge_index = data['user', 'rates', 'item'].edge_index
    model.train()
    model.on_epoch_start(0, generator)
    perm = torch.randperm(edge_index.size(1), generator=generator,
                          device=device)
    for idx in perm.split(batch_size):
        users, pos = edge_index[0, idx], edge_index[1, idx]
        sync(device)
        t0 = time.perf_counter()
        terms = objective(model, data, users, pos)
        sync(device)
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        terms['loss'].backward()
        sync(device)
        t2 = time.perf_counter()
        optimizer.step()
        sync(device)
        t3 = time.perf_counter()
        if timers is not None:
            timers.add('objective', t1 - t0)
            timers.add('backward', t2 - t1)
            timers.add('optimizer', t3 - t2)


def bench_model(name, data, params, args, device):
    from pyg_brmrs import recipes
    data = data.clone()
    t = time.perf_counter()
    data = recipes.prepare(name, data, **params)
    graph_time = time.perf_counter() - t
    data = data.to(device)
    torch.manual_seed(0)
    generator = torch.Generator(device=device).manual_seed(0)
    model, objective = recipes.build(name, data, generator=generator,
                                     **params)
    model, objective = model.to(device), objective.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    t = time.perf_counter()
    run_epoch(model, objective, data, optimizer, args.batch_size, generator,
              device)  # warm-up
    warmup = time.perf_counter() - t

    timers = Timers(device)
    model.forward = timers.wrap('propagation', model.forward)
    objective.sampler = TimedProxy(objective.sampler, timers, 'sampling')
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(args.epochs):
        run_epoch(model, objective, data, optimizer, args.batch_size,
                  generator, device, timers)
    epoch = (time.perf_counter() - start) / args.epochs
    epoch_cpu = (time.process_time() - cpu_start) / args.epochs
    tot = {k: v / args.epochs for k, v in timers.total.items()}
    prop, samp = tot.get('propagation', 0.0), tot.get('sampling', 0.0)
    loss_bwd = tot['objective'] - prop - samp + tot['backward']
    return {
        'model': name,
        'params': {k: v for k, v in params.items() if k != 'backend'},
        'backend': params.get('backend', 'default'),
        'epoch_s': epoch,
        'epoch_cpu_s': epoch_cpu,
        'propagation_s': prop,
        'sampling_s': samp,
        'loss_backward_s': loss_bwd,
        'optimizer_s': tot['optimizer'],
        'sampling_share': samp / epoch,
        'warmup_epoch_s': warmup,
        'graph_build_s': graph_time,
        'steps': -(-data['user', 'rates', 'item'].edge_index.size(1) //
                   args.batch_size),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dataset', choices=['baby', 'tiktok'],
                        default='baby')
    parser.add_argument('--models', nargs='+',
                        default=['bprmf', 'lightgcn', 'vbpr', 'freedom',
                                 'rearm', 'brmrs_paper', 'brmrs',
                                 'brmrs_add',
                                 'brmrs_bf16', 'brmrs_L3'],
                        help=f'recipes, or aliases {sorted(ALIASES)}')
    parser.add_argument('--backends', nargs='+', default=None,
                        help='sparse backends to compare (lightgcn/brmrs)')
    parser.add_argument('--num-candidates', type=int, default=None)
    parser.add_argument('--epochs', type=int, default=1)
    parser.add_argument('--batch-size', type=int, default=2048)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--out-name', default='bench_train')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    data = load_baby() if args.dataset == 'baby' else load_tiktok()
    if data is None:
        return skip(f'the {args.dataset} data is not available (see '
                    f'../shared/data/INDEX.md or set PYG_BRMRS_DATA)')
    info = machine_info(args.device)
    rows = []
    for label in args.models:
        name, extra = ALIASES.get(label, (label, {}))
        params = recipe_params(name, args.dataset)
        params.update(extra)
        if name in ('brmrs', 'brmrs_paper') and \
                args.num_candidates is not None:
            params['num_candidates'] = args.num_candidates
        backends = args.backends if (args.backends and name in (
            'lightgcn', 'brmrs', 'brmrs_paper', 'rearm')) else [None]
        if name != 'lightgcn':
            backends = [b for b in backends if b != 'pyg']
        for backend in backends:
            p = dict(params)
            if backend is not None:
                p['backend'] = backend
            try:
                res = bench_model(name, data, p, args, device)
            except ImportError as e:
                print(f'{label} [{backend}]: skipped ({e})')
                continue
            res['model'] = label
            rows.append(res)
            print(f"{name:9s} {res['backend']:12s} epoch "
                  f"{res['epoch_s']:.3f}s (CPU {res['epoch_cpu_s']:.3f}s, "
                  f"propagation "
                  f"{res['propagation_s']:.3f}, sampling "
                  f"{res['sampling_s']:.3f}, loss+backward "
                  f"{res['loss_backward_s']:.3f}, optimizer "
                  f"{res['optimizer_s']:.3f})", flush=True)

    ref = {r['model']: r for r in rows
           if r['backend'] in ('default', 'csr')}
    header = ['model', 'backend', 'epoch s', 'propagation', 'sampling',
              'loss+backward', 'optimizer', 'sampling share',
              '/ our LightGCN', 'epoch CPU s', '/ our LightGCN (CPU)',
              'MMRec epoch s', 'speed-up vs MMRec']
    table = []
    for r in rows:
        lg = ref.get('lightgcn')
        mm = MMREC_EPOCH_S.get(r['model']) if args.dataset == 'baby' else None
        table.append([
            r['model'], r['backend'], r['epoch_s'], r['propagation_s'],
            r['sampling_s'], r['loss_backward_s'], r['optimizer_s'],
            f"{100 * r['sampling_share']:.1f}%",
            f"{r['epoch_s'] / lg['epoch_s']:.2f}x" if lg else '-',
            r['epoch_cpu_s'],
            f"{r['epoch_cpu_s'] / lg['epoch_cpu_s']:.2f}x" if lg else '-',
            mm if mm else '-',
            f"{mm / r['epoch_s']:.1f}x" if mm else '-'
        ])
    md = (f"### Seconds per training epoch, {args.dataset} "
          f"({rows[0]['steps'] if rows else '?'} steps of "
          f"{args.batch_size} pairs)\n\n" + markdown_table(header, table))
    print('\n' + md)
    path = write_results(f'{args.out_name}_{args.dataset}',
                         {'machine': info, 'args': vars(args), 'rows': rows},
                         md)
    print(f'\nwritten: {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
