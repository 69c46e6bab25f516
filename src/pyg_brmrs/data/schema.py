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

These are the *canonical* names. Data under other names (*e.g.* PyG's
MovieLens: ``'user'``, ``'movie'``, ``('user', 'rates', 'movie')``,
features in ``x``) is described by a :class:`Schema`, which every entry
point of the package accepts as :obj:`schema=...`: it maps the data to a
view under the canonical names that shares every tensor (nothing is
copied).
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

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


#: Marks a :class:`HeteroData` made by :meth:`Schema.canonical` (or already
#: in the canonical names), so that mapping it again returns it unchanged.
_CANONICAL_MARK = '_pyg_brmrs_canonical'


def _check_name(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"Schema.{name} must be a non-empty string (got "
                         f"{value!r})")
    return value


@dataclass(frozen=True)
class Schema:
    r"""The names under which a :class:`~torch_geometric.data.HeteroData`
    holds users, items, interactions and item features. The defaults are
    the package's canonical names (the table above).

    .. code-block:: python

        # PyG's MovieLens layout, two feature tensors
        schema = Schema(item_type='movie',
                        features={'genre': 'x', 'text': 'x_text_emb'})
        data = HomogeneousKNNGraph(schema=schema)(data)  # adds ('movie', 'similar', 'movie'), ...
        model = BRMRS.from_data(data, schema=schema)     # remembers the schema
        out = model(data)                                # or a loader batch of `data`

    :meth:`canonical` maps a dataset to a view under the canonical names:
    a new :class:`HeteroData` whose stores hold the *same* tensor objects
    (no copy), with ``data[item_type][features[m]]`` renamed to
    ``x_<m>``. :meth:`rename` does the opposite (used by the readers'
    :obj:`schema` argument).

    Args:
        user_type (str): The user node type. (default: :obj:`"user"`)
        item_type (str): The item node type. (default: :obj:`"item"`)
        edge_type (Tuple[str, str, str], optional): The user→item
            interaction edge type (training edges in ``edge_index``,
            held-out ones in ``val_edge_index`` / ``test_edge_index``).
            (default: ``(user_type, "rates", item_type)``)
        features (Mapping[str, str], optional): Modality name → attribute
            of ``data[item_type]`` holding its ``[num_items, F_m]``
            features. :obj:`None`: every attribute ``x_<m>`` is modality
            ``m``. (default: :obj:`None`)
    """
    user_type: str = USER
    item_type: str = ITEM
    edge_type: Optional[Tuple[str, str, str]] = None
    features: Optional[Mapping[str, str]] = None

    def __post_init__(self):
        _check_name(self.user_type, 'user_type')
        _check_name(self.item_type, 'item_type')
        if self.user_type == self.item_type:
            raise ValueError(f"Schema.user_type and Schema.item_type must "
                             f"differ (both are '{self.user_type}')")
        edge_type = self.edge_type
        if edge_type is None:
            edge_type = (self.user_type, 'rates', self.item_type)
        if not isinstance(edge_type, (tuple, list)) or len(edge_type) != 3 \
                or not all(isinstance(t, str) and t for t in edge_type):
            raise ValueError(f"Schema.edge_type must be a (source, relation, "
                             f"target) tuple of strings (got {edge_type!r})")
        if (edge_type[0], edge_type[2]) != (self.user_type, self.item_type):
            raise ValueError(f"Schema.edge_type {tuple(edge_type)} must go "
                             f"from user_type '{self.user_type}' to "
                             f"item_type '{self.item_type}'")
        object.__setattr__(self, 'edge_type', tuple(edge_type))
        if self.features is not None:
            if not hasattr(self.features, 'items') or not self.features:
                raise ValueError(f"Schema.features must map at least one "
                                 f"modality name to an attribute name (got "
                                 f"{self.features!r})")
            feats = {}
            for m, attr in self.features.items():
                _check_name(m, f'features key {m!r}')
                _check_name(attr, f'features[{m!r}]')
                feats[m] = attr
            attrs = list(feats.values())
            dup = sorted({a for a in attrs if attrs.count(a) > 1})
            if dup:
                raise ValueError(f"Schema.features maps several modalities "
                                 f"to the attributes {dup}")
            object.__setattr__(self, 'features', dict(sorted(feats.items())))

    def __hash__(self) -> int:
        return hash((self.user_type, self.item_type, self.edge_type,
                     None if self.features is None else
                     tuple(self.features.items())))

    # ------------------------------------------------------------------
    @property
    def item_sim(self) -> Tuple[str, str, str]:
        r"""The item–item graph's edge type ``(item_type, "similar",
        item_type)``."""
        return (self.item_type, 'similar', self.item_type)

    @property
    def user_sim(self) -> Tuple[str, str, str]:
        r"""The user–user graph's edge type ``(user_type, "similar",
        user_type)``."""
        return (self.user_type, 'similar', self.user_type)

    @property
    def is_default(self) -> bool:
        r"""Whether these are the canonical names."""
        return (self.user_type, self.item_type, self.edge_type,
                self.features) == (USER, ITEM, RATES, None)

    def feature_attr(self, modality: str) -> str:
        r"""The attribute of ``data[item_type]`` holding :obj:`modality`."""
        if self.features is None:
            return feature_key(modality)
        if modality not in self.features:
            raise KeyError(f"Modality '{modality}' is not in Schema.features "
                           f"(modalities: {sorted(self.features)})")
        return self.features[modality]

    def _node_map(self) -> Dict[str, str]:
        return {self.user_type: USER, self.item_type: ITEM}

    def _edge_map(self) -> Dict[Tuple[str, str, str], Tuple[str, str, str]]:
        return {self.edge_type: RATES, self.item_sim: ITEM_SIM,
                self.user_sim: USER_SIM}

    def check(self, data: HeteroData) -> None:
        r"""Raises a :class:`ValueError` naming the first node type, edge
        type or feature attribute of the schema that :obj:`data` lacks."""
        if not isinstance(data, HeteroData):
            raise TypeError(f"Expected a HeteroData (got "
                            f"{type(data).__name__})")
        for name in ('user_type', 'item_type'):
            t = getattr(self, name)
            if t not in data.node_types:
                raise ValueError(f"Schema.{name}='{t}' is not a node type of "
                                 f"the data (node types: {data.node_types})")
        if self.edge_type not in data.edge_types:
            raise ValueError(f"Schema.edge_type={self.edge_type} is not an "
                             f"edge type of the data (edge types: "
                             f"{data.edge_types})")
        store = data[self.item_type]
        for m, attr in (self.features or {}).items():
            if attr not in store or not isinstance(store[attr], Tensor):
                raise ValueError(
                    f"Schema.features['{m}']='{attr}': data['"
                    f"{self.item_type}'] has no tensor attribute '{attr}' "
                    f"(attributes: {sorted(store.keys())})")

    def canonical(self, data: HeteroData) -> HeteroData:
        r"""A view of :obj:`data` under the canonical names (see the class
        description); :obj:`data` itself with the default schema or when
        it already is such a view. Node and edge types outside the schema
        are left out; the stores' tensors are shared, not copied."""
        if getattr(data, _CANONICAL_MARK, False):
            return data
        if self.is_default:
            check_canonical_names(data)
            return data
        self.check(data)
        out = _rename(data, self._node_map(), self._edge_map(),
                      None if self.features is None else
                      {attr: feature_key(m)
                       for m, attr in self.features.items()},
                      self.item_type)
        return mark_canonical(out)

    def rename(self, data: HeteroData) -> HeteroData:
        r"""The opposite of :meth:`canonical`: a view of canonical-named
        :obj:`data` under this schema's names (tensors shared). Modalities
        missing from :attr:`features` keep their ``x_<m>`` name."""
        if self.is_default:
            return data
        mapping = None
        if self.features is not None:
            mapping = {feature_key(m): attr
                       for m, attr in self.features.items()}
            missing = [m for m in self.features if feature_key(m) not in
                       (data[ITEM] if ITEM in data.node_types else {})]
            if missing:
                raise ValueError(f"Schema.features names the modalities "
                                 f"{missing} that the data does not have "
                                 f"(it has {modalities(data)})")
        return _rename(data, {v: k for k, v in self._node_map().items()},
                       {v: k for k, v in self._edge_map().items()}, mapping,
                       ITEM)

    def write_back(self, view: HeteroData, data: HeteroData,
                   edge_types=(ITEM_SIM, USER_SIM)) -> HeteroData:
        r"""Copies (by reference) the canonical :obj:`edge_types` of
        :obj:`view` into :obj:`data` under this schema's names, *e.g.* the
        kNN graphs a transform added to a :meth:`canonical` view."""
        inverse = {v: k for k, v in self._edge_map().items()}
        for edge_type in edge_types:
            if view is data or edge_type not in view.edge_types:
                continue
            target = data[inverse[edge_type]]
            for key, value in view[edge_type].items():
                target[key] = value
        return data


