import json
import math

import numpy as np
import pytest

from pyg_brmrs.app import report


def fake_result(model, dataset, seed, r20, *, label=None, params=None,
                subsets=None, r10=None):
    r10 = r20 / 2 if r10 is None else r10
    test = {'recall@10': r10, 'recall@20': r20, 'ndcg@10': r10 / 2,
            'ndcg@20': r20 / 2}
    return {
        'best_epoch': 3, 'valid': dict(test), 'test': test, 'history': [],
        'stopped_early': False, 'epochs_run': 5, 'train_time': 1.5,
        'eval_time': 0.1, 'config': {'seed': seed},
        'info': {'run': {'model': model, 'params': params or {},
                         'data': None, 'dataset': dataset, 'label': label}},
        'subsets': subsets,
    }


def fake_subsets(u_img, u_txt, syn, deg, k=20):
    hits = {'fused': 0.5, 'image': 0.25 + u_img, 'text': 0.25 + u_txt}
    return {'k': k, 'num_pairs': 100, 'fused': 'fused',
            'unimodal': ['image', 'text'], 'hit_rate': hits,
            'unique': {'image': u_img, 'text': u_txt},
            'unique_fused': {}, 'synergy': syn, 'degradation': deg,
            'retained': 0.0, 'shared': 0.0, 'all_correct': 0.0,
            'none_correct': 0.0}


def rows_of(table):
    lines = [line for line in table.splitlines() if line.startswith('|')]
    return [[c.strip() for c in line.strip('|').split('|')]
            for line in lines]


def test_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    for n in (2, 3, 7):
        x = rng.random(n)
        mean, std = report.mean_std(x)
        assert math.isclose(mean, x.mean())
        assert math.isclose(std, x.std(ddof=1))
    assert report.mean_std([0.5]) == (0.5, None)
    with pytest.raises(ValueError):
        report.mean_std([])
    assert report.format_cell([0.1, 0.3], 3) == '0.200 ± 0.141'
    assert report.format_cell([0.25]) == '0.2500'
    assert report.format_cell([]) == report.MISSING
    assert report.format_cell([0.012], 2, scale=100) == '1.20'


def test_markdown_table_shape_and_errors():
    table = report.markdown_table(['a', 'bb'], [['x', '1'], ['yy', '22']])
    lines = table.splitlines()
    assert lines[0] == '| a  | bb |'
    assert lines[1] == '|:---|---:|'
    assert lines[3] == '| yy | 22 |'
    with pytest.raises(ValueError, match='Row 0'):
        report.markdown_table(['a', 'b'], [['only one']])


def test_results_table_layout_mean_std_and_bold():
    results = [
        fake_result('brmrs', 'sports', 1, 0.30),
        fake_result('brmrs', 'baby', 1, 0.20),
        fake_result('brmrs', 'baby', 2, 0.40),
        fake_result('lightgcn', 'baby', 1, 0.10),
    ]
    records = [report.to_record(r) for r in results]
    table = report.results_table(records)
    rows = rows_of(table)
    # Datasets in the paper's order, R@10 R@20 N@10 N@20 per dataset.
    assert rows[0] == ['Model', 'baby R@10', 'baby R@20', 'baby N@10',
                       'baby N@20', 'sports R@10', 'sports R@20',
                       'sports N@10', 'sports N@20']
    # Baselines before BR-MRS; mean ± sample std over the two seeds.
    assert [r[0] for r in rows[2:]] == ['LightGCN', 'BR-MRS (tuned variant)']
    std = np.std([0.20, 0.40], ddof=1)
    assert rows[3][2] == f'**0.3000 ± {std:.4f}**'
    assert rows[2][2] == '0.1000'
    assert rows[2][5] == report.MISSING  # LightGCN has no sports run
    assert rows[3][6] == '**0.3000**'
    assert 'over seeds' in table and 'n=2' in table
    assert 'best validation epoch' in table


def test_results_table_same_seed_count_note_and_valid_split():
    results = [fake_result('brmrs', 'baby', s, 0.2 + s / 100)
               for s in (1, 2, 3)]
    records = [report.to_record(r) for r in results]
    table = report.results_table(records, split='valid', bold_best=False)
    assert 'over 3 seeds' in table
    assert 'Best validation metrics' in table
    assert '**' not in table
    with pytest.raises(ValueError, match='split'):
        report.results_table(records, split='train')
    with pytest.raises(ValueError, match='No results'):
        report.results_table([])


def test_rows_with_different_params_are_not_averaged():
    results = [
        fake_result('brmrs', 'baby', 1, 0.2, params={'fusion': 'concat'}),
        fake_result('brmrs', 'baby', 1, 0.4, params={'fusion': 'mean'}),
    ]
    rows = rows_of(report.results_table(
        [report.to_record(r) for r in results]))
    labels = [r[0] for r in rows[2:]]
    assert labels == ['BR-MRS (tuned variant) (fusion="concat")',
                      'BR-MRS (tuned variant) (fusion="mean")']
    assert '±' not in ''.join(sum(rows, []))


