import os
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from pyg_brmrs.data import (
    RATES,
    MMRecDataset,
    check_data,
    from_interactions,
    make_synthetic,
    modalities,
    read_diffmm,
    read_mmrec,
    split_sizes,
    write_mmrec,
)
from conftest import require

KEYS = ('edge_index', 'val_edge_index', 'test_edge_index')
HEADER = 'userID\titemID\trating\ttimestamp\tx_label\n'


def assert_same(a, b):
    assert a['user'].num_nodes == b['user'].num_nodes
    assert a['item'].num_nodes == b['item'].num_nodes
    assert modalities(a) == modalities(b)
    for m in modalities(a):
        assert torch.equal(a['item'][f'x_{m}'], b['item'][f'x_{m}'])
    for key in KEYS:
        assert torch.equal(a[RATES][key], b[RATES][key])


def write_inter(folder, text, name='toy'):
    os.makedirs(folder, exist_ok=True)
    path = folder / f'{name}.inter'
    path.write_text(text)
    return path


def write_feat(folder, m, x):
    np.save(folder / f'{m}_feat.npy', x)


def toy(folder, rows=None, num_items=4, feats=('image', 'text')):
    r"""A valid toy MMRec folder (users 0..2, items 0..3)."""
    rows = rows if rows is not None else [
        (0, 0, 0), (0, 1, 0), (0, 2, 1), (0, 3, 2),
        (1, 1, 0), (1, 2, 2), (2, 3, 0), (2, 0, 1)]
    text = HEADER + ''.join(f'{u}\t{i}\t5.0\t1000\t{s}\n' for u, i, s in rows)
    path = write_inter(folder, text)
    for k, m in enumerate(feats):
        write_feat(folder, m, np.full((num_items, 2 + k), k, np.float32))
    return path


# MMRec ######################################################################


def test_read_mmrec_toy(tmp_path):
    toy(tmp_path)
    data = read_mmrec(tmp_path, 'toy')
    check_data(data)
    assert data['user'].num_nodes == 3 and data['item'].num_nodes == 4
    assert modalities(data) == ['image', 'text']
    assert data['item'].x_text.shape == (4, 3)
    assert torch.equal(data[RATES].edge_index,
                       torch.tensor([[0, 0, 1, 2], [0, 1, 1, 3]]))
    assert torch.equal(data[RATES].val_edge_index,
                       torch.tensor([[0, 2], [2, 0]]))
    assert torch.equal(data[RATES].test_edge_index,
                       torch.tensor([[0, 1], [3, 2]]))
    only = read_mmrec(tmp_path, 'toy', modalities=['text'])
    assert modalities(only) == ['text']
    bare = read_mmrec(tmp_path, 'toy', modalities=[])
    assert modalities(bare) == [] and bare['item'].num_nodes == 4


def test_read_mmrec_minimal_header_and_blank_lines(tmp_path):
    write_inter(tmp_path, 'itemID\tx_label\tuserID\n1\t0\t0\n\n0\t2\t0\n'
                '\n')
    data = read_mmrec(tmp_path, 'toy', modalities=[])
    assert split_sizes(data) == [1, 0, 1]
    # Line numbers stay right after a blank line:
    write_inter(tmp_path, 'userID\titemID\tx_label\n0\t1\t0\n\n0\t-1\t0\n')
    with pytest.raises(ValueError, match=r"toy.inter: column 'itemID', "
                       r'line 4: id -1 is negative'):
        read_mmrec(tmp_path, 'toy', modalities=[])


def test_mmrec_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"folder .*nope' not found; "
                       r'expected layout'):
        read_mmrec(tmp_path / 'nope', 'toy')
    with pytest.raises(FileNotFoundError, match=r"(?s)toy.inter' not found.*"
                       r'expected layout:.*/\n    toy.inter'):
        read_mmrec(tmp_path, 'toy')
    write_inter(tmp_path, 'userID\titemID\tx_label\n0\t0\t0\n')
    with pytest.raises(FileNotFoundError, match=r"no '\*_feat.npy' feature "
                       r'file'):
        read_mmrec(tmp_path, 'toy')
    write_feat(tmp_path, 'image', np.zeros((1, 2)))
    with pytest.raises(FileNotFoundError, match=r"text_feat.npy'\] \(feature "
                       r"files present .*\['image_feat.npy'\]"):
        read_mmrec(tmp_path, 'toy', modalities=['image', 'text'])


