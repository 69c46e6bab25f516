from pyg_brmrs.utils.deprecation import warn_renamed

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


def __getattr__(name: str):
    if name in RENAMED:
        warn_renamed(name, RENAMED[name], f"'{__name__}'", what='name')
        return globals()[RENAMED[name]]
    raise AttributeError(f"module '{__name__}' has no attribute '{name}'")
