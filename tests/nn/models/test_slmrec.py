r"""SLMRec against a dense re-implementation of MMRec's ``slmrec.py``
(``compute``, ``infonce`` and the ``FAC`` task) on small random data."""
import math

import pytest
import torch
import torch.nn.functional as F

from pyg_brmrs.app import recipes
from pyg_brmrs.nn import SLMRec
from pyg_brmrs.nn.models.slmrec import in_batch_info_nce

from dense_reference import RATES, dense_norm_adj, toy_data


def lin(layer, x):
    return x @ layer.weight.t() + layer.bias


def dense_compute(model, data):
    U = model.num_users
    A = dense_norm_adj(data[RATES].edge_index, U, model.num_items)

    def graph(u, i):
        x = torch.cat([u, i])
        out = [x]
        for _ in range(model.num_layers):
            x = A @ x
            out.append(x)
        return torch.stack(out, 1).mean(1)

    u0 = model.user_embedding.weight.double()
    chans = [graph(u0, model.item_embedding.weight.double())]
    for m in model.modalities:
        x = F.normalize(data['item'][f'x_{m}'].double(), dim=1)
        chans.append(graph(u0, lin(model.dense[m], x)))
    users = lin(model.user_out, torch.cat([c[:U] for c in chans], 1))
    items = lin(model.item_out, torch.cat([c[U:] for c in chans], 1))
    return users, items, [c[U:] for c in chans]


def ce_diag(logits):
    return -torch.log_softmax(logits, 1).diagonal().mean()


@pytest.mark.parametrize('dims', [(('image', 6), ('text', 4)),
                                  (('audio', 5), )])
def test_forward_and_loss_equal_mmrecs(dims):
    data = toy_data(dims=dims)
    model = SLMRec.from_data(data, embedding_dim=4, num_layers=2,
                             temperature=0.3, ssl_weight=0.7,
                             ssl_temperature=0.5).double()
    out = model(data)
    users, items, chans = dense_compute(model, data)
    assert torch.allclose(out.user_emb, users, rtol=1e-6, atol=1e-7)
    assert torch.allclose(out.item_emb, items, rtol=1e-6, atol=1e-7)
    ei = data[RATES].edge_index
    u, i = ei[0, :9], ei[1, :9]
    terms = model.positive_loss(out, u, i)
    pu, qi = F.normalize(users[u], dim=1), F.normalize(items[i], dim=1)
    main = ce_diag(pu @ qi.t() / 0.3)
    x_iv = lin(model.g_i_iv, chans[0][i])
    ssl = ce_diag(x_iv @ lin(model.g_v_iv, chans[1][i]).t() / 0.5)
    if len(dims) == 2:
        x_ivat = lin(model.g_iva_ivat, lin(model.g_iv_iva, x_iv))
        ssl = ssl + ce_diag(
            x_ivat @ lin(model.g_t_ivat, chans[2][i]).t() / 0.5)
    assert terms['info_nce'].item() == pytest.approx(main.item(), rel=1e-6)
    assert terms['ssl'].item() == pytest.approx(0.7 * ssl.item(), rel=1e-6)


def test_in_batch_info_nce_by_loops():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 3, generator=g, dtype=torch.float64)
    b = torch.randn(5, 3, generator=g, dtype=torch.float64)
    want = 0.0
    for k in range(5):
        s = [float(a[k] @ b[j]) / 0.5 for j in range(5)]
        m = max(s)
        want += m + math.log(sum(math.exp(x - m) for x in s)) - s[k]
    assert in_batch_info_nce(a, b, 0.5, normalize=False).item() == \
        pytest.approx(want / 5, rel=1e-10)


def test_the_recipe_trains_without_negatives_with_weight_decay():
    data = toy_data()
    model, objective = recipes.build('slmrec', data, embedding_dim=4)
    assert recipes.train_config('slmrec').weight_decay == 1e-4
    ei = data[RATES].edge_index
    terms = objective(model, data, ei[0, :8], ei[1, :8])
    assert set(terms) == {'info_nce', 'ssl', 'reg', 'loss'}
    terms['loss'].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name


def test_bad_arguments():
    data = toy_data(dims=(('a', 2), ('b', 2), ('c', 2)))
    with pytest.raises(ValueError, match='one or two'):
        SLMRec.from_data(data)
    data = toy_data()
    for kw, msg in [(dict(embedding_dim=5), 'even'),
                    (dict(temperature=0.0), 'temperature'),
                    (dict(ssl_weight=-1.0), 'ssl_weight')]:
        with pytest.raises(ValueError, match=msg):
            SLMRec.from_data(data, **kw)
