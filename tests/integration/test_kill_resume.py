r"""``kill -9`` in the middle of an epoch, then ``pyg-brmrs train --resume``:
the resumed run reproduces the uninterrupted one exactly. (One thread: with
several, BLAS may split reductions differently from run to run on a busy
machine, which changes the last bits of the losses.)"""
import contextlib
import io
import json
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from pyg_brmrs.app import cli

ARGS = ['train', '--model', 'brmrs', '--synthetic', '--synthetic-users', '60',
        '--synthetic-items', '50', '--epochs', '4', '--batch-size', '256',
        '--seed', '7', '--threads', '1', '-q']
KILL_EPOCH = 2

# Runs the command and SIGKILLs itself in the second batch of epoch
# KILL_EPOCH (after last.pt of the epoch before was written).
DRIVER = textwrap.dedent('''
    import os, signal, sys
    from pyg_brmrs.app import cli
    from pyg_brmrs.training import Trainer

    KILL_EPOCH = int(sys.argv[1])
    train_epoch = Trainer.train_epoch

    class Dying:
        def __init__(self, objective):
            self.objective, self.calls = objective, 0

        def __call__(self, *args):
            self.calls += 1
            if self.calls == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            return self.objective(*args)

    def patched(self):
        if self.loop.epoch == KILL_EPOCH:
            self.objective = Dying(self.objective)
        return train_epoch(self)

    Trainer.train_epoch = patched
    cli.main(sys.argv[2:])
''')


def load(path):
    return json.loads(path.read_text())


def strip(history):
    return [{k: v for k, v in h.items() if not k.endswith('_time')}
            for h in history]


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_equals_the_uninterrupted_run(
        tmp_path, restore_threads):
    killed = tmp_path / 'killed'
    proc = subprocess.run(
        [sys.executable, '-c', DRIVER, str(KILL_EPOCH), *ARGS,
         '--output-dir', str(killed)], capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (killed / 'last.pt').exists() and (killed / 'run.json').exists()
    assert not (killed / 'results.json').exists()
    assert not list(killed.glob('.*.tmp'))

    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert cli.main([*ARGS, '--output-dir', str(killed),
                         '--resume']) == 0
        assert cli.main([*ARGS, '--output-dir', str(tmp_path / 'full')]) == 0
    assert f'resumed after epoch {KILL_EPOCH - 1}' in out.getvalue()

    resumed, full = load(killed / 'results.json'), load(tmp_path / 'full' /
                                                        'results.json')
    assert strip(resumed['history']) == strip(full['history'])
    for key in ('test', 'valid', 'best_epoch', 'epochs_run'):
        assert resumed[key] == full[key], key
    assert [(r['at_epoch'], r['changed']) for r in resumed['resumed']] == \
        [(KILL_EPOCH, {})]
    assert full['resumed'] == []
