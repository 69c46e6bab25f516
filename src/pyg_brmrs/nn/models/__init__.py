from .brmrs import BRMRS

__all__ = ['BRMRS']
