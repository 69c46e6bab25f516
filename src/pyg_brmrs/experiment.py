r"""One experiment end to end: load a dataset, add the graphs a recipe needs,
seed, build, train with the MMRec protocol, attach what is needed to
reproduce the run, and (optionally) the synergy subsets of the best model.
Shared by the ``pyg-brmrs`` command and the example scripts.

.. code-block:: python

    from pyg_brmrs.experiment import DataSource, run
    from pyg_brmrs.training import TrainConfig

    source = DataSource('mmrec', path='data/baby', name='baby')
    res = run('brmrs', source.load(), {'fusion': 'mean'},
              TrainConfig(output_dir='runs/baby-brmrs'), source=source,
              subsets=True)
    res.result.test['recall@20'], res.subsets.synergy

Every run writes ``results.json`` (with :obj:`output_dir`) holding the
:class:`~pyg_brmrs.training.TrainResult` fields, the top-level key
``"subsets"`` (:obj:`None` unless asked for and the model has unimodal
branches) and ``info["run"] = {"model", "params", "data", "dataset",
"label"}``, from which :func:`restore` rebuilds the model of a checkpoint
without any other input. The run folder and its manifest ``run.json`` are
managed as described in :mod:`pyg_brmrs.runs`: the recipe name and its
parameters identify the run when it is resumed.
"""
import copy
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Dict, Optional, Sequence, Tuple, Union

from torch_geometric.data import HeteroData

from pyg_brmrs import recipes, runs
from pyg_brmrs.analysis import SynergySubsets, synergy_subsets
from pyg_brmrs.data import get_reader
from pyg_brmrs.data.schema import ITEM_SIM, RATES, USER_SIM
from pyg_brmrs.nn.base import Recommender
from pyg_brmrs.objectives import Objective
from pyg_brmrs.training import (
    GridResult,
    Trainer,
    TrainConfig,
    TrainResult,
    grid_search,
    seed_everything,
    state_dict_problem,
)
from pyg_brmrs.utils.checkpoint import CheckpointError, load_checkpoint

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
    r"""What :func:`run` returns.

    Attributes:
        result (TrainResult): The trainer's result (``info["run"]`` set).
        subsets (SynergySubsets, optional): Test subsets of the best model.
        model (Recommender): The trained model (best validation state).
        data (HeteroData): The dataset (on the training device).
        graphs (dict, optional): The graph keywords built on :obj:`data`
            (pass as :obj:`built_graphs` to the next :func:`run` on it).
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


def run(name: str, data: HeteroData,
        params: Optional[Dict[str, Any]] = None,
        config: Optional[TrainConfig] = None, *,
        source: Optional[DataSource] = None, label: Optional[str] = None,
        subsets: bool = False, subsets_k: int = 20,
        built_graphs: Optional[Dict[str, Any]] = None) -> RunResult:
    r"""Trains recipe :obj:`name` on :obj:`data`: adds the graphs
    (:func:`ensure_graphs`), seeds Python, NumPy and torch with
    :obj:`config.seed` *before* building the model (so that the run is
    reproducible from its parameters alone), builds it with
    :func:`pyg_brmrs.recipes.build`, fits it with
    :class:`~pyg_brmrs.training.Trainer`, records :func:`run_spec` in
    ``info["run"]`` and, with :obj:`subsets=True`, the test synergy subsets
    at cutoff :obj:`subsets_k` of the best model. With
    :obj:`config.output_dir`, ``results.json`` is rewritten with all of it.
    """
    params = dict(params or {})
    config = config if config is not None else TrainConfig()
    recipes.split_params(name, params)  # validates the names early
    check_params(params)
    if config.output_dir:  # before the graphs are built
        runs.check_output_dir(config.output_dir, resume=config.resume,
                              overwrite=config.overwrite)
    graphs = ensure_graphs(name, data, params, built_graphs)
    seed_everything(config.seed)
    model, objective = recipes.build(name, data, **params)
    found: Dict[str, Optional[SynergySubsets]] = {'subsets': None}

    def record(result: TrainResult) -> Dict[str, Any]:
        # The trainer writes what this returns as results.json, once.
        result.info['run'] = run_spec(name, params, source, label)
        if subsets:
            found['subsets'] = compute_subsets(
                trainer.model, trainer.data, k=subsets_k,
                mask_valid=config.mask_valid_in_test)
        return results_record(result, found['subsets'])

    trainer = Trainer(model, objective, data, config,
                      run={'model': name, 'params': params}, record=record)
    result = trainer.fit()
    return RunResult(result, found['subsets'], trainer.model, trainer.data,
                     graphs, Path(config.output_dir)
                     if config.output_dir else None)


def grid(name: str, data: HeteroData, params: Dict[str, Any],
         grid: Dict[str, Sequence[Any]],
         config: Optional[TrainConfig] = None, *,
         source: Optional[DataSource] = None,
         output_dir: Optional[PathLike] = None) -> GridResult:
    r""":func:`~pyg_brmrs.training.grid_search` over :obj:`grid` (name →
    values) on top of the fixed :obj:`params`, selecting on **validation**
    only. Graph keywords may be searched too: the graphs are rebuilt only
    when they change. Every point is seeded as :func:`run` does, so the
    point selected reproduces with ``pyg-brmrs train`` and the same
    parameters. With :obj:`output_dir`, each ``run_<n>/results.json`` gets
    its ``info["run"]`` (so that ``pyg-brmrs evaluate --run-dir`` works on
    it) and ``grid.json`` the model, fixed parameters and data source."""
    config = config if config is not None else TrainConfig()
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
    if output_dir is not None:
        runs.check_output_dir(output_dir, resume=config.resume,
                              overwrite=config.overwrite, files=(runs.GRID,))
    state: Dict[str, Any] = {'graphs': None}

    def build(point: Dict[str, Any]) -> Tuple[Recommender, Objective]:
        merged = {**params, **point}
        state['graphs'] = ensure_graphs(name, data, merged, state['graphs'])
        seed_everything(config.seed)
        return recipes.build(name, data, **merged)

    def record(point: Dict[str, Any],
               result: TrainResult) -> Dict[str, Any]:
        result.info['run'] = run_spec(name, {**params, **point}, source)
        return results_record(result)

    return grid_search(
        build, grid, data, config,
        str(output_dir) if output_dir is not None else None,
        describe=lambda point: {'model': name, 'params': {**params, **point}},
        record=record,
        summary=dict(model=name, fixed_params=params,
                     data=source.to_dict() if source else None,
                     dataset=source.dataset if source else None))


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

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        r"""Validation and test metrics with the run's protocol (cutoffs,
        masking) on its device."""
        trainer = Trainer(self.model, self.objective, self.data, self.config)
        return {'valid': trainer.evaluate('valid'),
                'test': trainer.evaluate('test')}

    def subsets(self, k: int = 20) -> Optional[SynergySubsets]:
        return compute_subsets(self.model, self.data, k=k,
                               mask_valid=self.config.mask_valid_in_test)


def restore(checkpoint: PathLike, spec: Optional[Dict[str, Any]] = None, *,
            device: Optional[str] = None) -> Restored:
    r"""Rebuilds the model saved in :obj:`checkpoint` (``best.pt`` or
    ``last.pt`` of :class:`~pyg_brmrs.training.Trainer`).

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
    cfg = dict(state['config'])
    cfg.update(output_dir=None, resume=False, overwrite=False,
               checkpoint=False, progress=False)
    if device is not None:
        cfg['device'] = device
    config = TrainConfig(**cfg)
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
