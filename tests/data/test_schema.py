r"""Any node / edge type and feature names through :class:`Schema`: a
HeteroData named like PyG's MovieLens gives exactly the numbers of the same
data under the canonical names, and nothing copies a feature tensor."""
import pytest
import torch

from pyg_brmrs.app import recipes
from pyg_brmrs.data import Schema, make_synthetic, from_interactions
from pyg_brmrs.evaluation import RankingEvaluator
from pyg_brmrs.nn import BRMRS, LightGCNRecommender
from pyg_brmrs.transforms import HomogeneousKNNGraph
from pyg_brmrs.training import TrainConfig, Trainer

ML = Schema(user_type='user', item_type='movie',
            edge_type=('user', 'rates', 'movie'),
            features={'image': 'x', 'text': 'x_text_emb'})


def movielens_like(data):
    r"""The same data under MovieLens-style names, plus a reverse edge type
    (as ``T.ToUndirected`` adds) that the schema ignores."""
    ml = ML.rename(data)
    ml['movie', 'rev_rates', 'user'].edge_index = \
        ml['user', 'rates', 'movie'].edge_index.flip(0)
    return ml


@pytest.fixture(scope='module')
def data():
    return make_synthetic(60, 80, feature_dim=12, seed=3)


def test_rename_shares_tensors(data):
    ml = movielens_like(data)
    assert ml.node_types == ['user', 'movie']
    assert ml['movie'].x is data['item'].x_image
    assert ml['movie'].x_text_emb is data['item'].x_text
    assert ml['user', 'rates', 'movie'].edge_index is \
        data['user', 'rates', 'item'].edge_index
    view = ML.canonical(ml)
    assert view['item'].x_image is data['item'].x_image
    assert view['item'].x_text is data['item'].x_text
    assert sorted(k for k in view['item'].keys() if k.startswith('x')) == \
        ['x_image', 'x_text']
    assert ('movie', 'rev_rates', 'user') not in view.edge_types
    assert ML.canonical(view) is view  # idempotent
    assert Schema().canonical(data) is data


def test_movielens_names_same_numbers(data):
    ml = movielens_like(data)
    params = dict(k_item=5, k_user=8, embedding_dim=16)
    cfg = dict(epochs=2, batch_size=128, device='cpu', seed=7, ks=(10, 20))

    def run(d, schema):
        d = recipes.prepare('brmrs_paper', d, schema=schema, **params)
        torch.manual_seed(0)
        model, objective = recipes.build('brmrs_paper', d, schema=schema,
                                         **params)
        res = Trainer(model, objective, d, TrainConfig(**cfg),
                      schema=schema).fit()
        out = model.embed(d)
        ev = RankingEvaluator.from_data(d, 'test', schema=schema)
        return d, res, ev(out.user_emb, out.item_emb), out

    d0, res0, m0, out0 = run(data, None)
    d1, res1, m1, out1 = run(ml, ML)
    # the graphs are stored under the schema's names, equal to the default:
    for t0, t1 in [(('item', 'similar', 'item'), ('movie', 'similar',
                                                   'movie')),
                   (('user', 'similar', 'user'), ('user', 'similar',
                                                   'user'))]:
        assert torch.equal(d0[t0].edge_index, d1[t1].edge_index)
        assert torch.equal(d0[t0].edge_weight, d1[t1].edge_weight)
    assert ('item', 'similar', 'item') not in d1.edge_types
    assert res0.valid == res1.valid and res0.test == res1.test
    assert res0.history == res1.history or all(
        {k: v for k, v in a.items() if 'time' not in k} ==
        {k: v for k, v in b.items() if 'time' not in k}
        for a, b in zip(res0.history, res1.history))
    assert m0 == m1
    for b in out0.user:
        assert torch.equal(out0.user[b], out1.user[b])
        assert torch.equal(out0.item[b], out1.item[b])


