from .sparse import CSRAdjacency, bipartite_to_homogeneous, to_csr

__all__ = [
    'CSRAdjacency',
    'bipartite_to_homogeneous',
    'to_csr',
]
