import io
import os
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from pyg_brmrs.data.diffmm import MatrixUnpickler, RefusedGlobal, read_diffmm
from pyg_brmrs.utils.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    load_checkpoint,
    save_checkpoint,
)


class Payload:
    r"""Unpickling it would create the file ``marker``."""
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker, ))


def test_checkpoint_with_a_malicious_reduce_is_refused_unrun(tmp_path):
    marker = tmp_path / 'ran'
    torch.save({'model': {'w': torch.ones(2)}, 'extra': Payload(marker)},
               tmp_path / 'evil.pt')
    # The same file read the unsafe way does run the payload ...
    torch.load(tmp_path / 'evil.pt', weights_only=False)
    assert marker.exists()
    marker.rmdir()
    # ... the package's loader refuses it and names what it refused.
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pt.*mkdir"):
        load_checkpoint(tmp_path / 'evil.pt')
    assert not marker.exists()


def test_checkpoints_round_trip_with_weights_only(tmp_path):
    state = {'model': {'w': torch.arange(3.0)}, 'epoch': 2,
             'rng': ('MT19937', torch.arange(4), 1, 0, 0.0),
             'history': [{'loss': 0.5, 'val': {'recall@20': 0.1}}],
             'best': -float('inf'), 'none': None}
    save_checkpoint(state, tmp_path / 'a.pt')
    out = load_checkpoint(tmp_path / 'a.pt')
    assert torch.equal(out['model']['w'], state['model']['w'])
    assert out['rng'][0] == 'MT19937' and out['history'] == state['history']
    assert out['best'] == -float('inf') and out['none'] is None
    with pytest.raises(FileNotFoundError, match='missing.pt'):
        load_checkpoint(tmp_path / 'missing.pt')
    torch.save([1, 2], tmp_path / 'list.pt')
    with pytest.raises(CheckpointError, match='holds a list'):
        load_checkpoint(tmp_path / 'list.pt')
    with pytest.raises(CheckpointError, match='is a folder'):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize('protocol', [0, 2, 4, 5])
def test_pickle_with_a_malicious_reduce_is_refused_unrun(tmp_path, protocol):
    marker = tmp_path / 'ran'
    for obj in (Payload(marker), [sp.coo_matrix((2, 2)), Payload(marker)]):
        blob = pickle.dumps(obj, protocol=protocol)
        with pytest.raises(RefusedGlobal, match="'posix.mkdir'|'nt.mkdir'"):
            MatrixUnpickler(io.BytesIO(blob)).load()
        assert not marker.exists()
    for name in ('trnMat.pkl', 'valMat.pkl', 'tstMat.pkl'):
        (tmp_path / name).write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ValueError, match=r'trnMat\.pkl: refused'):
        read_diffmm(tmp_path, modalities=[])
    assert not marker.exists()


@pytest.mark.parametrize('protocol', range(pickle.HIGHEST_PROTOCOL + 1))
def test_matrix_unpickler_reads_numpy_and_every_sparse_format(protocol):
    mat = sp.random(6, 5, density=0.4, format='coo', random_state=0)
    objects = [mat, mat.tocsr(), mat.tocsc(), mat.tolil(), mat.todok(),
               mat.tobsr(), sp.coo_array(mat), mat.toarray(),
               mat.toarray().astype(np.float16), np.int64(3)]
    for obj in objects:
        out = MatrixUnpickler(io.BytesIO(pickle.dumps(obj, protocol))).load()
        if sp.issparse(obj):
            assert type(out) is type(obj) and (out != obj).nnz == 0
        else:
            assert np.array_equal(out, obj) and out.dtype == obj.dtype


def test_other_globals_are_refused():
    for obj in (torch.ones(2), os.getcwd, pickle.dumps, np.load):
        with pytest.raises(RefusedGlobal):
            MatrixUnpickler(io.BytesIO(pickle.dumps(obj))).load()
