r"""MMGCN against a dense re-implementation of MMRec's ``mmgcn.py``: the
mean aggregation, the three concatenating layers (``concate='False'`` is
truthy there), the averaging over modalities, the regulariser, and the two
behaviours of its free embeddings (trained as the paper says, or frozen as
the reference code leaves them)."""
import pytest
import torch
import torch.nn.functional as F

from pyg_brmrs.app import recipes
from pyg_brmrs.nn import MMGCN

from dense_reference import RATES, toy_data


def dense_mean_adj(ei, U, I):
    N = U + I
    A = torch.zeros(N, N, dtype=torch.float64)
    for k in range(ei.size(1)):
        u, i = int(ei[0, k]), U + int(ei[1, k])
        A[i, u] += 1.0  # row = target
        A[u, i] += 1.0
    deg = A.sum(1, keepdim=True)
    return torch.where(deg > 0, A / deg.clamp(min=1), A)


def dense_gcn(gcn, feats, ids, A):
    x = gcn.mlp(feats) if gcn.mlp is not None else feats
    x = torch.cat([gcn.preference, x])
    x = x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)
    for k in range(3):
        w = gcn.conv[k]
        h = F.leaky_relu(A @ (x @ w))
        x_hat = F.leaky_relu(x @ gcn.linear[k].weight.t() +
                             gcn.linear[k].bias) + ids
        x = F.leaky_relu(torch.cat([h, x_hat], 1) @ gcn.gate[k].weight.t()
                         + gcn.gate[k].bias)
    return x


@pytest.mark.parametrize('dims', [(('image', 6), ('text', 4)),
                                  (('audio', 5), ('image', 7)),
                                  (('text', 3), )])
def test_forward_equals_mmrecs_computation(dims):
    data = toy_data(dims=dims)
    model = MMGCN.from_data(data, embedding_dim=4).double()
    if 'image' in dict(dims):
        assert model.gcn['image'].mlp.out_features == 256
        assert model.modalities[0] == 'image'  # MMRec's v_feat first
    out = model(data)
    U, I = model.num_users, model.num_items
    A = dense_mean_adj(data[RATES].edge_index, U, I)
    z = sum(dense_gcn(model.gcn[m], data['item'][f'x_{m}'].double(),
                      model.id_embedding, A) for m in model.modalities)
    z = z / len(model.modalities)
    assert torch.allclose(out.user_emb, z[:U], rtol=1e-6, atol=1e-7)
    assert torch.allclose(out.item_emb, z[U:], rtol=1e-6, atol=1e-7)


def test_regulariser_equals_mmrecs():
    data = toy_data()
    model = MMGCN.from_data(data, embedding_dim=4).double()
    users, pos, neg = torch.tensor([0, 3, 3]), torch.tensor([1, 2, 5]), \
        torch.tensor([4, 0, 1])
    e = model.id_embedding
    U = model.num_users
    user_t = users.repeat_interleave(2)
    item_t = torch.stack([pos + U, neg + U]).t().reshape(-1)
    want = (e[user_t] ** 2 + e[item_t] ** 2).mean() + \
        (model.gcn['image'].preference ** 2).mean()  # image only
    assert torch.allclose(model.regularization(users, pos, neg), want)


def test_free_embeddings_trained_or_frozen():
    data = toy_data()
    trained = MMGCN.from_data(data, embedding_dim=4)
    names = {n for n, _ in trained.named_parameters()}
    assert 'id_embedding' in names
    assert {'gcn.image.preference', 'gcn.text.preference'} <= names
    frozen = MMGCN.from_data(data, embedding_dim=4,
                             train_free_embeddings=False)
    names = {n for n, _ in frozen.named_parameters()}
    assert not any('preference' in n or 'id_embedding' in n for n in names)
    # kept in the state dict all the same (a run is reproducible)
    assert 'id_embedding' in frozen.state_dict()
    out = frozen(data)
    out.user_emb.sum().backward()
    assert frozen.id_embedding.grad is None
    assert 'train_free_embeddings=False' in repr(frozen)


def test_bad_arguments():
    data = toy_data()
    with pytest.raises(ValueError, match='latent_dims'):
        MMGCN.from_data(data, latent_dims={'audio': 16})
    with pytest.raises(ValueError, match='latent_dims'):
        MMGCN.from_data(data, latent_dims={'image': 0})


def test_the_recipe_builds_and_trains_a_step():
    data = toy_data()
    model, objective = recipes.build('mmgcn', data, embedding_dim=4)
    ei = data[RATES].edge_index
    terms = objective(model, data, ei[0, :8], ei[1, :8])
    terms['loss'].backward()
    assert model.id_embedding.grad is not None
