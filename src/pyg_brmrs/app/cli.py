r"""The ``pyg-brmrs`` command: ``train``, ``evaluate``, ``grid`` and
``report``. A thin layer over :mod:`pyg_brmrs.app.experiment` (running)
and :mod:`pyg_brmrs.app.report` (tables); see ``pyg-brmrs <command>
--help``.

:func:`main` returns :obj:`0` on success. Every failure ends with one line
``pyg-brmrs <command>: error: ...`` on stderr that names the file, argument
or epoch concerned, and :class:`SystemExit` with a non-zero code (``--debug``
shows the traceback instead):

* code :obj:`2` for invalid input, as :mod:`argparse` does for its own
  errors: unknown model or parameter, malformed ``key=value``, NaN or
  infinite numbers, missing, truncated, corrupt or unsafe files, an output
  folder that is a file or holds another run, a resumed run that differs
  from the stored one;
* code :obj:`1` when a run fails (the loss diverged) or on an unexpected
  error (the line then says ``unexpected <type>``).

Output folders are checked before any data is read; every file is written
atomically (see :mod:`pyg_brmrs.app.run_folder` for what a run folder
holds).
"""
import argparse
import json
import logging
import math
import os
import sys
import textwrap
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from pyg_brmrs.app import experiment, recipes, report, run_folder
from pyg_brmrs.data import (
    detect_reader,
    get_reader,
    list_readers,
    modalities,
    split_sizes,
)
from pyg_brmrs.training import TrainConfig
from pyg_brmrs.training.config import (
    BATCHING,
    DEFAULT_NUM_NEIGHBORS,
    OPTIMIZERS,
    resolve_device,
)
from pyg_brmrs.utils import distributed
from pyg_brmrs.utils.atomic import write_json, write_text
from pyg_brmrs.utils.distributed import is_writer
from pyg_brmrs.version import __version__

PROG = 'pyg-brmrs'

DESCRIPTION = """\
BR-MRS (synergy-aware multimodal recommendation with cross-modal hard
negatives) and its baselines, trained and evaluated with MMRec's protocol
(full ranking, early stopping on validation Recall@20, test at the best
validation epoch, hyper-parameters selected on validation only)."""

EXAMPLES = """\
examples:
  pyg-brmrs train --model brmrs_paper --synthetic --epochs 50 --subsets
  pyg-brmrs train --model brmrs_paper --data data/baby --preset baby \\
      --param lambda_s=0.5 --output-dir runs/baby-brmrs
  pyg-brmrs evaluate --run-dir runs/baby-brmrs
  pyg-brmrs grid --model brmrs --data data/baby --grid theta=0.05,0.1,0.2
  pyg-brmrs report runs/*/results.json --out table1.md
"""

MODELS_NOTE = """\
brmrs_paper is the paper's model (and BRMRS's constructor defaults); brmrs is
a tuned variant that departs from it in five settings (id_mode=concat,
user_mode=profile, fusion=concat, per-part top-k graphs and the co-occurrence
of REARM, softmax-normalised counts, instead of the paper's Jaccard).
benchmarks/README.md holds the quality tables."""


def epilog() -> str:
    r"""The main help's epilog: examples and the recipes and data formats
    registered now."""
    def entry(name, text):
        head = f'  {name:12s}' if len(name) < 12 else f'  {name}\n' + ' ' * 14
        first, _, rest = head.rpartition('\n')
        body = textwrap.fill(text or '', width=79, initial_indent=rest,
                             subsequent_indent=' ' * 14)
        return f'{first}\n{body}' if first else body

    def entries(names, describe):
        return '\n'.join(entry(n, describe(n)) for n in names)

    return (EXAMPLES + '\nmodels (--model):\n' +
            entries(recipes.list_recipes(),
                    lambda n: recipes.get_recipe(n).description) +
            '\n\n' + MODELS_NOTE +
            '\n\ndata formats (--data FOLDER --format NAME; detected when '
            '--format is omitted):\n' +
            entries(list_readers(folder=True),
                    lambda n: get_reader(n).description))