@pytest.mark.parametrize('text, match', [
    ('', r'toy.inter: file is empty'),
    ('userID\titemID\tx_label\n', r'toy.inter: no interactions \(the file '
     r'has only a header'),
    ('userID\titemID\trating\n0\t0\t1\n', r"toy.inter: header \(line 1\) "
     r"lacks column\(s\) \['x_label'\]; found \['userID', 'itemID', "
     r"'rating'\]"),
    ('userID,itemID,x_label\n0,0,0\n', r"lacks column.*is the file "
     r'tab-separated\?'),
    ('0\t0\t0\n1\t1\t0\n', r"header \(line 1\) lacks column"),
    ('userID\titemID\tx_label\n0\t0\t0\n1\tabc\t0\n', r"column 'itemID', "
     r"line 3: 'abc' is not an integer id"),
    ('userID\titemID\tx_label\n0\t0\t0\n1.5\t1\t0\n', r"column 'userID', "
     r'line 3: 1.5 is not an integer id'),
    ('userID\titemID\tx_label\n0\t0\t0\n-2\t1\t0\n', r"column 'userID', "
     r'line 3: id -2 is negative'),
    ('userID\titemID\tx_label\n0\t0\t0\n0\t1\t7\n', r"column 'x_label', "
     r'line 3: unknown split label 7'),
    ('userID\titemID\tx_label\n0\t0\t0\n0\t1\tfoo\n', r"column 'x_label', "
     r"line 3: unknown split label 'foo'"),
    ('userID\titemID\tx_label\n0\t0\t0\n0\t1\n', r"column 'x_label', "
     r'line 3: split label is missing'),
    ('userID\titemID\tx_label\n0\t0\t0\n1\t1\t0\n0\t0\t2\n',
     r'toy.inter: duplicate interaction \(user 0, item 0\) at line 2 and '
     r'line 4'),
    ('userID\titemID\tx_label\n0\t0\t0\n1\t1\t0\t9\n',
     r'toy.inter: malformed line .*line 3'),
    ('userID\titemID\tx_label\n0\t0\t0\n1\t9\t0\n', r"column 'itemID', "
     r'line 3: id 9 is out of range, the features .* have 4 rows'),
])
def test_mmrec_bad_inter_files(tmp_path, text, match):
    write_inter(tmp_path, text)
    write_feat(tmp_path, 'image', np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match=match):
        read_mmrec(tmp_path, 'toy')


@pytest.mark.bad_input
def test_mmrec_inter_encoding_and_folder_are_named(tmp_path):
    (tmp_path / 'toy.inter').write_bytes(
        'userID\titemID\tx_label\n0\t0\t0\n1\t1\t0 caf\u00e9\n'
        .encode('latin-1'))
    write_feat(tmp_path, 'image', np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"toy.inter, line 3: byte 0xe9 at "
                       r"column 10 is not UTF-8"):
        read_mmrec(tmp_path, 'toy')
    (tmp_path / 'toy.inter').unlink()
    (tmp_path / 'toy.inter').mkdir()
    with pytest.raises(ValueError, match=r"toy.inter' is a folder, not a "
                       r"file"):
        read_mmrec(tmp_path, 'toy')


def test_mmrec_bad_feature_files(tmp_path):
    toy(tmp_path, feats=())
    x = np.zeros((4, 2), np.float32)
    x[3, 1] = np.inf
    write_feat(tmp_path, 'image', x)
    with pytest.raises(ValueError, match=r"image_feat.npy: features of "
                       r"modality 'image' have a non-finite value \(inf\) at "
                       r'row 3, column 1'):
        read_mmrec(tmp_path, 'toy')
    write_feat(tmp_path, 'image', np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"image_feat.npy: features of "
                       r"modality 'image' must be 2-D"):
        read_mmrec(tmp_path, 'toy')
    write_feat(tmp_path, 'image', np.zeros((4, 2), np.float32))
    write_feat(tmp_path, 'text', np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError, match=r"different numbers of feature rows "
                       r"\('image': 4, 'text': 5\)"):
        read_mmrec(tmp_path, 'toy')
    (tmp_path / 'text_feat.npy').write_bytes(b'not an npy file')
    with pytest.raises(ValueError, match=r'text_feat.npy: (not a numeric|'
                       r'cannot read)'):
        read_mmrec(tmp_path, 'toy')


def test_mmrec_cold_start_warning(tmp_path):
    toy(tmp_path, rows=[(0, 0, 0), (0, 1, 2), (1, 2, 1), (1, 3, 2),
                        (2, 0, 2)])
    with pytest.warns(UserWarning, match=r'toy.inter: dropped 3 held-out '
                      r'interaction\(s\) \(1 valid, 2 test\) of 2 cold-start'):
        data = read_mmrec(tmp_path, 'toy')
    assert split_sizes(data) == [1, 0, 1]
    assert data['user'].num_nodes == 3


