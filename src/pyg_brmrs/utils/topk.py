r"""Masked, chunked top-:math:`k` ranking of items for users under the score
``user_emb[u] @ item_emb.T``: the one primitive behind full-ranking
evaluation (:mod:`pyg_brmrs.evaluation`), the subset analysis and
:meth:`pyg_brmrs.nn.Recommender.recommend`. It lives here, below the models,
so that every layer ranks in exactly the same way; :mod:`pyg_brmrs.evaluation`
re-exports its public names.
"""
import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from pyg_brmrs.utils.checks import check_edge_index, check_int

#: The fewest users a batch holds before the items are scored in blocks
#: under ``max_scores`` (see :class:`RankingPlan`).
MIN_BLOCK_ROWS = 256

# Input checks ################################################################

def _check_emb(emb: Tensor, name: str) -> Tensor:
    if not isinstance(emb, Tensor):
        raise TypeError(f"'{name}' must be a torch.Tensor "
                        f"(got {type(emb).__name__})")
    if emb.dim() != 2:
        raise ValueError(f"'{name}' must have shape [N, d] "
                         f"(got {list(emb.size())})")
    if not emb.dtype.is_floating_point:
        raise ValueError(f"'{name}' must be a floating point tensor "
                         f"(got dtype {emb.dtype})")
    # One reduction as the fast path; the sum of finite values is finite
    # unless it overflows, in which case the exact check decides.
    if not bool(torch.isfinite(emb.sum())) \
            and not bool(torch.isfinite(emb).all()):
        raise ValueError(f"'{name}' holds NaN or infinite values")
    return emb.detach()


def check_embedding_pair(user_emb: Tensor, item_emb: Tensor,
                         prefix: str = '') -> Tuple[Tensor, Tensor]:
    r"""Checks user embeddings ``[num_users, d]`` and item embeddings
    ``[num_items, d]`` (tensors, 2-D, floating point, finite, same ``d`` and
    device) and returns them detached, the item embeddings cast to the user
    embeddings' dtype. :obj:`prefix` is prepended to the argument names in
    messages (*e.g.* ``"['image'] "`` for one branch of a dict)."""
    user_emb = _check_emb(user_emb, prefix + 'user_emb')
    item_emb = _check_emb(item_emb, prefix + 'item_emb')
    if user_emb.size(1) != item_emb.size(1):
        raise ValueError(f"'{prefix}user_emb' and '{prefix}item_emb' must "
                         f"have the same embedding size (got "
                         f"{user_emb.size(1)} and {item_emb.size(1)})")
    if user_emb.device != item_emb.device:
        raise ValueError(f"'{prefix}user_emb' and '{prefix}item_emb' must be "
                         f"on the same device (got {user_emb.device} and "
                         f"{item_emb.device})")
    if user_emb.dtype != item_emb.dtype:
        item_emb = item_emb.to(user_emb.dtype)
    return user_emb, item_emb


# Ranking plan ################################################################

