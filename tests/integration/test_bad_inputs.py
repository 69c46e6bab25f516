r"""The catalogue of bad inputs and faults.

Every case is a malformed file, array, argument, checkpoint or folder, or a
fault during a run. Each asserts the error type, that the message names the
culprit (the file, argument, key or epoch), and that nothing on disk was
lost or altered. Command-line cases also assert one
``pyg-brmrs <command>: error: ...`` line and a non-zero exit, and find the
error type by rerunning with ``--debug``.
"""
import contextlib
import hashlib
import io
import math
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from pyg_brmrs.app import cli
from pyg_brmrs.app.experiment import restore, train
from pyg_brmrs.app.run_folder import RunFolderError
from pyg_brmrs.data import from_interactions, make_synthetic, write_mmrec
from pyg_brmrs.nn.conv import MultiModalLGConv
from pyg_brmrs.training import TrainConfig
from pyg_brmrs.utils.checkpoint import CheckpointError, UnsafeCheckpointError

DATA = ['--synthetic', '--synthetic-users', '60', '--synthetic-items', '50']
TINY = [*DATA, '--epochs', '2', '--batch-size', '256', '-q']
MARKER = 'pwned'


class Payload:
    r"""Unpickling it would create the file :obj:`MARKER` (via
    ``builtins.open``): a stand-in for any code a crafted file could
    run."""
    def __init__(self, folder):
        self.path = str(Path(folder) / MARKER)

    def __reduce__(self):
        return (open, (self.path, 'w'))


# ----------------------------------------------------------------------
# Shared material, built once; every case works on its own copy.
@pytest.fixture(scope='module')
def material(tmp_path_factory):
    root = tmp_path_factory.mktemp('material')
    for name, seed in (('run', '7'), ('other', '8')):
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli.main(['train', '--model', 'brmrs', *TINY, '--seed',
                             seed, '--output-dir', str(root / name)]) == 0
    write_mmrec(make_synthetic(30, 25), root / 'mmrec', 'toy')
    data = make_synthetic(30, 25)
    diffmm = root / 'diffmm'
    diffmm.mkdir()
    store = data['user', 'rates', 'item']
    for key, file in (('edge_index', 'trnMat.pkl'),
                      ('val_edge_index', 'valMat.pkl'),
                      ('test_edge_index', 'tstMat.pkl')):
        ei = store[key].numpy()
        mat = sp.coo_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])),
                            shape=(30, 25))
        (diffmm / file).write_bytes(pickle.dumps(mat))
    np.save(diffmm / 'image_feat.npy', data['item'].x_image.numpy())
    return root


def copy(material: Path, name: str, tmp: Path) -> Path:
    shutil.copytree(material / name, tmp / name)
    return tmp / name


def truncate(path: Path, keep: float = 1 / 3) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def edit_inter(folder: Path, change: Callable[[List[str]], None]) -> Path:
    r"""Applies :obj:`change` to the lines of ``toy.inter``."""
    path = folder / 'toy.inter'
    lines = path.read_text().splitlines()
    change(lines)
    path.write_text('\n'.join(lines) + '\n')
    return path


def set_line(n: int, text: str) -> Callable[[List[str]], None]:
    def change(lines):
        lines[n - 1] = text
    return change


# ----------------------------------------------------------------------
@dataclass
class Case:
    r"""One bad input. :obj:`make` builds it in the case's folder from the
    shared material and returns the command line (``kind="cli"``) or a
    callable (``kind="api"``). :obj:`names` are texts the message must
    contain (``{tmp}`` is the case's folder); :obj:`absent` files must not
    exist afterwards; :obj:`code` is the exit status of a command."""
    id: str
    kind: str
    make: Callable[[Path, Path], Any]
    error: type
    names: Sequence[str]
    absent: Sequence[str] = ()
    code: int = 2


CASES: List[Case] = []


def cli_case(id, make, error, *names, absent=(), code=2):
    CASES.append(Case(id, 'cli', make, error, names, absent, code))


def api_case(id, make, error, *names, absent=()):
    CASES.append(Case(id, 'api', make, error, names, absent))


def resume_argv(tmp, material, *extra, model='brmrs', seed='7'):
    folder = copy(material, 'run', tmp)
    return ['train', '--model', model, *TINY, '--seed', seed,
            '--output-dir', str(folder), '--resume', *extra]


def with_run(prepare, *extra):
    r"""Resumes a copy of the finished run after :obj:`prepare` damaged
    it."""
    def make(tmp, material):
        argv = resume_argv(tmp, material, *extra)
        prepare(tmp / 'run', material)
        return argv
    return make


