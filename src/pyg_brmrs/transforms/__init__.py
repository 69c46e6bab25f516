r"""Graph transforms on the :mod:`pyg_brmrs` HeteroData schema, and the
modality :math:`k`-NN graphs models build for themselves."""
from ._cooccurrence import rearm_padding
from .homogeneous_knn_graph import HomogeneousKNNGraph
from .knn_graph import (
    cooccurrence_knn_graph,
    cosine_knn_graph,
    default_modality_weights,
    mixed_cosine_knn_graph,
    resolve_modality_weights,
)

__all__ = [
    'HomogeneousKNNGraph',
    'cosine_knn_graph',
    'cooccurrence_knn_graph',
    'mixed_cosine_knn_graph',
    'default_modality_weights',
    'resolve_modality_weights',
    'rearm_padding',
]
