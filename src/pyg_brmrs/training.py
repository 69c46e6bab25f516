r"""Training with MMRec's protocol: Adam on mini-batches of training pairs,
full-ranking validation every epoch, early stopping on validation
Recall@20 with a patience of 20 evaluations, test metrics reported at the
best validation epoch.

.. code-block:: python

    from pyg_brmrs.training import Trainer, TrainConfig

    model = BRMRS.from_data(data)
    objective = BRMRSObjective.from_data(data)
    result = Trainer(model, objective, data, TrainConfig(output_dir='runs/x')).fit()
    result.test          # {'recall@20': ..., 'ndcg@20': ...}
"""
import copy
import functools
import itertools
import logging
import math
import numbers
import os
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch_geometric.data import HeteroData

from pyg_brmrs import runs
from pyg_brmrs.data.schema import RATES, Schema, canonical, num_items
from pyg_brmrs.evaluation import RankingEvaluator
from pyg_brmrs.loader import (
    PairNeighborLoader,
    check_num_neighbors,
    flatten_draws,
    unflatten_draws,
)
from pyg_brmrs.nn.base import Recommender
from pyg_brmrs.objectives import Objective
from pyg_brmrs.utils.atomic import write_json
from pyg_brmrs.utils.deprecation import warn_renamed
from pyg_brmrs.utils.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from pyg_brmrs.utils import distributed as dist_utils
from pyg_brmrs.utils.distributed import is_writer
from pyg_brmrs.version import __version__

logger = logging.getLogger('pyg_brmrs')

#: Version 2: random-number-generator states stored as tensors and tuples,
#: so that checkpoints load with ``weights_only=True``; ``config_hash``
#: ties a checkpoint to the ``run.json`` of its folder.
CHECKPOINT_VERSION = 2

#: The trainer's evaluators hold at most this many scores at once
#: (:obj:`max_scores` of :class:`~pyg_brmrs.evaluation.RankingEvaluator`,
#: 512 MB of float32): no effect up to ``eval_batch_size`` x 32,768 items,
#: a bounded memory for million-item catalogues.
EVAL_MAX_SCORES = 1 << 27

#: :obj:`TrainConfig.batching` values.
BATCHING = ('full', 'neighbor')

#: The fan-out per hop of :obj:`TrainConfig(batching="neighbor")`.
DEFAULT_NUM_NEIGHBORS = (10, 10)


