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
    reason='PyG\'s compiled sampler needs pyg-lib or torch-sparse, neither '
    'is installed (pip install "pyg-brmrs[sparse]")')
#: The samplers to test: the pure-torch one always, PyG's when installed.
BACKENDS = ['torch'] + (['pyg'] if sampling_backend() is not None else [])


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
    from pyg_brmrs.loader import PairNeighborLoader
    with pytest.raises(ImportError, match=r'pyg-brmrs\[sparse\]'):
        PairNeighborLoader(data, [5], backend='pyg')
    # the default falls back to the pure-torch sampler
    assert PairNeighborLoader(data, [5]).backend == 'torch'


@pytest.mark.bad_input
def test_unknown_loader_backend(data):
    from pyg_brmrs.loader import PairNeighborLoader
    with pytest.raises(ValueError, match='sampler backend'):
        PairNeighborLoader(data, [5], backend='dgl')


@pytest.mark.parametrize('backend', BACKENDS)
def test_batches_hold_every_scored_item(data, backend):
    from pyg_brmrs.loader import PairNeighborLoader
    loader = PairNeighborLoader(data, [5, 5], backend=backend)
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


@pytest.mark.parametrize('backend', BACKENDS)
def test_loader_samples_only_the_listed_graphs(data, backend):
    from pyg_brmrs.loader import PairNeighborLoader
    idx = torch.tensor([0, 7, 9])
    for edge_types, want in ((None, {ITEM_SIM, USER_SIM}), ((), set()),
                             ([ITEM_SIM], {ITEM_SIM})):
        loader = PairNeighborLoader(data, [5, 5], edge_types=edge_types,
                                    backend=backend)
        got = set(loader(idx).data.edge_types) & {ITEM_SIM, USER_SIM}
        assert got == want, edge_types
    assert 'edge_types' in repr(PairNeighborLoader(data, [5], edge_types=()))
    # The trainer samples the graphs its model reads: none for LightGCN.
    model, objective = recipes.build('lightgcn', data, embedding_dim=8)
    trainer = Trainer(model, objective, data,
                      TrainConfig(batching='neighbor', device='cpu'))
    assert trainer.steps.loader.edge_types == []


@pytest.mark.bad_input
def test_loader_refuses_other_edge_types(data):
    from pyg_brmrs.loader import PairNeighborLoader
    with pytest.raises(ValueError, match="'edge_types' lists the kNN"):
        PairNeighborLoader(data, [5], edge_types=[('user', 'rates',
                                                   'item')])


@pytest.mark.parametrize('backend', BACKENDS)
def test_all_neighbours_give_the_full_graph_step(data, backend):
    torch.manual_seed(0)
    model, objective = recipes.build('lightgcn', data, embedding_dim=8,
                                     num_layers=2)
    from pyg_brmrs.loader import PairNeighborLoader
    loader = PairNeighborLoader(data, [-1, -1], backend=backend)
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


def test_neighbor_training_is_seeded(data):
    def run():
        torch.manual_seed(0)
        model, objective = recipes.build('lightgcn', data, embedding_dim=8)
        cfg = TrainConfig(epochs=1, batch_size=256, device='cpu', seed=3,
                          batching='neighbor', num_neighbors=[3, 3])
        Trainer(model, objective, data, cfg).fit()
        return model.embedding.weight.detach()

    assert torch.equal(run(), run())


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


def small_graph():
    from torch_geometric.data import HeteroData
    g = torch.Generator().manual_seed(4)
    data = HeteroData()
    data['user'].num_nodes, data['item'].num_nodes = 9, 12
    ei = torch.unique(torch.stack([torch.randint(0, 9, (40, ), generator=g),
                                   torch.randint(0, 12, (40, ),
                                                 generator=g)]), dim=1)
    data['user', 'rates', 'item'].edge_index = ei
    data['item', 'rated_by', 'user'].edge_index = ei.flip(0)
    return data


def sample(sampler, seeds):
    return sampler._sample(dict(seeds))


