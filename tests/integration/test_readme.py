r"""Every fenced ``python`` block of README.md runs as written.

Blocks run in order, each in a fresh namespace (a block whose first line is
``# continued`` shares the namespace of the block before it), in a
temporary working folder. A block that reads a dataset folder gets
synthetic data instead (the readers are replaced by
:func:`~pyg_brmrs.data.make_synthetic`) and training stops after two epochs.
A ``print(expr)`` followed by a comment that shows a dict (``# {'a': ...,
'b': ...}``) must print a dict with exactly those keys, in that order."""
import ast
import contextlib
import dataclasses
import io
import re
from pathlib import Path

import pytest

import pyg_brmrs.data
import pyg_brmrs.training
from pyg_brmrs.data import make_synthetic

README = Path(__file__).resolve().parents[2] / 'README.md'


def python_blocks(text):
    return re.findall(r'^```python\n(.*?)^```', text, flags=re.S | re.M)


def shown_dicts(block):
    r"""``(expression, [keys])`` of every ``print(expression)`` followed by
    a comment holding a dict."""
    lines = block.splitlines()
    out = []
    for n, line in enumerate(lines):
        code, _, comment = line.partition('#')
        match = re.fullmatch(r'print\((.+)\)', code.strip())
        if not match:
            continue
        shown = [comment] + [
            rest.strip().lstrip('#') for rest in
            _following_comments(lines[n + 1:])]
        text = ' '.join(shown).strip()
        if text.startswith('{'):
            out.append((match.group(1), re.findall(r"'([^']+)':", text)))
    return out


def _following_comments(lines):
    for line in lines:
        if not line.strip().startswith('#'):
            return
        yield line


def test_readme_has_the_blocks_this_test_expects():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 2
    assert any(shown_dicts(b) for b in blocks)


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    @dataclasses.dataclass
    class QuickConfig(pyg_brmrs.training.TrainConfig):
        epochs: int = 2

    def synthetic_reader(folder, *args, **kwargs):
        assert not Path(folder).exists()  # the README's placeholder path
        return make_synthetic(120, 90)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pyg_brmrs.training, 'TrainConfig', QuickConfig)
    for name in ('read_diffmm', 'read_mmrec'):
        monkeypatch.setattr(pyg_brmrs.data, name, synthetic_reader)

    namespace = {}
    for n, block in enumerate(python_blocks(README.read_text())):
        if not block.startswith('# continued'):
            namespace = {'__name__': f'readme_block_{n}'}
        ast.parse(block)  # a syntax error names the block below
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                exec(compile(block, f'README.md block {n}', 'exec'),
                     namespace)
            except Exception as e:
                pytest.fail(f'README.md python block {n} fails: '
                            f'{type(e).__name__}: {e}\n{block}')
        for expression, keys in shown_dicts(block):
            value = eval(expression, namespace)
            assert list(value) == keys, (
                f'README.md block {n}: print({expression}) shows {keys}, '
                f'prints {list(value)}')
