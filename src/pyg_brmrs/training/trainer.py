r"""The training loop: Adam on mini-batches of training pairs, full-ranking
validation, early stopping, test metrics at the best validation epoch."""
import copy
import functools
import logging
import time
from typing import Any, Dict, Optional

import torch
from torch.optim.lr_scheduler import LambdaLR
from torch_geometric.data import HeteroData

from pyg_brmrs.data.link_split import from_link_split
from pyg_brmrs.data.schema import RATES, Schema, canonical
from pyg_brmrs.evaluation import ShardedEvaluator
from pyg_brmrs.nn.base import Recommender
from pyg_brmrs.objectives import Objective
from pyg_brmrs.training import state as training_state
from pyg_brmrs.training.batching import make_steps
from pyg_brmrs.training.config import EVAL_MAX_SCORES, TrainConfig
from pyg_brmrs.training.config import TrainResult, format_record
from pyg_brmrs.training.config import resolve_device
from pyg_brmrs.training.ddp import DistributedModel, rank_seed, rank_share
from pyg_brmrs.training.optim import make_adam
from pyg_brmrs.training.state import BEST, LAST, Checkpoints, LoopState
from pyg_brmrs.utils import distributed as dist_utils
from pyg_brmrs.utils.distributed import is_writer

logger = logging.getLogger('pyg_brmrs')


