r"""Saving and safely loading checkpoints.

A checkpoint of :mod:`pyg_brmrs` holds only state dicts (tensors) and plain
metadata (numbers, strings, lists, dicts, tuples, :obj:`None`), so it is
read with ``torch.load(..., weights_only=True)``: PyTorch's restricted
unpickler rebuilds tensors and plain containers and refuses every other
global *before* calling it, so a file crafted to run code when unpickled
(a malicious ``__reduce__``) raises :class:`UnsafeCheckpointError` instead of
running it. No extra type is allow-listed: random-number-generator states
are stored as tensors and tuples of ints.
"""
import errno
import pickle
import shutil
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch

from .atomic import atomic_write

PathLike = Union[str, Path]


class CheckpointError(ValueError):
    r"""A file that cannot be read as a :mod:`pyg_brmrs` checkpoint
    (missing, empty, truncated, corrupt, not written by
    :func:`torch.save`, or of an unexpected content)."""


class UnsafeCheckpointError(CheckpointError):
    r"""A checkpoint that holds objects other than tensors and plain data;
    it was refused without unpickling them."""


def _nbytes(obj: Any) -> int:
    r"""The bytes of the tensors in a nested container."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0


def save_checkpoint(obj: Dict[str, Any], path: PathLike) -> Path:
    r""":func:`torch.save` of :obj:`obj` to :obj:`path`, atomically (see
    :func:`~pyg_brmrs.utils.atomic.atomic_write`). Returns the path.

    Raises:
        OSError: if the file cannot be written; the message names the file,
            and for a full disk the space the checkpoint needs and the space
            left (:func:`torch.save` itself reports a short write as
            ``RuntimeError: [enforce fail at inline_container.cc]``).
    """
    path = Path(path)
    try:
        with atomic_write(path, 'wb') as f:
            torch.save(obj, f)
    except RuntimeError as e:
        need = _nbytes(obj)
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            free = None
        full = free is not None and free < need + 2**20
        reason = (f'the disk is full (the checkpoint needs about '
                  f'{need / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are '
                  f'free)' if full else _short(e))
        raise OSError(errno.ENOSPC if full else errno.EIO,
                      f'cannot write checkpoint: {reason}',
                      str(path)) from e
    return path


def unsafe_globals(path: PathLike) -> List[str]:
    r"""The globals a :func:`torch.save` file refers to beyond those
    ``weights_only=True`` admits (read without unpickling anything; empty
    when PyTorch cannot list them)."""
    lister = getattr(torch.serialization, 'get_unsafe_globals_in_checkpoint',
                     None)
    if lister is None:
        return []
    try:
        return list(lister(str(path)))
    except Exception:  # not a zip checkpoint: nothing can be listed
        return []


def _short(e: BaseException) -> str:
    r"""The informative line of a :func:`torch.load` error."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    for line in lines:
        if line.startswith(('Unsupported', 'Trying to load', 'Unpickler')):
            return line
    if not lines:
        return type(e).__name__
    return lines[0].split('. ')[0][:200]


def load_checkpoint(path: PathLike,
                    map_location: Optional[Any] = 'cpu') -> Dict[str, Any]:
    r"""Reads a checkpoint with ``torch.load(..., weights_only=True)`` and
    checks that it holds a dict.

    Raises:
        FileNotFoundError: if :obj:`path` does not exist.
        UnsafeCheckpointError: if the file refers to globals other than
            tensors and plain data (they are listed; nothing is run).
        CheckpointError: if the file is empty, truncated or corrupt, not a
            :func:`torch.save` file, or does not hold a dict. Every message
            names the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint '{path}' is a folder, not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint '{path}' is empty (0 bytes)")
    try:
        with warnings.catch_warnings():  # e.g. about the pickle protocol
            warnings.simplefilter('ignore')
            state = torch.load(path, map_location=map_location,
                               weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = unsafe_globals(path)
        if unsafe or 'GLOBAL' in str(e):
            what = ', '.join(unsafe) if unsafe else _short(e)
            raise UnsafeCheckpointError(
                f"checkpoint '{path}' refused: it holds objects other than "
                f"tensors and plain data ({what}); they were not unpickled "
                f"(only weights-only checkpoints are loaded)") from None
        raise CheckpointError(f"checkpoint '{path}' is not a file written by "
                              f"torch.save ({_short(e)})") from None
    except EOFError:
        raise CheckpointError(f"checkpoint '{path}' ends early (truncated or "
                              f"corrupt)") from None
    except PermissionError:
        raise
    except (RuntimeError, OSError) as e:  # the zip reader's errors
        raise CheckpointError(f"checkpoint '{path}' is truncated or corrupt "
                              f"({_short(e)})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint '{path}' holds a "
                              f"{type(state).__name__}, not a dict of "
                              f"states")
    return state
