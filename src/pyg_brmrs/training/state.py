r"""The state of a training run that a checkpoint holds and a resumed run
restores: the loop's progress, the model and optimizer, and the random
number generators of every library, so that a run resumed from its last
checkpoint reproduces the uninterrupted one."""
import copy
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch.optim.lr_scheduler import LRScheduler

from pyg_brmrs.training.config import (
    RESUMABLE,
    TrainConfig,
    TrainResult,
    environment_info,
)
from pyg_brmrs.utils.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from pyg_brmrs.utils.distributed import is_writer

PathLike = Union[str, Path]

#: Version 2: random-number-generator states stored as tensors and tuples,
#: so that checkpoints load with ``weights_only=True``.
CHECKPOINT_VERSION = 2
#: The checkpoint written after every epoch (everything to continue).
LAST = 'last.pt'
#: The checkpoint written at every improvement (the weights).
BEST = 'best.pt'


def seed_everything(seed: int) -> None:
    r"""Seeds Python's :mod:`random`, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state(generator: torch.Generator) -> Dict[str, Any]:
    r"""The states of :obj:`generator` and of the global generators of
    torch (CPU and CUDA), NumPy and Python, as tensors and plain values
    (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        'generator': generator.get_state(),
        'torch_rng': torch.get_rng_state(),
        'numpy_rng': (str(name), torch.from_numpy(keys.astype(np.int64)),
                      int(pos), int(has_gauss), float(cached)),
        'python_rng': random.getstate(),
    }
    if torch.cuda.is_available():
        state['cuda_rng'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any], generator: torch.Generator) -> None:
    r"""Restores an :func:`rng_state`."""
    generator.set_state(state['generator'])
    torch.set_rng_state(state['torch_rng'])
    name, keys, pos, has_gauss, cached = state['numpy_rng']
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), pos,
                         has_gauss, cached))
    random.setstate(state['python_rng'])
    if 'cuda_rng' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda_rng'])


@dataclass
class LoopState:
    r"""The progress of the training loop: the next epoch, the history,
    the best validation value so far (with its epoch, metrics and weights),
    the evaluations since it, the time spent, and one entry per
    resumption (``{"at_epoch", "changed", "date"}``)."""
    epoch: int = 0
    history: List[Dict[str, Any]] = field(default_factory=list)
    best_value: float = -float('inf')
    best_epoch: int = 0
    best_valid: Dict[str, float] = field(default_factory=dict)
    best_test: Dict[str, float] = field(default_factory=dict)
    bad_evals: int = 0
    train_time: float = 0.0
    eval_time: float = 0.0
    best_state: Optional[Dict[str, Any]] = None
    resumed: List[Dict[str, Any]] = field(default_factory=list)

    def improve(self, epoch: int, value: float, valid: Dict[str, float],
                test: Dict[str, float], model: torch.nn.Module) -> None:
        r"""Records a new best validation value and the model's weights (a
        CPU copy)."""
        self.best_value, self.best_epoch = value, epoch
        self.best_valid, self.best_test = valid, test
        self.bad_evals = 0
        self.best_state = {k: v.detach().to('cpu', copy=True)
                           for k, v in model.state_dict().items()}


def checkpoint(loop: LoopState, model: torch.nn.Module,
               optimizer: torch.optim.Optimizer, generator: torch.Generator,
               config: Dict[str, Any], config_hash: Optional[str] = None,
               scheduler: Optional[LRScheduler] = None) -> Dict[str, Any]:
    r"""Everything needed to continue training, as tensors and plain
    Python values only: the loop, model, optimizer, learning-rate
    :obj:`scheduler` (when there is one) and random generators.
    :obj:`config_hash` identifies the run that wrote it (*e.g.* the hash of
    its run folder's manifest; :obj:`None`: any)."""
    state = {'version': CHECKPOINT_VERSION, 'config_hash': config_hash,
             'model': model.state_dict(),
             'optimizer': optimizer.state_dict(), **asdict(loop),
             **rng_state(generator), 'config': config}
    if scheduler is not None:
        state['scheduler'] = scheduler.state_dict()
    return state


