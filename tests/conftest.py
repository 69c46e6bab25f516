import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    r"""Where the real data lives: ``$PYG_BRMRS_DATA`` or ``../shared/data``
    next to the repository."""
    env = os.environ.get('PYG_BRMRS_DATA')
    return Path(env) if env else ROOT.parent / 'shared' / 'data'


@pytest.fixture
def shared_data() -> Path:
    r"""The real-data folder; skips the test with a reason when absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f'real data not available: {path} does not exist '
                    f'(set PYG_BRMRS_DATA to the shared/data folder)')
    return path


def require(path: Path) -> Path:
    r"""Skips the calling test when :obj:`path` does not exist."""
    if not path.exists():
        pytest.skip(f'real data not available: {path} does not exist')
    return path


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(12345)
    yield
