r"""Reading the ``<modality>_feat.npy`` item feature files of an MMRec or
DiffMM folder."""
import os
import os.path as osp
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np

FEATURE_SUFFIX = '_feat.npy'


def find_feature_files(folder: Union[str, Path],
                       modalities: Optional[Sequence[str]] = None, *,
                       reader: Optional[str] = None, expected: str = ''
                       ) -> Dict[str, str]:
    r"""Maps modality name to its feature file in :obj:`folder`: every
    ``<modality>_feat.npy`` (sorted by name) or, when :obj:`modalities` is
    given, exactly the files of those modalities.

    Raises:
        ValueError: if a ``*_feat.npy`` entry is a folder.
        FileNotFoundError: if a requested modality has no file (the message
            lists the files expected and those found), or if, with
            :obj:`reader` (the calling reader's name, starting the message)
            and without :obj:`modalities`, the folder holds no feature file
            (the message ends with :obj:`expected`, the layout).
    """
    shown, folder = str(folder), Path(folder)
    folders = sorted(p.name for p in folder.glob('*' + FEATURE_SUFFIX)
                     if p.is_dir())
    if folders:
        raise ValueError(f"{shown}: {folders} are folders, not feature "
                         f"files (a <modality>{FEATURE_SUFFIX} must be a "
                         f"numeric .npy array)")
    found = {
        p.name[:-len(FEATURE_SUFFIX)]: str(p)
        for p in sorted(folder.glob('*' + FEATURE_SUFFIX)) if p.is_file()
        and len(p.name) > len(FEATURE_SUFFIX)
    }
    if modalities is None:
        if not found and reader is not None:
            raise FileNotFoundError(
                f"{reader}: no '*{FEATURE_SUFFIX}' feature file in "
                f"'{shown}'; {expected}\n(pass modalities=[] to read the "
                f"interactions only)")
        return found
    if isinstance(modalities, str):
        modalities = [modalities]
    missing = [m for m in modalities if m not in found]
    if missing:
        expected = [osp.join(str(folder), m + FEATURE_SUFFIX)
                    for m in missing]
        raise FileNotFoundError(
            f'feature file(s) not found: {expected} (feature files present in '
            f"'{folder}': {[osp.basename(p) for p in found.values()]})")
    return {m: found[m] for m in modalities}


def check_npy_size(path: str) -> None:
    r"""Reads the header of the ``.npy`` file :obj:`path` and raises a
    :class:`ValueError` naming the file when the shape it declares does not
    match the bytes the file holds (before anything is allocated: a header
    claiming a huge shape would otherwise ask for that much memory)."""
    try:
        with open(path, 'rb') as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = \
                    np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = \
                    np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError):
        return  # np.load reports what is wrong with the file itself
    if dtype.hasobject:
        return
    want = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = os.path.getsize(path) - offset
    if want != have:
        raise ValueError(f'{path}: the .npy header declares shape '
                         f'{tuple(shape)} of {dtype} ({want:,} bytes) but '
                         f'the file holds {have:,} bytes of data (truncated '
                         f'or corrupt)')


def load_feature_files(files: Dict[str, str]) -> Tuple[Dict[str, np.ndarray],
                                                       Dict[str, str]]:
    r"""Loads every ``.npy`` file of :obj:`files` (without pickle support).
    Returns the arrays and a modality -> file-name map for error messages.

    Raises:
        ValueError: if a file is not a readable numeric ``.npy`` array.
    """
    out: Dict[str, np.ndarray] = {}
    for m, path in files.items():
        if os.path.isdir(path):
            raise ValueError(f'{path}: is a folder, not a .npy file')
        check_npy_size(path)
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f'{path}: not a numeric .npy array ({e})') from e
        except (OSError, EOFError) as e:
            raise ValueError(f'{path}: cannot read .npy file ({e})') from e
        if not isinstance(arr, np.ndarray):
            raise ValueError(f'{path}: expected a single array, got '
                             f'{type(arr).__name__}')
        out[m] = arr
    return out, dict(files)
