r"""The pipeline hooks any recipe can use, each on its own: the learning-rate
schedule of ``TrainConfig.lr_decay`` (values, checkpoints, resume), the
per-epoch model hook, and the objective without negatives."""
import math

import pytest
import torch

from pyg_brmrs.data import make_synthetic
from pyg_brmrs.nn import BPRMF, FUSED
from pyg_brmrs.objectives import BPRObjective, NegativeFreeObjective
from pyg_brmrs.training import Checkpoints, TrainConfig, Trainer
from pyg_brmrs.utils.checkpoint import CheckpointError


@pytest.fixture(scope='module')
def small():
    return make_synthetic(num_users=80, num_items=60, feature_dim=4, seed=2)


def strip(history):
    return [{k: v for k, v in h.items() if not k.endswith('time')}
            for h in history]


def config(**kwargs):
    base = dict(epochs=5, batch_size=128, lr=1e-2, seed=3, device='cpu')
    base.update(kwargs)
    return TrainConfig(**base)


def mf(data, seed=0):
    torch.manual_seed(seed)
    return BPRMF.from_data(data, embedding_dim=8), \
        BPRObjective.from_data(data)


# ---------------------------------------------------------------------------
# learning-rate schedule
# ---------------------------------------------------------------------------
@pytest.mark.filterwarnings('ignore:Seems like:UserWarning')
def test_lr_decay_values_follow_mmrec_formula(small):
    cfg = config(lr_decay=(0.5, 2))
    assert cfg.lr_decay == (0.5, 2)
    assert [cfg.lr_factor(e) for e in range(4)] == [
        1.0, 0.5 ** 0.5, 0.5, 0.5 ** 1.5]
    model, obj = mf(small)
    trainer = Trainer(model, obj, small, cfg)
    seen = []
    step = trainer.optimizer.step

    def spy():  # the rate every Adam step of the epoch uses
        seen.append(trainer.optimizer.param_groups[0]['lr'])
        step()
    trainer.optimizer.step = spy
    result = trainer.fit()
    lrs = [h['lr'] for h in result.history]
    want = [1e-2 * 0.5 ** (e / 2) for e in range(5)]
    assert all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(lrs, want))
    steps = math.ceil(small['user', 'rates', 'item'].edge_index.size(1) /
                      128)
    assert len(seen) == 5 * steps
    for e in range(5):
        assert all(math.isclose(v, want[e], rel_tol=1e-12)
                   for v in seen[e * steps:(e + 1) * steps])


def test_no_schedule_is_a_constant_rate_and_keeps_old_hashes(small):
    cfg = config()
    assert cfg.lr_decay is None and cfg.lr_factor(7) == 1.0
    assert 'lr_decay' not in cfg.to_dict()  # run folders keep their hash
    assert config(lr_decay=[0.9, 10]).to_dict()['lr_decay'] == [0.9, 10]
    model, obj = mf(small)
    trainer = Trainer(model, obj, small, config(epochs=2))
    assert trainer.scheduler is None
    assert 'lr' not in trainer.fit().history[0]
    # a factor of 1 is the constant rate, epoch by epoch
    a, b = (Trainer(*mf(small), small, config(epochs=3, **kw)).fit()
            for kw in ({}, {'lr_decay': (1.0, 5)}))
    assert [h['loss'] for h in a.history] == [h['loss'] for h in b.history]


@pytest.mark.parametrize('bad', [0.96, (0.0, 50), (1.5, 50), (0.9, 0),
                                 (0.9, 2.5), (0.9, 50, 1), ('a', 50),
                                 (True, 50)])
def test_bad_lr_decay_names_the_setting(bad):
    with pytest.raises(ValueError, match='TrainConfig.lr_decay'):
        config(lr_decay=bad)


def test_resume_continues_the_schedule(small, tmp_path):
    full = Trainer(*mf(small), small, config(epochs=6, lr_decay=(0.5, 1)),
                   checkpoints=Checkpoints(tmp_path / 'a')).fit()
    Trainer(*mf(small), small, config(epochs=3, lr_decay=(0.5, 1)),
            checkpoints=Checkpoints(tmp_path / 'b')).fit()
    state = torch.load(tmp_path / 'b' / 'last.pt', weights_only=True)
    assert state['scheduler']['last_epoch'] == 3
    # a new process: fresh model, optimizer and schedule
    model, obj = mf(small, seed=9)
    trainer = Trainer(model, obj, small, config(epochs=6, lr_decay=(0.5, 1)),
                      checkpoints=Checkpoints(tmp_path / 'b', resume=True))
    resumed = trainer.fit()
    assert strip(resumed.history) == strip(full.history)
    assert [h['lr'] for h in resumed.history][3:] == [
        1e-2 * 0.5 ** e for e in (3, 4, 5)]
    # a checkpoint written without a schedule does not resume with one
    Trainer(*mf(small), small, config(epochs=2),
            checkpoints=Checkpoints(tmp_path / 'c')).fit()
    with pytest.raises(CheckpointError, match='learning-rate schedule'):
        Trainer(*mf(small), small, config(epochs=4, lr_decay=(0.5, 1)),
                checkpoints=Checkpoints(tmp_path / 'c', resume=True)).fit()
    with pytest.raises(CheckpointError, match='learning-rate schedule'):
        Trainer(*mf(small), small, config(epochs=6),
                checkpoints=Checkpoints(tmp_path / 'b', resume=True)).fit()


