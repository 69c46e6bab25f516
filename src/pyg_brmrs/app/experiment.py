r"""Runs end to end. A *run* trains one recipe with one setting on one
dataset: :func:`train` loads nothing itself but adds the graphs the recipe
needs, seeds, builds, trains with the MMRec protocol into a run folder,
attaches what is needed to reproduce the run and (optionally) the synergy
subsets of the best model; :func:`grid` is one run per point of a grid,
selected on validation; :func:`restore` rebuilds the model of a stored
run. Shared by the ``pyg-brmrs`` command and the example scripts.

.. code-block:: python

    from pyg_brmrs.app.experiment import DataSource, train
    from pyg_brmrs.training import TrainConfig

    source = DataSource('mmrec', path='data/baby', name='baby')
    res = train('brmrs', source.load(), {'fusion': 'mean'}, TrainConfig(),
                output_dir='runs/baby-brmrs', source=source, subsets=True)
    res.result.test['recall@20'], res.subsets.synergy

Every run with an :obj:`output_dir` writes ``results.json`` holding the
:class:`~pyg_brmrs.training.TrainResult` fields, the top-level key
``"subsets"`` (:obj:`None` unless asked for and the model has unimodal
branches) and ``info["run"] = {"model", "params", "data", "dataset",
"label"}``, from which :func:`restore` rebuilds the model of a checkpoint
without any other input. The run folder and its manifest ``run.json`` are
managed as described in :mod:`pyg_brmrs.app.run_folder`: the recipe name
and its parameters identify the run when it is resumed.
"""
import copy
import dataclasses
import itertools
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch_geometric.data import HeteroData

from pyg_brmrs.analysis import SynergySubsets, synergy_subsets
from pyg_brmrs.app import recipes, run_folder
from pyg_brmrs.data import get_reader
from pyg_brmrs.data.schema import ITEM_SIM, RATES, USER_SIM
from pyg_brmrs.evaluation import ShardedEvaluator
from pyg_brmrs.nn.base import Recommender
from pyg_brmrs.objectives import Objective
from pyg_brmrs.training import (
    TrainConfig,
    Trainer,
    TrainResult,
    seed_everything,
    state_dict_problem,
)
from pyg_brmrs.training.config import EVAL_MAX_SCORES, resolve_device
from pyg_brmrs.utils.checkpoint import CheckpointError, load_checkpoint

logger = logging.getLogger('pyg_brmrs')

PathLike = Union[str, Path]


