r"""Markdown tables from results files: the results table (models ×
datasets), the ablation table (variants with the synergy subsets), a grid
search table and one-run summaries.

.. code-block:: python

    from pyg_brmrs.app.report import collect, results_table
    print(results_table(collect(['runs/*/results.json'])))

A *record* is the content of a ``results.json`` written by
:func:`pyg_brmrs.app.experiment.train` (or :class:`~pyg_brmrs.training.Trainer`);
its row label is ``info["run"]["label"]``, else the model's display name,
and its dataset ``info["run"]["dataset"]``. Runs that share dataset and row
label are aggregated as mean ± sample standard deviation (``ddof=1``) over
their seeds.
"""
import glob
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, \
    Tuple, Union

PathLike = Union[str, Path]

#: Display names of the recipes, in the row order of the tables (a recipe
#: not listed is shown under its name, after these).
MODEL_NAMES = {
    'bprmf': 'BPR-MF',
    'lightgcn': 'LightGCN',
    'vbpr': 'VBPR',
    'freedom': 'FREEDOM',
    'lgmrec': 'LGMRec',
    'mgcn': 'MGCN',
    'dragon': 'DRAGON',
    'dualgnn': 'DualGNN',
    'bm3': 'BM3',
    'lattice': 'LATTICE',
    'micro': 'MICRO',
    'apegnn': 'ApeGNN',
    'mgdn': 'MGDN',
    'mmgcn': 'MMGCN',
    'grcn': 'GRCN',
    'slmrec': 'SLMRec',
    'miggt': 'MIG-GT',
    'rearm': 'REARM',
    'rearm_objective_on_brmrs': 'REARM objective (BR-MRS backbone)',
    'brmrs_paper': 'BR-MRS (the paper\'s model)',
    'brmrs': 'BR-MRS (tuned variant)',
}
DATASET_ORDER = ('baby', 'sports', 'clothing')
ABBREVIATIONS = {'recall': 'R', 'ndcg': 'N', 'precision': 'P', 'map': 'MAP'}
MISSING = '–'


@dataclass
class Record:
    r"""One run, normalised for the tables."""
    model: str
    label: str
    dataset: str
    seed: Optional[int]
    params: Dict[str, Any]
    valid: Dict[str, float]
    test: Dict[str, float]
    subsets: Optional[Dict[str, Any]]
    best_epoch: Optional[int] = None
    epochs_run: Optional[int] = None
    train_time: Optional[float] = None
    path: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


def to_record(result: Mapping[str, Any],
              path: Optional[PathLike] = None) -> Record:
    r"""Normalises a results dict (see the module docstring)."""
    if not isinstance(result, Mapping) or 'test' not in result:
        raise ValueError(f"{path or 'result'}: not a results dict (no 'test' "
                         f"key)")
    info = result.get('info') or {}
    spec = info.get('run') or {}
    model = spec.get('model')
    if not model:
        # A results file written by Trainer directly: use the model class.
        model = str(info.get('model', '')).split('(')[0] or (
            Path(path).parent.name if path else '?')
    label = spec.get('label') or MODEL_NAMES.get(model, model)
    config = result.get('config') or {}
    return Record(model=model, label=label, dataset=spec.get('dataset') or '',
                  seed=config.get('seed'), params=spec.get('params') or {},
                  valid=dict(result.get('valid') or {}),
                  test=dict(result.get('test') or {}),
                  subsets=result.get('subsets'),
                  best_epoch=result.get('best_epoch'),
                  epochs_run=result.get('epochs_run'),
                  train_time=result.get('train_time'),
                  path=str(path) if path is not None else None,
                  raw=dict(result))


