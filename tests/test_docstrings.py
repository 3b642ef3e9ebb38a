"""The examples in the docstrings run and print what they say."""

import doctest
import importlib

import pytest

MODULES = ["numbaconv", "numbaconv._shapes", "numbaconv._backend", "numbaconv._call",
           "numbaconv._threading", "numbaconv.functional", "numbaconv.grad",
           "numbaconv.nn", "numbaconv.ndimage", "numbaconv._ndimage_args"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS |
                             doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no docstring example"
    assert result.failed == 0


def test_every_public_function_has_an_example():
    import numbaconv
    for name in numbaconv.__all__:
        obj = getattr(numbaconv, name)
        if callable(obj):
            assert obj.__doc__ and ">>>" in obj.__doc__, name