class CLIError(ValueError):
    r"""Invalid command-line input."""


# ----------------------------------------------------------------------
# Parsing helpers
NON_FINITE = ('nan', '+nan', '-nan', 'inf', '+inf', '-inf', 'infinity',
              '+infinity', '-infinity')


def parse_value(text: str) -> Any:
    r"""A ``--param``/``--grid`` value: JSON when it parses
    (``0.5``, ``true``, ``{"image": 0.1}``), Python's ``True``/``False``/
    ``None``, else the string itself. NaN and infinite numbers (``NaN``,
    ``Infinity``, ``inf``, ... also inside JSON objects) raise a
    :class:`CLIError`."""
    if text.strip().lower() in NON_FINITE:
        raise CLIError(f"'{text}' is not a finite number")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {'True': True, 'False': False, 'None': None}.get(text, text)
    if not experiment.all_finite(value):
        raise CLIError(f"'{text}' holds a NaN or infinite number")
    return value


def _parse_value_of(option: str, key: str, text: str) -> Any:
    try:
        return parse_value(text)
    except CLIError as e:
        raise CLIError(f"{option} {key}: {e}") from None


def split_key_value(text: str, option: str) -> List[str]:
    key, sep, value = text.partition('=')
    key = key.strip()
    if not sep or key.count('.') > 1 or \
            not all(part.isidentifier() for part in key.split('.')):
        raise CLIError(f"{option} expects key=value with a parameter name "
                       f"(or part.name, e.g. objective.reg_weight) as key "
                       f"(got '{text}')")
    if value == '':
        raise CLIError(f"{option} {key}= has no value")
    return [key, value]


def split_top_level(text: str) -> List[str]:
    r"""Splits :obj:`text` at the commas outside brackets, braces and
    quotes: ``'1,{"a":1,"b":2}'`` → ``['1', '{"a":1,"b":2}']``."""
    parts, depth, quote, start = [], 0, None, 0
    for n, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in '"\'':
            quote = ch
        elif ch in '[{(':
            depth += 1
        elif ch in ']})':
            depth -= 1
        elif ch == ',' and depth == 0:
            parts.append(text[start:n])
            start = n + 1
    parts.append(text[start:])
    return parts


def parse_params(items: Optional[Sequence[str]]) -> Dict[str, Any]:
    r"""``['fusion=mean', 'lambda_s=0.5']`` → ``{'fusion': 'mean',
    'lambda_s': 0.5}``."""
    out: Dict[str, Any] = {}
    for item in items or []:
        key, value = split_key_value(item, '--param')
        if key in out:
            raise CLIError(f"--param {key} is given twice")
        out[key] = _parse_value_of('--param', key, value)
    return out


def parse_grid(items: Optional[Sequence[str]]) -> Dict[str, List[Any]]:
    r"""``['theta=0.05,0.1', 'fusion=concat,mean']`` → ``{'theta': [0.05,
    0.1], 'fusion': ['concat', 'mean']}`` (commas inside JSON values do not
    split)."""
    out: Dict[str, List[Any]] = {}
    for item in items or []:
        key, value = split_key_value(item, '--grid')
        if key in out:
            raise CLIError(f"--grid {key} is given twice")
        values = [v.strip() for v in split_top_level(value)]
        if any(v == '' for v in values):
            raise CLIError(f"--grid {key}={value} has an empty value")
        out[key] = [_parse_value_of('--grid', key, v) for v in values]
    return out


def _cast(text: str, cast: Any, what: str) -> Any:
    try:
        return cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not {what}") from None


def _positive_int(text: str) -> int:
    value = _cast(text, int, 'an integer')
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


def _finite_float(text: str) -> float:
    value = _cast(text, float, 'a number')
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number (got "
                                         f"{text})")
    return value


def _positive_float(text: str) -> float:
    value = _finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 (got {value})")
    return value


def _nonnegative_float(text: str) -> float:
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (got {value})")
    return value


