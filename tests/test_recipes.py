import warnings

import pytest

from pyg_brmrs import cli, recipes
from pyg_brmrs.data import make_synthetic


def test_presets_and_defaults_use_the_current_names():
    for name in recipes.list_recipes():
        renames = recipes.parameter_renames(name)
        assert not set(recipes.get_recipe(name).defaults) & set(renames)
        for per_model in recipes.DATASET_DEFAULTS.values():
            assert not set(per_model.get(name, {})) & set(renames), name
    assert recipes.parameter_renames('freedom') == {
        'num_ui_layers': 'num_layers', 'dropout': 'edge_dropout'}
    model = recipes.parameter_names('freedom')['model']
    assert {'num_layers', 'num_item_layers', 'edge_dropout'} <= set(model)
    assert not {'dropout', 'num_ui_layers'} & set(model)


def test_deprecated_parameter_names_are_routed_with_a_warning():
    with pytest.warns(DeprecationWarning) as record:
        _, model, objective = recipes.split_params(
            'freedom', {'dropout': 0.9, 'num_ui_layers': 3})
    assert model == {'edge_dropout': 0.9, 'num_layers': 3}
    assert sorted(str(w.message) for w in record) == [
        "The argument 'dropout' of recipe 'freedom' is deprecated and will "
        "be removed in a future release; use 'edge_dropout'",
        "The argument 'num_ui_layers' of recipe 'freedom' is deprecated and "
        "will be removed in a future release; use 'num_layers'"]
    with pytest.raises(ValueError, match="both 'dropout'"):
        recipes.split_params('freedom', {'dropout': 0.9, 'edge_dropout': 0.8})
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # the current names do not warn
        recipes.split_params('freedom', {'edge_dropout': 0.9})
    data = make_synthetic(20, 15, seed=0)
    with pytest.warns(DeprecationWarning):
        model, _ = recipes.build('freedom', data, dropout=0.7)
    assert model.edge_dropout == 0.7


def test_merge_params_lets_a_later_old_name_replace_a_preset():
    assert recipes.merge_params('freedom', {'edge_dropout': 0.8, 'a': 1},
                                {'dropout': 0.9}) == {'a': 1, 'dropout': 0.9}
    assert recipes.merge_params('freedom', {'dropout': 0.8},
                                {'edge_dropout': 0.9}) == {
                                    'edge_dropout': 0.9}
    # The CLI: --param wins over --preset under either name.
    args = cli.build_parser().parse_args(
        ['train', '--model', 'freedom', '--synthetic', '--preset', 'tiktok',
         '--param', 'dropout=0.9'])
    with pytest.warns(DeprecationWarning):
        params = cli.model_params(args)
    assert params == {'reg_weight': 1e-4, 'dropout': 0.9}
    args = cli.build_parser().parse_args(
        ['train', '--model', 'freedom', '--synthetic', '--preset', 'tiktok'])
    assert cli.model_params(args) == {'edge_dropout': 0.8, 'reg_weight': 1e-4}
