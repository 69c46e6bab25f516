import contextlib
import io
import itertools
import json
from pathlib import Path

import pytest
import torch
from torch_geometric.data import HeteroData

from pyg_brmrs.app import cli, recipes
from pyg_brmrs.data import features, make_synthetic, modalities
from pyg_brmrs.app.experiment import restore
from pyg_brmrs.nn import FREEDOM
from pyg_brmrs.nn import FUSED, RecGraph, Recommender, RecOutput
from pyg_brmrs.objectives import BPRObjective
from pyg_brmrs.app.recipes import (
    Recipe,
    get_recipe,
    list_recipes,
    register_recipe,
    registered_recipe,
    split_params,
    unregister_recipe,
)

ROOT = Path(__file__).resolve().parents[2]


# A baseline defined here, as a contributor would: free user embeddings,
# item embeddings projected from the concatenated item features, and an L2
# weight of its own (which the BPR objective also takes: `reg_weight`).
class ContentMF(Recommender):
    def __init__(self, num_users, num_items, feature_dim, embedding_dim=8,
                 reg_weight=0.0):
        super().__init__(num_users, num_items)
        self.reg_weight = reg_weight
        self.user_embedding = torch.nn.Embedding(num_users, embedding_dim)
        self.project = torch.nn.Linear(feature_dim, embedding_dim)

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs):
        dim = sum(features(data, m).size(1) for m in modalities(data))
        return cls(data['user'].num_nodes, data['item'].num_nodes, dim,
                   **kwargs)

    def forward(self, graph: RecGraph) -> RecOutput:
        dims = {m: features(graph.data, m).size(1) for m in graph.modalities}
        x = torch.cat(list(graph.features(dims).values()), dim=1)
        return graph.output(
            {FUSED: graph.user_rows(self.user_embedding.weight)},
            {FUSED: self.project(x)})


CONTENT_MF = Recipe(ContentMF, BPRObjective, graphs=False,
                    defaults=dict(embedding_dim=4),
                    description='test baseline: content-projected items')


@pytest.fixture
def content_mf():
    with registered_recipe('content_mf', CONTENT_MF) as recipe:
        yield recipe
    assert 'content_mf' not in list_recipes()


def test_registered_recipe_trains_through_the_cli(content_mf, tmp_path):
    assert get_recipe('content_mf') is content_mf
    out = tmp_path / 'run'
    argv = ['train', '--model', 'content_mf', '--synthetic',
            '--synthetic-users', '40', '--synthetic-items', '30',
            '--epochs', '1', '-q', '--param', 'objective.reg_weight=0.01',
            '--param', 'model.reg_weight=0.5', '--output-dir', str(out)]
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(argv) == 0
    stored = json.loads((out / 'results.json').read_text())
    assert stored['epochs_run'] == 1
    assert stored['info']['run']['model'] == 'content_mf'
    assert stored['info']['run']['params'] == {'objective.reg_weight': 0.01,
                                               'model.reg_weight': 0.5}
    # The stored run rebuilds the same model with the prefixed keywords.
    restored = restore(out / 'best.pt')
    assert isinstance(restored.model, ContentMF)
    assert restored.model.reg_weight == 0.5
    assert restored.objective.reg_weight == 0.01
    assert restored.model.project.out_features == 4  # recipe default
    assert 'content_mf' in cli.epilog()
    assert 'test baseline' in cli.epilog()


def test_split_params_routes_by_part():
    graph, model, objective = split_params('brmrs', {'k_item': 3,
                                                     'fusion': 'mean',
                                                     'theta': 0.2})
    assert graph == {'k_item': 3, 'topk': 'per_part',
                     'cooccurrence': 'softmax'}
    assert model['fusion'] == 'mean' and model['id_mode'] == 'concat'
    assert objective == {'reg_weight': 1e-4, 'theta': 0.2}
    # A prefix names the part explicitly, also for unambiguous names.
    assert split_params('brmrs', {'objective.theta': 0.3})[2]['theta'] == 0.3
    assert split_params('brmrs', {'graph.k_item': 4})[0]['k_item'] == 4


def test_freedom_names_mean_one_thing_each():
    # FREEDOM's modality BPR weight has its own name: `reg_weight` is the
    # objective's L2 weight everywhere, and no recipe needs a route.
    _, model, objective = split_params('freedom', {'reg_weight': 0.3,
                                                   'modality_bpr_weight': 0.1})
    assert model == {'modality_bpr_weight': 0.1}
    assert objective == {'reg_weight': 0.3}
    m, o = recipes.build('freedom', make_synthetic(30, 25), knn_k=3,
                         modality_bpr_weight=0.3, reg_weight=0.2)
    assert isinstance(m, FREEDOM) and m.modality_bpr_weight == 0.3
    assert o.reg_weight == 0.2
    for name in list_recipes():
        names = recipes.parameter_names(name)
        for key in get_recipe(name).defaults:
            owners = [p for p in names if key in names[p]]
            assert len(owners) == 1, (name, key, owners)


