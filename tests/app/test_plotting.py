import json

import pytest
import torch

from pyg_brmrs.analysis import synergy_subsets


def random_case(num_users=12, num_items=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    user = {b: torch.randn(num_users, 4, generator=g)
            for b in ('fused', 'image', 'text')}
    item = {b: torch.randn(num_items, 4, generator=g) for b in user}
    users = torch.arange(num_users)
    train = torch.stack([users, (users + 1) % num_items])
    held = torch.stack([users, (users + 3) % num_items])
    return user, item, train, held


def test_plot_synergy_subsets(tmp_path):
    pytest.importorskip('matplotlib')
    from pyg_brmrs.app.plotting import plot_synergy_subsets
    user_emb, item_emb, train, held = random_case()
    a = synergy_subsets(user_emb, item_emb, train, held, k=1)
    b = synergy_subsets(user_emb, item_emb, train, held, k=2)
    path = plot_synergy_subsets({'BR-MRS': a, 'w/o CHNS': a.to_dict(),
                                 'K=2': b}, tmp_path / 'sub' / 'syn.png')
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    with pytest.raises(ValueError, match="'results'"):
        plot_synergy_subsets({}, tmp_path / 'x.png')
    with pytest.raises(ValueError, match='lacks'):
        plot_synergy_subsets({'m': {'synergy': 0.1}}, tmp_path / 'x.png')
    with pytest.raises(ValueError, match='.png'):
        plot_synergy_subsets({'m': a}, tmp_path / 'x.pdf')


def test_plot_training_curves(tmp_path):
    pytest.importorskip('matplotlib')
    from pyg_brmrs.app.plotting import plot_training_curves
    history = [{'epoch': e, 'loss': 0.7 / (e + 1),
                **({'valid': {'recall@20': 0.01 * e, 'ndcg@20': 0.005 * e}}
                   if e % 2 == 0 else {})} for e in range(10)]
    path = plot_training_curves(history, tmp_path / 'curves.png')
    assert path.is_file() and path.stat().st_size > 1000
    results = {'config': {}, 'history': history, 'best_epoch': 8}
    file = tmp_path / 'results.json'
    file.write_text(json.dumps(results))
    for source in (results, file, str(file)):
        path = plot_training_curves(source, tmp_path / 'c2.png',
                                    metric='ndcg@20')
        assert path.stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match='nope.json'):
        plot_training_curves(tmp_path / 'nope.json', tmp_path / 'c3.png')
    with pytest.raises(ValueError, match="'history'"):
        plot_training_curves({'config': {}}, tmp_path / 'c3.png')
    with pytest.raises(ValueError, match='entry 1'):
        plot_training_curves([{'epoch': 0, 'loss': 1.0}, {'loss': 2.0}],
                             tmp_path / 'c3.png')
    with pytest.raises(ValueError, match='recall@50'):
        plot_training_curves([{'epoch': 0, 'val': {'recall@20': 0.1}}],
                             tmp_path / 'c3.png', metric='recall@50')


def test_valid_record_reads_both_spellings():
    from pyg_brmrs.app.plotting import valid_record
    new, old = {'recall@20': 0.2}, {'recall@20': 0.1}
    assert valid_record({'epoch': 0, 'valid': new}) is new
    assert valid_record({'epoch': 0, 'val': old}) is old  # older histories
    assert valid_record({'epoch': 0, 'valid': new, 'val': old}) is new
    assert valid_record({'epoch': 0, 'loss': 1.0}) is None


def test_plotting_without_matplotlib(monkeypatch, tmp_path):
    import builtins

    from pyg_brmrs.app import plotting
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith('matplotlib'):
            raise ImportError('No module named matplotlib')
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', fake_import)
    with pytest.raises(ImportError, match=r'pip install pyg-brmrs\[plot\]'):
        plotting.plot_training_curves([{'epoch': 0, 'loss': 1.0}],
                                      tmp_path / 'x.png')
