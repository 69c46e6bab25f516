r"""The kernels that bound a BR-MRS training step from below on Baby-shaped
data, each timed alone: the user–item propagation layer (both halves of
:class:`~pyg_brmrs.utils.BipartiteAdjacency`) at LightGCN's 64 columns and
at the two channels' 128, the user–user kNN graph product at 128 columns,
and the 7,050 x 4,096 x 64 image projection (forward ``X W`` and weight
gradient ``X^T G``).

A step of ``brmrs_paper`` with the Baby preset (4 user–item layers, one
user–user layer) runs each user–item layer and the user–user product once
forward and once backward (the normalised graphs are symmetric: the
backward products are the same kernels) and the projection's two
products; LightGCN's step runs its 2 layers at 64 columns forward and
backward. The sum of these kernels over LightGCN's whole training step
(timed in the same process) is the ratio the same model reaches with
these kernels and nothing else.

    python benchmarks/kernels_brmrs.py --threads 1

Every kernel and LightGCN's step are timed in turn in ``--rounds``
rounds (each the median of ``--repeats`` calls, CPU seconds of the
process), so that the machine's speed drifting during the run affects
both sides of a round's ratio alike; the table gives medians over the
rounds and the ratio of every round.
Writes ``benchmarks/results/kernels_brmrs.json`` and ``.md``.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    r"""Median CPU milliseconds of :obj:`repeats` calls after 3 warm-up
    calls."""
    return 1000 * _common.median_time(fn, repeats, warmup=3,
                                      clock=time.process_time)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--name', default='kernels_brmrs')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = _common.load_baby()
    if data is None:
        return _common.skip('kernels_brmrs: the Baby data is absent')
    from pyg_brmrs.app import recipes
    from pyg_brmrs.data.schema import USER_SIM
    from pyg_brmrs.training import make_adam
    from pyg_brmrs.utils.sparse import BipartiteAdjacency, CSRAdjacency
    params = recipes.dataset_defaults('baby', 'brmrs_paper')
    data = recipes.prepare('brmrs_paper', data, **params)
    ei = data['user', 'rates', 'item'].edge_index
    num_users, num_items = data['user'].num_nodes, data['item'].num_nodes
    ui = BipartiteAdjacency(ei, num_users, num_items)
    store = data[USER_SIM]  # the operator the model builds for it
    uu = CSRAdjacency(store.edge_index, store.get('edge_weight'),
                      (num_users, num_users))
    x_img = data['item'].x_image
    gen = torch.Generator().manual_seed(0)
    proj = torch.randn(x_img.size(1), 64, generator=gen)
    grad = torch.randn(num_items, 64, generator=gen)

    layers = params.get('num_layers', 4)
    x64 = (torch.randn(num_users, 64, generator=gen),
           torch.randn(num_items, 64, generator=gen))
    x128 = (torch.randn(num_users, 128, generator=gen),
            torch.randn(num_items, 128, generator=gen))
    # LightGCN's whole training step (batch 2048, Adam), same process:
    torch.manual_seed(0)
    model, objective = recipes.build('lightgcn', data)
    optimizer = make_adam(model.parameters(), lr=1e-3)
    pairs = ei[:, torch.randperm(ei.size(1), generator=gen)[:2048]]

    def lightgcn_step():
        optimizer.zero_grad(set_to_none=True)
        objective(model, data, pairs[0], pairs[1])['loss'].backward()
        optimizer.step()

    # (name, call, calls per step, model)
    kernels = [
        ('user-item layer, 64 columns', lambda: ui.matmul(*x64), 2 * 2,
         'lightgcn'),
        ('user-item layer, 128 columns', lambda: ui.matmul(*x128),
         2 * layers, 'brmrs_paper'),
        (f'user-user graph ({uu.nnz:,} edges), 128 columns',
         lambda: uu.matmul(x128[0]), 2, 'brmrs_paper'),
        (f'image projection X W ({x_img.size(0):,} x {x_img.size(1):,} '
         f'x 64)', lambda: x_img @ proj, 1, 'brmrs_paper'),
        ('image weight gradient X^T G', lambda: x_img.t() @ grad, 1,
         'brmrs_paper'),
        ('LightGCN training step (2048 pairs, Adam)', lightgcn_step, 1,
         'lightgcn step'),
    ]
    # Rounds that time every kernel and the step in turn, so that a change
    # of the machine's speed during the run hits both sides of a round's
    # ratio alike:
    per_round = []
    for _ in range(args.rounds):
        per_round.append([median_ms(fn, args.repeats)
                          for _, fn, _, _ in kernels])
    ratios = []
    for ms in per_round:
        brmrs = sum(m * k[2] for m, k in zip(ms, kernels)
                    if k[3] == 'brmrs_paper')
        ratios.append(brmrs / ms[-1])
    rows, results = [], []
    for j, (name, _, calls, which) in enumerate(kernels):
        ms = statistics.median(r[j] for r in per_round)
        results.append(dict(kernel=name, ms=ms, calls=calls, model=which,
                            rounds_ms=[r[j] for r in per_round]))
        rows.append([name, f'{ms:.1f}', calls, f'{ms * calls:.1f}', which])
    total = {m: sum(r['ms'] * r['calls'] for r in results if r['model'] == m)
             for m in ('lightgcn', 'brmrs_paper', 'lightgcn step')}
    total['floor_ratio'] = statistics.median(ratios)
    total['round_ratios'] = ratios
    table = _common.markdown_table(
        ['kernel', 'ms per call', 'calls per step', 'ms per step', 'model'],
        rows)
    notes = (f"\n\nKernels per step (medians over rounds): LightGCN "
             f"{total['lightgcn']:.1f} ms (of its "
             f"{total['lightgcn step']:.1f} ms step), brmrs_paper "
             f"{total['brmrs_paper']:.1f} ms (Baby preset: {layers} "
             "user-item layers; the item-item layer's small graph left "
             "out). brmrs_paper kernels / LightGCN's whole step, per "
             f"round: {', '.join(f'{r:.2f}x' for r in ratios)}; median "
             f"**{total['floor_ratio']:.2f}x**: the BR-MRS / LightGCN ratio "
             'of these library kernels alone, before the rest of the step '
             '(CHNS, losses, normalisation, gathers, Adam). '
             f'{args.threads} thread(s); {args.rounds} rounds, each the '
             f'median of {args.repeats} calls per kernel, CPU seconds.\n')
    return _common.report(args.name, results, table + notes,
                          threads=args.threads, kernels_ms=total)


if __name__ == '__main__':
    sys.exit(main())
