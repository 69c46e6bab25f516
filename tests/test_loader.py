r"""Neighbour-sampled training: the objectives' draw-then-pass path, the
configuration, and (when pyg-lib or torch-sparse is installed) PyG's
LinkNeighborLoader batches, exact full-neighbourhood steps and training of
LightGCN, BR-MRS and the paper's model from Python and the command line."""
import subprocess
import sys

import pytest
import torch

from pyg_brmrs.app import recipes
from pyg_brmrs.data import make_synthetic
from pyg_brmrs.data.schema import ITEM_SIM, USER_SIM
from pyg_brmrs.loader import (
    flatten_draws,
    sampling_backend,
    unflatten_draws,
)
from pyg_brmrs.training import TrainConfig, Trainer

needs_backend = pytest.mark.skipif(
    sampling_backend() is None,
    reason='neighbour sampling needs pyg-lib or torch-sparse, neither is '
    'installed (pip install "pyg-brmrs[sparse]")')


@pytest.fixture(scope='module')
def data():
    data = make_synthetic(120, 150, feature_dim=8, seed=2)
    return recipes.prepare('brmrs_paper', data, k_item=5, k_user=5)


@pytest.mark.parametrize('name', ['lightgcn', 'brmrs_paper', 'brmrs',
                                  'rearm_objective_on_brmrs', 'freedom',
                                  'lgmrec', 'mgcn', 'dragon', 'bm3'])
def test_draw_then_pass_is_the_same_step(data, name):
    torch.manual_seed(0)
    model, objective = recipes.build(name, data, embedding_dim=8)
    if hasattr(model, 'edge_dropout'):
        model.pruning.edge_dropout = 0.0  # no stochastic graph here
    model.eval()
    users, pos = data['user', 'rates', 'item'].edge_index[:, :64]
    objective.generator = torch.Generator().manual_seed(5)
    ref = objective(model, data, users, pos)
    objective.generator = torch.Generator().manual_seed(5)
    draws = objective.draw(users)
    got = objective(model, data, users, pos, negatives=draws)
    assert set(ref) == set(got)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k])


def test_flatten_roundtrip():
    draws = {'candidates': torch.arange(12).view(4, 3),
             'uniform': torch.arange(100, 104)}
    flat, layout = flatten_draws(draws)
    assert flat.shape == (4, 4) and flat[1].tolist() == [3, 4, 5, 101]
    back = unflatten_draws(flat, layout)
    assert all(torch.equal(back[k], draws[k]) for k in draws)


@pytest.mark.bad_input
def test_config_checks():
    assert TrainConfig(batching='neighbor').num_neighbors == [10, 10]
    assert 'batching' not in TrainConfig().to_dict()  # same hash as before
    with pytest.raises(ValueError, match='TrainConfig.batching'):
        TrainConfig(batching='sampled')
    with pytest.raises(ValueError, match='TrainConfig.num_neighbors'):
        TrainConfig(batching='neighbor', num_neighbors=[10, 0])
    with pytest.raises(ValueError, match="batching='neighbor'"):
        TrainConfig(num_neighbors=[5])


@pytest.mark.bad_input
@pytest.mark.skipif(sampling_backend() is not None,
                    reason='a sampling backend is installed')
def test_no_backend_names_the_extra(data):
    model, objective = recipes.build('lightgcn', data, embedding_dim=8)
    with pytest.raises(ImportError, match=r'pyg-brmrs\[sparse\]'):
        Trainer(model, objective, data,
                TrainConfig(batching='neighbor', device='cpu'))


@needs_backend
def test_batches_hold_every_scored_item(data):
    from pyg_brmrs.loader import PairNeighborLoader
    loader = PairNeighborLoader(data, [5, 5])
    ei = data['user', 'rates', 'item'].edge_index
    idx = torch.tensor([0, 7, 9, 40, 41])
    items = torch.randint(0, 150, (5, 4))
    batch = loader(idx, items)
    b = batch.data
    assert torch.equal(b['user'].n_id[batch.users], ei[0, idx])
    assert torch.equal(b['item'].n_id[batch.pos_items], ei[1, idx])
    assert torch.equal(b['item'].n_id[batch.items], items)
    # local interaction edges are training edges
    u = b['user'].n_id[b['user', 'rates', 'item'].edge_index[0]]
    i = b['item'].n_id[b['user', 'rates', 'item'].edge_index[1]]
    train = set(zip(ei[0].tolist(), ei[1].tolist()))
    assert set(zip(u.tolist(), i.tolist())) <= train
    assert ('item', 'rated_by', 'user') not in b.edge_types
    assert b['item', 'similar', 'item'].edge_weight.numel() == \
        b['item', 'similar', 'item'].edge_index.size(1)


@pytest.mark.parametrize('name', ['lightgcn', 'bprmf', 'vbpr', 'freedom',
                                  'brmrs_paper', 'brmrs'])
