r"""Seconds per training epoch, split into propagation (the model's forward
pass: projections + graph propagation), sampling (negative / CHNS sampling),
loss + backward, and optimizer, on Baby-shaped data (the real Amazon Baby
training interactions with random features of the true shapes, image
4096-d and text 384-d) and on TikTok (real image/audio features).

Each model is built with :mod:`pyg_brmrs.app.recipes` (on Baby, the BR-MRS
recipes ``brmrs_paper``, ``brmrs``, ``rearm_objective_on_brmrs`` and
``rearm`` (REARM's model) use their Baby preset of
``recipes.DATASET_DEFAULTS``: REARM's graph settings and layer counts), one
warm-up epoch is run (it builds the cached graph operators
and, for FREEDOM, its kNN graph), then ``--epochs`` timed epochs exactly as
:class:`~pyg_brmrs.training.Trainer` runs them (batch 2048, Adam), with
timers around the model's forward, the sampler and the optimizer step. The
models' timed epochs are interleaved (round :math:`r` runs epoch :math:`r`
of every model in turn), so that the machine's speed drifting during the
run reaches every model alike; the table gives the median epoch over the
rounds and, against our LightGCN, the median of the per-round ratios.
The epoch is reported in wall-clock seconds and in CPU seconds of the
process (``time.process_time``; on a machine shared with other jobs the
CPU time is the steadier of the two).

    python benchmarks/bench_train.py --dataset baby --threads 2
    python benchmarks/bench_train.py --dataset tiktok
    python benchmarks/bench_train.py --dataset baby --models lightgcn brmrs \
        --backends csr edge_index torch_sparse --out-name bench_backends

**Same-run A/B against another version** (``--against DIR``, a checkout of
another commit, *e.g.* ``git worktree add /tmp/before <commit>``): every row
is also built by a worker process that imports the package from
``DIR/src``, and the rounds interleave both versions' epochs (one process
runs while the other waits), so that both see the same machine; rows of the
other version are labelled ``<model>@<--against-name>`` and their ratios
are to that version's LightGCN.

    python benchmarks/bench_train.py --dataset baby --models lightgcn \
        brmrs_paper --epochs 5 --against /tmp/before --out-name ab_train

**Where the time goes** (``--profile N``): the top ``N`` operators of one
extra epoch of each row under :mod:`torch.profiler` (self CPU time).

Writes ``benchmarks/results/<out-name>_<dataset>.json`` and ``.md``.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

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

#: MMRec's own code on a 2-core machine of this VM kind, same Baby-shaped
#: data (the issue's reference numbers: constants, not measured in the run,
#: so the speed-up column compares across machines and dates).
MMREC_EPOCH_S = {'freedom': 16.9, 'lightgcn': 3.35}

#: extra rows: alias -> (recipe, parameters)
ALIASES = {'brmrs_bf16': ('brmrs', {'projection_dtype': 'bfloat16'}),
           # the paper's model with bf16 feature projections (not fp32)
           'brmrs_paper_bf16': ('brmrs_paper',
                                {'projection_dtype': 'bfloat16'}),
           # BRMRS's default before id_mode='concat' (branches of size d)
           'brmrs_add': ('brmrs', {'id_mode': 'add'}),
           # the 'tiktok' preset (L = 3 user-item layers)
           'brmrs_L3': ('brmrs', {'num_layers': 3})}

BABY_GRAPH = dict(k_item=10, k_user=40, alpha_item=0.2, alpha_user=0.4,
                  modality_weights_item={'image': 0.0, 'text': 1.0},
                  modality_weights_user={'image': 0.2, 'text': 0.8})

#: recipes whose Baby rows use the Baby preset of
#: ``pyg_brmrs.app.recipes.DATASET_DEFAULTS`` (REARM's graph settings and layer
#: counts)
BABY_PRESET = ('brmrs', 'brmrs_paper', 'rearm_objective_on_brmrs', 'rearm')


def recipes_module():
    r"""The package's recipes (``pyg_brmrs.app.recipes``; ``pyg_brmrs.recipes``
    in versions before the application had its own subpackage, for
    ``--against``)."""
    try:
        from pyg_brmrs.app import recipes
    except ImportError:
        from pyg_brmrs import recipes
    return recipes


def recipe_params(name: str, dataset: str) -> Dict:
    r"""The keywords a row of recipe :obj:`name` is built with: the Baby
    preset for the BR-MRS backbone on Baby, the recipe defaults
    otherwise."""
    recipes = recipes_module()
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
    r"""Forwards everything to :obj:`obj` and times its calls and its
    :obj:`methods` (by default ``draw``: an objective may draw a sampler's
    pools apart from the call that scores them) under one name."""
    def __init__(self, obj, timers, name, methods=('draw', )):
        self._obj = obj
        self._call = timers.wrap(name, obj)
        self._methods = {m: timers.wrap(name, getattr(obj, m))
                         for m in methods if hasattr(obj, m)}

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name):
        if name in self._methods:
            return self._methods[name]
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


class Bench:
    r"""One row of the table: a model built, warmed up and timed epoch by
    epoch (:meth:`epoch`), so that :func:`main` can interleave the rows'
    epochs."""
    def __init__(self, label, name, data, params, args, device):
        from pyg_brmrs.training import make_adam
        recipes = recipes_module()
        self.label, self.params = label, params
        self.args, self.device = args, device
        data = data.clone()
        t = time.perf_counter()
        data = recipes.prepare(name, data, **params)
        self.graph_time = time.perf_counter() - t
        self.data = data.to(device)
        torch.manual_seed(0)
        self.generator = torch.Generator(device=device).manual_seed(0)
        model, objective = recipes.build(name, self.data,
                                         generator=self.generator, **params)
        self.model, self.objective = model.to(device), objective.to(device)
        self.optimizer = make_adam(self.model.parameters(), lr=1e-3)
        t = time.perf_counter()
        self._run(None)  # warm-up
        self.warmup = time.perf_counter() - t
        self.timers = Timers(device)
        self.model.forward = self.timers.wrap('propagation',
                                              self.model.forward)
        self.objective.sampler = TimedProxy(self.objective.sampler,
                                            self.timers, 'sampling')
        self.wall, self.cpu = [], []

    def _run(self, timers):
        run_epoch(self.model, self.objective, self.data, self.optimizer,
                  self.args.batch_size, self.generator, self.device, timers)

    def epoch(self):
        r"""Runs and times one epoch (wall and CPU seconds)."""
        start, cpu_start = time.perf_counter(), time.process_time()
        self._run(self.timers)
        self.wall.append(time.perf_counter() - start)
        self.cpu.append(time.process_time() - cpu_start)

    def result(self):
        n = len(self.wall)
        tot = {k: v / n for k, v in self.timers.total.items()}
        prop, samp = tot.get('propagation', 0.0), tot.get('sampling', 0.0)
        loss_bwd = tot['objective'] - prop - samp + tot['backward']
        epoch = statistics.median(self.wall)
        return {
            'model': self.label,
            'params': {k: v for k, v in self.params.items()
                       if k != 'backend'},
            'backend': self.params.get('backend', 'default'),
            'epoch_s': epoch,
            'epoch_cpu_s': statistics.median(self.cpu),
            'epochs_wall_s': list(self.wall),
            'epochs_cpu_s': list(self.cpu),
            'propagation_s': prop,
            'sampling_s': samp,
            'loss_backward_s': loss_bwd,
            'optimizer_s': tot['optimizer'],
            'sampling_share': samp / (sum(self.wall) / n),
            'warmup_epoch_s': self.warmup,
            'graph_build_s': self.graph_time,
            'steps': -(-self.data['user', 'rates', 'item'].edge_index.size(1)
                       // self.args.batch_size),
        }

    def profile(self, top: int) -> List[Dict]:
        r"""The :obj:`top` operators of one extra (untimed) epoch by self
        CPU time."""
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            self._run(None)
        events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in events) or 1.0
        return [{'op': e.key, 'self_cpu_s': e.self_cpu_time_total / 1e6,
                 'share': e.self_cpu_time_total / total, 'calls': e.count}
                for e in events[:top]]


class RemoteBenches:
    r"""The rows of another version of the package (``DIR/src``), built and
    timed in a worker process (this script with ``--serve``) that runs one
    epoch per request, so that the parent can interleave them with its own
    rows."""
    def __init__(self, checkout: Path, name: str, specs: List[Dict], args):
        env = dict(os.environ, PYTHONPATH=str(Path(checkout) / 'src'))
        cmd = [sys.executable, __file__, '--serve', '--dataset',
               args.dataset, '--threads', str(args.threads), '--device',
               args.device, '--batch-size', str(args.batch_size)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env,
                                     text=True)
        self.name = name
        self._send({'rows': specs})
        self.version = self._receive()['version']
        self.labels = [f"{spec['label']}@{name}" for spec in specs]

    def _send(self, message):
        self.proc.stdin.write(json.dumps(message) + '\n')
        self.proc.stdin.flush()

    def _receive(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f'the --against worker ({self.name}) ended')
        return json.loads(line)

    def epoch(self, i: int):
        self._send({'epoch': i})
        return self._receive()

    def results(self):
        self._send({'results': True})
        rows = self._receive()['rows']
        self.proc.wait()
        for row, label in zip(rows, self.labels):
            row['model'] = label
        return rows


def serve(args) -> int:
    r"""The ``--serve`` worker of :class:`RemoteBenches`: JSON requests on
    stdin, JSON answers on stdout (everything else goes to stderr)."""
    out, sys.stdout = sys.stdout, sys.stderr
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = json.loads(sys.stdin.readline())
    data = load_baby() if args.dataset == 'baby' else load_tiktok()
    benches = [Bench(r['label'], r['name'], data, r['params'], args, device)
               for r in spec['rows']]
    import pyg_brmrs

    def answer(message):
        out.write(json.dumps(message, default=str) + '\n')
        out.flush()

    answer({'version': pyg_brmrs.__file__})
    for line in sys.stdin:
        request = json.loads(line)
        if 'epoch' in request:
            bench = benches[request['epoch']]
            bench.epoch()
            answer({'wall': bench.wall[-1], 'cpu': bench.cpu[-1]})
        else:
            answer({'rows': [b.result() for b in benches]})
            return 0
    return 0



def round_ratios(row, ref, key):
    r"""Per round, the row's epoch over the reference row's epoch of the
    same round (:obj:`key`: ``"epochs_wall_s"`` or ``"epochs_cpu_s"``)."""
    return [a / b for a, b in zip(row[key], ref[key])]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dataset', choices=['baby', 'tiktok'],
                        default='baby')
    parser.add_argument('--models', nargs='+',
                        default=['bprmf', 'lightgcn', 'vbpr', 'freedom',
                                 'rearm_objective_on_brmrs', 'brmrs_paper',
                                 'brmrs',
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
    parser.add_argument('--against', type=Path, default=None, metavar='DIR',
                        help='a checkout of another version: its rows are '
                        'timed in the same rounds (see the description)')
    parser.add_argument('--against-name', default='before')
    parser.add_argument('--profile', type=int, default=0, metavar='N',
                        help='the top N operators of one extra epoch per '
                        'row (torch.profiler)')
    parser.add_argument('--serve', action='store_true',
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    data = load_baby() if args.dataset == 'baby' else load_tiktok()
    if data is None:
        return skip(f'the {args.dataset} data is not available (see '
                    f'../shared/data/INDEX.md or set PYG_BRMRS_DATA)')
    info = machine_info(args.device)
    benches, specs = [], []
    for label in args.models:
        name, extra = ALIASES.get(label, (label, {}))
        params = recipe_params(name, args.dataset)
        params.update(extra)
        if name in ('brmrs', 'brmrs_paper') and \
                args.num_candidates is not None:
            params['num_candidates'] = args.num_candidates
        backends = args.backends if (args.backends and name in (
            'lightgcn', 'brmrs', 'brmrs_paper',
            'rearm_objective_on_brmrs')) else [None]
        if name != 'lightgcn':
            backends = [b for b in backends if b != 'pyg']
        for backend in backends:
            p = dict(params)
            if backend is not None:
                p['backend'] = backend
            try:
                benches.append(Bench(label, name, data, p, args, device))
                specs.append({'label': label, 'name': name, 'params': p})
            except ImportError as e:
                print(f'{label} [{backend}]: skipped ({e})')
    remote = None
    if args.against is not None:
        remote = RemoteBenches(args.against, args.against_name, specs, args)
        info['against'] = {'checkout': str(args.against),
                           'name': args.against_name,
                           'package': remote.version}
    # Interleaved: round r runs epoch r of every row in turn (the other
    # version's right after this one's), so that the machine's speed
    # drifting during the run reaches every row alike.
    for r in range(args.epochs):
        for i, bench in enumerate(benches):
            turns = [(bench.label, None)]
            if remote is not None:
                turns.append((remote.labels[i], i))
            for label, remote_row in turns:
                if remote_row is None:
                    bench.epoch()
                    wall, cpu = bench.wall[-1], bench.cpu[-1]
                else:
                    timed = remote.epoch(remote_row)
                    wall, cpu = timed['wall'], timed['cpu']
                print(f"round {r + 1}/{args.epochs} {label:20s} "
                      f"{bench.params.get('backend', 'default'):12s} epoch "
                      f"{wall:.3f}s (CPU {cpu:.3f}s)", flush=True)
    rows = [bench.result() for bench in benches]
    profiles = {}
    if args.profile:
        for bench in benches:
            profiles[bench.label] = bench.profile(args.profile)
    del benches
    if remote is not None:
        rows += remote.results()

    suffix = lambda r: r['model'].partition('@')[2]  # noqa: E731
    refs = {suffix(r): r for r in rows if r['model'].partition('@')[0] ==
            'lightgcn' and r['backend'] in ('default', 'csr')}
    for r in rows:
        ref = refs.get(suffix(r))
        if ref:
            for key, out in (('epochs_wall_s', 'ratio_rounds'),
                             ('epochs_cpu_s', 'ratio_rounds_cpu')):
                r[out] = round_ratios(r, ref, key)
    header = ['model', 'backend', 'epoch s', 'propagation', 'sampling',
              'loss+backward', 'optimizer', 'sampling share',
              '/ our LightGCN', 'epoch CPU s', '/ our LightGCN (CPU)',
              'MMRec epoch s', 'speed-up vs MMRec']
    table = []
    for r in rows:
        mm = MMREC_EPOCH_S.get(r['model']) if args.dataset == 'baby' else None
        has = 'ratio_rounds' in r
        table.append([
            r['model'], r['backend'], r['epoch_s'], r['propagation_s'],
            r['sampling_s'], r['loss_backward_s'], r['optimizer_s'],
            f"{100 * r['sampling_share']:.1f}%",
            f"{statistics.median(r['ratio_rounds']):.2f}x" if has else '-',
            r['epoch_cpu_s'],
            f"{statistics.median(r['ratio_rounds_cpu']):.2f}x" if has
            else '-',
            mm if mm else '-',
            f"{mm / r['epoch_s']:.1f}x" if mm else '-'
        ])
    rounds = ''
    if args.dataset == 'baby':
        rounds += ("\n\nMMRec epoch s: the issue's reference numbers for "
                   "MMRec's own code (constants from another run and "
                   "machine, not measured here); compare this run's "
                   "ratios within the run.")
    if refs and args.epochs > 1:
        rounds += '\n\nPer-round ratios to the LightGCN of the same ' \
            'version (wall): ' + '; '.join(
                f"{r['model']} " + ', '.join(f'{x:.2f}'
                                             for x in r['ratio_rounds'])
                for r in rows if 'ratio_rounds' in r and
                r['model'].partition('@')[0] != 'lightgcn') + '.'
    if remote is not None:
        rounds += (f"\n\nRows '@{args.against_name}': the version in "
                   f"{args.against} ({remote.version}), timed in the same "
                   f"rounds by a worker process; '/ our LightGCN' is its own "
                   f"LightGCN. Same model, this version over the other "
                   f"(median of the per-round epoch ratios, wall): " +
                   '; '.join(
                       f"{r['model']} " + f"{statistics.median([a / b for a, b in zip(r['epochs_wall_s'], o['epochs_wall_s'])]):.3f}x"
                       for r in rows for o in rows
                       if o['model'] == f"{r['model']}@{args.against_name}"
                       and r['backend'] == o['backend']) + '.')
    if profiles:
        for label, ops in profiles.items():
            rounds += (f'\n\nTop operators of one epoch of {label} (self '
                       f'CPU): ' + '; '.join(
                           f"{o['op']} {o['self_cpu_s']:.2f}s "
                           f"({100 * o['share']:.0f}%)" for o in ops) + '.')
    md = (f"### Seconds per training epoch, {args.dataset} "
          f"({rows[0]['steps'] if rows else '?'} steps of "
          f"{args.batch_size} pairs; {args.epochs} interleaved round(s): "
          f"epoch s = median over the rounds, ratios = median of the "
          f"per-round ratios)\n\n" + markdown_table(header, table) + rounds)
    print('\n' + md)
    path = write_results(f'{args.out_name}_{args.dataset}',
                         {'machine': info, 'args': vars(args), 'rows': rows,
                          'profiles': profiles}, md)
    print(f'\nwritten: {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