@pytest.mark.bad_input
def test_split_params_errors(content_mf):
    no_route = Recipe(ContentMF, BPRObjective, False)
    with registered_recipe('ambiguous', no_route):
        with pytest.raises(ValueError, match="'reg_weight' of model "
                           "'ambiguous' is ambiguous: the model and the "
                           "objective both take it; write model.reg_weight "
                           "or objective.reg_weight"):
            split_params('ambiguous', {'reg_weight': 0.1})
        assert split_params('ambiguous', {'model.reg_weight': 0.1})[1] == {
            'reg_weight': 0.1}
    with registered_recipe('ambiguous', no_route):
        with pytest.raises(ValueError, match="'model.embedding_dim' and "
                           "'embedding_dim' of model 'ambiguous' both set"):
            split_params('ambiguous', {'model.embedding_dim': 1,
                                       'embedding_dim': 2})
    with pytest.raises(ValueError, match="Unknown parameter 'fusion' for "
                       "the objective of model 'brmrs'"):
        split_params('brmrs', {'objective.fusion': 'mean'})
    with pytest.raises(ValueError, match='the prefix must be one of'):
        split_params('brmrs', {'sampler.theta': 1})
    with pytest.raises(ValueError, match="Unknown parameter 'nope' for "
                       "model 'brmrs'"):
        split_params('brmrs', {'nope': 1})
    with pytest.raises(ValueError, match="Unknown model 'nope'"):
        split_params('nope', {})


@pytest.mark.bad_input
def test_register_recipe_errors(content_mf):
    with pytest.raises(ValueError, match="'content_mf' is already "
                       "registered"):
        register_recipe('content_mf', CONTENT_MF)
    with pytest.raises(ValueError, match="'brmrs' is already registered"):
        register_recipe('brmrs', CONTENT_MF)
    with pytest.raises(ValueError, match="'name' must be a non-empty string"):
        register_recipe('my model', CONTENT_MF)
    with pytest.raises(TypeError, match="'recipe' must be a Recipe"):
        register_recipe('x', ContentMF)
    with pytest.raises(TypeError, match='Recipe.model must be a class with '
                       'a from_data'):
        register_recipe('x', Recipe(torch.nn.Linear, BPRObjective, False))
    with pytest.raises(ValueError, match="Unknown parameter 'nope'"):
        register_recipe('x', Recipe(ContentMF, BPRObjective, False,
                                    defaults={'nope': 1}))
    with pytest.raises(ValueError, match='is ambiguous'):
        register_recipe('x', Recipe(ContentMF, BPRObjective, False,
                                    defaults={'reg_weight': 1}))
    assert 'x' not in list_recipes()
    with pytest.raises(ValueError, match="Unknown model 'nope'"):
        unregister_recipe('nope')
    assert unregister_recipe('content_mf') is content_mf
    assert 'content_mf' not in list_recipes()
    register_recipe('content_mf', content_mf)


def recorded_params():
    for path in sorted(ROOT.glob('benchmarks/results/quality/*/*/'
                                 'summary.json')):
        summary = json.loads(path.read_text())
        model = summary['model']
        date = summary.get('machine', {}).get('date', '')
        if date[:19] < recipes.RENAMED_BEFORE:  # the name then
            model = recipes.RENAMED_RECIPES.get(model, model)
        grid = summary.get('grid') or {}
        points = [summary.get('selected') or {}]
        if list(grid) == ['points']:  # a run of --points
            points += grid['points']
        else:
            points += [dict(zip(grid, values))
                       for values in itertools.product(*grid.values())]
        for point in points:
            yield path, model, {**summary.get('fixed', {}), **point}


def test_presets_and_recorded_runs_still_route():
    for dataset, per_model in recipes.DATASET_DEFAULTS.items():
        for model, params in per_model.items():
            split_params(model, params)
    seen = 0
    for path, model, params in recorded_params():
        split_params(model, params)
        seen += 1
    if seen == 0:
        pytest.skip('no recorded quality results in this checkout')


def test_rearm_is_the_model_and_the_objective_variant_says_what_it_is():
    from pyg_brmrs.nn import BRMRS, REARM
    assert get_recipe('rearm').model is REARM
    variant = get_recipe('rearm_objective_on_brmrs')
    assert variant.model is BRMRS
    assert variant.description.startswith("REARM's objective")
    # results written before REARM's model existed name the variant 'rearm'
    assert recipes.RENAMED_RECIPES['rearm'] == 'rearm_objective_on_brmrs'