def test_model_remembers_schema(data):
    ml = movielens_like(data)
    torch.manual_seed(0)
    a = LightGCNRecommender.from_data(data, embedding_dim=8)
    torch.manual_seed(0)
    b = LightGCNRecommender.from_data(ml, schema=ML, embedding_dim=8)
    assert b.schema == ML
    assert torch.equal(a(data).user_emb, b(ml).user_emb)


def test_reader_names_its_output():
    ei = torch.tensor([[0, 0, 1, 1, 2, 2, 0], [0, 1, 1, 2, 0, 2, 2]])
    split = ['train'] * 6 + ['test']
    feats = {'image': torch.randn(3, 4), 'text': torch.randn(3, 5)}
    out = from_interactions(ei[0], ei[1], split, feats, schema=ML)
    assert out.node_types == ['user', 'movie']
    assert tuple(out['movie'].x.shape) == (3, 4)
    assert tuple(out['movie'].x_text_emb.shape) == (3, 5)
    assert out['user', 'rates', 'movie'].test_edge_index.size(1) == 1


@pytest.mark.bad_input
@pytest.mark.parametrize('schema, culprit', [
    (Schema(item_type='film', features={'image': 'x', 'text':
                                        'x_text_emb'}), "item_type='film'"),
    (Schema(user_type='viewer', item_type='movie'), "user_type='viewer'"),
    (Schema(item_type='movie', edge_type=('user', 'watched', 'movie')),
     "('user', 'watched', 'movie')"),
    (Schema(item_type='movie', features={'image': 'x', 'text': 'x_txt'}),
     "features['text']='x_txt'"),
])
def test_missing_names_are_named(data, schema, culprit):
    ml = movielens_like(data)
    for call in (lambda: BRMRS.from_data(ml, schema=schema),
                 lambda: HomogeneousKNNGraph(schema=schema)(ml),
                 lambda: RankingEvaluator.from_data(ml, 'valid', schema=schema)):
        with pytest.raises(ValueError, match=None) as info:
            call()
        assert culprit in str(info.value)


@pytest.mark.bad_input
def test_bad_schema_arguments():
    with pytest.raises(ValueError, match='edge_type'):
        Schema(item_type='movie', edge_type=('user', 'rates', 'item'))
    with pytest.raises(ValueError, match='must differ'):
        Schema(user_type='x', item_type='x')
    with pytest.raises(ValueError, match='several modalities'):
        Schema(features={'a': 'x', 'b': 'x'})
    with pytest.raises(TypeError, match="'schema'"):
        LightGCNRecommender.from_data(make_synthetic(10, 10, seed=0), schema='movie')


def test_default_names_hint_at_schema(data):
    ml = movielens_like(data)
    with pytest.raises(ValueError, match='schema=Schema'):
        HomogeneousKNNGraph()(ml)


@pytest.mark.bad_input
def test_every_entry_point_without_the_schema_names_it(data):
    # #28: without the schema, data under other names fails with one
    # message that names what is missing and says schema=Schema(...), at
    # the model, the objective, the trainer and the evaluator alike
    from pyg_brmrs.objectives import BPRObjective
    ml = movielens_like(data)
    calls = [lambda: LightGCNRecommender.from_data(ml),
             lambda: BPRObjective.from_data(ml),
             lambda: HomogeneousKNNGraph(k_item=3, k_user=3)(ml),
             lambda: RankingEvaluator.from_data(ml, 'valid')]
    for call in calls:
        with pytest.raises(ValueError, match=r"schema=Schema"):
            call()
    # with it, the trainer takes it from the model
    model = LightGCNRecommender.from_data(ml, schema=ML, embedding_dim=8)
    objective = BPRObjective.from_data(ml, schema=ML)
    res = Trainer(model, objective, ml,
                  TrainConfig(epochs=1, batch_size=128, device='cpu')).fit()
    assert res.epochs_run == 1
