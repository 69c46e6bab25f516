import numpy as np
import pytest
import torch

from pyg_brmrs.sampling import (
    CrossModalHardNegativeSampler,
    UniformNegativeSampler,
)


def random_interactions(num_users=40, num_items=30, num_edges=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    ei = torch.stack([
        torch.randint(0, num_users, (num_edges, ), generator=g),
        torch.randint(0, num_items, (num_edges, ), generator=g)
    ])
    return ei  # may contain duplicates on purpose


def positives(ei):
    return {(int(u), int(i)) for u, i in ei.t()}


def test_uniform_never_returns_a_positive():
    U, I = 40, 30
    ei = random_interactions(U, I)
    pos = positives(ei)
    sampler = UniformNegativeSampler(ei, I, num_users=U,
                                     generator=torch.Generator().manual_seed(1))
    users = torch.arange(U).repeat(50)
    neg = sampler(users, 7)
    assert neg.shape == (users.numel(), 7)
    assert int(neg.min()) >= 0 and int(neg.max()) < I
    for u, row in zip(users.tolist(), neg.tolist()):
        for i in row:
            assert (u, i) not in pos
    assert sampler(users).shape == (users.numel(), )
    assert bool(sampler.is_positive(ei[0], ei[1]).all())
    assert not bool(sampler.is_positive(users.view(-1, 1).expand_as(neg),
                                        neg).any())


def test_uniform_covers_allowed_items_uniformly():
    """Chi-square test of the draws of one user against the uniform law on
    the allowed items."""
    I = 12
    ei = torch.tensor([[0, 0, 0, 0, 1], [0, 3, 4, 11, 5]])
    sampler = UniformNegativeSampler(ei, I,
                                     generator=torch.Generator().manual_seed(3))
    n = 40000
    draws = sampler(torch.zeros(n, dtype=torch.long))
    counts = np.bincount(draws.numpy(), minlength=I)
    allowed = [i for i in range(I) if i not in (0, 3, 4, 11)]
    assert counts[[0, 3, 4, 11]].sum() == 0
    expected = n / len(allowed)
    chi2 = ((counts[allowed] - expected)**2 / expected).sum()
    # 7 degrees of freedom: P(chi2 > 24.3) = 0.001
    assert chi2 < 24.3, chi2


def test_user_with_all_but_one_item_and_with_every_item():
    I = 9
    ei = torch.tensor([[0] * 8 + [1] * 9, list(range(8)) + list(range(9))])
    sampler = UniformNegativeSampler(ei, I, num_users=3)
    assert sampler(torch.zeros(100, dtype=torch.long)).eq(8).all()
    assert sampler.num_allowed(torch.tensor([0, 1, 2])).tolist() == [1, 0, 9]
    with pytest.raises(ValueError, match=r'users \[1\].*all 9 items'):
        sampler(torch.tensor([0, 1]))
    # users without interactions sample everything:
    draws = sampler(torch.full((2000, ), 2), generator=torch.Generator())
    assert set(draws.tolist()) == set(range(I))


def test_seeded_generator_is_reproducible():
    ei = random_interactions()
    s1 = UniformNegativeSampler(ei, 30, generator=torch.Generator().manual_seed(5))
    s2 = UniformNegativeSampler(ei, 30, generator=torch.Generator().manual_seed(5))
    users = torch.arange(40)
    assert torch.equal(s1(users, 4), s2(users, 4))
    assert not torch.equal(s1(users, 4), s1(users, 4))


def test_uniform_bad_inputs():
    ei = torch.tensor([[0, 1], [2, 3]])
    with pytest.raises(ValueError, match=r'\[2, E\]'):
        UniformNegativeSampler(ei[0], 5)
    with pytest.raises(ValueError, match='item id 3 >= num_items'):
        UniformNegativeSampler(ei, 3)
    with pytest.raises(ValueError, match='negative'):
        UniformNegativeSampler(torch.tensor([[-1], [0]]), 3)
    with pytest.raises(ValueError, match='user id 1 >= num_users'):
        UniformNegativeSampler(ei, 5, num_users=1)
    sampler = UniformNegativeSampler(ei, 5, num_users=3)
    with pytest.raises(ValueError, match=r'users.*\[0, 2\]'):
        sampler(torch.tensor([0, 3]))


def embeddings(U, I, names, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ({m: torch.randn(U, d, generator=g) for m in names},
            {m: torch.randn(I, d, generator=g) for m in names})


@pytest.mark.parametrize('names', [['image', 'text'],
                                   ['audio', 'image', 'text']])
@pytest.mark.parametrize('assignment', ['cross', 'same'])
def test_chns_argmax_and_assignment(names, assignment):
    U, I, C = 40, 30, 6
    ei = random_interactions(U, I)
    pos = positives(ei)
    sampler = CrossModalHardNegativeSampler(
        ei, I, num_candidates=C, assignment=assignment, num_users=U,
        generator=torch.Generator().manual_seed(0))
    ue, ie = embeddings(U, I, names)
    users = torch.arange(U).repeat(5)
    res = sampler(users, ue, ie)
    assert res.candidates.shape == (users.numel(), C)
    assert res.uniform.shape == (users.numel(), )
    for b, u in enumerate(users.tolist()):
        cands = res.candidates[b].tolist()
        assert all((u, j) not in pos for j in cands)
        assert (u, int(res.uniform[b])) not in pos
        score = {m: [float(ue[m][u] @ ie[m][j]) for j in cands]
                 for m in names}
        for m in names:
            assert torch.allclose(res.scores[m][b], torch.tensor(score[m]),
                                  atol=1e-5)
            best = cands[int(np.argmax(score[m]))]
            assert int(res.hard[m][b]) == best
            if assignment == 'same':
                expected = best
            else:
                other = np.sum([score[k] for k in names if k != m], axis=0)
                expected = cands[int(np.argmax(other))]
            assert int(res.negatives[m][b]) == expected
    if assignment == 'cross' and len(names) == 2:
        a, b = names
        assert torch.equal(res.negatives[a], res.hard[b])
        assert torch.equal(res.negatives[b], res.hard[a])


def test_chns_fused_assignment_and_single_candidate():
    U, I = 20, 15
    ei = random_interactions(U, I, 60)
    ue, ie = embeddings(U, I, ['image', 'text', 'fused'])
    users = torch.arange(U)
    sampler = CrossModalHardNegativeSampler(ei, I, num_candidates=5,
                                            assignment='fused', num_users=U)
    res = sampler(users, ue, ie)
    ref = res.candidates.gather(1, res.scores['fused'].argmax(1,
                                                              keepdim=True))
    assert set(res.negatives) == {'image', 'text'}
    for m in ('image', 'text'):
        assert torch.equal(res.negatives[m], ref.view(-1))
    one = CrossModalHardNegativeSampler(ei, I, num_candidates=1, num_users=U)
    res = one(users, {k: ue[k] for k in ('image', 'text')},
              {k: ie[k] for k in ('image', 'text')})
    for m in ('image', 'text'):
        assert torch.equal(res.negatives[m], res.candidates[:, 0])


def test_chns_candidates_cover_allowed_items():
    I = 10
    ei = torch.tensor([[0, 0], [2, 7]])
    sampler = CrossModalHardNegativeSampler(
        ei, I, num_candidates=64, generator=torch.Generator().manual_seed(0))
    ue, ie = embeddings(1, I, ['a', 'b'])
    res = sampler(torch.zeros(200, dtype=torch.long), ue, ie)
    counts = np.bincount(res.candidates.flatten().numpy(), minlength=I)
    assert counts[2] == 0 and counts[7] == 0
    expected = counts.sum() / 8
    allowed = [i for i in range(I) if i not in (2, 7)]
    chi2 = ((counts[allowed] - expected)**2 / expected).sum()
    assert chi2 < 24.3  # 7 dof, p = 0.001


def test_chns_no_gradient_and_bad_inputs():
    U, I = 10, 8
    ei = random_interactions(U, I, 20)
    ue, ie = embeddings(U, I, ['image', 'text'])
    ue = {k: v.requires_grad_() for k, v in ue.items()}
    sampler = CrossModalHardNegativeSampler(ei, I, num_users=U)
    res = sampler(torch.arange(U), ue, ie)
    assert not res.scores['image'].requires_grad
    with pytest.raises(ValueError, match='num_candidates'):
        CrossModalHardNegativeSampler(ei, I, num_candidates=0)
    with pytest.raises(ValueError, match='Unknown assignment'):
        CrossModalHardNegativeSampler(ei, I, assignment='random')
    with pytest.raises(ValueError, match='same keys'):
        sampler(torch.arange(U), ue, {'image': ie['image']})
    with pytest.raises(ValueError, match=">= 2 modalities"):
        sampler(torch.arange(U), {'image': ue['image']},
                {'image': ie['image']})
    fused = CrossModalHardNegativeSampler(ei, I, assignment='fused')
    with pytest.raises(ValueError, match="reference branch 'fused'"):
        fused(torch.arange(U), ue, ie)
    with pytest.raises(ValueError, match='must have 8 rows'):
        sampler(torch.arange(U), ue, {k: v[:5] for k, v in ie.items()})


@pytest.mark.parametrize('max_gather', [1, 5, 13, 10**6])
def test_chns_max_gather_is_exact(max_gather):
    # Chunked candidate scoring gives the same scores and negatives as one
    # gather of the whole batch.
    U, I, C = 40, 30, 6
    ei = random_interactions(U, I)
    ue, ie = embeddings(U, I, ['audio', 'image', 'text'])
    users = torch.arange(U).repeat(3)
    results = []
    for mg in (None, max_gather):
        sampler = CrossModalHardNegativeSampler(
            ei, I, num_candidates=C, num_users=U, max_gather=mg,
            generator=torch.Generator().manual_seed(0))
        results.append(sampler(users, ue, ie))
    want, got = results
    assert torch.equal(got.candidates, want.candidates)
    for m in want.scores:
        assert torch.equal(got.scores[m], want.scores[m])
    for m in want.negatives:
        assert torch.equal(got.negatives[m], want.negatives[m])


@pytest.mark.parametrize('bad', [0, -3, 2.5, True])
def test_chns_bad_max_gather(bad):
    with pytest.raises((TypeError, ValueError), match="'max_gather'"):
        CrossModalHardNegativeSampler(random_interactions(), 30,
                                      max_gather=bad)


@pytest.mark.bad_input
def test_chns_refuses_float_ids_and_mismatched_widths_and_takes_empty_batches():
    from pyg_brmrs.sampling import CrossModalHardNegativeSampler
    ei = torch.tensor([[0, 0, 1, 2], [0, 1, 2, 3]])
    s = CrossModalHardNegativeSampler(ei, 6, num_candidates=3)
    ue = {'a': torch.randn(3, 4), 'b': torch.randn(3, 4)}
    ie = {'a': torch.randn(6, 4), 'b': torch.randn(6, 4)}
    with pytest.raises(TypeError, match='integer tensor of user ids'):
        s(torch.tensor([1.7]), ue, ie)
    with pytest.raises(TypeError, match='integer tensor'):
        s.uniform.sample(torch.tensor([0.0]))
    bad = dict(ie, b=torch.randn(6, 5))
    with pytest.raises(ValueError, match=r"'user_emb\['b'\]' and "
                       r"'item_emb\['b'\]' must be \[N, d\] with one d"):
        s(torch.tensor([0]), ue, bad)
    out = s(torch.empty(0, dtype=torch.long), ue, ie)
    assert all(v.numel() == 0 for v in out.negatives.values())
