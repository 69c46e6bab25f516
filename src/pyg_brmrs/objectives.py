r"""Training objectives: one mini-batch step's loss for a
:class:`~pyg_brmrs.nn.Recommender`, with every term returned separately for
logging.

An objective is called as ``objective(model, data, users, pos_items)`` and
returns a dictionary of scalar tensors whose key ``"loss"`` is the total to
back-propagate; the other keys are the (unweighted) terms.

**Mini-batch subgraphs.** :meth:`Objective.draw` draws the items a step
needs besides the positives (uniform negatives, CHNS pools) as global ids,
so that they can be put into a sampled subgraph; the step is then
``objective(model, batch, users, pos_items, negatives=...)`` with every id
(users, positives and the drawn items) in the batch's local indexing, and
every score is computed from the batch's representations.
"""
from typing import Dict, List, Optional

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_brmrs.data.schema import RATES, Schema, canonical
from pyg_brmrs.loss import (
    CrossModalBPRLoss,
    SynergyBPRLoss,
    bpr_loss,
    info_nce,
    orthogonality,
    parameter_norm,
)
from pyg_brmrs.nn.base import FUSED, Recommender, RecOutput
from pyg_brmrs.nn.graph import subgraph_ids
from pyg_brmrs.sampling import (
    CrossModalHardNegativeSampler,
    HardNegatives,
    UniformNegativeSampler,
)
from pyg_brmrs.utils.rows import take_rows

SYN_NEGATIVES = ('uniform', 'pool')
#: What :math:`\lambda \mathcal{R}` regularises (see :class:`Objective`).
REG_SCOPES = ('batch', 'parameters')


def batch_scores(out: RecOutput, users: Tensor,
                 items: Dict[str, List[Tensor]]) -> Dict[str, List[Tensor]]:
    r"""The scores :math:`s_b(u_k, i_k)` of the pairs ``(users[k],
    items[b][j][k])`` for every branch :obj:`b` and item vector
    ``items[b][j]`` (each of the shape of :obj:`users`), equal to
    ``out.score(users, items[b][j], b)``: every branch's user rows and all
    its item rows are gathered in one indexing each, so that the backward
    pass scatters into each full table once per branch instead of once per
    score."""
    scores: Dict[str, List[Tensor]] = {}
    for b, lists in items.items():
        u = take_rows(out.user[b], users)
        q = take_rows(out.item[b], torch.cat([i.reshape(-1) for i in lists]))
        q = q.view(len(lists), *u.shape)
        scores[b] = list((u.unsqueeze(0) * q).sum(dim=-1).unbind(0))
    return scores


