from pyg_brmrs.utils.deprecation import renamed_names

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

#: Former names of the models: ``old -> new``.
RENAMED = {'LightGCN': 'LightGCNRecommender'}

__getattr__ = renamed_names(__name__, globals(), RENAMED)
