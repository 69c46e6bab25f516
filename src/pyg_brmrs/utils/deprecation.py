r"""Renamed keyword arguments and names: the old spelling keeps working for a
while and emits a :class:`DeprecationWarning` that names the new one.

.. code-block:: python

    class Model(torch.nn.Module):
        @renamed_arguments(dropout='edge_dropout')
        def __init__(self, edge_dropout: float = 0.0): ...

    Model(dropout=0.5)   # DeprecationWarning: 'dropout' ... use 'edge_dropout'

:func:`inspect.signature` of a decorated function shows the new names only;
:func:`deprecated_arguments` gives the renames, so that code which routes
keywords by name (:mod:`pyg_brmrs.recipes`) can accept the old names too.
"""
import functools
import warnings
from typing import Any, Callable, Dict, Mapping, Optional, TypeVar

__all__ = ['renamed_arguments', 'deprecated_arguments', 'rename_arguments',
           'renamed_names', 'warn_renamed']

F = TypeVar('F', bound=Callable[..., Any])

_ATTR = '__deprecated_arguments__'


def warn_renamed(old: str, new: str, where: str, what: str = 'argument',
                 stacklevel: int = 3) -> None:
    r"""Emits the :class:`DeprecationWarning` of a renamed :obj:`what`
    (*e.g.*, ``"argument"`` or ``"value"``) of :obj:`where` (*e.g.*,
    ``"'FREEDOM'"``)."""
    warnings.warn(f"The {what} '{old}' of {where} is deprecated and will be "
                  f"removed in a future release; use '{new}'",
                  DeprecationWarning, stacklevel=stacklevel)


def rename_arguments(kwargs: Dict[str, Any], renames: Mapping[str, str],
                     where: str, stacklevel: int = 3) -> Dict[str, Any]:
    r"""Returns :obj:`kwargs` with every old name of :obj:`renames`
    (``old -> new``) replaced by its new name, warning once per old name.

    Raises:
        TypeError: both the old and the new name are given.
    """
    out = dict(kwargs)
    for old, new in renames.items():
        if old not in out:
            continue
        if new in out:
            raise TypeError(f"{where} got both '{old}' (deprecated) and "
                            f"'{new}'; pass '{new}' only")
        warn_renamed(old, new, where, stacklevel=stacklevel + 1)
        out[new] = out.pop(old)
    return out


def renamed_arguments(**renames: str) -> Callable[[F], F]:
    r"""Decorates a function whose keyword arguments were renamed
    (``old='new'``): calls with an old name are forwarded under the new one
    with a :class:`DeprecationWarning`; passing both is a
    :class:`TypeError`."""
    def decorator(fn: F) -> F:
        where = "'" + fn.__qualname__.replace('.__init__', '') + "'"

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if any(old in kwargs for old in renames):
                kwargs = rename_arguments(kwargs, renames, where)
            return fn(*args, **kwargs)

        setattr(wrapper, _ATTR, dict(renames))
        return wrapper  # type: ignore[return-value]

    return decorator


def renamed_names(module: str, namespace: Mapping[str, Any],
                  renames: Mapping[str, str]) -> Callable[[str], Any]:
    r"""The module-level ``__getattr__`` of a module whose public names
    were renamed (``old -> new``): an old name returns the object of the new
    one from :obj:`namespace` (the module's :func:`globals`) with a
    :class:`DeprecationWarning`; any other unknown name is an
    :class:`AttributeError`.

    .. code-block:: python

        __getattr__ = renamed_names(__name__, globals(), {'Old': 'New'})
    """
    def __getattr__(name: str) -> Any:
        if name in renames:
            warn_renamed(name, renames[name], f"'{module}'", what='name')
            return namespace[renames[name]]
        raise AttributeError(f"module '{module}' has no attribute '{name}'")

    return __getattr__


def deprecated_arguments(fn: Optional[Callable]) -> Dict[str, str]:
    r"""The renames ``old -> new`` declared on :obj:`fn` with
    :func:`renamed_arguments` (empty for any other callable)."""
    return dict(getattr(fn, _ATTR, {}) or {})
