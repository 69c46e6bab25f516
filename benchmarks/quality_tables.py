r"""Renders the quality results written by ``run_quality.py``
(``results/quality/<dataset>/<tag>/summary.json``) into the markdown tables
of ``benchmarks/README.md``: the TikTok main table (mean ± std over seeds),
the exploration runs, the ablation with its synergy / unique / degradation
fractions, and the Amazon protocol check. Nothing is computed here but
means, ratios and margins of numbers already recorded.

    python benchmarks/quality_tables.py          # prints, writes results/quality/tables.md
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS  # noqa: E402

METRICS = ('recall@10', 'recall@20', 'ndcg@10', 'ndcg@20')
SHORT = {'recall@10': 'R@10', 'recall@20': 'R@20', 'ndcg@10': 'N@10',
         'ndcg@20': 'N@20'}

#: TikTok main table: (tag, label); the last row is the model under test.
MAIN = [('bprmf', 'BPR-MF'), ('vbpr', 'VBPR'), ('lightgcn', 'LightGCN'),
        ('freedom', 'FREEDOM'), ('rearm', 'REARM objective (BR-MRS backbone)'),
        ('brmrs', 'BR-MRS, first grid (L=2, ID added; λs × C)'),
        ('brmrs_layers', 'BR-MRS, second grid (ID added; L, as LightGCN)'),
        ('brmrs_final', '**BR-MRS** (final grid: L × ID channel)')]
FINAL = 'brmrs_final'
BASELINES = ('bprmf', 'vbpr', 'lightgcn', 'freedom', 'rearm')

ABLATION = [('ablation_full', 'full: CHNS (cross) + L_syn'),
            ('ablation_no_syn', 'CHNS only (λs = 0)'),
            ('ablation_no_chns', 'L_syn only (uniform negatives, C = 1)'),
            ('ablation_neither', 'neither (uniform, λs = 0)'),
            ('ablation_same', 'CHNS same-space assignment'),
            ('ablation_fused', 'single-space hard negatives (fused)'),
            ('ablation_detach', 'L_syn with detach_reference=True')]

#: MMRec's published Recall@20 for the protocol check: LightGCN as quoted in
#: DEVELOPERS.md; BPR-MF as reported in the FREEDOM paper's results table
#: (quoted from memory: it could not be re-checked offline).
PUBLISHED = {('baby', 'lightgcn'): 0.0754, ('sports', 'lightgcn'): 0.0864,
             ('baby', 'bprmf'): 0.0575, ('sports', 'bprmf'): 0.0653}


def load(root: Path, dataset: str, tag: str) -> Optional[Dict]:
    f = root / dataset / tag / 'summary.json'
    return json.loads(f.read_text()) if f.exists() else None


def fmt_point(point: Dict) -> str:
    if not point:
        return 'defaults'
    return ', '.join(f'{k}={v}' for k, v in point.items())


def pm(summary: Dict, metric: str) -> str:
    r"""``mean ± std`` of a test metric over a summary's seeds."""
    return f"{summary['mean'][metric]:.4f} ± {summary['std'][metric]:.4f}"


def main_table(root: Path) -> List[str]:
    rows = ['| model | grid (4 points, seed 999) | selected | '
            + ' | '.join(SHORT[m] for m in METRICS) + ' | epochs | s/epoch |',
            '|---|---|---|' + '---|' * len(METRICS) + '---|---|']
    found = {}
    for tag, label in MAIN:
        s = load(root, 'tiktok', tag)
        if s is None:
            continue
        found[tag] = s
        cells = [pm(s, m) for m in METRICS]
        grid = ', '.join(f'{k} ∈ {v}' for k, v in s['grid'].items()) or '—'
        epochs = '/'.join(str(e) for e in s['epochs'])
        sec = sum(s['epoch_time']) / len(s['epoch_time'])
        rows.append(f"| {label} | {grid} | {fmt_point(s['selected'])} | "
                    + ' | '.join(cells) + f' | {epochs} | {sec:.2f} |')
    final = found.get(FINAL) or found.get('brmrs_layers')
    base = {t: found[t] for t in BASELINES if t in found}
    if final and base:
        rows.append('')
        rows.append('Margin of BR-MRS (last row) over the strongest baseline '
                    'per metric, in units of that baseline\'s std and of '
                    'the larger of the two stds:')
        rows.append('')
        rows.append('| metric | strongest baseline | its mean ± std | BR-MRS '
                    '| margin | margin / baseline std | margin / max std |')
        rows.append('|---|---|---|---|---|---|---|')
        for m in METRICS:
            tag = max(base, key=lambda t: base[t]['mean'][m])
            b = base[tag]
            diff = final['mean'][m] - b['mean'][m]
            bs = b['std'][m]
            ms = max(bs, final['std'][m])
            rows.append(f"| {SHORT[m]} | {tag} | {pm(b, m)} | "
                        f"{pm(final, m)} | {diff:+.4f} | "
                        f"{diff / bs if bs else float('nan'):+.1f} | "
                        f"{diff / ms if ms else float('nan'):+.1f} |")
    return rows


