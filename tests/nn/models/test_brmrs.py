import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import HeteroData

from pyg_brmrs.nn import BRMRS, ConcatFusion, GatedFusion, MeanFusion
from pyg_brmrs.nn.fusion import AttentionFusion, MLPFusion, resolve_fusion
from pyg_brmrs.nn.graph import channels as channels_module


def toy_data(U=12, I=10, dims=(('image', 6), ('text', 4)), seed=0,
             graphs=True):
    g = torch.Generator().manual_seed(seed)
    data = HeteroData()
    data['user'].num_nodes = U
    data['item'].num_nodes = I
    for m, f in dims:
        data['item'][f'x_{m}'] = torch.randn(I, f, generator=g)
    ei = torch.stack([torch.randint(0, U, (40, ), generator=g),
                      torch.randint(0, I, (40, ), generator=g)])
    ei = torch.unique(ei, dim=1)
    ei = ei[:, ei[0] != U - 1]  # the last user has no training item
    data['user', 'rates', 'item'].edge_index = ei
    if graphs:
        for t, n in (('item', I), ('user', U)):
            sim = torch.randint(0, n, (2, 3 * n), generator=g)
            sim = torch.unique(sim[:, sim[0] != sim[1]], dim=1)
            data[t, 'similar', t].edge_index = sim
            data[t, 'similar', t].edge_weight = torch.rand(sim.size(1),
                                                           generator=g)
    return data


def dense_adj(ei, w, n):
    A = torch.zeros(n, n, dtype=torch.float64)
    for k in range(ei.size(1)):
        A[ei[1, k], ei[0, k]] += 1.0 if w is None else float(w[k])
    return A


def naive_forward(model: BRMRS, data: HeteroData):
    """Dense re-implementation of the documented math (float64, loops)."""
    U, I, d = model.num_users, model.num_items, model.embedding_dim
    ei = data['user', 'rates', 'item'].edge_index
    item_ch, user_ch = [], []
    if model.id_mode != 'none':
        item_ch.append(model.item_embedding.weight.double())
        user_ch.append(model.user_embedding.weight.double())
    for j, m in enumerate(model.modalities):
        x = data['item'][f'x_{m}'].double()
        W = model.proj[m].weight.double()
        b = model.proj[m].bias.double()
        item_ch.append(x @ W[:d].t() + b[:d])
        if model.user_mode in ('embedding', 'shared'):
            col = j if model.user_mode == 'embedding' else 0
            user_ch.append(model.user_modality_embedding[:, col].double())
            continue
        prof = torch.zeros(U, x.size(1), dtype=torch.float64)
        for u in range(U):
            items = ei[1, ei[0] == u]
            if items.numel() > 0:
                prof[u] = x[items].mean(0)
        user_ch.append(prof @ W[d:].t() + b[d:])
    hi, hu = torch.stack(item_ch, 1), torch.stack(user_ch, 1)

    def homo(h, et, layers):
        A = dense_adj(data[et].edge_index, data[et].edge_weight, h.size(0))
        outs = [h]
        for _ in range(layers):
            outs.append(torch.einsum('ij,jcd->icd', A, outs[-1]))
        return outs[-1] if model.homogeneous == 'last' else torch.stack(
            outs).mean(0)

    hi = homo(hi, ('item', 'similar', 'item'), model.num_item_layers)
    hu = homo(hu, ('user', 'similar', 'user'), model.num_user_layers)
    hi, hu = F.normalize(hi, dim=-1), F.normalize(hu, dim=-1)
    N = U + I
    A = torch.zeros(N, N, dtype=torch.float64)
    for u, i in ei.t().tolist():
        A[u, U + i] = A[U + i, u] = 1.0
    deg = A.sum(1)
    dinv = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    A = dinv.view(-1, 1) * A * dinv.view(1, -1)
    x = torch.cat([hu, hi])
    acc, cur = x.clone(), x
    for _ in range(model.num_layers):
        cur = torch.einsum('ij,jcd->icd', A, cur)
        acc = acc + cur
    z = acc / (model.num_layers + 1)
    zu, zi = z[:U], z[U:]
    if model.id_mode == 'none':
        def branch(z, j):
            return z[:, j]
    elif model.id_mode == 'add':
        def branch(z, j):
            return z[:, 0] + z[:, 1 + j]
    else:
        def branch(z, j):
            return torch.cat([z[:, 0], z[:, 1 + j]], dim=-1)
    out_u = {m: branch(zu, j) for j, m in enumerate(model.modalities)}
    out_i = {m: branch(zi, j) for j, m in enumerate(model.modalities)}
    return out_u, out_i


