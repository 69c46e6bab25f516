r"""A seeded synthetic multimodal recommendation dataset with planted
modality-unique and synergistic preference signals."""
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np
import torch
from torch_geometric.data import HeteroData

from .interactions import build_data
from .registry import register_reader
from .split import mmrec_split

#: Norms of a user's weight vectors per user type:
#: ``(shared, unique of the user's own / every modality, unique of the other
#: modalities, collaborative)``.
TYPE_WEIGHTS: Dict[str, Tuple[float, float, float, float]] = {
    'generic': (1.0, 0.25, 0.25, 0.75),
    'unique': (0.25, 1.5, 0.0, 0.5),
    'synergy': (0.25, 1.25, 1.25, 0.5),
}


def _unit(rng: np.random.Generator, n: int, r: int) -> np.ndarray:
    g = rng.standard_normal((n, r))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def _type_counts(num_users: int, num_modalities: int, unique_fraction: float,
                 synergy_fraction: float) -> List[int]:
    n_unique = int(round(unique_fraction * num_users))
    n_syn = int(round(synergy_fraction * num_users))
    if n_unique + n_syn > num_users:
        n_syn = num_users - n_unique
    per = [n_unique // num_modalities + (k < n_unique % num_modalities)
           for k in range(num_modalities)]
    return [num_users - n_unique - n_syn] + per + [n_syn]


