r"""Run folders. A *run* is one training of one recipe with one setting on
one dataset; its folder holds the manifest ``run.json`` that says which run
it is, ``results.json``, the trainer's checkpoints ``last.pt`` and
``best.pt`` (:class:`~pyg_brmrs.training.Checkpoints`) and optionally the
plots ``curves.png`` / ``subsets.png``. This module decides what happens
when a run is trained into a folder (start, resume, overwrite or refuse)
and writes its JSON files. The manifest records

* ``run``: what is trained (the recipe and its parameters, or the reprs of
  the model and the objective),
* ``data``: a fingerprint of the dataset (node counts, interactions,
  features),
* ``config``: every training setting that changes the result (seed,
  learning rate, batch size, ...) and ``settings``, those that may change
  when a run is resumed (:data:`~pyg_brmrs.training.RESUMABLE`: epochs,
  patience, ...),
* ``config_hash``: a hash of ``run``, the data fingerprint and ``config``,
  also stored in the checkpoints so that a checkpoint copied from another
  run is recognised,
* ``resumed``: one entry per resumption.

Training into a folder that holds files of a run refuses unless the run is
resumed (same ``config_hash``; a difference is an error that lists the
differing keys) or overwritten. While a run trains, its process holds an
exclusive lock on the folder's ``run.lock`` (``fcntl.flock``, released
when the run ends or its process dies, so a crashed run leaves no stale
lock): a second run into the same folder — resumed, overwritten or new —
is refused while the first one trains, before it changes any file. Only the writer process
(:func:`~pyg_brmrs.utils.distributed.is_writer`) creates or changes files;
under ``torchrun`` rank 0 decides and the other ranks take its decision.
"""
import copy
import datetime
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch_geometric.data import HeteroData

from pyg_brmrs.data.schema import ITEM, RATES, USER, feature_key, modalities
from pyg_brmrs.training import RESUMABLE, Checkpoints
from pyg_brmrs.training.state import BEST, LAST
from pyg_brmrs.utils import distributed as dist_utils
from pyg_brmrs.utils.atomic import write_json
from pyg_brmrs.utils.checks import check_choice
from pyg_brmrs.utils.distributed import is_writer
from pyg_brmrs.version import __version__

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

PathLike = Union[str, Path]

MANIFEST = 'run.json'
RESULTS = 'results.json'
PLOTS = ('curves.png', 'subsets.png')
#: The files a run folder may hold (those removed by an overwrite).
RUN_FILES = (MANIFEST, RESULTS, LAST, BEST) + PLOTS
#: The summary file of a grid search folder.
GRID = 'grid.json'
#: The lock file of a run folder (not a run file: never removed).
LOCK = 'run.lock'
#: The suffix an overwritten run's files carry until the new run has
#: written its first checkpoint (or its results).
PREVIOUS = '.previous'
KIND = 'pyg-brmrs run'
MANIFEST_VERSION = 1



class _Absent:
    def __repr__(self) -> str:
        return 'absent'


#: The value of a key one manifest lacks, in :func:`differences`.
ABSENT = _Absent()


class RunFolderError(ValueError):
    r"""An output folder that cannot take the requested run (a file, not
    writable, holding another run, or a run that differs from the one
    resumed)."""


def write_file(folder: PathLike, name: str,
               content: Dict[str, Any]) -> Optional[Path]:
    r"""Writes the JSON file :obj:`name` (:obj:`MANIFEST`, :obj:`RESULTS` or
    :obj:`GRID`) of run folder :obj:`folder`: atomically, as indented strict
    JSON (:func:`~pyg_brmrs.utils.atomic.write_json`), and on the writer
    process only. Every JSON file of a run or grid folder is written here.
    Returns the path written (:obj:`None` on other processes)."""
    check_choice(name, 'name', [MANIFEST, RESULTS, GRID])
    if not is_writer():
        return None
    return write_json(content, Path(folder) / name)