@pytest.mark.parametrize('id_mode', ['concat', 'add'])
@pytest.mark.parametrize('homogeneous', ['mean', 'last'])
@pytest.mark.parametrize('static_users', [True, False, 'text'])
def test_forward_matches_dense_reference(homogeneous, id_mode, static_users,
                                         monkeypatch):
    # Both ways of computing the users' feature channels (propagated once on
    # the raw features, or projected then propagated at every step), and a
    # mix of the two (only the 4-d text precomputed), agree with the dense
    # reference.
    data = toy_data()
    cost = 10**9 if static_users is True else -10**9
    if static_users == 'text':
        # precomputed iff (U - I) F_m <= cost * sparse entries: 8 <= 10 < 12
        sparse = data['user', 'rates', 'item'].edge_index.size(1) + \
            data['user', 'similar', 'user'].edge_index.size(1)
        cost = 10 / sparse
    monkeypatch.setattr(channels_module, 'SPARSE_COST', cost)
    model = BRMRS.from_data(data, embedding_dim=5, num_layers=2,
                            homogeneous=homogeneous, id_mode=id_mode,
                            user_mode='profile', fusion='concat').double()
    out = model(data)
    # the users' channels precomputed from their propagated inputs (cache
    # slots 'user/propagated:user:<m>,...')
    pre = {name.split(':', 1)[1] for slot in model._graph_cache._slots
           if slot.startswith('user/propagated:')
           for name in slot.split('/propagated:')[1].split(',')}
    assert pre == {True: {'image', 'text'}, False: set(),
                   'text': {'text'}}[static_users]
    ref_u, ref_i = naive_forward(model, data)
    for m in model.modalities:
        assert torch.allclose(out.user[m], ref_u[m], atol=1e-8)
        assert torch.allclose(out.item[m], ref_i[m], atol=1e-8)
    # concat fusion: fused score = sum of unimodal scores
    users, items = torch.arange(12), torch.arange(12) % 10
    s = sum(out.score(users, items, m) for m in model.modalities)
    assert torch.allclose(out.score(users, items), s, atol=1e-8)
    assert out.ranking_branch == 'fused'
    assert out.extras['user_channels'].shape == (12, 3, 5)


@pytest.mark.parametrize('fusion,dim', [('concat', 2 * 8), ('mean', 8),
                                        ('gated', 8)])
@pytest.mark.parametrize('id_mode', ['add', 'concat', 'none'])
def test_shapes_for_all_fusions_and_id_modes(fusion, dim, id_mode):
    data = toy_data(dims=(('audio', 3), ('image', 6), ('text', 4)))
    model = BRMRS.from_data(data, embedding_dim=8, fusion=fusion,
                            id_mode=id_mode)
    out = model(data)
    assert out.branches == ['audio', 'image', 'text', 'fused']
    branch_dim = 16 if id_mode == 'concat' else 8
    fused_dim = (3 * branch_dim if fusion == 'concat' else branch_dim)
    assert out.user['fused'].shape == (12, fused_dim)
    assert out.item['image'].shape == (10, branch_dim)
    assert out.extras['item_channels'].shape == (10, model.num_channels, 8)
    assert model.num_channels == (3 if id_mode == 'none' else 4)
    del dim