class RankingPlan:
    r"""Precomputed masks for ranking the (distinct) users :obj:`users` in
    batches of :obj:`batch_size` rows.

    Row :obj:`p` of the ranking belongs to user ``users[p]``. The masked pairs
    of all rows are stored, grouped by batch, as flat offsets
    ``(p - batch_start) * num_items + item`` into the batch's score matrix
    (:obj:`mask_flat`; the slice of batch :obj:`b` is
    ``mask_ptr[b]:mask_ptr[b + 1]``). At most one sort (none for pairs that
    are already sorted by user), no loop over users.

    With :obj:`max_scores`, at most that many scores exist at once. When
    :math:`r = \lfloor \text{max\_scores} / |\mathcal{I}| \rfloor` whole
    rows fit, with :math:`r \geq \min(\text{batch\_size}, 256)`, a batch
    holds :math:`\min(\text{batch\_size}, r)` users and all items.
    Otherwise a batch holds :math:`b = \min(\text{batch\_size}, 256,
    \lfloor\sqrt{\text{max\_scores}}\rfloor)` users and the items are
    scored in blocks of :math:`\lfloor \text{max\_scores} / b \rfloor`
    columns whose top-:math:`k` lists are merged (the same top-:math:`k`
    values as one block). Keeping at least 256 rows per batch bounds how
    often the item table is read (once per batch): shrinking the batch to
    a few users instead would make a large catalogue's ranking
    memory-bound.

    Args:
        users (torch.Tensor): The distinct user ids ``[U]`` to rank.
        mask_edge_index (torch.Tensor): Pairs ``[2, E]`` (user, item) never
            ranked (see :func:`mask_edge_index`); pairs of users not in
            :obj:`users` are ignored.
        num_items (int): The number of items.
        batch_size (int): Users scored at once (memory ``batch_size *
            num_items`` scores).
        max_scores (int, optional): At most this many scores at once (see
            above). (default: :obj:`None`)

    :meth:`topk` then ranks any embeddings against the same masks, which is
    how :class:`RankingEvaluator`, :func:`topk_items` and
    :func:`pyg_brmrs.analysis.synergy_subsets` share one ranking.
    """
    def __init__(self, users: Tensor, mask_edge_index: Tensor, num_items: int,
                 batch_size: int, max_scores: Optional[int] = None):
        batch_size = check_int(batch_size, 'batch_size')
        self.item_block = num_items
        if max_scores is not None:
            max_scores = check_int(max_scores, 'max_scores')
            rows = max_scores // max(num_items, 1)
            if rows >= min(batch_size, MIN_BLOCK_ROWS):
                batch_size = min(batch_size, rows)
            else:
                batch_size = max(1, min(batch_size, MIN_BLOCK_ROWS,
                                        math.isqrt(max_scores)))
                self.item_block = min(num_items, max_scores // batch_size)
        device = users.device
        self.users = users
        self.num_items = num_items
        self.batch_size = batch_size
        num_rows = users.numel()

        local = lookup_table(users, mask_edge_index[0])[mask_edge_index[0]]
        col = mask_edge_index[1]
        keep = local >= 0  # Pairs of users that are not ranked are dropped.
        if not bool(keep.all()):
            local, col = local[keep], col[keep]
        if not is_sorted(local):  # Skipped for inputs sorted by user.
            local, perm = torch.sort(local)
            col = col[perm]
        batch = torch.div(local, batch_size, rounding_mode='floor')
        self.mask_flat = (local - batch * batch_size) * num_items + col
        bounds = list(range(0, num_rows, batch_size)) + [num_rows]
        self.bounds: List[int] = bounds
        # Whether `users` is a contiguous id range (then batches are slices):
        self.offset: Optional[int] = None
        if num_rows > 0 and int(users[-1]) - int(users[0]) == num_rows - 1 \
                and is_sorted(users):
            self.offset = int(users[0])
        self.mask_ptr: List[int] = torch.searchsorted(
            batch, torch.arange(len(bounds), device=device)).tolist()

    @property
    def num_batches(self) -> int:
        return len(self.bounds) - 1

    def to(self, device: torch.device) -> 'RankingPlan':
        self.users = self.users.to(device)
        self.mask_flat = self.mask_flat.to(device)
        return self

    def topk(self, user_emb: Tensor, item_emb: Tensor,
             k: int) -> Tuple[Tensor, Tensor]:
        r"""Returns the scores and item ids ``[num_rows, min(k, num_items)]``
        of the top-:math:`k` unmasked items (masked items score
        :math:`-\infty`), one :meth:`torch.topk` per batch."""
        kk = min(k, self.num_items)
        num_rows = self.users.numel()
        values = user_emb.new_empty((num_rows, kk))
        index = torch.empty((num_rows, kk), dtype=torch.long,
                            device=user_emb.device)
        item_t = item_emb.t()
        if self.item_block < self.num_items:
            return self._topk_item_blocks(user_emb, item_t, kk, values,
                                          index)
        buf = user_emb.new_empty((min(self.batch_size, num_rows),
                                  self.num_items))
        for b in range(self.num_batches):
            start, end = self.bounds[b], self.bounds[b + 1]
            scores = buf[:end - start]
            torch.mm(self._batch_emb(user_emb, start, end), item_t,
                     out=scores)
            mask = self.mask_flat[self.mask_ptr[b]:self.mask_ptr[b + 1]]
            scores.view(-1).index_fill_(0, mask, float('-inf'))
            torch.topk(scores, kk, dim=1,
                       out=(values[start:end], index[start:end]))
        return values, index

    def _batch_emb(self, user_emb: Tensor, start: int, end: int) -> Tensor:
        if self.offset is not None:
            return user_emb[self.offset + start:self.offset + end]
        return user_emb[self.users[start:end]]

    def _topk_item_blocks(self, user_emb: Tensor, item_t: Tensor, kk: int,
                          values: Tensor, index: Tensor
                          ) -> Tuple[Tensor, Tensor]:
        r"""Like :meth:`topk`, with the items scored :obj:`item_block`
        columns at a time: the running top-:math:`k` of every row is merged
        with each block's (``[rows, 2k]`` candidates, one
        :func:`torch.topk`)."""
        n, width = self.num_items, self.item_block
        # One score buffer for all blocks (a fresh product per block would
        # hold two blocks at once while the old one is released):
        buf = user_emb.new_empty(min(self.batch_size, values.size(0)) * width)
        for b in range(self.num_batches):
            start, end = self.bounds[b], self.bounds[b + 1]
            batch_emb = self._batch_emb(user_emb, start, end)
            mask = self.mask_flat[self.mask_ptr[b]:self.mask_ptr[b + 1]]
            mask_row, mask_col = mask // n, mask % n
            best_val = best_idx = None
            for s in range(0, n, width):
                e = min(s + width, n)
                scores = buf[:(end - start) * (e - s)].view(end - start, e - s)
                torch.mm(batch_emb, item_t[:, s:e], out=scores)
                inside = (mask_col >= s) & (mask_col < e)
                scores.view(-1).index_fill_(
                    0, mask_row[inside] * (e - s) + mask_col[inside] - s,
                    float('-inf'))
                val, idx = torch.topk(scores, min(kk, e - s), dim=1)
                idx += s
                if best_val is not None:
                    val = torch.cat([best_val, val], dim=1)
                    idx = torch.cat([best_idx, idx], dim=1)
                    val, pos = torch.topk(val, min(kk, val.size(1)), dim=1)
                    idx = idx.gather(1, pos)
                best_val, best_idx = val, idx
            values[start:end], index[start:end] = best_val, best_idx
        return values, index


def is_sorted(x: Tensor) -> bool:
    return x.numel() < 2 or bool((x[1:] >= x[:-1]).all())


def lookup_table(users: Tensor, *others: Tensor) -> Tensor:
    r"""A dense table mapping a user id to its row in :obj:`users` (distinct
    ids), :obj:`-1` for ids not in :obj:`users`; large enough for every id in
    :obj:`others`."""
    size = max([int(t.max()) + 1 for t in (users, ) + others
                if t.numel() > 0] + [0])
    table = torch.full((size, ), -1, dtype=torch.long, device=users.device)
    table[users] = torch.arange(users.numel(), device=users.device)
    return table


def mask_edge_index(train_edge_index: Optional[Tensor],
                    exclude_edge_index: Optional[Tensor],
                    num_items: int, device) -> Tensor:
    r"""The pairs ``[2, E_train + E_exclude]`` that a ranking masks: the
    checked :obj:`train_edge_index` and :obj:`exclude_edge_index` (either may
    be :obj:`None`) concatenated on :obj:`device`."""
    parts = []
    for name, ei in (('train_edge_index', train_edge_index),
                     ('exclude_edge_index', exclude_edge_index)):
        if ei is not None:
            ei = check_edge_index(ei, name, num_nodes=(None, num_items),
                                  kinds=('user', 'item'))
            parts.append(ei.to(device))
    if not parts:
        return torch.empty((2, 0), dtype=torch.long, device=device)
    return torch.cat(parts, dim=1)


def topk_items(
    user_emb: Tensor,
    item_emb: Tensor,
    users: Optional[Tensor],
    k: int,
    *,
    train_edge_index: Optional[Tensor] = None,
    exclude_edge_index: Optional[Tensor] = None,
    batch_size: int = 4096,
    max_scores: Optional[int] = None,
) -> Tensor:
    r"""Returns the top-:math:`k` items of every user in :obj:`users` under
    the score ``user_emb[u] @ item_emb.T``, with the user's pairs in
    :obj:`train_edge_index` and :obj:`exclude_edge_index` masked.

    Args:
        user_emb (torch.Tensor): User embeddings ``[num_users, d]``.
        item_emb (torch.Tensor): Item embeddings ``[num_items, d]``.
        users (torch.Tensor, optional): User ids ``[B]`` (duplicates allowed).
            :obj:`None` ranks for all users.
        k (int): The number of items per user.
        train_edge_index (torch.Tensor, optional): Pairs ``[2, E]`` (row 0
            users, row 1 items) that are never recommended.
        exclude_edge_index (torch.Tensor, optional): Further pairs to mask.
        batch_size (int, optional): Users scored at once; memory is
            ``batch_size * num_items`` scores. (default: :obj:`4096`)
        max_scores (int, optional): At most this many scores at once
            (fewer users per batch and, when needed, items in blocks; see
            :class:`RankingEvaluator`). (default: :obj:`None`)

    Returns:
        A long tensor ``[B, k]`` of item ids in descending score order. An
        entry is :obj:`-1` where the rank falls on a masked item, *i.e.* only
        when :obj:`k` exceeds the number of unmasked items of that user (or
        :obj:`num_items`). Ties follow :meth:`torch.topk` (unspecified order).
    """
    user_emb, item_emb = check_embedding_pair(user_emb, item_emb)
    k = check_int(k, 'k')
    device = user_emb.device
    num_items = item_emb.size(0)
    if users is None:
        users = torch.arange(user_emb.size(0), device=device)
    else:
        if not isinstance(users, Tensor) or users.dim() != 1 \
                or users.dtype.is_floating_point:
            raise ValueError("'users' must be a 1-D tensor of user ids")
        users = users.long().to(device)
        if users.numel() > 0 and (int(users.min()) < 0 or int(users.max())
                                  >= user_emb.size(0)):
            raise ValueError(f"'users' holds ids outside [0, "
                             f"{user_emb.size(0)})")
    mask = mask_edge_index(train_edge_index, exclude_edge_index, num_items,
                            device)
    out = torch.full((users.numel(), k), -1, dtype=torch.long, device=device)
    if users.numel() == 0 or num_items == 0:
        return out
    # Rank every distinct user once, then expand to the requested rows:
    distinct, inverse = torch.unique(users, return_inverse=True)
    plan = RankingPlan(distinct, mask, num_items, batch_size, max_scores)
    out[:, :min(k, num_items)] = ranked_items(plan, user_emb, item_emb,
                                               k)[inverse]
    return out


def ranked_items(plan: RankingPlan, user_emb: Tensor, item_emb: Tensor,
                 k: int) -> Tensor:
    r"""The top-:math:`k` item ids ``[num_rows, min(k, num_items)]`` of the
    rows of :obj:`plan`, :obj:`-1` where a rank falls on a masked item."""
    with torch.no_grad():
        values, index = plan.topk(user_emb, item_emb, k)
    return index.masked_fill_(values == float('-inf'), -1)



__all__ = [
    'RankingPlan',
    'check_embedding_pair',
    'is_sorted',
    'lookup_table',
    'mask_edge_index',
    'ranked_items',
    'topk_items',
]
