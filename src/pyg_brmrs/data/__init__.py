r"""Data layer of :mod:`pyg_brmrs`: the shared
:class:`~torch_geometric.data.HeteroData` schema, readers for the MMRec and
DiffMM folder layouts and for in-memory arrays, MMRec's split rule, a
synthetic multimodal dataset, a PyG dataset class and the registry of data
formats (:func:`register_reader`) through which the experiment layer and
the command line load datasets."""
from .schema import (
    ITEM,
    ITEM_SIM,
    RATES,
    USER,
    USER_SIM,
    Schema,
    canonical,
    feature_key,
    features,
    mark_canonical,
    modalities,
    num_items,
    num_users,
    resolve_schema,
    train_edge_index,
)
from .validation import SPLIT_LABELS, check_data
from .interactions import from_interactions, split_sizes
from .registry import (
    Reader,
    detect_reader,
    get_reader,
    list_readers,
    register_reader,
    registered_reader,
    unregister_reader,
)
from .split import mmrec_split, mmrec_split_sizes
from .mmrec import read_mmrec, write_mmrec
from .diffmm import read_diffmm
from .synthetic import make_synthetic
from .dataset import MMRecDataset
from .link_split import from_link_split

__all__ = [
    'from_link_split',
    'USER',
    'ITEM',
    'RATES',
    'ITEM_SIM',
    'USER_SIM',
    'Schema',
    'resolve_schema',
    'canonical',
    'mark_canonical',
    'feature_key',
    'features',
    'modalities',
    'num_users',
    'num_items',
    'train_edge_index',
    'SPLIT_LABELS',
    'check_data',
    'from_interactions',
    'split_sizes',
    'mmrec_split',
    'mmrec_split_sizes',
    'read_mmrec',
    'write_mmrec',
    'read_diffmm',
    'make_synthetic',
    'MMRecDataset',
    'Reader',
    'register_reader',
    'unregister_reader',
    'registered_reader',
    'get_reader',
    'list_readers',
    'detect_reader',
]
