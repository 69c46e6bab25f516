r"""DRAGON against dense references of MMRec's ``dragon.py``: the padding of
short neighbour lists (a Pólya urn), the user co-occurrence graph and its
weights, the forward pass (weighted concatenation), the regulariser, the
per-epoch redraw and its place in the state dict."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from pyg_brmrs.data import make_synthetic
from pyg_brmrs.nn import DRAGON
from pyg_brmrs.nn.models.dragon import polya_padding
from pyg_brmrs.training import TrainConfig, Trainer
from pyg_brmrs.transforms import mixed_cosine_knn_graph

from dense_reference import RATES, dense_norm_adj, sparse_to_dense, toy_data


def test_padding_is_a_polya_urn():
    # 3000 nodes with 2 neighbours padded to 4: the urn gives the splits
    # (3, 1), (2, 2), (1, 3) with probability 1/3 each (independent draws
    # would give 1/4, 1/2, 1/4)
    n = 3000
    row = torch.arange(n).repeat_interleave(2)
    m = polya_padding(row, n, 4, torch.Generator().manual_seed(0))
    first = m.view(n, 2)[:, 0]
    assert torch.equal(m.view(n, 2).sum(1), torch.full((n, ), 4.0))
    for split in (1.0, 2.0, 3.0):
        assert abs(float((first == split).float().mean()) - 1 / 3) < 0.04
    # a long list, a single neighbour, an empty node; reproducible
    row = torch.tensor([0, 0, 0, 0, 0, 2])
    m = polya_padding(row, 4, 3, torch.Generator().manual_seed(1))
    assert m.tolist() == [1, 1, 1, 1, 1, 3]
    a = polya_padding(torch.arange(50).repeat_interleave(3), 50, 40,
                      torch.Generator().manual_seed(5))
    b = polya_padding(torch.arange(50).repeat_interleave(3), 50, 40,
                      torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and torch.equal(a.view(50, 3).sum(1),
                                             torch.full((50, ), 40.0))


def dense_user_graph(ei, U, I, k, multiplicity=None):
    r"""The reference: counts C = R R^T (no diagonal), each user's k most
    shared users (ties in the seeded random order that
    ``cooccurrence_knn_graph(ties="random", seed=0)`` documents), softmax
    over the padded list, a neighbour drawn m times counting m times."""
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(U, generator=g)
    shift = torch.randint(U, (U,), generator=g)  # a rotation per row
    R = torch.zeros(U, I, dtype=torch.float64)
    R[ei[0], ei[1]] = 1.0
    C = R @ R.t()
    C.fill_diagonal_(0)
    W = torch.zeros(U, U, dtype=torch.float64)
    pos = 0
    for u in range(U):
        cand = [v for v in range(U) if C[u, v] > 0]
        cand.sort(key=lambda v: (-C[u, v].item(),
                                 int(perm[(v + shift[u]) % U])))
        kept = cand[:k]
        mult = [1.0] * len(kept)
        if multiplicity is not None:
            mult = multiplicity[pos:pos + len(kept)].tolist()
            pos += len(kept)
        padded = [(v, C[u, v].item()) for v, c in zip(kept, mult)
                  for _ in range(int(c))]
        if not padded:
            continue
        z = sum(math.exp(c) for _, c in padded)
        for v, c in padded:
            W[u, v] += math.exp(c) / z
    return W


def test_user_graph_matches_dense_counts_and_padded_softmax():
    data = toy_data(U=15, I=8, E=50, seed=4)
    model = DRAGON.from_data(data, embedding_dim=3, num_user_neighbors=8,
                             knn_k=2)
    ei = data[RATES].edge_index
    g = model.own_graphs()['users']
    want = dense_user_graph(ei, 15, 8, 8)
    assert torch.allclose(sparse_to_dense(g.edge_index, g.edge_weight, 15),
                          want, atol=1e-6)
    model.on_epoch_start(0, torch.Generator().manual_seed(2))
    g = model.own_graphs()['users']
    want = dense_user_graph(ei, 15, 8, 8, model.user_graph_multiplicity)
    assert torch.allclose(sparse_to_dense(g.edge_index, g.edge_weight, 15),
                          want, atol=1e-6)
    assert model.user_graph_multiplicity.max() > 1  # some list was padded


def dense_forward(model, data):
    model = copy.deepcopy(model).double()
    U, I = model.num_users, model.num_items
    A = dense_norm_adj(data[RATES].edge_index, U, I)
    users, items = [], []
    for j, m in enumerate(model.modalities):
        x = data['item'][f'x_{m}'].double()
        z = model.encoder[m][2](F.leaky_relu(model.encoder[m][0](x)))
        h = F.normalize(torch.cat([model.preference[m], z]), dim=1)
        out, layer = h.clone(), h
        for _ in range(model.num_layers):  # h + x + h_1 for L = 2
            layer = A @ layer
            out = out + layer
        users.append(model.user_modality_weight[:, j:j + 1] * out[:U])
        items.append(out[U:])
    user, item = torch.cat(users, 1), torch.cat(items, 1)
    S = sparse_to_dense(*mixed_cosine_knn_graph(
        {m: data['item'][f'x_{m}'] for m in model.modalities}, model.knn_k,
        model.modality_weights), I)
    h = item
    for _ in range(model.num_item_layers):
        h = S @ h
    g = model.own_graphs()['users']
    W = sparse_to_dense(g.edge_index, g.edge_weight, U)
    return user + W @ user, item + h


@pytest.mark.parametrize('layers', [(2, 1), (1, 2), (3, 0)])
def test_forward_matches_the_reference(layers):
    data = toy_data(U=15, I=12, E=60, seed=1)
    torch.manual_seed(0)
    model = DRAGON.from_data(data, embedding_dim=4, num_layers=layers[0],
                             num_item_layers=layers[1], knn_k=3,
                             num_user_neighbors=4)
    assert model.modalities == ['image', 'text']
    assert model.modality_weights == {'image': 0.1, 'text': 0.9}
    model.on_epoch_start(0, torch.Generator().manual_seed(1))
    model.eval()
    out = model(data)
    u, i = dense_forward(model, data)
    assert out.user_emb.shape == (15, 8)  # M d
    assert torch.allclose(out.user_emb.double(), u, atol=1e-5)
    assert torch.allclose(out.item_emb.double(), i, atol=1e-5)


def test_init_and_regularization():
    data = toy_data(U=15, I=12, E=60, seed=1)
    torch.manual_seed(0)
    model = DRAGON.from_data(data, embedding_dim=4)
    w = model.user_modality_weight
    assert torch.allclose(w.sum(1), torch.ones(15))  # a softmax at start
    assert float((w.detach() - 0.5).abs().max()) < 0.5
    users = torch.tensor([0, 3, 3, 7])
    out = model(data)
    got = model.regularization(users, users, users, out)
    want = w.pow(2).mean() + sum(model.preference[m][users].pow(2).mean()
                                 for m in model.modalities)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


def test_padding_is_in_the_state_dict():
    data = toy_data(U=15, I=12, E=60, seed=1)
    torch.manual_seed(0)
    a = DRAGON.from_data(data, embedding_dim=4, num_user_neighbors=5)
    a.on_epoch_start(0, torch.Generator().manual_seed(3))
    assert 'user_graph_multiplicity' in a.state_dict()
    a.eval()
    want = a(data).user_emb
    torch.manual_seed(9)
    b = DRAGON.from_data(data, embedding_dim=4, num_user_neighbors=5)
    b.eval()
    b(data)  # operators cached before the load
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.user_graph_multiplicity, a.user_graph_multiplicity)
    assert torch.allclose(b(data).user_emb, want)
    # a redraw moves only the users with short lists
    a.on_epoch_start(1, torch.Generator().manual_seed(4))
    moved = (a(data).user_emb - want).abs().sum(1) > 0
    deg = torch.bincount(a.own_graphs()['users'].edge_index[1],
                         minlength=15)
    assert not moved[deg >= 5].any()


def test_trains_with_log2_bpr_and_an_epoch_redraw():
    data = make_synthetic(num_users=60, num_items=50, feature_dim=6, seed=1)
    torch.manual_seed(0)
    from pyg_brmrs.app import recipes
    model, obj = recipes.build('dragon', data, embedding_dim=8,
                               num_user_neighbors=59)
    assert obj.bpr_weight == pytest.approx(1 / math.log(2))
    assert recipes.train_config('dragon').lr == 1e-4
    draws = []
    hook = model.on_epoch_start

    def spy(epoch, generator=None):
        hook(epoch, generator)
        draws.append(model.user_graph_multiplicity.clone())
    model.on_epoch_start = spy
    res = Trainer(model, obj, data, TrainConfig(epochs=3, batch_size=128,
                                                lr=1e-2, device='cpu')).fit()
    assert len(draws) == 3 and not torch.equal(draws[0], draws[1])
    assert res.history[-1]['bpr'] < res.history[0]['bpr']


@pytest.mark.bad_input
def test_bad_arguments():
    data = toy_data()
    for kw, name in [({'knn_k': 0}, 'knn_k'),
                     ({'num_user_neighbors': 0}, 'num_user_neighbors'),
                     ({'modality_weights': {'image': 2.0, 'text': -1.0}},
                      'modality_weights')]:
        with pytest.raises(ValueError, match=name):
            DRAGON.from_data(data, **kw)
    fresh = DRAGON(12, 10, {'image': 6, 'text': 4})
    with pytest.raises(ValueError, match='no user graph yet'):
        fresh.on_epoch_start(0)
    assert 'num_user_neighbors=40' in repr(fresh)
