r"""Reading the DiffMM / MMSSL dataset folder layout.

.. code-block:: text

    <folder>/
        trnMat.pkl       pickled scipy.sparse matrix [num_users, num_items]
        valMat.pkl       (non-zero entry = interaction)
        tstMat.pkl
        image_feat.npy   [num_items, F_image]
        ...              one <modality>_feat.npy per modality

The pickles are read by :class:`MatrixUnpickler`, which admits only NumPy
arrays, dtypes and scalars and :mod:`scipy.sparse` matrices / arrays: a
file that refers to anything else (*e.g.* ``os.system`` through a crafted
``__reduce__``) is refused before it is called.
"""
import os
import os.path as osp
import pickle
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import scipy.sparse as sp
from torch_geometric.data import HeteroData

from .feature_files import find_feature_files, load_feature_files
from .interactions import build_data
from .registry import register_reader
from .schema import Schema, resolve_schema

def layout(folder: str = '<folder>') -> str:
    r"""The expected DiffMM folder layout, for error messages."""
    return (f'{folder}/\n'
            f'    trnMat.pkl, valMat.pkl, tstMat.pkl   pickled scipy.sparse '
            f'[num_users, num_items] matrices (non-zero = interaction)\n'
            f'    <modality>_feat.npy                  one [num_items, F] '
            f'array per modality (e.g. image_feat.npy, audio_feat.npy)')


class RefusedGlobal(pickle.UnpicklingError):
    r"""A pickle that refers to a global :class:`MatrixUnpickler` does not
    admit."""


#: NumPy functions that rebuild arrays and scalars (by module suffix).
_NUMPY_FUNCTIONS = ('_reconstruct', 'scalar', '_frombuffer')
#: Plain data types of :mod:`builtins` (containers of old sparse formats).
_PLAIN = ('object', 'dict', 'list', 'tuple', 'set', 'frozenset', 'int',
          'float', 'complex', 'bool', 'bytes', 'bytearray', 'str')
#: Helpers of old pickle protocols.
_HELPERS = (('copyreg', '_reconstructor'), ('copy_reg', '_reconstructor'),
            ('_codecs', 'encode'))


class MatrixUnpickler(pickle.Unpickler):
    r"""A restricted :class:`pickle.Unpickler` for matrix files: it admits
    only the globals needed to rebuild NumPy arrays (``ndarray``, ``dtype``
    and its subclasses, scalar types, ``_reconstruct``, ``scalar``,
    ``_frombuffer``), :mod:`scipy.sparse` matrix and array classes, plain
    built-in data types (``dict``, ``list``, ``int``, ...) and the helpers
    of old protocols (``copyreg._reconstructor``, ``_codecs.encode``). Any
    other global — a function
    such as ``os.system`` referred to by a crafted ``__reduce__``, or any
    other class — raises :class:`RefusedGlobal` before it is looked up, so
    no code of the file runs."""

    def find_class(self, module: str, name: str) -> Any:
        root = module.split('.')[0]
        if (module, name) in _HELPERS or (
                module in ('builtins', '__builtin__') and name in _PLAIN):
            return super().find_class(module, name)
        if root == 'numpy' and (name in _NUMPY_FUNCTIONS or
                                name in ('ndarray', 'dtype') or
                                name.endswith('DType') or
                                hasattr(np, name)):
            obj = super().find_class(module, name)
            if obj is np.ndarray or (isinstance(obj, type) and issubclass(
                    obj, (np.dtype, np.generic))) or (
                        name in _NUMPY_FUNCTIONS and callable(obj)
                        and getattr(obj, '__name__', '') == name):
                return obj
        elif module.startswith('scipy.sparse') and \
                name.endswith(('_matrix', '_array')):
            obj = super().find_class(module, name)
            bases = tuple(b for b in (getattr(sp, 'spmatrix', None),
                                      getattr(sp, 'sparray', None)) if b)
            if isinstance(obj, type) and issubclass(obj, bases):
                return obj
        raise RefusedGlobal(f"refused to load '{module}.{name}': only "
                            f"NumPy arrays and scipy.sparse matrices are "
                            f"allowed")


def _load_matrix(path: str) -> sp.coo_matrix:
    try:
        with open(path, 'rb') as f, warnings.catch_warnings():
            # Old pickles refer to the deprecated `scipy.sparse.coo` module:
            warnings.simplefilter('ignore', DeprecationWarning)
            mat: Any = MatrixUnpickler(f).load()
    except RefusedGlobal as e:
        raise ValueError(f'{path}: {e}; the file was not unpickled') \
            from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError,
            IndexError, TypeError, ValueError, KeyError) as e:
        raise ValueError(f'{path}: cannot unpickle a matrix '
                         f'({type(e).__name__}: {e})') from None
    if sp.issparse(mat):
        mat = sp.coo_matrix(mat)
    elif isinstance(mat, np.ndarray) and mat.ndim == 2:
        mat = sp.coo_matrix(mat)
    else:
        shape = getattr(mat, 'shape', None)
        shape = '' if shape is None else f' of shape {shape}'
        raise TypeError(f'{path}: expected a pickled scipy.sparse matrix '
                        f'[num_users, num_items], got '
                        f'{type(mat).__name__}{shape}')
    if np.issubdtype(mat.dtype, np.floating) and mat.nnz > 0:
        bad = ~np.isfinite(mat.data)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(f'{path}: non-finite entry ({mat.data[k]}) at '
                             f'(row {int(mat.row[k])}, col {int(mat.col[k])}) '
                             f'({int(bad.sum())} such entries)')
    # A COO matrix may hold the same (row, col) several times: sum them up,
    # then binarise as DiffMM does (`mat != 0`).
    mat.sum_duplicates()
    mat.eliminate_zeros()
    return mat