def test_gradients_reach_every_parameter_and_regularization():
    data = toy_data()
    model = BRMRS.from_data(data, embedding_dim=4, fusion='gated',
                            id_mode='concat', user_mode='profile')
    out = model(data)
    users = torch.arange(5)
    loss = sum(out.score(users, users, b).sum() for b in out.branches)
    loss = loss + model.regularization(users, users, users + 1)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
    reg = model.regularization(torch.tensor([0, 1]), torch.tensor([2, 3]),
                               torch.tensor([4, 5]))
    ue, ie = model.user_embedding.weight, model.item_embedding.weight
    expected = (ue[[0, 1]].pow(2).sum() + ie[[2, 3]].pow(2).sum() +
                ie[[4, 5]].pow(2).sum()) / 4
    assert torch.allclose(reg, expected)


def test_user_profile_equals_projection_of_mean_features():
    data = toy_data(graphs=False)
    model = BRMRS.from_data(data, embedding_dim=4, num_layers=0,
                            num_item_layers=0, num_user_layers=0,
                            normalize=False, id_mode='concat',
                            user_mode='profile').double()
    user_ch, _ = model.channels(model.graph(data))
    ei = data['user', 'rates', 'item'].edge_index
    x = data['item'].x_image.double()
    lin = model.proj['image']
    for u in range(12):
        items = ei[1, ei[0] == u]
        mean = x[items].mean(0) if items.numel() else torch.zeros(6).double()
        ref = mean @ lin.weight[4:].t() + lin.bias[4:]
        assert torch.allclose(user_ch[u, 1], ref, atol=1e-10)


def test_backends_agree_and_cache_follows_the_graph():
    data = toy_data()
    torch.manual_seed(0)
    a = BRMRS.from_data(data, embedding_dim=4, backend='csr')
    b = BRMRS.from_data(data, embedding_dim=4, backend='edge_index')
    b.load_state_dict(a.state_dict())
    oa, ob = a(data), b(data)
    for k in oa.branches:
        assert torch.allclose(oa.user[k], ob.user[k], atol=1e-5)
        assert torch.allclose(oa.item[k], ob.item[k], atol=1e-5)
    # A different training graph must not reuse the cached operators:
    other = toy_data(seed=1)
    other['item'].x_image = data['item'].x_image
    other['item'].x_text = data['item'].x_text
    fresh = BRMRS.from_data(other, embedding_dim=4, cached=False)
    fresh.load_state_dict(a.state_dict())
    assert torch.allclose(a(other).user_emb, fresh(other).user_emb,
                          atol=1e-5)


def test_without_homogeneous_graphs_and_embed():
    data = toy_data(graphs=False)
    model = BRMRS.from_data(data, embedding_dim=4)
    model.train()
    out = model.embed(data)
    assert not out.user_emb.requires_grad
    assert model.training


def test_finetune_features():
    data = toy_data()
    model = BRMRS.from_data(data, embedding_dim=4, finetune_features=True)
    names = [n for n, _ in model.named_parameters()]
    assert 'item_features.image' in names
    out = model(data)
    out.user_emb.sum().backward()
    assert model.item_features['image'].grad is not None
    with pytest.raises(ValueError, match='item_features'):
        BRMRS(12, 10, {'image': 6}, finetune_features=True)