def test_mmrec_round_trip(tmp_path):
    data = make_synthetic(120, 60, seed=1)
    path = write_mmrec(data, tmp_path / 'syn', 'syn')
    assert os.path.basename(path) == 'syn.inter'
    assert sorted(os.listdir(tmp_path / 'syn')) == [
        'image_feat.npy', 'syn.inter', 'text_feat.npy']
    df = pd.read_csv(path, sep='\t')
    assert list(df.columns) == ['userID', 'itemID', 'x_label']
    assert_same(read_mmrec(tmp_path / 'syn', 'syn'), data)


def test_write_mmrec_warns_about_unrepresentable_users(tmp_path):
    data = from_interactions([0, 1], [0, 1], num_users=5,
                             features={'a': np.zeros((3, 2))})
    with pytest.warns(UserWarning, match=r'users 2..4 have no interaction'):
        write_mmrec(data, tmp_path, 'x')
    assert read_mmrec(tmp_path, 'x')['user'].num_nodes == 2


# MMRecDataset ###############################################################


def test_dataset_round_trip_cache_and_reload(tmp_path):
    data = make_synthetic(120, 60, seed=2)
    write_mmrec(data, tmp_path / 'syn', 'syn')
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # e.g. PyG's weights-only fallback
        dataset = MMRecDataset(str(tmp_path), 'syn', log=False)
    assert len(dataset) == 1 and repr(dataset) == 'MMRecDataset(syn)'
    assert_same(dataset[0], data)
    assert os.path.isfile(tmp_path / 'syn' / 'processed' / 'data.pt')

    # Change the raw file: the cache is used, the raw file not re-read.
    inter = tmp_path / 'syn' / 'syn.inter'
    lines = inter.read_text().splitlines()
    inter.write_text('\n'.join(lines[:-5]) + '\n')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        cached = MMRecDataset(str(tmp_path), 'syn', log=False)
    assert_same(cached[0], data)
    fresh = MMRecDataset(str(tmp_path), 'syn', force_reload=True, log=False)
    assert sum(split_sizes(fresh[0])) == sum(split_sizes(data)) - 5
    assert_same(fresh[0], read_mmrec(tmp_path / 'syn', 'syn'))

    # Without any raw file the cache is still enough:
    os.remove(inter)
    assert_same(MMRecDataset(str(tmp_path), 'syn', log=False)[0], fresh[0])
    with pytest.raises(FileNotFoundError, match=r'syn.inter'):
        MMRecDataset(str(tmp_path), 'syn', force_reload=True, log=False)


def test_dataset_transforms_and_modalities(tmp_path):
    data = make_synthetic(80, 40, seed=3)
    write_mmrec(data, tmp_path / 'syn', 'syn')

    def drop_val(d):
        d[RATES].val_edge_index = d[RATES].val_edge_index[:, :0]
        return d

    ds = MMRecDataset(str(tmp_path), 'syn', pre_transform=drop_val,
                      modalities=['text'], log=False)
    assert modalities(ds[0]) == ['text']
    assert ds[0][RATES].val_edge_index.size(1) == 0
    assert os.path.isfile(tmp_path / 'syn' / 'processed' / 'data_text.pt')


def test_dataset_cache_keeps_non_tensor_attributes(tmp_path):
    # Re-indexed ids are stored as a list (strings) or a long tensor, which
    # PyG's weights-only loading accepts without a warning.
    write_mmrec(make_synthetic(80, 40, seed=4), tmp_path / 'syn', 'syn')

    def add_raw_ids(d):
        d['user'].raw_id = [f'u{k}' for k in range(d['user'].num_nodes)]
        d['item'].raw_id = torch.arange(d['item'].num_nodes) * 10
        return d

    for _ in range(2):  # process, then load from the cache
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            ds = MMRecDataset(str(tmp_path), 'syn', pre_transform=add_raw_ids,
                              log=False)
        assert ds[0]['user'].raw_id[:2] == ['u0', 'u1']
        assert torch.equal(ds[0]['item'].raw_id, torch.arange(40) * 10)


