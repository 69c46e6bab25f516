import json

import pytest
import torch

from pyg_brmrs.analysis import SynergySubsets, synergy_subsets

# Hand-built case: one user per held-out pair, K = 1. Item embeddings are
# one-hot, so a user's embedding *is* its score vector and we choose exactly
# which branch ranks the held-out item first. Per pair: (fused, image, text).
PATTERN = [
    (1, 1, 0),  # A: U_image, fused also right (retained)
    (0, 0, 1),  # B: U_text, fused wrong (degradation)
    (1, 0, 0),  # C: synergy
    (0, 1, 1),  # D: shared, degradation
    (1, 1, 1),  # E: all correct, shared, retained
    (0, 0, 0),  # F: none correct
    (0, 1, 0),  # G: U_image, degradation
    (1, 0, 0),  # H: synergy
]
NUM_ITEMS = 10


def hand_built():
    n = len(PATTERN)
    branches = ('fused', 'image', 'text')
    scores = {b: torch.zeros(n, NUM_ITEMS) for b in branches}
    train, held = [], []
    for u, pattern in enumerate(PATTERN):
        pos, decoy, trained = u % 5, 5 + u % 4, 9
        train.append((u, trained))
        held.append((u, pos))
        for b, ok in zip(branches, pattern):
            scores[b][u, trained] = 100.0  # the best item, but masked
            scores[b][u, pos] = 1.0 if ok else 0.5
            scores[b][u, decoy] = 0.5 if ok else 1.0
    eye = torch.eye(NUM_ITEMS)
    # The fused branch is a concatenation (d = 2 * NUM_ITEMS), the others are
    # NUM_ITEMS-dimensional:
    user_emb = {'fused': torch.cat([scores['fused'] / 2] * 2, dim=1),
                'image': scores['image'], 'text': scores['text']}
    item_emb = {'fused': torch.cat([eye, eye], dim=1), 'image': eye,
                'text': eye}
    return user_emb, item_emb, torch.tensor(train).t(), torch.tensor(held).t()


def test_hand_built_exact_fractions():
    user_emb, item_emb, train, held = hand_built()
    res = synergy_subsets(user_emb, item_emb, train, held, k=1,
                          return_correct=True)
    n = len(PATTERN)
    assert res.num_pairs == n and res.k == 1
    assert res.fused == 'fused' and res.unimodal == ['image', 'text']
    assert res.correct.tolist() == [[bool(v) for v in p] for p in PATTERN]
    assert torch.equal(res.pairs, held)
    assert res.unique == {'image': 2 / n, 'text': 1 / n}
    assert res.unique_fused == {'image': 1 / n, 'text': 0.0}
    assert res.synergy == 2 / n
    assert res.degradation == 3 / n
    assert res.retained == 2 / n
    assert res.shared == 2 / n
    assert res.all_correct == 1 / n
    assert res.none_correct == 1 / n
    assert res.hit_rate == {'fused': 4 / n, 'image': 4 / n, 'text': 3 / n}


def test_hand_built_masking_and_larger_k():
    user_emb, item_emb, train, held = hand_built()
    # Without masking, the trained item (score 100) takes the only slot:
    res = synergy_subsets(user_emb, item_emb, torch.empty(2, 0).long(), held,
                          k=1)
    assert res.none_correct == 1.0
    # With K = 2 every branch ranks the held-out item (1.0 or 0.5) in its top
    # two among the unmasked items:
    res = synergy_subsets(user_emb, item_emb, train, held, k=2)
    assert res.all_correct == 1.0 and res.synergy == 0.0
    # K larger than the number of items: everything unmasked is retrieved.
    res = synergy_subsets(user_emb, item_emb, train, held, k=50)
    assert res.all_correct == 1.0


def test_unimodal_subset_and_custom_names():
    user_emb, item_emb, train, held = hand_built()
    user_emb = {('F' if k == 'fused' else k): v for k, v in user_emb.items()}
    item_emb = {('F' if k == 'fused' else k): v for k, v in item_emb.items()}
    res = synergy_subsets(user_emb, item_emb, train, held, k=1, fused='F',
                          unimodal=['text'])
    n = len(PATTERN)
    # Only text counts as unimodal now: pairs with text right are B, D, E.
    assert res.unique == {'text': 3 / n}
    assert res.synergy == 3 / n  # A, C, H: fused right, text wrong
    assert res.degradation == 2 / n  # B, D
    assert res.none_correct == 2 / n  # F, G (image is not a branch here)


