import hashlib
import json

import pytest
import torch

from pyg_brmrs.app import run_folder as runs
from pyg_brmrs.app.experiment import train as run_recipe
from pyg_brmrs.app.run_folder import RunFolderError
from pyg_brmrs.data import make_synthetic
from pyg_brmrs.training import TrainConfig
from pyg_brmrs.training.state import setting_changes


@pytest.fixture(scope='module')
def data():
    return make_synthetic(num_users=60, num_items=50, feature_dim=8, seed=1)


def fit(data, folder=None, dim=8, resume=False, overwrite=False, **kwargs):
    r"""One LightGCN run (a recipe run) into :obj:`folder`."""
    base = dict(epochs=3, batch_size=256, lr=5e-3, seed=7, device='cpu')
    base.update(kwargs)
    return run_recipe('lightgcn', data.clone(), {'embedding_dim': dim},
                      TrainConfig(**base), output_dir=folder, resume=resume,
                      overwrite=overwrite).result


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


def strip(history):
    return [{k: v for k, v in h.items() if not k.endswith('_time')}
            for h in history]


def test_run_folder_holds_manifest_results_and_safe_checkpoints(data,
                                                                 tmp_path):
    fit(data, tmp_path)
    assert set(digest(tmp_path)) == {'run.json', 'results.json', 'last.pt',
                                     'best.pt', 'run.lock'}
    assert (tmp_path / 'run.lock').read_bytes() == b''  # released
    manifest = json.loads((tmp_path / 'run.json').read_text())
    assert manifest['kind'] == 'pyg-brmrs run'
    assert manifest['run'] == {'model': 'lightgcn',
                               'params': {'embedding_dim': 8}}
    assert manifest['data']['num_users'] == 60
    assert manifest['data']['interactions'][0] > 0
    assert manifest['config']['seed'] == 7 and manifest['config']['lr'] == \
        5e-3
    assert 'epochs' not in manifest['config']
    assert manifest['settings']['epochs'] == 3
    assert manifest['resumed'] == []
    results = json.loads((tmp_path / 'results.json').read_text(),
                         parse_constant=pytest.fail)
    assert results['resumed'] == []
    for name in ('last.pt', 'best.pt'):
        state = torch.load(tmp_path / name, weights_only=True)
        assert state['config_hash'] == manifest['config_hash']


def test_data_fingerprint_sees_every_part(data):
    ref = runs.data_fingerprint(data)['hash']
    assert runs.data_fingerprint(data.clone())['hash'] == ref
    for change in ('edge', 'val', 'feature'):
        other = data.clone()
        store = other['user', 'rates', 'item']
        if change == 'edge':
            store.edge_index = store.edge_index.clone()
            store.edge_index[1, 0] = (store.edge_index[1, 0] + 1) % 50
        elif change == 'val':
            store.val_edge_index = store.val_edge_index[:, 1:]
        else:
            other['item'].x_image = other['item'].x_image.clone()
            other['item'].x_image[3, 2] += 1e-3
        assert runs.data_fingerprint(other)['hash'] != ref, change


def test_resume_applies_and_records_a_longer_schedule(data, tmp_path):
    full = fit(data, tmp_path / 'full', epochs=5)
    fit(data, tmp_path / 'cut', epochs=3)
    resumed = fit(data, tmp_path / 'cut', epochs=5, patience=30, resume=True)
    assert strip(resumed.history) == strip(full.history)
    assert resumed.test == full.test
    changed = {'epochs': {'stored': 3, 'requested': 5},
               'patience': {'stored': 20, 'requested': 30}}
    assert [(r['at_epoch'], r['changed']) for r in resumed.resumed] == \
        [(3, changed)]
    stored = json.loads((tmp_path / 'cut' / 'results.json').read_text())
    assert stored['resumed'][0]['at_epoch'] == 3
    assert stored['config']['epochs'] == 5
    manifest = json.loads((tmp_path / 'cut' / 'run.json').read_text())
    assert manifest['settings']['epochs'] == 5
    assert manifest['resumed'][0]['changed'] == changed
    # A second resumption appends to the record.
    again = fit(data, tmp_path / 'cut', epochs=6, patience=30, resume=True)
    assert [r['at_epoch'] for r in again.resumed] == [3, 5]