class Objective:
    r"""Base class of the objectives.

    The regulariser :math:`\mathcal{R}` of every objective is, with
    :obj:`reg_scope="batch"`, the model's own
    :meth:`~pyg_brmrs.nn.Recommender.regularization` (as a rule the squared
    norms of the batch's free embeddings, averaged over the batch, as
    LightGCN and MMRec's models write it), or, with
    :obj:`reg_scope="parameters"`, :math:`\lVert \Theta \rVert^2 =
    \sum_{p \in \Theta} \lVert p \rVert_2^2` over every trainable
    parameter of the model (:func:`~pyg_brmrs.loss.parameter_norm`: every
    embedding row, projection, fusion weight and fine-tuned feature, at
    every step), the :math:`\lambda \lVert \Theta \rVert^2` of papers that
    write it so.

    Args:
        sampler: The negative sampler (built on the training edges).
        reg_weight (float, optional): The weight :math:`\lambda` of
            :math:`\mathcal{R}`. (default: :obj:`1e-4`)
        reg_scope (str, optional): :obj:`"batch"` or :obj:`"parameters"`,
            see above. (default: :obj:`"batch"`)
    """
    def __init__(self, sampler, reg_weight: float = 1e-4,
                 reg_scope: str = 'batch'):
        if reg_weight < 0:
            raise ValueError(f"'reg_weight' must be >= 0 (got {reg_weight})")
        if reg_scope not in REG_SCOPES:
            raise ValueError(f"Unknown reg_scope {reg_scope!r} (choose from "
                             f"{list(REG_SCOPES)})")
        self.sampler = sampler
        self.reg_weight = float(reg_weight)
        self.reg_scope = reg_scope

    def regularization(self, model: Recommender, users: Tensor,
                       pos_items: Tensor, neg_items: Optional[Tensor],
                       out: Optional[RecOutput] = None) -> Tensor:
        r""":math:`\mathcal{R}` of the step (see :obj:`reg_scope`)."""
        if self.reg_scope == 'parameters':
            return parameter_norm(model)
        return model.regularization(users, pos_items, neg_items, out)

    def _reg_repr(self) -> str:
        return '' if self.reg_scope == 'batch' else \
            f', reg_scope={self.reg_scope!r}'

    def __call__(self, model: Recommender, data: HeteroData, users: Tensor,
                 pos_items: Tensor,
                 negatives: Optional[Dict[str, Tensor]] = None
                 ) -> Dict[str, Tensor]:
        raise NotImplementedError

    def draw(self, users: Tensor) -> Dict[str, Tensor]:
        r"""The random items of a step for the pairs of :obj:`users` ``[B]``
        (global ids, drawn with the objective's generator), name →
        ``[B]`` or ``[B, k]``; pass them (mapped to local ids for a
        subgraph) as :obj:`negatives`. Drawing then passing gives the step
        that drawing inside the call gives."""
        return {'negatives': self.sampler(users)}

    def to(self, device) -> 'Objective':
        self.sampler.to(device)
        return self

    @property
    def generator(self) -> Optional[torch.Generator]:
        return self.sampler.generator

    @generator.setter
    def generator(self, value: Optional[torch.Generator]) -> None:
        self.sampler.generator = value

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(reg_weight={self.reg_weight}'
                f'{self._reg_repr()})')


class BPRObjective(Objective):
    r"""BPR with uniform negatives on the ranking branch plus the model's
    regularisation and its own auxiliary terms
    (:meth:`~pyg_brmrs.nn.Recommender.auxiliary_loss`, *e.g.*, FREEDOM's
    modality BPR):

    .. math::
        \mathcal{L} = \frac{\lambda_b}{B}\sum_b -\log\sigma\left(
        s(u_b, i^+_b) - s(u_b, i^-_b)\right) + \lambda \, \mathcal{R} +
        \mathcal{L}_{aux}.

    Args:
        sampler (UniformNegativeSampler): The negative sampler.
        reg_weight (float, optional): :math:`\lambda`. (default: :obj:`1e-4`)
        bpr_weight (float, optional): :math:`\lambda_b`; DRAGON's
            :math:`-\log_2\sigma` is :math:`\lambda_b = 1/\ln 2`.
            (default: :obj:`1.0`)
    """
    def __init__(self, sampler: UniformNegativeSampler,
                 reg_weight: float = 1e-4, bpr_weight: float = 1.0,
                 reg_scope: str = 'batch'):
        super().__init__(sampler, reg_weight, reg_scope)
        if not bpr_weight > 0:
            raise ValueError(f"'bpr_weight' must be > 0 (got {bpr_weight})")
        self.bpr_weight = float(bpr_weight)

    @classmethod
    def from_data(cls, data: HeteroData, generator=None,
                  schema: Optional[Schema] = None,
                  **kwargs) -> 'BPRObjective':
        r"""Builds the objective on the training edges of :obj:`data`
        (names given by :obj:`schema`, a :class:`~pyg_brmrs.data.Schema`)."""
        data = canonical(data, schema)
        sampler = UniformNegativeSampler(
            data[RATES].edge_index, int(data['item'].num_nodes),
            num_users=int(data['user'].num_nodes), generator=generator)
        return cls(sampler, **kwargs)

    def __call__(self, model: Recommender, data: HeteroData, users: Tensor,
                 pos_items: Tensor,
                 negatives: Optional[Dict[str, Tensor]] = None
                 ) -> Dict[str, Tensor]:
        out = model(data)
        neg_items = (negatives or self.draw(users))['negatives']
        terms = {
            'bpr': bpr_loss(out.score(users, pos_items),
                            out.score(users, neg_items)),
            'reg': self.regularization(model, users, pos_items, neg_items, out),
        }
        aux = model.auxiliary_loss(out, users, pos_items, neg_items)
        loss = self.bpr_weight * terms['bpr'] + self.reg_weight * terms['reg']
        for name, value in aux.items():
            terms[name] = value
            loss = loss + value
        terms['loss'] = loss
        return terms

    def __repr__(self) -> str:
        extra = '' if self.bpr_weight == 1.0 else \
            f', bpr_weight={self.bpr_weight}'
        return (f'{self.__class__.__name__}(reg_weight={self.reg_weight}'
                f'{extra}{self._reg_repr()})')


