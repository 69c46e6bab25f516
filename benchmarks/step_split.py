r"""Where a training step's time goes, measured inside real steps: our
LightGCN's and ``brmrs_paper``'s Baby-shaped steps (batch 2048, Adam; the
Baby preset of :mod:`pyg_brmrs.app.recipes` for ``brmrs_paper``) are run in
turn, with wall-clock timers around

* every sparse product of the library (each call of
  :func:`pyg_brmrs.utils.sparse.csr_matmul` and of
  :func:`~pyg_brmrs.utils.sparse.csr_addmm`, the product-and-add of the
  layer sums' backward passes: the user–item layers, the user–user and
  item–item graphs, forward and backward), and
* the dense feature projections of BR-MRS (the forward and backward
  passes of :func:`~pyg_brmrs.nn.models._projection.stacked_affine`, the
  products :math:`[\tilde{\mathbf{X}} | \tilde{\mathbf{1}}] [\mathbf{W} |
  \mathbf{b}]^{\top}` into the channel slots and the weight and bias
  gradient :math:`\mathbf{G}^{\top} [\tilde{\mathbf{X}} |
  \tilde{\mathbf{1}}]`, are timed; a call of the model's ``F.linear``,
  which this recipe does not make, would stop the run);

the rest of the step (CHNS, losses, normalisation, layer-mean bookkeeping,
gathers and their gradients, autograd, Adam) is the step minus these. Each
of ``--rounds`` rounds runs ``--steps`` steps of LightGCN, then of
``brmrs_paper``, so that the machine's speed drifting during the run
reaches both alike; the table gives the medians over the rounds and every
part as a multiple of LightGCN's whole step.

    python benchmarks/step_split.py --threads 1
    python benchmarks/step_split.py --threads 2

Writes ``benchmarks/results/step_split_<threads>t.json`` and ``.md``.
"""
import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from bench_train import recipe_params  # noqa: E402

TIMES = defaultdict(float)


class _TimedStackedAffine(torch.autograd.Function):
    r"""The model's stacked projection, its forward and backward passes
    timed."""
    @staticmethod
    def forward(ctx, xs, *params):
        from pyg_brmrs.nn.models._projection import _StackedAffine
        start = time.perf_counter()
        out = _StackedAffine.forward(ctx, xs, *params)
        TIMES['projection'] += time.perf_counter() - start
        return out

    @staticmethod
    def backward(ctx, grad):
        from pyg_brmrs.nn.models._projection import _StackedAffine
        start = time.perf_counter()
        grads = _StackedAffine.backward(ctx, grad)
        TIMES['projection'] += time.perf_counter() - start
        return grads


class _UntimedFunctional:
    r"""``torch.nn.functional`` whose ``linear`` stops the run: a projection
    outside the timed stacked one would be counted as the rest."""
    def __getattr__(self, name):
        return getattr(torch.nn.functional, name)

    @staticmethod
    def linear(*args, **kwargs):
        raise RuntimeError('step_split: unexpected F.linear call')


def install_timers():
    import pyg_brmrs.nn.models._projection as projection
    import pyg_brmrs.nn.models.brmrs as brmrs_module
    import pyg_brmrs.utils.sparse as sparse
    matmul, addmm = sparse.csr_matmul, sparse.csr_addmm

    def timed(adj, x):
        start = time.perf_counter()
        out = matmul(adj, x)
        TIMES['sparse'] += time.perf_counter() - start
        return out

    def timed_add(base, adj, x):
        start = time.perf_counter()
        out = addmm(base, adj, x)
        TIMES['sparse'] += time.perf_counter() - start
        return out

    sparse.csr_matmul = timed
    sparse.csr_addmm = timed_add
    projection.stacked_affine_function = _TimedStackedAffine
    brmrs_module.F = _UntimedFunctional()


def make_step(name, data):
    from pyg_brmrs.app import recipes
    from pyg_brmrs.training import make_adam
    params = recipe_params(name, 'baby')
    data = recipes.prepare(name, data.clone(), **params)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model, objective = recipes.build(name, data, generator=gen, **params)
    optimizer = make_adam(model.parameters(), lr=1e-3)
    ei = data['user', 'rates', 'item'].edge_index
    batches = [(ei[0, i], ei[1, i])
               for i in torch.randperm(ei.size(1), generator=gen).split(2048)]
    model.train()
    model.on_epoch_start(0, gen)
    state = {'i': 0}

    def step():
        users, pos = batches[state['i'] % len(batches)]
        state['i'] += 1
        terms = objective(model, data, users, pos)
        optimizer.zero_grad(set_to_none=True)
        terms['loss'].backward()
        optimizer.step()

    return step


def step_bench_args(doc: str):
    r"""The command line of the step benchmarks (``--threads``,
    ``--steps``, ``--rounds``, ``--name``), with the thread count applied,
    and the Baby data (:obj:`None` when it is absent)."""
    parser = argparse.ArgumentParser(description=doc.split('\n\n')[0])
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--steps', type=int, default=6)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--name', default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args, _common.load_baby()


def main() -> int:
    args, data = step_bench_args(__doc__)
    if data is None:
        return _common.skip('step_split: the Baby data is absent')
    install_timers()
    steps = {m: make_step(m, data) for m in ('lightgcn', 'brmrs_paper')}
    for step in steps.values():  # warm-up: builds the cached operators
        for _ in range(3):
            step()
    rounds = []
    for _ in range(args.rounds):
        row = {}
        for model, step in steps.items():
            TIMES.clear()
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            total = (time.perf_counter() - start) / args.steps
            sparse = TIMES['sparse'] / args.steps
            proj = TIMES['projection'] / args.steps
            row[model] = dict(step_ms=1e3 * total, sparse_ms=1e3 * sparse,
                              projection_ms=1e3 * proj,
                              rest_ms=1e3 * (total - sparse - proj))
        rounds.append(row)
        lg, br = row['lightgcn'], row['brmrs_paper']
        print(f"LightGCN {lg['step_ms']:.1f} ms (sparse "
              f"{lg['sparse_ms']:.1f}) | brmrs_paper {br['step_ms']:.1f} ms "
              f"(sparse {br['sparse_ms']:.1f}, projection "
              f"{br['projection_ms']:.1f}, rest {br['rest_ms']:.1f}) | "
              f"ratio {br['step_ms'] / lg['step_ms']:.2f}", flush=True)

    parts = ('step_ms', 'sparse_ms', 'projection_ms', 'rest_ms')
    labels = {'step_ms': 'whole step', 'sparse_ms': 'sparse products',
              'projection_ms': 'feature projections (fwd + weight/bias grad)',
              'rest_ms': 'rest of the step'}
    results, rows = [], []
    for model in steps:
        for part in parts:
            ms = statistics.median(r[model][part] for r in rounds)
            rel = statistics.median(r[model][part] / r['lightgcn']['step_ms']
                                    for r in rounds)
            results.append(dict(model=model, part=part, ms=ms,
                                per_lightgcn_step=rel,
                                rounds_ms=[r[model][part] for r in rounds]))
            rows.append([model, labels[part], f'{ms:.1f}', f'{rel:.2f}x'])
    table = _common.markdown_table(
        ['model', 'part', 'ms per step', "/ LightGCN's whole step"], rows)
    notes = (f"\n\n{args.threads} thread(s); {args.rounds} rounds of "
             f"{args.steps} steps per model, wall clock, medians over the "
             "rounds (each part's ratio is the median of its per-round "
             "ratios).\n")
    return _common.report(args.name or f'step_split_{args.threads}t',
                          results, table + notes, threads=args.threads)


if __name__ == '__main__':
    sys.exit(main())
