r"""Table 2: ablations of BR-MRS with the synergy / unique / degradation
subsets.

    python examples/ablation.py                     # synthetic data
    python examples/ablation.py --data data/tiktok \
        --format diffmm
    python examples/ablation.py --variants full,chns-only,syn-only \
        --seeds 1 2 3
    python examples/ablation.py --model brmrs       # the tuned variant

Every variant is one BR-MRS recipe (``--model``: ``brmrs_paper``, the
paper's model, by default, or ``brmrs``, the tuned variant; same graphs,
same model, recipe defaults or ``--preset``) trained under the same protocol
with one change to the objective or the fusion; the test metrics at the best validation epoch
and the subsets of the test pairs at K = 20 go into a markdown table
(``<out>/ablation.md``) through :func:`pyg_brmrs.app.report.ablation_table`.

Variants (``--variants`` takes their ids):

==================  ==========================================================
``full``            BR-MRS: CHNS + L_syn, cross-assigned hard negatives
``chns-only``       CHNS only (``lambda_s=0``; with a non-additive fusion
                    nothing then trains the fused branch's own weights)
``no-syn``          no L_syn: replaced by a plain BPR term on the fused
                    branch with the same negative (``lambda_s=0``,
                    ``bpr_weight=1``)
``no-chns``         no CHNS: one uniform candidate (``num_candidates=1``)
``neither``         no CHNS and no L_syn (``num_candidates=1``,
                    ``lambda_s=0``, ``bpr_weight=1``)
``syn-only``        L_syn only (``lambda_h=0``) plus a plain BPR term on the
                    fused branch (``bpr_weight=1``). Without CHNS the
                    modality branches get no ranking loss of their own: L_syn
                    only trains them through the fused score and the
                    ``max_m`` reference (which it pushes *down*), so this row
                    adds fused BPR with the same uniform negative.
``syn-only-nobpr``  L_syn alone (``lambda_h=0``, ``bpr_weight=0``), for
                    completeness
``bpr-only``        neither: fused BPR only (``lambda_h=lambda_s=0``,
                    ``bpr_weight=1``), the plain backbone
``same``            hard negatives of each branch's own score
                    (``assignment="same"``, Eq. 2 as printed)
``fused-assign``    hard negatives of the fused score (``assignment="fused"``)
``detach``          ``detach_reference=True``: no gradient through
                    ``max_m Delta_m`` in L_syn
``mean``            ``fusion="mean"``
``gated``           ``fusion="gated"``
``rearm``           the REARM objective (BPR + InfoNCE + orthogonality) on the
                    same backbone
==================  ==========================================================
"""
import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from pyg_brmrs.app import recipes, report
from pyg_brmrs.app.experiment import DataSource, train
from pyg_brmrs.data import (
    detect_reader,
    list_readers,
    modalities,
    split_sizes,
)
from pyg_brmrs.training import TrainConfig

