from .brmrs import BRMRS
from .mf import BPRMF
from .lightgcn import LightGCNRecommender
from .vbpr import VBPR
from .freedom import FREEDOM
from .bm3 import BM3
from .lgmrec import LGMRec
from .mgcn import MGCN
from .dragon import DRAGON, DualGNN
from .rearm import REARM
from .lattice import LATTICE
from .micro import MICRO
from .mgdn import MGDN
from .apegnn import ApeGNN
from .mmgcn import MMGCN
from .grcn import GRCN
from .slmrec import SLMRec
from .miggt import MIGGT

__all__ = [
    'BRMRS',
    'BPRMF',
    'LightGCNRecommender',
    'VBPR',
    'FREEDOM',
    'BM3',
    'LGMRec',
    'MGCN',
    'DRAGON',
    'DualGNN',
    'REARM',
    'LATTICE',
    'MICRO',
    'MGDN',
    'ApeGNN',
    'MMGCN',
    'GRCN',
    'SLMRec',
    'MIGGT',
]
