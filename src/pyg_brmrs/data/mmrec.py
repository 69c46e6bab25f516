r"""Reading and writing the MMRec dataset folder layout.

.. code-block:: text

    <folder>/
        <name>.inter        tab-separated, header userID itemID [rating]
                            [timestamp] x_label (0/1/2 = train/valid/test)
        image_feat.npy      [num_items, F_image]
        text_feat.npy       [num_items, F_text]
        ...                 one <modality>_feat.npy per modality
"""
import csv
import os
import warnings
import os.path as osp
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd
from torch_geometric.data import HeteroData

from ..utils.atomic import atomic_write
from .feature_files import (
    FEATURE_SUFFIX,
    find_feature_files,
    load_feature_files,
)
from .interactions import build_data
from .registry import register_reader
from .schema import ITEM, RATES, USER, Schema, feature_key, resolve_schema
from .schema import modalities as _modalities

USER_COL = 'userID'
ITEM_COL = 'itemID'
SPLIT_COL = 'x_label'
REQUIRED_COLUMNS = (USER_COL, ITEM_COL, SPLIT_COL)

def layout(folder: str = '<folder>', name: str = '<name>') -> str:
    r"""The expected MMRec folder layout, for error messages."""
    return (f'{folder}/\n'
            f'    {name}.inter      tab-separated; header userID itemID '
            f'[rating] [timestamp] x_label (0/1/2 = train/valid/test)\n'
            f'    <modality>_feat.npy  one [num_items, F] array per modality '
            f'(e.g. image_feat.npy, text_feat.npy)')


def inter_path(folder: Union[str, Path], name: str) -> str:
    r"""The path of the ``.inter`` file of dataset :obj:`name`."""
    return osp.join(str(folder), f'{name}.inter')



def _check_utf8(path: str) -> None:
    r"""Raises a :class:`ValueError` naming the file, the line and the
    byte offset of the first byte sequence that is not UTF-8."""
    with open(path, 'rb') as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode('utf-8')
            except UnicodeDecodeError as e:
                raise ValueError(
                    f"{path}, line {number}: byte 0x{raw[e.start]:02x} at "
                    f"column {e.start + 1} is not UTF-8 (the file must be "
                    f"UTF-8 text; convert it, e.g. iconv -f latin1 -t "
                    f"utf-8)") from None


def read_inter(path: Union[str, Path]) -> pd.DataFrame:
    r"""Parses an MMRec ``.inter`` file (tab-separated, with a header line)
    into a DataFrame with the columns ``userID``, ``itemID``, ``x_label``
    and ``line`` (the 1-based file line of each row). Blank lines are
    skipped; values are not validated here.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the file is empty, a line has too many fields, or
            the header lacks one of ``userID``, ``itemID``, ``x_label``.
    """
    path = str(path)
    if osp.isdir(path):
        raise ValueError(f"interaction file '{path}' is a folder, not a "
                         f"file")
    if not osp.isfile(path):
        raise FileNotFoundError(f"interaction file '{path}' not found")
    _check_utf8(path)
    try:
        df = pd.read_csv(path, sep='\t', skip_blank_lines=False,
                         quoting=csv.QUOTE_NONE)
    except pd.errors.EmptyDataError:
        raise ValueError(f'{path}: file is empty (expected a tab-separated '
                         f'header line with columns userID, itemID, x_label '
                         f'followed by one line per interaction)') from None
    except pd.errors.ParserError as e:
        raise ValueError(f'{path}: malformed line ({e}); expected '
                         f'tab-separated columns as in the header') from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        found = [str(c) for c in df.columns]
        hint = ''
        if len(found) == 1 and any(s in found[0] for s in ', ;'):
            hint = ' (is the file tab-separated?)'
        raise ValueError(f'{path}: header (line 1) lacks column(s) {missing}; '
                         f'found {found}{hint}; expected tab-separated '
                         f'columns userID, itemID, x_label (rating and '
                         f'timestamp are optional)')
    df = df[list(REQUIRED_COLUMNS)]
    lines = np.arange(2, len(df) + 2)
    blank = df.isna().all(axis=1).to_numpy()
    if blank.any():
        df, lines = df[~blank], lines[~blank]
    if len(df) == 0:
        raise ValueError(f'{path}: no interactions (the file has only a '
                         f'header line)')
    df = df.reset_index(drop=True)
    df['line'] = lines
    return df