def explore_table(root: Path) -> List[str]:
    rows = ['| run (BR-MRS, seed 999; λs=1, C=16, θ=0.1; L=2 and id_mode=add unless stated) | '
            'valid R@20 | valid N@20 | test R@20 | test N@20 | best epoch |',
            '|---|---|---|---|---|---|']
    entries = []
    s = load(root, 'tiktok', 'brmrs')
    if s:
        for r in s['runs']:
            entries.append((f"L=2, {fmt_point(r['point'])}", r))
    s = load(root, 'tiktok', 'brmrs_layers')
    if s:
        for r in s['runs']:
            entries.append((f"{fmt_point(r['point'])}, id_mode=add", r))
    s = load(root, 'tiktok', FINAL)
    if s:
        for r in s['runs']:
            if r['point'].get('id_mode') == 'concat':
                entries.append((fmt_point(r['point']), r))
    d = root / 'tiktok'
    if d.exists():
        for sub in sorted(d.glob('explore_*/summary.json')):
            s = json.loads(sub.read_text())
            label = sub.parent.name + ': ' + fmt_point(s['fixed'])
            entries.append((label, s['runs'][0]))
    seen = set()
    for label, r in entries:
        key = (r['valid']['recall@20'], r['test']['recall@20'])
        if key in seen:  # the same run listed under two tags (copied)
            continue
        seen.add(key)
        rows.append(f"| {label} | {r['valid']['recall@20']:.4f} | "
                    f"{r['valid']['ndcg@20']:.4f} | "
                    f"{r['test']['recall@20']:.4f} | "
                    f"{r['test']['ndcg@20']:.4f} | {r['best_epoch']} |")
    return rows


def ablation_table(root: Path) -> List[str]:
    rows = []
    for tag, label in ABLATION:
        s = load(root, 'tiktok', tag)
        if s is None:
            continue
        sub = (s.get('subsets') or [None])[0]
        if not rows:
            uni = sub['unimodal'] if sub else []
            rows = ['| variant | valid R@20 | test R@20 | test N@20 | '
                    + ' | '.join(f'U_{m}' for m in uni)
                    + ' | U_syn | U_deg | fused hit@20 |',
                    '|---|---|---|---|' + '---|' * (len(uni) + 3)]
        r = s['runs'][0]  # seed 999 (the grid seed)
        cells = [f"{r['valid']['recall@20']:.4f}",
                 f"{r['test']['recall@20']:.4f}",
                 f"{r['test']['ndcg@20']:.4f}"]
        if sub:
            cells += [f"{sub['unique'][m]:.4f}" for m in sub['unimodal']]
            cells += [f"{sub['synergy']:.4f}", f"{sub['degradation']:.4f}",
                      f"{sub['hit_rate']['fused']:.4f}"]
        rows.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    return rows


def ablation_seeds_table(root: Path) -> List[str]:
    r"""Ablation variants that were also run with more seeds, next to the
    final model's three seeds."""
    def row(label: str, s: Dict) -> str:
        return (f"| {label} | {'/'.join(map(str, s['seeds']))} | "
                f"{pm(s, 'recall@20')} | {pm(s, 'ndcg@20')} |")

    runs = [(label, load(root, 'tiktok', tag)) for tag, label in ABLATION]
    runs = [(label, s) for label, s in runs if s and len(s['seeds']) > 1]
    final = load(root, 'tiktok', FINAL)
    if final:
        runs.insert(0, ('full (the final BR-MRS)', final))
    if not runs:
        return []
    return ['| variant | seeds | test R@20 | test N@20 |', '|---|---|---|---|',
            *(row(label, s) for label, s in runs)]


def amazon_table(root: Path) -> List[str]:
    rows = ['| dataset | model | grid point (seed 999) | valid R@20 | test '
            'R@20 | test N@20 | published R@20 (MMRec) | ratio |',
            '|---|---|---|---|---|---|---|---|']
    for dataset in ('baby', 'sports'):
        for model in ('lightgcn', 'bprmf'):
            s = load(root, dataset, model)
            if s is None:
                continue
            pub = PUBLISHED[(dataset, model)]
            for r in s['runs']:
                sel = ' **(selected)**' if r['point'] == s['selected'] else ''
                rows.append(
                    f"| {dataset} | {model} | {fmt_point(r['point'])}{sel} | "
                    f"{r['valid']['recall@20']:.4f} | "
                    f"{r['test']['recall@20']:.4f} | "
                    f"{r['test']['ndcg@20']:.4f} | {pub:.4f} | "
                    f"{r['test']['recall@20'] / pub:.3f} |")
    return rows


def commands(root: Path) -> List[str]:
    rows = []
    for summary in sorted(root.glob('*/*/summary.json')):
        s = json.loads(summary.read_text())
        cmd = s.get('machine', {}).get('command', '')
        cmd = cmd.split('benchmarks/', 1)[-1]
        note = ''
        if s['model'] == 'brmrs' and 'id_mode' not in s['fixed'] and \
                'id_mode' not in s['grid']:
            note = (' — ran while `id_mode="add"` was the default: add '
                    '`"id_mode": "add"` to `--params` to reproduce it')
        rows.append(f"- `{s['dataset']}/{s['tag']}`: `python benchmarks/{cmd}`"
                    f" ({s.get('machine', {}).get('date', '?')[:16]}){note}")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--root', type=Path, default=RESULTS / 'quality')
    args = parser.parse_args(argv)
    out = ['# Quality results', '',
           '## TikTok: test metrics, mean ± std over seeds 999/1000/1001', '',
           *main_table(args.root), '',
           '## TikTok: BR-MRS exploration (validation decides)', '',
           *explore_table(args.root), '',
           '## TikTok: ablation (seed 999; fractions of test pairs, top-20)',
           '', *ablation_table(args.root), '',
           '## TikTok: ablation variants with more seeds', '',
           *ablation_seeds_table(args.root), '',
           '## Amazon protocol check (interactions only)', '',
           *amazon_table(args.root), '',
           '## Commands (as recorded in each summary.json)', '',
           *commands(args.root), '']
    text = '\n'.join(out)
    print(text)
    (args.root / 'tables.md').write_text(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