def _ks(text: str) -> List[int]:
    try:
        ks = [int(k) for k in text.split(',')]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated "
                                         f"list of cutoffs such as 10,20")
    if any(k < 1 for k in ks):
        raise argparse.ArgumentTypeError(f"cutoffs must be >= 1 (got {text})")
    return ks


def _fanouts(text: str) -> List[int]:
    values = _cast(text, lambda t: [int(v) for v in t.split(',')],
                   'a comma-separated list of fan-outs such as 10,10')
    if any(v < 1 and v != -1 for v in values):
        raise argparse.ArgumentTypeError(f"fan-outs must be >= 1 or -1 (all "
                                         f"neighbours) (got {text})")
    return values


# ----------------------------------------------------------------------
# The parser
def _data_options(parser: argparse.ArgumentParser,
                  required: bool = True) -> None:
    group = parser.add_argument_group(
        'data' + ('' if required else
                  ' (default: the source stored in results.json)'))
    src = group.add_mutually_exclusive_group()
    formats = list_readers(folder=True)
    src.add_argument('--data', metavar='PATH',
                     help='dataset folder in a registered layout: ' +
                     '; '.join(f'{n} ({get_reader(n).description})'
                               if get_reader(n).description else n
                               for n in formats))
    src.add_argument('--synthetic', action='store_true',
                     help='use make_synthetic() (planted unique/synergy '
                     'users; no download needed)')
    group.add_argument('--format', choices=formats,
                       help='layout of --data (default: detected from the '
                       'files)')
    group.add_argument('--name', help='dataset name for the readers that '
                       'take one (MMRec: the <name>.inter file; default: '
                       'the folder name)')
    group.add_argument('--synthetic-users', type=_positive_int,
                       metavar='N', help='users of --synthetic '
                       '(default: 1000)')
    group.add_argument('--synthetic-items', type=_positive_int,
                       metavar='N', help='items of --synthetic '
                       '(default: 800)')


def _model_options(parser: argparse.ArgumentParser,
                   required: bool = True) -> None:
    group = parser.add_argument_group('model')
    group.add_argument('--model', choices=recipes.list_recipes(),
                       required=required,
                       help='the recipe to train' + (
                           '' if required else
                           ' (default: the one stored in results.json)'))
    group.add_argument('--param', action='append', metavar='KEY=VALUE',
                       help='a recipe keyword (repeatable), routed to the '
                       'graph transform, the model or the objective; the '
                       'value is parsed as JSON when possible, e.g. '
                       '--param fusion=mean --param lambda_s=0.5 '
                       '--param modality_weights_item=\'{"image":0.1,'
                       '"text":0.9}\'; a name several parts take is '
                       'prefixed with its part: --param '
                       'objective.reg_weight=0.001')
    group.add_argument('--preset', choices=sorted(recipes.DATASET_DEFAULTS),
                       help='start from the recommended settings for this '
                       'dataset (recipes.DATASET_DEFAULTS; --param '
                       'overrides them)')


