r"""ApeGNN against a dense reference of its authors' ``ApeGNN_HT.py`` and
``ApeGNN_APPNP.py``: the per-node hop weights, their initialisation from
the degrees, the forward pass (unweighted propagated state, weighted hop
outputs, pooling) and its gradient into the node parameters."""
import math

import pytest
import torch

from pyg_brmrs.nn import ApeGNN
from pyg_brmrs.nn.models.apegnn import degree_times, hop_weights

from dense_reference import RATES, dense_norm_adj, toy_data


def test_hop_weights_equal_the_kernels():
    t = torch.tensor([1e-7, 0.3, 0.5, 0.99, 2.0], dtype=torch.float64)
    heat = hop_weights(t, 4, 'heat')
    ppr = hop_weights(t, 4, 'ppr')
    for v, tv in enumerate(t.tolist()):
        for k in range(5):
            assert heat[v, k].item() == pytest.approx(
                math.exp(-tv) * tv ** k / math.factorial(k), rel=1e-12,
                abs=1e-300)
            assert ppr[v, k].item() == pytest.approx(tv * (1 - tv) ** k,
                                                     rel=1e-12, abs=1e-300)
    with pytest.raises(ValueError, match='kernel'):
        hop_weights(t, 2, 'gauss')


def test_times_start_from_the_degrees_and_survive_loading():
    data = toy_data()
    model = ApeGNN.from_data(data)
    ei = data[RATES].edge_index
    deg = torch.cat([torch.bincount(ei[0], minlength=12),
                     torch.bincount(ei[1], minlength=10)]).double()
    want = torch.sigmoid(torch.log(deg + 1e-7))
    assert torch.allclose(model.times.double(), want, atol=1e-7)
    assert model.times[11].item() < 1e-6  # the isolated user
    assert torch.allclose(degree_times(deg), (deg / (deg + 1)).float(),
                          atol=1e-6)
    # trained values are kept by a reload and a later set_graph
    with torch.no_grad():
        model.times.add_(0.25)
    state = model.state_dict()
    fresh = ApeGNN(12, 10)
    assert torch.allclose(fresh.times, torch.full((22, ), 0.5))
    fresh.load_state_dict(state)
    fresh(data)  # the first forward records the degrees
    assert torch.equal(fresh.times, model.times)
    model.set_graph(data)
    assert torch.equal(fresh.times, model.times)
    model.reset_parameters()  # starts from the degrees again
    assert torch.allclose(model.times.double(), want, atol=1e-7)


def dense_forward(model, data):
    U, I = model.num_users, model.num_items
    A = dense_norm_adj(data[RATES].edge_index, U, I)
    x = torch.cat([model.user_embedding.weight,
                   model.item_embedding.weight]).double()
    t = model.times.double()
    hops, state = [], x
    for k in range(model.num_layers + 1):
        if k > 0:
            state = A @ state
        if model.kernel == 'heat':
            w = torch.exp(-t) * t ** k / math.factorial(k)
        else:
            w = t * (1 - t) ** k
        hops.append(state * w[:, None])
    z = {'sum': lambda: sum(hops), 'mean': lambda: sum(hops) / len(hops),
         'final': lambda: hops[-1],
         'concat': lambda: torch.cat(hops, -1)}[model.pool]()
    return z[:U], z[U:]


@pytest.mark.parametrize('kernel', ['heat', 'ppr'])
@pytest.mark.parametrize('pool', ['sum', 'mean', 'final', 'concat'])
def test_forward_and_gradient_equal_the_dense_reference(kernel, pool):
    data = toy_data()
    torch.manual_seed(0)
    model = ApeGNN.from_data(data, embedding_dim=4, num_layers=3,
                             kernel=kernel, pool=pool).double()
    with torch.no_grad():
        model.times.uniform_(0.1, 1.5 if kernel == 'heat' else 0.9)
    out = model(data)
    ref_u, ref_i = dense_forward(model, data)
    # the graph operator keeps its weights in float32
    assert torch.allclose(out.user_emb, ref_u, rtol=1e-6, atol=1e-7)
    assert torch.allclose(out.item_emb, ref_i, rtol=1e-6, atol=1e-7)
    g = torch.Generator().manual_seed(2)
    pu = torch.randn(ref_u.shape, generator=g, dtype=torch.float64)
    pi = torch.randn(ref_i.shape, generator=g, dtype=torch.float64)
    params = [model.times, model.user_embedding.weight,
              model.item_embedding.weight]
    got = torch.autograd.grad((out.user_emb * pu).sum() +
                              (out.item_emb * pi).sum(), params)
    want = torch.autograd.grad((ref_u * pu).sum() + (ref_i * pi).sum(),
                               params)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-6)


def test_regulariser_and_training_dropouts():
    data = toy_data()
    model = ApeGNN.from_data(data, embedding_dim=4).double()
    users, pos, neg = torch.tensor([0, 2]), torch.tensor([1, 3]), \
        torch.tensor([4, 4])
    want = (model.user_embedding.weight[users].pow(2).sum() +
            model.item_embedding.weight[pos].pow(2).sum() +
            model.item_embedding.weight[neg].pow(2).sum()) / 4
    assert torch.allclose(model.regularization(users, pos, neg), want)
    model = ApeGNN.from_data(data, edge_dropout=0.5, message_dropout=0.1)
    model.eval()
    a = model(data).user_emb
    assert torch.equal(a, model(data).user_emb)
    model.train()
    assert not torch.allclose(model(data).user_emb, a)


def test_bad_arguments():
    for kw, msg in [(dict(kernel='gauss'), 'kernel'),
                    (dict(pool='max'), 'pool'), (dict(eps=0.0), 'eps'),
                    (dict(edge_dropout=1.0), 'edge_dropout')]:
        with pytest.raises(ValueError, match=msg):
            ApeGNN(4, 5, **kw)
