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

Times are medians of ``--repeats`` calls, CPU seconds of the process.
Writes ``benchmarks/results/kernels_brmrs.json`` and ``.md``.
"""
import argparse
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
    parser.add_argument('--repeats', type=int, default=15)
    parser.add_argument('--name', default='kernels_brmrs')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = _common.load_baby()
    if data is None:
        return _common.skip('kernels_brmrs: the Baby data is absent')
    from pyg_brmrs import recipes
    from pyg_brmrs.data.schema import USER_SIM
    from pyg_brmrs.utils.sparse import BipartiteAdjacency
    params = recipes.dataset_defaults('baby', 'brmrs_paper')
    data = recipes.prepare('brmrs_paper', data, **params)
    ei = data['user', 'rates', 'item'].edge_index
    num_users, num_items = data['user'].num_nodes, data['item'].num_nodes
    ui = BipartiteAdjacency(ei, num_users, num_items)
    store = data[USER_SIM]
    weight = store.get('edge_weight')
    if weight is None:
        weight = torch.ones(store.edge_index.size(1))
    uu = torch.sparse_coo_tensor(store.edge_index, weight.float(),
                                 (num_users, num_users)).coalesce()
    uu = uu.to_sparse_csr()
    x_img = data['item'].x_image
    gen = torch.Generator().manual_seed(0)
    proj = torch.randn(x_img.size(1), 64, generator=gen)
    grad = torch.randn(num_items, 64, generator=gen)

    rows, results = [], []

    def add(kernel, ms, calls, model):
        results.append(dict(kernel=kernel, ms=ms, calls=calls, model=model))
        rows.append([kernel, f'{ms:.1f}', calls, f'{ms * calls:.1f}', model])

    for cols in (64, 128):
        xu = torch.randn(num_users, cols, generator=gen)
        xi = torch.randn(num_items, cols, generator=gen)
        ms = median_ms(lambda: ui.matmul(xu, xi), args.repeats)
        if cols == 64:
            add('user-item layer, 64 columns', ms, 2 * 2, 'lightgcn')
        else:
            layers = params.get('num_layers', 4)
            add('user-item layer, 128 columns', ms, 2 * layers,
                'brmrs_paper')
    xu = torch.randn(num_users, 128, generator=gen)
    add(f'user-user graph ({uu._nnz():,} edges), 128 columns',
        median_ms(lambda: torch.sparse.mm(uu, xu), args.repeats), 2,
        'brmrs_paper')
    add(f'image projection X W ({x_img.size(0):,} x {x_img.size(1):,} x 64)',
        median_ms(lambda: x_img @ proj, args.repeats), 1, 'brmrs_paper')
    add('image weight gradient X^T G',
        median_ms(lambda: x_img.t() @ grad, args.repeats), 1, 'brmrs_paper')
    total = {m: sum(r['ms'] * r['calls'] for r in results if r['model'] == m)
             for m in ('lightgcn', 'brmrs_paper')}
    # LightGCN's whole training step (batch 2048, Adam), same process:
    torch.manual_seed(0)
    model, objective = recipes.build('lightgcn', data)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    pairs = ei[:, torch.randperm(ei.size(1), generator=gen)[:2048]]

    def lightgcn_step():
        optimizer.zero_grad(set_to_none=True)
        objective(model, data, pairs[0], pairs[1])['loss'].backward()
        optimizer.step()

    step_ms = median_ms(lightgcn_step, args.repeats)
    total['lightgcn_step'] = step_ms
    total['floor_ratio'] = total['brmrs_paper'] / step_ms
    rows.append(['LightGCN training step (2048 pairs, Adam)',
                 f'{step_ms:.1f}', 1, f'{step_ms:.1f}', 'lightgcn'])
    table = _common.markdown_table(
        ['kernel', 'ms per call', 'calls per step', 'ms per step', 'model'],
        rows)
    notes = (f"\n\nKernels per step: LightGCN {total['lightgcn']:.1f} ms "
             f"(of its {step_ms:.1f} ms step), brmrs_paper "
             f"{total['brmrs_paper']:.1f} ms (Baby preset: "
             f"{params.get('num_layers', 4)} user-item layers; the item-item "
             f"layer's small graph left out) = **"
             f"{total['floor_ratio']:.2f}x LightGCN's whole step**: the "
             'BR-MRS / LightGCN ratio of these library kernels alone, '
             'before the rest of the step (CHNS, losses, normalisation, '
             f'gathers, Adam). {args.threads} '
             f'thread(s); medians of {args.repeats} calls, CPU seconds.\n')
    return _common.report(args.name, results, table + notes,
                          threads=args.threads, kernels_ms=total)


if __name__ == '__main__':
    sys.exit(main())
