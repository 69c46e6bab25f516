r"""The trainer's optimiser."""
from typing import Optional

import torch


def make_adam(params, lr: float = 1e-3, weight_decay: float = 0.0,
              fused: Optional[bool] = None,
              decoupled: bool = False) -> torch.optim.Adam:
    r"""The trainer's optimiser: :class:`torch.optim.Adam` (or, with
    :obj:`decoupled=True`, :class:`torch.optim.AdamW`: the weight decay
    applied to the parameters rather than added to the gradients) over
    :obj:`params`, with torch's fused kernel (one pass over each parameter
    instead of a chain of element-wise operations with full-size
    temporaries; the same update up to float rounding) when every parameter
    is a floating tensor on a device that has it (:obj:`fused=None`), always
    (:obj:`True`: an unsupported parameter raises torch's error) or never
    (:obj:`False`)."""
    params = list(params)
    if fused is None:
        tensors = [p for group in params for p in (
            group['params'] if isinstance(group, dict) else [group])]
        supported = getattr(torch.utils._foreach_utils,
                            '_get_fused_kernels_supported_devices', None)
        devices = set(supported()) if supported is not None else set()
        fused = bool(tensors) and all(
            torch.is_floating_point(p) and not p.is_sparse and
            p.device.type in devices for p in tensors)
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    return cls(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