def test_torch_sampler_follows_directional_sampling():
    # Every sampled edge is an edge of the graph, every frontier node gets
    # min(k, deg) distinct in-edges per type, nodes are distinct and new
    # nodes expand at the next hop; -1 gives the whole 2-hop neighbourhood.
    from pyg_brmrs.loader import TorchNeighborSampler
    data = small_graph()
    ei = data['user', 'rates', 'item'].edge_index
    edges = {('user', 'rates', 'item'): set(zip(ei[0].tolist(),
                                                ei[1].tolist())),
             ('item', 'rated_by', 'user'): set(zip(ei[1].tolist(),
                                                   ei[0].tolist()))}
    for fanout in ([2, 2], [-1, -1], [1, 3]):
        torch.manual_seed(0)
        s = TorchNeighborSampler(data, fanout)
        seeds = {'user': torch.tensor([0, 3, 3]), 'item': torch.tensor([5])}
        out = sample(s, seeds)
        for t, ids in out.node.items():
            assert ids.unique().numel() == ids.numel(), t
        assert out.node['user'][:2].tolist() == [0, 3]  # seeds first
        for et, row in out.row.items():
            src, _, dst = et
            col = out.col[et]
            g_src = out.node[src][row]
            g_dst = out.node[dst][col]
            pairs = list(zip(g_src.tolist(), g_dst.tolist()))
            assert set(pairs) <= edges[et]
            assert len(set(pairs)) == len(pairs)  # no edge twice
            csc_row = s.row_dict[s.to_rel_type[et]]
            assert torch.equal(csc_row[out.edge[et]], g_src)
        if fanout == [-1, -1]:
            # two hops from user 0, 3 and item 5 along both directions
            want_items = {i for u, i in edges[('user', 'rates', 'item')]
                          if u in (0, 3)} | {5}
            assert set(out.node['item'].tolist()) >= want_items
        # per target of the first hop: min(k, deg) in-edges
        k = fanout[0]
        et = ('item', 'rated_by', 'user')
        dst_local = out.col[et]
        for local_u, u in enumerate([0, 3]):
            deg = sum(1 for (i, v) in edges[et] if v == u)
            got = int((dst_local == local_u).sum())
            assert got >= (deg if k == -1 else min(k, deg))


def inclusion_frequencies(make_sampler, trials=400):
    counts = {}
    for t in range(trials):
        torch.manual_seed(t)
        out = sample(make_sampler(), {'user': torch.tensor([0]),
                                      'item': torch.empty(0,
                                                          dtype=torch.long)})
        et = ('item', 'rated_by', 'user')
        first = out.col[et] == 0
        for i in out.node['item'][out.row[et][first]].tolist():
            counts[i] = counts.get(i, 0) + 1
    return {i: c / trials for i, c in counts.items()}


def test_torch_sampler_draws_uniformly_without_replacement():
    # each of user 0's deg items is drawn with probability k/deg
    from pyg_brmrs.loader import TorchNeighborSampler
    data = small_graph()
    ei = data['user', 'rates', 'item'].edge_index
    items = ei[1, ei[0] == 0].tolist()
    k = 2
    assert len(items) > k
    freq = inclusion_frequencies(lambda: TorchNeighborSampler(data, [k]))
    assert set(freq) == set(items)
    want = k / len(items)
    for i in items:  # 400 draws: binomial std <= 0.025
        assert abs(freq[i] - want) < 0.1, (i, freq[i], want)


@needs_backend
def test_torch_sampler_and_pygs_draw_the_same_fanout():
    # Both draw k of the deg neighbours, from the same support, on average
    # (PyG's torch-sparse backend is not uniform over the positions: see
    # TorchNeighborSampler's docstring; ours is, as tested above).
    from torch_geometric.sampler import NeighborSampler
    from pyg_brmrs.loader import TorchNeighborSampler
    data = small_graph()
    ours = inclusion_frequencies(lambda: TorchNeighborSampler(data, [2]))
    theirs = inclusion_frequencies(lambda: NeighborSampler(data, [2]))
    assert set(ours) == set(theirs)
    assert sum(ours.values()) == pytest.approx(2.0)
    assert sum(theirs.values()) == pytest.approx(2.0)
