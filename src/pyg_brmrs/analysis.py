r"""Synergy, uniqueness and degradation subsets of held-out pairs
of a multimodal recommender.

For a held-out pair :math:`(u, i^+)` and a cutoff :math:`K`, branch :math:`b`
is *correct* when :math:`i^+` is among the top-:math:`K` items of :math:`u`
under the branch score :math:`s_b(u, i) = \langle p_u^{(b)}, q_i^{(b)}
\rangle`, the user's training items masked. With :math:`F` the fused branch
and :math:`\mathcal{M}` the unimodal branches, each pair falls in

* :math:`U_m` (*unique to* :math:`m`): :math:`m` is the only correct branch
  among :math:`\mathcal{M}`. The fused branch is ignored here, as in the
  paper's definition; :attr:`SynergySubsets.unique_fused` reports the share
  of pairs in :math:`U_m` that the fused branch also gets right.
* :math:`U_{syn}` (*synergy*): :math:`F` correct, no branch in
  :math:`\mathcal{M}` correct.
* :math:`U_r` (*degradation*): some branch in :math:`\mathcal{M}` correct,
  :math:`F` wrong.

All fractions are over the held-out pairs (every pair counts once, so users
with more held-out items weigh more). Two partitions of the pairs hold
exactly:

.. math::
    \mathrm{none} + U_{syn} + U_r + \mathrm{retained} &= 1, \\
    \textstyle\sum_m U_m + \mathrm{shared} + U_{syn} + \mathrm{none} &= 1,

with *none* = no branch correct, *retained* = fused and some unimodal branch
correct, *shared* = at least two unimodal branches correct (fused ignored).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

import torch
from torch import Tensor

from pyg_brmrs.evaluation import (
    RankingPlan,
    check_embedding_pair,
    mask_edge_index,
    ranked_items,
)
from pyg_brmrs.utils.checks import check_edge_index, check_int


@dataclass
class SynergySubsets:
    r"""The result of :func:`synergy_subsets`. Every fraction is over
    :attr:`num_pairs` held-out pairs.

    Attributes:
        k (int): The cutoff :math:`K`.
        num_pairs (int): The number of held-out pairs.
        fused (str): The name of the fused branch.
        unimodal (List[str]): The names of the unimodal branches.
        hit_rate (Dict[str, float]): Per branch (fused included), the fraction
            of pairs it gets right.
        unique (Dict[str, float]): :math:`U_m` per unimodal branch.
        unique_fused (Dict[str, float]): Fraction of pairs in :math:`U_m`
            whose fused branch is correct too (a fraction of *all* pairs, so
            ``unique_fused[m] <= unique[m]``).
        synergy (float): :math:`U_{syn}`.
        degradation (float): :math:`U_r`.
        retained (float): Fused correct and some unimodal branch correct.
        shared (float): At least two unimodal branches correct.
        all_correct (float): Every branch correct.
        none_correct (float): No branch correct.
        correct (torch.Tensor, optional): With :obj:`return_correct=True`,
            the boolean matrix ``[num_pairs, 1 + len(unimodal)]`` (column 0 is
            the fused branch, then :attr:`unimodal` in order).
        pairs (torch.Tensor, optional): With :obj:`return_correct=True`, the
            held-out pairs ``[2, num_pairs]`` in the row order of
            :attr:`correct`.
    """
    k: int
    num_pairs: int
    fused: str
    unimodal: List[str]
    hit_rate: Dict[str, float]
    unique: Dict[str, float]
    unique_fused: Dict[str, float]
    synergy: float
    degradation: float
    retained: float
    shared: float
    all_correct: float
    none_correct: float
    correct: Optional[Tensor] = field(default=None, repr=False)
    pairs: Optional[Tensor] = field(default=None, repr=False)

    def to_dict(self) -> Dict[str, object]:
        r"""A JSON-serialisable dict of every field but :attr:`correct` and
        :attr:`pairs`."""
        return {
            'k': self.k,
            'num_pairs': self.num_pairs,
            'fused': self.fused,
            'unimodal': list(self.unimodal),
            'hit_rate': dict(self.hit_rate),
            'unique': dict(self.unique),
            'unique_fused': dict(self.unique_fused),
            'synergy': self.synergy,
            'degradation': self.degradation,
            'retained': self.retained,
            'shared': self.shared,
            'all_correct': self.all_correct,
            'none_correct': self.none_correct,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> 'SynergySubsets':
        r"""Inverse of :meth:`to_dict`."""
        keys = [f for f in cls.__dataclass_fields__
                if f not in ('correct', 'pairs')]
        missing = [key for key in keys if key not in d]
        if missing:
            raise ValueError(f"'d' lacks the keys {missing}")
        return cls(**{key: d[key] for key in keys})


def synergy_subsets(
    user_emb: Mapping[str, Tensor],
    item_emb: Mapping[str, Tensor],
    train_edge_index: Tensor,
    eval_edge_index: Tensor,
    *,
    k: int = 20,
    fused: str = 'fused',
    unimodal: Optional[Sequence[str]] = None,
    exclude_edge_index: Optional[Tensor] = None,
    batch_size: int = 4096,
    return_correct: bool = False,
) -> SynergySubsets:
    r"""Splits the held-out pairs into the uniqueness (:math:`U_m`), synergy
    (:math:`U_{syn}`) and degradation (:math:`U_r`) subsets; see the module docstring for the definitions.

    .. code-block:: python

        res = synergy_subsets(
            {'fused': p_f, 'image': p_v, 'text': p_t},   # [num_users, d_b]
            {'fused': q_f, 'image': q_v, 'text': q_t},   # [num_items, d_b]
            train_edge_index, test_edge_index, k=20)
        res.unique['image'], res.synergy, res.degradation

    Args:
        user_emb (Dict[str, torch.Tensor]): Per branch, user embeddings
            ``[num_users, d_b]`` (:math:`d_b` may differ across branches).
        item_emb (Dict[str, torch.Tensor]): Per branch, item embeddings
            ``[num_items, d_b]``; same keys as :obj:`user_emb`.
        train_edge_index (torch.Tensor): Training pairs ``[2, E]`` (masked).
        eval_edge_index (torch.Tensor): Held-out pairs ``[2, P]`` to classify.
        k (int, optional): The cutoff :math:`K`. (default: :obj:`20`)
        fused (str, optional): The key of the fused branch. (default:
            :obj:`'fused'`)
        unimodal (Sequence[str], optional): The keys of the unimodal branches
            (default: every key but :obj:`fused`, in dict order).
        exclude_edge_index (torch.Tensor, optional): Further pairs to mask.
        batch_size (int, optional): Users scored at once. (default:
            :obj:`4096`)
        return_correct (bool, optional): Keep the per-pair correctness matrix
            in the result (for significance tests). (default: :obj:`False`)
    """
    for name, emb in (('user_emb', user_emb), ('item_emb', item_emb)):
        if not isinstance(emb, Mapping):
            raise TypeError(f"'{name}' must be a dict branch -> tensor (got "
                            f"{type(emb).__name__})")
    if set(user_emb) != set(item_emb):
        raise ValueError(f"'user_emb' and 'item_emb' must have the same keys "
                         f"(got {sorted(user_emb)} and {sorted(item_emb)})")
    if fused not in user_emb:
        raise ValueError(f"fused branch '{fused}' is not a key of the "
                         f"embeddings (keys {list(user_emb)})")
    if unimodal is None:
        unimodal = [key for key in user_emb if key != fused]
    else:
        unimodal = list(unimodal)
    unknown = [m for m in unimodal if m not in user_emb]
    if unknown or fused in unimodal or len(set(unimodal)) != len(unimodal):
        raise ValueError(f"'unimodal' must name distinct embedding keys other "
                         f"than '{fused}' (got {unimodal}; keys "
                         f"{list(user_emb)})")
    if len(unimodal) == 0:
        raise ValueError(f"there is no unimodal branch (keys "
                         f"{list(user_emb)}, fused '{fused}')")
    k = check_int(k, 'k')

    branches = [fused] + unimodal
    embs = {b: check_embedding_pair(user_emb[b], item_emb[b], prefix=f"['{b}'] ")
            for b in branches}
    num_users = {b: embs[b][0].size(0) for b in branches}
    num_items = {b: embs[b][1].size(0) for b in branches}
    devices = {b: str(embs[b][0].device) for b in branches}
    for what, sizes in (('number of users', num_users),
                        ('number of items', num_items),
                        ('device', devices)):
        if len(set(sizes.values())) != 1:
            raise ValueError(f"the branches disagree on the {what}: {sizes}")
    device = embs[fused][0].device
    n_users, n_items = num_users[fused], num_items[fused]

    eval_edge_index = check_edge_index(
        eval_edge_index, 'eval_edge_index', num_nodes=(n_users, n_items),
        kinds=('user', 'item'), allow_empty=False)
    eval_edge_index = eval_edge_index.to(device)

    # The masks are built once and shared by the branches (the machinery of
    # `pyg_brmrs.evaluation.topk_items`):
    users, local = torch.unique(eval_edge_index[0], return_inverse=True)
    mask = mask_edge_index(train_edge_index, exclude_edge_index, n_items,
                           device)
    plan = RankingPlan(users, mask, n_items, batch_size)
    item = eval_edge_index[1].view(-1, 1)
    correct = torch.empty((eval_edge_index.size(1), len(branches)),
                          dtype=torch.bool, device=device)
    for j, b in enumerate(branches):
        top = ranked_items(plan, embs[b][0], embs[b][1], k)  # [U_eval, k]
        correct[:, j] = (top[local] == item).any(dim=1)

    f = correct[:, 0]
    uni = correct[:, 1:]
    n_uni = uni.sum(dim=1)
    any_uni = n_uni > 0
    only = uni & (n_uni == 1).view(-1, 1)  # [P, M]: m is the only correct one

    subsets = {  # [P] membership of each pair, in SynergySubsets' names
        'synergy': f & ~any_uni,
        'degradation': ~f & any_uni,
        'retained': f & any_uni,
        'shared': n_uni >= 2,
        'all_correct': correct.all(dim=1),
        'none_correct': ~correct.any(dim=1),
    }
    num_pairs = eval_edge_index.size(1)
    counts = torch.cat([
        torch.stack(list(subsets.values()), dim=1).sum(0),
        correct.sum(0),
        only.sum(0),
        (only & f.view(-1, 1)).sum(0),
    ]).tolist()  # one host transfer
    fractions = [c / num_pairs for c in counts]
    rest = fractions[len(subsets):]
    nb, nm = len(branches), len(unimodal)

    return SynergySubsets(
        k=k,
        num_pairs=num_pairs,
        fused=fused,
        unimodal=unimodal,
        hit_rate=dict(zip(branches, rest[:nb])),
        unique=dict(zip(unimodal, rest[nb:nb + nm])),
        unique_fused=dict(zip(unimodal, rest[nb + nm:])),
        **dict(zip(subsets, fractions)),
        correct=correct if return_correct else None,
        pairs=eval_edge_index if return_correct else None,
    )


__all__ = ['SynergySubsets', 'synergy_subsets']
