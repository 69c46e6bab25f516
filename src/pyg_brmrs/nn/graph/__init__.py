r"""The graph operators a recommender's forward pass is written over
(:class:`RecGraph`), and the sparse operators it hands out."""
from .adjacency import Adjacency
from .bipartite import BipartiteAdjacency
from .channels import Affine, propagate, stacked_affine
from .pruning import EdgePruning, degree_sensitive_edge_pruning
from .rec_graph import (
    FullGraphStats,
    OwnGraph,
    RecGraph,
    horvitz_thompson,
    subgraph_ids,
)

__all__ = [
    'RecGraph',
    'Adjacency',
    'BipartiteAdjacency',
    'Affine',
    'propagate',
    'stacked_affine',
    'EdgePruning',
    'degree_sensitive_edge_pruning',
    'FullGraphStats',
    'OwnGraph',
    'horvitz_thompson',
    'subgraph_ids',
]
