r"""Shared pieces of the models: the mini-batch embedding regularisers,
argument checks and feature access.

MMRec's ``EmbLoss`` (used by its BPR, LightGCN and VBPR) is *not* the
squared :math:`L_2` norm of :func:`~pyg_brmrs.nn.base.ego_regularization`:
it sums the (unsquared) Frobenius norms of the batch matrices and divides by
the batch size. The baselines default to MMRec's form so that MMRec's
``reg_weight`` values mean the same here.
"""
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from pyg_brmrs.nn.base import RecOutput, ego_regularization
from pyg_brmrs.utils.rows import take_rows

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


def global_batch(out: Optional[RecOutput], users: Tensor, pos_items: Tensor,
                 neg_items: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    r"""The global ids of a BPR batch given as rows of the forward output
    :obj:`out` (:meth:`~pyg_brmrs.nn.RecOutput.global_ids`: mapped through a
    mini-batch subgraph's ``n_id``); unchanged without :obj:`out`."""
    if out is None:
        return users, pos_items, neg_items
    return out.global_ids(users, pos_items, neg_items)


def id_pair_regularization(table: Tensor, num_users: int, users: Tensor,
                           pos_items: Tensor, neg_items: Tensor
                           ) -> Tuple[Tensor, Tensor]:
    r"""MMRec's MMGCN / GRCN regulariser of a joint ``[U + I, d]`` ID table:
    with every user repeated once per item of its pair (``user_t``, ``[2B]``)
    and the items interleaved (positive, negative), the mean of
    :math:`\mathbf{e}_{u}^2 + \mathbf{e}_{i}^2` over the ``[2B, d]``
    entries. Returns ``(value, user_t)``."""
    user_t = users.repeat_interleave(2)
    item_t = num_users + torch.stack([pos_items, neg_items], 1).reshape(-1)
    value = (take_rows(table, user_t).pow(2) +
             take_rows(table, item_t).pow(2)).mean()
    return value, user_t


def check_reg_norm(reg_norm: str) -> str:
    if reg_norm not in REG_NORMS:
        raise ValueError(f"Unknown 'reg_norm' '{reg_norm}' (choose from "
                         f"{list(REG_NORMS)})")
    return reg_norm


def check_feature_dims(feature_dims) -> dict:
    if not hasattr(feature_dims, 'items') or len(feature_dims) < 1:
        raise ValueError("'feature_dims' must map at least one modality name "
                         "to its feature size")
    for name, dim in feature_dims.items():
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"Feature size of modality '{name}' must be a "
                             f"positive int (got {dim!r})")
    return {m: int(feature_dims[m]) for m in sorted(feature_dims)}


def mmrec_modality_order(names) -> List[str]:
    r"""The modalities in MMRec's order: ``"image"`` first (its
    ``v_feat``), then the others by name (``"text"``, its ``t_feat``, or
    any other in that slot), for the models whose math is not symmetric in
    the modalities."""
    names = sorted(names)
    return (['image'] if 'image' in names else []) + \
        [m for m in names if m != 'image']


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


def feature_rows(graph, model) -> Dict[str, Tensor]:
    r"""The item features of the rows of :obj:`graph` for :obj:`model`:
    its fine-tuned copies (``model.item_features``, when
    ``model.finetune_features``) or the data's frozen ones."""
    if model.finetune_features:
        return {m: graph.item_rows(model.item_features[m])
                for m in model.modalities}
    return graph.features(model.feature_dims)


def final_rows_regularization(model, out: Optional[RecOutput],
                              users: Tensor, pos_items: Tensor,
                              neg_items: Tensor) -> Tensor:
    r""":math:`\frac{1}{2B}(\lVert \mathbf{z}_u \rVert^2 + \lVert
    \mathbf{z}_{i^+} \rVert^2 + \lVert \mathbf{z}_{i^-} \rVert^2)` of the
    batch's final representations in :obj:`out` (the ``bpr_loss``
    regulariser of MMRec's MGCN and LATTICE, and of MICRO)."""
    if out is None:
        raise ValueError(f"'{type(model).__name__}.regularization' needs the "
                         f"forward output 'out'")
    return ego_regularization(take_rows(out.user_emb, users),
                              take_rows(out.item_emb, pos_items),
                              take_rows(out.item_emb, neg_items))
