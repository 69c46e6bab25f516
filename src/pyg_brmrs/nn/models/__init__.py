from .brmrs import BRMRS
from .mf import BPRMF
from .lightgcn import LightGCN
from .vbpr import VBPR
from .freedom import FREEDOM

__all__ = [
    'BRMRS',
    'BPRMF',
    'LightGCN',
    'VBPR',
    'FREEDOM',
]
