r"""The model contract, checked: helpers that every registered recipe must
pass (``tests/test_conformance.py`` runs them over ``recipes.RECIPES``; any
test can run them on a model of its own).

Each ``check_*`` function raises an :class:`AssertionError` that names the
model and what broke. The data is three disconnected blocks (users interact
only with items of their block, and the item features of a block share a
strong block-specific direction so that every cosine k-NN list stays in the
block), so a block is a connected component of every graph a model may
build: a batch holding a whole block holds complete neighbourhoods.
"""
import copy
from typing import Callable, Dict, Iterable, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_brmrs.app import recipes
from pyg_brmrs.data import make_synthetic
from pyg_brmrs.data.schema import ITEM_SIM, RATES, USER_SIM
from pyg_brmrs.nn import Recommender, RecOutput

#: Users and items per block, and the number of blocks.
BLOCK_USERS, BLOCK_ITEMS, NUM_BLOCKS = 60, 50, 3
ATOL, RTOL = 1e-5, 1e-4


def block_data(seed: int = 0, feature_dim: int = 6) -> HeteroData:
    r"""Three disconnected synthetic blocks (see the module description),
    split like :func:`~pyg_brmrs.data.make_synthetic` splits."""
    parts = [make_synthetic(BLOCK_USERS, BLOCK_ITEMS, feature_dim=feature_dim,
                            seed=seed + b, min_interactions=3,
                            mean_extra_interactions=1.0)
             for b in range(NUM_BLOCKS)]
    data = HeteroData()
    data['user'].num_nodes = BLOCK_USERS * NUM_BLOCKS
    data['item'].num_nodes = BLOCK_ITEMS * NUM_BLOCKS
    for key in ('edge_index', 'val_edge_index', 'test_edge_index'):
        data[RATES][key] = torch.cat([
            p[RATES][key] + torch.tensor([[BLOCK_USERS * b],
                                          [BLOCK_ITEMS * b]])
            for b, p in enumerate(parts)], dim=1)
    for m in ('image', 'text'):
        blocks = []
        for b, p in enumerate(parts):
            x = p['item'][f'x_{m}']
            offset = torch.zeros(x.size(0), NUM_BLOCKS)
            offset[:, b] = 20.0 * x.norm(dim=1).mean()
            blocks.append(torch.cat([x, offset], dim=1))
        data['item'][f'x_{m}'] = torch.cat(blocks)
    return data


def block_of(ids: Tensor, size: int) -> Tensor:
    return torch.div(ids, size, rounding_mode='floor')


def check_blocks(name: str, data: HeteroData, model: Recommender) -> None:
    r"""Every graph the model can read stays inside the blocks (a check of
    the test data, not of the model)."""
    graphs = [(t, BLOCK_USERS if t[0] == 'user' else BLOCK_ITEMS,
               data[t].edge_index) for t in (ITEM_SIM, USER_SIM)
              if t in data.edge_types]
    graphs += [(name_, BLOCK_USERS if g.node_type == 'user' else BLOCK_ITEMS,
                g.edge_index) for name_, g in model.own_graphs().items()]
    for t, size, ei in graphs:
        cross = (block_of(ei[0], size) != block_of(ei[1], size)).sum()
        assert int(cross) == 0, (
            f"{name}: the test data's graph {t} links blocks ({int(cross)} "
            f"edges); the conformance data must keep blocks apart")


def build(name: str, data: HeteroData, seed: int = 0,
          **params) -> Tuple[HeteroData, Recommender, object]:
    r"""``(prepared data, model, objective)`` of recipe :obj:`name`."""
    prepared = recipes.prepare(name, data, **params)
    torch.manual_seed(seed)
    model, objective = recipes.build(name, prepared, **params)
    return prepared, model, objective


def subgraph_batch(data: HeteroData, users: Tensor,
                   items: Tensor) -> HeteroData:
    r"""The subgraph of :obj:`users` and :obj:`items` (in that order) with
    their global ids as ``n_id``, as PyG's loaders mark a batch."""
    sub = data.subgraph({'user': users, 'item': items})
    sub['user'].n_id = users
    sub['item'].n_id = items
    return sub