@dataclass
class DataSource:
    r"""Where a dataset comes from, in a form that can be stored in a
    results file and loaded again: a data format registered with
    :func:`~pyg_brmrs.data.register_reader` and what its reader is called
    with.

    Args:
        format (str): A registered format (:func:`~pyg_brmrs.data.list_readers`;
            built in: :obj:`"mmrec"` (:func:`~pyg_brmrs.data.read_mmrec`),
            :obj:`"diffmm"` (:func:`~pyg_brmrs.data.read_diffmm`) and
            :obj:`"synthetic"` (:func:`~pyg_brmrs.data.make_synthetic`)).
        path (str, optional): The dataset folder, for the formats that read
            one (stored as an absolute path).
        name (str, optional): The dataset name, passed to readers that take
            a :obj:`name` keyword (MMRec: ``<name>.inter``; default: the
            folder name).
        num_users (int, optional): Passed to readers that take it
            (synthetic users; default: the generator's).
        num_items (int, optional): Passed to readers that take it
            (synthetic items; default: the generator's).
        seed (int, optional): Passed to readers that take it (the synthetic
            generator's seed). (default: :obj:`0`)
        options (dict, optional): Any other keyword arguments of the reader.
    """
    format: str
    path: Optional[str] = None
    name: Optional[str] = None
    num_users: Optional[int] = None
    num_items: Optional[int] = None
    seed: int = 0
    options: Dict[str, Any] = field(default_factory=dict)

    #: The fields passed to a reader whose signature names them.
    READER_FIELDS: ClassVar[Tuple[str, ...]] = ('name', 'num_users',
                                                'num_items', 'seed')

    def __post_init__(self):
        reader = get_reader(self.format)
        for key in ('num_users', 'num_items'):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or
                                      value < 2):
                raise ValueError(f"Data source '{key}' must be an int >= 2 "
                                 f"(got {value!r})")
        if not isinstance(self.options, dict):
            raise ValueError(f"Data source 'options' must be a dict of "
                             f"reader keywords (got {self.options!r})")
        accepted = reader.keywords()
        for key in self.options:
            if key in self.READER_FIELDS or (accepted is not None and
                                             key not in accepted):
                others = [k for k in accepted or []
                          if k not in self.READER_FIELDS]
                raise ValueError(
                    f"Data source option {key!r} is not a keyword of the "
                    f"'{self.format}' reader (its options: {others}; "
                    f"{list(self.READER_FIELDS)} are DataSource fields)")
        if not reader.folder:
            if self.path is not None:
                raise ValueError(f"A '{self.format}' data source reads no "
                                 f"folder (got path '{self.path}')")
            return
        if not self.path:
            raise ValueError(f"A '{self.format}' data source needs a folder "
                             f"path")
        folder = Path(self.path).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"Data folder '{self.path}' does not "
                                    f"exist")
        self.path = str(folder.resolve())
        if not self.name and 'name' in (accepted or ()):
            self.name = folder.resolve().name

    @property
    def dataset(self) -> str:
        r"""A short display name (the dataset name, the folder name or, for
        a format without a folder, the format's name)."""
        if self.path is None:
            return self.format
        return self.name if self.name else Path(self.path).name

    def reader_kwargs(self) -> Dict[str, Any]:
        r"""The keyword arguments the reader is called with: the fields of
        :obj:`READER_FIELDS` its signature names (unless :obj:`None`) and
        :obj:`options`."""
        accepted = get_reader(self.format).keywords() or ()
        out = {key: getattr(self, key) for key in self.READER_FIELDS
               if key in accepted and getattr(self, key) is not None}
        out.update(self.options)
        return out

    def load(self) -> HeteroData:
        r"""Reads (or generates) the dataset with the registered reader."""
        return get_reader(self.format).read(self.path, **self.reader_kwargs())

    def to_dict(self) -> Dict[str, Any]:
        return {k: v for k, v in asdict(self).items()
                if v is not None and not (k == 'options' and not v)}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> 'DataSource':
        if not isinstance(d, dict) or 'format' not in d:
            raise ValueError(f"A data source must be a dict with a 'format' "
                             f"key (got {d!r})")
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"Unknown data source keys {sorted(unknown)}")
        return cls(**d)


def ensure_graphs(name: str, data: HeteroData, params: Dict[str, Any],
                  built: Optional[Dict[str, Any]] = None
                  ) -> Optional[Dict[str, Any]]:
    r"""Adds the homogeneous kNN graphs recipe :obj:`name` needs to
    :obj:`data` (in place), built with the graph keywords of :obj:`params`.
    :obj:`built` is the return value of a previous call on the same
    :obj:`data`: when the graph keywords are unchanged nothing is rebuilt,
    otherwise the old graphs are removed first. Returns the graph keywords
    now built (:obj:`built` unchanged for recipes without graphs)."""
    if not recipes.get_recipe(name).graphs:
        return built
    graph, _, _ = recipes.split_params(name, params)
    if built is not None and graph == built:
        return built
    for edge_type in (ITEM_SIM, USER_SIM):
        if edge_type in data.edge_types:
            del data[edge_type]
    # PyG transforms work on a shallow copy: move the new graphs over.
    prepared = recipes.prepare(name, data, **params)
    for edge_type in (ITEM_SIM, USER_SIM):
        if edge_type in prepared.edge_types:
            for key, value in prepared[edge_type].items():
                data[edge_type][key] = value
    return graph