def test_bad_arguments_and_inputs():
    data = toy_data()
    with pytest.raises(ValueError, match='at least one modality'):
        BRMRS(3, 3, {})
    with pytest.raises(ValueError, match='positive int'):
        BRMRS(3, 3, {'image': 0})
    with pytest.raises(ValueError, match='id_mode'):
        BRMRS(3, 3, {'image': 2}, id_mode='mul')
    with pytest.raises(ValueError, match='homogeneous'):
        BRMRS(3, 3, {'image': 2}, homogeneous='sum')
    with pytest.raises(ValueError, match='Unknown fusion'):
        BRMRS(3, 3, {'image': 2}, fusion='bilinear')
    with pytest.raises(ValueError, match='user_mode'):
        BRMRS(3, 3, {'image': 2}, user_mode='mean')
    with pytest.raises(ValueError, match='num_layers'):
        BRMRS(3, 3, {'image': 2}, num_layers=-1)
    model = BRMRS(12, 10, {'image': 6, 'audio': 3})
    with pytest.raises(ValueError, match=r"lacks the modalities \['audio'\]"):
        model(data)
    model = BRMRS(12, 10, {'image': 5, 'text': 4})
    with pytest.raises(ValueError, match=r'shape \[10, 5\]'):
        model(data)
    assert 'modalities=' in repr(model)


def test_defaults_are_the_papers_model():
    # Pure unimodal branches (no ID table, a user embedding per modality)
    # and mean fusion, whose fused score is not the sum of the branch scores.
    data = toy_data()
    model = BRMRS.from_data(data, embedding_dim=4)
    assert (model.id_mode, model.user_mode) == ('none', 'embedding')
    assert not hasattr(model, 'item_embedding')
    assert type(model.item_fusion).__name__ == 'MeanFusion'
    out = model(data)
    users, items = torch.arange(12), torch.arange(12) % 10
    s = sum(out.score(users, items, m) for m in model.modalities)
    assert not torch.allclose(out.score(users, items), s)
    assert out.extras['item_channels'].shape == (10, 2, 4)


def test_fusion_modules():
    xs = [torch.randn(4, 3) for _ in range(2)]
    assert torch.equal(ConcatFusion(2, 3)(xs), torch.cat(xs, -1))
    assert ConcatFusion(2, 3).out_channels == 6
    assert torch.allclose(MeanFusion(2, 3)(xs), (xs[0] + xs[1]) / 2)
    gated = GatedFusion(2, 3)
    # zero-initialised gate = sum of the inputs
    assert torch.allclose(gated(xs), xs[0] + xs[1], atol=1e-6)
    with pytest.raises(ValueError, match='expects 2 inputs'):
        MeanFusion(2, 3)(xs[:1])
    with pytest.raises(ValueError, match=r'one shape \(input 1 is \[4, 2\]'):
        MeanFusion(2, 3)([xs[0], xs[1][:, :2]])
    assert resolve_fusion(gated, 2, 3) is gated
    with pytest.raises(ValueError, match='num_modalities'):
        MeanFusion(0, 3)


@pytest.mark.parametrize('num', [1, 2, 3])
def test_mean_fusion_matches_stacked_mean(num):
    # the running sum equals the mean over a stack, values and gradients
    xs = [torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
          for _ in range(num)]
    out = MeanFusion(num, 3)(xs)
    ref = torch.stack(xs).mean(0)
    assert torch.allclose(out, ref)
    g = torch.randn(5, 3, dtype=torch.float64)
    grads = torch.autograd.grad((out * g).sum(), xs)
    for grad in grads:
        assert torch.allclose(grad, g / num)
    # the inputs are left as they were (no in-place update leaks out)
    before = [x.detach().clone() for x in xs]
    MeanFusion(num, 3)(xs)
    assert all(torch.equal(x, b) for x, b in zip(xs, before))


def test_edge_dropout_prunes_only_in_training():
    data = toy_data()
    model = BRMRS.from_data(data, embedding_dim=4, edge_dropout=0.5)
    full = model.embed(data)
    model.train()
    model.on_epoch_start(0, torch.Generator().manual_seed(1))
    a = model(data)
    pruned = model.pruning.edge_index
    E = data['user', 'rates', 'item'].edge_index.size(1)
    assert pruned.size(1) == int(E * 0.5)
    assert not torch.allclose(a.user_emb, full.user_emb)
    assert model(data).user_emb.equal(a.user_emb)  # same epoch, same graph
    model.on_epoch_start(1, torch.Generator().manual_seed(1))
    assert model(data).user_emb.equal(a.user_emb)  # same seed, same draw
    model.on_epoch_start(2, torch.Generator().manual_seed(2))
    assert not model(data).user_emb.equal(a.user_emb)
    assert torch.equal(model.embed(data).user_emb, full.user_emb)
    with pytest.raises(ValueError, match='edge_dropout'):
        BRMRS(3, 3, {'image': 2}, edge_dropout=1.0)


