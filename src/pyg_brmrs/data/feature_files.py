r"""Reading the ``<modality>_feat.npy`` item feature files of an MMRec or
DiffMM folder."""
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
        FileNotFoundError: if a requested modality has no file (the message
            lists the files expected and those found), or if, with
            :obj:`reader` (the calling reader's name, starting the message)
            and without :obj:`modalities`, the folder holds no feature file
            (the message ends with :obj:`expected`, the layout).
    """
    shown, folder = str(folder), Path(folder)
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


def load_feature_files(files: Dict[str, str]) -> Tuple[Dict[str, np.ndarray],
                                                       Dict[str, str]]:
    r"""Loads every ``.npy`` file of :obj:`files` (without pickle support).
    Returns the arrays and a modality -> file-name map for error messages.

    Raises:
        ValueError: if a file is not a readable numeric ``.npy`` array.
    """
    out: Dict[str, np.ndarray] = {}
    for m, path in files.items():
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