# -- run management -----------------------------------------------------
cli_case('resume-with-another-seed',
         lambda t, m: resume_argv(t, m, seed='8'), RunFolderError,
         'seed (stored 7, requested 8)', '{tmp}/run')
cli_case('resume-with-another-lr',
         lambda t, m: resume_argv(t, m, '--lr', '0.05'), RunFolderError,
         'lr (stored 0.001, requested 0.05)')
cli_case('resume-with-another-model',
         lambda t, m: resume_argv(t, m, model='lightgcn'), RunFolderError,
         "model (stored 'brmrs', requested 'lightgcn')")
cli_case('resume-with-other-shapes',
         lambda t, m: resume_argv(t, m, '--param', 'embedding_dim=16'),
         RunFolderError, 'params.embedding_dim (stored absent, requested 16)')
cli_case('resume-with-other-data',
         lambda t, m: resume_argv(t, m, '--synthetic-users', '70'),
         RunFolderError, 'data (stored 60 users', 'requested 70 users')
cli_case('resume-truncated-checkpoint',
         with_run(lambda r, m: truncate(r / 'last.pt')), CheckpointError,
         '{tmp}/run/last.pt', 'truncated or corrupt')
cli_case('resume-empty-checkpoint',
         with_run(lambda r, m: (r / 'last.pt').write_bytes(b'')),
         CheckpointError, '{tmp}/run/last.pt', 'empty')
cli_case('resume-random-bytes-checkpoint',
         with_run(lambda r, m: (r / 'last.pt').write_bytes(
             np.random.default_rng(0).bytes(4096))),
         CheckpointError, '{tmp}/run/last.pt', 'not a file written by')
cli_case('resume-checkpoint-of-another-run',
         with_run(lambda r, m: shutil.copy(m / 'other' / 'last.pt',
                                           r / 'last.pt')),
         CheckpointError, '{tmp}/run/last.pt', 'belongs to another run')
cli_case('resume-folder-without-manifest',
         with_run(lambda r, m: (r / 'run.json').unlink()), RunFolderError,
         '{tmp}/run', 'has no run.json')
cli_case('resume-truncated-manifest',
         with_run(lambda r, m: truncate(r / 'run.json')), RunFolderError,
         '{tmp}/run/run.json', 'not valid JSON')
cli_case('train-into-a-finished-run',
         lambda t, m: ['train', '--model', 'lightgcn', *TINY, '--output-dir',
                       str(copy(m, 'run', t))],
         RunFolderError, "'{tmp}/run' already holds a run")
cli_case('output-dir-is-a-file',
         lambda t, m: (t / 'out').write_text('mine') and
         ['train', '--model', 'brmrs', *TINY, '--output-dir', str(t / 'out')],
         RunFolderError, "'{tmp}/out' is a file")
cli_case('output-dir-below-a-file',
         lambda t, m: (t / 'out').write_text('mine') and
         ['train', '--model', 'brmrs', *TINY, '--output-dir',
          str(t / 'out' / 'run')],
         RunFolderError, "'{tmp}/out' is a file")
cli_case('resume-and-overwrite',
         lambda t, m: resume_argv(t, m, '--overwrite'), SystemExit,
         'argument --overwrite: not allowed with argument --resume')
cli_case('grid-into-a-grid-folder',
         lambda t, m: (t / 'grid.json').write_text('{}') and
         ['grid', '--model', 'brmrs', *TINY, '--grid', 'theta=0.1,0.2',
          '--output-dir', str(t)],
         RunFolderError, "'{tmp}' already holds a run (grid.json)")

# -- checkpoints and results files --------------------------------------
cli_case('evaluate-truncated-best-checkpoint',
         lambda t, m: truncate(copy(m, 'run', t) / 'best.pt') or
         ['evaluate', '--run-dir', str(t / 'run')],
         CheckpointError, '{tmp}/run/best.pt')
cli_case('evaluate-malicious-checkpoint',
         lambda t, m: torch.save({'model': {}, 'x': Payload(t)},
                                 t / 'evil.pt') or
         ['evaluate', '--checkpoint', str(t / 'evil.pt'), '--model', 'brmrs',
          *DATA],
         UnsafeCheckpointError, '{tmp}/evil.pt', 'refused', 'open',
         absent=[MARKER])
cli_case('evaluate-checkpoint-of-another-model',
         lambda t, m: ['evaluate', '--checkpoint',
                       str(copy(m, 'run', t) / 'best.pt'), '--model',
                       'lightgcn', *DATA],
         CheckpointError, '{tmp}/run/best.pt', "does not fit model 'lightgcn'")