# ----------------------------------------------------------------------
def _canonical(obj: Any) -> Any:
    r""":obj:`obj` as it reads back from JSON (tuples become lists, ...)."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _digest(obj: Any) -> str:
    text = json.dumps(_canonical(obj), sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def data_fingerprint(data: HeteroData) -> Dict[str, Any]:
    r"""A summary and hash of :obj:`data`: node counts, the training,
    validation and test interactions and the item features (names, shapes
    and values). Graphs added by transforms are not included (they follow
    from the run's parameters)."""
    h = hashlib.blake2b(digest_size=16)
    num_users, num_items = int(data[USER].num_nodes), int(data[ITEM].num_nodes)
    h.update(f'{num_users},{num_items}'.encode())
    store = data[RATES]
    counts = []
    for key in ('edge_index', 'val_edge_index', 'test_edge_index'):
        value = store[key] if key in store else torch.empty(2, 0)
        value = value.detach().to('cpu', torch.long).contiguous()
        counts.append(int(value.size(1)))
        h.update(key.encode() + str(tuple(value.shape)).encode())
        h.update(value.numpy().tobytes())
    names = modalities(data)
    for m in names:
        x = data[ITEM][feature_key(m)].detach().to('cpu').contiguous()
        h.update(f'{m}{tuple(x.shape)}{x.dtype}'.encode())
        h.update(x.reshape(-1).view(torch.uint8).numpy().tobytes())
    return {'hash': h.hexdigest(), 'num_users': num_users,
            'num_items': num_items, 'interactions': counts,
            'modalities': names}


def make_manifest(run: Dict[str, Any], data: Dict[str, Any],
                  config: Dict[str, Any]) -> Dict[str, Any]:
    r"""The manifest of a run: :obj:`run` (what is trained), the
    :func:`data_fingerprint` :obj:`data` and the training :obj:`config`
    (a :meth:`~pyg_brmrs.training.TrainConfig.to_dict`), split into the
    settings that define the run and those that may change on resume."""
    run = _canonical(run)
    defining = {k: v for k, v in _canonical(config).items()
                if k not in RESUMABLE}
    settings = {k: v for k, v in _canonical(config).items()
                if k in RESUMABLE}
    config_hash = _digest({'run': run, 'data': data['hash'],
                           'config': defining})
    return {'kind': KIND, 'version': MANIFEST_VERSION, 'run': run,
            'data': dict(data), 'config': defining, 'settings': settings,
            'config_hash': config_hash,
            'created': time.strftime('%Y-%m-%d %H:%M:%S %Z'),
            'pyg_brmrs': __version__, 'resumed': []}


def _entries(section: Dict[str, Any]) -> Dict[str, Any]:
    r"""The entries of a manifest section, dict values one level down
    (``{'params': {'k': 1}}`` → ``{'params.k': 1}``)."""
    out: Dict[str, Any] = {}
    for key, value in section.items():
        if isinstance(value, dict):
            out.update({f'{key}.{k}': v for k, v in value.items()})
        else:
            out[key] = value
    return out


def _describe_data(d: Dict[str, Any]) -> str:
    counts = '/'.join(str(c) for c in d.get('interactions', []))
    return (f"{d.get('num_users')} users, {d.get('num_items')} items, "
            f"{counts} interactions, modalities {d.get('modalities')}, "
            f"hash {str(d.get('hash'))[:12]}")


def differences(stored: Dict[str, Any],
                requested: Dict[str, Any]) -> List[Tuple[str, Any, Any]]:
    r"""The keys in which two manifests describe different runs, as
    ``(key, stored value, requested value)``: the entries of ``run``
    (``model``, ``params.<name>``), ``data`` (the fingerprint) and every
    entry of ``config`` (``seed``, ``lr``, ...). A key missing on one side
    has the value :obj:`ABSENT`."""
    out: List[Tuple[str, Any, Any]] = []
    absent = ABSENT
    for section in ('run', 'config'):
        a = _entries(stored.get(section) or {})
        b = _entries(requested.get(section) or {})
        for key in list(a) + [k for k in b if k not in a]:
            if a.get(key, absent) != b.get(key, absent):
                out.append((key, a.get(key, absent), b.get(key, absent)))
    a_data, b_data = stored.get('data') or {}, requested.get('data') or {}
    if a_data.get('hash') != b_data.get('hash'):
        out.append(('data', _describe_data(a_data), _describe_data(b_data)))
    return out


# ----------------------------------------------------------------------
def present(folder: PathLike, files: Sequence[str] = RUN_FILES) -> List[str]:
    r"""The names among :obj:`files` that exist in :obj:`folder`."""
    folder = Path(folder)
    return [f for f in files if (folder / f).exists()]


def read_manifest(folder: PathLike) -> Dict[str, Any]:
    r"""Reads ``folder/run.json``.

    Raises:
        RunFolderError: if it is missing, not valid JSON or not a manifest.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise RunFolderError(f"'{folder}' has no {MANIFEST}: it was not "
                             f"written by this version of pyg-brmrs, so "
                             f"it cannot be checked that it holds the same "
                             f"run")
    try:
        with open(path) as f:
            out = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunFolderError(f"'{path}' is not valid JSON ({e})") from None
    if not isinstance(out, dict) or out.get('kind') != KIND or \
            'config_hash' not in out:
        raise RunFolderError(f"'{path}' is not a pyg-brmrs run manifest")
    if out.get('version') != MANIFEST_VERSION:
        raise RunFolderError(f"'{path}' has manifest version "
                             f"{out.get('version')!r}; this pyg-brmrs reads "
                             f"version {MANIFEST_VERSION}")
    return out


class FolderLock:
    r"""An exclusive, non-blocking lock on ``folder/run.lock`` for one
    process (``fcntl.flock``; the operating system releases it when the
    process exits, however it exits). The file records the holder's process
    id, host and start time for the error message of a refused run. On a
    platform without ``fcntl`` the lock is a no-op."""
    def __init__(self, folder: PathLike):
        self.path = Path(folder) / LOCK
        self.fd: Optional[int] = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> 'FolderLock':
        r"""Takes the lock.

        Raises:
            RunFolderError: if another run holds it.
        """
        if self.fd is not None or fcntl is None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunFolderError(
                f"output folder '{self.path.parent}' is in use by another "
                f"run ({holder}): wait for it to finish or stop it, or "
                f"choose another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({
            'pid': os.getpid(), 'host': socket.gethostname(),
            'since': datetime.datetime.now(datetime.timezone.utc)
            .isoformat(timespec='seconds')}).encode())
        self.fd = fd
        return self

    def release(self) -> None:
        r"""Releases the lock (the file stays)."""
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> 'FolderLock':
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}('{self.path}', "
                f"held={self.held})")


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode() or '{}')
        return (f"process {info['pid']} on {info['host']}, since "
                f"{info['since']}")
    except (OSError, ValueError, KeyError, TypeError):
        return 'a process that holds its lock'


def check_unlocked(folder: PathLike) -> None:
    r"""Raises :class:`RunFolderError` when a run is training into
    :obj:`folder` (another process holds its lock); takes no lock."""
    if fcntl is None or not (Path(folder) / LOCK).exists():
        return
    FolderLock(folder).acquire().release()


def check_output_dir(folder: PathLike, *, resume: bool = False,
                     overwrite: bool = False,
                     files: Sequence[str] = RUN_FILES,
                     locked: bool = False) -> List[str]:
    r"""The checks of an output folder that need no data, made before any
    data is read or any training starts. Returns the names among
    :obj:`files` the folder already holds.

    Raises:
        RunFolderError: if :obj:`resume` and :obj:`overwrite` are both set,
            :obj:`folder` (or a folder above it) is a file, cannot be
            written, or holds files of a run while neither :obj:`resume` nor
            :obj:`overwrite` is set, or (:obj:`resume`) holds files of a
            run but no readable manifest, or another run is training into
            it (its lock is held; not checked with :obj:`locked`, which
            says the caller holds the lock).

    Under ``torchrun`` only rank 0 checks (it alone decides and writes;
    the :class:`~pyg_brmrs.training.Trainer` passes its decision on): a
    later rank would otherwise find the folder rank 0 has just started.
    """
    if resume and overwrite:
        raise RunFolderError("resume and overwrite exclude each other: "
                             "resume continues the run in the folder, "
                             "overwrite replaces it")
    if not is_writer():
        return []
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        if existing == folder:
            raise RunFolderError(f"output folder '{folder}' is a file, not "
                                 f"a folder")
        raise RunFolderError(f"output folder '{folder}' cannot be created: "
                             f"'{existing}' is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunFolderError(f"output folder '{folder}' cannot be written "
                             f"('{existing}' is not writable)")
    if existing != folder:
        return []
    if not locked:  # (the caller holds the lock)
        check_unlocked(folder)
    held = present(folder, files)
    if held and not resume and not overwrite:
        listed = ', '.join(held)
        raise RunFolderError(
            f"output folder '{folder}' already holds a run ({listed}); "
            f"resume it (--resume / resume=True), replace it (--overwrite / "
            f"overwrite=True) or choose another folder")
    if held and resume and MANIFEST in files:
        read_manifest(folder)
    return held


class RunFolder:
    r"""A run folder opened for one run (:func:`open_run`).

    The writer process holds the folder's lock (:class:`FolderLock`) from
    :func:`open_run` until :meth:`close` (a ``with`` block closes it).

    Attributes:
        folder (Path): The folder.
        manifest (dict): The manifest of the run it holds.
        resuming (bool): Whether the run continues from the folder's
            ``last.pt``.
    """
    def __init__(self, folder: PathLike, manifest: Dict[str, Any],
                 resuming: bool, lock: Optional[FolderLock] = None,
                 previous: Sequence[str] = ()):
        self.folder = Path(folder)
        self.manifest = manifest
        self.resuming = resuming
        self.lock = lock
        #: The files of the run this one overwrites, kept as
        #: ``<name>.previous`` until this run has a checkpoint.
        self.previous: List[str] = list(previous)

    def commit(self) -> None:
        r"""Deletes the overwritten run's files (the new run has written a
        checkpoint or its results)."""
        for name in self.previous:
            (self.folder / (name + PREVIOUS)).unlink(missing_ok=True)
        self.previous = []

    def close(self, failed: bool = False) -> None:
        r"""Ends the run: releases the folder's lock. With :obj:`failed`,
        a run that overwrote another and has written nothing yet
        (:meth:`commit` not reached) removes its own files and puts the
        overwritten run back."""
        try:
            if failed and self.previous:
                for name in RUN_FILES:
                    (self.folder / name).unlink(missing_ok=True)
                for name in self.previous:
                    os.replace(self.folder / (name + PREVIOUS),
                               self.folder / name)
                self.previous = []
        finally:
            if self.lock is not None:
                self.lock.release()

    def __enter__(self) -> 'RunFolder':
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(failed=exc_type is not None)

    def checkpoints(self, save: bool = True) -> Checkpoints:
        r"""Where the trainer keeps the run's checkpoints (tagged with the
        manifest's ``config_hash``, resuming when :attr:`resuming`)."""
        return Checkpoints(self.folder, config_hash=self.manifest[
            'config_hash'], resume=self.resuming, save=save,
            on_write=lambda name: self.commit())

    def record_resume(self, requested: Dict[str, Any],
                      resumed: Sequence[Dict[str, Any]]) -> None:
        r"""Writes the manifest of the resumed run: the stored one with the
        :data:`~pyg_brmrs.training.RESUMABLE` settings of the
        :obj:`requested` manifest and :obj:`resumed` (the trainer's
        resumption records, those of the checkpoint it continues from and
        its own) as ``resumed``. A resumption that was stopped before it
        wrote a checkpoint left nothing of its training, so it is not
        among them: ``run.json`` and ``results.json`` always agree."""
        out = copy.deepcopy(self.manifest)
        out['settings'] = dict(requested.get('settings') or {})
        out['resumed'] = copy.deepcopy(list(resumed))
        write_file(self.folder, MANIFEST, out)
        self.manifest = out

    def write_results(self, content: Dict[str, Any]) -> Optional[Path]:
        r"""Writes ``results.json`` (and so replaces an overwritten run for
        good, see :meth:`commit`)."""
        self.commit()
        return write_file(self.folder, RESULTS, content)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}('{self.folder}', "
                f"resuming={self.resuming})")


