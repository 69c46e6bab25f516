r"""The user–user and item–item graphs of BR-MRS (Eq. 1), built exactly,
without dense :math:`n \times n` matrices."""
import warnings
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.data.datapipes import functional_transform
from torch_geometric.transforms import BaseTransform

from ..data.schema import ITEM, ITEM_SIM, RATES, USER, USER_SIM, Schema
from ..data.schema import feature_key, modalities, resolve_schema
from ..utils.checks import (
    check_choice,
    check_float,
    check_int,
    check_modality_weights,
)
from ._ann import (
    ann_cosine_topk,
    check_knn_kwargs,
    combined_ann_topk,
    modality_candidates,
)
from ._combined import combined_topk, overlap_block, similarity_blocks
from ._cooccurrence import (
    COOCCURRENCE_MODES,
    binary_csr,
    cooccurrence_topk,
    rearm_padding,
)
from .similarity import (
    NORMALIZATIONS,
    cosine_topk,
    normalize_similarity,
    profile_cosine_topk,
    user_profile,
)

Part = Tuple[Tensor, Tensor, Tensor]  # (centre i, neighbour j, weight)

TOPK_MODES = ('per_part', 'combined')
#: Paddings of short co-occurrence lists (:obj:`None`: none).
PADDINGS = ('rearm',)


