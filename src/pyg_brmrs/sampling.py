r"""Negative samplers: exact uniform sampling from the items a user has not
interacted with, and BR-MRS's cross-modal hard negative sampling (CHNS).

Both draw from :math:`\mathcal{I} \setminus \mathcal{O}_u` *exactly*, without
rejection: with the user's sorted training items
:math:`p_0 < p_1 < \dots < p_{n_u - 1}`, the :math:`r`-th allowed item is

.. math::
    a_r = r + \left|\{t : p_t - t \le r\}\right|,

because :math:`p_t - t` is the number of allowed items below :math:`p_t`.
Drawing :math:`r \sim \mathcal{U}\{0, \dots, |\mathcal{I}| - n_u - 1\}` and
finding the count with one :func:`torch.searchsorted` over the keys
:math:`u \cdot |\mathcal{I}| + (p_t - t)` samples the whole batch in a few
vectorised operations, whatever the user's degree.
"""
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import torch
from torch import Tensor

from pyg_brmrs.utils.checks import check_int

ASSIGNMENTS = ('cross', 'same', 'fused')


def check_user_ids(users: Tensor) -> None:
    r"""A 1-D integer tensor of user ids (a float id such as 1.7 would be
    truncated to user 1 by ``.long()``)."""
    if not isinstance(users, Tensor) or users.dtype.is_floating_point or \
            users.dtype == torch.bool or users.dtype.is_complex:
        got = users.dtype if isinstance(users, Tensor) else \
            type(users).__name__
        raise TypeError(f"'users' must be an integer tensor of user ids "
                        f"(got {got})")
    if users.dim() != 1:
        raise ValueError(f"'users' must be a 1-D tensor of user ids (got "
                         f"shape {tuple(users.shape)})")


class UniformNegativeSampler:
    r"""Draws items uniformly from :math:`\mathcal{I} \setminus
    \mathcal{O}_u`, the items user :math:`u` has no training interaction
    with (a training positive is never returned).

    .. code-block:: python

        sampler = UniformNegativeSampler(data['user', 'rates', 'item'].edge_index,
                                         num_items=data['item'].num_nodes)
        neg = sampler(users)             # [B]
        neg = sampler(users, 16)         # [B, 16]

    Args:
        edge_index (torch.Tensor): The training interactions ``[2, E]``
            (row 0 users, row 1 items). Duplicates are allowed.
        num_items (int): The number of items :math:`|\mathcal{I}|`.
        num_users (int, optional): The number of users (default: the largest
            user id + 1).
        generator (torch.Generator, optional): The default random generator
            (must live on the device of :obj:`edge_index`).
            (default: :obj:`None`, the global generator)
    """
    def __init__(self, edge_index: Tensor, num_items: int,
                 num_users: Optional[int] = None,
                 generator: Optional[torch.Generator] = None):
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"'edge_index' must have shape [2, E] (got "
                             f"{tuple(edge_index.shape)})")
        if num_items < 1:
            raise ValueError(f"'num_items' must be positive (got {num_items})")
        edge_index = edge_index.long()
        if edge_index.numel() > 0:
            if int(edge_index.min()) < 0:
                raise ValueError("'edge_index' contains negative ids")
            if int(edge_index[1].max()) >= num_items:
                raise ValueError(f"'edge_index' has item id "
                                 f"{int(edge_index[1].max())} >= num_items "
                                 f"({num_items})")
        max_user = int(edge_index[0].max()) + 1 if edge_index.numel() else 0
        num_users = max_user if num_users is None else int(num_users)
        if num_users < max_user:
            raise ValueError(f"'edge_index' has user id {max_user - 1} >= "
                             f"num_users ({num_users})")
        self.num_items = int(num_items)
        self.num_users = num_users
        self.generator = generator

        key = torch.unique(edge_index[0] * num_items + edge_index[1])  # sorted
        user = torch.div(key, num_items, rounding_mode='floor')
        item = key - user * num_items
        self.degree = torch.bincount(user, minlength=num_users)
        self.rowptr = torch.zeros(num_users + 1, dtype=torch.long,
                                  device=key.device)
        self.rowptr[1:] = torch.cumsum(self.degree, 0)
        local = torch.arange(key.numel(), device=key.device) - self.rowptr[user]
        # Non-decreasing within a user, user-major globally:
        self._keys = user * num_items + (item - local)
        self._pos_keys = key

    @property
    def device(self) -> torch.device:
        return self._keys.device

    def to(self, device) -> 'UniformNegativeSampler':
        for name in ('degree', 'rowptr', '_keys', '_pos_keys'):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def num_allowed(self, users: Tensor) -> Tensor:
        r"""The number of allowed items :math:`|\mathcal{I}| - n_u`."""
        return self.num_items - self.degree[users]

    def is_positive(self, users: Tensor, items: Tensor) -> Tensor:
        r"""Whether each ``(users[k], items[k])`` is a training pair."""
        query = users * self.num_items + items
        if self._pos_keys.numel() == 0:
            return torch.zeros_like(query, dtype=torch.bool)
        pos = torch.searchsorted(self._pos_keys, query).clamp(
            max=self._pos_keys.numel() - 1)
        return self._pos_keys[pos] == query

    def sample(self, users: Tensor, num_samples: Optional[int] = None,
               generator: Optional[torch.Generator] = None) -> Tensor:
        r"""Draws ``num_samples`` allowed items per user, independently and
        with replacement.

        Args:
            users (torch.Tensor): ``[B]`` user ids.
            num_samples (int, optional): Samples per user; :obj:`None` returns
                a ``[B]`` tensor, an int ``S`` a ``[B, S]`` one.
            generator (torch.Generator, optional): Overrides the default
                generator for this call.

        Raises:
            ValueError: if a user id is out of range or a user has interacted
                with every item.
            TypeError: if :obj:`users` is not an integer tensor.
        """
        check_user_ids(users)
        users = users.to(self.device).long()
        if users.numel() > 0 and (int(users.min()) < 0
                                  or int(users.max()) >= self.num_users):
            raise ValueError(f"'users' must lie in [0, {self.num_users - 1}] "
                             f"(got ids in [{int(users.min())}, "
                             f"{int(users.max())}])")
        shape = (users.numel(), 1 if num_samples is None else num_samples)
        allowed = self.num_allowed(users)
        if users.numel() > 0 and bool((allowed <= 0).any()):
            full = torch.unique(users[allowed <= 0])[:10].tolist()
            raise ValueError(f"Cannot sample negatives: users {full} have "
                             f"interacted with all {self.num_items} items")
        gen = generator if generator is not None else self.generator
        rand = torch.rand(shape, generator=gen, device=self.device,
                          dtype=torch.float64)
        r = (rand * allowed.view(-1, 1)).long()
        r = torch.minimum(r, (allowed - 1).view(-1, 1))
        query = users.view(-1, 1) * self.num_items + r
        count = torch.searchsorted(self._keys, query, right=True)
        count = count - self.rowptr[users].view(-1, 1)
        out = r + count
        return out.view(-1) if num_samples is None else out

    __call__ = sample

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_users={self.num_users}, '
                f'num_items={self.num_items}, '
                f'num_edges={self._pos_keys.numel()})')