def _training_options(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    group = parser.add_argument_group(
        'training (defaults: MMRec\'s, with the recipe\'s own settings, '
        'e.g. MGCN\'s learning-rate decay, and the preset\'s train.* '
        'parameters; an option given here wins)')
    group.add_argument('--epochs', type=_positive_int,
                       help=f'maximum epochs (default: {d.epochs})')
    group.add_argument('--batch-size', type=_positive_int,
                       help=f'training pairs per step (default: '
                       f'{d.batch_size})')
    group.add_argument('--lr', type=_positive_float,
                       help=f'Adam learning rate (default: {d.lr})')
    group.add_argument('--lr-decay', type=float, nargs=2,
                       metavar=('FACTOR', 'STEP'),
                       help='learning-rate schedule: epoch e trains with '
                       'lr * FACTOR^(e / STEP) (MMRec\'s '
                       'learning_rate_scheduler; default: constant, or the '
                       'recipe\'s, e.g. 0.96 50 for mgcn)')
    group.add_argument('--weight-decay', type=_nonnegative_float,
                       help=f'weight decay (default: {d.weight_decay}, or '
                       'the recipe\'s)')
    group.add_argument('--optimizer', choices=OPTIMIZERS,
                       help='adam (L2 penalty in the gradients) or adamw '
                       '(decoupled weight decay) (default: adam, or the '
                       'recipe\'s, e.g. adamw for rearm)')
    group.add_argument('--patience', type=_positive_int,
                       help='early stopping: evaluations without a better '
                       f'validation Recall@20 (default: {d.patience})')
    group.add_argument('--eval-every', type=_positive_int,
                       default=d.eval_every,
                       help=f'validate every N epochs (default: '
                       f'{d.eval_every})')
    group.add_argument('--seed', type=int, default=d.seed,
                       help=f'seeds Python, NumPy and torch before the model '
                       f'is built (default: {d.seed})')
    group.add_argument('--device', default=d.device,
                       help='auto (CUDA when available), cpu, cuda, cuda:1, '
                       '... (default: auto)')
    group.add_argument('--output-dir', metavar='DIR',
                       help='the run folder: run.json, results.json and the '
                       'checkpoints go there; a folder holding another run '
                       'is refused unless --resume or --overwrite is given')
    again = group.add_mutually_exclusive_group()
    again.add_argument('--resume', action='store_true',
                       help='continue the run in DIR from DIR/last.pt; the '
                       'model, its parameters, the data, the seed and every '
                       'training setting must be those stored in '
                       'DIR/run.json, except --epochs, --patience, '
                       '--max-time, --device, --threads and --progress, '
                       'which may change (recorded)')
    again.add_argument('--overwrite', action='store_true',
                       help='replace the run held by DIR')
    group.add_argument('--progress', action='store_true',
                       help='show tqdm progress bars')
    group.add_argument('--max-time', type=_positive_float, metavar='SECONDS',
                       help='stop training after this many seconds')
    group.add_argument('--threads', type=_positive_int, metavar='N',
                       help='torch CPU threads (default: torch\'s)')
    group.add_argument('--batching', choices=list(BATCHING),
                       default=d.batching,
                       help='full: every step runs the model on the whole '
                       'graph; neighbor: on the subgraph of its pairs sampled '
                       'by PyG\'s LinkNeighborLoader (negatives and CHNS '
                       'pools as extra item seeds; evaluation stays '
                       'full-graph). neighbor needs pyg-lib or torch-sparse: '
                       'pip install "pyg-brmrs[sparse]" (default: full)')
    group.add_argument('--num-neighbors', type=_fanouts, metavar='N1,N2,...',
                       help='with --batching neighbor, the neighbours sampled '
                       'per node and edge type at each hop, one number per '
                       'hop, -1 for all (default: '
                       f'{",".join(map(str, DEFAULT_NUM_NEIGHBORS))})')


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('-q', '--quiet', action='store_true',
                        help='no per-epoch log lines')
    parser.add_argument('--debug', action='store_true',
                        help='show the traceback of errors')


def _subsets_options(group, help: str) -> None:
    group.add_argument('--subsets', action='store_true', help=help)
    group.add_argument('--subsets-k', type=_positive_int, default=20,
                       metavar='K', help='cutoff of --subsets (default: 20)')


def _command(sub, name: str, func, help: str, description: str,
             example: str, **defaults: Any) -> argparse.ArgumentParser:
    r"""Adds the sub-command :obj:`name`, run by :obj:`func` (argparse
    reflows :obj:`description`, so it may be an indented block)."""
    parser = sub.add_parser(name, help=help, description=description,
                            epilog=f'example: {PROG} {name} {example}')
    parser.set_defaults(func=func, **defaults)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--version', action='version',
                        version=f'{PROG} {__version__}')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')

    train = _command(
        sub, 'train', cmd_train, 'train one model and report test metrics '
        'at the best validation epoch', """
        Trains one recipe with early stopping on validation Recall@20 and
        reports the test metrics at the best validation epoch. Writes
        results.json (config, history, metrics, the run record that
        `evaluate --run-dir` needs) and the checkpoints best.pt and last.pt
        to --output-dir.""",
        '--model brmrs --synthetic --epochs 50 --subsets --plots')
    _model_options(train)
    _data_options(train)
    _training_options(train)
    group = train.add_argument_group('analysis')
    _subsets_options(group, 'also compute the synergy / unique / degradation '
                     'subsets of the test pairs for the best model (models '
                     'with unimodal branches) and store them in '
                     'results.json under "subsets"')
    group.add_argument('--plots', action='store_true',
                       help='write curves.png (and subsets.png with '
                       '--subsets) to the output folder; needs matplotlib')
    _common_options(train)

    ev = _command(
        sub, 'evaluate', cmd_evaluate,
        'validation and test metrics of a checkpoint', """
        Rebuilds the model of a checkpoint and prints its validation and
        test metrics. With --run-dir (or a checkpoint next to a results.json
        written by `train`/`grid`) nothing else is needed; otherwise give
        --model, --param and the data options.""",
        '--run-dir runs/baby-brmrs --subsets')
    group = ev.add_argument_group('checkpoint')
    group.add_argument('--run-dir', metavar='DIR',
                       help='a folder written by `train` (uses DIR/best.pt '
                       'unless --checkpoint names another file)')
    group.add_argument('--checkpoint', metavar='FILE',
                       help='best.pt (weights at the best validation epoch) '
                       'or last.pt (the latest epoch); a bare name is looked '
                       'up in --run-dir')
    group.add_argument('--device', default=None,
                       help='override the run\'s device')
    _subsets_options(group, 'also print the synergy subsets of the test '
                     'pairs')
    group.add_argument('--out', metavar='FILE.json',
                       help='also write the metrics as JSON')
    _model_options(ev, required=False)
    _data_options(ev, required=False)
    _common_options(ev)

    gr = _command(
        sub, 'grid', cmd_grid, 'grid search, selected on validation only',
        """
        Trains one run per point of the Cartesian product of the --grid
        values (on top of --preset/--param) and selects the point with the
        best VALIDATION Recall@20 (unlike MMRec, which picks the best test
        score). Writes DIR/run_<n>/ and DIR/grid.json.""",
        '--model brmrs --synthetic --epochs 30 --grid theta=0.05,0.1 '
        '--grid fusion=concat,mean')
    gr.add_argument('--grid', action='append', metavar='KEY=V1,V2,...',
                    required=True,
                    help='values of one parameter (repeatable); values are '
                    'JSON when possible, commas inside JSON objects do not '
                    'split')
    _model_options(gr)
    _data_options(gr)
    _training_options(gr)
    _common_options(gr)

    rp = _command(
        sub, 'report', cmd_report, 'markdown tables from results files', """
        Renders results.json files into a markdown results table (rows =
        models, columns = R@10 R@20 N@10 N@20 per dataset; mean ± std over
        seeds) or, with --ablation, an ablation table (rows = variants, plus
        the U_m / U_syn / U_r subsets when stored).""",
        '"runs/**/results.json" --out table1.md', quiet=True)
    rp.add_argument('inputs', nargs='+', metavar='PATH',
                    help='results.json files, run folders (searched '
                    'recursively) or glob patterns (quote them)')
    rp.add_argument('--ablation', action='store_true',
                    help='ablation layout: rows in input order, subsets '
                    'columns')
    rp.add_argument('--ks', type=_ks, default=[10, 20],
                    help='cutoffs (default: 10,20)')
    rp.add_argument('--split', choices=['test', 'valid'], default='test',
                    help='results table only: report test (default) or '
                    'validation metrics')
    rp.add_argument('--digits', type=_positive_int, default=4,
                    help='decimals (default: 4)')
    rp.add_argument('--out', metavar='FILE.md',
                    help='write the table here instead of stdout')
    rp.add_argument('--debug', action='store_true',
                    help='show the traceback of errors')
    return parser


