r"""The conformance suite: every registered recipe honours the model contract
(see ``tests/conformance.py``). A recipe registered later is collected here
as well; one registered inside a test runs the same checks by name."""
import pytest
import torch

import conformance
from pyg_brmrs.app import recipes
from pyg_brmrs.nn import FUSED, BPRMF, RecOutput
from pyg_brmrs.objectives import BPRObjective
from pyg_brmrs.app.recipes import Recipe
from pyg_brmrs.training import TrainConfig, Trainer


@pytest.fixture(scope='module')
def data():
    return conformance.block_data()


def train_two_epochs(model, objective, data):
    cfg = TrainConfig(epochs=2, batch_size=256, seed=11, eval_every=1,
                      device='cpu')
    return Trainer(model, objective, data, cfg).fit()


CHECKS = list(conformance.CHECKS) + ['gradients', 'state_dict']


@pytest.mark.parametrize('check', CHECKS)
@pytest.mark.parametrize('name', recipes.list_recipes())
def test_recipe_conforms(name, check, data):
    conformance.check_recipe(name, data, checks=[check])


@pytest.mark.parametrize('name', recipes.list_recipes())
def test_recipe_is_deterministic(name, data):
    conformance.check_recipe(name, data, checks=['determinism'],
                             train=train_two_epochs)


class IgnoresNid(BPRMF):
    r"""A model that breaks the contract: it returns its whole tables
    whatever rows the graph asks for (as a model that indexes by global id
    itself would)."""
    def forward(self, graph):
        return RecOutput({FUSED: self.user_embedding.weight},
                         {FUSED: self.item_embedding.weight})


class RelabelsNothing(BPRMF):
    r"""Reads the batch's rows, but drops their global ids from its output
    (so regularisers and objectives cannot map rows back)."""
    def forward(self, graph):
        out = super().forward(graph)
        out.user_n_id = out.item_n_id = None
        return out


@pytest.mark.parametrize('model, check', [
    (IgnoresNid, 'shuffled_whole_graph'),
    (IgnoresNid, 'complete_neighbourhoods'),
    (IgnoresNid, 'gradients'),
    (RelabelsNothing, 'shuffled_whole_graph'),
    (RelabelsNothing, 'gradients'),
])
def test_a_model_that_ignores_n_id_fails(model, check, data):
    recipe = Recipe(model, BPRObjective, False, dict(reg_weight=1e-4),
                    'breaks the model contract')
    with recipes.registered_recipe('broken', recipe):
        with pytest.raises(AssertionError, match='broken'):
            conformance.check_recipe('broken', data, checks=[check])


def test_a_recipe_registered_in_a_test_gets_the_suite(data):
    class Scaled(BPRMF):
        def forward(self, graph):
            out = super().forward(graph)
            return graph.output({FUSED: 2 * out.user_emb},
                                {FUSED: out.item_emb})

    recipe = Recipe(Scaled, BPRObjective, False, dict(reg_weight=1e-4))
    with recipes.registered_recipe('scaled_mf', recipe):
        conformance.check_recipe('scaled_mf', data, train=train_two_epochs)


def test_the_data_keeps_blocks_apart(data):
    prepared, model, _ = conformance.build('brmrs_paper', data)
    conformance.check_blocks('brmrs_paper', prepared, model)
    ei = prepared['user', 'rates', 'item'].edge_index
    assert torch.equal(conformance.block_of(ei[0], conformance.BLOCK_USERS),
                       conformance.block_of(ei[1], conformance.BLOCK_ITEMS))


class WholeGraphOnly(BPRMF):
    r"""Declares that it computes on the whole graph only."""
    supports_subgraph = False


class RefusesUnhelpfully(WholeGraphOnly):
    r"""Refuses a subgraph with an error that names nothing."""
    def graph(self, data, users=None):
        if 'n_id' in data['user']:
            raise ValueError('nope')
        return super().graph(data, users)


def test_a_full_graph_model_is_checked_for_its_refusal(data):
    for model, ok in ((WholeGraphOnly, True), (RefusesUnhelpfully, False)):
        recipe = Recipe(model, BPRObjective, False, dict(reg_weight=1e-4),
                        'runs on the full graph only')
        with recipes.registered_recipe('whole', recipe):
            for check in conformance.SUBGRAPH_CHECKS:
                if ok:
                    conformance.check_recipe('whole', data, checks=[check])
                else:
                    with pytest.raises(AssertionError,
                                       match='does not name the model'):
                        conformance.check_recipe('whole', data,
                                                 checks=[check])