@dataclass
class HardNegatives:
    r"""The result of :class:`CrossModalHardNegativeSampler`.

    Attributes:
        candidates (torch.Tensor): The candidate pool ``[B, C]``.
        hard (Dict[str, torch.Tensor]): modality → ``[B]``, the hardest
            candidate under that modality's own score.
        negatives (Dict[str, torch.Tensor]): modality → ``[B]``, the negative
            the branch of that modality is trained on.
        uniform (torch.Tensor): ``[B]`` an independent uniform negative (for
            the synergy loss).
        scores (Dict[str, torch.Tensor]): modality → ``[B, C]`` candidate
            scores (no gradient).
    """
    candidates: Tensor
    hard: Dict[str, Tensor]
    negatives: Dict[str, Tensor]
    uniform: Tensor
    scores: Dict[str, Tensor]


class CrossModalHardNegativeSampler:
    r"""Cross-modal hard negative sampling (CHNS) of BR-MRS.

    For every training pair :math:`(u, i^+)` a pool :math:`\mathcal{N}(u)` of
    :math:`C` candidates is drawn uniformly (with replacement) from
    :math:`\mathcal{I} \setminus \mathcal{O}_u`, and scored by every
    modality, :math:`s_m(u, j) = \langle \mathbf{p}^{(m)}_u,
    \mathbf{q}^{(m)}_j \rangle`, without gradient. Then

    .. math::
        \mathrm{hard}[m] = \arg\max_{j \in \mathcal{N}(u)} s_m(u, j),

    and the negative branch :math:`m` is trained on is

    * :obj:`assignment="cross"` (the paper's text): the hardest candidate
      under the *other* modalities,
      :math:`\arg\max_j \frac{1}{M - 1} \sum_{m' \ne m} s_{m'}(u, j)`; for
      two modalities, text is trained on the image-hard negative and vice
      versa;
    * :obj:`assignment="same"` (the paper's Eq. 2 as printed):
      :math:`\mathrm{hard}[m]`;
    * :obj:`assignment="fused"` (single-space hard negatives, an ablation):
      every branch gets the hardest candidate under the reference branch
      :obj:`"fused"`, which must then be present in the embeddings.

    :obj:`num_candidates=1` gives uniform negatives to every branch. Ties
    pick the first candidate.

    .. code-block:: python

        sampler = CrossModalHardNegativeSampler(edge_index, num_items,
                                                num_candidates=16)
        res = sampler(users, user_emb, item_emb)  # dicts modality -> [N, d]
        res.negatives['text']                     # [B]

    Args:
        edge_index (torch.Tensor): Training interactions ``[2, E]``.
        num_items (int): The number of items.
        num_candidates (int, optional): The pool size :math:`C`.
            (default: :obj:`16`)
        assignment (str, optional): :obj:`"cross"`, :obj:`"same"` or
            :obj:`"fused"`. (default: :obj:`"cross"`)
        num_users (int, optional): The number of users.
        generator (torch.Generator, optional): Default random generator.
        reference (str, optional): The branch used by
            :obj:`assignment="fused"`. (default: :obj:`"fused"`)
        max_gather (int, optional): Memory bound of the candidate scoring:
            at most this many candidate embedding rows are gathered at once
            (users in blocks of :math:`\max(1, \lfloor
            \text{max\_gather} / C \rfloor)`), so its peak extra memory is
            :math:`O(\text{max\_gather} \cdot d)` instead of
            :math:`O(B C d)`. Scores do not depend on it.
            (default: :obj:`None`: the whole batch at once)

    Shapes:
        - **input:** users ``[B]``; :obj:`user_emb` / :obj:`item_emb` map
          every modality to the *full* tables ``[num_users, d_m]`` /
          ``[num_items, d_m]`` (indexed with :obj:`users` / the candidates)
        - **output:** :class:`HardNegatives`
    """
    def __init__(self, edge_index: Tensor, num_items: int,
                 num_candidates: int = 16, assignment: str = 'cross',
                 num_users: Optional[int] = None,
                 generator: Optional[torch.Generator] = None,
                 reference: str = 'fused',
                 max_gather: Optional[int] = None):
        num_candidates = check_int(num_candidates, 'num_candidates')
        if assignment not in ASSIGNMENTS:
            raise ValueError(f"Unknown assignment '{assignment}' (choose from "
                             f"{list(ASSIGNMENTS)})")
        self.uniform = UniformNegativeSampler(edge_index, num_items,
                                              num_users=num_users,
                                              generator=generator)
        self.max_gather = None if max_gather is None else check_int(
            max_gather, 'max_gather')
        self.num_candidates = num_candidates
        self.assignment = assignment
        self.reference = reference

    @property
    def num_items(self) -> int:
        return self.uniform.num_items

    @property
    def generator(self) -> Optional[torch.Generator]:
        return self.uniform.generator

    @generator.setter
    def generator(self, value: Optional[torch.Generator]) -> None:
        self.uniform.generator = value

    def to(self, device) -> 'CrossModalHardNegativeSampler':
        self.uniform.to(device)
        return self

    @torch.no_grad()
    def candidate_scores(self, users: Tensor, candidates: Tensor,
                         user_emb: Tensor, item_emb: Tensor) -> Tensor:
        r"""``[B, C]`` scores :math:`\langle \mathbf{p}_u, \mathbf{q}_j
        \rangle` of the candidates ``[B, C]``, with at most
        :obj:`max_gather` item rows gathered at once."""
        num, width = candidates.shape
        rows = num if self.max_gather is None else max(
            1, self.max_gather // max(width, 1))
        if rows >= num:
            return self._scores(users, candidates, user_emb, item_emb)
        out = user_emb.new_empty((num, width))
        for start in range(0, num, rows):
            end = min(start + rows, num)
            out[start:end] = self._scores(users[start:end],
                                          candidates[start:end], user_emb,
                                          item_emb)
        return out

    @staticmethod
    def _scores(users: Tensor, candidates: Tensor, user_emb: Tensor,
                item_emb: Tensor) -> Tensor:
        u = user_emb.index_select(0, users).unsqueeze(1)  # [B, 1, d]
        q = item_emb.index_select(0, candidates.reshape(-1))
        if candidates.numel() == 0:  # an empty batch
            return user_emb.new_zeros(candidates.shape)
        # a broadcast product and a sum over d (not a batch of B [C, d] x
        # [d, 1] products, which is slower on CPU)
        return (q.view(*candidates.shape, -1) * u).sum(dim=-1)

    @torch.no_grad()
    def draw(self, users: Tensor,
             generator: Optional[torch.Generator] = None
             ) -> Tuple[Tensor, Tensor]:
        r"""The random part of :meth:`__call__` alone: the candidate pools
        ``[B, C]`` and the independent uniform negatives ``[B]`` (global
        item ids), drawn exactly as :meth:`__call__` draws them, *e.g.* to
        put them into a mini-batch subgraph before the embeddings exist."""
        users = users.to(self.uniform.device).long()
        candidates = self.uniform.sample(users, self.num_candidates,
                                         generator)
        uniform = self.uniform.sample(users, None, generator)
        return candidates, uniform

    @torch.no_grad()
    def __call__(self, users: Tensor, user_emb: Mapping[str, Tensor],
                 item_emb: Mapping[str, Tensor],
                 generator: Optional[torch.Generator] = None,
                 candidates: Optional[Tensor] = None,
                 uniform: Optional[Tensor] = None) -> HardNegatives:
        r"""Draws (or takes) the pools and picks the hard negatives.

        With :obj:`candidates` ``[B, C]`` and :obj:`uniform` ``[B]`` given
        (*e.g.* from :meth:`draw`, mapped to the rows of a mini-batch
        subgraph), nothing is drawn: :obj:`users` and the given ids index
        the rows of :obj:`user_emb` / :obj:`item_emb`, whatever their
        size."""
        check_user_ids(users)
        names = [m for m in user_emb if m != self.reference]
        given = candidates is not None or uniform is not None
        if given and (candidates is None or uniform is None or
                      candidates.dim() != 2 or
                      candidates.size(0) != users.numel() or
                      tuple(uniform.shape) != (users.numel(), )):
            raise ValueError(f"'candidates' [B, C] and 'uniform' [B] must be "
                             f"given together, with B = {users.numel()} "
                             f"users")
        if set(user_emb) != set(item_emb):
            raise ValueError(f"'user_emb' and 'item_emb' must have the same "
                             f"keys (got {sorted(user_emb)} and "
                             f"{sorted(item_emb)})")
        if len(names) < 1:
            raise ValueError("At least one modality embedding is needed")
        if self.assignment == 'cross' and len(names) < 2:
            raise ValueError(f"assignment='cross' needs >= 2 modalities (got "
                             f"{names})")
        if self.assignment == 'fused' and self.reference not in user_emb:
            raise ValueError(f"assignment='fused' needs the reference branch "
                             f"'{self.reference}' in the embeddings (got "
                             f"{sorted(user_emb)})")
        for m in user_emb:
            if user_emb[m].dim() != 2 or item_emb[m].dim() != 2 or \
                    user_emb[m].size(1) != item_emb[m].size(1):
                raise ValueError(
                    f"'user_emb[{m!r}]' and 'item_emb[{m!r}]' must be "
                    f"[N, d] with one d (got {tuple(user_emb[m].shape)} and "
                    f"{tuple(item_emb[m].shape)})")
            if not given and item_emb[m].size(0) != self.num_items:
                raise ValueError(f"'item_emb[{m!r}]' must have "
                                 f"{self.num_items} rows (got "
                                 f"{item_emb[m].size(0)})")

        if given:
            users = users.long()
            candidates, uniform = candidates.long(), uniform.long()
        else:
            candidates, uniform = self.draw(users, generator)
            users = users.to(self.uniform.device).long()
        scores = {
            m: self.candidate_scores(users, candidates, user_emb[m],
                                     item_emb[m])
            for m in user_emb
        }

        def pick(score: Tensor) -> Tensor:
            return candidates.gather(1, score.argmax(dim=1,
                                                     keepdim=True)).view(-1)

        hard = {m: pick(scores[m]) for m in names}
        if self.assignment == 'same':
            negatives = dict(hard)
        elif self.assignment == 'fused':
            ref = pick(scores[self.reference])
            negatives = {m: ref for m in names}
        else:
            # argmax of the mean over the other modalities = argmax of the sum
            negatives = {
                m: pick(sum(scores[k] for k in names if k != m))
                for m in names
            }
        return HardNegatives(candidates, hard, negatives, uniform, scores)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_items={self.num_items}, '
                f'num_candidates={self.num_candidates}, '
                f'assignment={self.assignment}'
                + (f', max_gather={self.max_gather}'
                   if self.max_gather is not None else '') + ')')