#: id -> (row label, recipe, parameters on top of the base ones); the recipe
#: 'brmrs' stands for the chosen ``--model``.
VARIANTS: Dict[str, Tuple[str, str, Dict[str, Any]]] = {
    'full': ('BR-MRS (CHNS + L_syn, cross)', 'brmrs', {}),
    'no-chns': ('no CHNS (C=1)', 'brmrs', {'num_candidates': 1}),
    'no-syn': ('no L_syn (fused BPR instead)', 'brmrs',
               {'lambda_s': 0.0, 'bpr_weight': 1.0}),
    'neither': ('neither (C=1, fused BPR)', 'brmrs',
                {'num_candidates': 1, 'lambda_s': 0.0, 'bpr_weight': 1.0}),
    'chns-only': ('CHNS only (λ_s=0)', 'brmrs', {'lambda_s': 0.0}),
    'syn-only': ('L_syn only (λ_h=0) + fused BPR', 'brmrs',
                 {'lambda_h': 0.0, 'bpr_weight': 1.0}),
    'syn-only-nobpr': ('L_syn alone (λ_h=0, no BPR)', 'brmrs',
                       {'lambda_h': 0.0}),
    'bpr-only': ('neither: fused BPR only', 'brmrs',
                 {'lambda_h': 0.0, 'lambda_s': 0.0, 'bpr_weight': 1.0}),
    'same': ('assignment = same', 'brmrs', {'assignment': 'same'}),
    'fused-assign': ('assignment = fused', 'brmrs', {'assignment': 'fused'}),
    'detach': ('detach_reference = True', 'brmrs',
               {'detach_reference': True}),
    'mean': ('fusion = mean', 'brmrs', {'fusion': 'mean'}),
    'gated': ('fusion = gated', 'brmrs', {'fusion': 'gated'}),
    'rearm': ('REARM objective', 'rearm_objective_on_brmrs', {}),
}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', choices=list(recipes.BRMRS_RECIPES),
                        default='brmrs_paper',
                        help="the BR-MRS recipe to ablate (default: "
                        "brmrs_paper, the paper's model)")
    parser.add_argument('--data', help='dataset folder (default: synthetic '
                        'data from make_synthetic())')
    parser.add_argument('--format', choices=list_readers(folder=True),
                        help='layout of --data (default: detected from the '
                        'files)')
    parser.add_argument('--name', help='dataset name for the readers that '
                        'take one (MMRec: <name>.inter; default: the folder '
                        'name)')
    parser.add_argument('--preset', choices=sorted(recipes.DATASET_DEFAULTS),
                        help='base settings of an Amazon dataset')
    parser.add_argument('--variants', default=','.join(VARIANTS),
                        help='comma-separated variant ids (default: all)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[999])
    parser.add_argument('--epochs', type=int, default=200,
                        help='maximum epochs (default: 200; early stopping '
                        'with patience 20)')
    parser.add_argument('--batch-size', type=int, default=2048)
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--device', default='auto',
                        help='auto (GPU if available), cuda, cpu')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (1 is fastest for the '
                        'synthetic data on a busy machine)')
    parser.add_argument('--subsets-k', type=int, default=20)
    parser.add_argument('--out', default='results/ablation',
                        help='results folder (default: results/ablation)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    chosen = [v.strip() for v in args.variants.split(',') if v.strip()]
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown or not chosen:
        print(f'error: unknown variant(s) {unknown} (choose from '
              f'{list(VARIANTS)})', file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        source = (DataSource(args.format or detect_reader(args.data).name,
                             path=args.data, name=args.name)
                  if args.data else DataSource('synthetic'))
        data = source.load()
    except (FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    n_train, n_valid, n_test = split_sizes(data)
    print(f"{source.dataset}: {data['user'].num_nodes} users, "
          f"{data['item'].num_nodes} items, modalities {modalities(data)}, "
          f'{n_train}/{n_valid}/{n_test} train/valid/test interactions')

    out = Path(args.out)
    records: List[report.Record] = []
    graphs = None
    for vid in chosen:
        label, model, change = VARIANTS[vid]
        if model == 'brmrs':
            model = args.model
        base = (recipes.dataset_defaults(args.preset, model)
                if args.preset else {})
        params = {**base, **change}
        for seed in args.seeds:
            config = TrainConfig(epochs=args.epochs,
                                 batch_size=args.batch_size, lr=args.lr,
                                 seed=seed, device=args.device)
            res = train(model, data, params, config,
                        output_dir=out / vid / f'seed{seed}', source=source,
                        label=label, subsets=True, subsets_k=args.subsets_k,
                        built_graphs=graphs)
            graphs, data = res.graphs, res.data
            records.append(report.to_record(res.to_dict()))
            sub = res.subsets
            print(f"{label:34s} seed {seed}: test R@20 "
                  f"{res.result.test['recall@20']:.4f}, U_syn "
                  f"{100 * sub.synergy:.2f}%, U_r "
                  f"{100 * sub.degradation:.2f}% "
                  f"(best epoch {res.result.best_epoch})")
    table = report.ablation_table(records)
    text = f'# Ablation on {source.dataset}\n\n{table}\n'
    out.mkdir(parents=True, exist_ok=True)
    (out / 'ablation.md').write_text(text)
    print('\n' + text + f'\nwritten to {out / "ablation.md"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
