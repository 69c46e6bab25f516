r"""pyg-brmrs: BR-MRS multimodal recommendation as PyTorch Geometric
components."""
import warnings

# torch prints this once per process for any CSR tensor; our CSR use is
# covered by tests, so it would only be noise for users.
warnings.filterwarnings('ignore', message='Sparse CSR tensor support is in '
                        'beta state', category=UserWarning)

import pyg_brmrs.data  # noqa: E402
import pyg_brmrs.transforms  # noqa: E402
import pyg_brmrs.nn  # noqa: E402
import pyg_brmrs.sampling  # noqa: E402
import pyg_brmrs.loss  # noqa: E402,F401

__version__ = '0.1.0'

__all__ = [
    'data',
    'transforms',
    'nn',
    'sampling',
    'loss',
    '__version__',
]
