r"""PyG's RandomLinkSplit workflow end to end on a MovieLens-named graph:
the three datasets folded into held-out edges, the kNN graphs built from
the training edges only, training and evaluation, and the refusals."""
import warnings

import pytest
import torch
import torch_geometric.transforms as T

from pyg_brmrs.data import Schema, from_link_split, make_synthetic
from pyg_brmrs.nn import BRMRS
from pyg_brmrs.objectives import BRMRSObjective
from pyg_brmrs.training import TrainConfig, Trainer
from pyg_brmrs.transforms import HomogeneousKNNGraph

ML = Schema(user_type='user', item_type='movie',
            edge_type=('user', 'rates', 'movie'),
            features={'image': 'x', 'text': 'x_text'})
ET = ('user', 'rates', 'movie')
REV = ('movie', 'rev_rates', 'user')


def movielens():
    d = make_synthetic(70, 90, feature_dim=8, seed=4)
    ml = ML.rename(d)
    store = ml[ET]
    store.edge_index = torch.cat([store.edge_index, store.val_edge_index,
                                  store.test_edge_index], 1)
    del store.val_edge_index, store.test_edge_index
    return ml


def split(data):
    data = T.ToUndirected()(data)
    torch.manual_seed(0)
    return T.RandomLinkSplit(edge_types=ET, rev_edge_types=REV, num_val=0.1,
                             num_test=0.1, neg_sampling_ratio=1.0)(data)


def pairs(ei):
    return set(zip(ei[0].tolist(), ei[1].tolist()))


def test_random_link_split_trains_and_never_leaks():
    train, val, test = split(movielens())
    data = from_link_split(train, val, test, schema=ML)
    store = data[ET]
    # positives only (the split added as many negatives, label 0)
    assert store.val_edge_index.size(1) == int(val[ET].edge_label.sum())
    assert store.test_edge_index.size(1) == int(test[ET].edge_label.sum())
    held = pairs(store.val_edge_index) | pairs(store.test_edge_index)
    assert not held & pairs(store.edge_index)
    assert 'edge_label_index' not in store
    # the kNN graphs come from the training edges only: the same graphs as
    # on a copy of the data without the held-out pairs at all
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # it has a split: no warning
        graphs = HomogeneousKNNGraph(k_item=4, k_user=4, schema=ML)(
            data.clone())
    bare = train.clone()
    del bare[ET].edge_label_index, bare[ET].edge_label
    with pytest.warns(UserWarning, match='holds no held-out split'):
        ref = HomogeneousKNNGraph(k_item=4, k_user=4, schema=ML)(bare)
    for t in (('movie', 'similar', 'movie'), ('user', 'similar', 'user')):
        assert torch.equal(graphs[t].edge_index, ref[t].edge_index)
    # the model, the objective and the trainer take the schema once
    model = BRMRS.from_data(graphs, schema=ML, embedding_dim=8)
    objective = BRMRSObjective.from_data(graphs, schema=ML,
                                         num_candidates=4)
    res = Trainer(model, objective, graphs,
                  TrainConfig(epochs=1, batch_size=128, device='cpu')).fit()
    assert 0 <= res.test['recall@20'] <= 1
    # the trainer also takes the three datasets as they are
    model = BRMRS.from_data(graphs, schema=ML, embedding_dim=8,
                            num_item_layers=0, num_user_layers=0)
    res = Trainer(model, BRMRSObjective.from_data(graphs, schema=ML,
                                                  num_candidates=4),
                  (train, val, test),
                  TrainConfig(epochs=1, batch_size=128, device='cpu')).fit()
    assert res.epochs_run == 1


@pytest.mark.bad_input
def test_from_link_split_refusals():
    train, val, test = split(movielens())
    with pytest.raises(ValueError, match="no edge type.*schema=Schema"):
        from_link_split(train, val, test)  # default names
    with pytest.raises(ValueError, match='edge_label_index'):
        from_link_split(train, _without_labels(val), test, schema=ML)
    with pytest.raises(ValueError, match='saw the held-out pairs'):
        built = HomogeneousKNNGraph(k_item=3, k_user=0, schema=ML)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            from_link_split(built(train.clone()), val, test, schema=ML)
    with pytest.raises(ValueError, match='also training edges'):
        from_link_split(train, train, test, schema=ML)
    with pytest.raises(TypeError, match='must be a HeteroData'):
        from_link_split(train, None, test, schema=ML)


def _without_labels(data):
    out = data.clone()
    del out[ET].edge_label_index
    return out
