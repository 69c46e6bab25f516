from pyg_brmrs.utils.deprecation import warn_renamed

from .base import FUSED, Recommender, RecOutput
from .conv import MultiModalLGConv
from .fusion import ConcatFusion, Fusion, GatedFusion, MeanFusion
from .models import BPRMF, BRMRS, FREEDOM, VBPR, LightGCNRecommender

__all__ = [
    'FUSED',
    'Recommender',
    'RecOutput',
    'MultiModalLGConv',
    'Fusion',
    'ConcatFusion',
    'MeanFusion',
    'GatedFusion',
    'BRMRS',
    'BPRMF',
    'LightGCNRecommender',
    'VBPR',
    'FREEDOM',
]

#: Former names: ``old -> new``.
RENAMED = {'LightGCN': 'LightGCNRecommender'}


def __getattr__(name: str):
    # ``from pyg_brmrs.nn import LightGCN`` keeps working for a while; the
    # class was renamed so as not to shadow torch_geometric.nn.LightGCN.
    if name in RENAMED:
        warn_renamed(name, RENAMED[name], f"'{__name__}'", what='name')
        return globals()[RENAMED[name]]
    raise AttributeError(f"module '{__name__}' has no attribute '{name}'")
