
import pytest
import torch

from pyg_brmrs.data import make_synthetic
from pyg_brmrs.nn import BRMRS
from pyg_brmrs.objectives import BPRObjective, BRMRSObjective
from pyg_brmrs.training import Checkpoints, TrainConfig, Trainer, make_adam
from pyg_brmrs.utils.checkpoint import CheckpointError


@pytest.fixture(scope='module')
def small():
    return make_synthetic(num_users=150, num_items=120, feature_dim=8,
                          seed=3)


def build(data, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = BRMRS.from_data(data, embedding_dim=8, **kwargs)
    objective = BRMRSObjective.from_data(data, num_candidates=4)
    return model, objective


def strip(history):
    drop = ('train_time', 'eval_time')
    return [{k: v for k, v in h.items() if k not in drop} for h in history]


def config(**kwargs):
    base = dict(epochs=4, batch_size=256, lr=5e-3, patience=20, seed=7,
                device='cpu')
    base.update(kwargs)
    return TrainConfig(**base)


def test_same_seed_same_result(small):
    runs = []
    for _ in range(2):
        model, obj = build(small)
        runs.append(Trainer(model, obj, small, config()).fit())
    assert strip(runs[0].history) == strip(runs[1].history)
    assert runs[0].test == runs[1].test
    model, obj = build(small)
    other = Trainer(model, obj, small, config(seed=8)).fit()
    assert strip(other.history) != strip(runs[0].history)


def test_resume_reproduces_uninterrupted_run(small, tmp_path):
    model, obj = build(small)
    full = Trainer(model, obj, small, config(epochs=6),
                   checkpoints=Checkpoints(tmp_path / 'a')).fit()

    model, obj = build(small)
    Trainer(model, obj, small, config(epochs=3),
            checkpoints=Checkpoints(tmp_path / 'b', config_hash='x')).fit()
    # a new process would build a fresh model and optimizer:
    model, obj = build(small, seed=123)
    trainer = Trainer(model, obj, small, config(epochs=6),
                      checkpoints=Checkpoints(tmp_path / 'b', 'x',
                                              resume=True))
    entry = trainer.start()
    assert entry['at_epoch'] == 3
    assert entry['changed'] == {'epochs': {'stored': 3, 'requested': 6}}
    resumed = trainer.fit()
    assert len(resumed.history) == 6
    assert strip(resumed.history) == strip(full.history)
    assert resumed.test == full.test and resumed.valid == full.valid
    assert resumed.best_epoch == full.best_epoch
    assert [r['at_epoch'] for r in resumed.resumed] == [3]
    assert {'torch', 'pyg_brmrs', 'date', 'model'} <= set(resumed.info)
    assert set(p.name for p in (tmp_path / 'b').iterdir()) == {
        'last.pt', 'best.pt'}
    best = torch.load(tmp_path / 'b' / 'best.pt', weights_only=True)
    assert best['epoch'] == resumed.best_epoch and best['config_hash'] == 'x'
    # a checkpoint of another run is refused
    model, obj = build(small)
    other = Trainer(model, obj, small, config(epochs=6),
                    checkpoints=Checkpoints(tmp_path / 'b', 'y', resume=True))
    with pytest.raises(CheckpointError, match="belongs to another run"):
        other.fit()
    # without resume=True the checkpoints are only written (a fresh run)
    model, obj = build(small)
    fresh = Trainer(model, obj, small, config(epochs=1),
                    checkpoints=Checkpoints(tmp_path / 'c', resume=True))
    assert fresh.start() is None


def test_make_adam_fused_matches_plain_adam():
    # torch's fused kernel is chosen for CPU float parameters and makes the
    # same updates as the element-wise Adam up to float rounding
    torch.manual_seed(0)
    init = [torch.randn(50, 3, 8), torch.randn(8, 17), torch.randn(8)]
    params = {}
    for fused in (None, False):
        ps = [torch.nn.Parameter(x.clone()) for x in init]
        opt = make_adam(ps, lr=1e-2, weight_decay=1e-3, fused=fused)
        assert opt.param_groups[0]['fused'] is (True if fused is None
                                                else None)
        for step in range(20):
            g = torch.Generator().manual_seed(step)
            for p in ps:
                p.grad = torch.randn(p.shape, generator=g) * 10**(step % 3)
            opt.step()
        params[fused] = ps
    for a, b, x in zip(params[None], params[False], init):
        assert not torch.equal(a, x)
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
    # not fused when a parameter cannot be: an integer tensor, no parameters
    # in the fused kernel's list (param groups are read too)
    assert make_adam([{'params': [torch.nn.Parameter(torch.randn(2))]}]
                     ).param_groups[0]['fused'] is True
    assert make_adam([torch.nn.Parameter(torch.randn(2)),
                      torch.zeros(2, dtype=torch.long)]
                     ).param_groups[0]['fused'] is None


def test_trainer_uses_fused_adam_also_after_resume(small, tmp_path):
    model, obj = build(small)
    trainer = Trainer(model, obj, small, config(epochs=1),
                      checkpoints=Checkpoints(tmp_path))
    assert trainer.optimizer.param_groups[0]['fused'] is True
    trainer.fit()
    # a checkpoint written with the element-wise kernel resumes fused
    last = tmp_path / 'last.pt'
    state = torch.load(last, weights_only=False)
    state['optimizer']['param_groups'][0]['fused'] = None
    torch.save(state, last)
    model, obj = build(small)
    resumed = Trainer(model, obj, small, config(epochs=2),
                      checkpoints=Checkpoints(tmp_path, resume=True))
    res = resumed.fit()
    assert resumed.optimizer.param_groups[0]['fused'] is True
    assert len(res.history) == 2


def test_early_stopping_and_best_epoch(small):
    model, obj = build(small)
    # a learning rate so small that nothing changes: validation never
    # improves after the first evaluation.
    res = Trainer(model, obj, small,
                  config(epochs=50, lr=1e-30, patience=3)).fit()
    assert res.stopped_early
    assert res.best_epoch == 0
    assert res.epochs_run == 4
    assert 'test' in res.history[0] and 'test' not in res.history[1]
    # Every evaluated epoch records its validation metrics under 'valid':
    assert all(h['valid'] == res.history[0]['valid'] for h in res.history)
    assert not any('val' in h for h in res.history)


def test_training_beats_the_untrained_model(small):
    model, obj = build(small)
    trainer = Trainer(model, obj, small, config(epochs=15, lr=1e-2))
    before = trainer.evaluate('valid')['recall@20']
    res = trainer.fit()
    assert res.valid['recall@20'] > before + 0.05
    # the model holds the best weights afterwards:
    assert trainer.evaluate('valid') == res.valid


def test_bpr_objective_trains_brmrs(small):
    torch.manual_seed(0)
    model = BRMRS.from_data(small, embedding_dim=8, fusion='concat')
    res = Trainer(model, BPRObjective.from_data(small), small,
                  config(epochs=2)).fit()
    assert set(res.history[0]) >= {'bpr', 'reg', 'loss', 'valid'}
    assert 0 < res.valid['recall@20'] <= 1


def test_bad_config_and_data(small):
    with pytest.raises(ValueError, match='batch_size'):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match='lr'):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match='valid_metric'):
        TrainConfig(valid_metric='recall@50')
    data = small.clone()
    del data['user', 'rates', 'item'].val_edge_index
    model, obj = build(small)
    with pytest.raises(ValueError, match="no 'val_edge_index'"):
        Trainer(model, obj, data, config())
    model, obj = build(small)
    trainer = Trainer(model, obj, small, config())
    with pytest.raises(ValueError, match='split'):
        trainer.evaluate('train')


def test_trainer_leaves_threads_and_callers_data_alone(small):
    threads = torch.get_num_threads()
    tensors = {(key, name): value for key, store in
               ((s._key, s) for s in small.stores)
               for name, value in store.items() if torch.is_tensor(value)}
    model, obj = build(small)
    trainer = Trainer(model, obj, small,
                      config(epochs=1, num_threads=threads + 1))
    trainer.fit()
    assert torch.get_num_threads() == threads
    assert trainer.data is not small
    after = {(key, name): value for key, store in
             ((s._key, s) for s in small.stores)
             for name, value in store.items() if torch.is_tensor(value)}
    assert after.keys() == tensors.keys()
    assert all(after[k] is tensors[k] for k in tensors)  # same objects
