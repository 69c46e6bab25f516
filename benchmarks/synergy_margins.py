r"""What the synergy-aware BPR loss does to the branch margins during
training (TikTok, the paper's model at its selected equal-budget point).

For a pair :math:`(u, i^+)` and a negative :math:`j`, every branch :math:`b`
has the margin :math:`\Delta_b = s_b(u, i^+) - s_b(u, j)`; the synergy gap
is :math:`g = \Delta_f - \max_m \Delta_m`, the quantity that
:math:`\mathcal{L}_{\mathrm{syn}} = -\log\sigma(g - \theta)` pushes above
:math:`\theta`. After every epoch this script records the distribution of
:math:`g` on the **validation** pairs (held out; one negative per pair,
drawn once uniformly from the items the user did not train on, the same for
every epoch and variant) and on a fixed sample of training pairs: its
quantiles, the fraction with :math:`g > 0` (the fused branch separates the
pair better than the best single modality) and :math:`g > \theta`, the mean
:math:`\Delta` of every branch, and which modality is the max; every 5
epochs the validation Recall@20.

Variants (the same seed, initialisation and batch order up to the change):
``syn`` (the selected point, CHNS + L_syn), ``no_syn`` (CHNS + a plain fused
BPR instead of L_syn, :math:`\lambda_s = 0`, ``bpr_weight = 1``) and
``detached`` (L_syn with :math:`\max_m \Delta_m` detached).

    python benchmarks/synergy_margins.py --epochs 40 --threads 1

Writes ``results/synergy_margins.json`` and ``.md``; a variant whose
epochs are all recorded is reused (``results/synergy_margins/<variant>.json``,
written after every epoch; a variant stopped before its last epoch is
started again from its first).
"""
import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    RESULTS,
    load_tiktok,
    machine_info,
    skip,
    write_results,
)

VARIANTS = {
    'syn': {},
    'no_syn': {'lambda_s': 0.0, 'bpr_weight': 1.0},
    'detached': {'detach_reference': True},
}
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
BASE_TAG = 'eq8_brmrs_paper'


def gap_stats(out, users, pos, neg, theta: float) -> Dict[str, object]:
    r"""Statistics of :math:`g = \Delta_f - \max_m \Delta_m` over the pairs
    ``(users[k], pos[k])`` with negatives ``neg[k]``."""
    fused = out.ranking_branch
    mods = [b for b in out.branches if b != fused]
    delta = {}
    for b in out.branches:
        u = out.user[b][users]
        delta[b] = ((u * out.item[b][pos]).sum(-1)
                    - (u * out.item[b][neg]).sum(-1)).double()
    uni = torch.stack([delta[m] for m in mods])
    best, arg = uni.max(0)
    g = delta[fused] - best
    q = torch.quantile(g, torch.tensor(QUANTILES, dtype=torch.float64))
    return {
        'quantiles': {f'p{int(100 * p)}': float(v)
                      for p, v in zip(QUANTILES, q)},
        'mean_gap': float(g.mean()),
        'gap_gt_0': float((g > 0).double().mean()),
        'gap_gt_theta': float((g > theta).double().mean()),
        'mean_delta': {b: float(delta[b].mean()) for b in out.branches},
        'fused_separates': float((delta[fused] > 0).double().mean()),
        'max_is': {m: float((arg == k).double().mean())
                   for k, m in enumerate(mods)},
    }


def run_variant(name: str, args, data, point: Dict, pairs) -> Dict:
    from pyg_brmrs.app import recipes
    from pyg_brmrs.training import Trainer, seed_everything
    folder = args.out / 'synergy_margins'
    path = folder / f'{name}.json'
    if path.exists():
        done = json.loads(path.read_text())
        if len(done['epochs']) >= args.epochs and not args.force:
            print(f'reuse {path}', flush=True)
            return done
    params = {**point, **VARIANTS[name]}
    seed_everything(args.seed)
    model, objective = recipes.build('brmrs_paper', data, **params)
    theta = objective.syn_loss.theta
    cfg = recipes.train_config('brmrs_paper', params, epochs=args.epochs,
                               patience=args.epochs, seed=args.seed,
                               num_threads=args.threads)
    trainer = Trainer(model, objective, data, cfg)
    trainer.start()
    record = {'variant': name, 'params': params, 'theta': theta,
              'seed': args.seed, 'epochs': []}
    folder.mkdir(parents=True, exist_ok=True)
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        terms = trainer.train_epoch()
        trainer.loop.epoch += 1
        model.eval()
        with torch.no_grad():
            out = model(trainer.data)
            row = {'epoch': epoch + 1, 'train_time': time.perf_counter() - t0,
                   'loss': {k: float(v) for k, v in terms.items()},
                   'valid_pairs': gap_stats(out, *pairs['valid'], theta),
                   'train_pairs': gap_stats(out, *pairs['train'], theta)}
        if (epoch + 1) % 5 == 0:
            row['valid_recall@20'] = trainer.evaluate('valid')['recall@20']
        record['epochs'].append(row)
        path.write_text(json.dumps(record, indent=1))
        v = row['valid_pairs']
        print(f"{name} epoch {epoch + 1}: valid g median "
              f"{v['quantiles']['p50']:.4f}, P(g>0) {v['gap_gt_0']:.3f}, "
              f"P(g>θ) {v['gap_gt_theta']:.3f}"
              + (f", valid R@20 {row['valid_recall@20']:.4f}"
                 if 'valid_recall@20' in row else ''), flush=True)
    return record


