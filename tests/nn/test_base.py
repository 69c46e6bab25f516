r"""Recommender.recommend on every model, against a naive loop over the dense
score matrix."""
import pytest
import torch
from torch_geometric.data import HeteroData

from pyg_brmrs.nn import (
    BPRMF,
    BRMRS,
    FREEDOM,
    VBPR,
    LightGCNRecommender,
    Recommender,
)

RATES = ('user', 'rates', 'item')
U, I = 8, 10


def toy_data(seed=0):
    g = torch.Generator().manual_seed(seed)
    data = HeteroData()
    data['user'].num_nodes = U
    data['item'].num_nodes = I
    data['item'].x_image = torch.randn(I, 6, generator=g)
    data['item'].x_text = torch.randn(I, 4, generator=g)
    pairs = {(0, i) for i in range(I)}  # user 0 has seen every item
    pairs |= {(1, i) for i in range(7)}  # user 1: 3 unseen items
    for u, i in zip(torch.randint(2, U - 1, (20, ), generator=g).tolist(),
                    torch.randint(0, I, (20, ), generator=g).tolist()):
        pairs.add((u, i))  # user U - 1 has seen nothing
    data[RATES].edge_index = torch.tensor(sorted(pairs)).t().contiguous()
    return data


MODELS = {
    'bprmf': lambda d: BPRMF.from_data(d, embedding_dim=4),
    'lightgcn': lambda d: LightGCNRecommender.from_data(d, embedding_dim=4),
    'vbpr': lambda d: VBPR.from_data(d, embedding_dim=4),
    'freedom': lambda d: FREEDOM.from_data(d, embedding_dim=4, knn_k=3),
    'brmrs': lambda d: BRMRS.from_data(d, embedding_dim=4),
}


def naive_recommend(model, data, users, k, exclude_seen):
    out = model.embed(data)
    scores = out.user_emb @ out.item_emb.t()  # [U, I], dense
    ei = data[RATES].edge_index
    rows = []
    for u in users.tolist():
        seen = set(ei[1, ei[0] == u].tolist()) if exclude_seen else set()
        order = sorted((i for i in range(I) if i not in seen),
                       key=lambda i: -float(scores[u, i]))
        rows.append((order + [-1] * k)[:k])
    return torch.tensor(rows, dtype=torch.long).view(-1, k)


@pytest.mark.parametrize('name', sorted(MODELS))
@pytest.mark.parametrize('exclude_seen', [True, False])
def test_recommend_matches_naive_loop(name, exclude_seen):
    torch.manual_seed(0)
    data = toy_data()
    model = MODELS[name](data)
    model.train()
    users = torch.tensor([3, 1, 0, U - 1, 3, 5])  # duplicates allowed
    for k in (1, 3, 5, I):
        out = model.recommend(data, users, k=k, exclude_seen=exclude_seen)
        assert out.dtype == torch.long and out.shape == (users.numel(), k)
        assert torch.equal(out, naive_recommend(model, data, users, k,
                                                exclude_seen))
        # the batch size does not change the result:
        assert torch.equal(out, model.recommend(
            data, users, k=k, exclude_seen=exclude_seen, batch_size=2))
    assert model.training  # embed() restores the mode


def test_recommend_past_the_unseen_items_and_fully_seen_users():
    data = toy_data()
    model = BPRMF.from_data(data, embedding_dim=4)
    out = model.recommend(data, [0, 1, U - 1], k=5)
    assert torch.equal(out[0], torch.full((5, ), -1))  # saw every item
    assert (out[1, :3] >= 7).all() and torch.equal(out[1, 3:],
                                                   torch.tensor([-1, -1]))
    assert (out[2] >= 0).all()
    # without exclusion every user gets k real items:
    assert (model.recommend(data, [0, 1], k=I, exclude_seen=False) >= 0).all()
    # the default k=20 is more than this catalogue holds:
    with pytest.raises(ValueError, match="'k' must be at most the number "
                       r"of items \(10\) \(got 20\)"):
        model.recommend(data, [0])
    # no users, no rows:
    assert model.recommend(data, [], k=2).shape == (0, 2)


@pytest.mark.bad_input
@pytest.mark.parametrize('users, error, match', [
    (torch.tensor([0.0, 1.0]), ValueError, 'integer user ids'),
    (torch.tensor([[0, 1]]), ValueError, r'1-D.*shape \[1, 2\]'),
    (torch.tensor(3), ValueError, r'1-D.*shape \[\]'),
    (torch.tensor([True, False]), ValueError, 'integer user ids'),
    (torch.tensor([0, U]), ValueError, r'user ids in \[0, 8\].*only 8 users'),
    ([-1, 2], ValueError, r'user ids in \[-1, 2\]'),
    ('abc', TypeError, "'users' must be a 1-D tensor or sequence"),
    (None, TypeError, "'users'"),
])
def test_recommend_rejects_bad_users(users, error, match):
    data = toy_data()
    model = BPRMF.from_data(data, embedding_dim=4)
    with pytest.raises(error, match=match):
        model.recommend(data, users, k=2)


@pytest.mark.bad_input
def test_recommend_rejects_bad_k_and_data():
    data = toy_data()
    model = BPRMF.from_data(data, embedding_dim=4)
    with pytest.raises(ValueError, match="'k' must be an int >= 1"):
        model.recommend(data, [0], k=0)
    with pytest.raises(TypeError, match="'k'"):
        model.recommend(data, [0], k=2.5)
    bad = toy_data()
    bad[RATES].edge_index = torch.tensor([[0], [I]])
    with pytest.raises(ValueError, match='item ids'):
        model.recommend(bad, [0], k=2)


@pytest.mark.bad_input
def test_recommend_refuses_a_mini_batch_subgraph():
    # its rows are local: a global user id would be read as a local row
    data = toy_data()
    model = BPRMF.from_data(data, embedding_dim=4)
    users, items = torch.tensor([1, 3]), torch.tensor([0, 2, 4])
    sub = data.subgraph({'user': users, 'item': items})
    sub['user'].n_id, sub['item'].n_id = users, items
    with pytest.raises(ValueError, match='not a mini-batch subgraph'):
        model.recommend(sub, [1], k=2)
    assert model.recommend(data, [1], k=2).shape == (1, 2)


def test_recommend_is_one_method_of_the_base_class():
    for cls in (BPRMF, LightGCNRecommender, VBPR, FREEDOM, BRMRS):
        assert cls.recommend is Recommender.recommend