def assert_rows(name: str, what: str, full: RecOutput, part: RecOutput,
                users: Tensor, items: Tensor,
                user_rows: Optional[Tensor] = None,
                item_rows: Optional[Tensor] = None) -> None:
    r"""The rows :obj:`user_rows` / :obj:`item_rows` of the batch output
    :obj:`part` equal the rows :obj:`users` / :obj:`items` of the full
    output, branch by branch."""
    assert set(part.user) == set(full.user), (
        f"{name}, {what}: branches {sorted(part.user)} vs "
        f"{sorted(full.user)}")
    sel_u = slice(None) if user_rows is None else user_rows
    sel_i = slice(None) if item_rows is None else item_rows
    for b in full.user:
        for side, got, want in (
                ('user', part.user[b], full.user[b]),
                ('item', part.item[b], full.item[b])):
            ids, sel = (users, sel_u) if side == 'user' else (items, sel_i)
            n = ids.numel() if sel is None or isinstance(sel, slice) else \
                None
            if n is not None:
                assert got.size(0) == n, (
                    f"{name}, {what}: the batch output has {got.size(0)} "
                    f"{side} rows in branch '{b}' for {n} {side}s in the "
                    f"batch (does the model read n_id?)")
            assert torch.allclose(got[sel], want[ids], atol=ATOL,
                                  rtol=RTOL), (
                f"{name}, {what}: {side} rows of branch '{b}' differ from "
                f"the full graph's by up to "
                f"{float((got[sel] - want[ids]).abs().max()):.3g} (does "
                f"the model read n_id / the graph's operators?)")


def check_shuffled_whole_graph(name: str, data, model) -> None:
    r"""The forward pass on the whole graph given as a batch in a shuffled
    order (every node, ``n_id`` a permutation) equals the full forward."""
    model.eval()
    g = torch.Generator().manual_seed(1)
    users = torch.randperm(int(data['user'].num_nodes), generator=g)
    items = torch.randperm(int(data['item'].num_nodes), generator=g)
    with torch.no_grad():
        full = model(data)
        part = model(subgraph_batch(data, users, items))
    assert part.user_n_id is not None and torch.equal(part.user_n_id,
                                                      users), (
        f"{name}: the batch output's user_n_id is not the batch's n_id")
    assert part.item_n_id is not None and torch.equal(part.item_n_id,
                                                      items), (
        f"{name}: the batch output's item_n_id is not the batch's n_id")
    assert_rows(name, 'shuffled whole graph', full, part, users, items)


def depth(model: Recommender) -> int:
    r"""A number of hops that covers every graph operation of the models of
    this package: their layer counts, plus one (the users' mean over their
    items)."""
    return 1 + sum(int(getattr(model, a, 0) or 0) for a in
                   ('num_layers', 'num_item_layers', 'num_user_layers'))


def union_closure(data: HeteroData, model: Recommender, users: Tensor,
                  items: Tensor, hops: int) -> Tuple[Tensor, Tensor]:
    r"""The users and items within :obj:`hops` hops of the seeds over the
    union of every graph the model may read (interactions in both
    directions, the data's k-NN graphs, the model's own graphs)."""
    nu = int(data['user'].num_nodes)
    n = nu + int(data['item'].num_nodes)
    ei = data[RATES].edge_index
    edges = [torch.stack([ei[0], ei[1] + nu]),
             torch.stack([ei[1] + nu, ei[0]])]
    for t in (ITEM_SIM, USER_SIM):
        if t in data.edge_types:
            shift = 0 if t[0] == 'user' else nu
            edges.append(data[t].edge_index + shift)
    for g in model.own_graphs().values():
        edges.append(g.edge_index + (0 if g.node_type == 'user' else nu))
    src, dst = torch.cat(edges, dim=1)
    inside = torch.zeros(n, dtype=torch.bool)
    inside[users] = True
    inside[items + nu] = True
    for _ in range(hops):
        inside[src[inside[dst]]] = True
    ids = inside.nonzero().view(-1)
    return ids[ids < nu], ids[ids >= nu] - nu


def check_complete_neighbourhoods(name: str, data, model) -> None:
    r"""A batch holding the complete :math:`k`-hop neighbourhood of some
    seed nodes (and nodes at its border with incomplete ones), in a
    shuffled order, gives the seeds their full-graph rows; so does a batch
    holding one whole block (a connected component)."""
    model.eval()
    g = torch.Generator().manual_seed(2)
    seed_users = torch.tensor([3, BLOCK_USERS + 7])
    seed_items = torch.tensor([5, BLOCK_ITEMS + 11])
    with torch.no_grad():
        full = model(data)
    cases = [('k-hop batch', union_closure(data, model, seed_users,
                                           seed_items, depth(model)))]
    block = (torch.arange(BLOCK_USERS), torch.arange(BLOCK_ITEMS))
    cases.append(('whole-block batch', block))
    for what, (users, items) in cases:
        assert users.numel() < int(data['user'].num_nodes), (
            f"{name}: the {what} holds every user; the test needs a part")
        users = users[torch.randperm(users.numel(), generator=g)]
        items = items[torch.randperm(items.numel(), generator=g)]
        with torch.no_grad():
            part = model(subgraph_batch(data, users, items))
        if what == 'k-hop batch':
            su, si = seed_users, seed_items
        else:
            su, si = users, items
        us = (users.unsqueeze(1) == su).nonzero()[:, 0]
        its = (items.unsqueeze(1) == si).nonzero()[:, 0]
        assert us.numel() == su.numel() and its.numel() == si.numel()
        for side, got, n in (('user', part.user_emb, users.numel()),
                             ('item', part.item_emb, items.numel())):
            assert got.size(0) == n, (
                f"{name}, {what}: {got.size(0)} {side} rows for {n} {side}s "
                f"in the batch (does the model read n_id?)")
        assert_rows(name, what, full, part, users[us], items[its], us, its)