# ----------------------------------------------------------------------
# Building blocks
def data_source(args) -> experiment.DataSource:
    r"""The :class:`~pyg_brmrs.app.experiment.DataSource` of ``--synthetic`` or
    ``--data`` (format from ``--format`` or, without it, the registered
    format that recognises the folder: :func:`~pyg_brmrs.data.detect_reader`).
    """
    if args.synthetic:
        return experiment.DataSource('synthetic',
                                     num_users=args.synthetic_users,
                                     num_items=args.synthetic_items)
    if not args.data:
        raise CLIError('give a dataset: --data PATH or --synthetic')
    folder = Path(args.data).expanduser()
    if not folder.is_dir():
        raise CLIError(f"data folder '{args.data}' does not exist")
    fmt = args.format
    if fmt is None:
        try:
            fmt = detect_reader(folder).name
        except ValueError as e:
            raise CLIError(f'{e}; give --format') from None
    return experiment.DataSource(fmt, path=str(folder), name=args.name)


def model_params(args) -> Dict[str, Any]:
    preset: Dict[str, Any] = {}
    if args.preset:
        preset = recipes.dataset_defaults(args.preset, args.model)
        if not preset:
            have = sorted(recipes.DATASET_DEFAULTS[args.preset.lower()])
            raise CLIError(f"--preset {args.preset} has no settings for "
                           f"--model {args.model} (it has them for "
                           f"{', '.join(have)}); leave --preset out to use "
                           f"the recipe's defaults")
    # --param wins over the preset:
    params = recipes.merge_params(preset, parse_params(args.param))
    recipes.split_params(args.model, params)  # unknown names fail here
    return params


