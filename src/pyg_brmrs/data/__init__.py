from .schema import (
    ITEM,
    ITEM_SIM,
    RATES,
    USER,
    USER_SIM,
    feature_key,
    features,
    modalities,
    num_items,
    num_users,
    train_edge_index,
)

__all__ = [
    'USER',
    'ITEM',
    'RATES',
    'ITEM_SIM',
    'USER_SIM',
    'feature_key',
    'features',
    'modalities',
    'num_users',
    'num_items',
    'train_edge_index',
]
