from .base import FUSED, Recommender, RecOutput
from .conv import MultiModalLGConv
from .fusion import ConcatFusion, Fusion, GatedFusion, MeanFusion
from .models import BPRMF, BRMRS, FREEDOM, VBPR, LightGCN

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
    'LightGCN',
    'VBPR',
    'FREEDOM',
]
