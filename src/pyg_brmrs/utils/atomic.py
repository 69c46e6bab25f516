r"""Atomic file writes and strict JSON.

Every file :mod:`pyg_brmrs` writes goes first to a temporary file in the
same folder (``.<name>.<random>.tmp``) and is then renamed onto the target
with :func:`os.replace`, which is atomic on POSIX and Windows: a reader (or
a process killed mid-write) sees either the complete old file or the
complete new one, never a truncated mix. A failed write removes its
temporary file and leaves the old file untouched.

.. code-block:: python

    from pyg_brmrs.utils.atomic import atomic_write, write_json

    write_json({'recall@20': 0.1}, 'runs/x/results.json')
    with atomic_write('runs/x/table.md') as f:
        f.write(table)
"""
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator, Union

PathLike = Union[str, 'os.PathLike[str]']

#: The suffix of the temporary files (never a file the package reads).
TMP_SUFFIX = '.tmp'


def _default_mode(path: Path) -> int:
    r"""The permission bits a plain :func:`open` would give :obj:`path`:
    those of the file it replaces, else ``0o666`` less the umask."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: folders cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    r"""Yields a fresh temporary path in the folder of :obj:`path` (created
    if needed); when the block ends without an exception the temporary file
    is flushed to disk and renamed onto :obj:`path`, otherwise it is
    removed and :obj:`path` is left as it was.

    Use it for writers that want a file name (``fig.savefig(tmp)``,
    ``torch.save(obj, tmp)``); :func:`atomic_write` hands out an open file.

    Raises:
        NotADirectoryError: if a component of the folder is a file.
        IsADirectoryError: if :obj:`path` is a folder.
        OSError: a failed write (*e.g.* a full disk), naming :obj:`path`.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write '{path}': it is a folder")
    folder = path.parent
    for above in (folder, *folder.parents):  # the nearest existing one
        if above.exists() or above.is_symlink():
            if not above.is_dir():
                raise NotADirectoryError(
                    f"cannot write '{path}': '{above}' is a file, not a "
                    f"folder")
            break
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f'.{path.name}.',
                                    suffix=TMP_SUFFIX, dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, _default_mode(path))  # mkstemp creates it as 0o600
        yield tmp
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.filename is None and e.errno is not None:
            # a failed write ("No space left on device") names no file
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(folder)


@contextmanager
def atomic_write(path: PathLike, mode: str = 'w',
                 encoding: str = 'utf-8') -> Iterator[IO]:
    r"""Opens a temporary file next to :obj:`path` for writing
    (:obj:`mode` ``"w"`` or ``"wb"``) and renames it onto :obj:`path` when
    the block ends without an exception (see :func:`atomic_path`)."""
    if mode not in ('w', 'wb'):
        raise ValueError(f"mode must be 'w' or 'wb' (got '{mode}')")
    with atomic_path(path) as tmp:
        kwargs = {'encoding': encoding, 'newline': ''} if mode == 'w' else {}
        with open(tmp, mode, **kwargs) as f:
            yield f


def strict_json(obj: Any) -> Any:
    r"""A copy of :obj:`obj` that strict JSON parsers accept: NaN and
    :math:`\pm\infty` floats become :obj:`None` (JSON ``null``), NumPy and
    0-d torch scalars become Python numbers, tuples and sets become lists,
    mapping keys strings, and any other non-JSON value its :func:`str`."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return [strict_json(v) for v in sorted(obj, key=str)]
    item = getattr(obj, 'item', None)  # NumPy / torch scalars
    if callable(item) and getattr(obj, 'ndim', None) == 0:
        try:
            return strict_json(item())
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(obj)


def dumps(obj: Any, indent: int = 1) -> str:
    r"""Strict JSON text of :obj:`obj` (see :func:`strict_json`)."""
    return json.dumps(strict_json(obj), indent=indent, allow_nan=False)


def write_json(obj: Any, path: PathLike, indent: int = 1) -> Path:
    r"""Writes :obj:`obj` atomically as indented strict JSON (non-finite
    numbers as ``null``, see :func:`strict_json`). Returns the path."""
    text = dumps(obj, indent=indent)
    with atomic_write(path) as f:
        f.write(text + '\n')
    return Path(path)


def write_text(text: str, path: PathLike) -> Path:
    r"""Writes :obj:`text` to :obj:`path` atomically. Returns the path."""
    with atomic_write(path) as f:
        f.write(text)
    return Path(path)