def find_results(inputs: Iterable[PathLike]) -> List[Path]:
    r"""Expands :obj:`inputs` (files, folders, glob patterns) into the
    ``results.json`` files they name: a folder stands for its
    ``results.json`` or, without one, every ``results.json`` below it.
    Duplicates are dropped; the order of :obj:`inputs` is kept (matches of
    one pattern sorted)."""
    out: List[Path] = []
    for item in inputs:
        item = str(item)
        matches = sorted(glob.glob(item, recursive=True)) \
            if glob.has_magic(item) else [item]
        if not matches:
            raise FileNotFoundError(f"No file matches '{item}'")
        for match in matches:
            path = Path(match)
            if path.is_dir():
                files = [path / 'results.json'] if (
                    path / 'results.json').is_file() else sorted(
                        path.rglob('results.json'))
                if not files:
                    if glob.has_magic(item):
                        continue
                    raise FileNotFoundError(f"No results.json in folder "
                                            f"'{path}'")
            elif path.is_file():
                files = [path]
            else:
                raise FileNotFoundError(f"'{path}' does not exist")
            for file in files:
                if file.resolve() not in {p.resolve() for p in out}:
                    out.append(file)
    if not out:
        raise FileNotFoundError(f"No results.json found in {list(inputs)}")
    return out


def collect(inputs: Iterable[PathLike]) -> List[Record]:
    r"""Reads every results file :func:`find_results` finds."""
    records = []
    for path in find_results(inputs):
        with open(path, encoding='utf-8') as f:
            try:
                result = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"'{path}' is not valid JSON ({e})") from None
            except UnicodeDecodeError:
                raise ValueError(f"'{path}' is not a results file (binary, "
                                 f"not JSON text; a checkpoint is evaluated "
                                 f"with 'evaluate --checkpoint')") from None
        records.append(to_record(result, path))
    return records