@functional_transform('homogeneous_knn_graph')
class HomogeneousKNNGraph(BaseTransform):
    r"""Adds the item–item graph ``('item', 'similar', 'item')`` and the
    user–user graph ``('user', 'similar', 'user')`` of BR-MRS (Eq. 1, with the
    construction of REARM, ACM MM'25) to a
    :class:`~torch_geometric.data.HeteroData` in the :mod:`pyg_brmrs` schema
    (functional name: :obj:`homogeneous_knn_graph`).

    For each node type, the weight of the edge :math:`j \to i` is

    .. math::
        e_{ij} = \alpha \, c_{ij} + (1 - \alpha) \sum_m \beta_m \, s^{(m)}_{ij},

    where :math:`c_{ij}` is the normalised co-occurrence weight and
    :math:`s^{(m)}_{ij}` the normalised cosine similarity of modality
    :math:`m`, each of them non-zero only for the :math:`j` in the
    *own* top-:math:`k` list of :math:`i` of that part; the edge set is the
    union of the kept lists, and a pair kept by several parts gets the sum of
    its weighted parts. A part whose coefficient (:math:`\alpha`,
    :math:`(1-\alpha)\beta_m`) is zero is not computed and adds no edges.

    **Co-occurrence** (training interactions only). With
    :math:`\mathcal{N}_i` the training users of item :math:`i` (the training
    items of user :math:`i` for the user graph) and :math:`n_{ij} =
    |\mathcal{N}_i \cap \mathcal{N}_j|` (computed as the sparse products
    :math:`\mathbf{A}^{\top}\mathbf{A}` and :math:`\mathbf{A}\mathbf{A}^{\top}`
    of the binary training matrix; duplicate interactions count once), the
    candidates of :math:`i` are the :math:`j \ne i` with :math:`n_{ij} > 0`
    (:math:`j = i` too if :obj:`loop`, with :math:`n_{ii} =
    |\mathcal{N}_i|`). :math:`K_i` keeps the first :math:`k` of them by score
    descending, then index ascending; the score is :math:`n_{ij}`, or for
    :obj:`cooccurrence="jaccard"` the Jaccard index :math:`J_{ij} = n_{ij} /
    |\mathcal{N}_i \cup \mathcal{N}_j|`, for :obj:`"overlap"` the overlap
    coefficient :math:`O_{ij} = n_{ij} / \min(|\mathcal{N}_i|,
    |\mathcal{N}_j|)`. Then, for :math:`j \in K_i`,

    * :obj:`"softmax"` (REARM): :math:`c_{ij} = e^{n_{ij}} / \sum_{l \in K_i}
      e^{n_{il}}`,
    * :obj:`"count"`: :math:`c_{ij} = n_{ij} / \sum_{l \in K_i} n_{il}`,
    * :obj:`"jaccard"`: :math:`c_{ij} = J_{ij} / \sum_{l \in K_i} J_{il}`,
    * :obj:`"overlap"`: :math:`c_{ij} = O_{ij} / \sum_{l \in K_i} O_{il}`.

    By default co-occurrence is never invented: a node with fewer than
    :math:`k` co-occurring nodes keeps only those, and a node with none
    (e.g. an item without training users) gets no co-occurrence edge, only
    its similarity edges; :obj:`padding="rearm"` pads them as REARM does
    (below).

    **Similarity.** Item :math:`i` has the feature
    :math:`\mathbf{x}^{(m)}_i = ` ``data['item'][f'x_{m}'][i]``; user
    :math:`u` has the profile :math:`\mathbf{p}^{(m)}_u` = the mean of the
    features of its *training* items (validation and test interactions are
    never read). A node whose vector is all zero — in particular a user
    without training items — has no direction: it gets no similarity edges
    in that modality and is nobody's similarity neighbour. Among the
    :math:`n'` non-zero nodes, :math:`i` keeps the top
    :math:`\min(k, n' - 1)` by cosine similarity (self excluded unless
    :obj:`loop`; :math:`\min(k, n')` then), ties broken by the smaller index
    (exact ties of the float32 values, *e.g.* duplicate feature rows). The
    similarity is computed :obj:`chunk_size` rows at a time (one
    ``[chunk, n]`` matrix product and :func:`torch.topk` per block), so peak
    memory is :math:`O(\text{chunk} \cdot n + n \cdot (k + F))`. For users
    with wide features (:math:`|I| F + 64\,|O| < |U| F`, e.g. 4096-d image
    features on Amazon data) the block is computed in the factored form
    :math:`(\hat{\mathbf{P}}_c \mathbf{X}^{\top}) \hat{\mathbf{A}}^{\top}`
    (:math:`\hat{\mathbf{A}}`: training matrix with rows scaled by
    :math:`1/\|\mathbf{p}_u\|`), which needs about :math:`|I| / |U|` of the
    multiply-adds of :math:`\hat{\mathbf{P}}\hat{\mathbf{P}}^{\top}` and
    never materialises the ``[|U|, F]`` profiles; both forms are exact up to
    float32 rounding. Weights:

    * :obj:`normalization="sym"` (REARM): :math:`s_{ij} = \cos_{ij} /
      \sqrt{d_i d_j}` with :math:`d_i` the number of entries kept in row
      :math:`i` (the degree of the *binary* kNN adjacency, exactly as REARM's
      ``get_knn_adj_mat``; every non-zero node keeps the same number of
      entries, so this is :math:`\cos_{ij} / \min(k, n' - 1)`),
    * :obj:`normalization="none"`: :math:`s_{ij} = \cos_{ij}`.

    Similarity weights may be zero or negative (negative cosines).

    **Combined top-k** (:obj:`topk="combined"`, Eq. 1 as the paper writes
    it). Instead of a list per part, row :math:`i` keeps the top-:math:`k`
    of the combined weight computed *before* any normalisation,

    .. math::
        e_{ij} = \alpha \, o_{ij} + (1 - \alpha) \sum_m \beta_m
        \cos_m(i, j),

    with the overlap :math:`o_{ij} = J_{ij}` (the Jaccard index) for
    :obj:`cooccurrence="jaccard"`, :math:`o_{ij} = O_{ij}` (the overlap
    coefficient) for :obj:`"overlap"` and the raw count :math:`n_{ij}`
    otherwise (the paper's "overlap" admits all three readings), and :math:`\cos_m(i, j) = 0` when either vector is zero. The
    candidates are the :math:`j` with :math:`e_{ij} > 0` (:math:`j \ne i`
    unless :obj:`loop`); ties go to the smaller index. The kept weights are
    then normalised as :obj:`normalization` says (:obj:`"sym"`:
    :math:`e_{ij} / \sqrt{d_i d_j}` with :math:`d_i` the number of entries
    kept in row :math:`i`; :obj:`"none"`: :math:`e_{ij}`). Each block of
    :obj:`chunk_size` rows is one dense ``[chunk, n]`` matrix (the sum of
    the cosine blocks and of the sparse overlap block), so memory stays
    :math:`O(\text{chunk} \cdot n)`.

    **Approximate similarity** (:obj:`knn="faiss"`, for catalogues where
    the exact :math:`O(n^2 F)` products are too slow; needs
    ``pip install 'pyg-brmrs[ann]'``). The cosine top-:math:`k` of every
    modality comes from a faiss inner-product index over the unit rows
    (item features, or the users' profiles :math:`\mathbf{A}\mathbf{X}`,
    materialised ``[|U|, F]``): IVF-Flat by default, HNSW or exact Flat
    through :obj:`knn_kwargs` (``index``, ``nlist``, ``nprobe``,
    ``hnsw_m``, ``ef_construction``, ``ef_search``, ``train_size``,
    ``query_batch``, ``gpu``, ``seed``, ``target_recall``,
    ``recall_sample``; see
    :func:`pyg_brmrs.transforms._ann.check_knn_kwargs`). The :math:`k + 1`
    proposals of a row are re-scored exactly and cut with the same
    tie-break, so a list differs from the exact one only by the true
    neighbours the index missed. Before searching, the index's breadth
    (IVF ``nprobe``, HNSW ``ef_search``) is doubled until the recall of
    the exact top-:math:`k` estimated on 1,000 seeded query rows reaches
    ``target_recall`` (0.95 by default; :obj:`None` keeps the breadth as
    given); the choice and the estimate are kept in :attr:`ann_report`.
    Weights are
    exact cosines. With :obj:`topk="combined"` the candidates of row :math:`i` are
    the union of every modality's proposals and of the :math:`j` with
    :math:`o_{ij} > 0`, each scored exactly by the combined weight (exact
    with one modality; with several, a :math:`j` that is in no modality's
    list and shares no interaction with :math:`i` is missed). The
    co-occurrence part is the same sparse, chunked computation as with
    :obj:`knn="exact"`. Memory is :math:`O(n F)` for the index plus
    :math:`O(n k)` candidates, never a ``[chunk, n]`` block.

    **Output.** ``edge_index`` ``[2, E]`` follows PyG's ``knn_graph`` with
    ``flow="source_to_target"``: ``edge_index[1]`` is the centre node
    :math:`i` whose list the edge belongs to and ``edge_index[0]`` the
    neighbour :math:`j`, so a :class:`~torch_geometric.nn.conv.MessagePassing`
    layer with ``aggr="add"`` computes :math:`\mathbf{h}_i = \sum_j e_{ij}
    \mathbf{x}_j`. Edges are sorted by (target, source); ``edge_weight`` is
    float32 ``[E]``. The graph is directed (:math:`e_{ij} \ne e_{ji}` in
    general). Everything runs on the device of the training edges.

    **REARM's construction** is :obj:`topk="per_part"`,
    :obj:`cooccurrence="softmax"`, :obj:`normalization="sym"`,
    :obj:`loop="similarity"` (the node itself is in its similarity
    top-:math:`k`, as the top cosine, but not in its co-occurrence list)
    and :obj:`padding="rearm"` (short co-occurrence lists padded with
    random repeats, empty ones with the most popular nodes:
    :func:`~pyg_brmrs.transforms.rearm_padding`, drawn with
    :obj:`seed`). What still differs: REARM's ties are broken by
    :func:`torch.topk`'s unspecified order (here: the smaller index), it
    stores zero-weight edges of a modality with :math:`\beta_m = 0`, and
    a user without training items has a NaN profile there (here: no
    similarity edges).

    .. code-block:: python

        transform = HomogeneousKNNGraph(
            k_item=10, k_user=40, alpha_item=0.2, alpha_user=0.4,
            modality_weights_item={'image': 0.0, 'text': 1.0},
            modality_weights_user={'image': 0.2, 'text': 0.8})
        data = transform(data)
        data['item', 'similar', 'item'].edge_index   # [2, E_item]
        data['user', 'similar', 'user'].edge_weight  # [E_user]

    **Order of transforms.** The graphs are built from the training edges
    ``edge_index`` only; data split by :class:`~torch_geometric.transforms.
    RandomLinkSplit` is folded first with
    :func:`~pyg_brmrs.data.from_link_split` (which refuses data that already
    carries a kNN graph). A call on data without ``val_edge_index`` /
    ``test_edge_index`` warns that a later split would hold out pairs the
    graphs have seen. Apply :class:`~torch_geometric.transforms.ToUndirected`
    *before* this transform: after it, it would add the reverse of every
    (directed, per-row top-:math:`k`) kNN edge and sum the duplicates.

    Args:
        k_item (int): Neighbours per item in each part (co-occurrence and
            every modality); :obj:`0` skips the item graph. (default:
            :obj:`10`)
        k_user (int): Neighbours per user; :obj:`0` skips the user graph.
            (default: :obj:`40`)
        alpha_item (float): Co-occurrence weight :math:`\alpha` of the item
            graph in :math:`[0, 1]` (:obj:`0`: similarity only, :obj:`1`:
            co-occurrence only). (default: :obj:`0.2`)
        alpha_user (float): Co-occurrence weight of the user graph.
            (default: :obj:`0.4`)
        modality_weights_item (Mapping[str, float], optional): Modality
            :math:`\to \beta_m` for the item graph. The weights must be
            non-negative and sum to 1 (within :math:`10^{-6}`; they are not
            re-normalised); modalities left out get :math:`\beta_m = 0`.
            :obj:`None` gives every modality of the data the weight
            :math:`1/M`. (default: :obj:`None`)
        modality_weights_user (Mapping[str, float], optional): The same for
            the user graph. (default: :obj:`None`)
        cooccurrence (str): :obj:`"softmax"`, :obj:`"count"`,
            :obj:`"jaccard"` or :obj:`"overlap"`, see above.
            (default: :obj:`"softmax"`)
        normalization (str): :obj:`"sym"` or :obj:`"none"`, see above.
            (default: :obj:`"sym"`)
        loop (bool or str): Whether a node may be its own neighbour in
            every part (:obj:`True`), in none (:obj:`False`), or only in
            its similarity lists (:obj:`"similarity"`, REARM; not with
            :obj:`topk="combined"`). (default: :obj:`False`)
        chunk_size (int, optional): Rows per block of the similarity and
            co-occurrence products; :obj:`None` processes all rows at once
            (:math:`O(n^2)` memory). (default: :obj:`1024`)
        topk (str): :obj:`"per_part"` (a top-:math:`k` list per part, the
            union kept, as REARM) or :obj:`"combined"` (the top-:math:`k` of
            the combined weight, see above). (default: :obj:`"per_part"`)
        knn (str): :obj:`"exact"` (dense blocks) or :obj:`"faiss"` (an
            approximate index, see above). (default: :obj:`"exact"`)
        knn_kwargs (Mapping[str, Any], optional): Index parameters for
            :obj:`knn="faiss"` (keys above; unknown keys are an error).
            (default: :obj:`None`)
        schema (Schema, optional): The node, edge and feature names of the
            input (:class:`~pyg_brmrs.data.Schema`); the graphs are added
            as ``(item_type, 'similar', item_type)`` and ``(user_type,
            'similar', user_type)``. (default: :obj:`None`, the canonical
            names)
        padding (str, optional): :obj:`"rearm"` pads the co-occurrence
            lists shorter than :math:`k` as REARM does (see above; needs
            :obj:`cooccurrence="softmax"` and :obj:`topk="per_part"`).
            (default: :obj:`None`: co-occurrence is never invented)
        seed (int, optional): Seed of the padding's draws (a generator of
            its own, so the graphs are a function of the data and the
            seed). (default: :obj:`None`: torch's global generator)
    """
    def __init__(
        self,
        k_item: int = 10,
        k_user: int = 40,
        alpha_item: float = 0.2,
        alpha_user: float = 0.4,
        modality_weights_item: Optional[Mapping[str, float]] = None,
        modality_weights_user: Optional[Mapping[str, float]] = None,
        cooccurrence: str = 'softmax',
        normalization: str = 'sym',
        loop: Union[bool, str] = False,
        chunk_size: Optional[int] = 1024,
        topk: str = 'per_part',
        knn: str = 'exact',
        knn_kwargs: Optional[Mapping[str, Any]] = None,
        schema: Optional[Schema] = None,
        padding: Optional[str] = None,
        seed: Optional[int] = None,
    ) -> None:
        self.schema = resolve_schema(schema)
        self.k_item = check_int(k_item, 'k_item', 0)
        self.k_user = check_int(k_user, 'k_user', 0)
        self.alpha_item = check_float(alpha_item, 'alpha_item', 0.0, 1.0)
        self.alpha_user = check_float(alpha_user, 'alpha_user', 0.0, 1.0)
        self.modality_weights_item = check_modality_weights(
            modality_weights_item, 'modality_weights_item')
        self.modality_weights_user = check_modality_weights(
            modality_weights_user, 'modality_weights_user')
        check_choice(cooccurrence, 'cooccurrence', COOCCURRENCE_MODES)
        check_choice(normalization, 'normalization', NORMALIZATIONS)
        if not isinstance(loop, bool) and loop != 'similarity':
            raise TypeError(f"'loop' must be a bool or 'similarity' (got "
                            f"{loop!r})")
        if padding is not None:
            check_choice(padding, 'padding', PADDINGS)
            if cooccurrence != 'softmax':
                raise ValueError(f"padding='rearm' pads softmax lists: it "
                                 f"needs cooccurrence='softmax' (got "
                                 f"{cooccurrence!r})")
        if seed is not None and (isinstance(seed, bool) or
                                 not isinstance(seed, int)):
            raise TypeError(f"'seed' must be an int or None (got {seed!r})")
        if chunk_size is not None:
            chunk_size = check_int(chunk_size, 'chunk_size', 1)
        self.topk = check_choice(topk, 'topk', TOPK_MODES)
        if self.topk == 'combined' and (loop == 'similarity' or
                                        padding is not None):
            raise ValueError("loop='similarity' and padding are options of "
                             "the per-part lists (topk='per_part'); the "
                             "combined top-k has one list per node")
        self.padding = padding
        self.seed = seed
        self.knn = knn
        self.knn_params = check_knn_kwargs(knn, knn_kwargs)
        #: What the faiss searches of the last call chose and estimated,
        #: ``(graph, modality) -> {"nprobe" / "ef_search", "recall_estimate",
        #: "sample"}`` (empty with ``knn="exact"``).
        self.ann_report: Dict[Tuple[str, str], Dict[str, Any]] = {}
        self.knn_kwargs = None if knn_kwargs is None else dict(knn_kwargs)
        self.cooccurrence = cooccurrence
        self.normalization = normalization
        self.loop = loop
        self.chunk_size = chunk_size

    def forward(self, data: HeteroData) -> HeteroData:
        if not isinstance(data, HeteroData):
            raise TypeError(f"{self.__class__.__name__} expects a HeteroData "
                            f"(got {type(data).__name__})")
        # Build on a canonical-named view (same tensors), then store the
        # graphs under the schema's names:
        view = self.schema.canonical(data)
        self.ann_report = {}
        store = view[RATES] if RATES in view.edge_types else {}
        if 'val_edge_index' not in store and 'test_edge_index' not in store:
            warnings.warn(
                "HomogeneousKNNGraph: the data holds no held-out split "
                "(no val_edge_index / test_edge_index), so the graphs are "
                "built from all its interactions; if it is split later "
                "(e.g. T.RandomLinkSplit), they include the held-out pairs: "
                "split first, fold the splits with "
                "pyg_brmrs.data.from_link_split, then build the graphs",
                UserWarning, stacklevel=2)
        return self.schema.write_back(self._forward(view), data)

    def _forward(self, data: HeteroData) -> HeteroData:
        if self.k_item == 0 and self.k_user == 0:
            return data
        num_users, num_items, edge_index = _training_edges(data)
        device = edge_index.device
        available = modalities(data)
        betas_item = _resolve_weights('modality_weights_item',
                                      self.modality_weights_item, available)
        betas_user = _resolve_weights('modality_weights_user',
                                      self.modality_weights_user, available)

        # Validate everything before any heavy work:
        feats_item = feats_user = {}
        if self.k_item > 0:
            feats_item = self._features(data, betas_item, self.alpha_item,
                                        num_items, 'modality_weights_item')
        if self.k_user > 0:
            feats_user = self._features(data, betas_user, self.alpha_user,
                                        num_items, 'modality_weights_user')

        A = binary_csr(edge_index[0], edge_index[1], (num_users, num_items))
        A_t = binary_csr(edge_index[1], edge_index[0], (num_items, num_users))

        if self.topk == 'combined':
            if self.k_item > 0:
                _store(data, ITEM_SIM, self._combined(
                    'item', A_t, A, self.k_item, self.alpha_item, betas_item,
                    feats_item), num_items, device)
            if self.k_user > 0:
                _store(data, USER_SIM, self._combined(
                    'user', A, A_t, self.k_user, self.alpha_user, betas_user,
                    feats_user), num_users, device)
            return data

        ann = self.knn == 'faiss'
        if self.k_item > 0:
            k, chunk = self.k_item, self._chunk(num_items)
            loop = self._loop(similarity=True)
            parts = self._parts(
                A_t, A, num_items, k, self.alpha_item, betas_item, feats_item,
                (lambda x, info: ann_cosine_topk(x, k, loop, self.knn_params,
                                                 info))
                if ann else (lambda x, info: cosine_topk(x, k, loop, chunk)),
                graph='item')
            _store(data, ITEM_SIM, parts, num_items, device)

        if self.k_user > 0:
            k, chunk = self.k_user, self._chunk(num_users)
            loop = self._loop(similarity=True)
            parts = self._parts(
                A, A_t, num_users, k, self.alpha_user, betas_user, feats_user,
                (lambda x, info: ann_cosine_topk(user_profile(A, x, chunk), k,
                                                 loop, self.knn_params, info))
                if ann else
                (lambda x, info: profile_cosine_topk(A, x, k, loop, chunk)),
                graph='user')
            _store(data, USER_SIM, parts, num_users, device)
        return data

    def _loop(self, similarity: bool) -> bool:
        r"""Whether a node is a candidate of its own list in a part."""
        if self.loop == 'similarity':
            return similarity
        return bool(self.loop)

    def _chunk(self, num_nodes: int) -> int:
        return max(1, num_nodes if self.chunk_size is None else
                   self.chunk_size)

    def _features(self, data: HeteroData, betas: Dict[str, float],
                  alpha: float, num_items: int, arg: str) -> Dict[str, Tensor]:
        if alpha == 1.0:
            return {}
        if len(betas) == 0:
            raise ValueError(
                f"{self.__class__.__name__}: the similarity part needs item "
                f"features, but data['item'] has no 'x_<modality>' attribute "
                f"(set '{arg}' or use alpha=1 for co-occurrence only)")
        out = {}
        for m, beta in betas.items():
            if beta == 0.0:
                continue
            x = data[ITEM][feature_key(m)]
            if x.dim() != 2 or x.size(0) != num_items:
                raise ValueError(
                    f"data['item'].{feature_key(m)} must have shape "
                    f"[num_items={num_items}, F] (got {tuple(x.shape)})")
            if not x.is_floating_point():
                raise TypeError(f"data['item'].{feature_key(m)} must be a "
                                f"floating-point tensor (got {x.dtype})")
            if not bool(torch.isfinite(x).all()):
                raise ValueError(f"data['item'].{feature_key(m)} contains "
                                 f"NaN or infinite values")
            out[m] = x
        return out

    def _ann_info(self, graph: str, modality: str) -> Dict[str, Any]:
        r"""The dict that receives the recall estimate of one faiss search
        (kept in :attr:`ann_report`)."""
        info: Dict[str, Any] = {}
        self.ann_report[(graph, modality)] = info
        return info

    def _parts(self, mat: Tensor, mat_t: Tensor, num_nodes: int, k: int,
               alpha: float, betas: Dict[str, float],
               feats: Dict[str, Tensor], similarity,
               graph: str = 'item') -> List[Part]:
        parts: List[Part] = []
        if alpha > 0.0:
            row, col, w = cooccurrence_topk(mat, mat_t, k, self.cooccurrence,
                                            self._loop(similarity=False),
                                            self._chunk(num_nodes))
            if self.padding == 'rearm':
                generator = None
                if self.seed is not None:
                    generator = torch.Generator(device=mat.device)
                    generator.manual_seed(self.seed)
                row, col, w = rearm_padding(
                    row, col, w, num_nodes, k,
                    mat.crow_indices().diff(), generator)
            parts.append((row, col, alpha * w))
        for m, x in feats.items():
            row, col, cos = similarity(
                x.to(device=mat.device, dtype=torch.float32),
                self._ann_info(graph, m))
            w = normalize_similarity(row, col, cos, num_nodes,
                                     self.normalization)
            parts.append((row, col, (1.0 - alpha) * betas[m] * w))
        return parts

    def _combined(self, kind: str, mat: Tensor, mat_t: Tensor, k: int,
                  alpha: float, betas: Dict[str, float],
                  feats: Dict[str, Tensor]) -> List[Part]:
        chunk = self._chunk(mat.size(0))
        weights = {m: (1.0 - alpha) * betas[m] for m in feats}
        measure = (self.cooccurrence if self.cooccurrence in
                   ('jaccard', 'overlap') else 'count')
        if self.knn == 'faiss':
            similarity = []
            for m, x in feats.items():
                x = x.to(device=mat.device, dtype=torch.float32)
                if kind == 'user':
                    x = user_profile(mat, x, chunk)
                xn, cand = modality_candidates(x, k, self.knn_params,
                                               self._ann_info(kind, m))
                similarity.append((weights[m], xn, cand))
            row, col, e = combined_ann_topk(
                lambda s, t: overlap_block(mat, mat_t, s, t, measure),
                mat.size(0), k, alpha, similarity, self.loop, chunk,
                device=mat.device)
            w = normalize_similarity(row, col, e, mat.size(0),
                                     self.normalization)
            return [(row, col, w)]
        row, col, e = combined_topk(
            mat, mat_t, k, alpha,
            similarity_blocks(kind, mat, feats, weights, chunk),
            measure=measure, loop=self.loop,
            chunk_size=chunk)
        w = normalize_similarity(row, col, e, mat.size(0), self.normalization)
        return [(row, col, w)]

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(k_item={self.k_item}, '
                f'k_user={self.k_user}, alpha_item={self.alpha_item}, '
                f'alpha_user={self.alpha_user}, '
                f'modality_weights_item={self.modality_weights_item}, '
                f'modality_weights_user={self.modality_weights_user}, '
                f'cooccurrence={self.cooccurrence!r}, '
                f'normalization={self.normalization!r}, loop={self.loop!r}, '
                f'chunk_size={self.chunk_size}, topk={self.topk!r}'
                + (f', knn={self.knn!r}, knn_kwargs={self.knn_kwargs}'
                   if self.knn != 'exact' else '')
                + (f', padding={self.padding!r}, seed={self.seed}'
                   if self.padding is not None else '') + ')')