def _rename(data: HeteroData, node_map, edge_map,
            feature_map: Optional[Dict[str, str]],
            feature_store: str) -> HeteroData:
    r"""A new :class:`HeteroData` with the node / edge types of
    :obj:`node_map` / :obj:`edge_map` (source name → new name) and, on the
    store :obj:`feature_store` (a source name), the attributes of
    :obj:`feature_map` renamed (its other ``x_*`` attributes dropped when a
    map is given). Values are shared, not copied."""
    out = HeteroData()
    for key, value in data._global_store.items():
        out[key] = value
    for src, dst in node_map.items():
        if src not in data.node_types:
            continue
        store, target = data[src], out[dst]
        renaming = feature_map is not None and src == feature_store
        for key, value in store.items():
            if renaming and (key in feature_map or
                             key.startswith(FEATURE_PREFIX)):
                continue
            target[key] = value
        if renaming:
            for key, new in feature_map.items():
                if key in store:
                    target[new] = store[key]
        if 'num_nodes' not in target and store.num_nodes is not None:
            target.num_nodes = store.num_nodes
    for src, dst in edge_map.items():
        if src not in data.edge_types:
            continue
        target = out[dst]
        for key, value in data[src].items():
            target[key] = value
    return out


#: The canonical names as a :class:`Schema`.
DEFAULT_SCHEMA = Schema()


