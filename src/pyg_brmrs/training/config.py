r"""What a training run is asked to do (:class:`TrainConfig`) and what it
returns (:class:`TrainResult`)."""
import math
import numbers
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from pyg_brmrs.loader import check_num_neighbors
from pyg_brmrs.utils.atomic import write_json
from pyg_brmrs.version import __version__

#: :obj:`TrainConfig.batching` values.
BATCHING = ('full', 'neighbor')

#: The fan-out per hop of :obj:`TrainConfig(batching="neighbor")`.
DEFAULT_NUM_NEIGHBORS = (10, 10)

#: The settings that may change when a run is resumed from a checkpoint
#: (the new value is applied and recorded); every other setting defines
#: the run.
RESUMABLE = ('epochs', 'patience', 'max_time', 'device', 'eval_batch_size',
             'num_threads', 'progress', 'distributed')


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


def _check_lr_decay(value: Any) -> Tuple[float, int]:
    r"""``TrainConfig.lr_decay`` as ``(factor, step)``: a factor in
    :math:`(0, 1]` and a positive integer step (MMRec writes it
    ``[0.96, 50]``)."""
    ok = isinstance(value, (list, tuple)) and len(value) == 2
    if ok:
        factor, step = value
        ok = isinstance(factor, numbers.Real) and \
            not isinstance(factor, bool) and 0 < factor <= 1 and \
            isinstance(step, numbers.Real) and not isinstance(step, bool) \
            and float(step).is_integer() and step >= 1
    if not ok:
        raise ValueError(f"TrainConfig.lr_decay must be (factor, step) with "
                         f"0 < factor <= 1 and an integer step >= 1, e.g. "
                         f"(0.96, 50) (got {value!r})")
    return float(value[0]), int(value[1])


#: The optimisers of :attr:`TrainConfig.optimizer`.
OPTIMIZERS = ('adam', 'adamw')


@dataclass
class TrainConfig:
    r"""The training hyper-parameters (defaults: MMRec's).

    Args:
        epochs (int): The maximum number of epochs. (default: :obj:`1000`)
        batch_size (int): Training pairs per step. (default: :obj:`2048`)
        lr (float): Adam learning rate. (default: :obj:`1e-3`)
        lr_decay (Sequence[float], optional): A learning-rate schedule
            ``(factor, step)``: epoch :math:`e` (from 0) trains with
            :math:`\mathrm{lr} \cdot \mathrm{factor}^{e / \mathrm{step}}`
            (MMRec's ``learning_rate_scheduler``, a
            :class:`~torch.optim.lr_scheduler.LambdaLR` stepped after every
            epoch and stored in the checkpoints; MGCN uses
            ``(0.96, 50)``). :obj:`None`: a constant rate.
            (default: :obj:`None`)
        weight_decay (float): The optimiser's weight decay: an
            :math:`L_2` penalty added to the gradients for
            :obj:`optimizer="adam"`, decoupled
            (:math:`\theta \leftarrow \theta - \mathrm{lr} \cdot
            \mathrm{wd} \cdot \theta` each step) for :obj:`"adamw"`.
            (default: :obj:`0.0`)
        optimizer (str): :obj:`"adam"` (:class:`torch.optim.Adam`, MMRec's)
            or :obj:`"adamw"` (:class:`torch.optim.AdamW`, *e.g.* REARM's,
            whose regulariser is its weight decay). (default:
            :obj:`"adam"`)
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
    progress: bool = False
    max_time: Optional[float] = None
    num_threads: Optional[int] = None
    distributed: Optional[bool] = None
    batching: str = 'full'
    num_neighbors: Optional[Sequence[int]] = None
    lr_decay: Optional[Sequence[float]] = None
    optimizer: str = 'adam'

    def __post_init__(self):
        for name in ('epochs', 'batch_size', 'patience', 'eval_every',
                     'eval_batch_size'):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int "
                                 f"(got {value!r})")
        _check_number('lr', self.lr, minimum=0.0, strict=True)
        _check_number('weight_decay', self.weight_decay, minimum=0.0)
        if self.lr_decay is not None:
            self.lr_decay = _check_lr_decay(self.lr_decay)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"TrainConfig.optimizer must be one of "
                             f"{list(OPTIMIZERS)} (got {self.optimizer!r})")
        if self.max_time is not None:
            _check_number('max_time', self.max_time, minimum=0.0,
                          strict=True)
        if isinstance(self.seed, bool) or \
                not isinstance(self.seed, numbers.Integral) or \
                not 0 <= self.seed < 2 ** 63:
            raise ValueError(f"TrainConfig.seed must be an int in "
                             f"[0, 2**63 - 1] (got {self.seed!r})")
        if self.distributed is not None and \
                not isinstance(self.distributed, bool):
            raise ValueError(f"TrainConfig.distributed must be True, False "
                             f"or None (got {self.distributed!r})")
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

    def lr_factor(self, epoch: int) -> float:
        r"""The learning rate of epoch :obj:`epoch` over :obj:`lr`:
        :math:`\mathrm{factor}^{e / \mathrm{step}}` (1 without
        :obj:`lr_decay`)."""
        if self.lr_decay is None:
            return 1.0
        factor, step = self.lr_decay
        return factor ** (epoch / step)

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out['ks'] = list(self.ks)
        if self.lr_decay is None:  # as before the option existed
            del out['lr_decay']
        else:
            out['lr_decay'] = list(self.lr_decay)
        if self.optimizer == 'adam':  # the same
            del out['optimizer']
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


#: The evaluators hold at most this many scores at once (512 MB of
#: float32): no effect up to ``eval_batch_size`` x 32,768 items, a bounded
#: memory for million-item catalogues.
EVAL_MAX_SCORES = 1 << 27


def resolve_device(device: str) -> torch.device:
    r"""The :class:`torch.device` of :obj:`device` (:obj:`"auto"`: CUDA
    when available); a :class:`ValueError` naming it when it is not a
    device name or not available here."""
    if device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a device name (use "
                         f"'cpu', 'cuda', 'cuda:0', ... or 'auto')") from None
    if dev.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f"device='{device}' was asked for but CUDA is not "
                         f"available")
    return dev


def format_record(record: Dict[str, Any]) -> str:
    r"""One line of the training log for an epoch's history record."""
    parts = [f"epoch {record['epoch']:4d}"]
    parts += [f'{k} {v:.4f}' for k, v in record.items()
              if k not in ('epoch', 'valid', 'test') and isinstance(v, float)]
    if 'valid' in record:
        parts.append('valid ' + ' '.join(
            f'{k} {v:.4f}' for k, v in record['valid'].items()
            if k.startswith(('recall', 'ndcg'))))
    return ' | '.join(parts)
