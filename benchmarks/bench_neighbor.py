r"""Neighbour-sampled vs full-graph training on TikTok: test Recall@20 /
NDCG@20 at the best validation epoch, seconds per training epoch and peak
memory, for LightGCN and the paper's BR-MRS (``brmrs_paper``), both with
the ``tiktok`` preset.

Every (model, mode) runs in a fresh process (its own peak RSS), with the
same seed, the same number of epochs and the trainer's full-ranking,
chunked evaluation; ``--batching neighbor`` draws the batches with
:class:`~pyg_brmrs.loader.PairNeighborLoader` (PyG's LinkNeighborLoader,
needs pyg-lib or torch-sparse).

    python benchmarks/bench_neighbor.py --epochs 20 --threads 2
    python benchmarks/bench_neighbor.py --models lightgcn --num-neighbors 10,10

Writes ``benchmarks/results/bench_neighbor.json`` and ``.md`` (the command
is in the header). Skips with a reason when the TikTok folder is absent.
"""
import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    load_tiktok,
    machine_info,
    markdown_table,
    run_worker,
    skip,
    write_results,
)


def worker(spec) -> None:
    from pyg_brmrs.app import recipes
    from pyg_brmrs.training import TrainConfig, Trainer

    torch.set_num_threads(spec['threads'])
    data = load_tiktok()
    params = recipes.dataset_defaults('tiktok', spec['model'])
    data = recipes.prepare(spec['model'], data, **params)
    torch.manual_seed(spec['seed'])
    model, objective = recipes.build(spec['model'], data, **params)
    neighbor = spec['mode'] == 'neighbor'
    cfg = TrainConfig(epochs=spec['epochs'],
                      patience=spec.get('patience') or spec['epochs'],
                      seed=spec['seed'], device=spec['device'],
                      batching=spec['mode'],
                      num_neighbors=spec['num_neighbors'] if neighbor
                      else None)
    if spec['device'] != 'cpu' and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    res = Trainer(model, objective, data, cfg).fit()
    wall = time.perf_counter() - start
    out = dict(
        model=spec['model'], mode=spec['mode'],
        num_neighbors=spec['num_neighbors'] if neighbor else None,
        epochs=res.epochs_run, best_epoch=res.best_epoch,
        test_recall20=res.test.get('recall@20'),
        test_ndcg20=res.test.get('ndcg@20'),
        valid_recall20=res.valid.get('recall@20'),
        epoch_s=res.train_time / max(res.epochs_run, 1),
        eval_s=res.eval_time, wall_s=wall,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss /
        1024)
    if spec['device'] != 'cpu' and torch.cuda.is_available():
        out['peak_cuda_mb'] = torch.cuda.max_memory_allocated() / 2**20
    print('RESULT ' + json.dumps(out), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', nargs='+',
                        default=['lightgcn', 'brmrs_paper'])
    parser.add_argument('--epochs', type=int, default=20)
    parser.add_argument('--seed', type=int, default=999)
    parser.add_argument('--patience', type=int, default=None,
                        help='early stopping on validation Recall@20 '
                        '(default: none, every run trains --epochs)')
    parser.add_argument('--num-neighbors', default='10,10')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--out-name', default='bench_neighbor')
    parser.add_argument('--worker')
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    from pyg_brmrs.loader import sampling_backend
    if load_tiktok() is None:
        return skip('TikTok not found (../shared/data/tiktok-diffmm or '
                    '$PYG_BRMRS_DATA/tiktok-diffmm)')
    if sampling_backend() is None:
        return skip('neighbour sampling needs pyg-lib or torch-sparse')
    fanout = [int(v) for v in args.num_neighbors.split(',')]
    rows, results = [], []
    for model in args.models:
        base = None
        for mode in ('full', 'neighbor'):
            spec = dict(model=model, mode=mode, epochs=args.epochs,
                        patience=args.patience,
                        seed=args.seed, num_neighbors=fanout,
                        device=args.device, threads=args.threads)
            print(f'{model} {mode} ...', file=sys.stderr, flush=True)
            r = run_worker(__file__, spec)
            r.update(model=model, mode=mode)
            results.append(r)
            if 'error' in r:
                rows.append([model, mode, r['error']] + [''] * 6)
                continue
            if mode == 'full':
                base = r
            rel = ''
            if mode == 'neighbor' and base is not None:
                rel = (f"{100 * (r['test_recall20'] / base['test_recall20'] - 1):+.1f} % / "
                       f"{100 * (r['test_ndcg20'] / base['test_ndcg20'] - 1):+.1f} %")
            rows.append([model, mode if mode == 'full' else
                         f"neighbor {args.num_neighbors}",
                         r['test_recall20'], r['test_ndcg20'], rel,
                         r['best_epoch'], r['epoch_s'], r['peak_rss_mb'],
                         r.get('peak_cuda_mb', '')])
    header = ['model', 'batching', 'R@20', 'N@20',
              'vs full (R / N, relative)', 'best epoch', 's / epoch',
              'peak RSS MB', 'peak CUDA MB']
    if args.patience:
        budget = (f"up to **{args.epochs} epochs**, early stopping after "
                  f"{args.patience} epochs without a better validation "
                  f"Recall@20 (the trainer's rule)")
    else:
        budget = (f"**{args.epochs} epochs** (a fixed budget: the published "
                  f"runs train to early stopping, so these numbers can be "
                  f"below the README's and compare the two modes at equal "
                  f"epochs only)")
    note = (f"TikTok, `tiktok` preset, seed {args.seed}, {budget}, batch "
            f"2048, test metrics at the best validation epoch, one seed. "
            f"Neighbour batches scale every node's incoming sum by "
            f"deg(v) / deg_b(v) (see `pyg_brmrs.nn.base`). s / epoch is "
            f"training only (sampling included); peak RSS is the whole "
            f"process (data, graphs, evaluation).\n\n")
    md = note + markdown_table(header, rows)
    path = write_results(args.out_name, dict(
        machine=machine_info(args.device, threads=args.threads),
        results=results, epochs=args.epochs, patience=args.patience,
        num_neighbors=fanout), md)
    print(md)
    print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
