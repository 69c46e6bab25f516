r"""An adapter from :class:`torch_geometric.transforms.RandomLinkSplit` to the
package's held-out edges.

``RandomLinkSplit`` returns three datasets: the training one holds the
training interactions in ``edge_index`` (the message-passing edges) and the
validation / test ones hold their pairs to score in ``edge_label_index``
with ``edge_label`` (1 for a held-out interaction, 0 for a sampled
negative). :func:`from_link_split` folds them into one dataset of the
package's schema: the training edges in ``edge_index``, the positive
validation and test pairs in ``val_edge_index`` / ``test_edge_index``
(negatives are dropped: the evaluation ranks every item). The order of
transforms that keeps the held-out pairs out of every graph::

    data = T.ToUndirected()(data)                 # optional, before the split
    train, val, test = T.RandomLinkSplit(
        edge_types=('user', 'rates', 'movie'),
        rev_edge_types=('movie', 'rev_rates', 'user'),
        num_val=0.1, num_test=0.1, neg_sampling_ratio=0.0)(data)
    data = from_link_split(train, val, test, schema=schema)
    data = HomogeneousKNNGraph(schema=schema)(data)   # training edges only

A kNN graph built *before* the split has seen the pairs the split holds
out; :func:`from_link_split` refuses datasets that already carry one.
"""
from typing import Optional

from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_brmrs.data.schema import (
    ITEM_SIM,
    USER_SIM,
    Schema,
    resolve_schema,
)


def _positives(split: HeteroData, edge_type, name: str) -> Tensor:
    store = split[edge_type]
    if 'edge_label_index' not in store:
        raise ValueError(
            f"from_link_split: the {name} dataset has no "
            f"{edge_type}.edge_label_index (pass the three outputs of "
            f"T.RandomLinkSplit, in the order train, val, test)")
    index = store.edge_label_index
    label = store.get('edge_label')
    if label is None:
        return index
    if label.numel() != index.size(1):
        raise ValueError(f"from_link_split: the {name} dataset's "
                         f"edge_label has {label.numel()} entries for "
                         f"{index.size(1)} pairs")
    return index[:, label > 0]


def from_link_split(train: HeteroData, val: HeteroData, test: HeteroData,
                    schema: Optional[Schema] = None) -> HeteroData:
    r"""One dataset of the package's schema from the three outputs of
    :class:`~torch_geometric.transforms.RandomLinkSplit` (see the module
    description): a shallow copy of :obj:`train` (its tensors shared) whose
    interaction store (:obj:`schema`'s ``edge_type``) holds the training
    ``edge_index`` and the positive ``val_edge_index`` / ``test_edge_index``
    pairs, without the split's label attributes.

    Raises:
        ValueError: if a dataset lacks the interaction edge type or its
            ``edge_label_index``, if a held-out pair is also a training
            edge, or if :obj:`train` already holds a kNN graph (built
            before the split, it saw the held-out pairs; build it on the
            result instead).
    """
    schema = resolve_schema(schema)
    edge_type = schema.edge_type
    for name, split in (('train', train), ('val', val), ('test', test)):
        if not isinstance(split, HeteroData):
            raise TypeError(f"from_link_split: the {name} dataset must be a "
                            f"HeteroData (got {type(split).__name__})")
        if edge_type not in split.edge_types:
            raise ValueError(
                f"from_link_split: the {name} dataset has no edge type "
                f"{edge_type} (edge types: {split.edge_types}); pass "
                f"schema=Schema(...) naming it")
    sims = [(schema.user_type, 'similar', schema.user_type),
            (schema.item_type, 'similar', schema.item_type),
            ITEM_SIM, USER_SIM]
    built = [t for t in sims if t in train.edge_types]
    if built:
        raise ValueError(
            f"from_link_split: the training dataset already holds {built}: "
            f"a kNN graph built before the split saw the held-out pairs; "
            f"apply HomogeneousKNNGraph to the result of from_link_split")
    out = train.__copy__()
    store = out[edge_type]
    for key in ('edge_label_index', 'edge_label'):
        if key in store:
            del store[key]
    train_ei = train[edge_type].edge_index
    store.val_edge_index = _positives(val, edge_type, 'val')
    store.test_edge_index = _positives(test, edge_type, 'test')
    num_items = int(train[schema.item_type].num_nodes)
    seen = set((train_ei[0] * num_items + train_ei[1]).tolist())
    for name in ('val_edge_index', 'test_edge_index'):
        ei = store[name]
        leak = [k for k in (ei[0] * num_items + ei[1]).tolist() if k in seen]
        if leak:
            raise ValueError(
                f"from_link_split: {len(leak)} {name[:-11]} pairs are also "
                f"training edges (the datasets are not one RandomLinkSplit "
                f"of the same data)")
    return out


__all__ = ['from_link_split']
