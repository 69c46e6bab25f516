import errno
import json
import math
import os
import signal
import stat

import numpy as np
import pytest
import torch

from pyg_brmrs.utils.atomic import (
    atomic_path,
    atomic_write,
    dumps,
    strict_json,
    write_json,
)


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith('.tmp'))


def test_atomic_write_replaces_and_cleans_up(tmp_path):
    path = tmp_path / 'sub' / 'a.txt'
    with atomic_write(path) as f:
        f.write('one')
    assert path.read_text() == 'one'
    with atomic_write(path, 'wb') as f:
        f.write(b'two')
    assert path.read_bytes() == b'two'
    assert leftovers(path.parent) == []


def test_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / 'results.json'
    path.write_text('{"old": 1}')
    with pytest.raises(RuntimeError, match='boom'):
        with atomic_write(path) as f:
            f.write('{"new": ')
            raise RuntimeError('boom')
    assert path.read_text() == '{"old": 1}'
    assert leftovers(tmp_path) == []
    with pytest.raises(ZeroDivisionError):
        with atomic_path(tmp_path / 'never.pt') as tmp:
            torch.save({'a': 1}, tmp)
            1 / 0
    assert not (tmp_path / 'never.pt').exists()
    assert leftovers(tmp_path) == []


def test_permissions_are_those_of_a_plain_open(tmp_path):
    plain = tmp_path / 'plain'
    plain.write_text('x')
    write_json({}, tmp_path / 'new.json')
    assert stat.S_IMODE((tmp_path / 'new.json').stat().st_mode) == \
        stat.S_IMODE(plain.stat().st_mode)
    os.chmod(plain, 0o640)
    write_json({}, plain)  # a replaced file keeps its mode
    assert stat.S_IMODE(plain.stat().st_mode) == 0o640


def test_writing_onto_a_folder_fails_cleanly(tmp_path):
    with pytest.raises(IsADirectoryError, match='is a folder'):
        write_json({}, tmp_path)
    (tmp_path / 'file').write_text('x')
    for below in ('results.json', 'deeper/results.json'):
        with pytest.raises(NotADirectoryError,
                           match=f"'{tmp_path / 'file'}' is a file"):
            write_json({}, tmp_path / 'file' / below)
    assert (tmp_path / 'file').read_text() == 'x'


def test_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path,
                                                          monkeypatch):
    path = tmp_path / 'results.json'
    path.write_text('{"old": 1}')

    def no_space(fd):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(os, 'fsync', no_space)
    with pytest.raises(OSError) as info:
        write_json({'new': 2}, path)
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(path)
    assert path.read_text() == '{"old": 1}'
    assert leftovers(tmp_path) == []


def test_strict_json_has_no_nan_or_infinity(tmp_path):
    obj = {'a': float('nan'), 'b': [float('inf'), -float('inf'), 1.5],
           'c': np.float32(0.25), 'd': torch.tensor(3), 'e': (1, 2),
           'f': {1: np.int64(4)}, 'g': object, 'h': torch.tensor(float('nan'))}
    out = strict_json(obj)
    assert out['a'] is None and out['b'] == [None, None, 1.5]
    assert out['c'] == 0.25 and out['d'] == 3 and out['e'] == [1, 2]
    assert out['f'] == {'1': 4} and out['h'] is None
    assert isinstance(out['g'], str)
    text = dumps(obj)
    json.loads(text, parse_constant=lambda c: pytest.fail(f'{c} in JSON'))
    write_json(obj, tmp_path / 'r.json')
    assert 'NaN' not in (tmp_path / 'r.json').read_text()
    assert math.isfinite(strict_json(1e308))


class _DyingFile:
    r"""Writes a third of the text, flushes it to disk, then SIGKILLs its
    own process."""
    def __init__(self, f):
        self.f = f

    def write(self, text):
        self.f.write(text[:len(text) // 3])
        self.f.flush()
        os.fsync(self.f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.f.__exit__(*exc)


def killed_while_saving(path, where):
    r"""Forks a process that saves a results file to :obj:`path` and is
    killed with SIGKILL in the middle of the data (:obj:`where="data"`) or
    after the data, before the rename (:obj:`"rename"`)."""
    from pyg_brmrs.training import TrainResult
    from pyg_brmrs.utils import atomic
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            if where == 'data':
                real_open = open
                atomic.open = lambda *a, **k: _DyingFile(real_open(*a, **k))
            else:
                atomic.os.replace = lambda *a: os.kill(os.getpid(),
                                                       signal.SIGKILL)
            history = [{'epoch': n, 'loss': 1 / (n + 1)} for n in range(500)]
            TrainResult(best_epoch=3, valid={'recall@20': 0.5}, test={},
                        history=history, stopped_early=False, epochs_run=500,
                        train_time=1.0, eval_time=1.0, config={}).save(path)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


@pytest.mark.skipif(not hasattr(os, 'fork'), reason='needs os.fork')
@pytest.mark.parametrize('where', ['data', 'rename'])
def test_kill_during_results_write_keeps_the_old_file(tmp_path, where):
    path = tmp_path / 'results.json'
    old = json.dumps({'test': {'recall@20': 0.25}, 'history': []}, indent=1)
    path.write_text(old)
    assert killed_while_saving(path, where)
    assert path.read_text() == old  # complete, valid, unchanged
    json.loads(path.read_text())
    # Only a temporary file of the killed writer may remain (no reader of
    # the package looks at it).
    assert all(n.startswith('.results.json.') for n in leftovers(tmp_path))
    # The first write of a file, killed midway, leaves no file at all.
    path.unlink()
    assert killed_while_saving(path, where)
    assert not path.exists()