def test_graph_edge_types_are_what_forward_reads(data, name):
    # Removing the kNN graphs a model does not declare leaves its output
    # unchanged (so a loader may leave them out of the batches).
    torch.manual_seed(0)
    model, _ = recipes.build(name, data, embedding_dim=8)
    if hasattr(model, 'edge_dropout'):
        model.pruning.edge_dropout = 0.0
    model.eval()
    declared = model.graph_edge_types
    assert declared is not None
    lean = data.clone()
    for t in (ITEM_SIM, USER_SIM):
        if t not in declared:
            del lean[t]
    ref, got = model.embed(data), model.embed(lean)
    assert torch.equal(ref.user_emb, got.user_emb)
    assert torch.equal(ref.item_emb, got.item_emb)
    if name.startswith('brmrs'):
        assert set(declared) == {ITEM_SIM, USER_SIM}


@needs_backend
def test_loader_samples_only_the_listed_graphs(data):
    from pyg_brmrs.loader import PairNeighborLoader
    idx = torch.tensor([0, 7, 9])
    for edge_types, want in ((None, {ITEM_SIM, USER_SIM}), ((), set()),
                             ([ITEM_SIM], {ITEM_SIM})):
        loader = PairNeighborLoader(data, [5, 5], edge_types=edge_types)
        got = set(loader(idx).data.edge_types) & {ITEM_SIM, USER_SIM}
        assert got == want, edge_types
    assert 'edge_types' in repr(PairNeighborLoader(data, [5], edge_types=()))
    # The trainer samples the graphs its model reads: none for LightGCN.
    model, objective = recipes.build('lightgcn', data, embedding_dim=8)
    trainer = Trainer(model, objective, data,
                      TrainConfig(batching='neighbor', device='cpu'))
    assert trainer.steps.loader.edge_types == []


@pytest.mark.bad_input
@needs_backend
def test_loader_refuses_other_edge_types(data):
    from pyg_brmrs.loader import PairNeighborLoader
    with pytest.raises(ValueError, match="'edge_types' lists the kNN"):
        PairNeighborLoader(data, [5], edge_types=[('user', 'rates',
                                                   'item')])


@needs_backend
def test_all_neighbours_give_the_full_graph_step(data):
    torch.manual_seed(0)
    model, objective = recipes.build('lightgcn', data, embedding_dim=8,
                                     num_layers=2)
    from pyg_brmrs.loader import PairNeighborLoader
    loader = PairNeighborLoader(data, [-1, -1])
    ei = data['user', 'rates', 'item'].edge_index
    idx = torch.arange(0, 300, 7)
    users = ei[0, idx]
    draws = objective.draw(users)
    flat, layout = flatten_draws(draws)
    batch = loader(idx, flat)
    local = unflatten_draws(batch.items, layout)
    got = objective(model, batch.data, batch.users, batch.pos_items,
                    negatives=local)
    ref = objective(model, data, users, ei[1, idx], negatives=draws)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], atol=1e-6, rtol=1e-5)


@needs_backend
@pytest.mark.parametrize('name', ['lightgcn', 'brmrs_paper', 'brmrs'])
def test_neighbor_training(data, name):
    torch.manual_seed(0)
    model, objective = recipes.build(name, data, embedding_dim=8)
    cfg = TrainConfig(epochs=2, batch_size=256, device='cpu', seed=3,
                      batching='neighbor', num_neighbors=[5, 5])
    before = [p.detach().clone() for p in model.parameters()]
    res = Trainer(model, objective, data, cfg).fit()
    assert res.epochs_run == 2
    assert all(torch.isfinite(torch.tensor(h['loss'])) for h in res.history
               if 'loss' in h)
    assert 0 <= res.test['recall@20'] <= 1
    assert any(not torch.equal(a, b.detach())
               for a, b in zip(before, model.parameters()))
    assert res.config['batching'] == 'neighbor'
    assert res.config['num_neighbors'] == [5, 5]


@needs_backend
def test_neighbor_training_is_seeded(data):
    def run():
        torch.manual_seed(0)
        model, objective = recipes.build('lightgcn', data, embedding_dim=8)
        cfg = TrainConfig(epochs=1, batch_size=256, device='cpu', seed=3,
                          batching='neighbor', num_neighbors=[3, 3])
        Trainer(model, objective, data, cfg).fit()
        return model.embedding.weight.detach()

    assert torch.equal(run(), run())


@needs_backend
@pytest.mark.slow
def test_cli_neighbor(tmp_path):
    out = tmp_path / 'run'
    cmd = [sys.executable, '-m', 'pyg_brmrs', 'train', '--model',
           'lightgcn', '--synthetic', '--synthetic-users', '80',
           '--synthetic-items', '90', '--epochs', '1', '--batching',
           'neighbor', '--num-neighbors', '5,5', '--output-dir', str(out),
           '--device', 'cpu', '-q']
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (out / 'results.json').exists()
