r"""Data-parallel training over the :math:`W` processes of
:mod:`torch.distributed` (``torchrun --nproc_per_node=W``).

Each process holds the whole dataset and graphs (replicated) and the model
wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` (on
``cuda:LOCAL_RANK`` with ``nccl``, or on the CPU with ``gloo``). The
epoch's permutation of the :math:`E` training pairs comes from the shared
seeded generator, identical on every rank; step :math:`t` takes the pairs
:math:`[tWB, (t+1)WB)` of it and rank :math:`r` the :math:`r`-th of
:math:`W` near-equal contiguous parts (:func:`rank_share`), so every pair
is trained once per epoch across the ranks, every rank takes the same
:math:`\lceil E / (WB) \rceil` steps, and with :math:`W = 1` this is the
single-process loop. Rank :math:`r`'s loss is scaled by :math:`W n_r /
n_t` (:math:`n_r` its pairs, :math:`n_t` the step's), so DDP's gradient
average is the gradient of the mean loss over the step's pairs. Negatives
come from a per-rank generator seeded by (seed, epoch, rank)
(:func:`rank_seed`); stochastic graph edits use the shared one, so the
graphs stay identical."""
from typing import Tuple

import numpy as np
import torch
from torch import Tensor


class DistributedModel(torch.nn.parallel.DistributedDataParallel):
    r""":class:`~torch.nn.parallel.DistributedDataParallel` that also
    exposes the wrapped recommender's methods (``regularization``,
    ``auxiliary_loss``, ...) to the objectives."""
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


def rank_share(step: Tensor, world_size: int,
               rank: int) -> Tuple[Tensor, float]:
    r"""Rank :obj:`rank`'s part of a step's pair ids :obj:`step` (the
    :obj:`rank`-th of :obj:`world_size` near-equal contiguous parts) and the
    weight :math:`W n_r / n_t` of its loss, so that the gradient average of
    the ranks is the gradient of the mean loss over the step's pairs. A
    rank left without pairs gets one zero-weighted stand-in pair."""
    if world_size == 1:
        return step, 1.0
    idx = torch.tensor_split(step, world_size)[rank]
    scale = world_size * idx.numel() / step.numel()
    if idx.numel() == 0:
        idx = step[:1]
    return idx, scale