@pytest.mark.parametrize('id_mode', ['none', 'concat'])
@pytest.mark.parametrize('finetune', [False, True])
def test_pure_branches_with_user_embeddings(id_mode, finetune):
    # user_mode='embedding' + id_mode='none': every unimodal branch comes
    # from its modality alone (no item-ID table), users have one free
    # embedding per modality; checked against the dense reference, with the
    # precomputed (fixed features) and per-step (fine-tuned) item paths.
    data = toy_data()
    model = BRMRS.from_data(data, embedding_dim=5, num_layers=2,
                            id_mode=id_mode, user_mode='embedding',
                            finetune_features=finetune, fusion='mlp').double()
    if id_mode == 'none':
        assert not hasattr(model, 'item_embedding')
        assert not any('item_embedding' in n
                       for n, _ in model.named_parameters())
    assert model.user_modality_embedding.shape == (12, 2, 5)
    assert model.proj['image'].weight.shape == (5, 6)
    out = model(data)
    ref_u, ref_i = naive_forward(model, data)
    for m in model.modalities:
        assert torch.allclose(out.user[m], ref_u[m], atol=1e-8)
        assert torch.allclose(out.item[m], ref_i[m], atol=1e-8)
    # The regulariser covers the batch's free embeddings only:
    users, pos, neg = torch.tensor([0, 3]), torch.tensor([1, 2]), \
        torch.tensor([4, 5])
    e = model.user_modality_embedding
    want = e[users].pow(2).sum()
    if id_mode != 'none':
        want = want + model.user_embedding.weight[users].pow(2).sum() + \
            model.item_embedding.weight[pos].pow(2).sum() + \
            model.item_embedding.weight[neg].pow(2).sum()
    assert torch.allclose(model.regularization(users, pos, neg), want / 4)
    loss = sum(out.score(users, pos, b).sum() for b in out.branches)
    (loss + model.regularization(users, pos, neg)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
    assert "user_mode=embedding" in repr(model)


def test_new_fusions_match_their_formulas():
    torch.manual_seed(0)
    xs = [torch.randn(4, 3) for _ in range(2)]
    att = AttentionFusion(2, 3, hidden_channels=5)
    # zero-initialised attention vector: uniform weights = sum
    assert torch.allclose(att(xs), xs[0] + xs[1], atol=1e-6)
    torch.nn.init.normal_(att.att)
    ref = []
    for n in range(4):
        w = torch.stack([att.att @ torch.tanh(att.lin.weight @ x[n] +
                                               att.lin.bias) for x in xs])
        a = torch.softmax(w, 0)
        ref.append(2 * (a[0] * xs[0][n] + a[1] * xs[1][n]))
    assert torch.allclose(att(xs), torch.stack(ref), atol=1e-6)

    mlp = MLPFusion(2, 3, hidden_channels=4)
    # zero-initialised output layer: the mean
    assert torch.allclose(mlp(xs), (xs[0] + xs[1]) / 2)
    torch.nn.init.normal_(mlp.lin2.weight)
    cat = torch.cat(xs, -1)
    ref = (xs[0] + xs[1]) / 2 + torch.relu(
        cat @ mlp.lin1.weight.t() + mlp.lin1.bias) @ mlp.lin2.weight.t() + \
        mlp.lin2.bias
    assert torch.allclose(mlp(xs), ref, atol=1e-6)
    assert mlp.out_channels == att.out_channels == 3
    assert 'MLPFusion(2, 3)' == repr(mlp)


@pytest.mark.parametrize('fusion', ['mean', 'gated', 'attention', 'mlp'])
def test_non_additive_fusions(fusion):
    # With these fusions the fused score is not the sum of the unimodal
    # scores (cross-modal terms <p^(m), q^(m')>, learned interactions).
    data = toy_data()
    torch.manual_seed(1)
    model = BRMRS.from_data(data, embedding_dim=4, fusion=fusion,
                            id_mode='none', user_mode='embedding')
    for fuse in (model.user_fusion, model.item_fusion):
        for p in fuse.parameters():
            torch.nn.init.normal_(p)
    out = model(data)
    users, items = torch.arange(12), torch.arange(12) % 10
    s = sum(out.score(users, items, m) for m in model.modalities)
    assert not torch.allclose(out.score(users, items), s, atol=1e-3)


@pytest.mark.parametrize('user_mode,id_mode', [('embedding', 'none'),
                                               ('profile', 'concat'),
                                               ('embedding', 'add'),
                                               ('shared', 'none')])
@pytest.mark.parametrize('edge_dropout', [0.0, 0.3])
def test_csr_fast_path_equals_message_passing_with_gradients(
        user_mode, id_mode, edge_dropout):
    """The CSR path (two-block user-item products, fused layer means,
    hand-written normalisation backward) against PyG gather/scatter
    message passing, values and gradients, in training mode."""
    data = toy_data()
    models = []
    for backend in ('csr', 'edge_index'):
        torch.manual_seed(0)
        m = BRMRS.from_data(data, embedding_dim=4, num_layers=3,
                            user_mode=user_mode, id_mode=id_mode,
                            edge_dropout=edge_dropout,
                            backend=backend).double()
        m.train()
        m.on_epoch_start(0, torch.Generator().manual_seed(5))
        models.append(m)
    a, b = models
    b.load_state_dict(a.state_dict())
    oa, ob = a(data), b(data)
    w = {k: torch.randn_like(oa.user[k]) for k in oa.branches}
    v = {k: torch.randn_like(oa.item[k]) for k in oa.branches}

    def loss(o):
        return sum((o.user[k] * w[k]).sum() + (o.item[k] * v[k]).sum()
                   for k in o.branches)

    ga = torch.autograd.grad(loss(oa), list(a.parameters()))
    gb = torch.autograd.grad(loss(ob), list(b.parameters()))
    # float32 tolerance: the static item features are propagated in float32
    # by each backend (the operators themselves are tested exactly in
    # test_nn_conv.py)
    for k in oa.branches:
        assert torch.allclose(oa.user[k], ob.user[k], rtol=1e-5, atol=1e-6)
        assert torch.allclose(oa.item[k], ob.item[k], rtol=1e-5, atol=1e-6)
    for (name, _), x, y in zip(a.named_parameters(), ga, gb):
        assert torch.allclose(x, y, rtol=1e-5, atol=1e-6), name


@pytest.mark.parametrize('homogeneous', ['mean', 'last'])
@pytest.mark.parametrize('user_mode,id_mode', [('embedding', 'none'),
                                               ('profile', 'concat'),
                                               ('shared', 'none')])
def test_values_and_gradients_match_dense_reference(homogeneous, user_mode,
                                                    id_mode):
    # The CSR path folds the layer means' constant factors into the L2
    # normalisation (the homogeneous 1/(L+1) is dropped, the user-item one
    # goes into the normalisation's divisor); values and parameter
    # gradients equal those of the dense reference, which scales as
    # written.
    data = toy_data()
    torch.manual_seed(0)
    model = BRMRS.from_data(data, embedding_dim=5, num_layers=3,
                            num_item_layers=2, num_user_layers=2,
                            homogeneous=homogeneous, user_mode=user_mode,
                            id_mode=id_mode, finetune_features=True,
                            fusion='concat').double()
    out = model(data)
    ref_u, ref_i = naive_forward(model, data)
    g = torch.Generator().manual_seed(1)
    probes = {m: (torch.randn(ref_u[m].shape, generator=g,
                              dtype=torch.float64),
                  torch.randn(ref_i[m].shape, generator=g,
                              dtype=torch.float64))
              for m in model.modalities}

    def loss(user, item):
        return sum((user[m] * probes[m][0]).sum() +
                   (item[m] * probes[m][1]).sum() for m in model.modalities)

    params = [p for p in model.parameters() if p.requires_grad]
    got = torch.autograd.grad(loss(out.user, out.item), params,
                              allow_unused=True)
    want = torch.autograd.grad(loss(ref_u, ref_i), params,
                               allow_unused=True)
    for m in model.modalities:
        assert torch.allclose(out.user[m], ref_u[m], atol=1e-10)
        assert torch.allclose(out.item[m], ref_i[m], atol=1e-10)
    for (name, _), a, b in zip(model.named_parameters(), got, want):
        if b is None:  # not in the unimodal branches (fusion weights)
            continue
        assert a is not None, name
        # 1e-7: the profile operator keeps its 1/deg weights in float32
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7), name


