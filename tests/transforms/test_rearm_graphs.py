r"""REARM's homogeneous graphs as the package builds them
(:class:`HomogeneousKNNGraph` with ``loop="similarity"``,
``padding="rearm"``) against a dense reference of REARM's construction
(``utils/helper.py``: ``creat_co_occur_matrix``, ``creat_dict_graph``,
``topk_sample``, ``get_knn_adj_mat``), and the padding on its own."""
import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import HeteroData

from pyg_brmrs.data.schema import ITEM_SIM, USER_SIM
from pyg_brmrs.transforms import HomogeneousKNNGraph, rearm_padding

RATES = ('user', 'rates', 'item')


def dense_data(U=16, I=13, seed=0):
    r"""Dense interactions (every node with a training interaction shares
    them with many others) plus one user and one item without any."""
    g = torch.Generator().manual_seed(seed)
    A = (torch.rand(U, I, generator=g) < 0.5).double()
    A[U - 1] = 0
    A[:, I - 1] = 0
    data = HeteroData()
    data['user'].num_nodes, data['item'].num_nodes = U, I
    data[RATES].edge_index = A.nonzero().t()
    data['item'].x_image = torch.randn(I, 5, generator=g)
    data['item'].x_text = torch.randn(I, 3, generator=g)
    return data, A


def rearm_dense(A, feats, k, alpha, betas, node):
    r"""REARM's graph of the rows of :obj:`A` (users) or of its columns
    (items), dense, with loops."""
    M = A if node == 'user' else A.t()
    n = M.size(0)
    C = M @ M.t()
    C.fill_diagonal_(0)
    deg = M.sum(1)
    G = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        cand = sorted((j for j in range(n) if C[i, j] > 0),
                      key=lambda j: (-float(C[i, j]), j))
        if cand:
            assert len(cand) >= k, 'the reference covers full lists only'
            keep = cand[:k]
            w = torch.softmax(C[i, keep], dim=0)
        else:  # the most popular nodes, softmax of their degree shares
            keep = sorted((j for j in range(n) if deg[j] > 0),
                          key=lambda j: (-float(deg[j]), j))[:k]
            share = deg[keep]
            w = torch.softmax(share / share.sum(), dim=0)
        for j, wj in zip(keep, w):
            G[i, j] += alpha * wj
    for m, beta in betas.items():
        x = feats[m].double()
        if node == 'user':  # interest vectors: mean of the training items
            x = (A @ x) / A.sum(1, keepdim=True).clamp(min=1)
        ok = [i for i in range(n) if x[i].norm() > 0]
        xn = F.normalize(x, dim=1)
        S = xn @ xn.t()
        for i in ok:  # the node itself is the top cosine
            keep = sorted(ok, key=lambda j: (-float(S[i, j]), j))[:k]
            for j in keep:
                G[i, j] += (1 - alpha) * beta * S[i, j] / k
    return G


def to_dense(store, n):
    G = torch.zeros(n, n, dtype=torch.float64)
    ei, ew = store.edge_index, store.edge_weight
    G.index_put_((ei[1], ei[0]), ew.double(), accumulate=True)
    return G


@pytest.mark.parametrize('seed', [0, 1])
def test_rearm_graphs_equal_a_dense_reference_of_rearm(seed):
    data, A = dense_data(seed=seed)
    betas_i, betas_u = {'image': 0.3, 'text': 0.7}, {'image': 0.6,
                                                     'text': 0.4}
    out = HomogeneousKNNGraph(
        k_item=3, k_user=4, alpha_item=0.2, alpha_user=0.4,
        modality_weights_item=betas_i, modality_weights_user=betas_u,
        cooccurrence='softmax', normalization='sym', loop='similarity',
        padding='rearm', seed=0)(data)
    feats = {'image': data['item'].x_image, 'text': data['item'].x_text}
    want_i = rearm_dense(A, feats, 3, 0.2, betas_i, 'item')
    want_u = rearm_dense(A, feats, 4, 0.4, betas_u, 'user')
    got_i = to_dense(out[ITEM_SIM], A.size(1))
    got_u = to_dense(out[USER_SIM], A.size(0))
    assert torch.allclose(got_i, want_i, atol=1e-6)
    assert torch.allclose(got_u, want_u, atol=1e-6)
    # the user and the item without interactions: popular nodes, and the
    # user (zero interest vector) no similarity edges
    assert got_u[-1].sum() == pytest.approx(0.4, abs=1e-6)
    assert got_i[-1].sum() > 0.2