# ----------------------------------------------------------------------
def mean_std(values: Sequence[float]) -> Tuple[float, Optional[float]]:
    r"""Mean and sample standard deviation (``ddof=1``; :obj:`None` for a
    single value)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std() of no values")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    var = sum((v - mean)**2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def format_cell(values: Sequence[float], digits: int = 4,
                scale: float = 1.0) -> str:
    r"""``"0.1234"`` for one value, ``"0.1234 ± 0.0012"`` for several."""
    if not values:
        return MISSING
    mean, std = mean_std([v * scale for v in values])
    if std is None:
        return f'{mean:.{digits}f}'
    return f'{mean:.{digits}f} ± {std:.{digits}f}'


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                   align: Optional[Sequence[str]] = None) -> str:
    r"""A GitHub-flavoured markdown table; :obj:`align` holds ``'l'`` or
    ``'r'`` per column (default: first column left, the others right)."""
    if align is None:
        align = ['l'] + ['r'] * (len(header) - 1)
    for n, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"Row {n} has {len(row)} cells, the header "
                             f"{len(header)}")
    cells = [list(map(str, header))] + [list(map(str, r)) for r in rows]
    widths = [max(len(row[c]) for row in cells) for c in range(len(header))]

    def line(row):
        return '| ' + ' | '.join(
            cell.ljust(w) if a == 'l' else cell.rjust(w)
            for cell, w, a in zip(row, widths, align)) + ' |'

    rule = '|' + '|'.join(
        '-' * (w + 1) + ':' if a == 'r' else ':' + '-' * (w + 1)
        for w, a in zip(widths, align)) + '|'
    return '\n'.join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def metric_keys(ks: Sequence[int] = (10, 20),
                metrics: Sequence[str] = ('recall', 'ndcg')) -> List[str]:
    r"""``['recall@10', 'recall@20', 'ndcg@10', 'ndcg@20']`` (the paper's
    column order)."""
    return [f'{m}@{k}' for m in metrics for k in ks]


def short(key: str) -> str:
    r"""``'recall@20'`` → ``'R@20'``."""
    name, _, k = key.partition('@')
    return f'{ABBREVIATIONS.get(name, name)}@{k}'


def _order(items: Iterable[str], preferred: Sequence[str]) -> List[str]:
    seen: List[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    rank = {p: n for n, p in enumerate(preferred)}
    return sorted(seen, key=lambda x: (rank.get(x.lower(), len(rank)),
                                       seen.index(x)))


def _disambiguate(records: List[Record]) -> Dict[int, str]:
    r"""Row labels; runs that share a dataset and label but differ in their
    parameters get the differing parameters appended."""
    groups: Dict[Tuple[str, str], List[int]] = {}
    for n, r in enumerate(records):
        groups.setdefault((r.dataset, r.label), []).append(n)
    labels = {n: r.label for n, r in enumerate(records)}
    for idx in groups.values():
        keys = sorted({k for n in idx for k in records[n].params})
        diff = [
            k for k in keys if len({
                json.dumps(records[n].params.get(k), sort_keys=True,
                           default=str)
                for n in idx
            }) > 1
        ]
        if diff:
            for n in idx:
                p = records[n].params
                labels[n] += ' (' + ', '.join(
                    f'{k}={json.dumps(p.get(k), default=str)}'
                    for k in diff) + ')'
    return labels


def _grouped(records: Sequence[Record]):
    records = list(records)
    if not records:
        raise ValueError("No results to report")
    labels = _disambiguate(records)
    groups: Dict[Tuple[str, str], List[Record]] = {}
    for n, r in enumerate(records):
        groups.setdefault((r.dataset, labels[n]), []).append(r)
    return records, labels, groups


def _seeds_note(groups: Dict[Tuple[str, str], List[Record]]) -> str:
    counts = {len(v) for v in groups.values()}
    if counts == {1}:
        return 'one run per cell'
    if len(counts) == 1:
        return f'mean ± sample std (ddof=1) over {counts.pop()} seeds'
    parts = [f"{label}{' / ' + ds if ds else ''}: n={len(v)}"
             for (ds, label), v in groups.items()]
    return ('mean ± sample std (ddof=1) over seeds; ' + ', '.join(parts))


def results_table(records: Sequence[Record], *, ks: Sequence[int] = (10, 20),
                  metrics: Sequence[str] = ('recall', 'ndcg'),
                  split: str = 'test', digits: int = 4,
                  bold_best: bool = True, notes: bool = True) -> str:
    r"""The results table: one row per model (label), the columns
    ``R@10 R@20 N@10 N@20`` (:obj:`ks`, :obj:`metrics`) for every dataset;
    cells aggregate the seeds of a (dataset, model) pair as mean ± std. The
    best mean of every column is bold (:obj:`bold_best`, with two rows or
    more). :obj:`split` is :obj:`"test"` (at the best validation epoch) or
    :obj:`"valid"`."""
    if split not in ('valid', 'test'):
        raise ValueError(f"split must be 'valid' or 'test' (got '{split}')")
    records, labels, groups = _grouped(records)
    keys = metric_keys(ks, metrics)
    datasets = _order((r.dataset for r in records), DATASET_ORDER)
    model_rank = list(MODEL_NAMES.values())
    rows_order = _order((labels[n] for n in range(len(records))),
                        [m.lower() for m in model_rank])
    header = ['Model']
    columns: List[Tuple[str, str]] = []
    for ds in datasets:
        for key in keys:
            header.append(f'{ds} {short(key)}' if ds else short(key))
            columns.append((ds, key))
    cell_values: Dict[Tuple[str, int], List[float]] = {}
    for row in rows_order:
        for c, (ds, key) in enumerate(columns):
            runs = groups.get((ds, row), [])
            cell_values[(row, c)] = [
                getattr(r, split)[key] for r in runs
                if key in getattr(r, split)
            ]
    best: Dict[int, float] = {}
    if bold_best and len(rows_order) > 1:
        for c in range(len(columns)):
            means = [mean_std(v)[0] for (row, cc), v in cell_values.items()
                     if cc == c and v]
            if means:
                best[c] = max(means)
    rows = []
    for row in rows_order:
        cells = [row]
        for c in range(len(columns)):
            v = cell_values[(row, c)]
            text = format_cell(v, digits)
            if v and c in best and round(mean_std(v)[0], 12) >= round(
                    best[c], 12):
                text = f'**{text}**'
            cells.append(text)
        rows.append(cells)
    out = markdown_table(header, rows)
    if notes:
        what = ('Test metrics at the best validation epoch'
                if split == 'test' else 'Best validation metrics')
        abbrev = ', '.join(f'{v} = {k.capitalize() if k != "ndcg" else "NDCG"}'
                           for k, v in ABBREVIATIONS.items() if k in metrics)
        bold = '; **bold**: best per column' if best else ''
        out += (f'\n\n{what} ({abbrev}); {_seeds_note(groups)}{bold}.')
    return out


def subset_columns(records: Sequence[Record]) -> Tuple[List[str],
                                                       Optional[int]]:
    r"""The modalities of the stored subsets (in order of appearance) and
    their cutoff :math:`K` (:obj:`None` when no record has subsets)."""
    modalities: List[str] = []
    ks = set()
    for r in records:
        if r.subsets:
            ks.add(r.subsets.get('k'))
            for m in r.subsets.get('unimodal', list(r.subsets['unique'])):
                if m not in modalities:
                    modalities.append(m)
    if len(ks) > 1:
        raise ValueError(f"The subsets were computed at different cutoffs "
                         f"{sorted(ks)}; report them separately")
    return modalities, (ks.pop() if ks else None)


def ablation_table(records: Sequence[Record], *,
                   ks: Sequence[int] = (10, 20),
                   metrics: Sequence[str] = ('recall', 'ndcg'),
                   digits: int = 4, subset_digits: int = 2,
                   notes: bool = True) -> str:
    r"""The ablation table: one row per variant (label, in order of
    appearance), the test metrics and, when subsets are stored,
    :math:`U_m` per modality, :math:`U_{syn}` and :math:`U_r` in percent
    of the test pairs (mean ± std over seeds)."""
    records, labels, groups = _grouped(records)
    keys = metric_keys(ks, metrics)
    datasets = _order((r.dataset for r in records), DATASET_ORDER)
    modalities, subset_k = subset_columns(records)
    rows_order = _order((labels[n] for n in range(len(records))), [])
    header = ['Variant']
    columns: List[Tuple[str, str, str]] = []
    for ds in datasets:
        prefix = f'{ds} ' if len(datasets) > 1 else ''
        for key in keys:
            header.append(prefix + short(key))
            columns.append((ds, 'metric', key))
        if subset_k is not None:
            for m in modalities:
                header.append(f'{prefix}U_{m} %')
                columns.append((ds, 'unique', m))
            header += [f'{prefix}U_syn %', f'{prefix}U_r %']
            columns += [(ds, 'synergy', ''), (ds, 'degradation', '')]
            for b in ['fused'] + modalities:
                header.append(f'{prefix}hit {b} %')
                columns.append((ds, 'hit', b))
    rows = []
    for row in rows_order:
        cells = [row]
        for ds, kind, key in columns:
            runs = groups.get((ds, row), [])
            if kind == 'metric':
                cells.append(format_cell([r.test[key] for r in runs
                                          if key in r.test], digits))
                continue
            values = []
            for r in runs:
                if not r.subsets:
                    continue
                if kind == 'hit':
                    value = hit_rates(r.subsets).get(key)
                elif kind == 'unique':
                    value = r.subsets['unique'].get(key)
                else:
                    value = r.subsets[kind]
                if value is not None:
                    values.append(value)
            cells.append(format_cell(values, subset_digits, scale=100.0))
        rows.append(cells)
    out = markdown_table(header, rows)
    if notes:
        out += ('\n\nTest metrics at the best validation epoch; '
                f'{_seeds_note(groups)}.')
        if subset_k is not None:
            out += (f' Subsets of the test pairs at K={subset_k} (% of test '
                    'pairs): U_m = only the unimodal branch m ranks the item '
                    'in its top-K; U_syn = the fused branch does and no '
                    'unimodal branch does; U_r = some unimodal branch does, '
                    'the fused one does not; hit b = branch b ranks the item '
                    f'in its top-K on its own; {MISSING} = single-branch '
                    'model.')
    return out


# ----------------------------------------------------------------------
def metrics_table(splits: Mapping[str, Mapping[str, float]],
                  keys: Optional[Sequence[str]] = None,
                  digits: int = 4) -> str:
    r"""Rows = splits (*e.g.*, ``{'valid': {...}, 'test': {...}}``),
    columns = metrics (default: every key, sorted by metric then cutoff)."""
    if keys is None:
        found = {k for m in splits.values() for k in m}
        order = list(ABBREVIATIONS)

        def rank(key):
            name, _, k = key.partition('@')
            return (order.index(name) if name in order else len(order), name,
                    int(k) if k.isdigit() else 0)

        keys = sorted(found, key=rank)
    rows = [[split] + [f'{m[k]:.{digits}f}' if k in m else MISSING
                       for k in keys] for split, m in splits.items()]
    return markdown_table(['split'] + [short(k) for k in keys], rows)


def subsets_line(subsets: Optional[Mapping[str, Any]]) -> str:
    r"""One line such as ``U_image 3.10% | U_text 2.00% | U_syn 5.20% |
    U_r 4.00% | hit@20 fused 10.50%, image 9.80%, text 8.00% (K=20, 1523
    test pairs)``: the subsets, then the fraction of test pairs each branch
    ranks alone in its top-K (fused first)."""
    if not subsets:
        return 'no subsets (single-branch model)'
    parts = [f'U_{m} {100 * v:.2f}%' for m, v in subsets['unique'].items()]
    parts += [f"U_syn {100 * subsets['synergy']:.2f}%",
              f"U_r {100 * subsets['degradation']:.2f}%"]
    hits = hit_rates(subsets)
    if hits:
        parts.append(f"hit@{subsets['k']} " + ', '.join(
            f'{b} {100 * v:.2f}%' for b, v in hits.items()))
    return (' | '.join(parts) + f" (K={subsets['k']}, {subsets['num_pairs']} "
            f"test pairs)")


def hit_rates(subsets: Mapping[str, Any]) -> Dict[str, float]:
    r"""The per-branch hit rates of stored subsets, the fused branch first,
    then the unimodal branches in their stored order (empty when absent)."""
    hits = subsets.get('hit_rate') or {}
    fused = subsets.get('fused', 'fused')
    order = [fused] + list(subsets.get('unimodal', subsets['unique']))
    return {b: hits[b] for b in order if b in hits}


def summary_table(results: Sequence[Mapping[str, Any]],
                  ks: Sequence[int] = (10, 20), digits: int = 4) -> str:
    r"""One row per run: model, dataset, seed, best epoch, epochs run,
    training seconds and the test metrics at the best validation epoch."""
    keys = metric_keys(ks)
    header = ['model', 'dataset', 'seed', 'best epoch', 'epochs', 'train s',
              'valid R@20'] + [f'test {short(k)}' for k in keys]
    rows = []
    for res in results:
        r = to_record(res)
        rows.append([
            r.label, r.dataset or MISSING, str(r.seed), str(r.best_epoch),
            str(r.epochs_run), f'{r.train_time:.2f}'
            if r.train_time is not None else MISSING,
            f"{r.valid['recall@20']:.{digits}f}"
            if 'recall@20' in r.valid else MISSING
        ] + [f'{r.test[k]:.{digits}f}' if k in r.test else MISSING
             for k in keys])
    return markdown_table(header, rows, ['l', 'l'] + ['r'] *
                          (len(header) - 2))


def grid_table(grid: Mapping[str, Any], digits: int = 4) -> str:
    r"""One row per grid point (the :meth:`GridResult.to_dict` of
    :func:`~pyg_brmrs.app.experiment.grid`): the point's parameters, the
    selection metric on validation, test R@20 / N@20 and the best epoch;
    the selected point is marked ``*``."""
    runs = grid['runs']
    select = grid['select']
    names: List[str] = []
    for r in runs:
        for k in r['params']:
            if k not in names:
                names.append(k)
    header = ['', *names, f'valid {short(select)}', 'test R@20',
              'test N@20', 'best epoch']
    rows = []
    for r in runs:
        chosen = r['params'] == grid['best_params']
        rows.append(['*' if chosen else ''] + [
            json.dumps(r['params'].get(k), default=str) for k in names
        ] + [
            f"{r['valid'][select]:.{digits}f}" if select in r['valid']
            else MISSING,
            f"{r['test']['recall@20']:.{digits}f}" if 'recall@20' in r['test']
            else MISSING,
            f"{r['test']['ndcg@20']:.{digits}f}" if 'ndcg@20' in r['test']
            else MISSING,
            str(r['best_epoch'])
        ])
    return markdown_table(header, rows, ['l'] * (1 + len(names)) +
                          ['r'] * 4)
