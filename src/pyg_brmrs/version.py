r"""The package version, importable without importing the rest of the
package (``from pyg_brmrs.version import __version__``)."""
__version__ = '0.1.0'

__all__ = ['__version__']