#: The training options that fall back to the recipe's and the preset's
#: settings when they are not given (option attribute = TrainConfig field).
FALLBACK_OPTIONS = ('epochs', 'batch_size', 'lr', 'lr_decay', 'weight_decay',
                    'optimizer', 'patience')


def train_config(args, params: Dict[str, Any]) -> TrainConfig:
    r"""The run's :class:`~pyg_brmrs.training.TrainConfig`:
    :func:`~pyg_brmrs.app.recipes.train_config` of the model with the
    ``train.*`` keys of :obj:`params`, under the options given."""
    check_device(args)
    given = {k: getattr(args, k) for k in FALLBACK_OPTIONS
             if getattr(args, k, None) is not None}
    try:
        return recipes.train_config(
            args.model, params, **given, eval_every=args.eval_every,
            seed=args.seed, device=args.device, progress=args.progress,
            max_time=args.max_time, num_threads=args.threads,
            batching=getattr(args, 'batching', 'full'),
            num_neighbors=getattr(args, 'num_neighbors', None))
    except ValueError as e:
        raise CLIError(str(e)) from None


def describe(source: experiment.DataSource, data) -> str:
    n_train, n_valid, n_test = split_sizes(data)
    return (f"{source.dataset}: {data['user'].num_nodes} users, "
            f"{data['item'].num_nodes} items, modalities "
            f"{modalities(data)}, {n_train}/{n_valid}/{n_test} "
            f"train/valid/test interactions")


@contextmanager
def _logging(quiet: bool):
    logger = logging.getLogger('pyg_brmrs')
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter('%(message)s'))
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


# ----------------------------------------------------------------------
# Commands
def cmd_train(args) -> int:
    try:
        if not is_writer():  # torchrun: rank 0 reports, the others train
            with open(os.devnull, 'w') as null, redirect_stdout(null):
                logging.getLogger('pyg_brmrs').setLevel(logging.WARNING)
                return _train(args)
        return _train(args)
    finally:
        distributed.shutdown()


def check_device(args) -> None:
    r"""Refuses an unknown or unavailable ``--device`` before any data is
    read."""
    if getattr(args, 'device', None) is not None:
        try:
            resolve_device(args.device)
        except ValueError as e:
            raise CLIError(f'--device: {e}') from None


