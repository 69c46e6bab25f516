r"""Full-ranking evaluation in the protocol of MMRec.

Every evaluated user is scored against *all* items, ``s(u, i) = <e_u, e_i>``;
the user's training items (and optionally further pairs such as the
validation items when scoring test) are masked with :math:`-\infty`; the
top-:math:`K` items are compared with the user's held-out items
:math:`P_u`. Users without a held-out item in the split are skipped (they are
neither scored nor counted). With :math:`h_j \in \{0, 1\}` the relevance of
rank :math:`j` (1-based) and :math:`H_K = \sum_{j \le K} h_j`:

.. math::
    \mathrm{Recall@}K &= H_K / |P_u| \\
    \mathrm{Precision@}K &= H_K / K \\
    \mathrm{NDCG@}K &= \frac{\sum_{j \le K} h_j / \log_2(j + 1)}
        {\sum_{j \le \min(|P_u|, K)} 1 / \log_2(j + 1)} \\
    \mathrm{MAP@}K &= \frac{1}{\min(|P_u|, K)} \sum_{j \le K} h_j \,
        \frac{H_j}{j} \\
    \mathrm{Hit@}K &= [H_K > 0]

averaged over the evaluated users. These are the definitions of MMRec's
``utils/metrics.py`` and of :mod:`torch_geometric.metrics`
(:class:`~torch_geometric.metrics.LinkPredRecall`,
:class:`~torch_geometric.metrics.LinkPredNDCG`,
:class:`~torch_geometric.metrics.LinkPredPrecision`,
:class:`~torch_geometric.metrics.LinkPredMAP`,
:class:`~torch_geometric.metrics.LinkPredHitRatio`); the tests check the
agreement. The metrics are computed here from one hit matrix instead of
through those classes because the hit matrix is built once for all metrics
and cutoffs, stays on the device and needs no host synchronisation per batch.

A masked item never counts as a hit, even when :math:`K` exceeds the number
of unmasked items (masked items then fill the tail of the ranking), while
:math:`|P_u|` counts every held-out pair of :math:`u` (as MMRec's
``pos_len``), so a held-out pair that is also masked can never be retrieved.

.. note::

    Ties. The ranking is :meth:`torch.topk` on the scores, as in MMRec. The
    order among items with *exactly* equal scores is not specified by PyTorch
    and may differ between devices and versions; with continuous embeddings
    ties have probability zero. Any tie order gives a valid ranking.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from pyg_brmrs.utils.checks import check_edge_index, check_int
from pyg_brmrs.utils.deprecation import renamed_arguments, warn_renamed

METRICS = ('recall', 'ndcg', 'precision', 'map', 'hit')
DEFAULT_METRICS = ('recall', 'ndcg', 'precision', 'map')


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


def _check_ks(ks: Union[int, Sequence[int]]) -> Tuple[int, ...]:
    if not isinstance(ks, (list, tuple, range)) and not (
            isinstance(ks, Tensor) and ks.dim() == 1):
        ks = (ks, )
    if len(ks) == 0:
        raise ValueError("'ks' must hold at least one cutoff")
    return tuple(sorted({check_int(k, 'ks') for k in ks}))


def _check_metrics(metrics: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics, )
    metrics = tuple(m.lower() for m in metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if len(metrics) == 0 or unknown:
        raise ValueError(f"'metrics' must be a non-empty subset of {METRICS} "
                         f"(got unknown {unknown or list(metrics)})")
    return metrics


def _float_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == 'mps' else torch.float64


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

    With :obj:`max_scores`, at most that many scores exist at once: a batch
    holds :math:`\min(\text{batch\_size}, \max(1, \lfloor
    \text{max\_scores} / |\mathcal{I}| \rfloor))` users and, when one
    user's row alone is longer, the items are scored in blocks of
    :obj:`max_scores` columns whose top-:math:`k` lists are merged (the
    same top-:math:`k` values as one block).

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
            batch_size = min(batch_size, max(1, max_scores // num_items))
            self.item_block = min(num_items, max_scores)
        device = users.device
        self.users = users
        self.num_items = num_items
        self.batch_size = batch_size
        num_rows = users.numel()

        local = _lookup_table(users, mask_edge_index[0])[mask_edge_index[0]]
        col = mask_edge_index[1]
        keep = local >= 0  # Pairs of users that are not ranked are dropped.
        if not bool(keep.all()):
            local, col = local[keep], col[keep]
        if not _is_sorted(local):  # Skipped for inputs sorted by user.
            local, perm = torch.sort(local)
            col = col[perm]
        batch = torch.div(local, batch_size, rounding_mode='floor')
        self.mask_flat = (local - batch * batch_size) * num_items + col
        bounds = list(range(0, num_rows, batch_size)) + [num_rows]
        self.bounds: List[int] = bounds
        # Whether `users` is a contiguous id range (then batches are slices):
        self.offset: Optional[int] = None
        if num_rows > 0 and int(users[-1]) - int(users[0]) == num_rows - 1 \
                and _is_sorted(users):
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
        for b in range(self.num_batches):
            start, end = self.bounds[b], self.bounds[b + 1]
            batch_emb = self._batch_emb(user_emb, start, end)
            mask = self.mask_flat[self.mask_ptr[b]:self.mask_ptr[b + 1]]
            mask_row, mask_col = mask // n, mask % n
            best_val = best_idx = None
            for s in range(0, n, width):
                e = min(s + width, n)
                scores = batch_emb @ item_t[:, s:e]
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


def _is_sorted(x: Tensor) -> bool:
    return x.numel() < 2 or bool((x[1:] >= x[:-1]).all())


def _lookup_table(users: Tensor, *others: Tensor) -> Tensor:
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


# Evaluator ###################################################################

class RankingEvaluator:
    r"""Full-ranking top-:math:`K` evaluation (MMRec protocol, see the module
    docstring for the definitions), with the masks and labels precomputed
    once, so that it can be called every epoch with new embeddings.

    .. code-block:: python

        evaluator = RankingEvaluator(train_edge_index, val_edge_index,
                                     num_items, ks=(10, 20))
        for epoch in range(num_epochs):
            ...  # train
            # user_emb [num_users, d], item_emb [num_items, d]:
            out = evaluator(user_emb, item_emb)
            # {'recall@10': ..., 'recall@20': ..., 'ndcg@10': ..., ...}

    Args:
        train_edge_index (torch.Tensor): Training pairs ``[2, E_train]`` (row 0
            users, row 1 items); masked from the ranking.
        eval_edge_index (torch.Tensor): Held-out pairs ``[2, E_eval]``; the
            users appearing here are the evaluated users, their items the
            positives :math:`P_u`. Must not contain duplicate pairs.
        num_items (int): The number of items.
        ks (int or Sequence[int], optional): The cutoffs. (default:
            :obj:`(10, 20)`)
        metrics (Sequence[str], optional): A subset of ``'recall'``,
            ``'ndcg'``, ``'precision'``, ``'map'``, ``'hit'``. (default:
            :obj:`('recall', 'ndcg', 'precision', 'map')`)
        batch_size (int, optional): Users scored at once; peak extra memory
            is ``batch_size * num_items`` scores. Results do not depend on it.
            (default: :obj:`4096`)
        exclude_edge_index (torch.Tensor, optional): Further pairs to mask,
            *e.g.*, the validation pairs when scoring test (MMRec does not;
            default :obj:`None`).
        max_scores (int, optional): Memory bound: at most this many scores
            exist at once. A batch then holds :math:`\min(\text{batch\_size},
            \max(1, \lfloor\text{max\_scores} / |\mathcal{I}|\rfloor))`
            users, and when a single user's :math:`|\mathcal{I}|` scores
            exceed it the items are scored in blocks of :obj:`max_scores`
            and the blocks' top-:math:`K` merged; peak extra memory is then
            :math:`O(\text{max\_scores} + U K)` whatever the catalogue
            size, e.g. ``2**27`` (512 MB of float32) for 1M users x 1M
            items. The top-:math:`K` values are those of the unchunked
            ranking. (default: :obj:`None`: ``batch_size`` rules)

    The precomputed tensors live on the device of :obj:`eval_edge_index` and
    are moved (once, then cached) to the device of the embeddings.
    """
    def __init__(
        self,
        train_edge_index: Tensor,
        eval_edge_index: Tensor,
        num_items: int,
        ks: Union[int, Sequence[int]] = (10, 20),
        *,
        metrics: Sequence[str] = DEFAULT_METRICS,
        batch_size: int = 4096,
        exclude_edge_index: Optional[Tensor] = None,
        max_scores: Optional[int] = None,
    ):
        num_items = check_int(num_items, 'num_items')
        self.num_items = num_items
        self.ks = _check_ks(ks)
        self.metrics = _check_metrics(metrics)
        self.batch_size = batch_size = check_int(batch_size, 'batch_size')

        eval_edge_index = check_edge_index(
            eval_edge_index, 'eval_edge_index', num_nodes=(None, num_items),
            kinds=('user', 'item'), allow_empty=False)
        device = eval_edge_index.device
        mask = mask_edge_index(train_edge_index, exclude_edge_index,
                                num_items, device)
        self.max_user = max(int(eval_edge_index[0].max()),
                            int(mask[0].max()) if mask.numel() else 0)

        # Evaluated users (sorted) and their positives, as sorted keys
        # `row * num_items + item`:
        row = eval_edge_index[0]
        count = torch.bincount(row)
        users = (count > 0).nonzero().view(-1)
        local = _lookup_table(users)[row]
        keys = local * num_items + eval_edge_index[1]
        if not _is_sorted(keys):
            keys, _ = torch.sort(keys)
        dup = keys[1:] == keys[:-1]
        if bool(dup.any()):
            key = int(keys[1:][dup][0])
            raise ValueError(f"'eval_edge_index' holds duplicate pairs, e.g. "
                             f"(user {int(users[key // num_items])}, item "
                             f"{key % num_items})")
        self.pos_keys = keys
        self.pos_count = count[users]
        self.plan = RankingPlan(users, mask, num_items, batch_size,
                                max_scores)

    @classmethod
    @renamed_arguments(exclude_val='exclude_valid')
    def from_data(cls, data, split: str = 'valid',
                  ks: Union[int, Sequence[int]] = (10, 20), *,
                  exclude_valid: bool = False, schema=None,
                  **kwargs) -> 'RankingEvaluator':
        r"""Builds the evaluator of a :class:`~torch_geometric.data.HeteroData`
        in the schema of :mod:`pyg_brmrs.data`: masks
        ``data['user', 'rates', 'item'].edge_index`` and ranks against
        ``.val_edge_index`` (:obj:`split='valid'`) or ``.test_edge_index``
        (:obj:`split='test'`). :obj:`exclude_valid=True` also masks the
        validation pairs when scoring test (MMRec does not). Further keyword
        arguments go to :class:`RankingEvaluator`. :obj:`schema` (a
        :class:`~pyg_brmrs.data.Schema`) names the node and edge types of
        :obj:`data`. The former spellings
        :obj:`split='val'` and :obj:`exclude_val` still work, with a
        :class:`DeprecationWarning`."""
        from pyg_brmrs.data.schema import ITEM, RATES, canonical
        data = canonical(data, schema)
        if split == 'val':
            warn_renamed('val', 'valid', "'RankingEvaluator.from_data'",
                         what='split')
            split = 'valid'
        if split not in ('valid', 'test'):
            raise ValueError(f"'split' must be 'valid' or 'test' (got "
                             f"{split!r})")
        store = data[RATES]
        attr = 'val_edge_index' if split == 'valid' else 'test_edge_index'
        if getattr(store, attr, None) is None:
            raise ValueError(f"data{list(RATES)} has no '{attr}'")
        if exclude_valid:
            if split != 'test':
                raise ValueError("'exclude_valid=True' needs split='test'")
            if 'exclude_edge_index' in kwargs:
                raise ValueError("pass either 'exclude_valid' or "
                                 "'exclude_edge_index'")
            kwargs['exclude_edge_index'] = store.val_edge_index
        return cls(store.edge_index, getattr(store, attr),
                   int(data[ITEM].num_nodes), ks, **kwargs)

    @property
    def users(self) -> Tensor:
        r"""The evaluated user ids (sorted), ``[num_eval_users]``."""
        return self.plan.users

    @property
    def num_users(self) -> int:
        r"""The number of evaluated users."""
        return self.plan.users.numel()

    def _to(self, device: torch.device):
        if self.pos_keys.device != device:
            self.plan.to(device)
            self.pos_keys = self.pos_keys.to(device)
            self.pos_count = self.pos_count.to(device)

    def hit_matrix(self, user_emb: Tensor, item_emb: Tensor,
                   k: Optional[int] = None) -> Tensor:
        r"""Returns the boolean hit matrix ``[num_eval_users, k]``
        (:obj:`k` defaults to ``max(ks)``): entry :math:`(u, j)` tells whether
        the item at rank :math:`j + 1` of user ``users[u]`` is held out."""
        user_emb, item_emb = check_embedding_pair(user_emb, item_emb)
        if item_emb.size(0) != self.num_items:
            raise ValueError(f"'item_emb' has {item_emb.size(0)} rows but the "
                             f"evaluator was built for {self.num_items} items")
        if user_emb.size(0) <= self.max_user:
            raise ValueError(f"'user_emb' has {user_emb.size(0)} rows but the "
                             f"edge indices hold user id {self.max_user}")
        k = max(self.ks) if k is None else check_int(k, 'k')
        self._to(user_emb.device)
        with torch.no_grad():
            values, index = self.plan.topk(user_emb, item_emb, k)
            rows = torch.arange(self.num_users, device=user_emb.device)
            key = index + (rows * self.num_items).view(-1, 1)
            j = torch.searchsorted(self.pos_keys, key)
            j.clamp_(max=self.pos_keys.numel() - 1)
            hits = (self.pos_keys[j] == key) & (values != float('-inf'))
        if hits.size(1) < k:  # `k > num_items`: ranks past the end miss.
            hits = torch.cat([hits, hits.new_zeros(
                (hits.size(0), k - hits.size(1)))], dim=1)
        return hits

    def per_user(self, user_emb: Tensor,
                 item_emb: Tensor) -> Dict[str, Tensor]:
        r"""Returns the per-user metrics: ``{'user': [U], 'recall@20': [U],
        ...}`` over the evaluated users (for significance tests)."""
        hits = self.hit_matrix(user_emb, item_emb)
        out: Dict[str, Tensor] = {'user': self.users.clone()}
        out.update(metrics_from_hits(hits, self.pos_count, self.ks,
                                      self.metrics))
        return out

    def __call__(
        self,
        user_emb: Tensor,
        item_emb: Tensor,
        return_per_user: bool = False,
    ) -> Union[Dict[str, float], Tuple[Dict[str, float], Dict[str, Tensor]]]:
        r"""Evaluates embeddings ``user_emb`` ``[num_users, d]`` and
        ``item_emb`` ``[num_items, d]``.

        Returns:
            A dict ``{'recall@10': float, ...}`` (metric-major, ascending
            :math:`K`); with :obj:`return_per_user=True` a tuple of that dict
            and :meth:`per_user`'s dict.
        """
        per_user = self.per_user(user_emb, item_emb)
        names = [name for name in per_user if name != 'user']
        if names:
            means = torch.stack([per_user[name] for name in names]).mean(1)
            values = means.tolist()
        else:
            values = []
        out = dict(zip(names, values))
        if return_per_user:
            return out, per_user
        return out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_users={self.num_users}, '
                f'num_items={self.num_items}, ks={self.ks}, '
                f'metrics={self.metrics})')


def metrics_from_hits(hits: Tensor, pos_count: Tensor, ks: Sequence[int],
                       metrics: Sequence[str]) -> Dict[str, Tensor]:
    r"""Per-user metrics ``{'recall@10': [U], ...}`` from a hit matrix
    ``[U, max(ks)]`` and the number of held-out items ``[U]`` of every
    user, vectorised over users and cutoffs."""
    device = hits.device
    dtype = _float_dtype(device)
    h = hits.to(dtype)
    rank = torch.arange(1, h.size(1) + 1, device=device, dtype=dtype)
    k = torch.tensor(ks, device=device)
    col = k - 1
    cum_hits = h.cumsum(1)
    hits_k = cum_hits[:, col]  # [U, len(ks)]
    n_pos = pos_count.to(dtype).view(-1, 1)
    n_rel = torch.minimum(pos_count.view(-1, 1), k)  # min(|P_u|, K)
    out: Dict[str, Tensor] = {}
    for metric in metrics:
        if metric == 'recall':
            value = hits_k / n_pos
        elif metric == 'precision':
            value = hits_k / k.to(dtype)
        elif metric == 'hit':
            value = (hits_k > 0).to(dtype)
        elif metric == 'ndcg':
            discount = 1.0 / torch.log2(rank + 1)
            dcg = (h * discount).cumsum(1)[:, col]
            value = dcg / discount.cumsum(0)[n_rel - 1]
        else:  # 'map'
            value = (h * cum_hits / rank).cumsum(1)[:, col] / n_rel.to(dtype)
        for j, kk in enumerate(ks):
            out[f'{metric}@{kk}'] = value[:, j].contiguous()
    return out


def full_ranking_metrics(
    user_emb: Tensor,
    item_emb: Tensor,
    train_edge_index: Tensor,
    eval_edge_index: Tensor,
    ks: Union[int, Sequence[int]] = (10, 20),
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    batch_size: int = 4096,
    exclude_edge_index: Optional[Tensor] = None,
    return_per_user: bool = False,
    max_scores: Optional[int] = None,
) -> Union[Dict[str, float], Tuple[Dict[str, float], Dict[str, Tensor]]]:
    r"""Full-ranking top-:math:`K` metrics in the protocol of MMRec (see the
    module docstring for the definitions): scores ``user_emb @ item_emb.T``
    over all items, the training items of every user masked, users with no
    pair in :obj:`eval_edge_index` skipped, averaged over evaluated users.

    A one-shot wrapper around :class:`RankingEvaluator`; build the evaluator
    once when evaluating repeatedly (*e.g.*, every epoch).

    Args:
        user_emb (torch.Tensor): User embeddings ``[num_users, d]``.
        item_emb (torch.Tensor): Item embeddings ``[num_items, d]``; everything
            runs on their device.
        train_edge_index (torch.Tensor): Training pairs ``[2, E_train]``
            (masked).
        eval_edge_index (torch.Tensor): Held-out pairs ``[2, E_eval]``.
        ks (int or Sequence[int], optional): Cutoffs. (default:
            :obj:`(10, 20)`)
        metrics (Sequence[str], optional): Subset of ``'recall'``, ``'ndcg'``,
            ``'precision'``, ``'map'``, ``'hit'``.
        batch_size (int, optional): Users scored at once. (default:
            :obj:`4096`)
        exclude_edge_index (torch.Tensor, optional): Further pairs to mask,
            *e.g.*, validation pairs when scoring test. (default: :obj:`None`,
            as MMRec)
        return_per_user (bool, optional): Also return the per-user values
            ``{'user': [U], 'recall@20': [U], ...}``. (default: :obj:`False`)
        max_scores (int, optional): At most this many scores at once (see
            :class:`RankingEvaluator`). (default: :obj:`None`)

    Returns:
        ``{'recall@10': float, 'recall@20': float, 'ndcg@10': ..., ...}``
        (metric-major, ascending :math:`K`); with :obj:`return_per_user=True`
        a tuple of that dict and the per-user dict.

    The ranking is :meth:`torch.topk` per batch of users, as in MMRec: among
    exactly equal scores the order is unspecified (see the module note).
    """
    user_emb, item_emb = check_embedding_pair(user_emb, item_emb)
    evaluator = RankingEvaluator(
        train_edge_index.to(user_emb.device)
        if isinstance(train_edge_index, Tensor) else train_edge_index,
        eval_edge_index.to(user_emb.device)
        if isinstance(eval_edge_index, Tensor) else eval_edge_index,
        item_emb.size(0), ks, metrics=metrics, batch_size=batch_size,
        exclude_edge_index=exclude_edge_index, max_scores=max_scores)
    return evaluator(user_emb, item_emb, return_per_user=return_per_user)


__all__ = [
    'METRICS',
    'DEFAULT_METRICS',
    'RankingEvaluator',
    'RankingPlan',
    'check_embedding_pair',
    'full_ranking_metrics',
    'mask_edge_index',
    'metrics_from_hits',
    'ranked_items',
    'topk_items',
]
