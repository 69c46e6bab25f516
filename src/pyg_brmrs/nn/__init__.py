from . import graph, models
from .base import FUSED, Recommender, RecOutput
from .conv import MultiModalLGConv
from .fusion import ConcatFusion, Fusion, GatedFusion, MeanFusion
from .graph import RecGraph
from .models import (
    BM3,
    BPRMF,
    BRMRS,
    DRAGON,
    DualGNN,
    FREEDOM,
    GRCN,
    LATTICE,
    MGCN,
    MGDN,
    MICRO,
    MIGGT,
    MMGCN,
    REARM,
    ApeGNN,
    VBPR,
    LGMRec,
    LightGCNRecommender,
    SLMRec,
)

__all__ = [
    'FUSED',
    'Recommender',
    'RecOutput',
    'RecGraph',
    'MultiModalLGConv',
    'Fusion',
    'ConcatFusion',
    'MeanFusion',
    'GatedFusion',
    *models.__all__,
]