def compute_subsets(model: Recommender, data: HeteroData, *,
                    split: str = 'test', k: int = 20,
                    mask_valid: bool = False) -> Optional[SynergySubsets]:
    r""":func:`~pyg_brmrs.analysis.synergy_subsets` of :obj:`model` on the
    held-out :obj:`split` (:obj:`"test"` or :obj:`"valid"`), or :obj:`None`
    for a model with a single branch (no unimodal branches to compare)."""
    if split not in ('valid', 'test'):
        raise ValueError(f"split must be 'valid' or 'test' (got '{split}')")
    out = model.embed(data)
    if len(out.branches) < 2:
        return None
    store = data[RATES]
    held = store.val_edge_index if split == 'valid' else store.test_edge_index
    exclude = store.val_edge_index if (split == 'test' and mask_valid) \
        else None
    return synergy_subsets(out.user, out.item, store.edge_index, held, k=k,
                           fused=out.ranking_branch,
                           exclude_edge_index=exclude)


@dataclass
class RunResult:
    r"""What :func:`train` returns.

    Attributes:
        result (TrainResult): The trainer's result (``info["run"]`` set).
        subsets (SynergySubsets, optional): Test subsets of the best model.
        model (Recommender): The trained model (best validation state).
        data (HeteroData): The dataset (on the training device).
        graphs (dict, optional): The graph keywords built on :obj:`data`
            (pass as :obj:`built_graphs` to the next :func:`train` on it).
        output_dir (Path, optional): Where ``results.json`` was written.
    """
    result: TrainResult
    subsets: Optional[SynergySubsets]
    model: Recommender
    data: HeteroData
    graphs: Optional[Dict[str, Any]] = None
    output_dir: Optional[Path] = None

    def to_dict(self) -> Dict[str, Any]:
        r"""The ``results.json`` content."""
        return results_record(self.result, self.subsets)


def results_record(result: TrainResult,
                   subsets: Optional[SynergySubsets] = None
                   ) -> Dict[str, Any]:
    r"""The content of a run's ``results.json``: the fields of
    :obj:`result` and ``"subsets"`` (:obj:`None` when not computed)."""
    out = result.to_dict()
    out['subsets'] = subsets.to_dict() if subsets else None
    return out


