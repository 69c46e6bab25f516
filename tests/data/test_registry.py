import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import HeteroData

from pyg_brmrs.app import cli
from pyg_brmrs.app.experiment import DataSource
from pyg_brmrs.data import (
    RATES,
    detect_reader,
    from_interactions,
    get_reader,
    list_readers,
    make_synthetic,
    register_reader,
    registered_reader,
    unregister_reader,
)


# A data format defined here, as a user would: one ``.npz`` file holding the
# interaction arrays and one feature matrix per modality.
def write_npz(data, folder):
    folder.mkdir(parents=True, exist_ok=True)
    store = data[RATES]
    parts = [(store.edge_index, 0), (store.val_edge_index, 1),
             (store.test_edge_index, 2)]
    arrays = {
        'users': np.concatenate([ei[0].numpy() for ei, _ in parts]),
        'items': np.concatenate([ei[1].numpy() for ei, _ in parts]),
        'split': np.concatenate([np.full(ei.size(1), code)
                                 for ei, code in parts]),
        'feat_image': data['item'].x_image.numpy(),
        'feat_text': data['item'].x_text.numpy(),
    }
    np.savez(folder / 'interactions.npz', **arrays)


def read_npz(folder, *, only=None):
    z = np.load(Path(folder) / 'interactions.npz')
    feats = {key[len('feat_'):]: z[key] for key in z.files
             if key.startswith('feat_')}
    if only is not None:
        feats = {only: feats[only]}
    return from_interactions(z['users'], z['items'], z['split'], feats,
                             num_users=int(z['users'].max()) + 1)


def is_npz(folder):
    return (folder / 'interactions.npz').is_file()


@pytest.fixture
def npz_format():
    with registered_reader('npz', read_npz, detect=is_npz,
                           description='interactions.npz') as reader:
        yield reader
    assert 'npz' not in list_readers()


@pytest.fixture
def toy(tmp_path):
    data = make_synthetic(40, 30)
    write_npz(data, tmp_path / 'toy')
    return data, tmp_path / 'toy'


def same_data(a, b):
    for key in ('edge_index', 'val_edge_index', 'test_edge_index'):
        assert torch.equal(a[RATES][key], b[RATES][key])
    assert torch.equal(a['item'].x_image, b['item'].x_image)
    assert a['user'].num_nodes == b['user'].num_nodes


def test_builtin_formats_are_registered():
    assert list_readers()[:3] == ['mmrec', 'diffmm', 'synthetic']
    assert list_readers(folder=False) == ['synthetic']
    assert get_reader('mmrec').keywords()[0] == 'name'


def test_registered_reader_loads_through_data_source(npz_format, toy):
    data, folder = toy
    assert 'npz' in list_readers(folder=True)
    assert detect_reader(folder) is npz_format
    source = DataSource('npz', path=str(folder))
    assert source.dataset == 'toy' and source.name is None
    same_data(source.load(), data)
    assert DataSource.from_dict(source.to_dict()) == source
    # Reader keywords travel in `options` and are stored with the source.
    only = DataSource('npz', path=str(folder), options={'only': 'text'})
    assert only.to_dict()['options'] == {'only': 'text'}
    assert 'x_image' not in only.load()['item']
    with pytest.raises(ValueError, match="'bogus' is not a keyword of the "
                       "'npz' reader"):
        DataSource('npz', path=str(folder), options={'bogus': 1})


def test_registered_reader_end_to_end_through_cli(npz_format, toy,
                                                  tmp_path):
    data, folder = toy
    out = tmp_path / 'run'
    argv = ['train', '--model', 'bprmf', '--data', str(folder), '--epochs',
            '1', '-q', '--output-dir', str(out)]
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        assert cli.main(argv) == 0
    assert 'toy: 40 users, 30 items' in stdout.getvalue()
    stored = json.loads((out / 'results.json').read_text())
    assert stored['info']['run']['data'] == {'format': 'npz',
                                             'path': str(folder.resolve()),
                                             'seed': 0}
    # --format names it explicitly; `evaluate` reloads it from the record.
    args = cli.build_parser().parse_args(argv + ['--format', 'npz'])
    assert cli.data_source(args).format == 'npz'
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        assert cli.main(['evaluate', '--run-dir', str(out), '-q']) == 0
    assert 'stored test metrics reproduced' in stdout.getvalue()
    assert 'npz' in cli.epilog()


def test_unregistered_format_is_refused(toy):
    _, folder = toy
    with pytest.raises(ValueError, match="Unknown data format 'npz'"):
        DataSource('npz', path=str(folder))
    with pytest.raises(ValueError, match='no dataset of a known layout '
                       r'\(mmrec: .*; diffmm: .*\)'):
        detect_reader(folder)
    with pytest.raises(SystemExit):  # argparse: invalid choice
        with contextlib.redirect_stderr(io.StringIO()):
            cli.build_parser().parse_args(['train', '--model', 'bprmf',
                                           '--data', str(folder),
                                           '--format', 'npz'])


@pytest.mark.bad_input
def test_registration_errors(npz_format, toy):
    _, folder = toy
    with pytest.raises(ValueError, match="'npz' is already registered"):
        register_reader('npz', read_npz)
    with pytest.raises(ValueError, match="'mmrec' is already registered"):
        register_reader('mmrec', read_npz)
    with pytest.raises(ValueError, match="'name' must be a non-empty"):
        register_reader('', read_npz)
    with pytest.raises(TypeError, match="'fn' must be callable"):
        register_reader('x', 'read_npz')
    with pytest.raises(TypeError, match="'detect' must be callable"):
        register_reader('x', read_npz, detect=True)
    with pytest.raises(ValueError, match="Unknown data format 'nope'"):
        get_reader('nope')
    with pytest.raises(ValueError, match="Unknown data format 'nope'"):
        unregister_reader('nope')
    assert 'x' not in list_readers()
    # Two formats recognising one folder: refused, naming both.
    with registered_reader('npz2', read_npz, detect=is_npz):
        with pytest.raises(ValueError, match=r"several data formats "
                           r"\['npz', 'npz2'\]"):
            detect_reader(folder)
    # A reader must return HeteroData of the package schema.
    with registered_reader('broken', lambda folder: {'x': 1}):
        with pytest.raises(TypeError, match="'broken' returned dict"):
            DataSource('broken', path=str(folder)).load()
    with registered_reader('bad', lambda folder: HeteroData()):
        with pytest.raises(ValueError, match=r"data\['user'\].num_nodes is "
                           "missing"):
            DataSource('bad', path=str(folder)).load()
    # unregister_reader returns the reader and frees the name.
    reader = unregister_reader('npz')
    assert reader is npz_format and 'npz' not in list_readers()
    register_reader('npz', read_npz, detect=is_npz)