@pytest.mark.parametrize('backend', ['auto', 'edge_index'])
@pytest.mark.parametrize('kwargs', [dict(), dict(id_mode='concat',
                                                 user_mode='profile',
                                                 fusion='concat'),
                                    dict(user_mode='shared')])
def test_forward_on_some_users_equals_rows_of_full_output(backend, kwargs):
    data = toy_data()
    model = BRMRS.from_data(data, embedding_dim=4, backend=backend,
                            **kwargs).double()
    full = model(data)
    users = torch.tensor([11, 2, 2, 0])  # user 11 has no training item
    out = model(data, users=users)
    assert torch.equal(out.user_n_id, users)
    for b in full.branches:
        assert torch.allclose(out.user[b], full.user[b][users])
        assert torch.allclose(out.item[b], full.item[b])
    assert torch.allclose(out.extras['user_channels'],
                          full.extras['user_channels'][users])
    # the regularisation maps the rows to the global ids
    rows = torch.tensor([0, 3])
    assert torch.allclose(
        model.regularization(rows, rows, rows, out),
        model.regularization(users[rows], rows, rows))
    with pytest.raises(ValueError, match=r"outside \[0, 12\)"):
        model(data, users=torch.tensor([12]))
    with pytest.raises(TypeError, match="'users' must be an integer"):
        model(data, users=torch.tensor([0.0]))
    sub = data.clone()
    sub['user'].n_id = torch.arange(12)
    sub['item'].n_id = torch.arange(10)
    with pytest.raises(ValueError, match='mini-batch subgraph'):
        model(sub, users=users)


def test_shared_user_embedding():
    # user_mode='shared': one [U, 1, d] table is every modality's layer-0
    # user channel (the other reading of "symmetrically"); its regulariser
    # counts each user's embedding once.
    data = toy_data()
    model = BRMRS.from_data(data, embedding_dim=5, user_mode='shared',
                            num_user_layers=0).double()
    assert model.user_modality_embedding.shape == (12, 1, 5)
    out = model(data)
    ref_u, ref_i = naive_forward(model, data)
    for m in model.modalities:
        assert torch.allclose(out.user[m], ref_u[m], atol=1e-8)
        assert torch.allclose(out.item[m], ref_i[m], atol=1e-8)
    users, pos, neg = torch.tensor([0, 3]), torch.tensor([1, 2]), \
        torch.tensor([4, 5])
    want = model.user_modality_embedding[users].pow(2).sum() / 4
    assert torch.allclose(model.regularization(users, pos, neg), want)
    # The same table feeds both channels: its gradient collects both.
    model.zero_grad()
    out.user[model.modalities[0]].sum().backward()
    g0 = model.user_modality_embedding.grad.clone()
    assert g0.abs().sum() > 0
    assert "user_mode=shared" in repr(model)
