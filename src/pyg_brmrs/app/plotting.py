r"""Plots of the synergy subsets and of training curves (optional extra:
``pip install pyg-brmrs[plot]``).

:mod:`matplotlib` is imported lazily; figures are drawn on the
non-interactive Agg canvas without touching :mod:`matplotlib.pyplot`, so the
functions only write PNG files, never open a window and leave the user's
backend alone.
"""
import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from pyg_brmrs.utils.atomic import atomic_write

PathLike = Union[str, 'os.PathLike[str]']


def _figure(**kwargs):
    r"""A new :class:`matplotlib.figure.Figure` on an Agg canvas. No
    :mod:`matplotlib.pyplot` state is touched (the user's backend is left
    alone) and nothing is shown."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install "
                          "pyg-brmrs[plot]") from e
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: PathLike) -> Path:
    r"""Writes :obj:`fig` as a PNG file, atomically (a temporary file next
    to :obj:`path` renamed onto it)."""
    path = Path(path)
    if path.suffix.lower() != '.png':
        raise ValueError(f"'path' must end with '.png' (got '{path}')")
    with atomic_write(path, 'wb') as f:
        fig.savefig(f, format='png', dpi=150, bbox_inches='tight')
    return path


def _as_subsets_dict(result: Any, label: str) -> Dict[str, Any]:
    if hasattr(result, 'to_dict'):
        result = result.to_dict()
    if not isinstance(result, Mapping):
        raise TypeError(f"result '{label}' must be a SynergySubsets or its "
                        f"to_dict() (got {type(result).__name__})")
    missing = [k for k in ('unique', 'synergy', 'degradation')
               if k not in result]
    if missing:
        raise ValueError(f"result '{label}' lacks the keys {missing}")
    return dict(result)


def plot_synergy_subsets(
    results: Mapping[str, Any],
    path: PathLike,
    *,
    title: Optional[str] = None,
    percent: bool = True,
) -> Path:
    r"""Grouped bar charts of :math:`U_m` (one bar per modality),
    :math:`U_{syn}` and :math:`U_r` (left) and of every branch's own
    hit rate at :math:`K` (right: fused, then each unimodal branch ranking
    alone) for several models or ablations.

    Args:
        results (Dict[str, SynergySubsets or dict]): Label (*e.g.*, model
            name) :math:`\to` result of
            :func:`~pyg_brmrs.analysis.synergy_subsets` or its
            :meth:`~pyg_brmrs.analysis.SynergySubsets.to_dict`.
        path (str or Path): The PNG file to write (folders are created).
        title (str, optional): Figure title (default: the cutoff :math:`K`).
        percent (bool, optional): Show percentages of the held-out pairs
            instead of fractions. (default: :obj:`True`)

    Returns:
        The path of the written PNG.
    """
    if not isinstance(results, Mapping) or len(results) == 0:
        raise ValueError("'results' must be a non-empty dict label -> result")
    data = {label: _as_subsets_dict(res, label)
            for label, res in results.items()}
    modalities: List[str] = []
    for d in data.values():
        for m in d['unique']:
            if m not in modalities:
                modalities.append(m)
    categories = [f'$U_{{{m}}}$' for m in modalities]
    categories += ['$U_{syn}$', '$U_r$']
    scale = 100.0 if percent else 1.0

    branches = ['fused'] + modalities
    fig = _figure(figsize=(max(8.0, 0.6 * (len(categories) + len(branches)) *
                               len(data) + 3), 3.6))
    ax, ax_hit = fig.subplots(1, 2, gridspec_kw={
        'width_ratios': [len(categories), len(branches)]})
    width = 0.8 / len(data)
    for j, (label, d) in enumerate(data.items()):
        values = [d['unique'].get(m, float('nan')) for m in modalities]
        values += [d['synergy'], d['degradation']]
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(categories))]
        bars = ax.bar(xs, [v * scale for v in values], width, label=label)
        ax.bar_label(bars, fmt='%.1f' if percent else '%.3f', fontsize=7,
                     padding=1)
        hits = d.get('hit_rate') or {}
        hit_values = [hits.get(b, float('nan')) for b in branches]
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(branches))]
        bars = ax_hit.bar(xs, [v * scale for v in hit_values], width,
                          label=label)
        ax_hit.bar_label(bars, fmt='%.1f' if percent else '%.3f',
                         fontsize=7, padding=1)
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels(categories)
    ax.set_ylabel('% of held-out pairs' if percent else 'fraction of pairs')
    ax_hit.set_xticks(range(len(branches)))
    ax_hit.set_xticklabels(branches)
    ks = {d.get('k') for d in data.values()}
    k = ks.pop() if len(ks) == 1 and None not in ks else None
    ax_hit.set_title(f'hit@{k} per branch' if k else 'hit rate per branch')
    if title is None and k is not None:
        title = f'Synergy subsets at K={k}'
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    for a in (ax, ax_hit):
        a.grid(axis='y', alpha=0.3)
    return _save(fig, path)


def _load_history(history: Any):
    r"""Returns ``(list of epoch dicts, best_epoch or None)``."""
    best_epoch = None
    if isinstance(history, (str, os.PathLike)):
        file = Path(history)
        if not file.is_file():
            raise FileNotFoundError(f"results JSON '{file}' does not exist")
        with open(file) as f:
            history = json.load(f)
    if isinstance(history, Mapping):
        if 'history' not in history:
            raise ValueError("results dict has no 'history' key (expected a "
                             "list of per-epoch dicts or a results JSON)")
        best_epoch = history.get('best_epoch')
        history = history['history']
    if not isinstance(history, Sequence) or isinstance(history, str):
        raise TypeError(f"'history' must be a list of per-epoch dicts (got "
                        f"{type(history).__name__})")
    for n, row in enumerate(history):
        if not isinstance(row, Mapping) or 'epoch' not in row:
            raise ValueError(f"history entry {n} must be a dict with an "
                             f"'epoch' key (got {row!r})")
    return list(history), best_epoch


def valid_record(record: Mapping[str, Any]) -> Optional[Mapping]:
    r"""The validation metrics of one history record: ``'valid'``, or
    ``'val'`` in histories written before that key was renamed."""
    return record.get('valid', record.get('val'))


def plot_training_curves(
    history: Union[Sequence[Mapping[str, Any]], Mapping[str, Any], PathLike],
    path: PathLike,
    metric: str = 'recall@20',
    *,
    title: Optional[str] = None,
) -> Path:
    r"""Training loss and a validation metric per epoch, side by side.

    Args:
        history: Either a list of per-epoch dicts of exactly this shape

            .. code-block:: python

                [{'epoch': 0, 'loss': 0.69, 'valid': {'recall@20': 0.01, ...}},
                 {'epoch': 1, 'loss': 0.52},            # no evaluation
                 {'epoch': 2, 'loss': 0.41, 'valid': {'recall@20': 0.05}}, ...]

            (``'loss'`` and ``'valid'`` may be missing or :obj:`None` in
            epochs without them; histories written before the key was
            renamed say ``'val'``, which is read the same way), or a
            results dict / results-JSON path holding that
            list under ``'history'`` (its ``'best_epoch'``, if any, is marked).
        path (str or Path): The PNG file to write.
        metric (str, optional): The key in ``'valid'`` to plot. (default:
            :obj:`'recall@20'`)
        title (str, optional): Figure title.

    Returns:
        The path of the written PNG.
    """
    rows, best_epoch = _load_history(history)

    def finite(value):
        return isinstance(value, (int, float)) and math.isfinite(value)

    loss = [(r['epoch'], r['loss']) for r in rows if finite(r.get('loss'))]
    val = [(r['epoch'], v[metric]) for r in rows
           for v in [valid_record(r)]
           if isinstance(v, Mapping) and finite(v.get(metric))]
    if not loss and not val:
        raise ValueError(f"'history' has neither a 'loss' nor a validation "
                         f"'{metric}' value to plot")

    fig = _figure(figsize=(9, 3.4))
    ax_loss, ax_val = fig.subplots(1, 2)
    if loss:
        ax_loss.plot(*zip(*loss), color='C0')
    ax_loss.set_xlabel('epoch')
    ax_loss.set_ylabel('training loss')
    if val:
        ax_val.plot(*zip(*val), color='C1', marker='.' if len(val) < 50
                    else None)
    ax_val.set_xlabel('epoch')
    ax_val.set_ylabel(f'validation {metric}')
    if best_epoch is not None:
        for ax in (ax_loss, ax_val):
            ax.axvline(best_epoch, color='grey', linestyle='--', linewidth=1,
                       label=f'best epoch {best_epoch}')
        ax_val.legend(fontsize=8)
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


__all__ = ['plot_synergy_subsets', 'plot_training_curves']