def _train(args) -> int:
    check_device(args)
    params = model_params(args)
    source = data_source(args)
    out = args.output_dir or str(
        Path('runs') / f'{source.dataset}-{args.model}-seed{args.seed}')
    config = train_config(args, params)
    run_folder.check_output_dir(out, resume=args.resume,
                                overwrite=args.overwrite)
    if args.threads:  # before the graphs are built, not only for training
        torch.set_num_threads(args.threads)
    data = source.load()
    print(f'{args.model} on {describe(source, data)}')
    shown = json.dumps(params, default=str) if params else 'recipe defaults'
    print(f'parameters: {shown}; output: {out}')
    res = experiment.train(args.model, data, params, config, output_dir=out,
                           resume=args.resume, overwrite=args.overwrite,
                           source=source, subsets=args.subsets,
                           subsets_k=args.subsets_k)
    for entry in res.result.resumed:
        changed = ', '.join(f"{k} {v['stored']} -> {v['requested']}"
                            for k, v in entry['changed'].items())
        print(f"resumed after epoch {entry['at_epoch'] - 1}"
              + (f' ({changed})' if changed else ''))
    if args.plots and is_writer():
        write_plots(res, Path(out), args.model)
    print()
    print(report.summary_table([res.to_dict()]))
    if args.subsets:
        print('test subsets: ' + report.subsets_line(
            res.subsets.to_dict() if res.subsets else None))
    stop = 'early stop' if res.result.stopped_early else 'epoch limit'
    print(f'({stop}; test metrics at the best validation epoch '
          f'{res.result.best_epoch}) results: {Path(out) / "results.json"}')
    return 0


def write_plots(res: experiment.RunResult, folder: Path, label: str) -> None:
    try:
        from pyg_brmrs.app.plotting import (
            plot_synergy_subsets,
            plot_training_curves,
        )
        files = [plot_training_curves(res.to_dict(), folder / 'curves.png',
                                      title=label)]
        if res.subsets is not None:
            files.append(plot_synergy_subsets({label: res.subsets},
                                              folder / 'subsets.png'))
        print('plots: ' + ', '.join(str(f) for f in files))
    except ImportError as e:
        print(f'--plots skipped: {e}')


def cmd_evaluate(args) -> int:
    check_device(args)
    if not args.run_dir and not args.checkpoint:
        raise CLIError('give --run-dir DIR or --checkpoint FILE')
    if args.run_dir:
        run_dir = Path(args.run_dir)
        if not run_dir.is_dir():
            raise CLIError(f"run folder '{args.run_dir}' does not exist")
        ckpt = run_dir / (args.checkpoint or 'best.pt')
        if args.checkpoint and Path(args.checkpoint).is_file() and \
                not ckpt.is_file():
            ckpt = Path(args.checkpoint)
    else:
        ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        raise CLIError(f"checkpoint '{ckpt}' does not exist")
    spec = None
    if args.model:
        spec = experiment.run_spec(args.model, model_params(args),
                                   data_source(args))
    elif args.param or args.preset or args.data or args.synthetic:
        raise CLIError('--param/--preset/--data/--synthetic need --model '
                       '(without them the run record in results.json is used)')
    restored = experiment.restore(ckpt, spec, device=args.device)
    metrics = restored.evaluate()
    epoch = restored.checkpoint.get('epoch')
    when = ''
    if epoch is not None:
        when = (f' (after {epoch} epochs)' if 'optimizer' in
                restored.checkpoint else f' (best validation epoch {epoch})')
    print(f"{restored.spec['model']} on {restored.spec.get('dataset')}, "
          f"checkpoint {ckpt}{when}")
    print(report.metrics_table(metrics))
    stored = ckpt.parent / 'results.json'
    if spec is None and ckpt.name == 'best.pt' and stored.is_file():
        test = experiment.load_results(stored)['test']
        diff = max((abs(test[k] - metrics['test'][k])
                    for k in test if k in metrics['test']), default=0.0)
        print(f'stored test metrics reproduced (max |diff| {diff:.2e})'
              if diff < 1e-5 else
              f'WARNING: differs from the stored test metrics by up to '
              f'{diff:.4g}')
    out: Dict[str, Any] = dict(metrics, checkpoint=str(ckpt), epoch=epoch)
    if args.subsets:
        sub = restored.subsets(k=args.subsets_k)
        out['subsets'] = sub.to_dict() if sub else None
        print('test subsets: ' + report.subsets_line(out['subsets']))
    if args.out:
        write_json(out, args.out)
        print(f'metrics: {args.out}')
    return 0