def check_gradients_map_to_global_ids(name: str, data, model,
                                      objective) -> None:
    r"""The objective's terms and every parameter gradient on the whole graph
    given as a shuffled batch (local ids, the same drawn items mapped to
    local ids) equal those on the full graph (global ids): the batch's
    rows, regularisers and auxiliary terms map back to global ids."""
    model.eval()  # no stochastic edits: the two passes see one graph
    g = torch.Generator().manual_seed(3)
    ei = data[RATES].edge_index
    pairs = torch.randperm(ei.size(1), generator=g)[:64]
    users, pos = ei[0, pairs], ei[1, pairs]
    objective.generator = torch.Generator().manual_seed(4)
    draws = objective.draw(users)

    def grads(terms):
        model.zero_grad(set_to_none=True)
        terms['loss'].backward()
        return {k: (None if p.grad is None else p.grad.clone())
                for k, p in model.named_parameters()}

    full_terms = objective(model, data, users, pos, negatives=draws)
    full_grads = grads(full_terms)
    perm_u = torch.randperm(int(data['user'].num_nodes), generator=g)
    perm_i = torch.randperm(int(data['item'].num_nodes), generator=g)
    inv_u, inv_i = torch.argsort(perm_u), torch.argsort(perm_i)
    batch = subgraph_batch(data, perm_u, perm_i)
    local = {k: inv_i[v] for k, v in draws.items()}
    part_terms = objective(model, batch, inv_u[users], inv_i[pos],
                           negatives=local)
    part_grads = grads(part_terms)
    assert set(part_terms) == set(full_terms), (
        f"{name}: terms {sorted(part_terms)} vs {sorted(full_terms)}")
    for k in full_terms:
        assert torch.allclose(part_terms[k].detach(),
                              full_terms[k].detach(), atol=ATOL,
                              rtol=RTOL), (
            f"{name}: term '{k}' is {float(part_terms[k]):.6g} on the "
            f"shuffled batch but {float(full_terms[k]):.6g} on the full "
            f"graph (local ids not mapped back?)")
    for k, want in full_grads.items():
        got = part_grads[k]
        if want is None or got is None:
            assert (want is None or not want.any()) and \
                (got is None or not got.any()), (
                    f"{name}: parameter '{k}' gets a gradient on one "
                    f"graph only")
            continue
        assert torch.allclose(got, want, atol=ATOL, rtol=RTOL), (
            f"{name}: the gradient of '{k}' differs by up to "
            f"{float((got - want).abs().max()):.3g} between the shuffled "
            f"batch and the full graph")


def check_state_dict_round_trip(name: str, data, build_fn) -> None:
    r"""A model loaded from another's ``state_dict`` computes the same
    outputs."""
    _, a, _ = build_fn(seed=5)
    with torch.no_grad():
        for p in a.parameters():
            p.add_(0.01 * torch.randn_like(p))
    _, b, _ = build_fn(seed=6)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    with torch.no_grad():
        oa, ob = a(data), b(data)
    for side in ('user', 'item'):
        for k, v in getattr(oa, side).items():
            assert torch.equal(v, getattr(ob, side)[k]), (
                f"{name}: {side} branch '{k}' differs after a state_dict "
                f"round trip")


def check_recommend_excludes_training_items(name: str, data, model) -> None:
    r""":meth:`~pyg_brmrs.nn.Recommender.recommend` never returns a training
    item of the user, and returns valid item ids best first."""
    users = torch.arange(int(data['user'].num_nodes))
    k = 20
    top = model.recommend(data, users, k=k)
    assert top.shape == (users.numel(), k), f"{name}: shape {top.shape}"
    ei = data[RATES].edge_index
    num_items = int(data['item'].num_nodes)
    seen = set((ei[0] * num_items + ei[1]).tolist())
    rec = users.view(-1, 1) * num_items + top
    valid = top >= 0
    clash = [x for x in rec[valid].tolist() if x in seen]
    assert not clash, (f"{name}: recommend() returned {len(clash)} training "
                       f"items")
    assert int(top.max()) < num_items
    out = model.embed(data)
    scores = (out.user_emb[users].unsqueeze(1) *
              out.item_emb[top.clamp(min=0)]).sum(-1)
    assert bool((scores[:, :-1] >= scores[:, 1:] - 1e-5).all()), (
        f"{name}: recommend() lists are not best first")