def test_ablation_table_subsets_columns():
    results = [
        fake_result('brmrs', 'synthetic', 1, 0.3, label='full',
                    subsets=fake_subsets(0.10, 0.20, 0.05, 0.01)),
        fake_result('brmrs', 'synthetic', 2, 0.3, label='full',
                    subsets=fake_subsets(0.20, 0.20, 0.07, 0.03)),
        fake_result('brmrs', 'synthetic', 1, 0.2, label='CHNS only',
                    subsets=fake_subsets(0.30, 0.10, 0.02, 0.04)),
        fake_result('lightgcn', 'synthetic', 1, 0.1),
    ]
    table = report.ablation_table([report.to_record(r) for r in results])
    rows = rows_of(table)
    assert rows[0] == ['Variant', 'R@10', 'R@20', 'N@10', 'N@20',
                       'U_image %', 'U_text %', 'U_syn %', 'U_r %',
                       'hit fused %', 'hit image %', 'hit text %']
    assert [r[0] for r in rows[2:]] == ['full', 'CHNS only', 'LightGCN']
    std = np.std([10.0, 20.0], ddof=1)
    assert rows[2][5] == f'15.00 ± {std:.2f}'
    assert rows[2][6] == '20.00 ± 0.00'
    assert rows[3][7:] == ['2.00', '4.00', '50.00', '55.00', '35.00']
    assert rows[4][5:] == [report.MISSING] * 7
    assert 'K=20' in table

    mixed = results[:1] + [fake_result(
        'brmrs', 'synthetic', 3, 0.1, label='x',
        subsets=fake_subsets(0.1, 0.1, 0.1, 0.1, k=10))]
    with pytest.raises(ValueError, match='different cutoffs'):
        report.ablation_table([report.to_record(r) for r in mixed])


def test_ablation_table_without_subsets_has_metric_columns_only():
    results = [fake_result('lightgcn', 'baby', 1, 0.1),
               fake_result('bprmf', 'baby', 1, 0.05)]
    rows = rows_of(report.ablation_table(
        [report.to_record(r) for r in results]))
    assert rows[0] == ['Variant', 'R@10', 'R@20', 'N@10', 'N@20']
    assert [r[0] for r in rows[2:]] == ['LightGCN', 'BPR-MF']


def test_find_results_and_collect(tmp_path):
    for name, r20 in (('a', 0.1), ('b', 0.2)):
        folder = tmp_path / 'runs' / name
        folder.mkdir(parents=True)
        (folder / 'results.json').write_text(json.dumps(
            fake_result('brmrs', 'baby', 1, r20)))
    single = tmp_path / 'runs' / 'a' / 'results.json'
    assert report.find_results([tmp_path / 'runs']) == [
        single, tmp_path / 'runs' / 'b' / 'results.json']
    # A glob, a folder and a file naming the same run count it once.
    found = report.find_results([str(tmp_path / 'runs' / '*'),
                                 tmp_path / 'runs' / 'a', single])
    assert len(found) == 2
    records = report.collect([str(tmp_path / 'runs' / '*')])
    assert [r.test['recall@20'] for r in records] == [0.1, 0.2]

    with pytest.raises(FileNotFoundError, match='No file matches'):
        report.find_results([str(tmp_path / 'nothing*')])
    with pytest.raises(FileNotFoundError, match='does not exist'):
        report.find_results([tmp_path / 'missing.json'])
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='No results.json'):
        report.find_results([tmp_path / 'empty'])
    bad = tmp_path / 'bad.json'
    bad.write_text('{not json')
    with pytest.raises(ValueError, match='not valid JSON'):
        report.collect([bad])
    bad.write_text('{"foo": 1}')
    with pytest.raises(ValueError, match="no 'test'"):
        report.collect([bad])


def test_record_fallback_without_run_info():
    result = fake_result('x', 'y', 5, 0.1)
    result['info'] = {'model': 'LightGCN(10, 20)'}
    record = report.to_record(result)
    assert record.model == 'LightGCN' and record.dataset == ''
    assert record.seed == 5


def test_grid_table_marks_selected_point():
    grid = {
        'runs': [
            {'params': {'theta': 0.1}, 'valid': {'recall@20': 0.2},
             'test': {'recall@20': 0.5, 'ndcg@20': 0.2}, 'best_epoch': 1},
            {'params': {'theta': 0.2}, 'valid': {'recall@20': 0.3},
             'test': {'recall@20': 0.1, 'ndcg@20': 0.05}, 'best_epoch': 2},
        ],
        'best_params': {'theta': 0.2}, 'best': {}, 'select': 'recall@20',
    }
    rows = rows_of(report.grid_table(grid))
    assert rows[0] == ['', 'theta', 'valid R@20', 'test R@20', 'test N@20',
                       'best epoch']
    assert rows[2][0] == '' and rows[3][0] == '*'
    assert rows[3][1:3] == ['0.2', '0.3000']


def test_every_builtin_recipe_has_a_display_name():
    from pyg_brmrs.app.recipes import list_recipes
    assert set(list_recipes()) <= set(report.MODEL_NAMES)
    assert report.MODEL_NAMES['brmrs_paper'] != report.MODEL_NAMES['brmrs']


def test_summary_table_and_subsets_line():
    res = fake_result('brmrs', 'baby', 7, 0.3,
                      subsets=fake_subsets(0.1, 0.2, 0.03, 0.04))
    rows = rows_of(report.summary_table([res]))
    assert rows[2][:3] == ['BR-MRS (tuned variant)', 'baby', '7']
    assert rows[2][-3] == '0.3000'  # test R@20
    line = report.subsets_line(res['subsets'])
    assert line == ('U_image 10.00% | U_text 20.00% | U_syn 3.00% | '
                    'U_r 4.00% | hit@20 fused 50.00%, image 35.00%, text '
                    '45.00% (K=20, 100 test pairs)')
    assert 'single-branch' in report.subsets_line(None)


def test_metrics_table_orders_metrics():
    table = report.metrics_table({'test': {'map@10': 0.1, 'ndcg@20': 0.2,
                                           'recall@20': 0.3,
                                           'recall@10': 0.4}})
    assert rows_of(table)[0] == ['split', 'R@10', 'R@20', 'N@20', 'MAP@10']
