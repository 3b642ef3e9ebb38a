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


def _public_docs():
    import numbaconv
    from numbaconv import nn
    docs = {name: getattr(numbaconv, name).__doc__ for name in numbaconv.__all__
            if callable(getattr(numbaconv, name))}
    docs.update({f"nn.{name}": getattr(nn, name).__doc__ for name in nn.__all__})
    return docs


def test_docstrings_stand_on_their_own():
    """A pip user has no README: docstrings do not send them there, and the
    mode table with its NumPy and SciPy names is in the functions' docs."""
    import numbaconv
    for name, doc in _public_docs().items():
        assert "README" not in doc, name
        assert "Zero-based" not in doc, name
    for nd in (1, 2, 3):
        doc = getattr(numbaconv, f"conv{nd}d").__doc__
        for mode, numpy_name, scipy_name in [("'reflect'", "reflect", "mirror"),
                                             ("'replicate'", "edge", "nearest"),
                                             ("'symmetric'", "symmetric", "reflect")]:
            row = next(line for line in doc.splitlines()
                       if line.strip().startswith(mode))
            assert row.split()[-2:] == [numpy_name, scipy_name], row


def test_returns_name_the_unbatched_shape():
    import numbaconv
    for name in ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                 "conv_transpose3d"):
        doc = getattr(numbaconv, name).__doc__
        returns = doc[doc.index("Returns"):doc.index("Returns") + 300]
        assert "for unbatched input" in returns, name


def test_transpose_padding_mode_describes_the_adjoint():
    import numbaconv
    from numbaconv import nn

    def mode_text(doc):
        start = doc.index("padding_mode :")
        return doc[start:doc.index("\n", doc.index("\n", start) + 1)]

    for nd in (1, 2, 3):
        conv = mode_text(getattr(numbaconv, f"conv{nd}d").__doc__)
        for doc in (getattr(numbaconv, f"conv_transpose{nd}d").__doc__,
                    getattr(nn, f"ConvTranspose{nd}d").__doc__):
            text = mode_text(doc)
            assert "adjoint" in text and text != conv
        assert "adjoint" not in conv
