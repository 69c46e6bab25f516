from pyg_brmrs.utils.deprecation import renamed_names

from . import models
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
    *models.__all__,
]

#: Former names: ``old -> new`` (those of :mod:`pyg_brmrs.nn.models`; the
#: package's LightGCN was renamed so as not to shadow
#: :class:`torch_geometric.nn.LightGCN`).
RENAMED = models.RENAMED

__getattr__ = renamed_names(__name__, globals(), RENAMED)