cli_case('evaluate-truncated-results-json',
         lambda t, m: truncate(copy(m, 'run', t) / 'results.json') or
         ['evaluate', '--run-dir', str(t / 'run')],
         ValueError, '{tmp}/run/results.json', 'not valid JSON')
cli_case('report-truncated-results-json',
         lambda t, m: truncate(copy(m, 'run', t) / 'results.json') or
         ['report', str(t / 'run')],
         ValueError, '{tmp}/run/results.json', 'not valid JSON')
cli_case('evaluate-missing-checkpoint',
         lambda t, m: ['evaluate', '--checkpoint', str(t / 'nope.pt')],
         ValueError, '{tmp}/nope.pt', 'does not exist')


def edit_checkpoint_config(**change):
    r"""A copy of the finished run whose best.pt holds :obj:`change` in
    its training configuration."""
    def make(tmp, material):
        folder = copy(material, 'run', tmp)
        state = torch.load(folder / 'best.pt', weights_only=True)
        state['config'] = {**state['config'], **change}
        torch.save(state, folder / 'best.pt')
        return ['evaluate', '--run-dir', str(folder)]
    return make


cli_case('evaluate-checkpoint-with-a-negative-batch-size',
         edit_checkpoint_config(batch_size=-5), CheckpointError,
         "checkpoint '{tmp}/run/best.pt'", 'batch_size', '-5')
cli_case('evaluate-checkpoint-with-a-non-numeric-lr',
         edit_checkpoint_config(lr='abc'), CheckpointError,
         "checkpoint '{tmp}/run/best.pt'", 'lr', 'abc')
cli_case('evaluate-unknown-device',
         lambda t, m: ['evaluate', '--run-dir', str(copy(m, 'run', t)),
                       '--device', 'bogus'],
         ValueError, '--device', 'bogus')
cli_case('report-out-below-a-file',
         lambda t, m: (t / 'afile').write_text('mine') and
         ['report', str(copy(m, 'run', t)), '--out',
          str(t / 'afile' / 'table.md')],
         NotADirectoryError, "'{tmp}/afile' is a file")
cli_case('report-of-a-checkpoint',
         lambda t, m: ['report', str(copy(m, 'run', t) / 'best.pt')],
         ValueError, "'{tmp}/run/best.pt' is not a results file")

# -- arguments ----------------------------------------------------------
def brmrs_argv(*extra, command='train'):
    r"""``<command> --model brmrs`` on the tiny data with :obj:`extra`."""
    return lambda t, m: [command, '--model', 'brmrs', *TINY, *extra,
                         '--output-dir', str(t / 'o')]


cli_case('param-nan', brmrs_argv('--param', 'lambda_s=NaN'), ValueError,
         '--param lambda_s', 'NaN')
cli_case('param-infinity', brmrs_argv('--param', 'theta=-Infinity'),
         ValueError, '--param theta', '-Infinity')
cli_case('param-nan-inside-json',
         brmrs_argv('--param',
                    'modality_weights_item={"image": NaN, "text": 1}'),
         ValueError, '--param modality_weights_item')
cli_case('grid-value-nan',
         brmrs_argv('--grid', 'theta=0.1,nan', command='grid'), ValueError,
         '--grid theta', 'nan')
cli_case('unknown-parameter', brmrs_argv('--param', 'foo=1'), ValueError,
         "Unknown parameter 'foo'")
cli_case('lr-infinite', brmrs_argv('--lr', 'inf'), SystemExit,
         'argument --lr', 'finite')
cli_case('weight-decay-nan', brmrs_argv('--weight-decay', 'nan'), SystemExit,
         'argument --weight-decay', 'finite')
cli_case('diverging-run', brmrs_argv('--lr', '1e30', '--overwrite'),
         FloatingPointError, 'diverged at epoch', 'lr=1e+30', code=1)


# -- data files ---------------------------------------------------------
def mmrec_argv(change=None, feature=None):
    r"""Trains on a copy of the MMRec folder after :obj:`change` of its
    ``toy.inter`` lines and :obj:`feature` (``array -> array``) of its
    ``image_feat.npy``."""
    def make(tmp, material):
        folder = copy(material, 'mmrec', tmp)
        if change is not None:
            edit_inter(folder, change)
        if feature is not None:
            x = np.load(folder / 'image_feat.npy')
            np.save(folder / 'image_feat.npy', feature(x))
        return ['train', '--model', 'bprmf', '--data', str(folder), '--name',
                'toy', '-q', '--epochs', '1', '--output-dir', str(tmp / 'o')]
    return make


