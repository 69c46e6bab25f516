from .dropout import degree_sensitive_edge_pruning
from .sparse import (
    BipartiteAdjacency,
    CSRAdjacency,
    bipartite_to_homogeneous,
    to_csr,
)

__all__ = [
    'BipartiteAdjacency',
    'CSRAdjacency',
    'bipartite_to_homogeneous',
    'to_csr',
    'degree_sensitive_edge_pruning',
]