def best_checkpoint(loop: LoopState, model: torch.nn.Module,
                    config: Dict[str, Any],
                    config_hash: Optional[str] = None) -> Dict[str, Any]:
    r"""The weights of the best epoch with its metrics (``best.pt``)."""
    return {'version': CHECKPOINT_VERSION, 'config_hash': config_hash,
            'model': model.state_dict(), 'epoch': loop.best_epoch,
            'valid': loop.best_valid, 'test': loop.best_test,
            'config': config}


def restore(state: Dict[str, Any], model: torch.nn.Module,
            optimizer: torch.optim.Optimizer, generator: torch.Generator,
            where: str = 'the state',
            scheduler: Optional[LRScheduler] = None) -> LoopState:
    r"""Loads a :func:`checkpoint` into :obj:`model`, :obj:`optimizer` and
    the random generators and returns its :class:`LoopState`. The
    optimizer keeps its own kernel choice (fused or not; the same update up
    to float rounding).

    Raises:
        CheckpointError: if :obj:`state` is of another version, does not
            fit the model or optimizer, or holds a learning-rate schedule
            where :obj:`scheduler` is :obj:`None` or the reverse
            (:obj:`where` names it).
    """
    if state.get('version') != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{where} has version {state.get('version')!r}; resuming needs "
            f"version {CHECKPOINT_VERSION} (written by this pyg-brmrs)")
    if ('scheduler' in state) != (scheduler is not None):
        has = 'holds a' if 'scheduler' in state else 'holds no'
        raise CheckpointError(
            f"{where} {has} learning-rate schedule but the run "
            f"{'has' if scheduler is not None else 'has none'} "
            f"(TrainConfig.lr_decay must be the one it was written with)")
    try:
        model.load_state_dict(state['model'])
        fused = [g.get('fused') for g in optimizer.param_groups]
        optimizer.load_state_dict(state['optimizer'])
        for group, flag in zip(optimizer.param_groups, fused):
            group['fused'] = flag
        loop = LoopState(**{k: state[k] for k in LoopState.__dataclass_fields__
                            if k != 'resumed'},
                         resumed=list(state.get('resumed') or []))
        set_rng_state(state, generator)
        if scheduler is not None:
            scheduler.load_state_dict(state['scheduler'])
    except (RuntimeError, ValueError, KeyError, TypeError,
            AttributeError) as e:
        raise CheckpointError(f"{where} does not fit this model and "
                              f"optimizer: {state_dict_problem(e)}") from None
    return loop


def result(loop: LoopState, config: TrainConfig, stopped_early: bool, *,
           world_size: int = 1, **info: Any) -> TrainResult:
    r"""The :class:`~pyg_brmrs.training.TrainResult` of a loop that has
    ended; :obj:`info` (the device, the model's repr, ...) joins the
    :func:`~pyg_brmrs.training.config.environment_info` in
    ``result.info``."""
    return TrainResult(
        best_epoch=loop.best_epoch, valid=loop.best_valid,
        test=loop.best_test, history=loop.history,
        stopped_early=stopped_early, epochs_run=loop.epoch,
        train_time=loop.train_time, eval_time=loop.eval_time,
        config=config.to_dict(),
        info={**environment_info(), **info,
              'epoch_time_mean': loop.train_time / max(loop.epoch, 1),
              'world_size': world_size},
        resumed=copy.deepcopy(loop.resumed), world_size=world_size)


