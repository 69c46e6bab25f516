r"""Data-parallel training with two gloo processes on the CPU: the run
completes, the ranks hold identical parameters after every step, only rank
0 writes, evaluating its checkpoint in one process gives exactly its
metrics, a resumed run equals the uninterrupted one, and the final metrics
are close to those of one process with the same global batch.

``PYG_BRMRS_DDP_DEVICE=cuda`` (``benchmarks/gpu_check.sh``) runs the same
tests with nccl on the first two GPUs."""
import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from pyg_brmrs.data import make_synthetic
from pyg_brmrs.evaluation import RankingEvaluator
from pyg_brmrs.nn import BRMRS
from pyg_brmrs.objectives import BRMRSObjective
from pyg_brmrs.training import TrainConfig, Trainer
from pyg_brmrs.utils import distributed

DEVICE = os.environ.get('PYG_BRMRS_DDP_DEVICE', 'cpu')
pytestmark = [
    pytest.mark.skipif(
        not torch.distributed.is_available() or
        not torch.distributed.is_gloo_available(),
        reason='torch.distributed with gloo is not available'),
    pytest.mark.skipif(
        DEVICE == 'cuda' and torch.cuda.device_count() < 2,
        reason='PYG_BRMRS_DDP_DEVICE=cuda needs two GPUs'),
]

EPOCHS = 2
BATCH = 128  # per process: a step trains on 2 x 128 pairs
#: |recall@20 (2 processes) - recall@20 (1 process, batch 256)| on this
#: data: the same pairs per step, other negative draws.
TOLERANCE = 0.05


def small_data():
    return make_synthetic(num_users=150, num_items=120, feature_dim=8,
                          seed=3)


def build(data):
    torch.manual_seed(0)
    model = BRMRS.from_data(data, embedding_dim=8)
    objective = BRMRSObjective.from_data(data, num_candidates=4)
    return model, objective


def config(**kwargs):
    base = dict(epochs=EPOCHS, batch_size=BATCH, lr=5e-3, seed=7,
                device=DEVICE, num_threads=1)
    base.update(kwargs)
    return TrainConfig(**base)


def strip(history):
    return [{k: v for k, v in h.items() if not k.endswith('_time')}
            for h in history]