# ---------------------------------------------------------------------------
# per-epoch model hook
# ---------------------------------------------------------------------------
class Hooked(BPRMF):
    r"""Records every ``on_epoch_start`` call and a draw of its generator,
    so that the test sees the calls, their order and their randomness."""
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def on_epoch_start(self, epoch, generator=None):
        draw = float(torch.rand((), generator=generator))
        self.calls.append((epoch, self.training, draw))


def test_epoch_hook_runs_before_every_epoch_with_the_trainer_generator(
        small, tmp_path):
    torch.manual_seed(0)
    model = Hooked.from_data(small, embedding_dim=8)
    Trainer(model, BPRObjective.from_data(small), small,
            config(epochs=4), checkpoints=Checkpoints(tmp_path / 'a')).fit()
    assert [c[0] for c in model.calls] == [0, 1, 2, 3]
    assert all(c[1] for c in model.calls)  # in training mode
    draws = [c[2] for c in model.calls]
    assert len(set(draws)) == 4  # one generator, advancing
    # the same seed gives the same draws; a resumed run continues them
    torch.manual_seed(0)
    again = Hooked.from_data(small, embedding_dim=8)
    Trainer(again, BPRObjective.from_data(small), small, config(epochs=2),
            checkpoints=Checkpoints(tmp_path / 'b')).fit()
    torch.manual_seed(0)
    resumed = Hooked.from_data(small, embedding_dim=8)
    Trainer(resumed, BPRObjective.from_data(small), small, config(epochs=4),
            checkpoints=Checkpoints(tmp_path / 'b', resume=True)).fit()
    assert [c[2] for c in again.calls + resumed.calls] == draws


# ---------------------------------------------------------------------------
# objective without negatives
# ---------------------------------------------------------------------------
class Aligned(BPRMF):
    r"""A negative-free toy: pulls the pairs' embeddings together,
    :math:`\frac{1}{B}\sum_b (1 - \cos(\mathbf{p}_{u_b},
    \mathbf{q}_{i_b}))`."""
    def regularization(self, users, pos_items, neg_items=None, out=None):
        assert neg_items is None  # the objective draws none
        return (out.user_emb[users] ** 2).sum(-1).mean()

    def positive_loss(self, out, users, pos_items):
        u = out.user[FUSED][users]
        i = out.item[FUSED][pos_items]
        return {'align': (1 - torch.cosine_similarity(u, i, dim=-1)).mean()}


def test_negative_free_objective(small):
    torch.manual_seed(0)
    model = Aligned.from_data(small, embedding_dim=8)
    obj = NegativeFreeObjective.from_data(small, reg_weight=0.5)
    assert obj.draw(torch.tensor([0, 1])) == {}
    ei = small['user', 'rates', 'item'].edge_index
    users, items = ei[0, :32], ei[1, :32]
    terms = obj(model, small, users, items)
    out = model(small)
    align = (1 - torch.cosine_similarity(out.user_emb[users],
                                         out.item_emb[items])).mean()
    reg = model.regularization(users, items, None, out)
    assert torch.allclose(terms['align'], align)
    assert torch.allclose(terms['reg'], reg)
    assert torch.allclose(terms['loss'], align + 0.5 * reg)
    # given (empty) draws change nothing; the generator is kept
    assert torch.equal(obj(model, small, users, items, negatives={})['loss'],
                       terms['loss'])
    g = torch.Generator()
    obj.generator = g
    assert obj.generator is g
    # it trains (the alignment falls) and a model without the hook fails
    result = Trainer(model, obj, small, config(epochs=3)).fit()
    losses = [h['align'] for h in result.history]
    assert losses[-1] < losses[0]
    with pytest.raises(NotImplementedError, match='positive_loss'):
        obj(BPRMF.from_data(small, embedding_dim=8), small, users, items)
    with pytest.raises(ValueError, match="'reg_weight'"):
        NegativeFreeObjective(reg_weight=-1.0)


# ---------------------------------------------------------------------------
# optimiser: Adam (L2 in the gradient) or AdamW (decoupled decay)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('name', ['adam', 'adamw'])
def test_one_step_with_zero_gradient_follows_each_rule(name):
    from pyg_brmrs.training import make_adam
    p = torch.nn.Parameter(torch.full((3,), 2.0))
    lr, wd = 0.1, 0.5
    opt = make_adam([p], lr=lr, weight_decay=wd,
                    decoupled=name == 'adamw')
    assert type(opt) is (torch.optim.AdamW if name == 'adamw'
                         else torch.optim.Adam)
    (0.0 * p.sum()).backward()  # a zero loss gradient
    opt.step()
    if name == 'adamw':  # theta <- theta (1 - lr wd); Adam's step is 0
        want = 2.0 * (1 - lr * wd)
    else:  # g = wd theta, first step m/sqrt(v) = 1: theta - lr
        want = 2.0 - lr
    assert torch.allclose(p.detach(), torch.full((3,), want), atol=1e-6)


def test_trainer_uses_the_configured_optimizer(small):
    cfg = config(epochs=1, optimizer='adamw', weight_decay=1e-3)
    trainer = Trainer(*mf(small), small, cfg)
    assert type(trainer.optimizer) is torch.optim.AdamW
    assert trainer.optimizer.param_groups[0]['weight_decay'] == 1e-3
    assert cfg.to_dict()['optimizer'] == 'adamw'
    assert 'optimizer' not in config().to_dict()  # old run hashes kept
    assert type(Trainer(*mf(small), small, config(epochs=1)).optimizer) \
        is torch.optim.Adam


@pytest.mark.parametrize('bad', ['sgd', 'AdamW', None, 1])
def test_bad_optimizer_names_the_setting(bad):
    with pytest.raises(ValueError, match='TrainConfig.optimizer'):
        config(optimizer=bad)