def held_out_pairs(data, seed: int, train_sample: int):
    r"""Validation pairs and a sample of training pairs, each with one
    negative drawn uniformly from the items the user did not train on."""
    from pyg_brmrs.sampling import UniformNegativeSampler
    store = data['user', 'rates', 'item']
    gen = torch.Generator().manual_seed(seed)
    sampler = UniformNegativeSampler(store.edge_index,
                                     int(data['item'].num_nodes),
                                     generator=gen)
    vu, vi = store.val_edge_index
    tr = store.edge_index
    pick = torch.randperm(tr.size(1), generator=gen)[:train_sample]
    tu, ti = tr[0, pick], tr[1, pick]
    return {'valid': (vu, vi, sampler(vu)), 'train': (tu, ti, sampler(tu))}


def table(records: List[Dict], epochs: List[int]) -> str:
    lines = ['| variant | epoch | valid R@20 | g p10 | g p50 | g p90 | '
             'P(g > 0) | P(g > θ) | mean Δ_f | mean Δ_m | '
             'max is (share) | train pairs: P(g > 0) |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in records:
        for row in r['epochs']:
            if row['epoch'] not in epochs:
                continue
            v, t = row['valid_pairs'], row['train_pairs']
            mods = list(v['max_is'])
            fused = [b for b in v['mean_delta'] if b not in mods][0]
            lines.append(
                f"| {r['variant']} | {row['epoch']} | "
                f"{row.get('valid_recall@20', float('nan')):.4f} | "
                f"{v['quantiles']['p10']:.3f} | {v['quantiles']['p50']:.3f} | "
                f"{v['quantiles']['p90']:.3f} | {v['gap_gt_0']:.3f} | "
                f"{v['gap_gt_theta']:.3f} | {v['mean_delta'][fused]:.3f} | "
                + ', '.join(f"{m} {v['mean_delta'][m]:.3f}" for m in mods)
                + ' | ' + ', '.join(f"{m} {v['max_is'][m]:.2f}" for m in mods)
                + f" | {t['gap_gt_0']:.3f} |")
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--epochs', type=int, default=40)
    parser.add_argument('--seed', type=int, default=999)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS),
                        choices=list(VARIANTS))
    parser.add_argument('--train-sample', type=int, default=20000)
    parser.add_argument('--force', action='store_true')
    parser.add_argument('--out', type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_tiktok()
    if data is None:
        return skip('the TikTok data is not available')
    summary = RESULTS / 'quality' / 'tiktok' / BASE_TAG / 'summary.json'
    if not summary.exists():
        return skip(f'{summary} is missing (the selected point of the '
                    f"paper's model: run quality.py equal --model "
                    f"brmrs_paper)")
    s = json.loads(summary.read_text())
    point = {**s['fixed'], **s['selected']}
    from pyg_brmrs.app import recipes
    data = recipes.prepare('brmrs_paper', data, **point)
    pairs = held_out_pairs(data, seed=0, train_sample=args.train_sample)
    records = [run_variant(v, args, data, point, pairs)
               for v in args.variants]
    shown = sorted({1, 2, 5, 10, 20, 30, args.epochs}
                   & set(range(1, args.epochs + 1)))
    md = (f"Synergy gap g = Δ_f − max_m Δ_m of `brmrs_paper` at "
          f"{point} (θ = {records[0]['theta']}), seed {args.seed}, on the "
          f"{int(pairs['valid'][0].numel())} validation pairs (one fixed "
          f"uniform negative each); the last column on "
          f"{int(pairs['train'][0].numel())} training pairs.\n\n"
          + table(records, shown))
    payload = dict(machine=machine_info(threads=args.threads),
                   point=point, variants={
                       r['variant']: f"synergy_margins/{r['variant']}.json"
                       for r in records})
    path = write_results('synergy_margins', payload, md, args.out)
    print(md)
    print('written', path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