def worker(rank, world, port, folder):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                      RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)  # the caller's choice: the Trainer sets none
    import pyg_brmrs.app.run_folder as run_folder
    import pyg_brmrs.training.state as training_state
    writes = []
    for module, name in ((training_state, 'save_checkpoint'),
                         (run_folder, 'write_json')):
        real = getattr(module, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            writes.append(_name)
            return _real(*args, **kwargs)
        setattr(module, name, counted)

    def into(path, cfg, resume=False):
        # what pyg_brmrs.app.experiment.train does around the trainer: the
        # run folder opened by rank 0 (the others take its decision), the
        # checkpoints, the resumption record and the results
        model, objective = build(data)
        trainer = Trainer(model, objective, data, cfg)
        manifest = run_folder.make_manifest(
            {'model': 'brmrs (DDP test)'},
            run_folder.data_fingerprint(trainer.data), cfg.to_dict())
        opened = run_folder.open_run(path, manifest, resume=resume)
        trainer.checkpoints = opened.checkpoints()
        if trainer.start() is not None:
            opened.record_resume(manifest, trainer.loop.resumed)
        return trainer, opened

    data = small_data()
    trainer, opened = into(os.path.join(folder, 'ddp'), config())
    assert trainer.dist.world_size == world
    step = trainer.optimizer.step
    diffs = []

    def checked_step(*args, **kwargs):
        out = step(*args, **kwargs)
        flat = torch.cat([p.detach().reshape(-1)
                          for p in trainer.model.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(world)]
        torch.distributed.all_gather(gathered, flat)
        diffs.append(max(float((g - flat).abs().max()) for g in gathered))
        return out
    trainer.optimizer.step = checked_step
    result = trainer.fit()
    opened.write_results(result.to_dict())
    opened.close()  # the run is over: its folder is unlocked

    # Interrupted after one epoch, then resumed to EPOCHS:
    res_dir = os.path.join(folder, 'resumed')
    first, opened = into(res_dir, config(epochs=1))
    with opened:
        first.fit()
    resumer, reopened = into(res_dir, config(), resume=True)
    resumed = resumer.fit()
    reopened.close()
    with open(os.path.join(folder, f'rank{rank}.json'), 'w') as f:
        json.dump(dict(diffs=diffs, writes=writes, valid=result.valid,
                       test=result.test, history=strip(result.history),
                       resumed_history=strip(resumed.history),
                       resumed_test=resumed.test,
                       world_size=result.world_size), f)
    distributed.shutdown()


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def ddp_run(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp('ddp'))
    mp.spawn(worker, args=(2, free_port(), folder), nprocs=2, join=True)
    out = []
    for rank in range(2):
        with open(os.path.join(folder, f'rank{rank}.json')) as f:
            out.append(json.load(f))
    return folder, out


def test_identical_parameters_after_every_step(ddp_run):
    _, (r0, r1) = ddp_run
    steps = EPOCHS * -(-small_data()['user', 'rates', 'item'].edge_index.size(
        1) // (2 * BATCH))
    assert len(r0['diffs']) == len(r1['diffs']) == steps
    assert max(r0['diffs'] + r1['diffs']) == 0.0
    # Both ranks saw the same losses and metrics:
    assert r0['history'] == r1['history'] and r0['test'] == r1['test']
    assert r0['world_size'] == r1['world_size'] == 2


def test_only_rank_zero_writes(ddp_run):
    folder, (r0, r1) = ddp_run
    assert r1['writes'] == []
    assert 'save_checkpoint' in r0['writes']
    assert 'write_json' in r0['writes']  # run.json and results.json
    for name in ('run.json', 'results.json', 'last.pt', 'best.pt'):
        assert os.path.isfile(os.path.join(folder, 'ddp', name))
    with open(os.path.join(folder, 'ddp', 'results.json')) as f:
        results = json.load(f)
    assert results['world_size'] == 2
    assert results['info']['backend'] == (
        'nccl' if DEVICE == 'cuda' else 'gloo')
    assert len(results['history']) == EPOCHS


def test_checkpoint_evaluates_to_the_same_metrics(ddp_run):
    # The sharded-and-gathered validation metrics of the best epoch equal
    # one process's evaluation of best.pt exactly.
    folder, (r0, _) = ddp_run
    data = small_data().to(DEVICE)
    model, _ = build(data)
    state = torch.load(os.path.join(folder, 'ddp', 'best.pt'),
                       weights_only=True)
    model.load_state_dict(state['model'])
    model.to(DEVICE)
    out = model.embed(data)
    store = data['user', 'rates', 'item']
    for split, key in (('valid', 'val_edge_index'),
                       ('test', 'test_edge_index')):
        evaluator = RankingEvaluator(store.edge_index, store[key], 120,
                                     ks=(10, 20))
        assert evaluator(out.user_emb, out.item_emb) == r0[split]


def test_resume_equals_uninterrupted_run(ddp_run):
    _, (r0, r1) = ddp_run
    for r in (r0, r1):
        assert r['resumed_history'] == r['history']
        assert r['resumed_test'] == r['test']


def test_close_to_one_process(ddp_run):
    _, (r0, _) = ddp_run
    data = small_data()
    model, objective = build(data)
    single = Trainer(model, objective, data,
                     config(batch_size=2 * BATCH, distributed=False)).fit()
    assert single.world_size == 1
    assert abs(single.test['recall@20'] - r0['test']['recall@20']) \
        <= TOLERANCE
    assert abs(single.test['ndcg@20'] - r0['test']['ndcg@20']) <= TOLERANCE


def test_distributed_true_without_launch_is_refused(monkeypatch):
    monkeypatch.delenv('WORLD_SIZE', raising=False)
    with pytest.raises(RuntimeError, match='torchrun'):
        distributed.setup(True)
    assert distributed.setup(None).world_size == 1
    with pytest.raises(ValueError, match='TrainConfig.distributed'):
        TrainConfig(distributed='yes')