class InfoBPRObjective(Objective):
    r"""InfoBPR (MGDCF): a softmax over one positive and :math:`S` sampled
    negatives per pair, on the ranking branch, plus the model's
    regularisation,

    .. math::
        \mathcal{L} = \mathop{\mathrm{red}}_b \; -\log
        \frac{e^{s(u_b, i^+_b)}}{e^{s(u_b, i^+_b)} + \sum_{j=1}^{S}
        e^{s(u_b, i^-_{bj})}} + \lambda \, \mathcal{R},

    where :math:`\mathrm{red}` is the batch mean (:obj:`reduction="mean"`)
    or sum (:obj:`"sum"`, as MGDCF's trainer). With :math:`S = 1` the term
    is BPR's :math:`-\log\sigma(s^+ - s^-)`. The negatives are drawn
    uniformly with replacement from the items the user has no training
    interaction with (:obj:`exclude_positives=True`) or from all items, a
    training positive included (:obj:`False`, as MGDCF draws them). The
    model's :meth:`~pyg_brmrs.nn.Recommender.regularization` receives the
    first negative of every pair, its
    :meth:`~pyg_brmrs.nn.Recommender.auxiliary_loss` too.

    Args:
        sampler (UniformNegativeSampler): The sampler (its generator and
            training pairs).
        num_negatives (int, optional): :math:`S`. (default: :obj:`300`)
        reduction (str, optional): :obj:`"mean"` or :obj:`"sum"`.
            (default: :obj:`"mean"`)
        exclude_positives (bool, optional): See above.
            (default: :obj:`True`)
        reg_weight (float, optional): :math:`\lambda`. (default: :obj:`1e-4`)
        reg_scope (str, optional): See :class:`Objective`.
            (default: :obj:`"batch"`)
        scoring (str, optional): How the :math:`B (1 + S)` scores are
            computed (the same values up to rounding): :obj:`"gather"`
            gathers the :math:`B (1 + S)` item rows (:math:`O(B S d)`
            memory traffic and a scatter in the backward pass),
            :obj:`"dense"` scores the batch's users against the whole item
            table in one matrix product (:math:`O(B I d)` arithmetic,
            :math:`B \times I` scores in memory) and picks the candidates'
            columns, :obj:`"auto"` takes :obj:`"dense"` when :math:`I \le
            64 (1 + S)` and the :math:`B \times I` scores fit in
            :math:`2^{26}` entries (on a CPU one gathered candidate, forward
            and backward, costs about as much as 70 items of the product).
            (default: :obj:`"auto"`)
    """
    #: ``"auto"`` scores densely when items <= DENSE_RATIO * (1 + S) ...
    DENSE_RATIO = 64
    #: ... and batch * items <= DENSE_MAX_SCORES.
    DENSE_MAX_SCORES = 2**26

    def __init__(self, sampler: UniformNegativeSampler,
                 num_negatives: int = 300, reduction: str = 'mean',
                 exclude_positives: bool = True, reg_weight: float = 1e-4,
                 reg_scope: str = 'batch', scoring: str = 'auto'):
        super().__init__(sampler, reg_weight, reg_scope)
        if scoring not in ('auto', 'gather', 'dense'):
            raise ValueError(f"Unknown scoring {scoring!r} (choose from "
                             f"['auto', 'gather', 'dense'])")
        self.scoring = scoring
        if isinstance(num_negatives, bool) or \
                not isinstance(num_negatives, int) or num_negatives < 1:
            raise ValueError(f"'num_negatives' must be a positive int (got "
                             f"{num_negatives!r})")
        if reduction not in ('mean', 'sum'):
            raise ValueError(f"Unknown reduction {reduction!r} (choose from "
                             f"['mean', 'sum'])")
        self.num_negatives = num_negatives
        self.reduction = reduction
        self.exclude_positives = bool(exclude_positives)

    from_data = classmethod(BPRObjective.from_data.__func__)

    def draw(self, users: Tensor) -> Dict[str, Tensor]:
        r"""``{"negatives": [B, S]}`` (global ids)."""
        if self.exclude_positives:
            return {'negatives': self.sampler.sample(users,
                                                     self.num_negatives)}
        return {'negatives': torch.randint(
            self.sampler.num_items, (users.numel(), self.num_negatives),
            generator=self.generator, device=self.sampler.device)}

    def __call__(self, model: Recommender, data: HeteroData, users: Tensor,
                 pos_items: Tensor,
                 negatives: Optional[Dict[str, Tensor]] = None
                 ) -> Dict[str, Tensor]:
        out = model(data)
        neg_items = (negatives or self.draw(users))['negatives']
        b = out.ranking_branch
        u = take_rows(out.user[b], users)  # [B, d]
        items = torch.cat([pos_items.view(-1, 1), neg_items], dim=1)
        logits = self.scores(u, out.item[b], items)  # [B, 1 + S]
        nll = torch.logsumexp(logits, dim=1) - logits[:, 0]
        terms = {'info_bpr': nll.sum() if self.reduction == 'sum'
                 else nll.mean()}
        first = neg_items[:, 0]
        terms['reg'] = self.regularization(model, users, pos_items, first,
                                           out)
        loss = terms['info_bpr'] + self.reg_weight * terms['reg']
        for name, value in model.auxiliary_loss(out, users, pos_items,
                                                first).items():
            terms[name] = value
            loss = loss + value
        terms['loss'] = loss
        return terms

    def dense(self, num_users: int, num_items: int) -> bool:
        r"""Whether :meth:`scores` takes the dense product (see
        :obj:`scoring`)."""
        if self.scoring != 'auto':
            return self.scoring == 'dense'
        return (num_items <= self.DENSE_RATIO * (1 + self.num_negatives)
                and num_users * num_items <= self.DENSE_MAX_SCORES)

    def scores(self, u: Tensor, item_table: Tensor, items: Tensor) -> Tensor:
        r"""``scores[b, j] = <u[b], item_table[items[b, j]]>`` for
        :obj:`u` ``[B, d]``, :obj:`item_table` ``[I, d]`` and :obj:`items`
        ``[B, C]``."""
        if self.dense(u.size(0), item_table.size(0)):
            return (u @ item_table.t()).gather(1, items)
        q = take_rows(item_table, items.reshape(-1)).view(*items.shape, -1)
        return (q * u.unsqueeze(1)).sum(-1)

    def __repr__(self) -> str:
        scoring = '' if self.scoring == 'auto' else \
            f', scoring={self.scoring!r}'
        return (f'{self.__class__.__name__}(num_negatives='
                f'{self.num_negatives}, reduction={self.reduction!r}, '
                f'exclude_positives={self.exclude_positives}, '
                f'reg_weight={self.reg_weight}{self._reg_repr()}{scoring})')


