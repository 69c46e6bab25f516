import inspect

import pytest

from pyg_brmrs.utils.deprecation import (
    deprecated_arguments,
    renamed_arguments,
    renamed_names,
)


@renamed_arguments(old='new')
def function(a, new=1):
    return a, new


def test_renamed_argument_warns_at_the_caller_and_forwards():
    assert function(0, new=2) == (0, 2)
    with pytest.warns(DeprecationWarning,
                      match="'old' of 'function' .* use 'new'") as record:
        assert function(0, old=3) == (0, 3)
    assert record[0].filename == __file__  # points at the caller
    with pytest.raises(TypeError, match="both 'old'"):
        function(0, old=3, new=4)
    assert list(inspect.signature(function).parameters) == ['a', 'new']
    assert deprecated_arguments(function) == {'old': 'new'}
    assert deprecated_arguments(print) == {}


def test_renamed_names_is_a_module_getattr():
    namespace = {'New': object()}
    getattr_ = renamed_names('pkg.mod', namespace, {'Old': 'New'})
    with pytest.warns(DeprecationWarning,
                      match="name 'Old' of 'pkg.mod' .* use 'New'") as rec:
        assert getattr_('Old') is namespace['New']
    assert rec[0].filename == __file__
    with pytest.raises(AttributeError,
                       match="module 'pkg.mod' has no attribute 'Nope'"):
        getattr_('Nope')