def _resolve_weights(name: str, weights: Optional[Dict[str, float]],
                     available: List[str]) -> Dict[str, float]:
    if weights is None:
        return {m: 1.0 / len(available) for m in available}
    unknown = sorted(set(weights) - set(available))
    if unknown:
        raise ValueError(f"'{name}' names unknown modalities {unknown} "
                         f"(available modalities: {available})")
    return dict(weights)


def _training_edges(data: HeteroData) -> Tuple[int, int, Tensor]:
    for node_type in (USER, ITEM):
        if node_type not in data.node_types or data[node_type].num_nodes is None:
            raise ValueError(f"data has no '{node_type}' nodes (expected "
                             f"data['{node_type}'].num_nodes; for other "
                             f"names pass schema=Schema(user_type=..., "
                             f"item_type=..., features=...))")
    num_users = int(data[USER].num_nodes)
    num_items = int(data[ITEM].num_nodes)
    if RATES not in data.edge_types or 'edge_index' not in data[RATES]:
        raise ValueError(f"data has no training edges: expected "
                         f"data{RATES}.edge_index")
    edge_index = data[RATES].edge_index
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"data{RATES}.edge_index must have shape [2, E] "
                         f"(got {tuple(edge_index.shape)})")
    if edge_index.size(1) == 0:
        raise ValueError(f"data{RATES}.edge_index has no training edges")
    if edge_index.dtype not in (torch.long, torch.int, torch.int16,
                                torch.uint8, torch.int8):
        raise TypeError(f"data{RATES}.edge_index must hold integer ids "
                        f"(got {edge_index.dtype})")
    edge_index = edge_index.long()
    lo, hi = edge_index.min(dim=1).values, edge_index.max(dim=1).values
    if int(lo.min()) < 0:
        raise ValueError(f"data{RATES}.edge_index contains negative ids")
    if int(hi[0]) >= num_users or int(hi[1]) >= num_items:
        raise ValueError(
            f"data{RATES}.edge_index has ids out of range (largest user id "
            f"{int(hi[0])} for {num_users} users, largest item id "
            f"{int(hi[1])} for {num_items} items)")
    return num_users, num_items, edge_index


def _store(data: HeteroData, edge_type, parts: List[Part], num_nodes: int,
           device) -> None:
    r"""Coalesces the weighted parts (duplicate pairs add up) into
    ``edge_index`` ``[2, E]`` (source = neighbour, target = centre), sorted
    by (target, source), and float32 ``edge_weight``."""
    if len(parts) == 0:
        row = col = torch.empty(0, dtype=torch.long, device=device)
        weight = torch.empty(0, dtype=torch.float32, device=device)
    else:
        row = torch.cat([p[0] for p in parts])
        col = torch.cat([p[1] for p in parts])
        weight = torch.cat([p[2] for p in parts]).float()
    key, inverse = torch.unique(row * num_nodes + col, sorted=True,
                                return_inverse=True)
    edge_weight = weight.new_zeros(key.numel()).index_add_(0, inverse, weight)
    target, source = key // num_nodes, key % num_nodes
    data[edge_type].edge_index = torch.stack([source, target], dim=0)
    data[edge_type].edge_weight = edge_weight