class NegativeFreeObjective(Objective):
    r"""The model's own loss of the positive pairs, with no negatives
    drawn (*e.g.* BM3's bootstrapped alignment), plus its regularisation:

    .. math::
        \mathcal{L} = \sum_t \mathcal{L}_t(\{(u_b, i^+_b)\}_b) +
        \lambda \, \mathcal{R},

    with the terms :math:`\mathcal{L}_t` of
    :meth:`~pyg_brmrs.nn.Recommender.positive_loss` (already weighted) and
    :math:`\mathcal{R}` = :meth:`~pyg_brmrs.nn.Recommender.regularization`
    called with ``neg_items=None``. :meth:`draw` draws nothing, so a
    mini-batch subgraph holds the pairs' nodes only.

    Args:
        reg_weight (float, optional): :math:`\lambda`. (default: :obj:`0.0`)
    """
    def __init__(self, reg_weight: float = 0.0, reg_scope: str = 'batch'):
        super().__init__(None, reg_weight, reg_scope)
        self._generator: Optional[torch.Generator] = None

    @classmethod
    def from_data(cls, data: HeteroData, generator=None,
                  schema: Optional[Schema] = None,
                  **kwargs) -> 'NegativeFreeObjective':
        r"""The objective (it needs nothing of :obj:`data`; the
        signature is that of every objective's)."""
        out = cls(**kwargs)
        out.generator = generator
        return out

    def draw(self, users: Tensor) -> Dict[str, Tensor]:
        r"""Nothing: ``{}``."""
        return {}

    def to(self, device) -> 'NegativeFreeObjective':
        return self

    @property
    def generator(self) -> Optional[torch.Generator]:
        return self._generator

    @generator.setter
    def generator(self, value: Optional[torch.Generator]) -> None:
        self._generator = value

    def __call__(self, model: Recommender, data: HeteroData, users: Tensor,
                 pos_items: Tensor,
                 negatives: Optional[Dict[str, Tensor]] = None
                 ) -> Dict[str, Tensor]:
        out = model(data)
        terms = dict(model.positive_loss(out, users, pos_items))
        terms['reg'] = self.regularization(model, users, pos_items, None, out)
        loss = self.reg_weight * terms['reg']
        for name, value in terms.items():
            if name != 'reg':
                loss = loss + value
        terms['loss'] = loss
        return terms