def resolve_schema(schema: Optional[Schema]) -> Schema:
    r""":obj:`schema`, or the default :class:`Schema` for :obj:`None`
    (a :class:`TypeError` for anything else)."""
    if schema is None:
        return DEFAULT_SCHEMA
    if not isinstance(schema, Schema):
        raise TypeError(f"'schema' must be a pyg_brmrs.data.Schema or None "
                        f"(got {type(schema).__name__})")
    return schema


def mark_canonical(data: HeteroData) -> HeteroData:
    r"""Declares :obj:`data` to be in the canonical names, so that
    :meth:`Schema.canonical` returns it unchanged (*e.g.* a mini-batch
    sampled from a canonical view). Returns :obj:`data`."""
    object.__setattr__(data, _CANONICAL_MARK, True)
    return data


def check_canonical_names(data: HeteroData) -> None:
    r"""Raises a :class:`ValueError` when a :class:`HeteroData` handed over
    without a schema lacks the canonical ``'user'`` / ``'item'`` node types
    or the ``('user', 'rates', 'item')`` edges, naming what it has and
    pointing to :class:`Schema` (data under other names, *e.g.* PyG's
    MovieLens, needs ``schema=Schema(...)``)."""
    if not isinstance(data, HeteroData):
        return
    missing = [t for t in (USER, ITEM) if t not in data.node_types]
    if not missing and RATES in data.edge_types:
        return
    what = (f"node type(s) {missing}" if missing else
            f"edge type {RATES}")
    raise ValueError(
        f"The data has no {what} (node types: {data.node_types}; edge "
        f"types: {data.edge_types}): data under other names needs its "
        f"schema, e.g. schema=Schema(user_type='user', item_type='movie', "
        f"features={{'genre': 'x'}}), passed to from_data / the transform "
        f"/ the Trainer")


def canonical(data: HeteroData, schema: Optional[Schema] = None
              ) -> HeteroData:
    r"""``resolve_schema(schema).canonical(data)``."""
    return resolve_schema(schema).canonical(data)
