r"""A PyG :class:`~torch_geometric.data.InMemoryDataset` over an MMRec
dataset folder."""
import os.path as osp
from typing import Callable, List, Optional, Sequence

from torch_geometric.data import HeteroData, InMemoryDataset

from ..utils.atomic import atomic_path
from .feature_files import FEATURE_SUFFIX, find_feature_files
from .mmrec import read_mmrec

MMREC_DATA_URL = ('https://drive.google.com/drive/folders/'
                  '13cBy1EA_saTUuXxVllKgtfci2A09jyaG')
MMREC_REPO_URL = 'https://github.com/enoche/MMRec'


class MMRecDataset(InMemoryDataset):
    r"""A multimodal recommendation dataset in the `MMRec
    <https://github.com/enoche/MMRec>`_ folder layout (*e.g.* Amazon Baby,
    Sports, Clothing, Elec), as one
    :class:`~torch_geometric.data.HeteroData` in the :mod:`pyg_brmrs`
    schema (see :func:`~pyg_brmrs.data.read_mmrec`).

    .. code-block:: text

        <root>/
            <name>/
                <name>.inter        tab-separated: userID itemID [rating]
                                    [timestamp] x_label
                image_feat.npy      [num_items, F_image]
                text_feat.npy       [num_items, F_text]
                processed/          written by this class

    The raw files are parsed once with :func:`~pyg_brmrs.data.read_mmrec`
    and cached in ``<root>/<name>/processed/``; later constructions load the
    cache without reading the raw files (pass :obj:`force_reload=True` after
    changing them). Nothing is downloaded: the public MMRec data (with image
    and text features) must be fetched by hand from the Google Drive folder
    linked in MMRec's ``data/README.md`` (:obj:`MMREC_DATA_URL`) and
    unpacked into ``<root>/<name>/``.

    .. code-block:: python

        dataset = MMRecDataset('data', 'baby')
        data = dataset[0]   # HeteroData

    Args:
        root (str): Root directory holding one folder per dataset.
        name (str): The dataset name (folder and ``.inter`` file name).
        transform (callable, optional): A function/transform that takes in a
            :class:`~torch_geometric.data.HeteroData` object and returns a
            transformed version, applied at every access. (default:
            :obj:`None`)
        pre_transform (callable, optional): As :obj:`transform`, applied
            once before saving to disk. (default: :obj:`None`)
        force_reload (bool, optional): Whether to re-process the dataset.
            (default: :obj:`False`)
        modalities (list of str, optional): The modalities to read; by
            default every ``<modality>_feat.npy`` in the folder.
        log (bool, optional): Whether to print progress while processing.
            (default: :obj:`True`)
    """
    def __init__(
        self,
        root: str,
        name: str,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        force_reload: bool = False,
        *,
        modalities: Optional[Sequence[str]] = None,
        log: bool = True,
    ) -> None:
        self.name = name
        self.modalities = None if modalities is None else sorted(modalities)
        super().__init__(str(root), transform, pre_transform,
                         force_reload=force_reload, log=log)
        self.load(self.processed_paths[0], data_cls=HeteroData)

    @property
    def raw_dir(self) -> str:
        return osp.join(self.root, self.name)

    @property
    def processed_dir(self) -> str:
        return osp.join(self.root, self.name, 'processed')

    @property
    def raw_file_names(self) -> List[str]:
        if self.modalities is not None:
            feats = [m + FEATURE_SUFFIX for m in self.modalities]
        else:
            feats = [osp.basename(p)
                     for p in find_feature_files(self.raw_dir).values()]
            if not feats:
                feats = [f'<modality>{FEATURE_SUFFIX}']
        return [f'{self.name}.inter'] + feats

    @property
    def processed_file_names(self) -> str:
        if self.modalities is None:
            return 'data.pt'
        return f"data_{'_'.join(self.modalities)}.pt"

    def download(self) -> None:
        # Called by PyG when a raw file is missing. A cached processed file is
        # enough (the raw files are not needed any more):
        if not self.force_reload and all(
                osp.isfile(p) for p in self.processed_paths):
            return
        missing = [p for p in self.raw_paths if not osp.isfile(p)]
        raise FileNotFoundError(
            f"MMRecDataset: raw file(s) missing: {missing}.\n"
            f"Expected layout:\n"
            f"  {self.root}/\n"
            f"    {self.name}/\n"
            f"      {self.name}.inter     tab-separated, header userID itemID "
            f"[rating] [timestamp] x_label (0/1/2 = train/valid/test)\n"
            f"      <modality>{FEATURE_SUFFIX}   one float [num_items, F] "
            f"array per modality, e.g. image_feat.npy, text_feat.npy\n"
            f"      processed/        (written by MMRecDataset)\n"
            f"No automatic download is attempted. The public MMRec datasets "
            f"(baby, sports, clothing, elec, with image and text features) "
            f"are in the Google Drive folder linked from MMRec's data/"
            f"README.md: {MMREC_DATA_URL} (see {MMREC_REPO_URL}); unpack "
            f"'{self.name}' into {self.raw_dir}/.")

    def process(self) -> None:
        data = read_mmrec(self.raw_dir, self.name,
                          modalities=self.modalities)
        if self.pre_transform is not None:
            data = self.pre_transform(data)
        with atomic_path(self.processed_paths[0]) as tmp:
            self.save([data], str(tmp))

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.name})'