def test_dataset_missing_raw_files(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        MMRecDataset(str(tmp_path), 'baby', log=False)
    msg = str(info.value)
    assert 'baby.inter' in msg and '<modality>_feat.npy' in msg
    assert 'Expected layout' in msg and 'processed/' in msg
    assert 'drive.google.com/drive/folders/' \
        '13cBy1EA_saTUuXxVllKgtfci2A09jyaG' in msg
    assert 'No automatic download' in msg


# DiffMM #####################################################################


def save_pickle(path, obj):
    with open(path, 'wb') as f:
        pickle.dump(obj, f)


def diffmm_folder(folder, shape=(3, 4), feats=True):
    trn = sp.coo_matrix(([1.0, 1.0, 1.0, 1.0], ([0, 0, 1, 2], [0, 1, 1, 3])),
                        shape=shape)
    val = sp.coo_matrix(([1.0, 1.0], ([0, 2], [2, 0])), shape=shape)
    tst = sp.coo_matrix(([1.0, 1.0], ([0, 1], [3, 2])), shape=shape)
    for name, mat in zip(['trnMat', 'valMat', 'tstMat'], [trn, val, tst]):
        save_pickle(folder / f'{name}.pkl', mat)
    if feats:
        write_feat(folder, 'image', np.ones((shape[1], 2), np.float16))
        write_feat(folder, 'audio', np.ones((shape[1], 3), np.float64))
    return trn, val, tst


def test_read_diffmm_toy_matches_mmrec(tmp_path):
    diffmm_folder(tmp_path)
    data = read_diffmm(tmp_path)
    check_data(data)
    assert modalities(data) == ['audio', 'image']
    assert data['item'].x_image.dtype == torch.float32
    toy(tmp_path / 'mmrec', feats=())
    for m in ['image', 'audio']:
        os.symlink(tmp_path / f'{m}_feat.npy',
                   tmp_path / 'mmrec' / f'{m}_feat.npy')
    assert_same(data, read_mmrec(tmp_path / 'mmrec', 'toy'))


def test_diffmm_duplicate_coo_entries_are_summed_and_binarised(tmp_path):
    diffmm_folder(tmp_path)
    trn = sp.coo_matrix(([1.0, 1.0, 2.0, 1.0, 3.0],
                         ([0, 0, 0, 1, 2], [0, 0, 1, 1, 3])), shape=(3, 4))
    save_pickle(tmp_path / 'trnMat.pkl', trn)
    save_pickle(tmp_path / 'valMat.pkl', sp.csr_matrix(
        ([1.0, 1.0], ([0, 2], [2, 0])), shape=(3, 4)))
    data = read_diffmm(tmp_path)
    assert torch.equal(data[RATES].edge_index,
                       torch.tensor([[0, 0, 1, 2], [0, 1, 1, 3]]))
    assert split_sizes(data) == [4, 2, 2]


def test_diffmm_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match='folder .* not found'):
        read_diffmm(tmp_path / 'nope')
    with pytest.raises(FileNotFoundError, match=r"(?s)missing file\(s\) .*"
                       r'trnMat.pkl.*valMat.pkl.*tstMat.pkl.*expected layout'):
        read_diffmm(tmp_path)
    diffmm_folder(tmp_path, feats=False)
    with pytest.raises(FileNotFoundError, match=r"no '\*_feat.npy' feature"):
        read_diffmm(tmp_path)
    assert split_sizes(read_diffmm(tmp_path, modalities=[])) == [4, 2, 2]

    write_feat(tmp_path, 'image', np.ones((5, 2), np.float32))
    with pytest.raises(ValueError, match=r"image_feat.npy: features of "
                       r"modality 'image' have 5 rows but there are 4 items "
                       r"\(the matrices .* have 4 columns\)"):
        read_diffmm(tmp_path)
    x = np.ones((4, 2), np.float16)
    x[1, 0] = np.nan
    write_feat(tmp_path, 'image', x)
    with pytest.raises(ValueError, match=r'non-finite value \(nan\) at row 1, '
                       r'column 0'):
        read_diffmm(tmp_path)
    write_feat(tmp_path, 'image', np.ones((4, 2), np.float32))

    save_pickle(tmp_path / 'valMat.pkl', sp.coo_matrix((3, 5)))
    with pytest.raises(ValueError, match=r'different shapes \(trnMat.pkl: '
                       r'\(3, 4\), valMat.pkl: \(3, 5\), tstMat.pkl: '
                       r'\(3, 4\)\)'):
        read_diffmm(tmp_path)

    save_pickle(tmp_path / 'valMat.pkl', sp.coo_matrix(
        ([1.0], ([1], [1])), shape=(3, 4)))
    with pytest.raises(ValueError, match=r'duplicate interaction \(user 1, '
                       r'item 1\) at trnMat.pkl entry \(row 1, col 1\) and '
                       r'valMat.pkl entry \(row 1, col 1\)'):
        read_diffmm(tmp_path)

    save_pickle(tmp_path / 'valMat.pkl', {'not': 'a matrix'})
    with pytest.raises(TypeError, match=r'valMat.pkl: expected a pickled '
                       r'scipy.sparse matrix'):
        read_diffmm(tmp_path)
    (tmp_path / 'valMat.pkl').write_bytes(b'garbage')
    with pytest.raises(ValueError, match=r'valMat.pkl: cannot unpickle'):
        read_diffmm(tmp_path)
    save_pickle(tmp_path / 'valMat.pkl', sp.coo_matrix(
        ([np.nan], ([1], [2])), shape=(3, 4)))
    with pytest.raises(ValueError, match=r'valMat.pkl: non-finite entry '
                       r'\(nan\) at \(row 1, col 2\)'):
        read_diffmm(tmp_path)
    for name in ['trnMat', 'valMat', 'tstMat']:
        save_pickle(tmp_path / f'{name}.pkl', sp.coo_matrix((3, 4)))
    with pytest.raises(ValueError, match='no interactions'):
        read_diffmm(tmp_path)


