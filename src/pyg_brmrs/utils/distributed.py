r"""Data-parallel training on :mod:`torch.distributed`: which process
writes, how the process group is found or started (``torchrun``), and the
few collectives the trainer needs.

Under ``torchrun --nproc_per_node=K [--nnodes=N ...]`` every process sees
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in its environment;
:func:`setup` then initialises the default process group (``nccl`` when the
process trains on a CUDA device, ``gloo`` otherwise) unless the caller has
already done so.
"""
import os
from dataclasses import dataclass
from typing import Any, List, Optional

import torch

ENV_VARS = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK')


def rank() -> int:
    r"""This process's rank in the default process group; before it is
    initialised, the ``RANK`` that ``torchrun`` put in the environment
    (with ``WORLD_SIZE`` > 1); :obj:`0` otherwise."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    if launched_by_torchrun():
        try:
            return int(os.environ.get('RANK', '0'))
        except ValueError:
            return 0
    return 0


def world_size() -> int:
    r"""The number of processes of the default process group (:obj:`1`
    when it is not initialised)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_world_size())
    return 1


def is_writer() -> bool:
    r""":obj:`True` unless this process's :func:`rank` is not :obj:`0`:
    under ``torchrun`` only rank 0 writes run folders, checkpoints and
    results, the other ranks only read."""
    return rank() == 0


def launched_by_torchrun() -> bool:
    r"""Whether the environment says this process is one of several
    (``WORLD_SIZE`` > 1, as ``torchrun`` sets it)."""
    try:
        return int(os.environ.get('WORLD_SIZE', '1')) > 1
    except ValueError:
        return False


@dataclass
class DistInfo:
    r"""Where this process stands: :obj:`world_size` processes, this one
    of rank :obj:`rank` (:obj:`local_rank` on its node), communicating
    through :obj:`backend` (:obj:`None` for a single process)."""
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: Optional[str] = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(distributed: Optional[bool], device: str = 'auto') -> DistInfo:
    r"""Finds or starts the process group.

    Args:
        distributed (bool, optional): :obj:`None`: data-parallel when the
            default process group is initialised or the environment says
            ``WORLD_SIZE`` > 1 (``torchrun``); :obj:`True`: required (an
            error when neither holds); :obj:`False`: single process, even
            under ``torchrun``.
        device (str): The trainer's device setting; ``nccl`` is used when
            it resolves to CUDA, ``gloo`` otherwise.

    Returns:
        The :class:`DistInfo`; with a CUDA device the current device is set
        to ``cuda:LOCAL_RANK``.
    """
    dist = torch.distributed
    if distributed is False:
        return DistInfo()
    initialised = dist.is_available() and dist.is_initialized()
    if not initialised and not launched_by_torchrun():
        if distributed:
            raise RuntimeError(
                "TrainConfig.distributed=True needs an initialised "
                "torch.distributed process group or a torchrun launch "
                "(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT "
                "in the environment)")
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed")
    local = int(os.environ.get('LOCAL_RANK', '0'))
    cuda = device.startswith('cuda') or (device == 'auto' and
                                         torch.cuda.is_available())
    if not initialised:
        missing = [v for v in ENV_VARS + ('MASTER_ADDR', 'MASTER_PORT')
                   if v not in os.environ]
        if missing:
            raise RuntimeError(f"WORLD_SIZE > 1 but {missing} missing from "
                               f"the environment: launch with torchrun")
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group('nccl' if cuda else 'gloo')
    elif cuda:
        torch.cuda.set_device(local)
    return DistInfo(world_size=int(dist.get_world_size()),
                    rank=int(dist.get_rank()), local_rank=local,
                    backend=str(dist.get_backend()))


def broadcast_object(obj: Any, src: int = 0) -> Any:
    r""":obj:`obj` of rank :obj:`src` on every rank (itself when not
    distributed)."""
    if world_size() == 1:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> List[Any]:
    r"""Every rank's :obj:`obj`, in rank order (``[obj]`` when not
    distributed)."""
    if world_size() == 1:
        return [obj]
    out: List[Any] = [None] * world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def all_reduce_sum(values: List[float], device) -> List[float]:
    r"""The element-wise sum of :obj:`values` over the ranks (float64)."""
    if world_size() == 1 or not values:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def shutdown() -> None:
    r"""Destroys the default process group if one is initialised (the
    end of a ``torchrun`` command)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    r"""Waits for every rank (no-op when not distributed)."""
    if world_size() > 1:
        torch.distributed.barrier()
