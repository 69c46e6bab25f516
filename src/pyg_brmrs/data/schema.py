r"""The :class:`~torch_geometric.data.HeteroData` schema shared by every part
of :mod:`pyg_brmrs`.

=============================================  =====================================================
what                                           where
=============================================  =====================================================
node counts                                    ``data['user'].num_nodes``, ``data['item'].num_nodes``
modality features                              ``data['item'][f'x_{m}']``, float32 ``[num_items, F_m]``
training interactions                          ``data['user', 'rates', 'item'].edge_index``
held-out interactions                          ``data['user', 'rates', 'item'].val_edge_index`` and
                                               ``.test_edge_index``
homogeneous graphs (after                      ``data['item', 'similar', 'item']`` and
:class:`~pyg_brmrs.transforms.HomogeneousKNNGraph`)  ``data['user', 'similar', 'user']`` with
                                               ``.edge_index`` and ``.edge_weight``
=============================================  =====================================================

Ids are 0-based and dense. Message passing and graph building only ever see
the training edges.
"""
from typing import List, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

USER = 'user'
ITEM = 'item'
RATES: Tuple[str, str, str] = (USER, 'rates', ITEM)
ITEM_SIM: Tuple[str, str, str] = (ITEM, 'similar', ITEM)
USER_SIM: Tuple[str, str, str] = (USER, 'similar', USER)
FEATURE_PREFIX = 'x_'


def feature_key(modality: str) -> str:
    r"""The attribute name under which modality :obj:`modality` is stored on
    ``data['item']`` (``'x_' + modality``)."""
    return FEATURE_PREFIX + modality


def modalities(data: HeteroData) -> List[str]:
    r"""Returns the sorted names of the item modalities in :obj:`data`, *i.e.*
    every ``m`` for which ``data['item'][f'x_{m}']`` exists.

    .. code-block:: python

        >>> modalities(data)
        ['image', 'text']
    """
    if ITEM not in data.node_types:
        return []
    store = data[ITEM]
    return sorted(
        key[len(FEATURE_PREFIX):] for key in store.keys()
        if key.startswith(FEATURE_PREFIX) and len(key) > len(FEATURE_PREFIX)
        and isinstance(store[key], Tensor))


def num_users(data: HeteroData) -> int:
    r"""The number of users in :obj:`data`."""
    return int(data[USER].num_nodes)


def num_items(data: HeteroData) -> int:
    r"""The number of items in :obj:`data`."""
    return int(data[ITEM].num_nodes)


def train_edge_index(data: HeteroData) -> Tensor:
    r"""The training interactions ``[2, E]`` (row 0 users, row 1 items)."""
    return data[RATES].edge_index


def features(data: HeteroData, modality: str) -> Tensor:
    r"""The item feature matrix ``[num_items, F_m]`` of :obj:`modality`.

    Raises:
        KeyError: if :obj:`data` has no such modality (the message lists the
            modalities it has).
    """
    key = feature_key(modality)
    if key not in data[ITEM]:
        raise KeyError(f"Modality '{modality}' not found: data['item'] has "
                       f"no attribute '{key}' (available modalities: "
                       f"{modalities(data)})")
    return data[ITEM][key]


def empty_edge_index(device=None) -> Tensor:
    r"""An empty ``[2, 0]`` long tensor."""
    return torch.empty((2, 0), dtype=torch.long, device=device)