def cmd_grid(args) -> int:
    check_device(args)
    grid = parse_grid(args.grid)
    params = model_params(args)
    explicit = parse_params(args.param)
    for key in grid:  # a searched parameter overrides the preset's value
        if key not in explicit:
            params.pop(key, None)
    recipes.split_params(args.model, {**params,
                                      **{k: v[0] for k, v in grid.items()}})
    source = data_source(args)
    out = args.output_dir or str(Path('runs') /
                                 f'grid-{source.dataset}-{args.model}')
    config = train_config(args, params)
    run_folder.check_output_dir(out, resume=args.resume,
                                overwrite=args.overwrite,
                                files=(run_folder.GRID, ))
    if args.threads:
        torch.set_num_threads(args.threads)
    data = source.load()
    print(f'{args.model} on {describe(source, data)}')
    print(f'fixed parameters: {json.dumps(params, default=str)}; grid: '
          f'{json.dumps(grid, default=str)}; output: {out}')
    res = experiment.grid(args.model, data, params, grid, config,
                          source=source, output_dir=out, resume=args.resume,
                          overwrite=args.overwrite)
    print()
    print(report.grid_table(res.to_dict()))
    print(f'\nselected on validation {res.select} only (test metrics are '
          f'shown, never used for the selection): '
          f'{json.dumps(res.best_params, default=str)} -> test R@20 '
          f"{res.best['test'].get('recall@20', float('nan')):.4f}, N@20 "
          f"{res.best['test'].get('ndcg@20', float('nan')):.4f}")
    print(f'runs: {out}/run_<n>/, summary: {Path(out) / "grid.json"}')
    return 0


def cmd_report(args) -> int:
    records = report.collect(args.inputs)
    if args.ablation:
        table = report.ablation_table(records, ks=args.ks,
                                      digits=args.digits)
    else:
        table = report.results_table(records, ks=args.ks, split=args.split,
                                     digits=args.digits)
    if args.out:
        path = write_text(table + '\n', args.out)
        print(f'{len(records)} runs -> {path}')
    else:
        print(table)
    return 0


# ----------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    r"""Entry point of ``pyg-brmrs``; :obj:`argv` defaults to
    ``sys.argv[1:]``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        with _logging(args.quiet):
            return args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f'{PROG} {args.command}: error: {interrupted_line(args)}',
              file=sys.stderr)
        raise SystemExit(130)
    except Exception as e:
        if args.debug:
            raise
        code, message = error_line(e)
        print(f'{PROG} {args.command}: error: {message}', file=sys.stderr)
        raise SystemExit(code)


def interrupted_line(args) -> str:
    r"""The one line printed for Ctrl-C: where the run stands and how to
    continue it."""
    argv = [a for a in sys.argv[1:] if a not in ('--overwrite', '--resume')]
    folder = getattr(args, 'output_dir', None)
    if args.command not in ('train', 'grid'):
        return 'interrupted'
    how = (f"continue it with: {PROG} {' '.join(argv)} --resume"
           if argv else 'continue it with the same command and --resume')
    where = f" (its last finished epoch is in '{folder}')" if folder else ''
    return f'interrupted{where}; {how}'


def error_line(e: Exception) -> Tuple[int, str]:
    r"""The exit code and the one-line message of an error (see the module
    docstring)."""
    text = ' '.join(str(e).split())
    if isinstance(e, OSError) and e.filename is not None and \
            not isinstance(e, FileNotFoundError):
        # e.g. "[Errno 13] Permission denied: 'x'" or "[Errno 28] No space"
        text = f"{e.strerror or type(e).__name__}: '{e.filename}'"
    if isinstance(e, (ValueError, TypeError, OSError)):
        return 2, text or type(e).__name__
    if isinstance(e, FloatingPointError):
        return 1, text or 'training diverged'
    return 1, (f'unexpected {type(e).__name__}: {text} (rerun with --debug '
               f'for the traceback)')


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