class BRMRSObjective(Objective):
    r"""The BR-MRS objective,

    .. math::
        \mathcal{L} = \lambda_h \mathcal{L}_{\mathrm{chns}} + \lambda_s
        \mathcal{L}_{\mathrm{syn}} + \lambda \, \mathcal{R} + \lambda_b
        \mathcal{L}_{\mathrm{bpr}},

    where :math:`\mathcal{L}_{\mathrm{chns}}`
    (:class:`~pyg_brmrs.loss.CrossModalBPRLoss`) trains every modality
    branch on the negative that
    :class:`~pyg_brmrs.sampling.CrossModalHardNegativeSampler` assigns to it,

    .. math::
        \mathcal{L}_{\mathrm{chns}} = \sum_m \frac{1}{B}\sum_b
        -\log\sigma\left(s_m(u_b, i^+_b) - s_m(u_b, \mathrm{neg}_b[m])
        \right),

    :math:`\mathcal{L}_{\mathrm{syn}}`
    (:class:`~pyg_brmrs.loss.SynergyBPRLoss`) is

    .. math::
        \mathcal{L}_{\mathrm{syn}} = \frac{1}{B}\sum_b -\log\sigma\left(
        \Delta_f - \max_m \Delta_m - \theta\right), \qquad \Delta_c =
        s_c(u_b, i^+_b) - s_c(u_b, i^-_b),

    with the negative :math:`i^-_b` drawn uniformly from
    :math:`\mathcal{I} \setminus \mathcal{O}_u` independently of the
    candidates (:obj:`syn_negative="uniform"`) or uniformly from the
    candidate pool :math:`\mathcal{N}(u_b)` (:obj:`syn_negative="pool"`),
    and :math:`\mathcal{L}_{\mathrm{bpr}}` is an optional plain BPR term
    on the fused branch with that same negative (off by default). Setting
    :obj:`lambda_h=0` or :obj:`lambda_s=0` gives the "L_syn only" / "CHNS
    only" ablations; a sampler with :obj:`num_candidates=1` replaces the
    hard negatives by uniform ones. The candidates are scored without
    gradient.

    Args:
        sampler (CrossModalHardNegativeSampler): The CHNS sampler.
        lambda_h (float, optional): :math:`\lambda_h`. (default: :obj:`1.0`)
        lambda_s (float, optional): :math:`\lambda_s`. (default: :obj:`1.0`)
        theta (float, optional): The synergy margin :math:`\theta`.
            (default: :obj:`0.1`)
        detach_reference (bool, optional): See
            :class:`~pyg_brmrs.loss.SynergyBPRLoss`. (default: :obj:`False`)
        reg_weight (float, optional): :math:`\lambda`. (default: :obj:`1e-4`)
        bpr_weight (float, optional): :math:`\lambda_b`.
            (default: :obj:`0.0`)
        syn_negative (str, optional): The negative of
            :math:`\mathcal{L}_{\mathrm{syn}}` (and
            :math:`\mathcal{L}_{\mathrm{bpr}}`): :obj:`"uniform"` or
            :obj:`"pool"`, see above. (default: :obj:`"uniform"`)
    """
    def __init__(self, sampler: CrossModalHardNegativeSampler,
                 lambda_h: float = 1.0, lambda_s: float = 1.0,
                 theta: float = 0.1, detach_reference: bool = False,
                 reg_weight: float = 1e-4, bpr_weight: float = 0.0,
                 syn_negative: str = 'uniform', reg_scope: str = 'batch'):
        super().__init__(sampler, reg_weight, reg_scope)
        if syn_negative not in SYN_NEGATIVES:
            raise ValueError(f"Unknown syn_negative '{syn_negative}' (choose "
                             f"from {list(SYN_NEGATIVES)})")
        self.syn_negative = syn_negative
        for name, value in [('lambda_h', lambda_h), ('lambda_s', lambda_s),
                            ('bpr_weight', bpr_weight)]:
            if value < 0:
                raise ValueError(f"'{name}' must be >= 0 (got {value})")
        if lambda_h == 0 and lambda_s == 0 and bpr_weight == 0:
            raise ValueError("At least one of 'lambda_h', 'lambda_s' and "
                             "'bpr_weight' must be positive")
        self.lambda_h = float(lambda_h)
        self.lambda_s = float(lambda_s)
        self.bpr_weight = float(bpr_weight)
        self.chns_loss = CrossModalBPRLoss()
        self.syn_loss = SynergyBPRLoss(theta,
                                       detach_reference=detach_reference)

    @classmethod
    def from_data(cls, data: HeteroData, num_candidates: int = 16,
                  assignment: str = 'cross', generator=None,
                  max_gather: Optional[int] = None,
                  schema: Optional[Schema] = None,
                  **kwargs) -> 'BRMRSObjective':
        r"""Builds the objective with a CHNS sampler on the training edges
        of :obj:`data` (names given by :obj:`schema`, a
        :class:`~pyg_brmrs.data.Schema`)."""
        data = canonical(data, schema)
        sampler = CrossModalHardNegativeSampler(
            data[RATES].edge_index, int(data['item'].num_nodes),
            num_candidates=num_candidates, assignment=assignment,
            num_users=int(data['user'].num_nodes), generator=generator,
            max_gather=max_gather)
        return cls(sampler, **kwargs)

    @staticmethod
    def unimodal_branches(out: RecOutput):
        return [b for b in out.branches if b != out.ranking_branch]

    def draw(self, users: Tensor) -> Dict[str, Tensor]:
        r"""``{"candidates": [B, C], "uniform": [B]}``, see
        :meth:`Objective.draw` and
        :meth:`~pyg_brmrs.sampling.CrossModalHardNegativeSampler.draw`."""
        candidates, uniform = self.sampler.draw(users)
        return {'candidates': candidates, 'uniform': uniform}

    def __call__(self, model: Recommender, data: HeteroData, users: Tensor,
                 pos_items: Tensor,
                 negatives: Optional[Dict[str, Tensor]] = None
                 ) -> Dict[str, Tensor]:
        given = {} if negatives is None else {
            'candidates': negatives['candidates'],
            'uniform': negatives['uniform']}
        if negatives is None and getattr(model, 'supports_user_subset',
                                         False) and \
                subgraph_ids(data) is None:
            # the batch's users only (the same numbers up to rounding, at
            # a lower cost); the pools are drawn after the forward pass,
            # as the sampler draws them, and the users become output rows
            batch_users, rows = torch.unique(users, return_inverse=True)
            out = model(data, users=batch_users)
            candidates, uniform = self.sampler.draw(users)
            given = {'candidates': candidates, 'uniform': uniform}
            users = rows
        else:
            out = model(data)
        names = self.unimodal_branches(out)
        keys = names + ([FUSED] if self.sampler.assignment == 'fused' else [])
        res = self.sampler(users, {b: out.user[b].detach()
                                   for b in keys},
                           {b: out.item[b].detach()
                            for b in keys}, **given)
        uni = self.syn_negatives(res)
        fused = out.ranking_branch
        need_uni = self.lambda_s > 0 or self.bpr_weight > 0
        # per branch: [positives, hard negatives?, uniform negatives?]
        items = {b: [pos_items] for b in names + [fused]}
        if self.lambda_h > 0:
            for m in names:
                items[m].append(res.negatives[m])
        if need_uni:
            for b in items:
                items[b].append(uni)
        scores = batch_scores(out, users, items)
        pos = {b: scores[b][0] for b in items}
        terms: Dict[str, Tensor] = {}
        loss = pos[fused].new_zeros(())
        if self.lambda_h > 0:
            terms['chns'] = self.chns_loss([pos[m] for m in names],
                                           [scores[m][1] for m in names])
            loss = loss + self.lambda_h * terms['chns']
        neg_uni = None
        if need_uni:
            neg_uni = {b: scores[b][-1] for b in items}
        if self.lambda_s > 0:
            terms['syn'] = self.syn_loss(pos[fused], neg_uni[fused],
                                         [pos[m] for m in names],
                                         [neg_uni[m] for m in names])
            loss = loss + self.lambda_s * terms['syn']
        if self.bpr_weight > 0:
            terms['bpr'] = bpr_loss(pos[fused], neg_uni[fused])
            loss = loss + self.bpr_weight * terms['bpr']
        terms['reg'] = self.regularization(model, users, pos_items, uni, out)
        terms['loss'] = loss + self.reg_weight * terms['reg']
        return terms

    def syn_negatives(self, res: HardNegatives) -> Tensor:
        r"""The ``[B]`` negatives of :math:`\mathcal{L}_{\mathrm{syn}}`:
        ``res.uniform``, or one candidate per pair drawn uniformly from
        ``res.candidates`` (with the sampler's generator) for
        :obj:`syn_negative="pool"`."""
        if self.syn_negative == 'uniform':
            return res.uniform
        cand = res.candidates
        pick = torch.randint(cand.size(1), (cand.size(0), 1),
                             generator=self.generator, device=cand.device)
        return cand.gather(1, pick).view(-1)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(lambda_h={self.lambda_h}, '
                f'lambda_s={self.lambda_s}, theta={self.syn_loss.theta}, '
                f'detach_reference={self.syn_loss.detach_reference}, '
                f'reg_weight={self.reg_weight}, '
                f'bpr_weight={self.bpr_weight}, '
                f'syn_negative={self.syn_negative!r}{self._reg_repr()}, '
                f'sampler={self.sampler})')