class Trainer:
    r"""Fits a :class:`~pyg_brmrs.nn.Recommender` with an
    :class:`~pyg_brmrs.objectives.Objective` on a dataset with training,
    ``val_edge_index`` and ``test_edge_index`` interactions, in MMRec's
    protocol.

    Every epoch: :meth:`~pyg_brmrs.nn.Recommender.on_epoch_start`, one
    Adam step (:func:`make_adam`) per batch of :obj:`config.batch_size`
    shuffled training pairs, a step of the learning-rate schedule
    (:obj:`config.lr_decay`, when set), then (every :obj:`eval_every` epochs)
    full-ranking validation; test is ranked whenever validation improves.
    Training stops after :obj:`patience` evaluations without improvement,
    :obj:`epochs` epochs or :obj:`max_time` seconds; a non-finite loss
    raises a :class:`FloatingPointError` naming the epoch, batch and terms.
    All randomness comes from one generator seeded with :obj:`config.seed`,
    stored in every checkpoint (:mod:`pyg_brmrs.training.state`): a run
    resumed from ``last.pt`` reproduces the uninterrupted one. Under
    ``torchrun`` (:obj:`TrainConfig.distributed`) every process trains its
    share of every step (:mod:`pyg_brmrs.training.ddp`), evaluation is split
    by users (:class:`~pyg_brmrs.evaluation.ShardedEvaluator`, the numbers
    of one process) and only rank 0 writes checkpoints.

    Args:
        model (Recommender): The model.
        objective (Objective): The training objective (its sampler is bound
            to the trainer's generator).
        data (HeteroData): The dataset (the trainer works on a shallow copy
            moved to its device; the caller's tensors are left alone).
        config (TrainConfig, optional): Hyper-parameters.
        checkpoints (Checkpoints, optional): Where to write ``last.pt`` and
            ``best.pt``, and whether to resume from ``last.pt``.
            (default: :obj:`None`, no checkpoints)
        schema (Schema, optional): The names of :obj:`data`.
            (default: :obj:`None`, the model's)

    :obj:`data` may also be the three datasets
    :class:`~torch_geometric.transforms.RandomLinkSplit` returns, ``(train,
    val, test)``: they are folded into one with
    :func:`~pyg_brmrs.data.from_link_split`.
    """
    def __init__(self, model: Recommender, objective: Objective,
                 data: HeteroData, config: Optional[TrainConfig] = None, *,
                 checkpoints: Optional[Checkpoints] = None,
                 schema: Optional[Schema] = None):
        self.config = cfg = config if config is not None else TrainConfig()
        self.checkpoints = checkpoints
        schema = schema if schema is not None else getattr(model, 'schema',
                                                           None)
        if isinstance(data, (tuple, list)) and len(data) == 3:
            data = from_link_split(*data, schema=schema)
        data = canonical(data, schema)
        for split in ('val_edge_index', 'test_edge_index'):
            if split not in data[RATES] or data[RATES][split].numel() == 0:
                raise ValueError(f"The data has no '{split}' on {RATES}: the "
                                 f"trainer needs validation and test "
                                 f"interactions")
        self.dist = dist_utils.setup(cfg.distributed, cfg.device)
        self.device = resolve_device(cfg.device)
        if self.dist.enabled and self.device.type == 'cuda':
            self.device = torch.device('cuda', self.dist.local_rank)
        self.data = copy.copy(data).to(self.device)
        self.model = model.to(self.device)
        self.train_model: torch.nn.Module = self.model
        self.objective = objective.to(self.device)
        self.generator = torch.Generator(device=self.device)
        self.objective.generator = self.generator
        self.sample_generator: Optional[torch.Generator] = None
        if self.dist.enabled:
            self.train_model = DistributedModel(
                self.model, device_ids=[self.device.index]
                if self.device.type == 'cuda' else None)
            self.sample_generator = torch.Generator(device=self.device)
            self.objective.generator = self.sample_generator
        self.optimizer = make_adam(self.model.parameters(), lr=cfg.lr,
                                   weight_decay=cfg.weight_decay,
                                   decoupled=cfg.optimizer == 'adamw')
        #: The learning-rate schedule of :obj:`config.lr_decay`
        #: (:obj:`None`: a constant rate), stepped after every epoch.
        self.scheduler: Optional[LambdaLR] = None
        if cfg.lr_decay is not None:
            self.scheduler = LambdaLR(self.optimizer,
                                      lambda epoch: cfg.lr_factor(epoch))
        self.steps = make_steps(cfg, data, self.model, self.device,
                                self.dist.enabled)
        self.evaluators = {split: ShardedEvaluator.from_data(
            self.data, split, exclude_valid=cfg.mask_valid_in_test,
            rank=self.dist.rank, world_size=self.dist.world_size, ks=cfg.ks,
            batch_size=cfg.eval_batch_size, max_scores=EVAL_MAX_SCORES)
            for split in ('valid', 'test')}
        self.loop = LoopState()
        self._started = False

    # ------------------------------------------------------------------
    def start(self) -> Optional[Dict[str, Any]]:
        r"""Seeds every generator with :obj:`config.seed` and, when the
        checkpoints say so, resumes from ``last.pt``; returns the resume
        entry (``{"at_epoch", "changed", "date"}``, also appended to the
        result's ``resumed``) or :obj:`None`. :meth:`fit` calls it when it
        was not called before."""
        self._started = True
        training_state.seed_everything(self.config.seed)
        self.generator.manual_seed(self.config.seed)
        self.loop = LoopState()
        if self.checkpoints is None:
            return None
        resumed = training_state.resume(self.checkpoints, self.model,
                                        self.optimizer, self.generator,
                                        self.config, self.scheduler)
        if resumed is None:
            return None
        self.loop, entry = resumed
        logger.info('Resumed after epoch %d%s', self.loop.epoch - 1,
                    f" (changed: {entry['changed']})" if entry['changed']
                    else '')
        return entry

    def fit(self) -> TrainResult:
        r"""Runs the training loop and returns the :class:`TrainResult`
        (the model holds the best validation epoch's weights)."""
        cfg = self.config
        if not self._started:
            self.start()
        loop = self.loop
        start = time.perf_counter() - loop.train_time - loop.eval_time
        while loop.epoch < cfg.epochs and loop.bad_evals < cfg.patience:
            if cfg.max_time is not None and \
                    time.perf_counter() - start > cfg.max_time:
                logger.warning('Stopping: max_time=%.0fs reached',
                               cfg.max_time)
                break
            t0 = time.perf_counter()
            record: Dict[str, Any] = {'epoch': loop.epoch,
                                      **self.train_epoch()}
            if self.scheduler is not None:
                record['lr'] = self.optimizer.param_groups[0]['lr']
                self.scheduler.step()
            t1 = time.perf_counter()
            record['train_time'] = t1 - t0
            if (loop.epoch + 1) % cfg.eval_every == 0 or \
                    loop.epoch + 1 == cfg.epochs:
                record.update(self._validate())
                record['eval_time'] = time.perf_counter() - t1
                loop.eval_time += record['eval_time']
            loop.train_time += t1 - t0
            loop.history.append(record)
            logger.info(format_record(record))
            loop.epoch += 1
            self._save(LAST)
        if loop.best_state is not None:
            self.model.load_state_dict(loop.best_state)
        return training_state.result(
            loop, self.config, loop.bad_evals >= cfg.patience,
            world_size=self.dist.world_size, device=str(self.device),
            model=repr(self.model), objective=repr(self.objective),
            num_parameters=sum(p.numel() for p in self.model.parameters()),
            backend=self.dist.backend)

    def _validate(self) -> Dict[str, Any]:
        loop, cfg = self.loop, self.config
        valid = self.evaluate('valid')
        out: Dict[str, Any] = {'valid': valid}
        if valid[cfg.valid_metric] > loop.best_value:
            out['test'] = self.evaluate('test')
            loop.improve(loop.epoch, valid[cfg.valid_metric], valid,
                         out['test'], self.model)
            self._save(BEST)
        else:
            loop.bad_evals += 1
        return out

    def train_epoch(self) -> Dict[str, float]:
        r"""One pass over the shuffled training pairs; returns the mean of
        every loss term (over all processes)."""
        cfg, loop = self.config, self.loop
        self.model.train()
        self.model.on_epoch_start(loop.epoch, self.generator)
        edge_index = self.data[RATES].edge_index
        perm = torch.randperm(edge_index.size(1), generator=self.generator,
                              device=self.device)
        world, rank = self.dist.world_size, self.dist.rank
        batches = perm.split(cfg.batch_size * world)
        if self.sample_generator is not None:
            self.sample_generator.manual_seed(
                rank_seed(cfg.seed, loop.epoch, rank))
        self.steps.start_epoch(rank_seed(cfg.seed, loop.epoch,
                                         (1 << 20) + rank))
        sums: Dict[str, float] = {}
        iterator = batches
        if cfg.progress and is_writer():
            from tqdm.auto import tqdm
            iterator = tqdm(batches, desc=f'epoch {loop.epoch}', leave=False)
        for n, step in enumerate(iterator):
            idx, scale = rank_share(step, world, rank)
            terms = self.steps(self.train_model, self.objective, self.data,
                               idx, edge_index[0, idx], edge_index[1, idx])
            loss = terms['loss'] if scale == 1.0 else terms['loss'] * scale
            if not torch.isfinite(loss):
                shown = ', '.join(f'{k}={float(v.detach()):.4g}'
                                  for k, v in terms.items())
                raise FloatingPointError(
                    f"training diverged at epoch {loop.epoch}, batch "
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

    @torch.no_grad()
    def evaluate(self, split: str = 'valid') -> Dict[str, float]:
        r"""Full-ranking metrics of the current model on :obj:`split`
        (:obj:`"valid"` or :obj:`"test"`)."""
        if split not in self.evaluators:
            raise ValueError(f"split must be 'valid' or 'test' (got "
                             f"'{split}')")
        out = self.model.embed(self.data)
        return self.evaluators[split](out.user_emb, out.item_emb)

    # ------------------------------------------------------------------
    def _save(self, name: str) -> None:
        if self.checkpoints is None:
            return
        make = training_state.best_checkpoint if name == BEST else \
            functools.partial(training_state.checkpoint,
                              optimizer=self.optimizer,
                              generator=self.generator,
                              scheduler=self.scheduler)
        self.checkpoints.write(name, make(
            self.loop, self.model, config=self.config.to_dict(),
            config_hash=self.checkpoints.config_hash))
