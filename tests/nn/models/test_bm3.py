r"""BM3 against a dense reference of MMRec's ``bm3.py``: the online
representations, the bootstrap loss, the regulariser, the dropout targets,
training without negatives."""
import pytest
import torch
import torch.nn.functional as F

from pyg_brmrs.nn import BM3
from pyg_brmrs.objectives import NegativeFreeObjective
from pyg_brmrs.training import TrainConfig, Trainer
from pyg_brmrs.data import make_synthetic

from dense_reference import RATES, dense_lightgcn, dense_norm_adj, toy_data


def reference(model, data, users, items):
    r"""MMRec's ``forward`` + ``calculate_loss`` with dropout 0 (targets =
    the online tables), dense, float64."""
    U, I = model.num_users, model.num_items
    A = dense_norm_adj(data[RATES].edge_index, U, I)
    e_u = model.user_embedding.weight.double()
    e_i = model.item_embedding.weight.double()
    z = dense_lightgcn(torch.cat([e_u, e_i]), A, model.num_layers)
    z_u, z_i = z[:U], z[U:] + e_i
    W, b = model.predictor.weight.double(), model.predictor.bias.double()

    def g(x):
        return x @ W.t() + b

    def c(a, t):  # MMRec's targets come from torch.no_grad()
        return 1 - F.cosine_similarity(a, t.detach(), dim=-1).mean()

    loss = c(g(z_u)[users], z_i[items]) + c(g(z_i)[items], z_u[users])
    cl = 0.0
    for m in model.modalities:
        lin = model.proj[m]
        t = model.item_features[m].double() @ lin.weight.double().t() + \
            lin.bias.double()
        p = g(t)[items]
        cl = cl + c(p, z_i[items]) + c(p, t[items])
    reg = (z_u.norm() + z_i.norm()) / I
    return g(z_u), g(z_i), loss, model.cl_weight * cl, reg


@pytest.mark.parametrize('num_layers', [0, 1, 2])
def test_forward_and_loss_match_the_reference(num_layers):
    data = toy_data()
    torch.manual_seed(0)
    model = BM3.from_data(data, embedding_dim=5, num_layers=num_layers,
                          cl_weight=0.7)
    model.eval()  # no dropout: targets = the online tables
    ei = data[RATES].edge_index
    users, items = ei[0, :9], ei[1, :9]
    out = model(data)
    gu, gi, loss, cl, reg = reference(model, data, users, items)
    assert torch.allclose(out.user_emb.double(), gu, atol=1e-5)
    assert torch.allclose(out.item_emb.double(), gi, atol=1e-5)
    terms = model.positive_loss(out, users, items)
    assert set(terms) == {'align', 'modality_align'}
    assert terms['align'].item() == pytest.approx(loss.item(), abs=1e-5)
    assert terms['modality_align'].item() == pytest.approx(cl.item(),
                                                           abs=1e-5)
    got = model.regularization(users, items, None, out)
    assert got.item() == pytest.approx(reg.item(), rel=1e-5)
    # the objective adds them with its reg_weight
    obj = NegativeFreeObjective(reg_weight=0.3)
    total = obj(model, data, users, items)['loss']
    assert total.item() == pytest.approx(
        (loss + cl + 0.3 * reg).item(), abs=1e-5)


def test_gradients_match_the_reference():
    data = toy_data(seed=2)
    torch.manual_seed(1)
    model = BM3.from_data(data, embedding_dim=4, num_layers=2).double()
    model.eval()
    ei = data[RATES].edge_index
    users, items = ei[0, :7], ei[1, :7]
    out = model(data)
    terms = model.positive_loss(out, users, items)
    (terms['align'] + terms['modality_align']
     + model.regularization(users, items, None, out)).backward()
    got = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    _, _, loss, cl, reg = reference(model, data, users, items)
    (loss + cl + reg).backward()
    for k, p in model.named_parameters():
        want = torch.zeros_like(p) if p.grad is None else p.grad
        assert torch.allclose(got[k], want, atol=1e-8), k


def test_user_item_terms_do_not_reach_the_projections():
    data = toy_data()
    model = BM3.from_data(data, embedding_dim=4).double()
    model.eval()
    ei = data[RATES].edge_index
    out = model(data)
    terms = model.positive_loss(out, ei[0, :5], ei[1, :5])
    terms['align'].backward()
    # the projections enter the modality terms only
    assert all(p.grad is None or not p.grad.any()
               for p in model.proj.parameters())


def test_dropout_targets_in_training_only():
    data = toy_data()
    torch.manual_seed(0)
    model = BM3.from_data(data, embedding_dim=16, dropout=0.5)
    ei = data[RATES].edge_index
    users, items = ei[0, :9], ei[1, :9]
    model.eval()
    out = model(data)
    still = model.positive_loss(out, users, items)['align']
    assert torch.equal(still, model.positive_loss(out, users, items)['align'])
    model.train()
    torch.manual_seed(3)
    a = model.positive_loss(out, users, items)['align']
    torch.manual_seed(3)
    b = model.positive_loss(out, users, items)['align']
    c = model.positive_loss(out, users, items)['align']
    assert torch.equal(a, b) and not torch.equal(a, c) and \
        not torch.equal(a, still)
    # the dropped fraction is p (targets of a 10k-entry table)
    t = model._target(torch.ones(100, 100))
    assert 0.45 < float((t == 0).float().mean()) < 0.55
    assert set(t.unique().tolist()) == {0.0, 2.0}  # kept entries / (1 - p)


def test_features_are_fine_tuned_or_frozen():
    data = toy_data()
    tuned = BM3.from_data(data, embedding_dim=4)
    assert set(n for n, _ in tuned.named_parameters()
               if n.startswith('item_features')) == {
        'item_features.image', 'item_features.text'}
    assert torch.equal(tuned.item_features['image'].data,
                       data['item'].x_image)
    frozen = BM3.from_data(data, embedding_dim=4, finetune_features=False)
    assert not any(n.startswith('item_features')
                   for n, _ in frozen.named_parameters())
    frozen.load_state_dict({k: v for k, v in tuned.state_dict().items()
                            if not k.startswith('item_features')})
    tuned.eval(), frozen.eval()
    assert torch.allclose(tuned(data).user_emb, frozen(data).user_emb)


def test_trains_without_negatives():
    data = make_synthetic(num_users=60, num_items=50, feature_dim=6, seed=1)
    torch.manual_seed(0)
    model = BM3.from_data(data, embedding_dim=8)
    obj = NegativeFreeObjective.from_data(data, reg_weight=0.1)
    res = Trainer(model, obj, data, TrainConfig(epochs=4, batch_size=128,
                                                lr=1e-2, device='cpu')).fit()
    align = [h['align'] for h in res.history]
    assert align[-1] < align[0]
    assert set(res.history[0]) >= {'align', 'modality_align', 'reg', 'loss'}


def test_bad_arguments():
    data = toy_data()
    with pytest.raises(ValueError, match="'dropout' must be below 1"):
        BM3.from_data(data, dropout=1.0)
    with pytest.raises(ValueError, match="'dropout'"):
        BM3.from_data(data, dropout=-0.1)
    with pytest.raises(ValueError, match="'cl_weight'"):
        BM3.from_data(data, cl_weight=-1.0)
    with pytest.raises(ValueError, match="needs 'item_features'"):
        BM3(10, 10, {'image': 3})
    model = BM3.from_data(data, embedding_dim=4)
    with pytest.raises(ValueError, match="needs the forward output"):
        model.regularization(torch.tensor([0]), torch.tensor([0]))
    assert 'BM3(' in repr(model) and 'dropout=0.5' in repr(model)