def test_resume_lists_every_setting_that_changes_the_run(data, tmp_path):
    fit(data, tmp_path)
    before = digest(tmp_path)
    with pytest.raises(RunFolderError) as info:
        fit(data, tmp_path, seed=8, lr=0.05, batch_size=128, dim=16,
            resume=True)
    message = str(info.value)
    for key in ('seed (stored 7, requested 8)', 'lr (stored 0.005, '
                'requested 0.05)', 'batch_size', 'params.embedding_dim'):
        assert key in message
    assert str(tmp_path) in message
    assert digest(tmp_path) == before


def test_resume_of_a_recipe_run_compares_its_parameters(data, tmp_path):
    config = TrainConfig(epochs=1, device='cpu')
    run_recipe('lightgcn', data.clone(), {'num_layers': 1}, config,
               output_dir=tmp_path)
    before = digest(tmp_path)
    with pytest.raises(RunFolderError, match=r'params\.num_layers \(stored '
                       r'1, requested 2\)'):
        run_recipe('lightgcn', data.clone(), {'num_layers': 2}, config,
                   output_dir=tmp_path, resume=True)
    other = make_synthetic(num_users=61, num_items=50, feature_dim=8, seed=1)
    with pytest.raises(RunFolderError, match='data .stored 60 users'):
        run_recipe('lightgcn', other, {'num_layers': 1}, config,
                   output_dir=tmp_path, resume=True)
    assert digest(tmp_path) == before


def test_overwrite_replaces_the_run_and_only_its_files(data, tmp_path):
    fit(data, tmp_path)
    (tmp_path / 'notes.txt').write_text('mine')
    (tmp_path / 'curves.png').write_bytes(b'old plot')
    old = json.loads((tmp_path / 'run.json').read_text())['config_hash']
    with pytest.raises(RunFolderError, match='already holds a run'):
        fit(data, tmp_path, seed=8)
    fit(data, tmp_path, seed=8, overwrite=True)
    manifest = json.loads((tmp_path / 'run.json').read_text())
    assert manifest['config_hash'] != old and manifest['config']['seed'] == 8
    assert (tmp_path / 'notes.txt').read_text() == 'mine'
    assert not (tmp_path / 'curves.png').exists()  # the old run's plot
    with pytest.raises(ValueError, match='exclude each other'):
        fit(data, tmp_path, resume=True, overwrite=True)


def test_only_rank_zero_writes(data, tmp_path, monkeypatch):
    from pyg_brmrs.utils import distributed
    assert distributed.is_writer()
    monkeypatch.setattr(distributed, 'rank', lambda: 1)
    assert not distributed.is_writer()
    res = fit(data, tmp_path / 'run')
    assert res.epochs_run == 3
    assert not (tmp_path / 'run').exists()


def test_differences_and_setting_changes():
    fp = {'hash': 'a', 'num_users': 3, 'num_items': 2,
          'interactions': [4, 1, 1], 'modalities': []}
    config = TrainConfig(device='cpu').to_dict()
    a = runs.make_manifest({'model': 'x', 'params': {'k': 1}}, fp, config)
    b = runs.make_manifest({'model': 'x', 'params': {'k': 1}}, fp,
                           dict(config, epochs=5))
    assert runs.differences(a, b) == [] and \
        a['config_hash'] == b['config_hash']
    assert setting_changes(a['settings'], b['settings']) == {
        'epochs': {'stored': 1000, 'requested': 5}}
    c = runs.make_manifest({'model': 'x', 'params': {'j': 2}},
                           dict(fp, hash='b'), dict(config, seed=1))
    keys = [k for k, _, _ in runs.differences(a, c)]
    assert keys == ['params.k', 'params.j', 'seed', 'data']
    assert a['config_hash'] != c['config_hash']


