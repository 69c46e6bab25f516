r"""Quality runs with the same protocol and budget for every model: a small
grid of the model's key hyper-parameters is trained with the first seed and
the point with the best **validation** Recall@20 is selected (never test);
that point is then trained with the remaining seeds. Every run follows
MMRec's protocol (:class:`~pyg_brmrs.training.Trainer`: Adam, batch 2048,
lr 1e-3 unless the grid says otherwise, early stopping on validation
Recall@20 with patience 20, at most 1000 epochs, test at the best
validation epoch).

    python benchmarks/run_quality.py --dataset tiktok --model lightgcn \
        --grid '{"num_layers": [1, 2, 3], "reg_weight": [1e-4, 1e-3]}' \
        --seeds 999 1000 1001

    # one point only (no selection), e.g. an ablation variant:
    python benchmarks/run_quality.py --dataset tiktok --model brmrs \
        --params '{"lambda_s": 0}' --tag chns_only --seeds 999 1000 1001

Each run writes ``<out>/<dataset>/<tag>/<grid-point or seed>/results.json``;
the summary (grid, selected point, per-seed test metrics, mean and std) goes
to ``<out>/<dataset>/<tag>/summary.json``. ``--subsets`` adds the
synergy / unique / degradation fractions of every final run.
"""
import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    RESULTS,
    load_baby,
    load_tiktok,
    load_tsv,
    data_dir,
    machine_info,
    skip,
)

METRICS = ('recall@10', 'recall@20', 'ndcg@10', 'ndcg@20')


def load(name):
    if name == 'tiktok':
        return load_tiktok()
    if name == 'baby':
        return load_baby(with_features=False)
    if name == 'sports':
        return load_tsv(data_dir() / 'amazon-sports-jclaf' /
                        'sports_jclaf_derived.tsv', with_features=False)
    raise ValueError(f'unknown dataset {name}')


def train_one(model_name, data, params, seed, args, out_dir):
    from pyg_brmrs.app import recipes
    from pyg_brmrs.training import TrainConfig, Trainer, seed_everything
    result_file = out_dir / 'results.json'
    if result_file.exists() and not args.force:
        print(f'  reuse {result_file}', flush=True)
        return json.loads(result_file.read_text())
    params = dict(params)
    train_kw = {k: params.pop(k) for k in ('lr', 'batch_size')
                if k in params}
    seed_everything(seed)
    model, objective = recipes.build(model_name, data, **params)
    cfg = TrainConfig(epochs=args.epochs, patience=args.patience, seed=seed,
                      device=args.device, num_threads=args.threads,
                      **train_kw)
    start = time.time()
    res = Trainer(model, objective, data, cfg).fit()
    out = res.to_dict()
    # keep the committed files small: loss and validation R/N@20 per epoch
    out['history'] = [{
        'epoch': h['epoch'],
        'loss': round(h['loss'], 5),
        **({'val_recall@20': round(v['recall@20'], 5),
            'val_ndcg@20': round(v['ndcg@20'], 5)}
           if v is not None else {})
    } for h in out['history'] for v in [h.get('valid', h.get('val'))]]
    out['params'] = {**params, **train_kw}
    out['model_name'] = model_name
    out['wall_time'] = time.time() - start
    emb = model.embed(data)
    if args.subsets and len(emb.branches) > 1:
        from pyg_brmrs.analysis import synergy_subsets
        store = data['user', 'rates', 'item']
        out['subsets'] = synergy_subsets(emb.user, emb.item,
                                         store.edge_index,
                                         store.test_edge_index,
                                         k=20).to_dict()
    result_file.write_text(json.dumps(out, indent=1, default=str))
    print(f"  seed {seed} {params}: best epoch {res.best_epoch}/"
          f"{res.epochs_run}, valid R@20 {res.valid['recall@20']:.4f}, test "
          f"R@20 {res.test['recall@20']:.4f} N@20 "
          f"{res.test['ndcg@20']:.4f} ({out['wall_time']:.0f}s)",
          flush=True)
    return out


