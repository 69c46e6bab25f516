r"""Dense references of the models' pieces (float64, loops) and the toy data
the model tests share."""
import torch
from torch_geometric.data import HeteroData

RATES = ('user', 'rates', 'item')


def toy_data(U=12, I=10, dims=(('image', 6), ('text', 4)), E=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    data = HeteroData()
    data['user'].num_nodes = U
    data['item'].num_nodes = I
    for m, f in dims:
        data['item'][f'x_{m}'] = torch.randn(I, f, generator=g)
    ei = torch.stack([torch.randint(0, U, (E, ), generator=g),
                      torch.randint(0, I, (E, ), generator=g)])
    ei = torch.unique(ei, dim=1)
    ei = ei[:, (ei[0] != U - 1) & (ei[1] != I - 1)]  # isolated user and item
    data[RATES].edge_index = ei
    return data


def dense_norm_adj(ei, U, I):
    """D^-1/2 A D^-1/2 of the (U+I) x (U+I) user-item graph, 0 for isolated
    nodes."""
    N = U + I
    A = torch.zeros(N, N, dtype=torch.float64)
    for k in range(ei.size(1)):
        u, i = int(ei[0, k]), int(ei[1, k])
        A[u, U + i] = 1.0
        A[U + i, u] = 1.0
    deg = A.sum(1)
    inv = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    return inv[:, None] * A * inv[None, :]


def dense_lightgcn(x0, norm_adj, L):
    x, out = x0.double(), x0.double()
    for _ in range(L):
        x = norm_adj @ x
        out = out + x
    return out / (L + 1)


def sparse_to_dense(ei, ew, n):
    S = torch.zeros(n, n, dtype=torch.float64)
    for k in range(ei.size(1)):
        S[ei[1, k], ei[0, k]] += float(ew[k])  # row = target (centre)
    return S