def test_grid_runs_can_be_resumed_as_single_runs(data, tmp_path):
    from pyg_brmrs.app.experiment import grid
    config = TrainConfig(epochs=1, device='cpu', seed=3)
    grid('lightgcn', data.clone(), {}, {'num_layers': [1, 2]}, config,
         output_dir=tmp_path)
    with pytest.raises(RunFolderError, match='grid.json'):
        grid('lightgcn', data.clone(), {}, {'num_layers': [1, 2]}, config,
             output_dir=tmp_path)
    resumed = run_recipe(
        'lightgcn', data.clone(), {'num_layers': 2},
        TrainConfig(epochs=2, device='cpu', seed=3), resume=True,
        output_dir=tmp_path / 'run_1').result
    assert resumed.epochs_run == 2 and resumed.resumed[0]['at_epoch'] == 1


LOCK_HOLDER = """
import sys
from pyg_brmrs.app.run_folder import FolderLock
lock = FolderLock(sys.argv[1]).acquire()
print('ready', flush=True)
sys.stdin.read()  # hold the lock until killed or stdin closes
"""


@pytest.mark.skipif(runs.fcntl is None, reason='needs fcntl (POSIX)')
def test_a_folder_another_run_trains_into_is_refused(data, tmp_path):
    # The hostile case: run A trains into a folder while run B is started
    # into it with --overwrite. B must be refused before it touches a file,
    # whatever its options; once A's process is gone (killed: no clean
    # release) the folder is free again.
    import subprocess
    import sys
    fit(data, tmp_path)
    before = digest(tmp_path)
    child = subprocess.Popen([sys.executable, '-c', LOCK_HOLDER,
                              str(tmp_path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == 'ready'
        for kw in (dict(overwrite=True), dict(resume=True), dict()):
            with pytest.raises(RunFolderError,
                               match=rf'in use by another run \(process '
                                     rf'{child.pid} on '):
                fit(data, tmp_path, seed=2, **kw)
        with pytest.raises(RunFolderError, match='in use'):
            runs.check_output_dir(tmp_path, overwrite=True)
        after = digest(tmp_path)
        del after['run.lock'], before['run.lock']  # the holder's record
        assert after == before
    finally:
        child.kill()
        child.wait()
    fit(data, tmp_path, seed=2, overwrite=True)
    manifest = json.loads((tmp_path / 'run.json').read_text())
    assert manifest['config']['seed'] == 2


def test_the_lock_is_released_when_training_fails(data, tmp_path,
                                                  monkeypatch):
    from pyg_brmrs.training import Trainer

    def boom(self):
        raise RuntimeError('stopped')

    monkeypatch.setattr(Trainer, 'fit', boom)
    with pytest.raises(RuntimeError, match='stopped'):
        fit(data, tmp_path)
    monkeypatch.undo()
    with runs.FolderLock(tmp_path) as lock:  # free again
        assert lock.held
    assert not lock.held
    fit(data, tmp_path, resume=True)  # the stopped run starts over
    assert (tmp_path / 'results.json').exists()


@pytest.mark.skipif(runs.fcntl is None, reason='needs fcntl (POSIX)')
def test_folder_lock_in_one_process(tmp_path):
    a = runs.FolderLock(tmp_path).acquire()
    assert 'held=True' in repr(a)
    with pytest.raises(RunFolderError, match=r'in use by another run '
                                             r'\(process \d+ on .+, since '):
        runs.FolderLock(tmp_path).acquire()
    a.release()
    a.release()  # twice is harmless
    runs.FolderLock(tmp_path).acquire().release()


def test_overwrite_keeps_the_old_run_until_the_new_one_has_a_checkpoint(
        data, tmp_path, monkeypatch):
    from pyg_brmrs.training import Trainer
    fit(data, tmp_path)
    before = digest(tmp_path)
    del before['run.lock']

    # the new run fails before its first checkpoint: the old run is back
    def boom(self):
        raise FloatingPointError('diverged')

    monkeypatch.setattr(Trainer, 'train_epoch', boom)
    with pytest.raises(FloatingPointError, match='diverged'):
        fit(data, tmp_path, seed=5, overwrite=True)
    after = digest(tmp_path)
    del after['run.lock']
    assert after == before
    monkeypatch.undo()

    # it fails after its first checkpoint: the old run is gone for good,
    # the new one's files stay (it can be resumed)
    real = Trainer.train_epoch

    def second_epoch_fails(self):
        if self.loop.epoch == 1:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(Trainer, 'train_epoch', second_epoch_fails)
    with pytest.raises(KeyboardInterrupt):
        fit(data, tmp_path, seed=5, overwrite=True)
    monkeypatch.undo()
    names = set(digest(tmp_path))
    assert not any(n.endswith('.previous') for n in names)
    assert json.loads((tmp_path / 'run.json').read_text())['config'][
        'seed'] == 5
    assert 'last.pt' in names and 'results.json' not in names
    res = fit(data, tmp_path, seed=5, resume=True)
    assert res.epochs_run == 3 and res.resumed[0]['at_epoch'] == 1
    assert not any(n.endswith('.previous') for n in digest(tmp_path))


def test_leftover_temporary_files_of_run_files_are_removed(data, tmp_path):
    fit(data, tmp_path)
    (tmp_path / '.results.json.k3j2x.tmp').write_text('{"trunc')
    (tmp_path / '.last.pt.abc.tmp').write_bytes(b'\x80')
    (tmp_path / '.notes.txt.abc.tmp').write_text('not ours')
    fit(data, tmp_path, resume=True, epochs=4)
    names = {p.name for p in tmp_path.iterdir()}
    assert '.results.json.k3j2x.tmp' not in names
    assert '.last.pt.abc.tmp' not in names
    assert '.notes.txt.abc.tmp' in names


class _Killed(Exception):
    pass


@pytest.mark.bad_input
@pytest.mark.parametrize('writes_before_kill', [0, 2])
def test_resume_of_a_killed_resume_agrees_with_its_manifest(
        data, tmp_path, monkeypatch, writes_before_kill):
    r"""A resumption killed before (0) or after (2: last.pt and best.pt of
    one epoch) it wrote a checkpoint, then resumed again: results.json and
    run.json hold the same resumption records, and each record's changes
    are those against the checkpoint it continued from."""
    from pyg_brmrs.training.state import Checkpoints
    fit(data, tmp_path, epochs=3)
    write = Checkpoints.write
    count = {'n': 0}

    def killing_write(self, name, state):
        if count['n'] >= writes_before_kill:
            raise _Killed()
        count['n'] += 1
        write(self, name, state)

    monkeypatch.setattr(Checkpoints, 'write', killing_write)
    with pytest.raises(_Killed):
        fit(data, tmp_path, epochs=5, resume=True)
    monkeypatch.setattr(Checkpoints, 'write', write)
    result = fit(data, tmp_path, epochs=6, resume=True)
    stored = json.loads((tmp_path / 'results.json').read_text())
    manifest = json.loads((tmp_path / 'run.json').read_text())
    assert manifest['resumed'] == stored['resumed'] == result.resumed
    assert manifest['settings']['epochs'] == 6
    records = [(r['at_epoch'], {k: (v['stored'], v['requested'])
                                for k, v in r['changed'].items()})
               for r in result.resumed]
    if writes_before_kill == 0:  # the killed resumption left nothing
        assert records == [(3, {'epochs': (3, 6)})]
    else:
        assert records == [(3, {'epochs': (3, 5)}), (4, {'epochs': (5, 6)})]