def read_diffmm(
    folder: Union[str, Path],
    *,
    modalities: Optional[Sequence[str]] = None,
    files: Tuple[str, str, str] = ('trnMat.pkl', 'valMat.pkl', 'tstMat.pkl'),
    drop_cold_start: bool = True,
    schema: Optional[Schema] = None,
) -> HeteroData:
    r"""Reads a dataset in the DiffMM / MMSSL folder layout: three pickled
    :mod:`scipy.sparse` matrices ``trnMat.pkl``, ``valMat.pkl``,
    ``tstMat.pkl`` of shape ``[num_users, num_items]`` (every non-zero entry
    is an interaction; duplicate COO entries are summed first, then the
    matrix is binarised as DiffMM does) plus one ``<modality>_feat.npy``
    per modality.

    .. code-block:: python

        # Datasets/tiktok/: {trn,val,tst}Mat.pkl, image_feat.npy, ...
        data = read_diffmm('Datasets/tiktok')

    ``num_users`` / ``num_items`` are the matrix shape. All checks of
    :func:`~pyg_brmrs.data.from_interactions` apply; errors name the file and
    the matrix entry. As in MMRec, held-out interactions of users without a
    training interaction are dropped with a :class:`UserWarning`: on the
    TikTok data of DiffMM (9,308 users, 6,710 items, 59,541 / 3,051 / 6,130
    train / valid / test interactions) this drops 10 rows (5 valid,
    5 test) of 10 users, leaving 59,541 / 3,046 / 6,125.

    The pickles are read with :class:`MatrixUnpickler`, a restricted
    unpickler that admits only NumPy arrays and :mod:`scipy.sparse`
    matrices: a file that refers to any other global (a crafted
    ``__reduce__`` calling ``os.system``, say) raises a
    :class:`ValueError` without running it. :mod:`scipy` must be
    importable.

    Args:
        folder (str or Path): The dataset folder.
        modalities (list of str, optional): The modalities to read; by
            default every ``<modality>_feat.npy`` in :obj:`folder`. Pass an
            empty list to read the interactions only.
        files (tuple of str, optional): The train / valid / test matrix file
            names. (default: ``('trnMat.pkl', 'valMat.pkl', 'tstMat.pkl')``)
        drop_cold_start (bool, optional): See
            :func:`~pyg_brmrs.data.from_interactions`. (default: :obj:`True`)
        schema (Schema, optional): See
            :func:`~pyg_brmrs.data.from_interactions`. (default: :obj:`None`)

    Raises:
        FileNotFoundError: if the folder, a matrix or a feature file is
            missing (the message lists what was expected).
        ValueError: if a pickle cannot be read or refers to anything but
            NumPy arrays and :mod:`scipy.sparse` matrices (nothing of it is
            run), the matrix shapes differ, an interaction appears in two
            matrices, or the features are invalid.
        TypeError: if a pickle does not hold a matrix.
    """
    folder = str(folder)
    expected = f'expected layout:\n{layout(folder)}'
    if not osp.isdir(folder):
        raise FileNotFoundError(f"read_diffmm: folder '{folder}' not found; "
                                f'{expected}')
    paths = [osp.join(folder, f) for f in files]
    missing = [p for p in paths if not osp.isfile(p)]
    if missing:
        present = sorted(os.listdir(folder))
        raise FileNotFoundError(f'read_diffmm: missing file(s) {missing} '
                                f"(files present in '{folder}': {present}); "
                                f'{expected}')
    feat_files = find_feature_files(folder, modalities, reader='read_diffmm',
                                    expected=expected)

    mats = [_load_matrix(p) for p in paths]
    shapes = [m.shape for m in mats]
    if len(set(shapes)) > 1:
        desc = ', '.join(f'{f}: {s}' for f, s in zip(files, shapes))
        raise ValueError(f'{folder}: the split matrices have different '
                         f'shapes ({desc}); all must be [num_users, '
                         f'num_items]')
    num_users, num_items = shapes[0]

    users = np.concatenate([m.row for m in mats]).astype(np.int64)
    items = np.concatenate([m.col for m in mats]).astype(np.int64)
    split = np.concatenate(
        [np.full(m.nnz, k, dtype=np.int64) for k, m in enumerate(mats)])
    if users.size == 0:
        raise ValueError(f'{folder}: no interactions (all three matrices '
                         f'{list(files)} are empty)')
    offsets = np.cumsum([0] + [m.nnz for m in mats])

    def locate(i: int) -> str:
        k = int(np.searchsorted(offsets, i, side='right') - 1)
        return (f'{files[k]} entry (row {int(users[i])}, '
                f'col {int(items[i])})')

    feats, sources = load_feature_files(feat_files)
    return resolve_schema(schema).rename(build_data(
        users, items, split, feats, num_users=num_users, num_items=num_items,
        drop_cold_start=drop_cold_start, source=folder,
        fields=('user (row) index', 'item (column) index', 'split'),
        locate=locate, num_users_reason='the matrices have this many rows',
        num_items_reason=f'the matrices {list(files)} have {num_items} '
        f'columns', feature_sources=sources))


register_reader(
    'diffmm', read_diffmm,
    detect=lambda folder: (folder / 'trnMat.pkl').is_file(),
    description='trnMat.pkl, valMat.pkl, tstMat.pkl + <modality>_feat.npy')
