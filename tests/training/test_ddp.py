r"""The data-parallel helpers on their own (the distributed runs themselves:
tests/utils/test_distributed.py)."""
import torch

from pyg_brmrs.training.ddp import rank_seed, rank_share


def test_rank_share_covers_every_pair_once_with_mean_weights():
    step = torch.arange(10)
    for world in (1, 2, 3, 4):
        parts = [rank_share(step, world, r) for r in range(world)]
        assert torch.equal(torch.cat([p for p, _ in parts]), step)
        # weights W n_r / n_t: the mean of the ranks' weighted means is the
        # mean over the step
        assert sum(s for _, s in parts) == world
        losses = [(p.float() * s).mean() for p, s in parts]
        assert torch.isclose(sum(losses) / world, step.float().mean())


def test_rank_share_gives_a_rank_without_pairs_a_zero_weighted_stand_in():
    idx, scale = rank_share(torch.arange(2), 3, 2)
    assert idx.tolist() == [0] and scale == 0.0


def test_rank_seed_is_a_pure_function_with_distinct_streams():
    assert rank_seed(1, 2, 0) == rank_seed(1, 2, 0)
    seeds = {rank_seed(1, e, r) for e in range(5) for r in range(4)}
    assert len(seeds) == 20
    assert all(0 <= s < 2**63 for s in seeds)
