r"""Shared driver of ``amazon_baby.py``, ``amazon_sports.py`` and
``amazon_clothing.py``: trains the chosen recipes with the package's
recommended settings for the dataset
(:obj:`pyg_brmrs.app.recipes.DATASET_DEFAULTS`, derived from REARM's published
per-dataset settings) under MMRec's protocol, for one or more seeds, and
writes the paper-style results table.

Every run goes to ``<out>/<model>/seed<seed>/`` (``results.json``,
``best.pt``, ``last.pt``); ``pyg-brmrs evaluate --run-dir`` and
``pyg-brmrs report`` work on these folders. The table is written to
``<out>/results.md`` and printed.
"""
import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch

from pyg_brmrs.app import recipes, report
from pyg_brmrs.app.experiment import DataSource, train
from pyg_brmrs.data import modalities, split_sizes
from pyg_brmrs.training import TrainConfig

#: Where MMRec's preprocessed datasets (interactions + features) live.
MMREC_DATA_URL = ('https://drive.google.com/drive/folders/'
                  '13cBy1EA_saTUuXxVllKgtfci2A09jyaG')
ALL_MODELS = ['bprmf', 'lightgcn', 'vbpr', 'freedom', 'lgmrec', 'mgcn',
              'dragon', 'bm3', 'rearm_objective_on_brmrs', 'brmrs_paper',
              'brmrs']


def expected_files(name: str) -> List[str]:
    return [f'{name}.inter', 'image_feat.npy', 'text_feat.npy']


def find_folder(root: Path, name: str) -> Tuple[Path, List[str]]:
    r"""The dataset folder (:obj:`root` itself or ``root/<name>``, as in
    MMRec's ``data/`` folder) and the expected files missing from it."""
    for folder in (root, root / name):
        missing = [f for f in expected_files(name)
                   if not (folder / f).is_file()]
        if not missing:
            return folder, []
    return root, [f for f in expected_files(name)
                  if not (root / f).is_file()]


def missing_data_message(name: str, root: Path, missing: List[str]) -> str:
    files = ', '.join(expected_files(name))
    return (f"The {name} dataset was not found in '{root}' (missing: "
            f"{', '.join(missing)}).\n"
            f"Expected an MMRec dataset folder holding {files}\n"
            f"  (<name>.inter: tab-separated userID itemID rating timestamp "
            f"x_label, x_label 0/1/2 = train/valid/test;\n"
            f"   image_feat.npy: 4096-d VGG image features, text_feat.npy: "
            f"384-d sentence-transformer text features,\n"
            f"   one row per itemID).\n"
            f"The features are not part of this repository. Download the "
            f"'{name}' folder of MMRec's preprocessed data from\n"
            f"  {MMREC_DATA_URL}\n"
            f"and pass it with --root (either the '{name}' folder itself or "
            f"its parent 'data' folder).")


def parse_args(name: str, argv: Optional[Sequence[str]],
               description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--root', default=f'data/{name}',
                        help=f'the MMRec folder of {name} ({name}.inter, '
                        f'image_feat.npy, text_feat.npy) or its parent '
                        f'(default: data/{name})')
    parser.add_argument('--models', default=','.join(ALL_MODELS),
                        help='comma-separated recipes (default: all seven: '
                        f"{','.join(ALL_MODELS)})")
    parser.add_argument('--seeds', type=int, nargs='+', default=[999],
                        help='one run per seed (default: 999, MMRec\'s)')
    parser.add_argument('--epochs', type=int, default=1000,
                        help='maximum epochs, early stopping with patience '
                        '20 on validation Recall@20 (default: 1000)')
    parser.add_argument('--device', default='auto',
                        help='auto (GPU if available, default), cuda, cpu')
    parser.add_argument('--out', default=f'results/{name}',
                        help=f'results folder (default: results/{name})')
    parser.add_argument('--resume', action='store_true',
                        help='continue interrupted runs from their last.pt '
                        '(finished runs are re-read, not retrained)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace the runs already in --out (without '
                        'this or --resume, a folder holding a run is '
                        'refused)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch\'s)')
    parser.add_argument('--quiet', action='store_true',
                        help='no per-epoch log lines')
    return parser.parse_args(argv)


def main(name: str, argv: Optional[Sequence[str]] = None,
         description: str = '') -> int:
    r"""Runs the benchmark of dataset :obj:`name` (``baby``, ``sports`` or
    ``clothing``); returns the exit code (2 when the data is missing)."""
    args = parse_args(name, argv, description)
    models = [m.strip() for m in args.models.split(',') if m.strip()]
    unknown = [m for m in models if m not in recipes.RECIPES]
    if unknown or not models:
        print(f'error: unknown model(s) {unknown} (choose from '
              f'{recipes.list_recipes()})', file=sys.stderr)
        return 2
    folder, missing = find_folder(Path(args.root).expanduser(), name)
    if missing:
        print(missing_data_message(name, Path(args.root), missing),
              file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.quiet:  # per-epoch lines of the trainer
        logger = logging.getLogger('pyg_brmrs')
        logger.setLevel(logging.INFO)
        if not logger.handlers:
            logger.addHandler(logging.StreamHandler())

    source = DataSource('mmrec', path=str(folder), name=name)
    data = source.load()
    n_train, n_valid, n_test = split_sizes(data)
    print(f"{name}: {data['user'].num_nodes} users, "
          f"{data['item'].num_nodes} items, modalities {modalities(data)}, "
          f'{n_train}/{n_valid}/{n_test} train/valid/test interactions')

    out = Path(args.out)
    records = []
    graphs = None
    for model in models:
        params = recipes.dataset_defaults(name, model)
        print(f'\n== {model} {params if params else "(recipe defaults)"}')
        for seed in args.seeds:
            config = TrainConfig(epochs=args.epochs, seed=seed,
                                 device=args.device)
            res = train(model, data, params, config,
                        output_dir=out / model / f'seed{seed}',
                        resume=args.resume, overwrite=args.overwrite,
                        source=source, subsets=True, built_graphs=graphs)
            graphs = res.graphs
            data = res.data
            records.append(report.to_record(res.to_dict()))
            test = res.result.test
            print(f"   seed {seed}: best epoch {res.result.best_epoch}, "
                  f"test R@20 {test['recall@20']:.4f} N@20 "
                  f"{test['ndcg@20']:.4f} ({res.result.train_time:.1f} s "
                  f"training)")

    table = report.results_table(records)
    subsets = [r for r in records if r.subsets]
    text = f'# {name}\n\n{table}\n'
    if subsets:
        text += ('\n## Synergy subsets (test pairs, BR-MRS backbone)\n\n' +
                 report.ablation_table(subsets) + '\n')
    out.mkdir(parents=True, exist_ok=True)
    (out / 'results.md').write_text(text)
    print('\n' + text + f'\nwritten to {out / "results.md"}')
    return 0