def open_run(folder: PathLike, manifest: Dict[str, Any], *,
             resume: bool = False, overwrite: bool = False) -> RunFolder:
    r"""Prepares :obj:`folder` for the run described by :obj:`manifest`
    (:func:`make_manifest`):

    * a folder without run files, or :obj:`overwrite`: the run files of a
      previous run are removed and ``run.json`` is written (a new run);
    * :obj:`resume` on a folder with a manifest: the stored manifest is
      compared with :obj:`manifest`; the run continues from ``last.pt``
      when they describe the same run (when the folder has no ``last.pt``,
      the run was stopped before its first epoch ended: it starts again).

    Under ``torchrun`` rank 0 decides (and writes) alone and the other
    ranks take its decision, or raise its error.

    Raises:
        RunFolderError: for the cases of :func:`check_output_dir`, and when
            resuming a run that differs from the stored one; the message
            lists every differing key with both values.
    """
    if dist_utils.world_size() == 1:
        return _open_run(folder, manifest, resume, overwrite)
    outcome: Dict[str, Any] = {}
    opened = None
    if dist_utils.rank() == 0:
        try:
            opened = _open_run(folder, manifest, resume, overwrite)
            outcome = {'manifest': opened.manifest,
                       'resuming': opened.resuming}
        except Exception as e:  # passed on so that no rank waits
            dist_utils.broadcast_object({'error': e})
            raise
    outcome = dist_utils.broadcast_object(outcome)
    if 'error' in outcome:
        raise outcome['error']
    if opened is not None:  # rank 0: it holds the folder's lock
        return opened
    return RunFolder(folder, outcome['manifest'], outcome['resuming'])


