r"""Importing the package changes no global state."""
import json
import subprocess
import sys
import textwrap

SNAPSHOT = textwrap.dedent('''
    import importlib, json, logging, random, sys, warnings
    import numpy as np
    import torch

    # The dependencies' own imports are not ours to judge: import them first,
    # in the order the package imports them.
    for name in sys.argv[1:]:
        try:
            importlib.import_module(name)
        except Exception:
            pass

    def snapshot():
        return {
            'warnings_filters': [repr(f) for f in warnings.filters],
            'num_threads': torch.get_num_threads(),
            'num_interop_threads': torch.get_num_interop_threads(),
            'default_dtype': str(torch.get_default_dtype()),
            'grad_enabled': torch.is_grad_enabled(),
            'deterministic': torch.are_deterministic_algorithms_enabled(),
            'matmul_precision': torch.get_float32_matmul_precision(),
            'torch_rng': torch.get_rng_state().sum().item(),
            'python_rng': random.getstate()[1][:4],
            'numpy_rng': int(np.random.get_state()[1][:4].sum()),
            'root_logger_handlers': len(logging.getLogger().handlers),
            'root_logger_level': logging.getLogger().level,
            'print_options': repr(torch._tensor_str.PRINT_OPTS.__dict__),
        }

    MODULES_BEFORE = set(sys.modules)
    before = snapshot()
    import pyg_brmrs, pyg_brmrs.training, pyg_brmrs.app.recipes, pyg_brmrs.app.cli
    after = snapshot()
    print(json.dumps([m for m in sys.modules if m.split('.')[0] != 'pyg_brmrs'
                      and m not in MODULES_BEFORE]))
    print(json.dumps({'before': before, 'after': after}))
''')


def _run(*modules):
    out = subprocess.run([sys.executable, '-c', SNAPSHOT, *modules],
                         capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[-1]), json.loads(lines[-2])


def test_import_changes_no_global_state():
    _, dependencies = _run()  # what importing the package pulls in
    res, _ = _run(*dependencies)
    changed = {key: (res['before'][key], res['after'][key])
               for key in res['before']
               if res['before'][key] != res['after'][key]}
    assert changed == {}


def test_version_is_importable_on_its_own():
    from pyg_brmrs import __version__
    from pyg_brmrs.version import __version__ as version
    assert version == __version__ and version.count('.') == 2