class REARMObjective(BPRObjective):
    r"""The objective BR-MRS argues against, on the same backbone (REARM,
    ACM MM'25): fused BPR with uniform negatives, InfoNCE alignment between
    every pair of modality channels and an orthogonality ("difference")
    constraint between them, on the unique users and items of the batch:

    .. math::
        \mathcal{L} = \mathcal{L}_{\mathrm{bpr}} + \lambda_{cl} \sum_{m <
        m'} (\mathrm{NCE}_U + \mathrm{NCE}_I)(\mathbf{z}^{(m)},
        \mathbf{z}^{(m')}) + \lambda_{orth} \sum_{m < m'} (\mathrm{O}_U +
        \mathrm{O}_I)(\mathbf{z}^{(m)}, \mathbf{z}^{(m')}) + \lambda
        \mathcal{R}.

    The model must expose ``extras['user_channels']`` and
    ``extras['item_channels']`` (``[N, C, d]``, as
    :class:`~pyg_brmrs.nn.BRMRS` does); the modality channels are the last
    :math:`M` ones.

    Args:
        sampler (UniformNegativeSampler): The negative sampler.
        cl_weight (float, optional): :math:`\lambda_{cl}`.
            (default: :obj:`0.01`)
        orth_weight (float, optional): :math:`\lambda_{orth}`.
            (default: :obj:`0.01`)
        temperature (float, optional): InfoNCE temperature.
            (default: :obj:`0.2`)
        reg_weight (float, optional): :math:`\lambda`. (default: :obj:`1e-4`)
    """
    def __init__(self, sampler: UniformNegativeSampler,
                 cl_weight: float = 0.01, orth_weight: float = 0.01,
                 temperature: float = 0.2, reg_weight: float = 1e-4,
                 reg_scope: str = 'batch'):
        super().__init__(sampler, reg_weight=reg_weight, reg_scope=reg_scope)
        if temperature <= 0:
            raise ValueError(f"'temperature' must be > 0 (got {temperature})")
        self.cl_weight = float(cl_weight)
        self.orth_weight = float(orth_weight)
        self.temperature = float(temperature)

    def __call__(self, model: Recommender, data: HeteroData, users: Tensor,
                 pos_items: Tensor,
                 negatives: Optional[Dict[str, Tensor]] = None
                 ) -> Dict[str, Tensor]:
        out = model(data)
        if 'user_channels' not in out.extras:
            raise ValueError(f"{self.__class__.__name__} needs a model that "
                             f"returns extras['user_channels'] / "
                             f"['item_channels'] (e.g. BRMRS)")
        neg_items = (negatives or self.draw(users))['negatives']
        num_mod = len(out.branches) - 1
        uu = torch.unique(users)
        ii = torch.unique(torch.cat([pos_items, neg_items]))
        uc = take_rows(out.extras['user_channels'], uu)[:, -num_mod:]
        ic = take_rows(out.extras['item_channels'], ii)[:, -num_mod:]
        cl = uc.new_zeros(())
        orth = uc.new_zeros(())
        for a in range(num_mod):
            for b in range(a + 1, num_mod):
                cl = cl + info_nce(uc[:, a], uc[:, b], self.temperature)
                cl = cl + info_nce(ic[:, a], ic[:, b], self.temperature)
                orth = orth + orthogonality(uc[:, a], uc[:, b])
                orth = orth + orthogonality(ic[:, a], ic[:, b])
        terms = {
            'bpr': bpr_loss(out.score(users, pos_items),
                            out.score(users, neg_items)),
            'cl': cl,
            'orth': orth,
            'reg': self.regularization(model, users, pos_items, neg_items, out),
        }
        terms['loss'] = (terms['bpr'] + self.cl_weight * cl +
                         self.orth_weight * orth +
                         self.reg_weight * terms['reg'])
        return terms
