r"""Caches of values derived from tensors (normalised adjacencies, pruned
graphs, casts of fixed features), keyed by the identity *and* the version
of the tensors they were derived from.

A key (:func:`tensor_key`) holds the tensor object itself (not its
:func:`id`, which Python may reuse once the object is freed), its version
counter (bumped by every in-place change), shape, dtype, layout and device. A
cached value is therefore rebuilt when the caller passes another tensor or
changes the same one in place; :meth:`KeyedCache.clear` drops everything
explicitly (the models call it from ``reset_parameters``). The caches hold
derived tensors only, never parameters, and are not part of a
``state_dict``: they are rebuilt on first use after loading.
"""
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar

import torch
from torch import Tensor

__all__ = ['TensorKey', 'tensor_key', 'KeyedCache']

T = TypeVar('T')


class TensorKey:
    r"""The cache key of one tensor (or any other object, by identity): equal
    to another key when both refer to the *same* object in the *same*
    version. Sparse tensors (COO, CSR, CSC, ...) are keyed by their index
    and value tensors, so every adjacency form :class:`~torch_geometric.nn.
    conv.LGConv` accepts can be keyed."""
    __slots__ = ('obj', 'meta')

    def __init__(self, obj: Any):
        self.obj = obj
        self.meta = _meta(obj)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, TensorKey) and other.obj is self.obj
                and other.meta == self.meta)

    def __hash__(self) -> int:
        return hash((id(self.obj), self.meta))

    def __repr__(self) -> str:
        return f'TensorKey({type(self.obj).__name__}, {self.meta})'


def _meta(obj: Any) -> Tuple:
    if not isinstance(obj, Tensor):
        return ()
    layout = obj.layout
    if layout == torch.strided:
        parts: Tuple = (obj._version, )
    elif layout == torch.sparse_coo:
        parts = (obj._version, obj._indices()._version,
                 obj._values()._version)
    elif layout in (torch.sparse_csr, torch.sparse_bsr):
        parts = (obj._version, obj.crow_indices()._version,
                 obj.col_indices()._version, obj.values()._version)
    elif layout in (torch.sparse_csc, torch.sparse_bsc):
        parts = (obj._version, obj.ccol_indices()._version,
                 obj.row_indices()._version, obj.values()._version)
    else:  # pragma: no cover - future layouts: identity and version only
        parts = (obj._version, )
    return parts + (tuple(obj.shape), obj.dtype, str(layout), obj.device)


def tensor_key(obj: Any) -> Optional[TensorKey]:
    r"""The :class:`TensorKey` of :obj:`obj` (:obj:`None` for
    :obj:`None`)."""
    return None if obj is None else TensorKey(obj)


class KeyedCache:
    r"""Named slots, each holding one value and the key it was built for.

    .. code-block:: python

        cache = KeyedCache()
        op = cache.get('adj', tensor_key(edge_index),
                       lambda: build_operator(edge_index))

    :meth:`get` returns the stored value when the slot's key equals
    :obj:`key`, else builds, stores (when :obj:`enabled`) and returns a new
    one. A slot holds one entry, so a new key replaces the old value.
    """
    def __init__(self):
        self._slots: Dict[str, Tuple[Any, Any]] = {}

    def get(self, name: str, key: Any, build: Callable[[], T],
            enabled: bool = True) -> T:
        hit = self._slots.get(name)
        if enabled and hit is not None and hit[0] == key:
            return hit[1]
        value = build()
        if enabled:
            self._slots[name] = (key, value)
        return value

    def lookup(self, name: str, key: Any = None) -> Optional[Any]:
        r"""The value in slot :obj:`name` (only if built for :obj:`key` when
        one is given), else :obj:`None`."""
        hit = self._slots.get(name)
        if hit is None or (key is not None and hit[0] != key):
            return None
        return hit[1]

    def put(self, name: str, key: Any, value: T) -> T:
        r"""Stores :obj:`value` for :obj:`key` in slot :obj:`name`."""
        self._slots[name] = (key, value)
        return value

    def clear(self, name: Optional[str] = None) -> None:
        r"""Drops slot :obj:`name`, or every slot."""
        if name is None:
            self._slots.clear()
        else:
            self._slots.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name in self._slots

    def __len__(self) -> int:
        return len(self._slots)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({sorted(self._slots)})'