def with_nan(x):
    x = x.copy()
    x[4, 2] = np.nan
    return x


cli_case('inter-user-id-10e12', mmrec_argv(set_line(3, '1000000000000\t1\t0')),
         ValueError, '{tmp}/mmrec/toy.inter', 'line 3', '1000000000000',
         'reindex')
cli_case('inter-negative-id', mmrec_argv(set_line(3, '0\t-4\t0')),
         ValueError, 'toy.inter', "column 'itemID'", 'line 3', 'negative')
cli_case('inter-non-integer-id', mmrec_argv(set_line(4, 'abc\t1\t0')),
         ValueError, 'toy.inter', "column 'userID'", 'line 4', "'abc'")
cli_case('inter-duplicate-interaction',
         mmrec_argv(lambda lines: lines.append(lines[1])), ValueError,
         'toy.inter', 'duplicate interaction', 'line 2')
cli_case('inter-unknown-split-label', mmrec_argv(set_line(2, '0\t1\t7')),
         ValueError, 'toy.inter', "column 'x_label'", 'line 2', '7')
cli_case('inter-header-only',
         mmrec_argv(lambda lines: lines.__delitem__(slice(1, None))),
         ValueError, 'toy.inter', 'no interactions')
cli_case('feature-nan', mmrec_argv(feature=with_nan), ValueError,
         'image_feat.npy', 'row 4', 'column 2')
cli_case('feature-rows-mismatch', mmrec_argv(feature=lambda x: x[:-3]),
         ValueError, 'toy.inter', "'image': 22", "'text': 25")
cli_case('feature-pickled-objects',
         mmrec_argv(feature=lambda x: np.array([{'a': 1}] * 25,
                                               dtype=object)),
         ValueError, 'image_feat.npy')


def diffmm_argv(file, content):
    def make(tmp, material):
        folder = copy(material, 'diffmm', tmp)
        data = content(tmp, folder / file)
        if data is not None:
            (folder / file).write_bytes(data)
        return ['train', '--model', 'bprmf', '--data', str(folder), '-q',
                '--epochs', '1', '--output-dir', str(tmp / 'o')]
    return make


cli_case('diffmm-malicious-pickle',
         diffmm_argv('trnMat.pkl', lambda t, p: pickle.dumps(Payload(t))),
         ValueError, '{tmp}/diffmm/trnMat.pkl', 'refused', "open'",
         absent=[MARKER])
cli_case('diffmm-truncated-pickle',
         diffmm_argv('valMat.pkl', lambda t, p: truncate(p)), ValueError,
         '{tmp}/diffmm/valMat.pkl', 'cannot unpickle')
cli_case('diffmm-pickle-of-a-dict',
         diffmm_argv('tstMat.pkl', lambda t, p: pickle.dumps({'a': 1})),
         TypeError, '{tmp}/diffmm/tstMat.pkl', 'dict')
cli_case('diffmm-shapes-differ',
         diffmm_argv('tstMat.pkl', lambda t, p: pickle.dumps(
             sp.coo_matrix((31, 25)))),
         ValueError, 'different shapes', 'tstMat.pkl: (31, 25)')
cli_case('data-folder-of-unknown-layout',
         lambda t, m: (t / 'd').mkdir() or
         ['train', '--model', 'bprmf', '--data', str(t / 'd'),
          '--output-dir', str(t / 'o')],
         ValueError, "'{tmp}/d' holds no dataset of a known layout (mmrec: ",
         'diffmm: ', 'give --format')

# -- Python API ---------------------------------------------------------
api_case('config-lr-nan', lambda t, m: lambda: TrainConfig(lr=math.nan),
         ValueError, 'TrainConfig.lr', 'nan')
api_case('config-weight-decay-infinite',
         lambda t, m: lambda: TrainConfig(weight_decay=math.inf),
         ValueError, 'TrainConfig.weight_decay', 'inf')
api_case('run-parameter-nan',
         lambda t, m: lambda: train('brmrs', make_synthetic(30, 25),
                                  {'lambda_s': math.nan},
                                  TrainConfig(epochs=1)),
         ValueError, "'lambda_s'", 'nan')
api_case('num-users-10e12',
         lambda t, m: lambda: from_interactions([0, 1], [0, 1],
                                                num_users=10**12),
         ValueError, 'num_users', '1000000000000')
api_case('mismatched-lengths',
         lambda t, m: lambda: from_interactions([0, 1, 2], [0, 1]),
         ValueError, "argument 'users' has 3 entries",
         "argument 'items' has 2 entries")