# Real data ##################################################################


def test_real_baby_from_tsv(shared_data):
    path = require(shared_data / 'amazon-baby-jclaf' /
                   'baby_jclaf_derived.tsv')
    df = pd.read_csv(path, sep='\t')
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # every Baby user has training data
        data = from_interactions(df)
    check_data(data)
    assert data['user'].num_nodes == 19445
    assert data['item'].num_nodes == 7050
    assert split_sizes(data) == [118551, 20559, 21682]


# TikTok as shipped by DiffMM: 59,541 / 3,051 / 6,130 interactions; 10 users
# have held-out but no training interactions, so the documented cold-start
# rule drops 10 rows (5 valid, 5 test): 59,541 / 3,046 / 6,125 remain.
TIKTOK_SIZES = [59541, 3051 - 5, 6130 - 5]


def test_real_tiktok_diffmm(shared_data):
    folder = require(shared_data / 'tiktok-diffmm')
    with pytest.warns(UserWarning, match=r'dropped 10 held-out '
                      r'interaction\(s\) \(5 valid, 5 test\) of 10 '
                      r'cold-start'):
        data = read_diffmm(folder)
    check_data(data)
    assert data['user'].num_nodes == 9308
    assert data['item'].num_nodes == 6710
    assert split_sizes(data) == TIKTOK_SIZES
    assert modalities(data) == ['audio', 'image']
    for m in ['audio', 'image']:
        x = data['item'][f'x_{m}']
        assert x.shape == (6710, 128) and x.dtype == torch.float32
    kept = read_diffmm(folder, drop_cold_start=False)
    assert split_sizes(kept) == [59541, 3051, 6130]


def test_real_tiktok_inter_matches_diffmm(shared_data, tmp_path):
    inter = require(shared_data / 'mmhcl-lattice-inter' / 'tiktok.inter')
    folder = require(shared_data / 'tiktok-diffmm')
    os.symlink(inter, tmp_path / 'tiktok.inter')
    for m in ['audio', 'image']:
        os.symlink(folder / f'{m}_feat.npy', tmp_path / f'{m}_feat.npy')
    with pytest.warns(UserWarning, match='dropped 10 held-out'):
        a = read_mmrec(tmp_path, 'tiktok')  # no rating/timestamp columns
    with pytest.warns(UserWarning, match='dropped 10 held-out'):
        b = read_diffmm(folder)
    assert_same(a, b)


@pytest.mark.bad_input
def test_npy_header_claiming_a_huge_shape_is_named_before_allocating(
        tmp_path):
    toy(tmp_path, feats=())
    path = tmp_path / 'image_feat.npy'
    np.save(path, np.zeros((4, 2), np.float32))
    raw = path.read_bytes()
    # rewrite the declared shape: 4 x 2 -> a terabyte-size array
    raw = raw.replace(b"(4, 2)", b"(4000000000, 64)".ljust(6), 1)
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=r"image_feat.npy: the .npy header "
                       r"declares shape \(4000000000, 64\)"):
        read_mmrec(tmp_path, 'toy')
    path.unlink()
    path.mkdir()
    with pytest.raises(ValueError, match=r"\['image_feat.npy'\] are "
                       r"folders, not feature files"):
        read_mmrec(tmp_path, 'toy')


@pytest.mark.bad_input
def test_a_huge_user_id_is_named_before_allocating(tmp_path):
    write_inter(tmp_path, 'userID\titemID\tx_label\n0\t0\t0\n1\t1\t0\n'
                '1000000000\t2\t0\n2\t3\t0\n')
    write_feat(tmp_path, 'image', np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"column 'userID', line 4: id "
                       r"1000000000 is far beyond the 4 distinct user ids"):
        read_mmrec(tmp_path, 'toy')