def _check_number(name: str, value: Any, minimum: float,
                  strict: bool = False) -> None:
    r"""Raises a :class:`ValueError` naming ``TrainConfig.<name>`` unless
    :obj:`value` is a finite real number above (:obj:`strict`) or at least
    :obj:`minimum`."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and math.isfinite(value) and (value > minimum if strict else
                                      value >= minimum)
    if not ok:
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ValueError(f"TrainConfig.{name} must be a finite number "
                         f"{bound} (got {value!r})")


@dataclass
class TrainConfig:
    r"""The training hyper-parameters (defaults: MMRec's).

    Args:
        epochs (int): The maximum number of epochs. (default: :obj:`1000`)
        batch_size (int): Training pairs per step. (default: :obj:`2048`)
        lr (float): Adam learning rate. (default: :obj:`1e-3`)
        weight_decay (float): Adam weight decay. (default: :obj:`0.0`)
        patience (int): Evaluations without improvement of
            :obj:`valid_metric` before stopping. (default: :obj:`20`)
        eval_every (int): Evaluate every this many epochs.
            (default: :obj:`1`)
        valid_metric (str): The early-stopping / selection metric.
            (default: :obj:`"recall@20"`)
        ks (Sequence[int]): Cutoffs to report. (default: :obj:`(10, 20)`)
        seed (int): Seed of Python, NumPy, torch and the trainer's generator.
            (default: :obj:`999`)
        device (str): :obj:`"auto"` (CUDA when available), :obj:`"cpu"`,
            :obj:`"cuda"`, ... (default: :obj:`"auto"`)
        eval_batch_size (int): Users ranked at once. (default: :obj:`4096`)
        mask_valid_in_test (bool): Also mask validation items when ranking
            for test (MMRec does not). (default: :obj:`False`)
        output_dir (str, optional): The run folder: ``run.json``,
            ``results.json`` and the checkpoints go there (:obj:`None`:
            nothing is written). A folder that already holds a run is
            refused unless :obj:`resume` or :obj:`overwrite` is set (see
            :mod:`pyg_brmrs.runs`).
        checkpoint (bool): Save ``last.pt`` every epoch and ``best.pt`` at
            every improvement into :obj:`output_dir`. (default: :obj:`True`)
        resume (bool): Continue the run of :obj:`output_dir` from its
            ``last.pt`` (a fresh run when the folder holds none). The stored
            run must be the requested one: model, data and every setting
            except those of :obj:`pyg_brmrs.runs.RESUMABLE` (epochs,
            patience, ...), which are applied and recorded.
            (default: :obj:`False`)
        overwrite (bool): Replace the run held by :obj:`output_dir`.
            (default: :obj:`False`)
        progress (bool): Show tqdm progress bars. (default: :obj:`False`)
        max_time (float, optional): Stop after this many seconds of training
            (the run is then marked as cut short). (default: :obj:`None`)
        num_threads (int, optional): The CPU thread count the run was
            started with, recorded in the run files. The trainer itself
            never changes torch's global thread count; the command line
            sets it from ``--threads``. (default: :obj:`None`)
        distributed (bool, optional): Data-parallel training over the
            processes of :mod:`torch.distributed` (see :class:`Trainer`).
            :obj:`None`: automatic, when launched by ``torchrun`` with
            ``WORLD_SIZE`` > 1 or when a process group is initialised;
            :obj:`False`: never. :obj:`batch_size` is then per process, so
            one step trains on ``world_size * batch_size`` pairs.
            (default: :obj:`None`)
        batching (str): :obj:`"full"`: every step runs the model on the whole
            graph; :obj:`"neighbor"`: every step runs it on the subgraph of
            its pairs sampled by PyG's
            :class:`~torch_geometric.loader.LinkNeighborLoader`
            (:class:`~pyg_brmrs.loader.PairNeighborLoader`: the pairs are
            the seed edges, the objective's negatives and CHNS pools extra
            item seeds), so memory follows the batch, not the graph.
            Evaluation stays full-graph (chunked). Needs pyg-lib or
            torch-sparse (``pip install "pyg-brmrs[sparse]"``); one process
            only. (default: :obj:`"full"`)
        num_neighbors (Sequence[int], optional): With
            :obj:`batching="neighbor"`, the fan-out per hop (every edge
            type; :obj:`-1`: all neighbours). Use as many hops as the model
            propagates (*e.g.* :math:`L`, or :math:`L + 1` to include
            BR-MRS's kNN layer). (default: :obj:`None`, ``[10, 10]``)
    """
    epochs: int = 1000
    batch_size: int = 2048
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 20
    eval_every: int = 1
    valid_metric: str = 'recall@20'
    ks: Sequence[int] = (10, 20)
    seed: int = 999
    device: str = 'auto'
    eval_batch_size: int = 4096
    mask_valid_in_test: bool = False
    output_dir: Optional[str] = None
    checkpoint: bool = True
    resume: bool = False
    overwrite: bool = False
    progress: bool = False
    max_time: Optional[float] = None
    num_threads: Optional[int] = None
    distributed: Optional[bool] = None
    batching: str = 'full'
    num_neighbors: Optional[Sequence[int]] = None

    def __post_init__(self):
        for name in ('epochs', 'batch_size', 'patience', 'eval_every',
                     'eval_batch_size'):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int "
                                 f"(got {value!r})")
        _check_number('lr', self.lr, minimum=0.0, strict=True)
        _check_number('weight_decay', self.weight_decay, minimum=0.0)
        if self.max_time is not None:
            _check_number('max_time', self.max_time, minimum=0.0,
                          strict=True)
        if isinstance(self.seed, bool) or \
                not isinstance(self.seed, numbers.Integral):
            raise ValueError(f"TrainConfig.seed must be an int (got "
                             f"{self.seed!r})")
        if self.distributed is not None and \
                not isinstance(self.distributed, bool):
            raise ValueError(f"TrainConfig.distributed must be True, False "
                             f"or None (got {self.distributed!r})")
        if self.resume and self.overwrite:
            raise ValueError("TrainConfig.resume and TrainConfig.overwrite "
                             "exclude each other")
        if self.batching not in BATCHING:
            raise ValueError(f"TrainConfig.batching must be one of "
                             f"{list(BATCHING)} (got {self.batching!r})")
        if self.num_neighbors is not None and self.batching != 'neighbor':
            raise ValueError("TrainConfig.num_neighbors is the fan-out of "
                             "batching='neighbor' (got batching="
                             f"{self.batching!r})")
        if self.num_neighbors is not None:
            self.num_neighbors = check_num_neighbors(
                list(self.num_neighbors) if isinstance(
                    self.num_neighbors, (list, tuple)) else
                self.num_neighbors, 'TrainConfig.num_neighbors')
        elif self.batching == 'neighbor':
            self.num_neighbors = list(DEFAULT_NUM_NEIGHBORS)
        self.seed = int(self.seed)
        self.lr, self.weight_decay = float(self.lr), float(self.weight_decay)
        self.ks = tuple(int(k) for k in self.ks)
        metric, _, k = self.valid_metric.partition('@')
        if not k.isdigit() or int(k) not in self.ks:
            raise ValueError(f"TrainConfig.valid_metric '{self.valid_metric}' "
                             f"must be '<metric>@K' with K in ks={self.ks}")

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out['ks'] = list(self.ks)
        if self.batching == 'full' and self.num_neighbors is None:
            # as before the option existed: same manifests, same hashes
            del out['batching'], out['num_neighbors']
        else:
            out['num_neighbors'] = list(self.num_neighbors or [])
        return out


@dataclass
class TrainResult:
    r"""What :meth:`Trainer.fit` returns (and writes as ``results.json``)."""
    best_epoch: int
    valid: Dict[str, float]
    test: Dict[str, float]
    history: List[Dict[str, Any]]
    stopped_early: bool
    epochs_run: int
    train_time: float
    eval_time: float
    config: Dict[str, Any]
    info: Dict[str, Any] = field(default_factory=dict)
    #: One entry per resumption: ``{"at_epoch": n, "changed": {...},
    #: "date": ...}``, meaning epochs ``0 .. n - 1`` come from the
    #: checkpoint and the following ones were trained after resuming;
    #: ``changed`` holds the settings changed on resume.
    resumed: List[Dict[str, Any]] = field(default_factory=list)
    #: The number of data-parallel processes that trained the run.
    world_size: int = 1

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def save(self, path) -> None:
        r"""Writes :meth:`to_dict` to :obj:`path` atomically as strict JSON
        (non-finite numbers as ``null``)."""
        write_json(self.to_dict(), path)


def make_adam(params, lr: float = 1e-3, weight_decay: float = 0.0,
              fused: Optional[bool] = None) -> torch.optim.Adam:
    r"""The trainer's optimiser: :class:`torch.optim.Adam` over
    :obj:`params`, with torch's fused kernel (one pass over each parameter
    instead of a chain of element-wise operations with full-size
    temporaries; the same update up to float rounding) when every parameter
    is a floating tensor on a device that has it (:obj:`fused=None`), always
    (:obj:`True`: an unsupported parameter raises torch's error) or never
    (:obj:`False`)."""
    params = list(params)
    if fused is None:
        tensors = [p for group in params for p in (
            group['params'] if isinstance(group, dict) else [group])]
        supported = getattr(torch.utils._foreach_utils,
                            '_get_fused_kernels_supported_devices', None)
        devices = set(supported()) if supported is not None else set()
        fused = bool(tensors) and all(
            torch.is_floating_point(p) and not p.is_sparse and
            p.device.type in devices for p in tensors)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay,
                            fused=fused or None)


def seed_everything(seed: int) -> None:
    r"""Seeds Python's :mod:`random`, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(device: str) -> torch.device:
    if device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    dev = torch.device(device)
    if dev.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f"device='{device}' was asked for but CUDA is not "
                         f"available")
    return dev


def environment_info() -> Dict[str, Any]:
    r"""Versions and machine facts recorded in every results file."""
    import torch_geometric

    info = {
        'pyg_brmrs': __version__,
        'torch': torch.__version__,
        'torch_geometric': torch_geometric.__version__,
        'python': sys.version.split()[0],
        'platform': platform.platform(),
        'cpu_count': os.cpu_count(),
        'torch_threads': torch.get_num_threads(),
        'cuda': torch.cuda.get_device_name(0)
        if torch.cuda.is_available() else None,
        'date': time.strftime('%Y-%m-%d %H:%M:%S %Z'),
    }
    return info


class Trainer:
    r"""Fits a :class:`~pyg_brmrs.nn.Recommender` with an
    :class:`~pyg_brmrs.objectives.Objective` on a dataset in the
    :mod:`pyg_brmrs.data.schema` (training edges, ``val_edge_index``,
    ``test_edge_index``).

    Every epoch: :meth:`~pyg_brmrs.nn.Recommender.on_epoch_start`, a
    shuffled pass over the training pairs in batches of
    :obj:`config.batch_size` (one Adam step per batch, with torch's fused
    kernel where the parameters allow it: :func:`make_adam`), then (every
    :obj:`eval_every` epochs) full-ranking validation; the test split is
    ranked whenever validation improves, so the reported test metrics are
    those of the best validation epoch. Training stops after
    :obj:`patience` evaluations without improvement or :obj:`epochs`
    epochs. All randomness (shuffling, negative sampling, stochastic graph
    edits) comes from one :class:`torch.Generator` seeded with
    :obj:`config.seed` and saved in the checkpoints, so an interrupted run
    resumed from ``last.pt`` reproduces the uninterrupted one.

    With :obj:`config.output_dir` the trainer owns a run folder (see
    :mod:`pyg_brmrs.runs`): it is checked before training starts (a file,
    an unwritable folder or a folder holding another run is refused unless
    :obj:`config.overwrite`), ``run.json`` records the run, ``last.pt`` and
    ``best.pt`` are written atomically every epoch / improvement and
    ``results.json`` at the end. :obj:`config.resume` continues the run
    only if the stored ``run.json`` describes the requested run.

    **Data-parallel training** (``torchrun --nproc_per_node=K``, or any
    initialised :mod:`torch.distributed` group, see
    :obj:`TrainConfig.distributed`). Each of the :math:`W` processes holds
    the whole dataset and graphs (replicated) and the model wrapped in
    :class:`~torch.nn.parallel.DistributedDataParallel` (on
    ``cuda:LOCAL_RANK`` with ``nccl``, or on the CPU with ``gloo``). The
    epoch's permutation of the :math:`E` training pairs comes from the
    shared seeded generator, identical on every rank; step :math:`t` takes
    the pairs :math:`[tWB, (t+1)WB)` of it and rank :math:`r` the
    :math:`r`-th of :math:`W` near-equal contiguous parts, so every pair is
    trained once per epoch across the ranks, every rank takes the same
    :math:`\lceil E / (WB) \rceil` steps, and with :math:`W = 1` this is
    the single-process loop. Rank :math:`r`'s loss is scaled by
    :math:`W n_r / n_t` (:math:`n_r` its pairs, :math:`n_t` the step's), so
    DDP's gradient average is the gradient of the mean loss over the
    step's pairs (a rank left without pairs on the last step contributes a
    zero-weighted pair). Negatives come from a per-rank generator seeded by
    (seed, epoch, rank); stochastic graph edits
    (:meth:`~pyg_brmrs.nn.Recommender.on_epoch_start`) use the shared one,
    so the graphs stay identical. Evaluation is sharded by users (user
    :math:`u` on rank :math:`u \bmod W`) and the per-user metrics gathered
    and averaged in user order: the same numbers as one process. Only rank
    0 writes (run folder, checkpoints, ``results.json``, which records
    ``"world_size"``); every rank resumes from the same ``last.pt``.

    Args:
        model (Recommender): The model.
        objective (Objective): The training objective (its sampler is bound
            to the trainer's generator).
        data (HeteroData): The dataset.
        config (TrainConfig, optional): Hyper-parameters.
        run (dict, optional): What is trained, as JSON-able values, for the
            ``run`` entry of ``run.json`` (*e.g.* ``{"model": "brmrs",
            "params": {...}}``); by default the reprs of :obj:`model` and
            :obj:`objective`.
        record (callable, optional): ``record(result) -> dict``, the content
            of ``results.json``, called at the end of :meth:`fit` (best
            weights loaded) on every process; it may add entries to
            :obj:`result.info`. By default :meth:`TrainResult.to_dict`.
        schema (Schema, optional): The node, edge and feature names of
            :obj:`data` (:class:`~pyg_brmrs.data.Schema`); the trainer works
            on a canonical-named view of it (tensors shared).
            (default: :obj:`None`, the canonical names)

    Raises:
        FloatingPointError: from :meth:`fit` when a loss is NaN or infinite
            (the message names the epoch, the batch and the terms).
    """
    def __init__(self, model: Recommender, objective: Objective,
                 data: HeteroData, config: Optional[TrainConfig] = None,
                 run: Optional[Dict[str, Any]] = None,
                 record: Optional[Callable[[TrainResult],
                                           Dict[str, Any]]] = None,
                 schema: Optional[Schema] = None):
        self.config = config if config is not None else TrainConfig()
        self.record = record
        cfg = self.config
        data = canonical(data, schema)
        store = data[RATES]
        for split in ('val_edge_index', 'test_edge_index'):
            if split not in store or store[split].numel() == 0:
                raise ValueError(f"The data has no '{split}' on "
                                 f"{RATES}: the trainer needs validation "
                                 f"and test interactions")
        self.dist = dist_utils.setup(cfg.distributed, cfg.device)
        self.device = resolve_device(cfg.device)
        if self.dist.enabled and self.device.type == 'cuda':
            self.device = torch.device('cuda', self.dist.local_rank)
        # A shallow copy: moving it to the device replaces the tensors of
        # the copy only, never the caller's `data`.
        self.data = copy.copy(data).to(self.device)
        self.model = model.to(self.device)
        self.train_model: torch.nn.Module = self.model
        if self.dist.enabled:
            self.train_model = _DDP(
                self.model, device_ids=[self.device.index]
                if self.device.type == 'cuda' else None)
        # Negatives: the shared generator with one process; a per-rank one
        # (re-seeded every epoch) with several.
        self.sample_generator: Optional[torch.Generator] = None
        self.objective = objective.to(self.device)
        self.run = dict(run) if run is not None else {
            'model': repr(self.model), 'objective': repr(self.objective)}
        self.generator = torch.Generator(device=self.device)
        self.objective.generator = self.generator
        if self.dist.enabled:
            self.sample_generator = torch.Generator(device=self.device)
            self.objective.generator = self.sample_generator
        self.optimizer = make_adam(self.model.parameters(), lr=cfg.lr,
                                   weight_decay=cfg.weight_decay)
        self.neighbor_loader: Optional[PairNeighborLoader] = None
        if cfg.batching == 'neighbor':
            if self.dist.enabled:
                raise ValueError("TrainConfig(batching='neighbor') trains in "
                                 "one process; it is not supported with "
                                 "distributed training yet")
            # sampled on the CPU from the caller's tensors (no copy there)
            # only the kNN graphs the model reads are sampled:
            self.neighbor_loader = PairNeighborLoader(
                data, cfg.num_neighbors,
                edge_types=getattr(self.model, 'graph_edge_types', None))

        store = self.data[RATES]
        self.valid_evaluator = self._evaluator(store.val_edge_index, None)
        self.test_evaluator = self._evaluator(
            store.test_edge_index, store.val_edge_index
            if cfg.mask_valid_in_test else None)
        self.output_dir = Path(cfg.output_dir) if cfg.output_dir else None
        self.manifest: Optional[Dict[str, Any]] = None
        self._reset_state()

    def _evaluator(self, eval_edge_index, exclude
                   ) -> Optional[RankingEvaluator]:
        r"""The evaluator of this rank's users (:math:`u \bmod W = r`;
        all users with one process), :obj:`None` for a rank without any."""
        cfg, store = self.config, self.data[RATES]
        if self.dist.enabled:
            mine = eval_edge_index[0] % self.dist.world_size == self.dist.rank
            eval_edge_index = eval_edge_index[:, mine]
            if eval_edge_index.size(1) == 0:
                return None
        return RankingEvaluator(
            store.edge_index, eval_edge_index, num_items(self.data),
            ks=cfg.ks, batch_size=cfg.eval_batch_size,
            exclude_edge_index=exclude, max_scores=EVAL_MAX_SCORES)

    def _reset_state(self):
        self.epoch = 0
        self.history: List[Dict[str, Any]] = []
        self.best_value = -float('inf')
        self.best_epoch = 0
        self.best_valid: Dict[str, float] = {}
        self.best_test: Dict[str, float] = {}
        self.bad_evals = 0
        self.train_time = 0.0
        self.eval_time = 0.0
        self.best_state: Optional[Dict[str, Any]] = None
        self.resumed: List[Dict[str, Any]] = []

    # ------------------------------------------------------------------
    def train_epoch(self) -> Dict[str, float]:
        r"""One pass over the shuffled training pairs; returns the mean of
        every loss term."""
        cfg = self.config
        self.model.train()
        self.model.on_epoch_start(self.epoch, self.generator)
        edge_index = self.data[RATES].edge_index
        perm = torch.randperm(edge_index.size(1), generator=self.generator,
                              device=self.device)
        world, rank = self.dist.world_size, self.dist.rank
        batches = perm.split(cfg.batch_size * world)
        if self.sample_generator is not None:
            self.sample_generator.manual_seed(
                rank_seed(cfg.seed, self.epoch, rank))
        if self.neighbor_loader is not None:
            # PyG's neighbour samplers draw from torch's global generator
            torch.manual_seed(rank_seed(cfg.seed, self.epoch, (1 << 20) + rank))
        sums: Dict[str, float] = {}
        iterator = batches
        if cfg.progress and is_writer():
            from tqdm.auto import tqdm
            iterator = tqdm(batches, desc=f'epoch {self.epoch}', leave=False)
        for n, step in enumerate(iterator):
            idx, scale = step, 1.0
            if world > 1:  # this rank's part of the step, weighted
                idx = torch.tensor_split(step, world)[rank]
                scale = world * idx.numel() / step.numel()
                if idx.numel() == 0:  # a zero-weighted stand-in pair
                    idx = step[:1]
            users, pos = edge_index[0, idx], edge_index[1, idx]
            if self.neighbor_loader is not None:
                terms = self._neighbor_step(idx, users)
            else:
                terms = self.objective(self.train_model, self.data, users,
                                       pos)
            loss = terms['loss'] if scale == 1.0 else terms['loss'] * scale
            if not torch.isfinite(loss):
                shown = ', '.join(f'{k}={float(v.detach()):.4g}'
                                  for k, v in terms.items())
                raise FloatingPointError(
                    f"training diverged at epoch {self.epoch}, batch "
                    f"{n + 1} of {len(batches)}: the loss is {float(loss)} "
                    f"({shown}); try a smaller learning rate (lr="
                    f"{cfg.lr:g})")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            for k, v in terms.items():  # the step's mean over all ranks
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * scale / world
        if world > 1:
            names = sorted(sums)
            sums = dict(zip(names, dist_utils.all_reduce_sum(
                [sums[k] for k in names], self.device)))
        return {k: v / max(len(batches), 1) for k, v in sums.items()}

    @property
    def val_evaluator(self) -> RankingEvaluator:
        r"""Deprecated name of :attr:`valid_evaluator`."""
        warn_renamed('val_evaluator', 'valid_evaluator', "'Trainer'",
                     what='attribute')
        return self.valid_evaluator

    def _neighbor_step(self, idx, users) -> Dict[str, Any]:
        r"""One step on the sampled subgraph of the pairs :obj:`idx`: the
        objective's random items are drawn first (global ids), put into the
        batch's item seeds, and the step runs on local ids."""
        draws = self.objective.draw(users)
        flat, layout = flatten_draws(draws)
        batch = self.neighbor_loader(idx, flat).to(self.device)
        negatives = unflatten_draws(batch.items, layout)
        return self.objective(self.train_model, batch.data, batch.users,
                              batch.pos_items, negatives=negatives)

    @torch.no_grad()
    def evaluate(self, split: str = 'valid') -> Dict[str, float]:
        r"""Full-ranking metrics of the current model on :obj:`split`
        (:obj:`"valid"` or :obj:`"test"`)."""
        if split not in ('valid', 'test'):
            raise ValueError(f"split must be 'valid' or 'test' (got "
                             f"'{split}')")
        out = self.model.embed(self.data)
        evaluator = self.valid_evaluator if split == 'valid' else \
            self.test_evaluator
        if not self.dist.enabled:
            return evaluator(out.user_emb, out.item_emb)
        # Every rank ranks its users; the per-user values are gathered and
        # averaged in user order, as one process averages them.
        mine = {} if evaluator is None else {
            k: v.cpu() for k, v in evaluator.per_user(
                out.user_emb, out.item_emb).items()}
        parts = [p for p in dist_utils.all_gather_object(mine) if p]
        user = torch.cat([p['user'] for p in parts])
        order = torch.argsort(user)
        names = [k for k in parts[0] if k != 'user']
        means = torch.stack([torch.cat([p[k] for p in parts])[order]
                             for k in names]).mean(1)
        return dict(zip(names, means.tolist()))

    def _open_run(self) -> None:
        r"""Checks and prepares the run folder (see :mod:`pyg_brmrs.runs`)
        and, when resuming, loads ``last.pt``. With several processes, rank
        0 decides (and writes) alone; the others then take its manifest
        and load the same ``last.pt``, or raise its error."""
        if not self.dist.enabled:
            return self._open_run_here()
        outcome: Dict[str, Any] = {}
        if self.dist.rank == 0:
            try:
                self._open_run_here()
                outcome = {'manifest': self.manifest,
                           'resumed': copy.deepcopy(self.resumed)}
            except Exception as e:  # passed on so that no rank waits
                outcome = {'error': e}
                dist_utils.broadcast_object(outcome)
                raise
        outcome = dist_utils.broadcast_object(outcome)
        if self.dist.rank == 0:
            return
        if 'error' in outcome:
            raise outcome['error']
        self.manifest = outcome['manifest']
        if outcome['resumed']:
            last = self.output_dir / runs.LAST
            self._load_state(load_checkpoint(last), last)
            self.resumed = outcome['resumed']

    def _open_run_here(self) -> None:
        cfg = self.config
        if self.output_dir is None:
            if cfg.resume:
                raise ValueError("TrainConfig.resume needs an output_dir")
            return
        requested = runs.make_manifest(
            self.run, runs.data_fingerprint(self.data), cfg.to_dict())
        stored = runs.open_run(self.output_dir, requested, resume=cfg.resume,
                               overwrite=cfg.overwrite)
        self.manifest = requested if stored is None else stored
        last = self.output_dir / runs.LAST
        if stored is None:
            return
        if not last.exists():  # killed before an epoch ended: start over
            self.manifest = requested
            runs.write_file(self.output_dir, runs.MANIFEST, requested)
            return
        state = load_checkpoint(last)
        if state.get('config_hash') != stored['config_hash']:
            raise CheckpointError(
                f"checkpoint '{last}' belongs to another run than "
                f"'{self.output_dir / runs.MANIFEST}' (config hash "
                f"{state.get('config_hash')!r}, expected "
                f"{stored['config_hash']!r})")
        self._load_state(state, last)
        entry = {'at_epoch': self.epoch,
                 'changed': runs.setting_changes(stored, requested),
                 'date': time.strftime('%Y-%m-%d %H:%M:%S %Z')}
        self.resumed.append(entry)
        self.manifest = runs.record_resume(self.output_dir, stored,
                                           requested, entry)
        logger.info('Resumed from %s after epoch %d%s', last, self.epoch - 1,
                    f" (changed: {entry['changed']})" if entry['changed']
                    else '')

    def fit(self) -> TrainResult:
        r"""Runs the training loop (resuming when asked) and returns the
        :class:`TrainResult`."""
        cfg = self.config
        seed_everything(cfg.seed)
        self.generator.manual_seed(cfg.seed)
        self._reset_state()
        self._open_run()
        stopped_early = False
        start_wall = time.perf_counter() - self.train_time - self.eval_time
        while self.epoch < cfg.epochs:
            if self.bad_evals >= cfg.patience:
                stopped_early = True
                break
            if cfg.max_time is not None and (time.perf_counter() -
                                             start_wall) > cfg.max_time:
                logger.warning('Stopping: max_time=%.0fs reached',
                               cfg.max_time)
                break
            t0 = time.perf_counter()
            losses = self.train_epoch()
            t1 = time.perf_counter()
            record: Dict[str, Any] = {
                'epoch': self.epoch,
                **losses, 'train_time': t1 - t0
            }
            if (self.epoch + 1) % cfg.eval_every == 0 or \
                    self.epoch + 1 == cfg.epochs:
                valid = self.evaluate('valid')
                value = valid[cfg.valid_metric]
                record['valid'] = valid
                if value > self.best_value:
                    self.best_value = value
                    self.best_epoch = self.epoch
                    self.best_valid = valid
                    self.best_test = self.evaluate('test')
                    record['test'] = self.best_test
                    self.bad_evals = 0
                    self.best_state = {
                        k: v.detach().to('cpu', copy=True)
                        for k, v in self.model.state_dict().items()
                    }
                    self._save(runs.BEST, best=True)
                else:
                    self.bad_evals += 1
                record['eval_time'] = time.perf_counter() - t1
                self.eval_time += record['eval_time']
            self.train_time += t1 - t0
            self.history.append(record)
            logger.info(self._format(record))
            self.epoch += 1
            self._save(runs.LAST)
        if self.bad_evals >= cfg.patience:
            stopped_early = True
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        result = TrainResult(
            best_epoch=self.best_epoch,
            valid=self.best_valid,
            test=self.best_test,
            history=self.history,
            stopped_early=stopped_early,
            epochs_run=self.epoch,
            train_time=self.train_time,
            eval_time=self.eval_time,
            config=cfg.to_dict(),
            info={
                **environment_info(),
                'device': str(self.device),
                'model': repr(self.model),
                'objective': repr(self.objective),
                'num_parameters': sum(p.numel()
                                      for p in self.model.parameters()),
                'epoch_time_mean': self.train_time / max(self.epoch, 1),
                'world_size': self.dist.world_size,
                'backend': self.dist.backend,
            },
            resumed=copy.deepcopy(self.resumed),
            world_size=self.dist.world_size,
        )
        content = (self.record(result) if self.record is not None
                   else result.to_dict())
        if self.output_dir is not None:
            runs.write_file(self.output_dir, runs.RESULTS, content)
        return result

    @staticmethod
    def _format(record: Dict[str, Any]) -> str:
        parts = [f"epoch {record['epoch']:4d}"]
        parts += [
            f'{k} {v:.4f}' for k, v in record.items()
            if k not in ('epoch', 'valid', 'test') and isinstance(v, float)
        ]
        if 'valid' in record:
            parts.append('valid ' + ' '.join(
                f'{k} {v:.4f}' for k, v in record['valid'].items()
                if k.startswith(('recall', 'ndcg'))))
        return ' | '.join(parts)

    # ------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        r"""Everything needed to continue training, as tensors and plain
        Python values only (loadable with ``weights_only=True``)."""
        name, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            'version': CHECKPOINT_VERSION,
            'config_hash': self.manifest['config_hash']
            if self.manifest else None,
            'model': self.model.state_dict(),
            'optimizer': self.optimizer.state_dict(),
            'epoch': self.epoch,
            'history': self.history,
            'best_value': self.best_value,
            'best_epoch': self.best_epoch,
            'best_valid': self.best_valid,
            'best_test': self.best_test,
            'bad_evals': self.bad_evals,
            'train_time': self.train_time,
            'eval_time': self.eval_time,
            'best_state': self.best_state,
            'resumed': self.resumed,
            'generator': self.generator.get_state(),
            'torch_rng': torch.get_rng_state(),
            'numpy_rng': (str(name),
                          torch.from_numpy(keys.astype(np.int64)),
                          int(pos), int(has_gauss), float(cached)),
            'python_rng': random.getstate(),
            'config': self.config.to_dict(),
        }
        if torch.cuda.is_available():
            state['cuda_rng'] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        r"""Restores a :meth:`state_dict`.

        Raises:
            CheckpointError: if :obj:`state` is of another version or does
                not fit this trainer's model or optimizer.
        """
        self._load_state(state, None)

    def _load_state(self, state: Dict[str, Any], path: Optional[Path]):
        where = f"checkpoint '{path}'" if path is not None else 'the state'
        if state.get('version') != CHECKPOINT_VERSION:
            raise CheckpointError(
                f"{where} has version {state.get('version')!r}; resuming "
                f"needs version {CHECKPOINT_VERSION} (written by this "
                f"pyg-brmrs)")
        try:
            self.model.load_state_dict(state['model'])
            fused = [g.get('fused') for g in self.optimizer.param_groups]
            self.optimizer.load_state_dict(state['optimizer'])
            # the kernel is this trainer's choice, not the checkpoint's
            # (same update up to float rounding)
            for group, flag in zip(self.optimizer.param_groups, fused):
                group['fused'] = flag
            values = {key: state[key] for key in (
                'epoch', 'history', 'best_value', 'best_epoch', 'best_valid',
                'best_test', 'bad_evals', 'train_time', 'eval_time',
                'best_state')}
            self.generator.set_state(state['generator'])
            torch.set_rng_state(state['torch_rng'])
            name, keys, pos, has_gauss, cached = state['numpy_rng']
            np.random.set_state((name, keys.cpu().numpy().astype(np.uint32),
                                 pos, has_gauss, cached))
            random.setstate(state['python_rng'])
            if 'cuda_rng' in state and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state['cuda_rng'])
        except (RuntimeError, ValueError, KeyError, TypeError,
                AttributeError) as e:
            raise CheckpointError(f"{where} does not fit this model and "
                                  f"optimizer: {state_dict_problem(e)}"
                                  ) from None
        for key, value in values.items():
            setattr(self, key, value)
        self.resumed = list(state.get('resumed') or [])

    def load_checkpoint(self, path) -> None:
        r"""Restores the ``last.pt`` at :obj:`path` (read on the CPU with
        ``weights_only=True``, see
        :func:`~pyg_brmrs.utils.checkpoint.load_checkpoint`; the model and
        optimizer states are copied to the trainer's device)."""
        path = Path(path)
        self._load_state(load_checkpoint(path), path)

    def _save(self, name: str, best: bool = False) -> None:
        if self.output_dir is None or not self.config.checkpoint or \
                not is_writer():
            return
        if best:
            state = {'version': CHECKPOINT_VERSION,
                     'config_hash': self.manifest['config_hash']
                     if self.manifest else None,
                     'model': self.model.state_dict(),
                     'epoch': self.epoch, 'valid': self.best_valid,
                     'test': self.best_test,
                     'config': self.config.to_dict()}
        else:
            state = self.state_dict()
        save_checkpoint(state, self.output_dir / name)


class _DDP(torch.nn.parallel.DistributedDataParallel):
    r"""DistributedDataParallel that also exposes the wrapped
    recommender's methods (``regularization``, ``auxiliary_loss``, ...) to
    the objectives."""
    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def rank_seed(seed: int, epoch: int, rank: int) -> int:
    r"""The seed of rank :obj:`rank`'s negative sampling in epoch
    :obj:`epoch` (distinct streams per rank and epoch, a pure function of
    the three, so a resumed run draws what the uninterrupted one drew)."""
    state = np.random.SeedSequence([seed % 2**63, epoch, rank]).generate_state(
        2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def state_dict_problem(e: BaseException) -> str:
    r"""The first problem of a ``load_state_dict`` error on one line, with
    the number of the others (PyTorch lists every missing key and every
    size mismatch)."""
    text = str(e) if not isinstance(e, KeyError) else f'missing entry {e}'
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    problems = lines[1:] if lines[0].startswith('Error(s) in loading') \
        else lines
    first = problems[0] if problems else lines[0]
    if len(first) > 300:
        first = first[:300] + '...'
    more = len(problems) - 1
    return first + (f' (and {more} more problem(s))' if more > 0 else '')


# ----------------------------------------------------------------------
@dataclass
class GridResult:
    r"""The outcome of :func:`grid_search`: every run's parameters and
    results, and the one selected on validation."""
    runs: List[Dict[str, Any]]
    best_params: Dict[str, Any]
    best: Dict[str, Any]
    select: str

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def grid_search(
    build: Callable[[Dict[str, Any]], Tuple[Recommender, Objective]],
    grid: Dict[str, Sequence[Any]],
    data: HeteroData,
    config: Optional[TrainConfig] = None,
    output_dir: Optional[str] = None,
    describe: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
    record: Optional[Callable[[Dict[str, Any], TrainResult],
                              Dict[str, Any]]] = None,
    summary: Optional[Dict[str, Any]] = None,
) -> GridResult:
    r"""Trains one model per point of the Cartesian :obj:`grid` and selects
    the point with the best **validation** :obj:`config.valid_metric`
    (never the test metrics, unlike MMRec).

    Args:
        build (callable): ``params -> (model, objective)``.
        grid (dict): parameter name → values.
        data (HeteroData): The dataset.
        config (TrainConfig, optional): Shared training configuration.
        output_dir (str, optional): Each run writes to ``output_dir/run_<n>``
            and the summary to ``output_dir/grid.json``. With
            :obj:`config.resume` every run continues its folder, with
            :obj:`config.overwrite` it replaces it.
        describe (callable, optional): ``params -> run`` description
            stored in each run's ``run.json`` (the :obj:`run` argument of
            :class:`Trainer`).
        record (callable, optional): ``(params, result) -> dict``, the
            content of each run's ``results.json`` (the :obj:`record`
            argument of :class:`Trainer`).
        summary (dict, optional): Entries added to ``grid.json``.
    """
    config = config if config is not None else TrainConfig()
    if not grid:
        raise ValueError("'grid' must name at least one parameter")
    names = list(grid)
    points = []
    for n, values in enumerate(itertools.product(*(grid[k] for k in names))):
        params = dict(zip(names, values))
        cfg = copy.deepcopy(config)
        if output_dir is not None:
            cfg.output_dir = str(Path(output_dir) / f'run_{n}')
        model, objective = build(params)
        res = Trainer(model, objective, data, cfg,
                      run=describe(params) if describe else None,
                      record=functools.partial(record, params)
                      if record else None).fit()
        points.append({
            'params': params,
            'valid': res.valid,
            'test': res.test,
            'best_epoch': res.best_epoch,
            'epochs_run': res.epochs_run,
            'train_time': res.train_time
        })
        logger.info('grid %s -> valid %s %.4f', params, config.valid_metric,
                    res.valid.get(config.valid_metric, float('nan')))
    best = max(points, key=lambda r: r['valid'].get(config.valid_metric,
                                                  -float('inf')))
    result = GridResult(points, best['params'], best, config.valid_metric)
    if output_dir is not None:
        runs.write_file(output_dir, runs.GRID,
                        {**result.to_dict(), **(summary or {})})
    return result