def make_synthetic(
    num_users: int = 1000,
    num_items: int = 800,
    *,
    modalities: Sequence[str] = ('image', 'text'),
    feature_dim: Union[int, Dict[str, int]] = 32,
    latent_dim: int = 8,
    unique_fraction: float = 0.3,
    synergy_fraction: float = 0.3,
    feature_noise: float = 0.5,
    popularity_std: float = 0.5,
    temperature: float = 0.5,
    min_interactions: int = 5,
    mean_extra_interactions: float = 10.0,
    seed: int = 0,
    return_latents: bool = False,
) -> Union[HeteroData, Tuple[HeteroData, Dict[str, Any]]]:
    r"""Generates a multimodal recommendation dataset with planted structure,
    in the :mod:`pyg_brmrs` schema and already split with
    :func:`~pyg_brmrs.data.mmrec_split`.

    **Items.** With latent size :math:`r` (:obj:`latent_dim`) and modalities
    :math:`m = 1..M`, every item :math:`i` has a *shared* factor
    :math:`\mathbf{c}_i \sim \mathcal{N}(0, \mathbf{I}_r)` seen by every
    modality, one *unique* factor
    :math:`\mathbf{z}_i^m \sim \mathcal{N}(0, \mathbf{I}_r)` per modality seen
    only by modality :math:`m`, a *collaborative* factor
    :math:`\boldsymbol{\phi}_i \sim \mathcal{N}(0, \mathbf{I}_r)` seen by no
    modality (learnable only from interactions) and a popularity bias
    :math:`b_i \sim \mathcal{N}(0, s_b^2)` (:obj:`popularity_std`).

    **Features.**

    .. math::
        \mathbf{x}_i^m = [\mathbf{c}_i \,\Vert\, \mathbf{z}_i^m] \mathbf{P}_m
        + \sigma \boldsymbol{\varepsilon}_i^m,
        \qquad (\mathbf{P}_m)_{kl} \sim \mathcal{N}(0, 1/(2r)),
        \quad \boldsymbol{\varepsilon}_i^m \sim \mathcal{N}(0, \mathbf{I}_F)

    with :math:`\mathbf{P}_m \in \mathbb{R}^{2r \times F_m}`
    (:obj:`feature_dim`) and :math:`\sigma` (:obj:`feature_noise`), so
    modality :math:`m` carries no information about :math:`\mathbf{z}^{m'}`
    for :math:`m' \neq m`.

    **Users.** Each user :math:`u` has weight vectors
    :math:`\mathbf{w}_u^c`, :math:`\mathbf{w}_u^m` (one per modality) and
    :math:`\boldsymbol{\theta}_u`, each a uniformly random direction times a
    norm fixed by the user's *type* (exact counts
    ``round(fraction * num_users)``, randomly assigned):

    * ``unique:m`` (:obj:`unique_fraction` / M users per modality):
      :math:`\|\mathbf{w}^c\| = 0.25`, :math:`\|\mathbf{w}^m\| = 1.5`,
      :math:`\|\mathbf{w}^{m'}\| = 0` for :math:`m' \neq m`,
      :math:`\|\boldsymbol{\theta}\| = 0.5`;
    * ``synergy`` (:obj:`synergy_fraction`):
      :math:`\|\mathbf{w}^c\| = 0.25`, :math:`\|\mathbf{w}^m\| = 1.25` for
      every modality, :math:`\|\boldsymbol{\theta}\| = 0.5`;
    * ``generic`` (the rest): :math:`\|\mathbf{w}^c\| = 1`,
      :math:`\|\mathbf{w}^m\| = 0.25` for every modality,
      :math:`\|\boldsymbol{\theta}\| = 0.75`.

    A ``unique:m`` user is driven by modality :math:`m`'s unique factor, so
    only the unimodal branch of :math:`m` can rank their items; a
    ``synergy`` user weighs the unique factors of all modalities equally, so
    their positives are ranked high by the *sum* of the modality scores but
    by no single modality alone.

    **Interactions.** The affinity is

    .. math::
        a(u, i) = \langle \mathbf{w}_u^c, \mathbf{c}_i \rangle
        + \sum_m \langle \mathbf{w}_u^m, \mathbf{z}_i^m \rangle
        + \langle \boldsymbol{\theta}_u, \boldsymbol{\phi}_i \rangle + b_i.

    User :math:`u` gets :math:`n_u = n_{\min} + \mathrm{Poisson}(\lambda)`
    interactions (:obj:`min_interactions`, :obj:`mean_extra_interactions`;
    at most :obj:`num_items`) drawn without replacement with probability
    :math:`\propto \exp(a(u, i) / \tau)` (:obj:`temperature`; sequential
    Plackett-Luce sampling), computed exactly with the Gumbel-top-k trick:
    the :math:`n_u` largest :math:`a(u, i) / \tau + g_{ui}`,
    :math:`g_{ui} \sim \mathrm{Gumbel}(0, 1)`. The interactions are then
    split with :func:`~pyg_brmrs.data.mmrec_split` (same :obj:`seed`); as
    :math:`n_u \geq 3`, no user is cold-start.

    Everything is drawn from :obj:`numpy.random.default_rng(seed)`: the same
    arguments give identical tensors.

    Args:
        num_users (int, optional): Number of users. (default: :obj:`1000`)
        num_items (int, optional): Number of items. (default: :obj:`800`)
        modalities (list of str, optional): The modality names (at least
            one). (default: ``('image', 'text')``)
        feature_dim (int or dict, optional): Feature size :math:`F_m`, for
            all or per modality. (default: :obj:`32`)
        latent_dim (int, optional): Latent size :math:`r`. (default:
            :obj:`8`)
        unique_fraction (float, optional): Fraction of ``unique:m`` users,
            split evenly over the modalities. (default: :obj:`0.3`)
        synergy_fraction (float, optional): Fraction of ``synergy`` users.
            (default: :obj:`0.3`)
        feature_noise (float, optional): :math:`\sigma`. (default:
            :obj:`0.5`)
        popularity_std (float, optional): :math:`s_b`. (default: :obj:`0.5`)
        temperature (float, optional): :math:`\tau`. (default: :obj:`0.5`)
        min_interactions (int, optional): :math:`n_{\min}` (at least 3).
            (default: :obj:`5`)
        mean_extra_interactions (float, optional): :math:`\lambda`.
            (default: :obj:`10.0`)
        seed (int, optional): The random seed. (default: :obj:`0`)
        return_latents (bool, optional): Also return the ground truth.
            (default: :obj:`False`)

    Returns:
        :class:`~torch_geometric.data.HeteroData`, and with
        :obj:`return_latents=True` also a dictionary with the float32
        tensors ``'item_shared'`` ``[I, r]``, ``'item_unique'`` (dict
        ``m -> [I, r]``), ``'item_collab'`` ``[I, r]``, ``'item_bias'``
        ``[I]``, ``'user_shared'`` ``[U, r]``, ``'user_unique'`` (dict
        ``m -> [U, r]``), ``'user_collab'`` ``[U, r]``, ``'projection'``
        (dict ``m -> [2r, F_m]``), ``'affinity'`` ``[U, I]`` (the full
        matrix :math:`a`, ``4 U I`` bytes), ``'user_type'`` ``[U]`` (long
        index into ``'type_names'``), ``'type_names'`` (``['generic',
        'unique:<m1>', ..., 'synergy']``) and ``'temperature'``.
    """
    modalities = list(modalities)
    if len(modalities) < 1 or len(set(modalities)) != len(modalities):
        raise ValueError(f'make_synthetic: modalities must be distinct names '
                         f'(at least one), got {modalities}')
    if num_users < 1 or num_items < 1:
        raise ValueError(f'make_synthetic: num_users and num_items must be '
                         f'positive, got {num_users} and {num_items}')
    if latent_dim < 1:
        raise ValueError(f'make_synthetic: latent_dim must be positive, got '
                         f'{latent_dim}')
    for name, f in (('unique_fraction', unique_fraction),
                    ('synergy_fraction', synergy_fraction)):
        if not 0.0 <= f <= 1.0:
            raise ValueError(f'make_synthetic: {name} must be in [0, 1], got '
                             f'{f}')
    if unique_fraction + synergy_fraction > 1.0 + 1e-12:
        raise ValueError(f'make_synthetic: unique_fraction + synergy_fraction '
                         f'must be at most 1, got '
                         f'{unique_fraction + synergy_fraction}')
    if temperature <= 0:
        raise ValueError(f'make_synthetic: temperature must be positive, got '
                         f'{temperature}')
    if min_interactions < 3:
        raise ValueError(f'make_synthetic: min_interactions must be at least '
                         f'3 (1 train + 1 valid + 1 test), got '
                         f'{min_interactions}')
    if min_interactions > num_items:
        raise ValueError(f'make_synthetic: min_interactions '
                         f'({min_interactions}) exceeds num_items '
                         f'({num_items})')
    dims = (dict(feature_dim) if isinstance(feature_dim, dict) else
            {m: int(feature_dim) for m in modalities})
    if set(dims) != set(modalities) or min(dims.values()) < 1:
        raise ValueError(f'make_synthetic: feature_dim must be a positive '
                         f'int or a dict with a positive size for each of '
                         f'{modalities}, got {feature_dim}')

    rng = np.random.default_rng(seed)
    U, I, r, M = num_users, num_items, latent_dim, len(modalities)

    # Items:
    item_shared = rng.standard_normal((I, r))
    item_unique = {m: rng.standard_normal((I, r)) for m in modalities}
    item_collab = rng.standard_normal((I, r))
    item_bias = popularity_std * rng.standard_normal(I)

    # Features:
    proj, feats = {}, {}
    for m in modalities:
        proj[m] = rng.standard_normal((2 * r, dims[m])) / np.sqrt(2 * r)
        latent = np.concatenate([item_shared, item_unique[m]], axis=1)
        feats[m] = (latent @ proj[m] + feature_noise *
                    rng.standard_normal((I, dims[m]))).astype(np.float32)

    # Users:
    type_names = ['generic'] + [f'unique:{m}' for m in modalities]
    type_names.append('synergy')
    counts = _type_counts(U, M, unique_fraction, synergy_fraction)
    user_type = rng.permutation(np.repeat(np.arange(M + 2), counts))
    norms = np.zeros((M + 2, M + 2))  # [type, shared | unique_1..M | collab]
    norms[0] = [TYPE_WEIGHTS['generic'][0]] + \
        [TYPE_WEIGHTS['generic'][1]] * M + [TYPE_WEIGHTS['generic'][3]]
    for k in range(M):
        s, own, other, col = TYPE_WEIGHTS['unique']
        norms[1 + k] = [s] + [own if j == k else other
                              for j in range(M)] + [col]
    s, own, _, col = TYPE_WEIGHTS['synergy']
    norms[M + 1] = [s] + [own] * M + [col]
    scale = norms[user_type]  # [U, M + 2]
    user_shared = scale[:, :1] * _unit(rng, U, r)
    user_unique = {m: scale[:, 1 + k:2 + k] * _unit(rng, U, r)
                   for k, m in enumerate(modalities)}
    user_collab = scale[:, -1:] * _unit(rng, U, r)

    # Interactions via Gumbel-top-k on a(u, i) / tau, in chunks of users:
    n_u = np.minimum(min_interactions + rng.poisson(mean_extra_interactions,
                                                    U), I)
    affinity = np.empty((U, I), dtype=np.float32) if return_latents else None
    chunk = max(1, (1 << 22) // I)
    rows, cols = [], []
    for start in range(0, U, chunk):
        end = min(U, start + chunk)
        a = user_shared[start:end] @ item_shared.T + \
            user_collab[start:end] @ item_collab.T + item_bias
        for m in modalities:
            a += user_unique[m][start:end] @ item_unique[m].T
        if affinity is not None:
            affinity[start:end] = a
        keys = a / temperature + rng.gumbel(size=a.shape)
        k_max = int(n_u[start:end].max())
        top = np.argpartition(-keys, k_max - 1, axis=1)[:, :k_max]
        top_keys = np.take_along_axis(keys, top, axis=1)
        top = np.take_along_axis(top, np.argsort(-top_keys, axis=1), axis=1)
        take = np.arange(k_max)[None, :] < n_u[start:end, None]
        rows.append(np.broadcast_to(np.arange(start, end)[:, None],
                                    take.shape)[take])
        cols.append(top[take])
    users = np.concatenate(rows)
    items = np.concatenate(cols)
    split = mmrec_split(users, seed=seed)
    data = build_data(users, items, split, feats, num_users=U, num_items=I,
                      source='make_synthetic')
    if not return_latents:
        return data

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    latents = {
        'item_shared': t(item_shared),
        'item_unique': {m: t(v) for m, v in item_unique.items()},
        'item_collab': t(item_collab),
        'item_bias': t(item_bias),
        'user_shared': t(user_shared),
        'user_unique': {m: t(v) for m, v in user_unique.items()},
        'user_collab': t(user_collab),
        'projection': {m: t(v) for m, v in proj.items()},
        'affinity': torch.from_numpy(affinity),
        'user_type': torch.from_numpy(user_type.astype(np.int64)),
        'type_names': type_names,
        'temperature': float(temperature),
    }
    return data, latents


register_reader('synthetic', make_synthetic, folder=False,
                description='make_synthetic(): planted modality-unique and '
                'synergistic users, no files')