def naive(user_emb, item_emb, train, held, k, fused, unimodal):
    r"""Brute force: loop over pairs, explicit ranking per branch."""
    masked = {}
    for u, i in train.t().tolist():
        masked.setdefault(u, set()).add(i)
    branches = [fused] + list(unimodal)
    rows = []
    for u, i in held.t().tolist():
        row = []
        for b in branches:
            s = (user_emb[b][u] @ item_emb[b].t()).tolist()
            ranked = sorted((j for j in range(len(s))
                             if j not in masked.get(u, set())),
                            key=lambda j: -s[j])
            row.append(i in ranked[:k])
        rows.append(row)
    n = len(rows)
    f = [r[0] for r in rows]
    uni = [r[1:] for r in rows]
    frac = lambda xs: sum(xs) / n  # noqa: E731
    return {
        'synergy': frac(f[p] and not any(uni[p]) for p in range(n)),
        'degradation': frac(not f[p] and any(uni[p]) for p in range(n)),
        'retained': frac(f[p] and any(uni[p]) for p in range(n)),
        'shared': frac(sum(uni[p]) >= 2 for p in range(n)),
        'all_correct': frac(all(rows[p]) for p in range(n)),
        'none_correct': frac(not any(rows[p]) for p in range(n)),
        'unique': {m: frac(uni[p][j] and sum(uni[p]) == 1 for p in range(n))
                   for j, m in enumerate(unimodal)},
        'unique_fused': {
            m: frac(f[p] and uni[p][j] and sum(uni[p]) == 1
                    for p in range(n))
            for j, m in enumerate(unimodal)},
        'hit_rate': {b: frac(r[j] for r in rows)
                     for j, b in enumerate(branches)},
    }


@pytest.mark.parametrize('k', [1, 3, 8])
def test_random_against_naive_and_partitions(k):
    gen = torch.Generator().manual_seed(k)
    num_users, num_items = 25, 20
    modalities = ['image', 'text', 'audio']
    dims = {'fused': 12, 'image': 4, 'text': 5, 'audio': 3}
    # Correlated branches, so that every subset is populated:
    base_u = torch.randn(num_users, 3, generator=gen, dtype=torch.double)
    base_i = torch.randn(num_items, 3, generator=gen, dtype=torch.double)
    user_emb, item_emb = {}, {}
    for b, d in dims.items():
        pu = torch.randn(num_users, d, generator=gen, dtype=torch.double)
        qi = torch.randn(num_items, d, generator=gen, dtype=torch.double)
        pu[:, :3] += 2 * base_u
        qi[:, :3] += 2 * base_i
        user_emb[b], item_emb[b] = pu, qi
    pairs = torch.stack([torch.randint(0, num_users, (120, ), generator=gen),
                         torch.randint(0, num_items, (120, ), generator=gen)])
    keys = (pairs[0] * num_items + pairs[1]).unique()
    perm = keys[torch.randperm(keys.numel(), generator=gen)]
    held = torch.stack([perm[:40] // num_items, perm[:40] % num_items])
    train = torch.stack([perm[40:] // num_items, perm[40:] % num_items])

    res = synergy_subsets(user_emb, item_emb, train, held, k=k,
                          batch_size=7)
    ref = naive(user_emb, item_emb, train, held, k, 'fused', modalities)
    out = res.to_dict()
    for key, value in ref.items():
        if isinstance(value, dict):
            assert out[key].keys() == value.keys()
            for m in value:
                assert out[key][m] == pytest.approx(value[m]), (key, m)
        else:
            assert out[key] == pytest.approx(value), key
    # The documented partitions:
    assert res.none_correct + res.synergy + res.degradation + \
        res.retained == pytest.approx(1.0)
    assert sum(res.unique.values()) + res.shared + res.synergy + \
        res.none_correct == pytest.approx(1.0)
    for m in modalities:
        assert res.unique_fused[m] <= res.unique[m]
    # JSON round trip
    again = SynergySubsets.from_dict(json.loads(json.dumps(out)))
    assert again.to_dict() == out


def test_bad_input():
    user_emb, item_emb, train, held = hand_built()
    with pytest.raises(ValueError, match="fused branch 'joint'"):
        synergy_subsets(user_emb, item_emb, train, held, fused='joint')
    with pytest.raises(ValueError, match="'unimodal'"):
        synergy_subsets(user_emb, item_emb, train, held,
                        unimodal=['image', 'audio'])
    with pytest.raises(ValueError, match='same keys'):
        synergy_subsets(user_emb, {'fused': item_emb['fused']}, train, held)
    with pytest.raises(ValueError, match='no unimodal branch'):
        synergy_subsets({'fused': user_emb['fused']},
                        {'fused': item_emb['fused']}, train, held)
    bad = dict(item_emb, text=item_emb['text'][:5])
    with pytest.raises(ValueError, match='number of items'):
        synergy_subsets(user_emb, bad, train, held)
    bad = dict(user_emb, text=user_emb['text'][:, :3])
    with pytest.raises(ValueError, match="\\['text'\\] user_emb.*size"):
        synergy_subsets(user_emb, bad, train, held)
    with pytest.raises(ValueError, match="'k'"):
        synergy_subsets(user_emb, item_emb, train, held, k=0)
    with pytest.raises(ValueError, match='user id 99'):
        synergy_subsets(user_emb, item_emb, train, torch.tensor([[99], [0]]))
    with pytest.raises(TypeError, match="'user_emb' must be a dict"):
        synergy_subsets(user_emb['fused'], item_emb, train, held)
    with pytest.raises(ValueError, match='missing|lacks'):
        SynergySubsets.from_dict({'k': 1})


# Plots ######################################################################
