r"""Fusion operators :math:`\varphi` that turn the unimodal representations
:math:`\mathbf{q}^{(1)}, \dots, \mathbf{q}^{(M)}` of a node into its fused
representation :math:`\mathbf{q}^{(f)} = \varphi(\mathbf{q}^{(1..M)})`.

Every fusion takes a list of ``M`` tensors of shape ``[N, F]`` and returns
one ``[N, F_out]`` tensor; :attr:`out_channels` gives ``F_out``. The fused
score of BR-MRS is the dot product of the fused user and item
representations.
"""
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor


class Fusion(torch.nn.Module):
    r"""Base class of the fusion operators.

    Args:
        num_modalities (int): The number of unimodal inputs :math:`M`.
        in_channels (int): The size :math:`F` of each unimodal input.
    """
    def __init__(self, num_modalities: int, in_channels: int):
        super().__init__()
        if num_modalities < 1:
            raise ValueError(f"'num_modalities' must be >= 1 (got "
                             f"{num_modalities})")
        self.num_modalities = num_modalities
        self.in_channels = in_channels

    @property
    def out_channels(self) -> int:
        return self.in_channels

    def reset_parameters(self):
        pass

    def _check(self, xs: Sequence[Tensor]) -> None:
        if len(xs) != self.num_modalities:
            raise ValueError(f"'{self.__class__.__name__}' expects "
                             f"{self.num_modalities} inputs (got {len(xs)})")

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_modalities}, '
                f'{self.in_channels})')


class ConcatFusion(Fusion):
    r"""Concatenation,
    :math:`\mathbf{q}^{(f)} = \Vert_{m=1}^{M} \mathbf{q}^{(m)}`, so that the
    fused score is the sum of the unimodal scores,
    :math:`s_f(u, i) = \sum_m s_m(u, i)` (``F_out = M * F``)."""
    @property
    def out_channels(self) -> int:
        return self.num_modalities * self.in_channels

    def forward(self, xs: Sequence[Tensor]) -> Tensor:
        self._check(xs)
        return torch.cat(list(xs), dim=-1)


class MeanFusion(Fusion):
    r"""Average, :math:`\mathbf{q}^{(f)} = \frac{1}{M} \sum_m
    \mathbf{q}^{(m)}`: the fused score also contains the cross-modal terms
    :math:`\langle \mathbf{p}^{(m)}, \mathbf{q}^{(m')} \rangle`.

    Computed as a running sum divided by :math:`M` (one ``[N, F]`` output,
    and the same gradient tensor for every input in the backward pass),
    not through an ``[M, N, F]`` stack."""
    def forward(self, xs: Sequence[Tensor]) -> Tensor:
        self._check(xs)
        for j, x in enumerate(xs[1:], start=1):
            if x.shape != xs[0].shape:
                raise ValueError(f"'{self.__class__.__name__}' expects "
                                 f"inputs of one shape (input {j} is "
                                 f"{list(x.shape)}, input 0 "
                                 f"{list(xs[0].shape)})")
        out = xs[0] + xs[1] if len(xs) > 1 else xs[0].clone()
        for x in xs[2:]:
            out.add_(x)
        return out.div_(len(xs))


class GatedFusion(Fusion):
    r"""Node-wise gated sum,

    .. math::
        \mathbf{g} = \mathrm{softmax}\left(\mathbf{W}
        \left[\Vert_m \mathbf{q}^{(m)}\right] + \mathbf{b}\right)
        \in \Delta^{M}, \qquad
        \mathbf{q}^{(f)} = M \sum_m g_m \, \mathbf{q}^{(m)},

    with :math:`\mathbf{W} \in \mathbb{R}^{M \times MF}`. The gate starts
    uniform (zero-initialised), where the fusion equals the sum of the
    unimodal representations.
    """
    def __init__(self, num_modalities: int, in_channels: int):
        super().__init__(num_modalities, in_channels)
        self.gate = torch.nn.Linear(num_modalities * in_channels,
                                    num_modalities)
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.zeros_(self.gate.weight)
        torch.nn.init.zeros_(self.gate.bias)

    def forward(self, xs: Sequence[Tensor]) -> Tensor:
        self._check(xs)
        stacked = torch.stack(list(xs), dim=1)  # [N, M, F]
        g = F.softmax(self.gate(stacked.flatten(1)), dim=-1)  # [N, M]
        return self.num_modalities * (g.unsqueeze(-1) * stacked).sum(dim=1)


