r"""Evaluation split by users over processes: the gathered metrics of the
shards equal one process's, whatever the number of shards."""
import pytest
import torch

from pyg_brmrs.data import make_synthetic
from pyg_brmrs.evaluation import RankingEvaluator, ShardedEvaluator
from pyg_brmrs.evaluation import sharded as sharded_module


@pytest.mark.parametrize('world', [2, 3])
def test_shards_gathered_equal_one_process(world, monkeypatch):
    data = make_synthetic(60, 40, seed=2)
    g = torch.Generator().manual_seed(0)
    user_emb = torch.randn(60, 8, generator=g)
    item_emb = torch.randn(40, 8, generator=g)
    store = data['user', 'rates', 'item']
    one = RankingEvaluator(store.edge_index, store.test_edge_index, 40,
                           ks=(5, 10), exclude_edge_index=store.val_edge_index)
    want = one(user_emb, item_emb)
    shards = [ShardedEvaluator.from_data(data, 'test', exclude_valid=True,
                                         rank=r, world_size=world,
                                         ks=(5, 10)) for r in range(world)]
    for r, shard in enumerate(shards):  # user u lives on rank u mod W
        assert bool((shard.evaluator.users % world == r).all())
    parts = [{k: v for k, v in s.evaluator.per_user(user_emb,
                                                    item_emb).items()}
             for s in shards]
    # every rank gathers every rank's per-user values
    monkeypatch.setattr(sharded_module.dist_utils, 'all_gather_object',
                        lambda obj: parts)
    for shard in shards:
        got = shard(user_emb, item_emb)
        assert got.keys() == want.keys()
        for k in want:
            assert got[k] == pytest.approx(want[k], abs=1e-12)


def test_one_process_and_bad_arguments():
    data = make_synthetic(30, 20, seed=1)
    g = torch.Generator().manual_seed(0)
    u, i = torch.randn(30, 4, generator=g), torch.randn(20, 4, generator=g)
    one = ShardedEvaluator.from_data(data, 'valid')
    assert one(u, i) == RankingEvaluator.from_data(data, 'valid')(u, i)
    with pytest.raises(ValueError, match="'split' must be 'valid' or"):
        ShardedEvaluator.from_data(data, 'train')
    with pytest.raises(ValueError, match="'rank' must lie in"):
        ShardedEvaluator.from_data(data, rank=2, world_size=2)