def setting_changes(stored: Dict[str, Any],
                    requested: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    r"""The :data:`~pyg_brmrs.training.config.RESUMABLE` settings that
    differ between two configurations: ``{name: {'stored': old,
    'requested': new}}``."""
    return {k: {'stored': stored.get(k), 'requested': requested.get(k)}
            for k in RESUMABLE
            if k in requested and stored.get(k) != requested.get(k)}


def resume_entry(loop: LoopState, stored: Dict[str, Any],
                 requested: Dict[str, Any]) -> Dict[str, Any]:
    r"""The record of one resumption: epochs ``0 .. at_epoch - 1`` come from
    the checkpoint, and the settings that changed."""
    return {'at_epoch': loop.epoch,
            'changed': setting_changes(stored, requested),
            'date': time.strftime('%Y-%m-%d %H:%M:%S %Z')}


def resume(checkpoints: 'Checkpoints', model: torch.nn.Module,
           optimizer: torch.optim.Optimizer, generator: torch.Generator,
           config: TrainConfig, scheduler: Optional[LRScheduler] = None
           ) -> Optional[Tuple[LoopState, Dict[str, Any]]]:
    r"""Continues from the ``last.pt`` of :obj:`checkpoints` (when it asks
    to resume and one exists): restores it (:func:`restore`) and returns
    the loop state with the resumption recorded in it, and that record
    (:func:`resume_entry`); :obj:`None` when there is nothing to resume."""
    stored = checkpoints.read_last()
    if stored is None:
        return None
    loop = restore(stored, model, optimizer, generator,
                   f"checkpoint '{checkpoints.folder / LAST}'", scheduler)
    entry = resume_entry(loop, stored['config'], config.to_dict())
    loop.resumed.append(entry)
    return loop, entry


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


class Checkpoints:
    r"""Where a :class:`~pyg_brmrs.training.Trainer` keeps its checkpoints:
    ``last.pt`` (written after every epoch: everything to continue) and
    ``best.pt`` (at every improvement: the weights), in :obj:`folder`,
    written atomically by the writer process only
    (:func:`~pyg_brmrs.utils.distributed.is_writer`) and read with
    ``weights_only=True``.

    Args:
        folder (str or Path): The folder (created when first written).
        config_hash (str, optional): What identifies the run (stored in
            every checkpoint; a ``last.pt`` with another one is refused on
            resume). (default: :obj:`None`: not checked)
        resume (bool, optional): Continue from ``last.pt`` when it exists.
            (default: :obj:`False`)
        save (bool, optional): Write the checkpoints (:obj:`False` only
            reads). (default: :obj:`True`)
        on_write (callable, optional): Called with the checkpoint's name
            after every write (*e.g.* a run folder that replaces an older
            run once the new one has a checkpoint). (default: :obj:`None`)
    """
    def __init__(self, folder: PathLike, config_hash: Optional[str] = None,
                 resume: bool = False, save: bool = True,
                 on_write: Optional[Callable[[str], None]] = None):
        self.folder = Path(folder)
        self.config_hash = config_hash
        self.resume = bool(resume)
        self.save = bool(save)
        self.on_write = on_write

    def write(self, name: str, state: Dict[str, Any]) -> None:
        r"""Writes checkpoint :obj:`name` (:data:`LAST` or :data:`BEST`)."""
        if self.save and is_writer():
            save_checkpoint(state, self.folder / name)
            if self.on_write is not None:
                self.on_write(name)

    def read_last(self) -> Optional[Dict[str, Any]]:
        r"""The ``last.pt`` to resume from (:obj:`None` when not resuming or
        when there is none).

        Raises:
            CheckpointError: if it is unreadable, unsafe, or was written by
                another run (another :obj:`config_hash`).
        """
        path = self.folder / LAST
        if not self.resume or not path.exists():
            return None
        state = load_checkpoint(path)
        if self.config_hash is not None and \
                state.get('config_hash') != self.config_hash:
            raise CheckpointError(
                f"checkpoint '{path}' belongs to another run (config hash "
                f"{state.get('config_hash')!r}, expected "
                f"{self.config_hash!r})")
        return state

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}('{self.folder}', "
                f"resume={self.resume}, save={self.save})")
