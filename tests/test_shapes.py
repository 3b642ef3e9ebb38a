"""Argument rules: every malformed call is a ValueError/TypeError naming the
argument, raised before any compute; the shape rules of the spec module."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import naive

numbaconv = pytest.importorskip("numbaconv")

X3 = np.zeros((1, 8, 5, 5, 5))
W3 = np.zeros((4, 3, 3, 3, 3))


def conv_fn(nd):
    return getattr(numbaconv, f"conv{nd}d")


def convt_fn(nd):
    return getattr(numbaconv, f"conv_transpose{nd}d")


def data(nd, N=1, C=2, L=6, dtype=np.float64):
    return np.zeros((N, C) + (L,) * nd, dtype)


def kernel(nd, K=2, Cg=2, k=3, dtype=np.float64):
    return np.zeros((K, Cg) + (k,) * nd, dtype)


# ---------------------------------------------------------------------------
# shapes and channels
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("extra", [-2, 1])
def test_input_wrong_ndim(nd, extra):
    x = np.zeros((2,) * (nd + 2 + extra))
    with pytest.raises(ValueError, match="input"):
        conv_fn(nd)(x, kernel(nd))
    with pytest.raises(ValueError, match="input"):
        convt_fn(nd)(x, kernel(nd))


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_weight_wrong_ndim(nd):
    with pytest.raises(ValueError, match="weight"):
        conv_fn(nd)(data(nd), np.zeros((2, 2) + (3,) * (nd + 1)))
    with pytest.raises(ValueError, match="weight"):
        conv_fn(nd)(data(nd), np.zeros((2, 2) + (3,) * (nd - 1)))


def test_channel_mismatch_message():
    """The DESIGN.md example, word for word where it matters."""
    with pytest.raises(ValueError) as exc:
        numbaconv.conv3d(X3, W3, groups=2)
    msg = str(exc.value)
    assert "groups=2" in msg
    assert "(4, 3, 3, 3, 3)" in msg
    assert "(1, 8, 5, 5, 5)" in msg
    assert re.search(r"6 channels.*8 channels", msg), msg


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_channel_mismatch(nd):
    with pytest.raises(ValueError, match="channels"):
        conv_fn(nd)(data(nd, C=3), kernel(nd, Cg=2))
    # unbatched too
    with pytest.raises(ValueError, match="channels"):
        conv_fn(nd)(data(nd, C=3)[0], kernel(nd, Cg=2))


@pytest.mark.parametrize("nd", [1, 3])
def test_transpose_channel_mismatch(nd):
    with pytest.raises(ValueError, match="channels"):
        convt_fn(nd)(data(nd, C=3), kernel(nd, K=2))


def test_groups_divisibility():
    # weight out-channels not divisible by groups
    with pytest.raises(ValueError, match="groups=2"):
        numbaconv.conv2d(data(2, C=4), kernel(2, K=3, Cg=2), groups=2)
    # input channels not groups * weight.shape[1]
    with pytest.raises(ValueError, match="groups=3"):
        numbaconv.conv2d(data(2, C=4), kernel(2, K=3, Cg=2), groups=3)
    # transposed: input channels (weight dim 0) not divisible
    with pytest.raises(ValueError, match="groups=2"):
        numbaconv.conv_transpose2d(data(2, C=3), kernel(2, K=3, Cg=2), groups=2)


@pytest.mark.parametrize("groups", [0, -1, 1.5, "2"])
def test_groups_bad_value(groups):
    with pytest.raises((ValueError, TypeError), match="groups"):
        numbaconv.conv1d(data(1), kernel(1), groups=groups)


def test_bias_wrong_shape():
    with pytest.raises(ValueError, match="bias"):
        numbaconv.conv2d(data(2), kernel(2, K=2), np.zeros(3))
    with pytest.raises(ValueError, match="bias"):
        numbaconv.conv2d(data(2), kernel(2, K=2), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="bias"):
        numbaconv.conv_transpose2d(data(2, C=2), kernel(2, K=2, Cg=3), np.zeros(2))


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_kernel_larger_than_padded_input(nd):
    x = data(nd, L=4)
    with pytest.raises(ValueError, match="(?i)kernel size"):
        conv_fn(nd)(x, kernel(nd, k=6))
    with pytest.raises(ValueError, match="(?i)kernel size"):
        conv_fn(nd)(x, kernel(nd, k=3), dilation=2)
    # padding makes it fit
    assert conv_fn(nd)(x, kernel(nd, k=6), padding=1).shape == (1, 2) + (1,) * nd


def test_zero_kernel_size():
    with pytest.raises(ValueError, match="weight"):
        numbaconv.conv2d(data(2), np.zeros((2, 2, 0, 3)))


# ---------------------------------------------------------------------------
# hyper-parameters
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["stride", "dilation"])
@pytest.mark.parametrize("value", [0, -1, (1, 0), (2, -3)])
def test_nonpositive_stride_dilation(name, value):
    with pytest.raises(ValueError, match=name):
        numbaconv.conv2d(data(2), kernel(2), **{name: value})
    with pytest.raises(ValueError, match=name):
        numbaconv.conv_transpose2d(data(2), kernel(2), **{name: value})


@pytest.mark.parametrize("name", ["stride", "dilation", "padding"])
@pytest.mark.parametrize("value", [(1, 1), (1, 1, 1, 1), ()])
def test_tuple_wrong_length(name, value):
    with pytest.raises(ValueError, match=name):
        numbaconv.conv3d(data(3), kernel(3), **{name: value})


@pytest.mark.parametrize("name", ["stride", "dilation"])
@pytest.mark.parametrize("value", [1.5, "2", None, (1.0, 1)])
def test_non_int_stride_dilation(name, value):
    with pytest.raises((ValueError, TypeError), match=name):
        numbaconv.conv2d(data(2), kernel(2), **{name: value})


@pytest.mark.parametrize("padding", [-1, (0, -1), ((0, 1), (-1, 0)), ((1, -2), (0, 0))])
def test_negative_padding(padding):
    with pytest.raises(ValueError, match="padding"):
        numbaconv.conv2d(data(2), kernel(2), padding=padding)


@pytest.mark.parametrize("padding", ["SAME", "full", "", "causal", 1.5, ((1, 2, 3), (0, 0)), ((1,), (0, 0))])
def test_bad_padding_values(padding):
    with pytest.raises((ValueError, TypeError), match="padding"):
        numbaconv.conv2d(data(2), kernel(2), padding=padding)


@pytest.mark.parametrize("padding", ["same", "valid", 1, (1, 2), ((1, 0), (0, 2))])
def test_padding_forms_accepted(padding):
    x = np.arange(2 * 2 * 6 * 7, dtype=np.float64).reshape(2, 2, 6, 7) / 10
    w = np.linspace(-1, 1, 2 * 2 * 3 * 2).reshape(2, 2, 3, 2)
    got = numbaconv.conv2d(x, w, padding=padding)
    ref = naive.conv(x, w, padding=padding)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("d", [1, 2])
def test_same_with_even_kernel_extra_at_end(k, d):
    """'same' with an even kernel is not an error: the extra pad goes at the end."""
    x = np.arange(1.0, 10.0)[None, None]
    w = np.zeros((1, 1, k))
    w[0, 0, 0] = 1.0  # picks x[o - lo]
    got = numbaconv.conv1d(x, w, padding="same", dilation=d)
    total = d * (k - 1)
    lo = total // 2
    expect = np.concatenate([np.zeros(lo), x[0, 0, :9 - lo]])
    np.testing.assert_array_equal(got[0, 0], expect)


def test_padding_mode_unknown():
    for mode in ["zero", "Reflect", "mirror", "wrap", "edge", "constant", None]:
        with pytest.raises(ValueError, match="padding_mode"):
            numbaconv.conv1d(data(1), kernel(1), padding=1, padding_mode=mode)


def test_device_unknown():
    for device in ["gpu", "CPU", "cuda:0x", 0]:
        with pytest.raises(ValueError, match="device"):
            numbaconv.conv1d(data(1), kernel(1), device=device)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_reflect_padding_must_be_smaller_than_size(nd):
    x = data(nd, L=3)
    with pytest.raises(ValueError, match="reflect"):
        conv_fn(nd)(x, kernel(nd, k=1), padding=3, padding_mode="reflect")
    with pytest.raises(ValueError, match="reflect"):
        lo_hi = ((0, 0),) * (nd - 1) + ((0, 3),)
        conv_fn(nd)(x, kernel(nd, k=1), padding=lo_hi, padding_mode="reflect")
    # padding = size - 1 is fine
    got = conv_fn(nd)(x, kernel(nd, k=1), padding=2, padding_mode="reflect")
    assert got.shape == (1, 2) + (7,) * nd


@pytest.mark.parametrize("mode", ["circular", "symmetric"])
def test_circular_padding_at_most_size(mode):
    x = data(2, L=3)
    with pytest.raises(ValueError, match=mode):
        numbaconv.conv2d(x, kernel(2, k=1), padding=4, padding_mode=mode)
    with pytest.raises(ValueError, match=mode):
        numbaconv.conv2d(x, kernel(2, k=1), padding=((0, 0), (4, 0)), padding_mode=mode)
    got = numbaconv.conv2d(x, kernel(2, k=1), padding=3, padding_mode=mode)
    assert got.shape == (1, 2, 9, 9)


# ---------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_, np.float16,
                                   np.complex64, np.complex128])
def test_bad_input_dtype(dtype):
    x = data(2).astype(dtype)
    with pytest.raises(TypeError, match="input") as exc:
        numbaconv.conv2d(x, kernel(2))
    assert "float32" in str(exc.value) or "float64" in str(exc.value)
    if np.dtype(dtype).kind in "biu":
        assert "cast" in str(exc.value)


@pytest.mark.parametrize("dtype", [np.int64, np.complex128])
def test_bad_weight_and_bias_dtype(dtype):
    with pytest.raises(TypeError, match="weight"):
        numbaconv.conv2d(data(2), kernel(2).astype(dtype))
    with pytest.raises(TypeError, match="bias"):
        numbaconv.conv2d(data(2), kernel(2), np.zeros(2, dtype))


def test_mixed_dtypes():
    with pytest.raises(TypeError, match="weight") as exc:
        numbaconv.conv2d(data(2, dtype=np.float32), kernel(2, dtype=np.float64))
    assert "float32" in str(exc.value) and "float64" in str(exc.value)
    with pytest.raises(TypeError, match="bias"):
        numbaconv.conv2d(data(2), kernel(2), np.zeros(2, np.float32))
    with pytest.raises(TypeError, match="weight"):
        numbaconv.conv_transpose1d(data(1, dtype=np.float64), kernel(1, dtype=np.float32))


def test_nested_lists_are_arrays():
    x = [[[1.0, 2.0, 3.0, 4.0]]]
    w = [[[1.0, -1.0]]]
    got = numbaconv.conv1d(x, w)
    np.testing.assert_array_equal(got, [[[-1.0, -1.0, -1.0]]])
    # integer lists are integer arrays: an error that says to cast
    with pytest.raises(TypeError, match="input"):
        numbaconv.conv1d([[[1, 2, 3]]], w)


# ---------------------------------------------------------------------------
# transposed convolution: output_padding and output_size
# ---------------------------------------------------------------------------

def test_output_padding_range():
    x, w = data(2, C=2, L=4), kernel(2, K=2, Cg=2, k=3)
    with pytest.raises(ValueError, match="output_padding"):
        numbaconv.conv_transpose2d(x, w, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="output_padding"):
        numbaconv.conv_transpose2d(x, w, stride=1, output_padding=1)
    with pytest.raises(ValueError, match="output_padding"):
        numbaconv.conv_transpose2d(x, w, stride=2, output_padding=-1)
    # dilation widens the range: output_padding < max(stride, dilation)
    got = numbaconv.conv_transpose2d(x, w, stride=1, dilation=3, output_padding=(2, 1))
    assert got.shape == (1, 2, 4 - 1 + 6 + 2 + 1, 4 - 1 + 6 + 1 + 1)


@pytest.mark.parametrize("size", [14, 18, 10])
def test_output_size_out_of_range_names_range(size):
    x, w = data(2, C=2, L=7), kernel(2, K=2, Cg=2, k=3)
    # stride 2, padding 1: base = 6*2 - 2 + 2 + 1 = 13, valid 13..14
    if size == 14:
        got = numbaconv.conv_transpose2d(x, w, stride=2, padding=1, output_size=(size, 13))
        assert got.shape == (1, 2, 14, 13)
        return
    with pytest.raises(ValueError, match="output_size") as exc:
        numbaconv.conv_transpose2d(x, w, stride=2, padding=1, output_size=(size, 13))
    msg = str(exc.value)
    assert "13" in msg and "14" in msg, msg


def test_output_size_full_dims():
    x, w = data(1, N=3, C=2, L=5), kernel(1, K=2, Cg=4, k=3)
    got = numbaconv.conv_transpose1d(x, w, stride=3, output_size=(3, 4, 15))
    assert got.shape == (3, 4, 15)
    with pytest.raises(ValueError, match="output_size"):
        numbaconv.conv_transpose1d(x, w, stride=3, output_size=(3, 5, 15))
    with pytest.raises(ValueError, match="output_size"):
        numbaconv.conv_transpose1d(x, w, stride=3, output_size=(15, 15))
    # unbatched: spatial or (C, L)
    got = numbaconv.conv_transpose1d(x[0], w, stride=3, output_size=(4, 16))
    assert got.shape == (4, 16)


@pytest.mark.parametrize("output_size", [(1.5,), "15", 15])
def test_output_size_bad_type(output_size):
    x, w = data(1, C=2, L=5), kernel(1, K=2, Cg=1, k=3)
    with pytest.raises((TypeError, ValueError), match="output_size"):
        numbaconv.conv_transpose1d(x, w, stride=3, output_size=output_size)


def test_transpose_bad_padding_mode_and_device():
    x, w = data(1, C=2, L=5), kernel(1, K=2, Cg=1, k=3)
    with pytest.raises(ValueError, match="padding_mode"):
        numbaconv.conv_transpose1d(x, w, padding_mode="mirror")
    with pytest.raises(ValueError, match="device"):
        numbaconv.conv_transpose1d(x, w, device="tpu")


# ---------------------------------------------------------------------------
# the spec module itself
# ---------------------------------------------------------------------------

def _shapes():
    return pytest.importorskip("numbaconv._shapes")


def test_shapes_module_imports_no_numba():
    """_shapes.py is pure Python: loading it alone must not import numba."""
    path = os.path.join(os.path.dirname(numbaconv.__file__), "_shapes.py")
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('s', {path!r})\n"
            "m = importlib.util.module_from_spec(spec); sys.modules['s'] = m\n"
            "spec.loader.exec_module(m)\n"
            "assert 'numba' not in sys.modules, 'numba imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert importlib.util is not None


def test_conv_spec_lifted():
    S = _shapes()
    spec = S.conv_spec(2, (3, 4, 10, 9), (6, 2, 3, 2), (6,), stride=(2, 1),
                       padding=((1, 0), (0, 2)), dilation=(1, 2), groups=2,
                       padding_mode="replicate")
    assert spec.output_shape == (3, 6, 5, 9)
    assert spec.stride == (1, 2, 1)
    assert spec.dilation == (1, 1, 2)
    assert spec.kernel == (1, 3, 2)
    assert spec.pad_lo == (0, 1, 0) and spec.pad_hi == (0, 0, 2)
    assert spec.x_shape == (3, 4, 1, 10, 9)
    assert spec.y_shape == (3, 6, 1, 5, 9)
    assert spec.w_shape == (6, 2, 1, 3, 2)
    assert spec.batched and not spec.transposed
    with pytest.raises(Exception):
        spec.groups = 3  # frozen


def test_conv_spec_same_stride_and_unbatched():
    S = _shapes()
    spec = S.conv_spec(3, (2, 11, 8, 7), (5, 2, 3, 4, 1), None, stride=(2, 3, 1),
                       padding="same", dilation=1, groups=1)
    assert not spec.batched
    assert spec.output_shape == (5, 6, 3, 7)
    for ax, (L, k, s) in enumerate(zip((11, 8, 7), (3, 4, 1), (2, 3, 1))):
        lo, hi = naive.resolve_padding("same", (L,), (k,), (s,), (1,))
        assert spec.pad_lo[ax] == lo[0] and spec.pad_hi[ax] == hi[0]


@pytest.mark.parametrize("L", [1, 4, 7])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("s", [1, 2, 3])
@pytest.mark.parametrize("d", [1, 2])
def test_conv_spec_output_size_formula(L, k, s, d):
    S = _shapes()
    for p in (0, 1, 3):
        span = d * (k - 1) + 1
        if L + 2 * p < span:
            with pytest.raises(ValueError):
                S.conv_spec(1, (1, 1, L), (1, 1, k), None, s, p, d, 1)
            continue
        spec = S.conv_spec(1, (1, 1, L), (1, 1, k), None, s, p, d, 1)
        assert spec.output_shape == (1, 1, (L + 2 * p - span) // s + 1)
    spec = S.conv_spec(1, (1, 1, L), (1, 1, k), None, s, "same", d, 1)
    assert spec.output_shape == (1, 1, -(-L // s))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("s", [1, 2, 3])
@pytest.mark.parametrize("d", [1, 2])
def test_transpose_spec_same(k, s, d):
    S = _shapes()
    spec = S.transpose_spec(1, (2, 3, 5), (3, 4, k), None, s, "same", 0, 1, d)
    assert spec.output_shape == (2, 4, 5 * s)
    assert spec.transposed
    # it is the adjoint of the 'same' convolution of the output-size input
    fwd = S.conv_spec(1, (2, 4, 5 * s), (3, 4, k), None, s, "same", d, 1)
    assert fwd.output_shape == (2, 3, 5)
    assert (spec.pad_lo, spec.pad_hi) == (fwd.pad_lo, fwd.pad_hi)


def test_transpose_spec_output_size():
    S = _shapes()
    spec = S.transpose_spec(2, (1, 4, 8, 8), (4, 2, 4, 4), None, 2, 1, 0, 1, 1,
                            output_size=(17, 16))
    assert spec.output_shape == (1, 2, 17, 16)
    assert spec.output_padding == (0, 1, 0)
    with pytest.raises(ValueError, match="output_size"):
        S.transpose_spec(2, (1, 4, 8, 8), (4, 2, 4, 4), None, 2, 1, 0, 1, 1,
                         output_size=(18, 16))


def test_errors_leave_out_untouched():
    """Bad input is rejected before anything is written."""
    x, w = data(2), kernel(2)
    out = np.full((1, 2, 4, 4), 7.0)
    for bad in (dict(padding_mode="mirror"), dict(stride=0), dict(groups=3),
                dict(padding=-1), dict(device="tpu")):
        with pytest.raises(ValueError):
            numbaconv.conv2d(x, w, out=out, **bad)
        np.testing.assert_array_equal(out, 7.0)


def test_transpose_same_excludes_output_padding_and_size():
    x, w = data(1, C=2, L=5), kernel(1, K=2, Cg=2, k=3)
    assert numbaconv.conv_transpose1d(x, w, stride=2, padding="same").shape == (1, 2, 10)
    with pytest.raises(ValueError, match="output_padding"):
        numbaconv.conv_transpose1d(x, w, stride=2, padding="same", output_padding=1)
    with pytest.raises(ValueError, match="output_size"):
        numbaconv.conv_transpose1d(x, w, stride=2, padding="same", output_size=(10,))


def test_numpy_integer_hyper_parameters():
    x, w = data(2, L=7), kernel(2)
    ref = numbaconv.conv2d(x + 1.0, w + 0.5, stride=2, padding=(1, 2), dilation=1, groups=1)
    got = numbaconv.conv2d(x + 1.0, w + 0.5, stride=np.int64(2),
                           padding=(np.int32(1), np.int64(2)), dilation=np.int8(1),
                           groups=np.int64(1))
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("name", ["stride", "dilation", "groups"])
def test_bool_hyper_parameters_rejected(name):
    """True is not a stride of 1: bools are a mistake, not an int."""
    with pytest.raises((ValueError, TypeError), match=name):
        numbaconv.conv1d(data(1), kernel(1), **{name: True})


# ---------------------------------------------------------------------------
# remembered specs
# ---------------------------------------------------------------------------

def test_specs_are_remembered_for_plain_arguments():
    """A loop that calls one op with the same arguments works out its spec
    once; other argument types are worked out every time and agree."""
    from numbaconv._shapes import conv_spec, transpose_spec
    args = (2, (1, 3, 9, 9), (4, 3, 3, 3), (4,), 2, ((1, 0), (2, 1)), 1, 1, "zeros")
    first = conv_spec(*args)
    assert conv_spec(*args) is first
    assert transpose_spec(2, (1, 4, 5, 5), (4, 3, 3, 3), None, 2, 1, 1, 1, 1) is \
        transpose_spec(2, (1, 4, 5, 5), (4, 3, 3, 3), None, 2, 1, 1, 1, 1)
    # NumPy integers and lists are not remembered, and give an equal spec.
    other = conv_spec(2, (1, 3, 9, 9), (4, 3, 3, 3), (4,), np.int64(2),
                      [(1, 0), [2, 1]], 1, 1, "zeros")
    assert other == first and other is not first


@pytest.mark.parametrize("name, good, bad", [("stride", 1, True), ("stride", 2, 2.0),
                                             ("dilation", (1, 1), (True, 1)),
                                             ("padding", ((1, 1), (0, 0)), ((1, 1), (0, False))),
                                             ("groups", 1, True)])
def test_remembered_specs_never_admit_a_bad_argument(name, good, bad):
    """``True == 1`` and ``2.0 == 2``: a remembered spec for the good value
    must not answer a call with the bad one."""
    x, w = data(2, L=7), kernel(2)
    numbaconv.conv2d(x, w, **{name: good})
    numbaconv.conv2d(x, w, **{name: good})
    with pytest.raises((ValueError, TypeError), match=name):
        numbaconv.conv2d(x, w, **{name: bad})


def test_errors_are_not_remembered():
    from numbaconv._shapes import conv_spec
    for _ in range(2):
        with pytest.raises(ValueError, match="stride"):
            conv_spec(1, (1, 2, 6), (2, 2, 3), None, 0, 0, 1, 1, "zeros")
