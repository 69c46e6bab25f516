import json

import pytest
import torch

from pyg_brmrs.app import recipes
from pyg_brmrs.app.experiment import (
    DataSource,
    ensure_graphs,
    load_results,
    restore,
    train,
)
from pyg_brmrs.data import ITEM_SIM, USER_SIM, make_synthetic
from pyg_brmrs.training import TrainConfig


@pytest.fixture
def data():
    return make_synthetic(40, 30)


def test_ensure_graphs_builds_reuses_and_rebuilds(data):
    def reference(**kw):  # the recipe's transform on a fresh copy
        return recipes.prepare('brmrs', make_synthetic(40, 30), **kw)

    built = ensure_graphs('brmrs', data, {'k_item': 3, 'k_user': 4})
    # the recipe's graph defaults, then the given keywords:
    assert built == {'k_item': 3, 'k_user': 4, 'topk': 'per_part',
                     'cooccurrence': 'softmax'}
    ref = reference(k_item=3, k_user=4)
    for edge_type in (ITEM_SIM, USER_SIM):
        assert torch.equal(data[edge_type].edge_index,
                           ref[edge_type].edge_index)
        assert torch.equal(data[edge_type].edge_weight,
                           ref[edge_type].edge_weight)
    ei = data[ITEM_SIM].edge_index
    # Same graph keywords (other keywords may change): nothing is rebuilt.
    again = ensure_graphs('brmrs', data, {'k_item': 3, 'k_user': 4,
                                          'fusion': 'mean'}, built)
    assert again == built and data[ITEM_SIM].edge_index is ei
    # Other graph keywords: rebuilt; k_user=0 removes the old user graph.
    ensure_graphs('brmrs', data, {'k_item': 2, 'k_user': 0}, built)
    assert USER_SIM not in data.edge_types
    ref = reference(k_item=2, k_user=0)
    assert USER_SIM not in ref.edge_types
    assert torch.equal(data[ITEM_SIM].edge_index, ref[ITEM_SIM].edge_index)
    assert data[ITEM_SIM].edge_index is not ei
    # Recipes without graphs leave the data alone.
    assert ensure_graphs('lightgcn', data, {}, 'state') == 'state'


def test_data_source_validation(tmp_path):
    with pytest.raises(ValueError, match="Unknown data format 'csv'"):
        DataSource('csv', path=str(tmp_path))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        DataSource('mmrec', path=str(tmp_path / 'missing'))
    with pytest.raises(ValueError, match='needs a folder'):
        DataSource('diffmm')
    with pytest.raises(ValueError, match='int >= 2'):
        DataSource('synthetic', num_users=1)
    source = DataSource('mmrec', path=str(tmp_path))
    assert source.name == tmp_path.name and source.dataset == tmp_path.name
    assert DataSource.from_dict(source.to_dict()) == source
    with pytest.raises(ValueError, match='Unknown data source keys'):
        DataSource.from_dict({'format': 'synthetic', 'bogus': 1})
    small = DataSource('synthetic', num_users=40, num_items=30).load()
    assert small['user'].num_nodes == 40 and small['item'].num_nodes == 30


def test_run_records_spec_and_restore(data, tmp_path):
    source = DataSource('synthetic', num_users=40, num_items=30)
    config = TrainConfig(epochs=1, device='cpu')
    res = train('brmrs', source.load(), {'k_item': 3}, config,
                output_dir=tmp_path, source=source, label='tiny',
                subsets=True, subsets_k=5)
    stored = load_results(tmp_path)
    assert stored['info']['run'] == {
        'model': 'brmrs', 'params': {'k_item': 3},
        'data': {'format': 'synthetic', 'num_users': 40, 'num_items': 30,
                 'seed': 0},
        'dataset': 'synthetic', 'label': 'tiny'}
    assert stored['subsets']['k'] == 5
    assert res.subsets.k == 5 and res.graphs == {
        'k_item': 3, 'topk': 'per_part', 'cooccurrence': 'softmax'}
    restored = restore(tmp_path / 'best.pt')
    assert restored.evaluate()['test'] == pytest.approx(stored['test'])

    with pytest.raises(ValueError, match="Unknown parameter 'nope'"):
        train('brmrs', data, {'nope': 1}, TrainConfig(epochs=1))


def test_restore_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        restore(tmp_path / 'best.pt')
    torch.save({'model': {}}, tmp_path / 'best.pt')
    with pytest.raises(FileNotFoundError, match='No results.json'):
        restore(tmp_path / 'best.pt')
    (tmp_path / 'results.json').write_text(json.dumps({'test': {},
                                                       'info': {}}))
    with pytest.raises(ValueError, match="no info\\['run'\\]"):
        restore(tmp_path / 'best.pt')
    with pytest.raises(ValueError, match='not a pyg-brmrs checkpoint'):
        restore(tmp_path / 'best.pt', {'model': 'brmrs', 'params': {},
                                       'data': {'format': 'synthetic'}})
    with pytest.raises(ValueError, match="lacks 'data'"):
        restore(tmp_path / 'best.pt', {'model': 'brmrs', 'params': {},
                                       'data': None})


def test_every_json_file_is_written_once(tmp_path, monkeypatch):
    from pyg_brmrs.app import run_folder as runs
    from pyg_brmrs.app.experiment import grid
    written = []
    real = runs.write_json

    def counted(obj, path, *args, **kwargs):
        written.append(str(path))
        return real(obj, path, *args, **kwargs)
    monkeypatch.setattr(runs, 'write_json', counted)
    source = DataSource('synthetic', num_users=40, num_items=30)
    config = TrainConfig(epochs=1, device='cpu')
    train('bprmf', source.load(), {}, config, output_dir=tmp_path / 'one',
          source=source, subsets=True)
    res = grid('bprmf', source.load(), {}, {'embedding_dim': [4, 8]},
               config, source=source, output_dir=tmp_path / 'grid')
    files = ['one/run.json', 'one/results.json', 'grid/run_0/run.json',
             'grid/run_0/results.json', 'grid/run_1/run.json',
             'grid/run_1/results.json', 'grid/grid.json']
    assert sorted(written) == sorted(str(tmp_path / f) for f in files)
    # ... holding everything at once: the run record, the subsets entry and
    # the grid's source.
    assert load_results(tmp_path / 'one')['subsets'] is None  # one branch
    for n, dim in enumerate((4, 8)):
        stored = load_results(tmp_path / 'grid' / f'run_{n}')
        assert stored['info']['run']['params'] == {'embedding_dim': dim}
        assert stored['info']['run']['data'] == source.to_dict()
        assert stored['subsets'] is None
    summary = json.loads((tmp_path / 'grid' / 'grid.json').read_text())
    assert summary['model'] == 'bprmf' and summary['fixed_params'] == {}
    assert summary['dataset'] == 'synthetic'
    assert summary['best_params'] == res.best_params
