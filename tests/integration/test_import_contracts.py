r"""The package's floor plan: the import-linter contracts of pyproject.toml
hold, and no module imports a private (``_name``) function, class or module
of another subpackage."""
import ast
from pathlib import Path

import pytest

import pyg_brmrs

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(pyg_brmrs.__file__).resolve().parent


def test_import_linter_contracts_hold(tmp_path, monkeypatch):
    cli = pytest.importorskip(
        'importlinter.cli', reason='import-linter is not installed (it is in '
        'the test extra: pip install ".[test]")')
    monkeypatch.chdir(tmp_path)  # grimp's cache stays out of the checkout
    code = cli.lint_imports(config_filename=str(ROOT / 'pyproject.toml'),
                            no_cache=True)
    assert code == 0, 'lint-imports reports a broken contract (run ' \
        '`lint-imports` in the repository root for the details)'


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def _subpackage(module: str) -> str:
    return '.'.join(module.split('.')[:2])


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ''
    base = importer.split('.')
    base = base if is_package else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return '.'.join(base + ([node.module] if node.module else []))


def _private(name: str) -> bool:
    return name.startswith('_') and not name.startswith('__')


def cross_package_private_imports():
    r"""``(importer, imported)`` for every import of a private name or
    module of another top-level subpackage of :mod:`pyg_brmrs`."""
    found = []
    for path in sorted(PACKAGE.rglob('*.py')):
        importer = _module_name(path)
        tree = ast.parse(path.read_text(encoding='utf-8'))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = _resolve(importer, path.name == '__init__.py', node)
                targets = [f'{source}.{a.name}' for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                if not target.startswith('pyg_brmrs.'):
                    continue
                if _subpackage(target) == _subpackage(importer):
                    continue
                if any(_private(part) for part in target.split('.')):
                    found.append((importer, target))
    return found


def test_no_private_name_crosses_a_subpackage():
    assert cross_package_private_imports() == []


def test_private_import_detector_sees_a_leak(tmp_path, monkeypatch):
    # The detector itself must flag the kind of import it exists for.
    pkg = tmp_path / 'pyg_brmrs'
    (pkg / 'nn').mkdir(parents=True)
    (pkg / 'transforms').mkdir()
    for init in (pkg, pkg / 'nn', pkg / 'transforms'):
        (init / '__init__.py').write_text('')
    (pkg / 'transforms' / '_sim.py').write_text('def f():\n    pass\n')
    (pkg / 'transforms' / 'knn.py').write_text('from ._sim import f\n')
    (pkg / 'nn' / 'model.py').write_text(
        'from pyg_brmrs.transforms._sim import f\n'
        'from pyg_brmrs.transforms.knn import _helper\n')
    monkeypatch.setitem(globals(), 'PACKAGE', pkg)
    assert sorted(cross_package_private_imports()) == [
        ('pyg_brmrs.nn.model', 'pyg_brmrs.transforms._sim.f'),
        ('pyg_brmrs.nn.model', 'pyg_brmrs.transforms.knn._helper'),
    ]