def test_padding_repeats_own_neighbours_with_independent_draws():
    # 3000 nodes with 2 neighbours padded to 4: two independent uniform
    # draws split (3, 1), (2, 2), (1, 3) with probability 1/4, 1/2, 1/4
    n = 3000
    row = torch.arange(n).repeat_interleave(2)
    col = (row + 1 + torch.arange(2 * n) % 2) % n
    w = torch.full((2 * n, ), 0.5)  # equal counts: softmax weights 1/2
    r, c, out = rearm_padding(row, col, w, n, 4, torch.ones(n),
                              torch.Generator().manual_seed(0))
    assert torch.equal(r, row) and torch.equal(c, col)
    first = (out.view(n, 2)[:, 0] * 4).round()  # its multiplicity
    assert torch.allclose(out.view(n, 2).sum(1), torch.ones(n))
    for split, p in ((1.0, 0.25), (2.0, 0.5), (3.0, 0.25)):
        assert abs(float((first == split).float().mean()) - p) < 0.03


def test_padding_weights_are_multiplicity_times_softmax():
    # one node with counts (3, 1) padded to k = 6: weight of j is
    # m_j e^{c_j} / sum_l m_l e^{c_l}, m the multiplicities (sum 6)
    c = torch.tensor([3.0, 1.0])
    w = torch.softmax(c, 0)
    row, col = torch.zeros(2, dtype=torch.long), torch.tensor([4, 7])
    for seed in range(5):
        r0, _, out = rearm_padding(row, col, w, 8, 6, torch.ones(8),
                                   torch.Generator().manual_seed(seed))
        out = out[r0 == 0]  # (the other nodes: popular ones)
        # recover m from the ratios and check it is an integer split of 6
        r = out.double() / w.double()
        m = 6 * r / r.sum()
        assert torch.allclose(m, m.round(), atol=1e-6)
        assert int(m.round().sum()) == 6 and bool((m.round() >= 1).all())
        want = m.round() * c.exp() / (m.round() * c.exp()).sum()
        assert torch.allclose(out.double(), want, atol=1e-6)


def test_padding_leaves_long_rows_and_fills_empty_ones_with_popular():
    # node 0: 3 neighbours (k = 3, unchanged); node 1 and 3: none; node 2:
    # 1 neighbour (padded to itself 3 times: weight 1)
    row = torch.tensor([0, 0, 0, 2])
    col = torch.tensor([1, 2, 3, 0])
    w = torch.tensor([0.5, 0.3, 0.2, 1.0])
    degree = torch.tensor([4.0, 0.0, 4.0, 1.0, 2.0])  # ties: smaller id
    r, c, out = rearm_padding(row, col, w, 5, 3, degree,
                              torch.Generator().manual_seed(0))
    got = {(int(a), int(b)): float(x) for a, b, x in zip(r, c, out)}
    pop = torch.softmax(torch.tensor([4.0, 4.0, 2.0]) / 10.0, 0)
    want = {(0, 1): 0.5, (0, 2): 0.3, (0, 3): 0.2, (2, 0): 1.0,
            (1, 0): pop[0], (1, 2): pop[1], (1, 4): pop[2],
            (3, 0): pop[0], (3, 2): pop[1], (3, 4): pop[2],
            (4, 0): pop[0], (4, 2): pop[1], (4, 4): pop[2]}
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(float(value), abs=1e-6)
    assert torch.equal(r, torch.sort(r, stable=True).values)


def test_padding_is_reproducible_with_its_seed():
    data, _ = dense_data(U=30, I=40, seed=3)
    data[RATES].edge_index = data[RATES].edge_index[:, ::4]  # short lists
    make = (lambda seed: HomogeneousKNNGraph(
        k_item=8, k_user=8, padding='rearm', seed=seed)(data))
    a, b, c = make(1), make(1), make(2)
    for t in (ITEM_SIM, USER_SIM):
        assert torch.equal(a[t].edge_index, b[t].edge_index)
        assert torch.equal(a[t].edge_weight, b[t].edge_weight)
    assert any(not torch.equal(a[t].edge_weight, c[t].edge_weight)
               for t in (ITEM_SIM, USER_SIM))


@pytest.mark.parametrize('kwargs, match', [
    (dict(padding='repeat'), "padding"),
    (dict(padding='rearm', cooccurrence='count'), "needs cooccurrence"),
    (dict(loop='self'), "'loop' must be a bool or 'similarity'"),
    (dict(loop='similarity', topk='combined'), "per-part lists"),
    (dict(padding='rearm', topk='combined', cooccurrence='softmax'),
     "per-part lists"),
    (dict(seed=1.5), "'seed' must be an int"),
])
def test_bad_rearm_options_name_the_argument(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        HomogeneousKNNGraph(**kwargs)
