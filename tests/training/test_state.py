r"""The training state on its own: random generators of every library,
checkpoint round trips, the refusals of a resume, the resume record."""
import random

import numpy as np
import pytest
import torch

from pyg_brmrs.training import Checkpoints, TrainConfig
from pyg_brmrs.training import state as training_state
from pyg_brmrs.training.state import LAST, LoopState
from pyg_brmrs.utils.checkpoint import CheckpointError


def draws(generator):
    return (torch.rand(3, generator=generator).tolist(),
            torch.rand(2).tolist(), np.random.rand(2).tolist(),
            random.random())


def test_rng_state_restores_every_library():
    g = torch.Generator().manual_seed(3)
    training_state.seed_everything(5)
    state = training_state.rng_state(g)
    first = draws(g)
    training_state.seed_everything(99)  # anything else in between
    g.manual_seed(42)
    training_state.set_rng_state(state, g)
    assert draws(g) == first


def model_and_optimizer(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return model, opt


def test_checkpoint_round_trip(tmp_path):
    model, opt = model_and_optimizer()
    g = torch.Generator().manual_seed(1)
    loop = LoopState(epoch=4, history=[{'epoch': 0, 'loss': 1.0}],
                     best_value=0.3, best_epoch=2, bad_evals=1,
                     resumed=[{'at_epoch': 2, 'changed': {}, 'date': 'x'}])
    loop.improve(3, 0.4, {'recall@20': 0.4}, {'recall@20': 0.35}, model)
    config = TrainConfig(epochs=9).to_dict()
    store = Checkpoints(tmp_path, config_hash='abc')
    store.write(LAST, training_state.checkpoint(loop, model, opt, g, config,
                                                'abc'))
    expected = draws(g)
    other, other_opt = model_and_optimizer(seed=7)
    g2 = torch.Generator().manual_seed(11)
    resumed = Checkpoints(tmp_path, 'abc', resume=True)
    loop2, entry = training_state.resume(
        resumed, other, other_opt, g2, TrainConfig(epochs=12))
    for a, b in zip(model.parameters(), other.parameters()):
        assert torch.equal(a, b)
    assert other_opt.state_dict()['state'][0]['step'] == 1
    assert draws(g2) == expected
    assert loop2.epoch == 4 and loop2.best_epoch == 3 and \
        loop2.bad_evals == 0 and loop2.best_valid == {'recall@20': 0.4}
    assert entry['at_epoch'] == 4
    assert entry['changed'] == {'epochs': {'stored': 9, 'requested': 12}}
    assert [r['at_epoch'] for r in loop2.resumed] == [2, 4]
    assert set(loop2.best_state) == {'weight', 'bias'}


def test_resume_refusals(tmp_path):
    model, opt = model_and_optimizer()
    g = torch.Generator()
    config = TrainConfig().to_dict()
    state = training_state.checkpoint(LoopState(epoch=1), model, opt, g,
                                      config, 'mine')
    Checkpoints(tmp_path, 'mine').write(LAST, state)
    assert Checkpoints(tmp_path, 'mine').read_last() is None  # not resuming
    assert Checkpoints(tmp_path / 'none', resume=True).read_last() is None
    with pytest.raises(CheckpointError, match='belongs to another run'):
        Checkpoints(tmp_path, 'theirs', resume=True).read_last()
    assert Checkpoints(tmp_path, resume=True).read_last()['epoch'] == 1
    with pytest.raises(CheckpointError, match='version 1'):
        training_state.restore(dict(state, version=1), model, opt, g)
    bigger = torch.nn.Linear(3, 5)
    with pytest.raises(CheckpointError, match='does not fit'):
        training_state.restore(state, bigger,
                               torch.optim.Adam(bigger.parameters()), g)
    # nothing is written when saving is off, or on another rank
    Checkpoints(tmp_path / 'off', save=False).write(LAST, state)
    assert not (tmp_path / 'off').exists()


def test_setting_changes_lists_only_resumable_settings():
    a = TrainConfig(epochs=3, patience=5, lr=0.1).to_dict()
    b = TrainConfig(epochs=4, patience=5, lr=0.2).to_dict()
    assert training_state.setting_changes(a, b) == {
        'epochs': {'stored': 3, 'requested': 4}}