def all_finite(value: Any) -> bool:
    r""":obj:`False` if :obj:`value` is, or holds (in nested dicts, lists
    and tuples), a NaN or infinite float."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(all_finite(v) for v in value)
    return True


def check_params(params: Dict[str, Any], where: str = 'params') -> None:
    r"""Raises a :class:`ValueError` naming the parameter if a value of
    :obj:`params` (or a number nested in it) is NaN or infinite."""
    for key, value in params.items():
        if not all_finite(value):
            raise ValueError(f"{where}: '{key}' must be finite (got "
                             f"{value!r})")


def run_spec(name: str, params: Dict[str, Any],
             source: Optional[DataSource] = None,
             label: Optional[str] = None) -> Dict[str, Any]:
    r"""The ``info["run"]`` record of a run."""
    return {
        'model': name,
        'params': copy.deepcopy(params),
        'data': source.to_dict() if source is not None else None,
        'dataset': source.dataset if source is not None else None,
        'label': label,
    }


def with_training_params(name: str, params: Dict[str, Any],
                         config: Optional[TrainConfig]) -> TrainConfig:
    r""":obj:`config` with the ``train.*`` settings of :obj:`params`
    applied, or :func:`~pyg_brmrs.app.recipes.train_config` for
    :obj:`None`."""
    if config is None:
        return recipes.train_config(name, params)
    overrides = recipes.training_params(params)
    return dataclasses.replace(config, **overrides) if overrides else config


def train(name: str, data: HeteroData,
          params: Optional[Dict[str, Any]] = None,
          config: Optional[TrainConfig] = None, *,
          output_dir: Optional[PathLike] = None, resume: bool = False,
          overwrite: bool = False, checkpoint: bool = True,
          source: Optional[DataSource] = None, label: Optional[str] = None,
          subsets: bool = False, subsets_k: int = 20,
          built_graphs: Optional[Dict[str, Any]] = None) -> RunResult:
    r"""Trains recipe :obj:`name` on :obj:`data` (one run): adds the graphs
    (:func:`ensure_graphs`), seeds Python, NumPy and torch with
    :obj:`config.seed` *before* building the model (so that the run is
    reproducible from its parameters alone), builds it with
    :func:`pyg_brmrs.app.recipes.build`, fits it with
    :class:`~pyg_brmrs.training.Trainer`, records :func:`run_spec` in
    ``info["run"]`` and, with :obj:`subsets=True`, the test synergy subsets
    at cutoff :obj:`subsets_k` of the best model.

    Args:
        config (TrainConfig, optional): The training settings; the
            ``train.*`` keys of :obj:`params` override them. (default:
            :obj:`None`: :func:`~pyg_brmrs.app.recipes.train_config`, the
            defaults with the recipe's own training settings, *e.g.*
            MGCN's learning-rate decay)
        output_dir (str or Path, optional): The run folder
            (:mod:`~pyg_brmrs.app.run_folder`): ``run.json``, the
            checkpoints (with :obj:`checkpoint`) and ``results.json``. A
            folder that holds another run is refused unless :obj:`resume`
            (continue it from ``last.pt``; it must be the same run, only the
            :data:`~pyg_brmrs.training.RESUMABLE` settings may change) or
            :obj:`overwrite` (replace it: the old run's files are kept as
            ``<name>.previous`` until the new run writes its first
            checkpoint, and put back if it fails before), and a folder
            another run is training into is refused in every case (it is
            locked until that run's results are written). (default:
            :obj:`None`: nothing is written)
    """
    params = dict(params or {})
    recipes.split_params(name, params)  # validates the names early
    config = with_training_params(name, params, config)
    check_params(params)
    if output_dir is not None:  # before the graphs are built
        run_folder.check_output_dir(output_dir, resume=resume,
                                    overwrite=overwrite)
    graphs = ensure_graphs(name, data, params, built_graphs)
    seed_everything(config.seed)
    model, objective = recipes.build(name, data, **params)
    trainer = Trainer(model, objective, data, config)
    folder = None
    if output_dir is not None:
        requested = run_folder.make_manifest(
            {'model': name, 'params': params},
            run_folder.data_fingerprint(trainer.data), config.to_dict())
        folder = run_folder.open_run(output_dir, requested, resume=resume,
                                     overwrite=overwrite)
    try:  # the folder stays locked until its results are written
        if folder is not None:
            trainer.checkpoints = folder.checkpoints(save=checkpoint)
            if trainer.start() is not None:
                folder.record_resume(requested, trainer.loop.resumed)
        result = trainer.fit()
        result.info['run'] = run_spec(name, params, source, label)
        found = None
        if subsets:
            found = compute_subsets(trainer.model, trainer.data,
                                    k=subsets_k,
                                    mask_valid=config.mask_valid_in_test)
        if folder is not None:
            folder.write_results(results_record(result, found))
    except BaseException:
        if folder is not None:  # an overwritten run comes back
            folder.close(failed=True)
        raise
    if folder is not None:
        folder.close()
    return RunResult(result, found, trainer.model, trainer.data, graphs,
                     folder.folder if folder is not None else None)


@dataclass
class GridResult:
    r"""The outcome of :func:`grid`: every run's parameters and results,
    and the one selected on validation."""
    runs: List[Dict[str, Any]]
    best_params: Dict[str, Any]
    best: Dict[str, Any]
    select: str

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def grid(name: str, data: HeteroData, params: Dict[str, Any],
         grid: Dict[str, Sequence[Any]],
         config: Optional[TrainConfig] = None, *,
         source: Optional[DataSource] = None,
         output_dir: Optional[PathLike] = None, resume: bool = False,
         overwrite: bool = False) -> GridResult:
    r"""One run (:func:`train`) per point of the Cartesian :obj:`grid`
    (name → values) on top of the fixed :obj:`params`, and the point with
    the best **validation** :obj:`config.valid_metric` (never the test
    metrics, unlike MMRec). Graph keywords may be searched too: the graphs
    are rebuilt only when they change. Every point is seeded as
    :func:`train` does, so the point selected reproduces with ``pyg-brmrs
    train`` and the same parameters. With :obj:`output_dir`, point
    :math:`n` is the run folder ``run_<n>`` (so that ``pyg-brmrs evaluate
    --run-dir`` and ``train --resume`` work on it) and ``grid.json`` holds
    the summary with the model, fixed parameters and data source;
    :obj:`resume` / :obj:`overwrite` apply to every point; :obj:`config`
    as in :func:`train`."""
    if not grid:
        raise ValueError("'grid' must name at least one parameter")
    for key, values in grid.items():
        if len(values) == 0:
            raise ValueError(f"Grid parameter '{key}' has no values")
    overlap = sorted(set(grid) & set(params))
    if overlap:
        raise ValueError(f"Parameters {overlap} are both fixed and searched")
    recipes.split_params(name, {**params, **{k: v[0]
                                             for k, v in grid.items()}})
    check_params(params)
    check_params(grid, 'grid')
    metric = with_training_params(name, params, config).valid_metric
    if output_dir is not None:
        run_folder.check_output_dir(output_dir, resume=resume,
                                    overwrite=overwrite,
                                    files=(run_folder.GRID, ))
    names, points, graphs = list(grid), [], None
    for n, values in enumerate(itertools.product(*(grid[k]
                                                   for k in names))):
        point = dict(zip(names, values))
        res = train(name, data, {**params, **point}, copy.deepcopy(config),
                    output_dir=None if output_dir is None else
                    Path(output_dir) / f'run_{n}', resume=resume,
                    overwrite=overwrite, source=source, built_graphs=graphs)
        graphs = res.graphs
        points.append({'params': point, 'valid': res.result.valid,
                       'test': res.result.test,
                       'best_epoch': res.result.best_epoch,
                       'epochs_run': res.result.epochs_run,
                       'train_time': res.result.train_time})
        logger.info('grid %s -> valid %s %.4f', point, metric,
                    res.result.valid.get(metric, float('nan')))
    best = max(points, key=lambda r: r['valid'].get(metric, -float('inf')))
    result = GridResult(points, best['params'], best, metric)
    if output_dir is not None:
        run_folder.write_file(output_dir, run_folder.GRID, {
            **result.to_dict(), 'model': name, 'fixed_params': params,
            'data': source.to_dict() if source else None,
            'dataset': source.dataset if source else None})
    return result


# ----------------------------------------------------------------------
def load_results(path: PathLike) -> Dict[str, Any]:
    r"""Reads a ``results.json`` (or the one in folder :obj:`path`)."""
    path = Path(path)
    if path.is_dir():
        path = path / 'results.json'
    if not path.is_file():
        raise FileNotFoundError(f"Results file '{path}' does not exist")
    with open(path) as f:
        try:
            out = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"'{path}' is not valid JSON ({e})") from None
    if not isinstance(out, dict) or 'test' not in out:
        raise ValueError(f"'{path}' is not a results file (no 'test' key)")
    return out


@dataclass
class Restored:
    r"""A model rebuilt from a checkpoint by :func:`restore`."""
    model: Recommender
    objective: Objective
    data: HeteroData
    config: TrainConfig
    spec: Dict[str, Any]
    checkpoint: Dict[str, Any] = field(repr=False, default_factory=dict)

    @torch.no_grad()
    def evaluate(self) -> Dict[str, Dict[str, float]]:
        r"""Validation and test metrics with the run's protocol (cutoffs,
        masking) on its device."""
        cfg = self.config
        device = resolve_device(cfg.device)
        self.model.to(device)
        self.data = copy.copy(self.data).to(device)
        out = self.model.embed(self.data)
        return {split: ShardedEvaluator.from_data(
            self.data, split, exclude_valid=cfg.mask_valid_in_test,
            ks=cfg.ks, batch_size=cfg.eval_batch_size,
            max_scores=EVAL_MAX_SCORES)(out.user_emb, out.item_emb)
            for split in ('valid', 'test')}

    def subsets(self, k: int = 20) -> Optional[SynergySubsets]:
        return compute_subsets(self.model, self.data, k=k,
                               mask_valid=self.config.mask_valid_in_test)


def restore(checkpoint: PathLike, spec: Optional[Dict[str, Any]] = None, *,
            device: Optional[str] = None) -> Restored:
    r"""Rebuilds the model saved in :obj:`checkpoint` (``best.pt`` or
    ``last.pt`` of a run folder).

    The recipe, its parameters and the data source come from :obj:`spec`
    (an ``info["run"]`` record) or, by default, from ``results.json`` next
    to the checkpoint. The dataset is loaded, its graphs rebuilt, the
    global seeds set to the run's seed, the model built and the
    checkpoint's weights loaded. :obj:`device` overrides the run's device.

    The checkpoint is read with ``weights_only=True``
    (:func:`~pyg_brmrs.utils.checkpoint.load_checkpoint`): a file holding
    anything but tensors and plain data is refused without being unpickled.

    Raises:
        FileNotFoundError: if the checkpoint (or, without :obj:`spec`, the
            ``results.json`` next to it) does not exist.
        CheckpointError: (a :class:`ValueError`) if the checkpoint is
            empty, truncated, corrupt, unsafe, or does not fit the model
            built from the run record; the message names the file.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"Checkpoint '{checkpoint}' does not exist")
    if spec is None:
        results = checkpoint.parent / 'results.json'
        if not results.is_file():
            raise FileNotFoundError(
                f"No results.json next to '{checkpoint}': give the model, "
                f"its parameters and the data explicitly")
        spec = load_results(results).get('info', {}).get('run')
        if not spec:
            raise ValueError(f"'{results}' has no info['run'] record (it was "
                             f"not written by pyg-brmrs train/grid): give "
                             f"the model, its parameters and the data "
                             f"explicitly")
    for key in ('model', 'params', 'data'):
        if spec.get(key) is None:
            raise ValueError(f"The run record lacks '{key}' (got "
                             f"{sorted(spec)})")
    state = load_checkpoint(checkpoint)
    if 'model' not in state or not isinstance(state.get('config'), dict):
        raise CheckpointError(f"'{checkpoint}' is not a pyg-brmrs checkpoint "
                              f"(no 'model' and 'config' entries)")
    cfg = {k: v for k, v in state['config'].items()
           if k in TrainConfig.__dataclass_fields__}
    cfg['progress'] = False
    try:
        config = TrainConfig(**cfg)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"checkpoint '{checkpoint}' holds an invalid "
                              f"training configuration: {e}") from None
    if device is not None:
        config = dataclasses.replace(config, device=device)
    name, params = spec['model'], dict(spec['params'])
    data = DataSource.from_dict(dict(spec['data'])).load()
    ensure_graphs(name, data, params)
    seed_everything(config.seed)
    model, objective = recipes.build(name, data, **params)
    try:
        model.load_state_dict(state['model'])
    except (RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(
            f"checkpoint '{checkpoint}' does not fit model '{name}' with "
            f"parameters {json.dumps(params, default=str)} on "
            f"{DataSource.from_dict(dict(spec['data'])).dataset} data: "
            f"{state_dict_problem(e)}") from None
    return Restored(model, objective, data, config, dict(spec), state)
