r"""``python -m pyg_brmrs ...`` is the ``pyg-brmrs`` command (and what
``torchrun -m pyg_brmrs train ...`` starts on every process)."""
import sys

from pyg_brmrs.app.cli import main

if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
