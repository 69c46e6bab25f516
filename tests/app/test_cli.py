import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from pyg_brmrs.app import cli

TINY = ['--synthetic', '--synthetic-users', '60', '--synthetic-items', '50',
        '--epochs', '2', '-q']


def run_main(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def load(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    r"""Three tiny runs: BR-MRS seeds 1 (with subsets and plots) and 2,
    LightGCN seed 1."""
    root = tmp_path_factory.mktemp('runs')
    out = {}
    for name, model, seed, extra in [
        ('brmrs-1', 'brmrs', 1, ['--subsets', '--plots']),
        ('brmrs-2', 'brmrs', 2, ['--subsets']),
        ('lightgcn-1', 'lightgcn', 1, ['--subsets']),
    ]:
        code, stdout, _ = run_main(['train', '--model', model, *TINY,
                                    '--seed', str(seed), '--output-dir',
                                    str(root / name), *extra])
        assert code == 0
        out[name] = (root / name, stdout)
    return out


def test_train_writes_results_and_summary(runs):
    folder, stdout = runs['brmrs-1']
    res = load(folder / 'results.json')
    assert (folder / 'best.pt').is_file() and (folder / 'last.pt').is_file()
    assert res['epochs_run'] == 2 and res['config']['seed'] == 1
    run = res['info']['run']
    assert run['model'] == 'brmrs' and run['params'] == {}
    assert run['data'] == {'format': 'synthetic', 'num_users': 60,
                           'num_items': 50, 'seed': 0}
    assert set(res['subsets']['unique']) == {'image', 'text'}
    assert res['subsets']['k'] == 20
    assert (folder / 'curves.png').is_file()
    assert (folder / 'subsets.png').is_file()
    # The summary table: model, dataset, seed and the test metrics.
    assert '| BR-MRS' in stdout and 'test R@20' in stdout
    assert f"{res['test']['recall@20']:.4f}" in stdout
    assert 'test subsets: U_image' in stdout
    # Single-branch models get no subsets.
    lgc_folder, lgc_stdout = runs['lightgcn-1']
    assert load(lgc_folder / 'results.json')['subsets'] is None
    assert 'single-branch' in lgc_stdout


def test_train_is_reproducible_from_the_command_line(runs, tmp_path):
    folder, _ = runs['brmrs-2']
    code, _, _ = run_main(['train', '--model', 'brmrs', *TINY, '--seed', '2',
                           '--output-dir', str(tmp_path / 'again'),
                           '--subsets'])
    assert code == 0
    first, second = load(folder / 'results.json'), load(
        tmp_path / 'again' / 'results.json')
    assert first['test'] == second['test']
    assert first['subsets'] == second['subsets']
    assert [h['loss'] for h in first['history']] == \
        [h['loss'] for h in second['history']]


def test_evaluate_run_dir_reproduces_test_metrics(runs, tmp_path):
    folder, _ = runs['brmrs-1']
    stored = load(folder / 'results.json')
    code, stdout, _ = run_main(['evaluate', '--run-dir', str(folder),
                                '--subsets', '--out',
                                str(tmp_path / 'm.json'), '-q'])
    assert code == 0
    metrics = load(tmp_path / 'm.json')
    for key, value in stored['test'].items():
        assert metrics['test'][key] == pytest.approx(value, abs=1e-6)
    for key, value in stored['valid'].items():
        assert metrics['valid'][key] == pytest.approx(value, abs=1e-6)
    assert metrics['subsets'] == stored['subsets']
    assert 'reproduced' in stdout and '| test' in stdout

    # Without results.json the model and data options are needed.
    lone = tmp_path / 'lone'
    lone.mkdir()
    shutil.copy(folder / 'best.pt', lone / 'best.pt')
    code, _, err = _fails(['evaluate', '--checkpoint',
                           str(lone / 'best.pt')])
    assert 'No results.json' in err
    code, stdout, _ = run_main([
        'evaluate', '--checkpoint', str(lone / 'best.pt'), '--model',
        'brmrs', '--synthetic', '--synthetic-users', '60',
        '--synthetic-items', '50', '--out', str(tmp_path / 'm2.json'), '-q'
    ])
    assert code == 0
    assert load(tmp_path / 'm2.json')['test'] == metrics['test']


def test_grid_selects_on_validation(runs, tmp_path):
    out = tmp_path / 'grid'
    code, stdout, _ = run_main(['grid', '--model', 'brmrs', *TINY, '--seed',
                                '1', '--grid', 'fusion=concat,mean',
                                '--grid', 'theta=0.1,0.3',
                                '--output-dir', str(out)])
    assert code == 0
    grid = load(out / 'grid.json')
    assert len(grid['runs']) == 4
    best = max(grid['runs'], key=lambda r: r['valid']['recall@20'])
    assert grid['best_params'] == best['params']
    assert 'selected on validation recall@20 only' in stdout
    assert grid['model'] == 'brmrs' and grid['fixed_params'] == {}
    # Each point is seeded like `train`: the (concat, 0.1) point is the
    # default BR-MRS of the brmrs-1 run.
    first = next(r for r in grid['runs']
                 if r['params'] == {'fusion': 'concat', 'theta': 0.1})
    assert first['test'] == load(runs['brmrs-1'][0] / 'results.json')['test']
    # The runs can be evaluated on their own.
    n = grid['runs'].index(first)
    run = load(out / f'run_{n}' / 'results.json')
    assert run['info']['run']['params'] == {'fusion': 'concat', 'theta': 0.1}


def test_report_renders_tables(runs, tmp_path):
    root = runs['brmrs-1'][0].parent
    code, stdout, _ = run_main(['report', str(root / 'brmrs-1'),
                                str(root / 'lightgcn-1' / 'results.json')])
    assert code == 0
    assert '| LightGCN' in stdout and '| BR-MRS' in stdout
    assert 'synthetic R@20' in stdout and '±' not in stdout

    out = tmp_path / 'table.md'
    code, stdout, _ = run_main(['report', str(root / 'brmrs-*'), '--out',
                                str(out)])
    assert code == 0 and '2 runs' in stdout
    table = out.read_text()
    rows = [line for line in table.splitlines() if line.startswith('| BR')]
    assert len(rows) == 1 and '±' in rows[0]
    assert 'over 2 seeds' in table

    code, stdout, _ = run_main(['report', str(root), '--ablation'])
    assert code == 0
    assert 'U_syn %' in stdout and 'U_image %' in stdout


def _fails(argv):
    err = io.StringIO()
    out = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), \
            pytest.raises(SystemExit) as exc:
        cli.main(argv)
    return exc.value.code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize('argv, message', [
    (['train', '--model', 'brmrs', '--synthetic', '--param', 'foo=1'],
     "Unknown parameter 'foo' for model 'brmrs'"),
    (['train', '--model', 'brmrs', '--synthetic', '--param', 'fusion'],
     '--param expects key=value'),
    (['train', '--model', 'brmrs', '--synthetic', '--param', 'fusion=mean',
      '--param', 'fusion=concat'], 'given twice'),
    (['train', '--model', 'brmrs', '--data', '/no/such/folder'],
     "data folder '/no/such/folder' does not exist"),
    (['train', '--model', 'brmrs'], 'give a dataset'),
    (['train', '--model', 'brmrs', *TINY, '--param', 'fusion=nope'],
     "Unknown fusion 'nope'"),
    (['grid', '--model', 'brmrs', '--synthetic', '--grid', 'theta='],
     'has no value'),
    (['grid', '--model', 'lightgcn', '--synthetic', '--grid', 'theta=1,2'],
     "Unknown parameter 'theta'"),
    (['evaluate'], 'give --run-dir DIR or --checkpoint FILE'),
    (['evaluate', '--run-dir', '/no/such/run'], 'does not exist'),
    (['report', '/no/such/*.json'], 'No file matches'),
    (['train', '--model', 'bprmf', '--data', '/no/such/folder', '--device',
      'bogus'], "--device: device='bogus' is not a device name"),
    (['train', '--model', 'bprmf', *TINY, '--seed',
      '1180591620717411303424'], 'TrainConfig.seed must be an int in'),
    (['train', '--model', 'brmrs', *TINY, '--param', 'embedding_dim=0'],
     "'embedding_dim' must be >= 1 (got 0)"),
    (['train', '--model', 'brmrs', *TINY, '--param', 'lambda_s=abc'],
     "Parameter 'lambda_s' of model 'brmrs' must be a number (its default "
     "is 1.0; got 'abc')"),
    (['train', '--model', 'brmrs_paper', *TINY, '--param', 'theta=abc'],
     "Parameter 'theta' of model 'brmrs_paper' must be a number"),
    (['train', '--model', 'vbpr', *TINY, '--preset', 'baby'],
     '--preset baby has no settings for --model vbpr'),
])
def test_bad_input_exits_2_with_one_line(argv, message):
    code, _, err = _fails(argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f'pyg-brmrs {argv[0]}: error: ')
    assert message in lines[0]
    assert 'Traceback' not in err


def test_argparse_errors_exit_2():
    code, _, err = _fails(['train', '--model', 'nope', '--synthetic'])
    assert code == 2 and 'invalid choice' in err
    code, _, err = _fails(['train', '--model', 'brmrs', '--synthetic',
                           '--data', 'x'])
    assert code == 2 and 'not allowed with' in err
    code, _, err = _fails(['train', '--model', 'brmrs', '--synthetic',
                           '--epochs', '0'])
    assert code == 2 and 'must be >= 1' in err


def test_help_is_useful():
    code, out, _ = _fails(['--help'])
    assert code == 0
    for word in ('train', 'evaluate', 'grid', 'report', 'brmrs', 'lightgcn',
                 'validation'):
        assert word in out
    for command, word in (('train', '--param KEY=VALUE'),
                          ('evaluate', '--run-dir'),
                          ('grid', 'VALIDATION'), ('report', '--ablation')):
        code, out, _ = _fails([command, '--help'])
        assert code == 0 and word in out
    code, out, _ = run_main([])
    assert code == 0 and 'COMMAND' in out


def test_value_parsing():
    assert cli.parse_value('0.5') == 0.5
    assert cli.parse_value('1e-3') == 1e-3
    assert cli.parse_value('true') is True and cli.parse_value('False') is \
        False
    assert cli.parse_value('mean') == 'mean'
    assert cli.parse_value('{"image": 0.1, "text": 0.9}') == {
        'image': 0.1, 'text': 0.9}
    assert cli.parse_params(['fusion=mean', 'lambda_s=0.5',
                             'modality_weights_item={"image":0.1,'
                             '"text":0.9}']) == {
        'fusion': 'mean', 'lambda_s': 0.5,
        'modality_weights_item': {'image': 0.1, 'text': 0.9}}
    assert cli.parse_grid(['theta=0.05,0.1', 'fusion=concat, mean',
                           'w={"a":1,"b":2},{"a":3,"b":4}']) == {
        'theta': [0.05, 0.1], 'fusion': ['concat', 'mean'],
        'w': [{'a': 1, 'b': 2}, {'a': 3, 'b': 4}]}
    with pytest.raises(ValueError, match='key=value'):
        cli.parse_params(['=3'])


def test_preset_fills_defaults_and_param_overrides():
    parser = cli.build_parser()
    args = parser.parse_args(['train', '--model', 'brmrs', '--synthetic',
                              '--preset', 'sports', '--param', 'k_item=7'])
    params = cli.model_params(args)
    assert params['k_item'] == 7 and params['k_user'] == 25
    assert params['modality_weights_item'] == {'image': 0.2, 'text': 0.8}
    # a preset without settings for the model is an error, not a no-op
    args = parser.parse_args(['train', '--model', 'lightgcn', '--synthetic',
                              '--preset', 'baby'])
    with pytest.raises(cli.CLIError, match='no settings for --model '
                                           'lightgcn'):
        cli.model_params(args)


def test_every_preset_names_only_accepted_keywords():
    from pyg_brmrs.app import recipes
    for dataset, per_model in recipes.DATASET_DEFAULTS.items():
        for model, params in per_model.items():
            names = recipes.parameter_names(model)
            accepted = set(names['graph']) | set(names['model']) | set(
                names['objective'])
            training = recipes.training_params(params)  # checked names
            unknown = set(params) - accepted - {
                recipes.TRAIN_PREFIX + k for k in training}
            assert not unknown, f'{dataset}/{model}: {sorted(unknown)}'
    args = cli.build_parser().parse_args(
        ['train', '--model', 'brmrs', '--synthetic', '--preset', 'tiktok'])
    assert cli.model_params(args) == {'num_layers': 3}


def test_data_format_is_detected(tmp_path):
    from pyg_brmrs.data import make_synthetic, write_mmrec
    write_mmrec(make_synthetic(30, 25), tmp_path / 'toy', 'toy')
    args = cli.build_parser().parse_args(['train', '--model', 'bprmf',
                                          '--data', str(tmp_path / 'toy')])
    source = cli.data_source(args)
    assert source.format == 'mmrec' and source.name == 'toy'
    (tmp_path / 'empty').mkdir()
    args = cli.build_parser().parse_args(['train', '--model', 'bprmf',
                                          '--data', str(tmp_path / 'empty')])
    with pytest.raises(ValueError, match='no dataset of a known layout'):
        cli.data_source(args)


def test_nothing_else_imports_cli():
    root = Path(cli.__file__).parents[1]  # the package
    for path in root.rglob('*.py'):
        if path.name not in ('cli.py', '__main__.py'):
            text = path.read_text()
            assert 'from pyg_brmrs.app.cli' not in text and \
                'import cli' not in text, path


def test_unexpected_errors_are_one_line_unless_debug(monkeypatch, tmp_path):
    from pyg_brmrs.app import experiment

    def fail(*args, **kwargs):
        raise RuntimeError('CUDA out of memory.\nTried to allocate 9 GiB')

    monkeypatch.setattr(experiment, 'train', fail)
    argv = ['train', '--model', 'bprmf', *TINY, '--output-dir',
            str(tmp_path / 'o')]
    code, _, err = _fails(argv)
    assert code == 1 and err.count('\n') == 1
    assert err.startswith('pyg-brmrs train: error: unexpected RuntimeError: '
                          'CUDA out of memory. Tried to allocate 9 GiB')
    assert '--debug' in err
    with pytest.raises(RuntimeError, match='CUDA out of memory'):
        with contextlib.redirect_stdout(io.StringIO()):
            cli.main([*argv, '--debug'])

    def denied(*args, **kwargs):
        raise PermissionError(13, 'Permission denied', '/x/results.json')

    monkeypatch.setattr(experiment, 'train', denied)
    code, _, err = _fails(argv)
    assert code == 2
    assert err.strip() == ("pyg-brmrs train: error: Permission denied: "
                           "'/x/results.json'")


def test_resumed_run_is_announced(tmp_path):
    out = str(tmp_path / 'r')
    code, _, _ = run_main(['train', '--model', 'bprmf', *TINY,
                           '--output-dir', out])
    assert code == 0
    code, stdout, _ = run_main(['train', '--model', 'bprmf', *TINY[:-3],
                                '--epochs', '3', '-q', '--output-dir', out,
                                '--resume'])
    assert code == 0
    assert 'resumed after epoch 1 (epochs 2 -> 3)' in stdout
    res = load(tmp_path / 'r' / 'results.json')
    assert res['epochs_run'] == 3 and res['resumed'][0]['at_epoch'] == 2


def test_ctrl_c_is_one_line_that_says_how_to_resume(monkeypatch, tmp_path):
    from pyg_brmrs.app import experiment

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, 'train', interrupted)
    out = str(tmp_path / 'o')
    argv = ['train', '--model', 'bprmf', *TINY, '--output-dir', out,
            '--overwrite']
    monkeypatch.setattr('sys.argv', ['pyg-brmrs', *argv])
    code, _, err = _fails(argv)
    assert code == 130 and err.count('\n') == 1
    assert err.startswith(f"pyg-brmrs train: error: interrupted (its last "
                          f"finished epoch is in '{out}'); continue it with: "
                          f"pyg-brmrs train --model bprmf")
    assert err.rstrip().endswith('--resume') and '--overwrite' not in err
    with pytest.raises(KeyboardInterrupt):
        with contextlib.redirect_stdout(io.StringIO()):
            cli.main([*argv, '--debug'])
