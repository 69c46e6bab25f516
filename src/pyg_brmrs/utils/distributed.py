r"""Which process writes files under :mod:`torch.distributed`."""
import torch


def rank() -> int:
    r"""This process's rank in the default process group (:obj:`0` when
    :mod:`torch.distributed` is unavailable or not initialised)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    return 0


def is_writer() -> bool:
    r""":obj:`True` unless :mod:`torch.distributed` is initialised and this
    process's rank is not :obj:`0`: under ``torchrun`` only rank 0 writes run
    folders, checkpoints and results, the other ranks only read."""
    return rank() == 0
