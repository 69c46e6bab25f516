import math

import numpy as np
import pytest
import torch

from pyg_brmrs.utils.cache import KeyedCache, tensor_key
from pyg_brmrs.utils.checks import (
    check_choice,
    check_edge_index,
    check_float,
    check_ids,
    check_int,
    check_modality_weights,
)


def test_check_int():
    assert check_int(3, 'k') == 3
    assert check_int(np.int64(0), 'k', 0) == 0
    assert type(check_int(np.int32(5), 'k')) is int
    for bad in (True, 1.0, '3', None):
        with pytest.raises(TypeError, match="'k' must be an int >= 1"):
            check_int(bad, 'k')
    with pytest.raises(ValueError, match=r"'k' must be an int >= 1 \(got 0\)"):
        check_int(0, 'k')
    with pytest.raises(ValueError, match="'n' must be an int >= 0"):
        check_int(-1, 'n', 0)


def test_check_choice():
    assert check_choice('b', 'mode', ('a', 'b')) == 'b'
    for bad in ('c', None, ['a']):
        with pytest.raises(ValueError, match=r"'mode' must be one of "
                           r"\('a', 'b'\) \(got "):
            check_choice(bad, 'mode', ('a', 'b'))


def test_check_float():
    assert check_float(0, 'w') == 0.0
    assert check_float(np.float32(0.5), 'a', 0.0, 1.0) == 0.5
    with pytest.raises(ValueError, match="'w' must be a non-negative finite"):
        check_float(-0.1, 'w')
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="'w'"):
            check_float(bad, 'w')
    with pytest.raises(ValueError, match=r"'a' must be a finite float in "
                       r"\[0, 1\]"):
        check_float(1.5, 'a', 0.0, 1.0)
    with pytest.raises(ValueError, match="'lr' must be a positive"):
        check_float(0.0, 'lr', strict_minimum=True)
    for bad in (True, '0.1', None):
        with pytest.raises(TypeError, match="'w'"):
            check_float(bad, 'w')


def test_check_edge_index():
    ei = torch.tensor([[0, 1, 2], [1, 0, 3]], dtype=torch.int32)
    out = check_edge_index(ei, 'ei', num_nodes=(3, 4))
    assert out.dtype == torch.long and torch.equal(out, ei.long())
    long_ei = ei.long()
    assert check_edge_index(long_ei) is long_ei
    with pytest.raises(TypeError, match="'ei' must be a torch.Tensor"):
        check_edge_index([[0], [1]], 'ei')
    with pytest.raises(ValueError, match=r"'ei' must have shape \[2, E\]"):
        check_edge_index(torch.zeros(3, 2, dtype=torch.long), 'ei')
    with pytest.raises(ValueError, match="'ei' must hold integer ids"):
        check_edge_index(ei.float(), 'ei')
    with pytest.raises(ValueError, match="'ei' holds negative user ids"):
        check_edge_index(torch.tensor([[-1], [0]]), 'ei',
                         kinds=('user', 'item'))
    with pytest.raises(ValueError, match=r"'ei' holds item ids in \[0, 3\] "
                       r"but there are only 3 items \(largest item id 3\)"):
        check_edge_index(ei, 'ei', num_nodes=(3, 3), kinds=('user', 'item'))
    with pytest.raises(ValueError, match="holds node ids in"):
        check_edge_index(ei, 'ei', num_nodes=3)
    with pytest.raises(ValueError, match="'edge_weight' has 2 entries"):
        check_edge_index(ei, 'ei', edge_weight=torch.ones(2))
    with pytest.raises(ValueError, match="'ei' is empty"):
        check_edge_index(ei[:, :0], 'ei', allow_empty=False)
    assert check_edge_index(ei[:, :0], 'ei').shape == (2, 0)


def test_check_edge_index_skips_values_on_meta():
    ei = torch.empty((2, 5), dtype=torch.long, device='meta')
    assert check_edge_index(ei, num_nodes=3).device.type == 'meta'
    with pytest.raises(ValueError, match='shape'):  # shapes are still checked
        check_edge_index(torch.empty((3, 5), dtype=torch.long, device='meta'))


def test_check_modality_weights():
    assert check_modality_weights(None, 'w') is None
    assert check_modality_weights({'a': 0.25, 'b': np.float64(0.75)},
                                  'w') == {'a': 0.25, 'b': 0.75}
    with pytest.raises(TypeError, match="'w' must be a mapping"):
        check_modality_weights([0.5, 0.5], 'w')
    with pytest.raises(ValueError, match="'w' must not be empty"):
        check_modality_weights({}, 'w')
    with pytest.raises(ValueError, match="'w' must sum to 1"):
        check_modality_weights({'a': 0.5}, 'w')
    with pytest.raises(ValueError, match=r"'w\['a'\]' must be a non-negative"):
        check_modality_weights({'a': -0.5, 'b': 1.5}, 'w')
    with pytest.raises(ValueError, match='one entry per modality'):
        check_modality_weights({'a': 1.0}, 'w', modalities=['a', 'b'])


def test_tensor_key_tracks_identity_and_version():
    x = torch.arange(4.)
    key = tensor_key(x)
    assert key == tensor_key(x) and hash(key) == hash(tensor_key(x))
    assert key != tensor_key(x.clone())  # equal values, another tensor
    x.add_(1)  # in-place change: a new version
    assert key != tensor_key(x)
    assert tensor_key(None) is None


@pytest.mark.parametrize('layout', ['coo', 'csr'])
def test_tensor_key_on_sparse_tensors(layout):
    adj = torch.sparse_coo_tensor(torch.tensor([[0, 1], [1, 0]]),
                                  torch.ones(2), (2, 2)).coalesce()
    if layout == 'csr':
        adj = adj.to_sparse_csr()
    key = tensor_key(adj)
    assert key == tensor_key(adj)
    adj.values().mul_(2)  # changes the values in place
    assert key != tensor_key(adj)


def test_keyed_cache():
    cache, calls = KeyedCache(), []

    def build():
        calls.append(1)
        return len(calls)

    x = torch.ones(2)
    assert cache.get('a', tensor_key(x), build) == 1
    assert cache.get('a', tensor_key(x), build) == 1  # hit
    assert cache.get('a', tensor_key(torch.ones(2)), build) == 2  # new key
    assert cache.get('b', None, build, enabled=False) == 3
    assert 'b' not in cache and len(cache) == 1
    cache.clear()
    assert cache.get('a', tensor_key(x), build) == 4


def test_check_ids():
    out = check_ids(torch.tensor([0, 4, 4], dtype=torch.int32), 'ids', 5)
    assert out.dtype == torch.long and out.tolist() == [0, 4, 4]
    assert check_ids(torch.zeros(0, dtype=torch.long), 'ids', 5).numel() == 0
    # values are not read on the meta device
    assert check_ids(torch.tensor([9], device='meta'), 'ids', 5).is_meta
    with pytest.raises(TypeError, match="'ids' must be an integer tensor"):
        check_ids([0, 1], 'ids', 5)
    with pytest.raises(TypeError, match='got torch.float32'):
        check_ids(torch.tensor([0.0]), 'ids', 5)
    with pytest.raises(ValueError, match=r"'ids' must be a 1-D tensor"):
        check_ids(torch.tensor([[0]]), 'ids', 5)
    with pytest.raises(ValueError, match=r'outside \[0, 5\) \(min -1, max 5\)'):
        check_ids(torch.tensor([-1, 5]), 'ids', 5)