def test_training_settings_of_recipes_presets_and_options(content_mf):
    # the defaults, then the recipe's own settings, then train.* keys,
    # then explicit settings
    assert recipes.train_config('content_mf') == recipes.TrainConfig()
    tuned = Recipe(ContentMF, BPRObjective, False, description='decays',
                   training=dict(lr_decay=(0.5, 10), lr=5e-3))
    with registered_recipe('decaying', tuned):
        cfg = recipes.train_config('decaying')
        assert cfg.lr_decay == (0.5, 10) and cfg.lr == 5e-3
        cfg = recipes.train_config('decaying', {'train.lr': 1e-4,
                                                'embedding_dim': 8})
        assert cfg.lr == 1e-4 and cfg.lr_decay == (0.5, 10)
        cfg = recipes.train_config('decaying', {'train.lr': 1e-4}, lr=0.1,
                                   seed=4)
        assert cfg.lr == 0.1 and cfg.seed == 4
        # train.* keys are checked and left out of the model's parameters
        assert split_params('decaying', {'train.lr': 1e-4,
                                         'embedding_dim': 8})[1] == {
            'embedding_dim': 8}
        with pytest.raises(ValueError, match="Unknown training setting "
                           "'train.lrate'"):
            split_params('decaying', {'train.lrate': 1e-4})
        with pytest.raises(ValueError, match='TrainConfig.lr_decay'):
            recipes.train_config('decaying', {'train.lr_decay': 0.9})
    with pytest.raises(ValueError, match='not a valid TrainConfig'):
        register_recipe('x', Recipe(ContentMF, BPRObjective, False,
                                    training={'lr_decay': (2.0, 1)}))
    with pytest.raises(ValueError, match='not a valid TrainConfig'):
        register_recipe('x', Recipe(ContentMF, BPRObjective, False,
                                    training={'lrate': 1e-3}))
    assert 'x' not in list_recipes()


def test_cli_training_options_fall_back_to_recipe_and_preset(content_mf):
    tuned = Recipe(ContentMF, BPRObjective, False, description='decays',
                   training=dict(lr_decay=(0.5, 10)))
    with registered_recipe('decaying', tuned):
        parser = cli.build_parser()  # after the registration (choices)
        args = parser.parse_args(['train', '--model', 'decaying',
                                  '--synthetic'])
        cfg = cli.train_config(args, {})
        assert cfg.lr_decay == (0.5, 10) and cfg.lr == 1e-3
        cfg = cli.train_config(args, {'train.lr': 2e-3})
        assert cfg.lr == 2e-3
        args = parser.parse_args(['train', '--model', 'decaying',
                                  '--synthetic', '--lr', '0.01',
                                  '--lr-decay', '0.9', '5'])
        cfg = cli.train_config(args, {'train.lr': 2e-3})
        assert cfg.lr == 0.01 and cfg.lr_decay == (0.9, 5)
        args = parser.parse_args(['train', '--model', 'decaying',
                                  '--synthetic', '--lr-decay', '0.9', '2.5'])
        with pytest.raises(cli.CLIError, match='TrainConfig.lr_decay'):
            cli.train_config(args, {})


def test_the_papers_recipe_is_pinned():
    # brmrs_paper is the paper's model: pure unimodal branches, per-modality
    # user embeddings, mean fusion, Eq. 1's combined top-k with the Jaccard
    # overlap; an edit of the recipe must fail here
    from pyg_brmrs.nn import BRMRS
    from pyg_brmrs.objectives import BRMRSObjective
    recipe = get_recipe('brmrs_paper')
    assert recipe.model is BRMRS and recipe.objective is BRMRSObjective
    assert recipe.graphs is True
    pinned = dict(id_mode='none', user_mode='embedding', fusion='mean',
                  topk='combined', cooccurrence='jaccard')
    assert {k: recipe.defaults[k] for k in pinned} == pinned
    data = make_synthetic(num_users=30, num_items=25, feature_dim=4, seed=1)
    prepared = recipes.prepare('brmrs_paper', data)
    model, objective = recipes.build('brmrs_paper', prepared)
    assert (model.id_mode, model.user_mode) == ('none', 'embedding')
    assert type(model.user_fusion).__name__ == 'MeanFusion'
    assert type(model.item_fusion).__name__ == 'MeanFusion'
    assert objective.bpr_weight == 0.0 and objective.lambda_s > 0
    # the readings and additions docs/fidelity.md lists, as shipped
    assert (model.normalize, model.homogeneous) == (True, 'mean')
    assert (objective.lambda_h, objective.lambda_s) == (1.0, 1.0)
    assert objective.reg_scope == 'batch'
    assert objective.syn_loss.detach_reference is False
    assert objective.syn_negative == 'uniform'
    assert objective.sampler.assignment == 'cross'
    graph, _, _ = split_params('brmrs_paper', recipe.defaults)
    assert graph['topk'] == 'combined' and graph['cooccurrence'] == 'jaccard'


def test_every_equal_budget_grid_has_eight_points_that_route():
    # benchmarks/quality.py's EQUAL_GRIDS: the same budget for every model
    # (8 validation runs), each point a valid parameter set of its recipe
    import importlib.util
    path = ROOT / 'benchmarks' / 'quality.py'
    if not path.exists():
        pytest.skip('benchmarks/ is not in this checkout')
    spec = importlib.util.spec_from_file_location('quality_bench', path)
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    assert set(quality.EQUAL_GRIDS) == {m for m, _ in quality.EQUAL}
    for model, spec_ in quality.EQUAL_GRIDS.items():
        if 'points' in spec_:
            points = spec_['points']
        else:
            grid = spec_['grid']
            points = [dict(zip(grid, v))
                      for v in itertools.product(*grid.values())]
        assert len(points) == 8, (model, len(points))
        assert len({json.dumps(p, sort_keys=True) for p in points}) == 8
        for point in points:
            split_params(model, {**spec_.get('params', {}), **point})
