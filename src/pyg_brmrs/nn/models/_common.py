r"""Shared pieces of the models: the mini-batch embedding regularisers,
argument checks and feature access.

MMRec's ``EmbLoss`` (used by its BPR, LightGCN and VBPR) is *not* the
squared :math:`L_2` norm of :func:`~pyg_brmrs.nn.base.ego_regularization`:
it sums the (unsquared) Frobenius norms of the batch matrices and divides by
the batch size. The baselines default to MMRec's form so that MMRec's
``reg_weight`` values mean the same here.
"""
from typing import Dict, Mapping, Optional

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_brmrs.data.schema import ITEM, USER, features, modalities
from pyg_brmrs.nn.base import Recommender, ego_regularization

REG_NORMS = ('frobenius', 'squared')


def frobenius_regularization(*embeddings: Tensor) -> Tensor:
    r"""MMRec's ``EmbLoss``: :math:`\frac{1}{B} \sum_t \lVert \mathbf{E}_t
    \rVert_F` for mini-batch matrices :math:`\mathbf{E}_t` of ``B`` rows
    (the norm of the whole ``[B, F]`` matrix, not squared)."""
    batch_size = embeddings[-1].size(0)
    total = sum(e.norm(p=2) for e in embeddings)
    return total / max(batch_size, 1)


def batch_regularization(reg_norm: str, *embeddings: Tensor) -> Tensor:
    r"""Dispatches to :func:`frobenius_regularization` (:obj:`"frobenius"`,
    MMRec) or :func:`~pyg_brmrs.nn.base.ego_regularization`
    (:obj:`"squared"`, :math:`\frac{1}{2B}\sum_t \lVert \mathbf{E}_t
    \rVert_F^2`)."""
    if reg_norm == 'frobenius':
        return frobenius_regularization(*embeddings)
    return ego_regularization(*embeddings)


def check_reg_norm(reg_norm: str) -> str:
    if reg_norm not in REG_NORMS:
        raise ValueError(f"Unknown 'reg_norm' '{reg_norm}' (choose from "
                         f"{list(REG_NORMS)})")
    return reg_norm


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"'{name}' must be an int (got "
                        f"{type(value).__name__})")
    if value < minimum:
        raise ValueError(f"'{name}' must be >= {minimum} (got {value})")
    return value


def check_feature_dims(feature_dims) -> dict:
    if not hasattr(feature_dims, 'items') or len(feature_dims) < 1:
        raise ValueError("'feature_dims' must map at least one modality name "
                         "to its feature size")
    for name, dim in feature_dims.items():
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"Feature size of modality '{name}' must be a "
                             f"positive int (got {dim!r})")
    return {m: int(feature_dims[m]) for m in sorted(feature_dims)}


def check_counts(model: Recommender, data: HeteroData) -> None:
    num_users, num_items = int(data[USER].num_nodes), int(data[ITEM].num_nodes)
    if num_users != model.num_users or num_items != model.num_items:
        raise ValueError(f"'{model.__class__.__name__}' was built for "
                         f"{model.num_users} users and {model.num_items} "
                         f"items but the data has {num_users} users and "
                         f"{num_items} items")


def check_bipartite(edge_index: Tensor, num_users: int,
                    num_items: int) -> None:
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"The training 'edge_index' must have shape [2, E] "
                         f"(got {tuple(edge_index.shape)})")
    if edge_index.dtype != torch.long:
        raise ValueError(f"The training 'edge_index' must be a long tensor "
                         f"(got {edge_index.dtype})")
    if edge_index.numel() > 0:
        for row, name, n in ((0, 'user', num_users), (1, 'item', num_items)):
            lo, hi = int(edge_index[row].min()), int(edge_index[row].max())
            if lo < 0 or hi >= n:
                raise ValueError(f"The training 'edge_index' has {name} ids "
                                 f"in [{lo}, {hi}] but there are {n} "
                                 f"{name}s")


def item_features(data: HeteroData, feature_dims: Mapping[str, int],
                  num_items: int) -> Dict[str, Tensor]:
    r"""The raw features ``{m: [num_items, F_m]}`` of the modalities in
    :obj:`feature_dims`, checked against the sizes a model was built for."""
    have = modalities(data)
    missing = [m for m in feature_dims if m not in have]
    if missing:
        raise ValueError(f"The data lacks the modalities {missing} this "
                         f"model was built for (it has {have})")
    out = {}
    for m, dim in feature_dims.items():
        x = features(data, m)
        if x.dim() != 2 or tuple(x.shape) != (num_items, dim):
            raise ValueError(f"Features of modality '{m}' must have shape "
                             f"[{num_items}, {dim}] (got {tuple(x.shape)})")
        out[m] = x
    return out


def trainable_features(item_features: Optional[Mapping[str, Tensor]],
                       feature_dims: Mapping[str, int], num_items: int,
                       model: str) -> torch.nn.ParameterDict:
    r"""Fine-tunable copies of the item features (``finetune_features=True``),
    float32 :class:`~torch.nn.Parameter` per modality."""
    if item_features is None or set(item_features) != set(feature_dims):
        raise ValueError(f"'finetune_features=True' needs 'item_features' for "
                         f"the modalities {sorted(feature_dims)} (use "
                         f"{model}.from_data, or finetune_features=False)")
    out = torch.nn.ParameterDict()
    for m, dim in feature_dims.items():
        x = item_features[m]
        if tuple(x.shape) != (num_items, dim):
            raise ValueError(f"'item_features[{m!r}]' must have shape "
                             f"[{num_items}, {dim}] (got {tuple(x.shape)})")
        out[m] = torch.nn.Parameter(x.detach().clone().float())
    return out