def read_mmrec(
    folder: Union[str, Path],
    name: str,
    *,
    modalities: Optional[Sequence[str]] = None,
    drop_cold_start: bool = True,
    schema: Optional[Schema] = None,
) -> HeteroData:
    r"""Reads a dataset in the MMRec folder layout: ``<folder>/<name>.inter``
    (tab-separated with a header that contains ``userID``, ``itemID`` and
    ``x_label``; ``rating``, ``timestamp`` and other columns are ignored)
    plus one ``<modality>_feat.npy`` per modality.

    .. code-block:: python

        # data/baby/: baby.inter, image_feat.npy, text_feat.npy
        data = read_mmrec('data/baby', 'baby')
        modalities(data)                         # ['image', 'text']

    ``x_label`` is ``0`` (train), ``1`` (valid) or ``2`` (test).
    ``num_users`` is ``max(userID) + 1`` as in MMRec; ``num_items`` is the
    feature row count (``max(itemID) + 1`` when reading no features). All
    checks of :func:`~pyg_brmrs.data.from_interactions` apply, with errors
    naming the file and its 1-based line. As in MMRec, held-out rows of
    users without training interactions are dropped with a
    :class:`UserWarning` (:obj:`drop_cold_start`).

    Args:
        folder (str or Path): The dataset folder.
        name (str): The dataset name (the ``.inter`` file is
            ``<name>.inter``).
        modalities (list of str, optional): The modalities to read; by
            default every ``<modality>_feat.npy`` in :obj:`folder`. Pass an
            empty list to read the interactions only.
        drop_cold_start (bool, optional): See
            :func:`~pyg_brmrs.data.from_interactions`. (default: :obj:`True`)
        schema (Schema, optional): See
            :func:`~pyg_brmrs.data.from_interactions`. (default: :obj:`None`)

    Raises:
        FileNotFoundError: if :obj:`folder`, the ``.inter`` file or a
            feature file is missing (the message lists what was expected).
        ValueError: for invalid content (see
            :func:`~pyg_brmrs.data.from_interactions`).
    """
    folder = str(folder)
    path = inter_path(folder, name)
    expected = f'expected layout:\n{layout(folder, name)}'
    if not osp.isdir(folder):
        raise FileNotFoundError(f"read_mmrec: folder '{folder}' not found; "
                                f'{expected}')
    if osp.isdir(path):
        raise ValueError(f"read_mmrec: interaction file '{path}' is a "
                         f"folder, not a file")
    if not osp.isfile(path):
        present = sorted(f for f in os.listdir(folder)
                         if f.endswith('.inter'))
        raise FileNotFoundError(f"read_mmrec: interaction file '{path}' not "
                                f'found (.inter files present: {present}); '
                                f'{expected}')
    files = find_feature_files(folder, modalities, reader='read_mmrec',
                               expected=expected)
    df = read_inter(path)
    feats, sources = load_feature_files(files)
    lines = df['line'].to_numpy()
    schema = resolve_schema(schema)
    return schema.rename(build_data(
        df[USER_COL].to_numpy(), df[ITEM_COL].to_numpy(),
        df[SPLIT_COL].to_numpy(), feats, drop_cold_start=drop_cold_start,
        source=path, fields=(f"column '{USER_COL}'", f"column '{ITEM_COL}'",
                             f"column '{SPLIT_COL}'"),
        locate=lambda i: f'line {int(lines[i])}', feature_sources=sources))


def write_mmrec(data: HeteroData, folder: Union[str, Path],
                name: str) -> str:
    r"""Writes :obj:`data` in the MMRec folder layout read by
    :func:`read_mmrec`: ``<folder>/<name>.inter`` (tab-separated, header
    ``userID itemID x_label``; training rows first, then valid, then test)
    and one ``float32`` ``<modality>_feat.npy`` per modality. The folder is
    created if needed and existing files are replaced, each atomically (a
    temporary file renamed onto it).

    Returns:
        The path of the ``.inter`` file.
    """
    os.makedirs(str(folder), exist_ok=True)
    store = data[RATES]
    parts = []
    for code, key in ((0, 'edge_index'), (1, 'val_edge_index'),
                      (2, 'test_edge_index')):
        if key in store:
            ei = store[key].detach().cpu().numpy()
            parts.append(pd.DataFrame({
                USER_COL: ei[0],
                ITEM_COL: ei[1],
                SPLIT_COL: np.full(ei.shape[1], code, dtype=np.int64),
            }))
    df = pd.concat(parts, ignore_index=True)
    path = inter_path(folder, name)
    with atomic_write(path) as f:
        df.to_csv(f, sep='\t', index=False, lineterminator='\n')
    for m in _modalities(data):
        x = data[ITEM][feature_key(m)].detach().cpu().numpy()
        with atomic_write(osp.join(str(folder), m + FEATURE_SUFFIX),
                          'wb') as f:
            np.save(f, x.astype(np.float32, copy=False))
    # MMRec derives num_users (and, without features, num_items) from the
    # largest id, so trailing nodes without interactions cannot be stored.
    lost = []
    if int(data[USER].num_nodes) > int(df[USER_COL].max()) + 1:
        lost.append(f'users {int(df[USER_COL].max()) + 1}..'
                    f'{int(data[USER].num_nodes) - 1}')
    if not _modalities(data) and \
            int(data[ITEM].num_nodes) > int(df[ITEM_COL].max()) + 1:
        lost.append(f'items {int(df[ITEM_COL].max()) + 1}..'
                    f'{int(data[ITEM].num_nodes) - 1}')
    if lost:
        warnings.warn(f"write_mmrec: {' and '.join(lost)} have no "
                      f'interaction and cannot be represented in {path}; '
                      f'read_mmrec will see fewer nodes', UserWarning,
                      stacklevel=2)
    return path


register_reader(
    'mmrec', read_mmrec, detect=lambda folder: any(folder.glob('*.inter')),
    description='<name>.inter (userID itemID x_label) + '
    '<modality>_feat.npy')