def _open_run(folder: PathLike, manifest: Dict[str, Any], resume: bool,
              overwrite: bool) -> RunFolder:
    folder = Path(folder)
    check_output_dir(folder, resume=resume, overwrite=overwrite)
    lock = None
    if is_writer():
        folder.mkdir(parents=True, exist_ok=True)
        lock = FolderLock(folder).acquire()
        clean_temporary_files(folder)
    try:
        return _open_locked(folder, manifest, resume, overwrite, lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _open_locked(folder: Path, manifest: Dict[str, Any], resume: bool,
                 overwrite: bool, lock: Optional[FolderLock]) -> RunFolder:
    # checked again under the lock: the folder may have changed since
    held = check_output_dir(folder, resume=resume, overwrite=overwrite,
                            locked=True)
    if resume and held:
        stored = read_manifest(folder)
        diff = differences(stored, manifest)
        if diff:
            listed = '; '.join(
                f'{k} (stored {a}, requested {b})' if k == 'data' else
                f'{k} (stored {a!r}, requested {b!r})' for k, a, b in diff)
            raise RunFolderError(
                f"cannot resume the run in '{folder}': the requested run "
                f"differs from the stored one in {listed}. Resume with the "
                f"stored settings, or start a new run with --overwrite / "
                f"overwrite=True or in another folder")
        if (folder / LAST).exists():
            return RunFolder(folder, stored, resuming=True, lock=lock)
        held = [name for name in held if name != MANIFEST]
    previous: List[str] = []
    if is_writer():
        # non-empty only with overwrite (or a dead run): kept as
        # <name>.previous until the new run has written a checkpoint
        for name in held:
            os.replace(folder / name, folder / (name + PREVIOUS))
            previous.append(name)
        write_file(folder, MANIFEST, manifest)
    return RunFolder(folder, manifest, resuming=False, lock=lock,
                     previous=previous)


def clean_temporary_files(folder: PathLike) -> List[str]:
    r"""Removes the temporary files that an atomic write of a run file
    killed mid-write left in :obj:`folder` (``.<name>.<random>.tmp``, see
    :mod:`pyg_brmrs.utils.atomic`); call it only while holding the folder's
    lock. Returns their names."""
    removed = []
    for path in Path(folder).glob('.*.tmp'):
        base = path.name[1:].rsplit('.', 2)[0]
        if base in RUN_FILES + (GRID, ) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed
