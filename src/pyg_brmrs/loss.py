r"""The losses of BR-MRS: the cross-modal BPR loss of its hard negatives and
the synergy-aware BPR loss, computed with
:func:`torch.nn.functional.logsigmoid`, which is finite for any score
magnitude; and the contrastive loss of the baselines
(:func:`cosine_info_nce`) over a memory-light log-sum-exp; and
:func:`parameter_norm`, the :math:`\lVert \Theta \rVert^2` regulariser
over every trainable parameter."""
import numbers
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

REDUCTIONS = ('mean', 'sum', 'none')


def _check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"Unknown reduction '{reduction}' (choose from "
                         f"{list(REDUCTIONS)})")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == 'mean':
        return loss.mean()
    if reduction == 'sum':
        return loss.sum()
    return loss


def _as_stack(name: str, scores: Union[Tensor, Sequence[Tensor]]) -> Tensor:
    if isinstance(scores, Tensor):
        if scores.dim() == 1:
            return scores.unsqueeze(0)
        return scores
    if len(scores) == 0:
        raise ValueError(f"'{name}' must hold at least one branch")
    shapes = {tuple(s.shape) for s in scores}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"'{name}' must be a sequence of [B] tensors of "
                         f"equal size (got shapes {sorted(shapes)})")
    return torch.stack(list(scores), dim=0)


def bpr_loss(pos_score: Tensor, neg_score: Tensor,
             reduction: str = 'mean') -> Tensor:
    r"""The Bayesian Personalized Ranking loss
    :math:`-\log \sigma(s(u, i^+) - s(u, i^-))` of ``[B]`` (or any
    broadcastable) scores."""
    _check_reduction(reduction)
    if pos_score.shape != neg_score.shape:
        raise ValueError(f"'pos_score' and 'neg_score' must have the same "
                         f"shape (got {tuple(pos_score.shape)} and "
                         f"{tuple(neg_score.shape)})")
    return _reduce(-F.logsigmoid(pos_score - neg_score), reduction)


class CrossModalBPRLoss(torch.nn.Module):
    r"""The CHNS loss of BR-MRS, one BPR term per modality branch, each on its
    own (cross-assigned) hard negative:

    .. math::
        \mathcal{L}_{\mathrm{chns}} = \sum_{m=1}^{M} \frac{1}{B}
        \sum_{b=1}^{B} -\log \sigma\left(s_m(u_b, i^+_b) -
        s_m(u_b, \mathrm{neg}_b[m])\right)

    (the sum runs over the modalities, the mean over the batch).

    Args:
        reduction (str, optional): :obj:`"mean"` (mean over the batch, sum
            over the modalities, as above), :obj:`"sum"` (sum over both) or
            :obj:`"none"` (the ``[M, B]`` terms). (default: :obj:`"mean"`)

    Shapes:
        - **input:** :obj:`pos_scores`, :obj:`neg_scores`: sequences of
          :math:`M` tensors of shape ``[B]`` (or ``[M, B]`` tensors)
        - **output:** scalar, or ``[M, B]`` for :obj:`reduction="none"`
    """
    def __init__(self, reduction: str = 'mean'):
        super().__init__()
        self.reduction = _check_reduction(reduction)

    def forward(self, pos_scores: Union[Tensor, Sequence[Tensor]],
                neg_scores: Union[Tensor, Sequence[Tensor]]) -> Tensor:
        pos = _as_stack('pos_scores', pos_scores)
        neg = _as_stack('neg_scores', neg_scores)
        if pos.shape != neg.shape:
            raise ValueError(f"'pos_scores' and 'neg_scores' must have the "
                             f"same shape (got {tuple(pos.shape)} and "
                             f"{tuple(neg.shape)})")
        loss = -F.logsigmoid(pos - neg)  # [M, B]
        if self.reduction == 'mean':
            return loss.mean(dim=1).sum()
        return _reduce(loss, self.reduction)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(reduction={self.reduction})'


class SynergyBPRLoss(torch.nn.Module):
    r"""The synergy-aware BPR loss of BR-MRS. With a (uniform) negative
    :math:`i^-` and the margins :math:`\Delta_b = s_b(u, i^+) - s_b(u, i^-)`
    of every branch :math:`b`,

    .. math::
        \mathcal{L}_{\mathrm{syn}} = -\log \sigma\left(\Delta_f -
        \max_{m} \Delta_m - \theta\right), \qquad \theta > 0,

    which asks the fused branch to beat the best unimodal branch by a margin
    :math:`\theta`.

    Args:
        theta (float): The margin :math:`\theta > 0`.
        detach_reference (bool, optional): Stop the gradient through
            :math:`\max_m \Delta_m` (then only the fused branch is pushed; by
            default the loss also pulls the best unimodal margin down).
            (default: :obj:`False`)
        reduction (str, optional): :obj:`"mean"`, :obj:`"sum"` or
            :obj:`"none"` over the batch. (default: :obj:`"mean"`)

    Shapes:
        - **input:** :obj:`pos_fused`, :obj:`neg_fused`: ``[B]``;
          :obj:`pos_unimodal`, :obj:`neg_unimodal`: sequences of :math:`M`
          tensors of shape ``[B]`` (or ``[M, B]`` tensors)
        - **output:** scalar, or ``[B]`` for :obj:`reduction="none"`
    """
    def __init__(self, theta: float, detach_reference: bool = False,
                 reduction: str = 'mean'):
        super().__init__()
        if isinstance(theta, bool) or not isinstance(theta, numbers.Real) \
                or not 0 < theta < float('inf'):
            raise ValueError(f"'theta' must be a finite number > 0 (got "
                             f"{theta!r})")
        theta = float(theta)
        self.theta = theta
        self.detach_reference = detach_reference
        self.reduction = _check_reduction(reduction)

    def forward(self, pos_fused: Tensor, neg_fused: Tensor,
                pos_unimodal: Union[Tensor, Sequence[Tensor]],
                neg_unimodal: Union[Tensor, Sequence[Tensor]]) -> Tensor:
        if pos_fused.dim() != 1 or pos_fused.shape != neg_fused.shape:
            raise ValueError(f"'pos_fused' and 'neg_fused' must be [B] "
                             f"tensors of equal size (got "
                             f"{tuple(pos_fused.shape)} and "
                             f"{tuple(neg_fused.shape)})")
        pos = _as_stack('pos_unimodal', pos_unimodal)
        neg = _as_stack('neg_unimodal', neg_unimodal)
        if pos.shape != neg.shape or pos.size(1) != pos_fused.size(0):
            raise ValueError(f"Unimodal scores must be [M, B] with B = "
                             f"{pos_fused.size(0)} (got {tuple(pos.shape)} "
                             f"and {tuple(neg.shape)})")
        if pos_fused.numel() == 0 and self.reduction == 'mean':
            raise ValueError("SynergyBPRLoss: the batch is empty (the mean "
                             "of no pairs is undefined)")
        reference = (pos - neg).max(dim=0).values
        if self.detach_reference:
            reference = reference.detach()
        delta_f = pos_fused - neg_fused
        loss = -F.logsigmoid(delta_f - reference - self.theta)
        return _reduce(loss, self.reduction)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(theta={self.theta}, '
                f'detach_reference={self.detach_reference})')


class _ProductLogSumExp(torch.autograd.Function):
    r""":math:`\log\sum_j \exp(\mathbf{q}_b^{\top}\mathbf{k}_j)` with one
    ``[B, N]`` buffer: the forward pass exponentiates the scores in place
    (shifted by the row maxima unless :obj:`bound` guarantees they cannot
    overflow) and keeps them with their row sums :math:`Z_b`; the backward
    pass reads them twice, with the softmax's normalisation and the
    incoming gradient folded into the ``[B, D]`` factors:
    :math:`\partial\mathbf{q} = \mathrm{diag}(g/Z)\,\mathbf{E}\mathbf{K}`,
    :math:`\partial\mathbf{K} = \mathbf{E}^{\top}\mathrm{diag}(g/Z)
    \mathbf{q}`."""
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, bound: Optional[float]) -> Tensor:
        e = q @ k.t()
        if bound is None or bound > EXP_SAFE:
            top = e.amax(dim=1, keepdim=True)
            e.sub_(top)
        else:
            top = None
        e.exp_()
        total = e.sum(dim=1)
        ctx.save_for_backward(q, k, e, total)
        out = total.log()
        return out if top is None else out + top.squeeze(1)

    @staticmethod
    def backward(ctx, grad: Tensor):
        q, k, e, total = ctx.saved_tensors
        w = (grad / total).unsqueeze(1)
        dq = w * (e @ k) if ctx.needs_input_grad[0] else None
        # (q' E)^T, not E^T q': torch's kernels read E row-major then
        dk = ((w * q).t() @ e).t() if ctx.needs_input_grad[1] else None
        return dq, dk, None


#: The largest score magnitude :func:`product_logsumexp` exponentiates
#: without the row-maximum shift (float32's exp overflows above 88.7).
EXP_SAFE = 60.0


def product_logsumexp(q: Tensor, k: Tensor,
                      bound: Optional[float] = None) -> Tensor:
    r"""``torch.logsumexp(q @ k.T, dim=1)`` for ``q`` ``[B, D]`` and
    ``k`` ``[N, D]`` (the same values up to float rounding), computed in
    one ``[B, N]`` buffer that the backward pass reuses: the denominator of
    a contrastive loss over many candidates at the memory of one score
    matrix and three passes over it forward, two backward. :obj:`bound`, a
    known bound on :math:`|\mathbf{q}_b^{\top}\mathbf{k}_j|` (*e.g.*
    :math:`1/\tau` for cosines at temperature :math:`\tau`), lets it skip
    the row-maximum shift when the exponentials cannot overflow.

    Raises:
        ValueError: if there is no candidate (``N = 0``) or the shapes do
            not match.
    """
    if q.dim() != 2 or k.dim() != 2 or q.size(1) != k.size(1):
        raise ValueError(f"'q' and 'k' must be [B, D] and [N, D] (got "
                         f"{tuple(q.shape)} and {tuple(k.shape)})")
    if k.size(0) == 0:
        raise ValueError("'k' holds no candidate row")
    return _ProductLogSumExp.apply(q, k, bound)


def cosine_info_nce(anchor: Tensor, positive: Tensor, candidates: Tensor,
                    temperature: float, reduction: str = 'mean') -> Tensor:
    r"""The InfoNCE loss of cosine similarities,

    .. math::
        \ell_b = -\log \frac{\exp(\cos(\mathbf{a}_b, \mathbf{p}_b) / \tau)}
        {\sum_j \exp(\cos(\mathbf{a}_b, \mathbf{c}_j) / \tau)},

    for :obj:`anchor` and :obj:`positive` ``[B, d]`` and the candidate
    rows :obj:`candidates` ``[N, d]`` (MGCN's ``InfoNCE``: the positive
    view's batch rows, mean over the batch; LGMRec's
    ``ssl_triple_loss``: all rows of the other view, summed), computed as
    a log-sum-exp (:func:`product_logsumexp`: finite for any
    :math:`\tau`, where the reference's ratio of exponentials overflows)."""
    a = F.normalize(anchor, dim=1) / temperature
    pos = (a * F.normalize(positive, dim=1)).sum(-1)
    lse = product_logsumexp(a, F.normalize(candidates, dim=1),
                            bound=1.0 / temperature)
    return _reduce(lse - pos, _check_reduction(reduction))


def info_nce(a: Tensor, b: Tensor, temperature: float = 0.2) -> Tensor:
    r"""InfoNCE between row-aligned views ``[N, d]``:
    :math:`-\frac{1}{N}\sum_n \log \frac{\exp(\cos(a_n, b_n)/\tau)}
    {\sum_{n'} \exp(\cos(a_n, b_{n'})/\tau)}`."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.t() / temperature
    target = torch.arange(a.size(0), device=a.device)
    return F.cross_entropy(logits, target)


def orthogonality(a: Tensor, b: Tensor) -> Tensor:
    r"""REARM's orthogonality ("difference") loss between two views
    ``[N, d]``: the mean squared entry of
    :math:`\tilde{\mathbf{A}}^{\top}\tilde{\mathbf{B}}`, where
    :math:`\tilde{\cdot}` centres the columns and :math:`L_2`-normalises the
    rows (norms detached, as REARM)."""
    a = a - a.mean(dim=0, keepdim=True)
    b = b - b.mean(dim=0, keepdim=True)
    a = a / (a.norm(dim=1, keepdim=True).detach() + 1e-6)
    b = b / (b.norm(dim=1, keepdim=True).detach() + 1e-6)
    return (a.t() @ b).pow(2).mean()


def parameter_norm(module: torch.nn.Module) -> Tensor:
    r""":math:`\lVert \Theta \rVert^2 = \sum_{p \in \Theta}
    \lVert p \rVert_2^2`, the squared :math:`L_2` norm of every trainable
    parameter of :obj:`module` (those with :obj:`requires_grad`), summed,
    not averaged; a scalar on the parameters' device (zero for a module
    without trainable parameters)."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        return torch.zeros(())
    return torch.stack([p.pow(2).sum() for p in params]).sum()
