r"""pyg-brmrs: BR-MRS multimodal recommendation as PyTorch Geometric
components."""
import pyg_brmrs.data
import pyg_brmrs.transforms
import pyg_brmrs.nn
import pyg_brmrs.sampling
import pyg_brmrs.loss  # noqa: F401

from pyg_brmrs.version import __version__

__all__ = [
    'data',
    'transforms',
    'nn',
    'sampling',
    'loss',
    '__version__',
]
