import pytest
import torch

from pyg_brmrs.utils import sparse
from pyg_brmrs.utils.sparse import (
    csr_addmm,
    csr_matmul,
    to_csr,
)


@pytest.fixture(params=['mkl', 'reduce'])
def kernel(request, monkeypatch):
    # both CPU kernels: MKL's product into an uninitialised output, and
    # torch.sparse.mm(reduce="sum") (the path without MKL)
    if request.param == 'mkl':
        if not torch.backends.mkl.is_available():
            pytest.skip('this torch is built without MKL')
    else:
        monkeypatch.setattr(torch.backends.mkl, 'is_available',
                            lambda: False)
    return request.param


def dense(rows, cols, w, shape, dtype):
    A = torch.zeros(shape, dtype=torch.float64)
    for r, c, v in zip(rows.tolist(), cols.tolist(), w.tolist()):
        A[r, c] += v
    return A.to(dtype)


def sparse_case(num_rows=9, num_cols=7, nnz=20, seed=0,
                dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, num_rows, (nnz, ), generator=g)
    rows[rows == 3] = 4  # rows 3 and the last stay empty
    rows[rows == num_rows - 1] = 0
    cols = torch.randint(0, num_cols, (nnz, ), generator=g)
    w = torch.rand(nnz, generator=g, dtype=torch.float64)
    # to_csr reads (source, target) = (column, row) and sums duplicates
    A = to_csr(torch.stack([cols, rows]), w.to(dtype),
               (num_rows, num_cols))
    return A, dense(rows, cols, w, (num_rows, num_cols), dtype)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('width', [1, 5, 128])
def test_csr_matmul_matches_dense_with_empty_rows(kernel, dtype, width):
    A, D = sparse_case(dtype=dtype)
    x = torch.randn(7, width, dtype=dtype)
    out = csr_matmul(A, x)
    assert out.shape == (9, width) and out.dtype == dtype
    assert torch.allclose(out, D @ x, atol=1e-6)
    # empty rows are exact zeros: nothing of the uninitialised output leaks
    assert torch.equal(out[3], torch.zeros(width, dtype=dtype))
    assert torch.equal(out[8], torch.zeros(width, dtype=dtype))
    # a non-contiguous input is read correctly
    xt = torch.randn(width, 7, dtype=dtype).t()
    assert torch.allclose(csr_matmul(A, xt), D @ xt, atol=1e-6)


def test_csr_matmul_edge_cases(kernel):
    # no stored entry, no rows, no columns of the dense input
    empty = to_csr(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0),
                   (4, 3))
    assert torch.equal(csr_matmul(empty, torch.randn(3, 5)),
                       torch.zeros(4, 5))
    none = to_csr(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0),
                  (0, 3))
    assert csr_matmul(none, torch.randn(3, 5)).shape == (0, 5)
    A, D = sparse_case()
    assert csr_matmul(A, torch.randn(7, 0)).shape == (9, 0)


def test_both_kernels_give_the_same_numbers():
    if not torch.backends.mkl.is_available():
        pytest.skip('this torch is built without MKL')
    A, _ = sparse_case(num_rows=300, num_cols=200, nnz=3000)
    x = torch.randn(200, 64)
    mkl = csr_matmul(A, x)
    reduce = torch.sparse.mm(A, x, 'sum')
    assert torch.allclose(mkl, reduce, rtol=1e-6, atol=1e-6)


def test_csr_addmm(kernel):
    A, D = sparse_case()
    x = torch.randn(7, 6)
    base = torch.randn(9, 6)
    keep = base.clone()
    out = csr_addmm(base, A, x)
    assert torch.allclose(out, base + D @ x, atol=1e-6)
    assert torch.equal(base, keep)  # the base is not modified
    assert torch.equal(out[3], base[3])  # an empty row adds nothing
    # a non-contiguous base
    base_t = torch.randn(6, 9).t()
    assert torch.allclose(csr_addmm(base_t, A, x), base_t + D @ x,
                          atol=1e-6)


def test_mkl_path_only_for_cpu_csr_float():
    A, _ = sparse_case()
    assert sparse._mkl_csr(A, torch.randn(7, 2)) == \
        torch.backends.mkl.is_available()
    assert not sparse._mkl_csr(A, torch.randn(7, 2).half())
    assert not sparse._mkl_csr(A.to_sparse_coo(), torch.randn(7, 2))


def test_csr_rows_against_dense():
    A, D = sparse_case()
    rows = torch.tensor([8, 3, 0, 0, 5])  # empty rows 3 and 8, a repeat
    sub, sub_t = sparse.csr_rows(A, rows)
    assert torch.equal(sub.to_dense(), A.to_dense()[rows])
    assert torch.equal(sub_t.to_dense(), A.to_dense()[rows].t())
    assert torch.allclose(sub.to_dense(), D[rows])
    sub, sub_t = sparse.csr_rows(A, torch.zeros(0, dtype=torch.long))
    assert sub.shape == (0, 7) and sub_t.shape == (7, 0)