api_case('restore-malicious-checkpoint',
         lambda t, m: torch.save({'model': Payload(t), 'config': {}},
                                 t / 'best.pt') or
         (lambda: restore(t / 'best.pt', {'model': 'bprmf', 'params': {},
                                          'data': {'format': 'synthetic'}})),
         UnsafeCheckpointError, '{tmp}/best.pt', absent=[MARKER])

api_case('conv-int64-features',
         lambda t, m: lambda: MultiModalLGConv()(
             torch.ones(3, 4, dtype=torch.long),
             torch.tensor([[0, 1, 2], [1, 2, 0]])),
         TypeError, "'x' must be a floating-point tensor", 'torch.int64')
api_case('conv-int64-channel',
         lambda t, m: lambda: MultiModalLGConv()(
             {'image': torch.ones(3, 2),
              'text': torch.ones(3, 2, dtype=torch.long)},
             torch.tensor([[0, 1, 2], [1, 2, 0]])),
         TypeError, "x['text']", 'floating-point')
api_case('conv-inputs-on-two-devices',
         lambda t, m: lambda: MultiModalLGConv()(
             torch.ones(3, 4), torch.tensor([[0, 1, 2], [1, 2, 0]],
                                            device='meta')),
         ValueError, "'x' is on cpu but 'edge_index' on meta")
api_case('conv-edge-weight-on-another-device',
         lambda t, m: lambda: MultiModalLGConv()(
             torch.ones(3, 4), torch.tensor([[0, 1, 2], [1, 2, 0]]),
             torch.ones(3, device='meta')),
         ValueError, "'edge_weight' is on meta")


# ----------------------------------------------------------------------
def snapshot(folder: Path) -> Dict[str, str]:
    return {str(p.relative_to(folder)):
            hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob('*')) if p.is_file()}


def run_cli(argv):
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(err), \
            pytest.raises(SystemExit) as exc:
        cli.main(argv)
    return exc.value.code, err.getvalue()


def test_the_catalogue_is_large_and_unique():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.bad_input
@pytest.mark.parametrize('case', CASES, ids=[c.id for c in CASES])
def test_bad_input(case, material, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default output folder would land here
    target = case.make(tmp_path, material)
    before = snapshot(tmp_path)
    names = [n.format(tmp=tmp_path) for n in case.names]
    if case.kind == 'api':
        with pytest.raises(case.error) as info:
            target()
        message = str(info.value)
    else:
        code, err = run_cli(target)
        lines = err.strip().splitlines()
        assert code == case.code, err
        assert 'Traceback' not in err
        message = lines[-1]
        assert message.startswith(f'pyg-brmrs {target[0]}: error: '), err
        if case.error is not SystemExit:  # argparse adds its usage line
            assert len(lines) == 1, err
            with pytest.raises(case.error):
                with contextlib.redirect_stdout(io.StringIO()):
                    cli.main([*target, '--debug'])
    for name in names:
        assert name in message, message
    after = snapshot(tmp_path)
    lost = {k for k in before if after.get(k) != before[k]}
    assert not lost, f'lost or altered: {sorted(lost)}'
    assert not [k for k in after if k.endswith('.tmp')]
    for name in case.absent:
        assert not (tmp_path / name).exists(), f'{name} was created'


@pytest.mark.bad_input
def test_full_disk_at_the_first_checkpoint_keeps_the_overwritten_run(
        material, tmp_path, monkeypatch):
    r"""The disk fills while the first checkpoint of an ``--overwrite`` run
    is written (:func:`torch.save` reports a short write as an
    ``inline_container.cc`` RuntimeError): one line names the checkpoint
    and the space, the old run is back as it was and no temporary file is
    left."""
    folder = copy(material, 'run', tmp_path)
    before = snapshot(tmp_path)

    def short_write(obj, f, *args, **kwargs):
        f.write(b'PK')
        raise RuntimeError('[enforce fail at inline_container.cc:672] . '
                           'unexpected pos 64 vs 0')

    free = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(torch, 'save', short_write)
    monkeypatch.setattr(shutil, 'disk_usage',
                        lambda p: free._replace(free=4096))
    code, err = run_cli(['train', '--model', 'brmrs', *TINY, '--seed', '8',
                         '--overwrite', '--output-dir', str(folder)])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith('pyg-brmrs train: error: cannot write '
                               'checkpoint: the disk is full'), err
    assert f"'{folder}/last.pt'" in lines[0] or \
        f"'{folder}/best.pt'" in lines[0], err
    assert snapshot(tmp_path) == before
    assert not list(tmp_path.rglob('*.tmp'))
