from .brmrs import BRMRS
from .mf import BPRMF
from .lightgcn import LightGCNRecommender
from .vbpr import VBPR
from .freedom import FREEDOM

__all__ = [
    'BRMRS',
    'BPRMF',
    'LightGCNRecommender',
    'VBPR',
    'FREEDOM',
]
