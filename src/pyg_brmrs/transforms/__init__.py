r"""Graph transforms on the :mod:`pyg_brmrs` HeteroData schema."""
from .homogeneous_knn_graph import HomogeneousKNNGraph

__all__ = [
    'HomogeneousKNNGraph',
]
