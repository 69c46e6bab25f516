r"""DualGNN against a dense reference of MMRec's ``dualgnn.py``: its forward
pass written as the reference runs it (the other modality added in place
into the first one's tensor before the users are weighed), the paper's
weighted sum, no item graph, and the inputs it refuses."""
import copy

import pytest
import torch
import torch.nn.functional as F

from pyg_brmrs.nn import DualGNN

from dense_reference import RATES, dense_norm_adj, sparse_to_dense, toy_data


def dense_forward(model, data, in_place=True):
    model = copy.deepcopy(model).double()
    U = model.num_users
    A = dense_norm_adj(data[RATES].edge_index, U, model.num_items)
    reps = []
    for m in model.modalities:  # v_gcn, then t_gcn: h + x + h_1
        x = data['item'][f'x_{m}'].double()
        z = model.encoder[m][2](F.leaky_relu(model.encoder[m][0](x)))
        h = F.normalize(torch.cat([model.preference[m], z]), dim=1)
        out, layer = h.clone(), h
        for _ in range(model.num_layers):
            layer = A @ layer
            out = out + layer
        reps.append(out)
    v_rep, t_rep = reps
    representation = v_rep
    if in_place:
        representation += t_rep  # MMRec: v_rep itself now holds v + t
    else:
        representation = v_rep + t_rep
    w = model.user_modality_weight
    user = w[:, :1] * v_rep[:U] + w[:, 1:2] * t_rep[:U]
    g = model.own_graphs()['users']
    W = sparse_to_dense(g.edge_index, g.edge_weight, U)
    return user + W @ user, representation[U:]


@pytest.mark.parametrize('fusion', ['reference', 'weighted_sum'])
def test_forward_matches_the_reference(fusion):
    data = toy_data(U=15, I=12, E=60, seed=1)
    torch.manual_seed(0)
    model = DualGNN.from_data(data, embedding_dim=4, num_user_neighbors=4,
                              user_fusion=fusion)
    assert model.own_graphs().keys() == {'users'}  # no item graph
    model.on_epoch_start(0, torch.Generator().manual_seed(1))
    model.eval()
    out = model(data)
    u, i = dense_forward(model, data, in_place=fusion == 'reference')
    assert out.user_emb.shape == (15, 4) and out.item_emb.shape == (12, 4)
    assert torch.allclose(out.user_emb.double(), u, atol=1e-5)
    assert torch.allclose(out.item_emb.double(), i, atol=1e-5)


def test_the_two_fusions_differ_only_in_the_users():
    data = toy_data(U=15, I=12, E=60, seed=2)
    outs = []
    for fusion in ('reference', 'weighted_sum'):
        torch.manual_seed(0)
        model = DualGNN.from_data(data, embedding_dim=4,
                                  user_fusion=fusion).eval()
        outs.append(model(data))
    assert torch.allclose(outs[0].item_emb, outs[1].item_emb)
    assert not torch.allclose(outs[0].user_emb, outs[1].user_emb)


def test_bad_inputs_are_named():
    data = toy_data()
    with pytest.raises(ValueError, match="'user_fusion' must be one of"):
        DualGNN.from_data(data, user_fusion='concat')
    with pytest.raises(ValueError, match="'num_user_neighbors'"):
        DualGNN.from_data(data, num_user_neighbors=0)
