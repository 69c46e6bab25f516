r"""The registry of dataset readers: every data format the experiment layer
and the ``pyg-brmrs`` command can load is one :class:`Reader` registered
here under a name.

A new format is one module holding a reader function plus one call:

.. code-block:: python

    from pathlib import Path
    from pyg_brmrs.data import from_interactions, register_reader

    def read_csv_folder(folder, *, sep=','):
        df = pd.read_csv(Path(folder) / 'interactions.csv', sep=sep)
        return from_interactions(df, features=...)

    register_reader('csv', read_csv_folder,
                    detect=lambda folder: (folder / 'interactions.csv')
                    .is_file(),
                    description='interactions.csv + <modality>_feat.npy')

after which ``DataSource('csv', path=...)`` and ``pyg-brmrs train --data
FOLDER [--format csv]`` read it. The built-in formats ``mmrec``,
``diffmm`` and ``synthetic`` are registered by the modules that define
them.
"""
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, List, Optional, Union

from torch_geometric.data import HeteroData

from ..utils.registry import Registry
from .validation import check_data

PathLike = Union[str, Path]


@dataclass(frozen=True)
class Reader:
    r"""One registered data format.

    Attributes:
        name (str): The format's name (``DataSource(format=name)``,
            ``--format name``).
        fn (callable): ``fn(folder, **kwargs) -> HeteroData`` for a format
            that reads a folder, ``fn(**kwargs) -> HeteroData`` otherwise.
        detect (callable, optional): ``detect(folder: Path) -> bool``, whether
            :obj:`folder` holds a dataset of this format (used when no format
            is given); :obj:`None` for a format that is only chosen by name.
        description (str): One line on the layout, for help texts and
            error messages.
        folder (bool): Whether :obj:`fn` reads a folder (its first
            argument).
    """
    name: str
    fn: Callable[..., HeteroData]
    detect: Optional[Callable[[Path], bool]] = None
    description: str = ''
    folder: bool = True

    def keywords(self) -> Optional[List[str]]:
        r"""The keyword arguments :obj:`fn` accepts, or :obj:`None` when it
        takes ``**kwargs`` (any keyword)."""
        params = list(inspect.signature(self.fn).parameters.values())
        if self.folder:
            params = params[1:]
        if any(p.kind == p.VAR_KEYWORD for p in params):
            return None
        return [p.name for p in params
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    def read(self, folder: Optional[PathLike] = None,
             **kwargs: Any) -> HeteroData:
        r"""Calls the reader and checks that it returned data of the package
        schema (:func:`~pyg_brmrs.data.check_data`)."""
        if self.folder and folder is None:
            raise ValueError(f"Data format '{self.name}' reads a folder: "
                             f"give its path")
        if not self.folder and folder is not None:
            raise ValueError(f"Data format '{self.name}' reads no folder "
                             f"(got path '{folder}')")
        accepted = self.keywords()
        if accepted is not None:
            unknown = sorted(set(kwargs) - set(accepted))
            if unknown:
                raise ValueError(f"Data format '{self.name}' does not take "
                                 f"{unknown} (it takes {accepted})")
        data = self.fn(folder, **kwargs) if self.folder else self.fn(**kwargs)
        if not isinstance(data, HeteroData):
            raise TypeError(f"The reader of data format '{self.name}' "
                            f"returned {type(data).__name__}, not HeteroData")
        check_data(data)
        return data


_READERS: Registry[Reader] = Registry('data format', 'unregister_reader')


def register_reader(name: str, fn: Callable[..., HeteroData], *,
                    detect: Optional[Callable[[Path], bool]] = None,
                    description: str = '', folder: bool = True) -> Reader:
    r"""Registers the data format :obj:`name` (see :class:`Reader` for the
    arguments) and returns its :class:`Reader`.

    Raises:
        ValueError: if :obj:`name` is not a non-empty string of letters,
            digits, ``_`` and ``-`` or is registered already
            (:func:`unregister_reader` it first).
        TypeError: if :obj:`fn` or :obj:`detect` is not callable.
    """
    return _READERS.register(
        name, _reader(name, fn, detect=detect, description=description,
                      folder=folder), where='register_reader')


def _reader(name: str, fn: Callable[..., HeteroData], *,
            detect: Optional[Callable[[Path], bool]] = None,
            description: str = '', folder: bool = True) -> Reader:
    if not callable(fn):
        raise TypeError(f"register_reader: 'fn' must be callable (got "
                        f"{type(fn).__name__})")
    if detect is not None and not callable(detect):
        raise TypeError(f"register_reader: 'detect' must be callable or None "
                        f"(got {type(detect).__name__})")
    reader = Reader(name, fn, detect, description, bool(folder))
    reader.keywords()  # a signature that cannot be inspected fails here
    return reader


def unregister_reader(name: str) -> Reader:
    r"""Removes data format :obj:`name` and returns its :class:`Reader`."""
    return _READERS.unregister(name)


def registered_reader(name: str, fn: Callable[..., HeteroData],
                      **kwargs: Any) -> ContextManager[Reader]:
    r"""Registers a data format for the duration of a :obj:`with` block
    (arguments as :func:`register_reader`) and removes it afterwards."""
    return _READERS.temporarily(name, _reader(name, fn, **kwargs),
                                where='register_reader')


def get_reader(name: str) -> Reader:
    r"""The :class:`Reader` of data format :obj:`name`.

    Raises:
        ValueError: if no format of that name is registered (the message
            lists the registered ones).
    """
    return _READERS.get(name)


def list_readers(*, folder: Optional[bool] = None) -> List[str]:
    r"""The registered format names, in registration order; with
    :obj:`folder`, only those that do (:obj:`True`) or do not
    (:obj:`False`) read a folder."""
    return [name for name, r in _READERS.entries.items()
            if folder is None or r.folder == folder]


def detect_reader(folder: PathLike) -> Reader:
    r"""The one folder format whose :obj:`detect` recognises
    :obj:`folder`.

    Raises:
        ValueError: if no format or several formats recognise it (the
            message lists the layouts, or the matching names, so that the
            format can be given explicitly).
    """
    path = Path(folder)
    found = [r for r in _READERS.entries.values()
             if r.folder and r.detect is not None and r.detect(path)]
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError(f"'{folder}' matches several data formats "
                         f"{[r.name for r in found]}: name one explicitly")
    layouts = '; '.join(f'{r.name}: {r.description}' if r.description
                        else r.name for r in _READERS.entries.values()
                        if r.folder and r.detect is not None)
    raise ValueError(f"'{folder}' holds no dataset of a known layout "
                     f"({layouts})")