def point_name(point):
    if not point:
        return 'default'
    return ','.join(f'{k}={json.dumps(v, separators=(",", ":"))}'
                    for k, v in sorted(point.items())).replace('/', '_')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dataset', choices=['tiktok', 'baby', 'sports'],
                        required=True)
    parser.add_argument('--model', required=True)
    parser.add_argument('--params', default='{}',
                        help='JSON dict of fixed parameters')
    parser.add_argument('--grid', default='{}',
                        help='JSON dict parameter -> list of values')
    parser.add_argument('--points', default=None,
                        help='JSON list of points (dicts) to select from, '
                        'instead of --grid')
    parser.add_argument('--seeds', type=int, nargs='+', default=[999])
    parser.add_argument('--tag', default=None)
    parser.add_argument('--epochs', type=int, default=1000)
    parser.add_argument('--patience', type=int, default=20)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--subsets', action='store_true')
    parser.add_argument('--force', action='store_true')
    parser.add_argument('--out', type=Path, default=RESULTS / 'quality')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = load(args.dataset)
    if data is None:
        return skip(f'the {args.dataset} data is not available')
    from pyg_brmrs.app import recipes
    fixed = json.loads(args.params)
    grid = json.loads(args.grid)
    tag = args.tag or args.model
    root = args.out / args.dataset / tag

    graph_keys = set(recipes.parameter_names(args.model)['graph'])
    if graph_keys & set(grid):
        raise SystemExit('grid over graph parameters is not supported: run '
                         'one --params per graph setting')
    data = recipes.prepare(args.model, data, **fixed)

    names = list(grid)
    points = [dict(zip(names, v))
              for v in itertools.product(*(grid[k] for k in names))]
    if args.points is not None:
        if grid:
            raise SystemExit('--grid and --points are exclusive')
        points = json.loads(args.points)
        grid = {'points': points}
    points = points or [{}]
    print(f'{args.dataset} / {tag}: {len(points)} grid point(s), seeds '
          f'{args.seeds}', flush=True)
    runs = []
    for point in points:
        out = train_one(args.model, data, {**fixed, **point}, args.seeds[0],
                        args, root / 'grid' / point_name(point))
        runs.append({'point': point, 'valid': out['valid'],
                     'test': out['test'], 'best_epoch': out['best_epoch']})
    best = max(runs, key=lambda r: r['valid']['recall@20'])
    finals = []
    for seed in args.seeds:
        if seed == args.seeds[0]:
            out_dir = root / 'grid' / point_name(best['point'])
        else:
            out_dir = root / f'seed_{seed}'
        finals.append(train_one(args.model, data,
                                {**fixed, **best['point']}, seed, args,
                                out_dir))
    summary = {
        'dataset': args.dataset,
        'model': args.model,
        'tag': tag,
        'fixed': fixed,
        'grid': grid,
        'runs': runs,
        'selected': best['point'],
        'seeds': args.seeds,
        'test': {m: [f['test'][m] for f in finals] for m in METRICS},
        'valid': {m: [f['valid'][m] for f in finals] for m in METRICS},
        'mean': {m: statistics.mean(f['test'][m] for f in finals)
                 for m in METRICS},
        'std': {m: (statistics.stdev(f['test'][m] for f in finals)
                    if len(finals) > 1 else 0.0) for m in METRICS},
        'epochs': [f['epochs_run'] for f in finals],
        'epoch_time': [f['info']['epoch_time_mean'] for f in finals],
        'machine': machine_info(args.device),
    }
    if args.subsets:
        summary['subsets'] = [f.get('subsets') for f in finals]
    (root / 'summary.json').write_text(json.dumps(summary, indent=1,
                                                  default=str))
    print(f"{tag}: selected {best['point']} -> test " + ', '.join(
        f"{m} {summary['mean'][m]:.4f}±{summary['std'][m]:.4f}"
        for m in METRICS), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