def check_meta_device(name: str, data, model) -> None:
    r"""The model runs on the ``meta`` device (shapes only) and its output
    has the shapes of the CPU output."""
    model.eval()
    with torch.no_grad():
        cpu = model(data)
    meta_model = copy.deepcopy(model).to('meta')
    meta_data = copy.copy(data).to('meta')
    with torch.no_grad():
        out = meta_model(meta_data)
    for side in ('user', 'item'):
        for k, v in getattr(cpu, side).items():
            got = getattr(out, side)[k]
            assert got.device.type == 'meta' and got.shape == v.shape, (
                f"{name}: {side} branch '{k}' on meta: {tuple(got.shape)} "
                f"on {got.device} vs {tuple(v.shape)}")


def check_seeded_determinism(name: str, data, build_fn,
                             train: Callable) -> None:
    r"""Two trainings with one seed give identical histories."""
    histories = []
    for _ in range(2):
        prepared, model, objective = build_fn(seed=7)
        result = train(model, objective, prepared)
        histories.append([{k: v for k, v in rec.items()
                           if not k.endswith('time')}
                          for rec in result.history])
    assert histories[0] == histories[1], (
        f"{name}: two runs with one seed differ: {histories[0]} vs "
        f"{histories[1]}")


def check_refuses_subgraphs(name: str, data, model) -> None:
    r"""A model that computes on the whole graph only
    (``supports_subgraph = False``) refuses a mini-batch subgraph with an
    error naming itself and the full graph, and so does neighbour batching
    (instead of training silently on wrong representations)."""
    from pyg_brmrs.training import TrainConfig
    from pyg_brmrs.training.batching import make_steps
    users = torch.randperm(int(data['user'].num_nodes))
    items = torch.randperm(int(data['item'].num_nodes))
    cls = model.__class__.__name__
    for what, run in (
            ('a subgraph', lambda: model(subgraph_batch(data, users,
                                                        items))),
            ('neighbour batching', lambda: make_steps(
                TrainConfig(batching='neighbor'), data, model,
                torch.device('cpu')))):
        try:
            run()
        except ValueError as e:
            assert cls in str(e) and 'full' in str(e), (
                f"{name}: the refusal of {what} does not name the model and "
                f"the full graph: {e}")
        else:
            raise AssertionError(f"{name}: supports_subgraph is False but "
                                 f"{what} was accepted")


#: The checks that run the model on mini-batch subgraphs; a model with
#: ``supports_subgraph = False`` gets :func:`check_refuses_subgraphs`
#: instead.
SUBGRAPH_CHECKS = ('shuffled_whole_graph', 'complete_neighbourhoods',
                   'gradients')

CHECKS: Dict[str, Callable] = {
    'shuffled_whole_graph': check_shuffled_whole_graph,
    'complete_neighbourhoods': check_complete_neighbourhoods,
    'recommend': check_recommend_excludes_training_items,
    'meta_device': check_meta_device,
}


def check_recipe(name: str, data: Optional[HeteroData] = None,
                 checks: Optional[Iterable[str]] = None,
                 train: Optional[Callable] = None) -> None:
    r"""Runs the conformance checks on recipe :obj:`name` (all of them by
    default; :obj:`checks` names a subset of :data:`CHECKS` plus
    ``'gradients'``, ``'state_dict'`` and ``'determinism'``)."""
    data = block_data() if data is None else data
    prepared, model, objective = build(name, data)
    if model.supports_subgraph:  # the batch checks rely on the blocks
        check_blocks(name, prepared, model)
    every = list(CHECKS) + ['gradients', 'state_dict', 'determinism']
    for check in (every if checks is None else checks):
        if check in SUBGRAPH_CHECKS and not model.supports_subgraph:
            check_refuses_subgraphs(name, prepared, model)
        elif check in CHECKS:
            CHECKS[check](name, prepared, model)
        elif check == 'gradients':
            check_gradients_map_to_global_ids(name, prepared, model,
                                              objective)
        elif check == 'state_dict':
            check_state_dict_round_trip(
                name, prepared,
                lambda seed: build(name, data, seed=seed))
        elif check == 'determinism':
            if train is None:
                continue
            check_seeded_determinism(
                name, data, lambda seed: build(name, data, seed=seed), train)
        else:
            raise ValueError(f"Unknown check '{check}'")
