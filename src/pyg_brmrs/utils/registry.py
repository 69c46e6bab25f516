r"""A name → entry registry with the rules every registry of the package
follows (data formats in :mod:`pyg_brmrs.data.registry`, methods in
:mod:`pyg_brmrs.app.recipes`): a name is a non-empty string of letters, digits,
``_`` and ``-``; registering a taken name is an error (unregister it first);
looking up an unknown name is an error that lists the registered ones; a
:meth:`Registry.temporarily` block leaves the registry as it found it."""
from contextlib import contextmanager
from typing import Dict, Generic, Iterator, List, TypeVar

T = TypeVar('T')


class Registry(Generic[T]):
    r"""Entries by name, in registration order.

    Args:
        what (str): What an entry is, for messages (*e.g.*
            :obj:`"data format"`).
        unregister (str): The name of the public unregister function, for
            the message of a taken name.
    """
    def __init__(self, what: str, unregister: str):
        self.what = what
        self.unregister_name = unregister
        #: The entries (read it; change it through the methods).
        self.entries: Dict[str, T] = {}

    def register(self, name: str, entry: T, *, where: str) -> T:
        r"""Adds :obj:`entry` as :obj:`name`; :obj:`where` (the calling
        function) starts the error messages."""
        if not isinstance(name, str) or not name or \
                not name.replace('-', '_').isidentifier():
            raise ValueError(f"{where}: 'name' must be a non-empty string of "
                             f"letters, digits, '_' and '-' (got {name!r})")
        if name in self.entries:
            raise ValueError(f"{where}: {self.what} '{name}' is already "
                             f"registered ({self.unregister_name}('{name}') "
                             f"first)")
        self.entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        r"""The entry of :obj:`name`; a :class:`ValueError` listing the
        registered names if there is none."""
        if not isinstance(name, str) or name not in self.entries:
            raise ValueError(f"Unknown {self.what} {name!r} (choose from "
                             f"{self.names()})")
        return self.entries[name]

    def unregister(self, name: str) -> T:
        r"""Removes :obj:`name` and returns its entry."""
        entry = self.get(name)
        del self.entries[name]
        return entry

    def names(self) -> List[str]:
        return list(self.entries)

    @contextmanager
    def temporarily(self, name: str, entry: T, *,
                    where: str) -> Iterator[T]:
        r"""Registers :obj:`entry` for the duration of a :obj:`with` block
        and removes it afterwards."""
        self.register(name, entry, where=where)
        try:
            yield entry
        finally:
            self.entries.pop(name, None)