class _HiddenFusion(Fusion):
    r"""A fusion with learned layers of hidden size
    :obj:`hidden_channels` (default: :obj:`in_channels`), which subclasses
    create in :meth:`_build` and initialise in :meth:`reset_parameters`."""
    def __init__(self, num_modalities: int, in_channels: int,
                 hidden_channels: Optional[int] = None):
        super().__init__(num_modalities, in_channels)
        self.hidden_channels = (in_channels if hidden_channels is None else
                                hidden_channels)
        self._build(self.hidden_channels)
        self.reset_parameters()

    def _build(self, hidden: int) -> None:
        raise NotImplementedError


class AttentionFusion(_HiddenFusion):
    r"""Node-wise semantic attention (as in HAN),

    .. math::
        w_m = \mathbf{a}^{\top} \tanh\left(\mathbf{W}\mathbf{q}^{(m)} +
        \mathbf{b}\right), \qquad
        \boldsymbol{\alpha} = \mathrm{softmax}(w_1, \dots, w_M), \qquad
        \mathbf{q}^{(f)} = M \sum_m \alpha_m \mathbf{q}^{(m)},

    with one scorer (:math:`\mathbf{W} \in \mathbb{R}^{H \times F}`,
    :math:`\mathbf{a} \in \mathbb{R}^{H}`) shared by the modalities, so a
    modality's weight depends on its own representation only (unlike
    :class:`GatedFusion`, whose gate reads all of them at once).
    :math:`\mathbf{a}` starts at zero: uniform weights, the sum of the
    unimodal representations.

    Args:
        num_modalities (int): :math:`M`.
        in_channels (int): :math:`F`.
        hidden_channels (int, optional): :math:`H` (default: :math:`F`).
    """
    def _build(self, hidden: int) -> None:
        self.lin = torch.nn.Linear(self.in_channels, hidden)
        self.att = torch.nn.Parameter(torch.empty(hidden))

    def reset_parameters(self):
        self.lin.reset_parameters()
        torch.nn.init.zeros_(self.att)

    def forward(self, xs: Sequence[Tensor]) -> Tensor:
        self._check(xs)
        stacked = torch.stack(list(xs), dim=1)  # [N, M, F]
        w = torch.tanh(self.lin(stacked)) @ self.att  # [N, M]
        alpha = F.softmax(w, dim=-1)
        return self.num_modalities * (alpha.unsqueeze(-1) * stacked).sum(1)


class MLPFusion(_HiddenFusion):
    r"""A small MLP head on the concatenated unimodal representations, with
    a residual connection to their mean,

    .. math::
        \mathbf{q}^{(f)} = \frac{1}{M}\sum_m \mathbf{q}^{(m)} +
        \mathbf{W}_2 \, \mathrm{ReLU}\left(\mathbf{W}_1
        \left[\Vert_m \mathbf{q}^{(m)}\right] + \mathbf{b}_1\right) +
        \mathbf{b}_2,

    :math:`\mathbf{W}_1 \in \mathbb{R}^{H \times MF}`,
    :math:`\mathbf{W}_2 \in \mathbb{R}^{F \times H}`. The head learns
    interactions between the modalities that no weighted sum can express;
    :math:`\mathbf{W}_2, \mathbf{b}_2` start at zero, so training starts
    from :class:`MeanFusion`.

    Args:
        num_modalities (int): :math:`M`.
        in_channels (int): :math:`F`.
        hidden_channels (int, optional): :math:`H` (default: :math:`F`).
    """
    def _build(self, hidden: int) -> None:
        self.lin1 = torch.nn.Linear(self.num_modalities * self.in_channels,
                                    hidden)
        self.lin2 = torch.nn.Linear(hidden, self.in_channels)

    def reset_parameters(self):
        self.lin1.reset_parameters()
        torch.nn.init.zeros_(self.lin2.weight)
        torch.nn.init.zeros_(self.lin2.bias)

    def forward(self, xs: Sequence[Tensor]) -> Tensor:
        self._check(xs)
        mean = torch.stack(list(xs), dim=0).mean(dim=0)
        return mean + self.lin2(F.relu(self.lin1(torch.cat(list(xs), -1))))


FUSIONS = {
    'concat': ConcatFusion,
    'mean': MeanFusion,
    'gated': GatedFusion,
    'attention': AttentionFusion,
    'mlp': MLPFusion,
}


def resolve_fusion(fusion: Union[str, Fusion], num_modalities: int,
                   in_channels: int) -> Fusion:
    r"""Returns a fresh fusion module for a name in :obj:`FUSIONS` (a
    :class:`Fusion` instance is returned as is)."""
    if isinstance(fusion, Fusion):
        return fusion
    if isinstance(fusion, str) and fusion in FUSIONS:
        return FUSIONS[fusion](num_modalities, in_channels)
    raise ValueError(f"Unknown fusion '{fusion}' (choose from "
                     f"{sorted(FUSIONS)} or pass a 'Fusion' module)")


def list_fusions() -> List[str]:
    return sorted(FUSIONS)
