import importlib.util
import json
from pathlib import Path

import pytest

from pyg_brmrs.data import make_synthetic, write_mmrec

EXAMPLES = Path(__file__).resolve().parents[2] / 'examples'
SCRIPTS = ['quickstart', 'amazon_baby', 'amazon_sports', 'amazon_clothing',
           'custom_dataset', 'ablation']


@pytest.fixture
def example(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))  # for `import _amazon`

    def load(name):
        spec = importlib.util.spec_from_file_location(
            f'example_{name}', EXAMPLES / f'{name}.py')
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope='module')
def tiny_mmrec(tmp_path_factory):
    root = tmp_path_factory.mktemp('mmrec')
    write_mmrec(make_synthetic(60, 50), root / 'baby', 'baby')
    return root


@pytest.mark.parametrize('name', SCRIPTS)
def test_example_imports_and_exposes_main(example, name):
    module = example(name)
    assert callable(module.main)
    assert module.__doc__ and len(module.__doc__) > 200


@pytest.mark.parametrize('name', ['baby', 'sports', 'clothing'])
def test_amazon_without_data_explains_how_to_get_it(example, name, tmp_path,
                                                    capsys):
    module = example(f'amazon_{name}')
    code = module.main(['--root', str(tmp_path / 'nothing')])
    err = capsys.readouterr().err
    assert code == 2
    assert f'{name}.inter' in err and 'image_feat.npy' in err
    assert 'not part of this repository' in err
    assert 'drive.google.com/drive/folders/13cBy1EA_saTUuXxVllKgtfci2A09jyaG' \
        in err


def test_amazon_runs_on_an_mmrec_folder(example, tiny_mmrec, tmp_path,
                                        capsys):
    module = example('amazon_baby')
    out = tmp_path / 'res'
    # --root may be the dataset folder's parent (MMRec's data/ folder).
    code = module.main(['--root', str(tiny_mmrec), '--models',
                        'bprmf,brmrs', '--epochs', '1', '--device', 'cpu',
                        '--out', str(out), '--quiet'])
    assert code == 0
    table = (out / 'results.md').read_text()
    assert '| BPR-MF' in table and '| BR-MRS' in table
    assert 'baby R@20' in table and 'U_syn %' in table
    run = json.loads((out / 'brmrs' / 'seed999' / 'results.json').read_text())
    assert run['info']['run']['params']['k_item'] == 10  # the Baby preset
    assert run['info']['run']['params']['num_layers'] == 4
    assert module.main(['--root', str(tiny_mmrec), '--models', 'nope']) == 2


def test_custom_dataset_recommends_with_original_ids(example, capsys):
    module = example('custom_dataset')
    code = module.main(['--users', '40', '--items', '30', '--epochs', '1'])
    out = capsys.readouterr().out
    assert code == 0
    line = next(x for x in out.splitlines()
                if x.startswith('top-10 for user_0007: '))
    items = line.split(': ', 1)[1].split(', ')
    assert len(items) == 10 and all(i.startswith('sku_') for i in items)
    bought = next(x for x in out.splitlines()
                  if x.startswith('user_0007 bought'))
    assert not set(items) & set(bought.split(': ', 1)[1].split(', '))


def test_ablation_writes_table(example, tiny_mmrec, tmp_path, capsys):
    module = example('ablation')
    out = tmp_path / 'abl'
    code = module.main(['--data', str(tiny_mmrec / 'baby'), '--variants',
                        'full,syn-only,rearm', '--epochs', '1', '--device',
                        'cpu', '--out', str(out)])
    assert code == 0
    table = (out / 'ablation.md').read_text()
    for label in ('BR-MRS (CHNS + L_syn, cross)',
                  'L_syn only (λ_h=0) + fused BPR', 'REARM objective'):
        assert f'| {label}' in table
    assert 'U_image %' in table and 'U_r %' in table
    assert module.main(['--variants', 'nope']) == 2
    assert module.main(['--data', str(tmp_path / 'missing')]) == 2
