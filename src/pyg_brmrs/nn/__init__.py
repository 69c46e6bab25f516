from .base import FUSED, Recommender, RecOutput
from .conv import MultiModalLGConv
from .fusion import ConcatFusion, Fusion, GatedFusion, MeanFusion
from .models import BRMRS

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
]
