"""The bad-input catalogue: every odd input gets the right answer or a clear
``ValueError``/``TypeError`` that names the argument, and no input is ever
modified.

Covered, for the six ops and their gradients: wrong ndim; wrong dtype
(integer, bool, complex, float16, object, strings; mixed float dtypes);
lists, ragged lists, scalars and 0-d arrays; NaN and inf (propagated exactly
as in PyTorch, compared position by position); non-contiguous, Fortran-
ordered, negative-stride, broadcast (zero-stride), read-only and non-native
byte-order arrays; zero-size axes (N=0, C=0, K=0, a spatial axis of 0 with
padding); kernels larger than the input; hyper-parameters of the wrong type,
value or tuple length; ``out=`` of the wrong shape, dtype or kind, read-only,
or sharing memory with an input; unknown devices.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import naive
import numbaconv

# The references compute with NaN and inf on purpose.
pytestmark = pytest.mark.filterwarnings(
    "ignore:invalid value encountered:RuntimeWarning")

NDS = [1, 2, 3]
SIZES = {1: (7,), 2: (5, 6), 3: (4, 5, 3)}
KERNELS = {1: (3,), 2: (3, 2), 3: (2, 3, 2)}
CONV_KW = dict(stride=2, padding=1, groups=2)
TRANS_KW = dict(stride=2, padding=1, output_padding=1, groups=2)


# ---------------------------------------------------------------------------
# the op table: each op, its array operands, how to call it, its reference
# ---------------------------------------------------------------------------

def f(name, nd):
    return getattr(numbaconv, name.format(nd=nd))


def problem(nd, dtype=np.float64, seed=0):
    """Small, valid arrays for every op of dimension ``nd``."""
    r = np.random.default_rng(seed + 10 * nd)
    sp, k = SIZES[nd], KERNELS[nd]
    x = r.standard_normal((2, 4) + sp).astype(dtype)
    w = r.standard_normal((6, 2) + k).astype(dtype)
    b = r.standard_normal(6).astype(dtype)
    y_shape = naive.conv(x, w, b, **CONV_KW).shape
    gy = r.standard_normal(y_shape).astype(dtype)
    tw = r.standard_normal((4, 3) + k).astype(dtype)
    ty_shape = naive.conv_transpose(x, tw, b, **TRANS_KW).shape
    tgy = r.standard_normal(ty_shape).astype(dtype)
    return dict(x=x, w=w, b=b, gy=gy, tw=tw, tgy=tgy)


class Op:
    """One public entry point: ``operands`` maps the argument name to the key
    of the array in ``problem()``; ``call(arrays)`` runs the op."""

    def __init__(self, name, operands, call, ref):
        self.name, self.operands, self._call, self._ref = name, operands, call, ref

    def arrays(self, nd, dtype=np.float64):
        p = problem(nd, dtype)
        return {arg: p[key] for arg, key in self.operands.items()}, p

    def call(self, nd, arrays, p, **extra):
        return self._call(nd, arrays, p, **extra)

    def ref(self, nd, arrays, p):
        return self._ref(nd, arrays, p)

    def __repr__(self):
        return self.name


def _crop(a, shape):
    return a[tuple(slice(0, s) for s in shape)]


OPS = [
    Op("conv", dict(input="x", weight="w", bias="b"),
       lambda nd, a, p, **e: f("conv{nd}d", nd)(a["input"], a["weight"], a["bias"],
                                                **CONV_KW, **e),
       lambda nd, a, p: naive.conv(a["input"], a["weight"], a["bias"], **CONV_KW)),
    Op("conv_transpose", dict(input="x", weight="tw", bias="b"),
       lambda nd, a, p, **e: f("conv_transpose{nd}d", nd)(
           a["input"], a["weight"], a["bias"], **TRANS_KW, **e),
       lambda nd, a, p: naive.conv_transpose(a["input"], a["weight"], a["bias"],
                                             **TRANS_KW)),
    Op("conv_input", dict(weight="w", grad_output="gy"),
       lambda nd, a, p, **e: f("conv{nd}d_input", nd)(
           p["x"].shape, a["weight"], a["grad_output"], **CONV_KW, **e),
       lambda nd, a, p: naive.conv_input(p["x"].shape, a["weight"], a["grad_output"],
                                         **CONV_KW)),
    Op("conv_weight", dict(input="x", grad_output="gy"),
       lambda nd, a, p, **e: f("conv{nd}d_weight", nd)(
           a["input"], p["w"].shape, a["grad_output"], **CONV_KW, **e),
       lambda nd, a, p: naive.conv_weight(a["input"], p["w"].shape, a["grad_output"],
                                          **CONV_KW)),
    Op("conv_backward", dict(grad_output="gy", input="x", weight="w"),
       lambda nd, a, p, **e: f("conv{nd}d_backward", nd)(
           a["grad_output"], a["input"], a["weight"], **CONV_KW, **e),
       lambda nd, a, p: (
           naive.conv_input(a["input"].shape, a["weight"], a["grad_output"], **CONV_KW),
           naive.conv_weight(a["input"], a["weight"].shape, a["grad_output"], **CONV_KW),
           naive.conv_bias(a["grad_output"], nd))),
    Op("conv_transpose_backward", dict(grad_output="tgy", input="x", weight="tw"),
       lambda nd, a, p, **e: f("conv_transpose{nd}d_backward", nd)(
           a["grad_output"], a["input"], a["weight"], **TRANS_KW, **e),
       lambda nd, a, p: (
           _crop(naive.conv(a["grad_output"], a["weight"], stride=2, padding=1,
                            groups=2), a["input"].shape),
           naive.conv_weight(a["grad_output"], a["weight"].shape, a["input"],
                             stride=2, padding=1, groups=2),
           naive.conv_bias(a["grad_output"], nd))),
]
OP_IDS = [op.name for op in OPS]
OPERAND_CASES = [(op, arg) for op in OPS for arg in op.operands]
OPERAND_IDS = [f"{op.name}-{arg}" for op, arg in OPERAND_CASES]


def as_tuple(r):
    return r if isinstance(r, tuple) else (r,)


def snapshot(arrays):
    return {k: (None if v is None else np.array(v, copy=True)) for k, v in arrays.items()}


def assert_unmodified(arrays, before):
    for k, v in arrays.items():
        if v is None:
            continue
        np.testing.assert_array_equal(np.asarray(v), before[k],
                                      err_msg=f"{k} was modified")


def assert_bits_equal(got, want):
    for g, w in zip(as_tuple(got), as_tuple(want)):
        assert g.shape == w.shape and g.dtype == w.dtype
        assert np.ascontiguousarray(g).tobytes() == np.ascontiguousarray(w).tobytes()


def assert_close64(got, ref, dtype=np.float64):
    tol = 1e-10 if np.dtype(dtype) == np.float64 else 1e-4
    for g, r in zip(as_tuple(got), as_tuple(ref)):
        assert g.shape == r.shape, (g.shape, r.shape)
        np.testing.assert_allclose(g, r, rtol=tol, atol=tol)


def raises_naming(exc_types, name, fn):
    """``fn()`` raises one of ``exc_types`` and the message names ``name``."""
    with pytest.raises(exc_types) as info:
        fn()
    assert name in str(info.value), (
        f"the message does not name {name!r}: {info.value}")
    return info.value


# ---------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------

BAD_DTYPES = ["int32", "int64", "uint8", "bool", "complex128", "complex64",
              "float16", "object", "U3"]


@pytest.mark.parametrize("dtype", BAD_DTYPES)
@pytest.mark.parametrize("op,arg", OPERAND_CASES, ids=OPERAND_IDS)
def test_non_float_dtype_is_a_type_error(op, arg, dtype):
    arrays, p = op.arrays(2)
    before = snapshot(arrays)
    bad = dict(arrays)
    bad[arg] = arrays[arg].astype(dtype)
    err = raises_naming(TypeError, arg, lambda: op.call(2, bad, p))
    if np.dtype(dtype).kind in "biu":
        assert "astype" in str(err) or "cast" in str(err)
    assert_unmodified(arrays, before)


@pytest.mark.parametrize("op,arg", OPERAND_CASES, ids=OPERAND_IDS)
def test_mixed_float_dtypes_are_a_type_error(op, arg):
    arrays, p = op.arrays(1)
    bad = dict(arrays)
    bad[arg] = arrays[arg].astype(np.float32)
    raises_naming(TypeError, arg, lambda: op.call(1, bad, p))


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_float32_in_float32_out(op):
    arrays, p = op.arrays(1, np.float32)
    for r in as_tuple(op.call(1, arrays, p)):
        assert r.dtype == np.float32


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_non_native_byte_order(op):
    """Big-endian float data (FITS files, network buffers) is still float32/
    float64: it gives the native-order result, or a TypeError that says what
    is wrong (the byte order), not a misleading cast suggestion."""
    arrays, p = op.arrays(1)
    want = op.call(1, arrays, p)
    swapped = {k: v.astype(v.dtype.newbyteorder(">" if v.dtype.byteorder != ">"
                                                 and np.little_endian else "<"))
               for k, v in arrays.items()}
    try:
        got = op.call(1, swapped, p)
    except TypeError as exc:
        assert "byte order" in str(exc) or "byteorder" in str(exc), str(exc)
        return
    for g, w in zip(as_tuple(got), as_tuple(want)):
        assert g.dtype.isnative
        np.testing.assert_array_equal(g, w)


# ---------------------------------------------------------------------------
# ndim, lists, scalars
# ---------------------------------------------------------------------------

def _bad_ndims(arg, arr, nd):
    """Shapes of the wrong ndim for operand ``arg`` (skipping the unbatched
    form of data operands, which is valid)."""
    if arg == "bias":
        return [(), (arr.shape[0], 1)]
    if arg == "weight":
        return [arr.shape[:-1], arr.shape + (1,)]
    return [arr.shape[2:], arr.shape + (1,)]   # nd dims; nd + 3 dims


@pytest.mark.parametrize("nd", NDS)
@pytest.mark.parametrize("op,arg", OPERAND_CASES, ids=OPERAND_IDS)
def test_wrong_ndim_is_a_value_error(op, arg, nd):
    arrays, p = op.arrays(nd)
    for shape in _bad_ndims(arg, arrays[arg], nd):
        bad = dict(arrays)
        bad[arg] = np.ones(shape)
        raises_naming(ValueError, arg, lambda: op.call(nd, bad, p))


@pytest.mark.parametrize("scalar", [1.0, np.float64(2.0), np.array(3.0)],
                         ids=["float", "np.float64", "0-d"])
@pytest.mark.parametrize("op,arg", [c for c in OPERAND_CASES if c[1] != "bias"],
                         ids=[i for c, i in zip(OPERAND_CASES, OPERAND_IDS)
                              if c[1] != "bias"])
def test_scalars_and_0d_arrays_are_a_value_error(op, arg, scalar):
    arrays, p = op.arrays(1)
    bad = dict(arrays)
    bad[arg] = scalar
    raises_naming(ValueError, arg, lambda: op.call(1, bad, p))


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_nested_lists_work_like_arrays(op):
    arrays, p = op.arrays(2)
    want = op.call(2, arrays, p)
    lists = {k: v.tolist() for k, v in arrays.items()}
    assert_bits_equal(op.call(2, lists, p), want)


def test_ragged_list_names_the_argument():
    raises_naming(ValueError, "input",
                  lambda: numbaconv.conv1d([[[1.0, 2.0], [3.0]]], np.ones((1, 1, 1))))


@pytest.mark.parametrize("value", [None, "abc", object()], ids=["None", "str", "object"])
def test_non_array_operands(value):
    w = np.ones((1, 1, 1))
    with pytest.raises((TypeError, ValueError)):
        numbaconv.conv1d(value, w)
    with pytest.raises((TypeError, ValueError)):
        numbaconv.conv1d(np.ones((1, 1, 3)), value)


@pytest.mark.parametrize("call, name", [
    (lambda: numbaconv.conv3d(None, np.ones((1, 1, 3, 3, 3))), "input"),
    (lambda: numbaconv.conv3d(np.ones((1, 1, 3, 3, 3)), None), "weight"),
    (lambda: numbaconv.conv_transpose2d(None, np.ones((1, 1, 3, 3))), "input"),
    (lambda: numbaconv.conv1d_input((1, 1, 3), None, np.ones((1, 1, 1))), "weight"),
    (lambda: numbaconv.conv1d_weight(np.ones((1, 1, 3)), (1, 1, 3), None),
     "grad_output"),
    (lambda: numbaconv.conv2d_backward(None, np.ones((1, 1, 3, 3)),
                                       np.ones((1, 1, 3, 3))), "grad_output"),
], ids=["conv3d-input", "conv3d-weight", "transpose-input", "grad-input-weight",
        "grad-weight-grad_output", "backward-grad_output"])
def test_none_operand_says_it_must_be_an_array(call, name):
    """None where an array is required says so, naming the argument (not
    "input shape must be a shape")."""
    with pytest.raises(TypeError) as info:
        call()
    assert str(info.value).startswith(f"{name} must be an array")
    assert "got None" in str(info.value) and "shape" not in str(info.value)


# ---------------------------------------------------------------------------
# NaN and inf, against PyTorch
# ---------------------------------------------------------------------------

def _poison(a, seed, count=4):
    """A copy of ``a`` with NaN, +inf and -inf at a few positions, among them
    the first and last elements (which sit next to the padding)."""
    a = np.array(a, copy=True)
    flat = a.reshape(-1)
    r = np.random.default_rng(seed)
    idx = [0, flat.size - 1] + list(r.choice(flat.size, count, replace=False))
    vals = [np.nan, np.inf, -np.inf]
    for j, i in enumerate(idx):
        flat[i] = vals[j % 3]
    return a


def assert_same_nonfinite(got, want, dtype):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want),
                                  err_msg="NaN positions differ")
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want),
                                  err_msg="+inf positions differ")
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want),
                                  err_msg="-inf positions differ")
    fin = np.isfinite(want)
    tol = 1e-10 if np.dtype(dtype) == np.float64 else 1e-4
    np.testing.assert_allclose(got[fin], want[fin], rtol=tol, atol=tol)


def _torch_grads(torch, F, kind, nd, x, w, b, gy, kw):
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    fn = getattr(F, f"{kind}{nd}d")
    y = fn(xt, wt, bt, **kw)
    y.backward(torch.tensor(gy))
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


# Where a non-finite value may sit for the comparison with PyTorch: in the
# data operands of every op (padded positions hold zeros that multiply only
# finite weights), and in weights when the call has no zero padding.
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("nd", NDS)
@pytest.mark.parametrize("kind", ["conv", "conv_transpose"])
def test_nan_inf_propagate_as_in_torch(kind, nd, dtype, torch):
    import torch.nn.functional as F
    p = problem(nd, dtype, seed=5)
    transposed = kind == "conv_transpose"
    w = p["tw"] if transposed else p["w"]
    kw = TRANS_KW if transposed else CONV_KW
    kw = dict(kw, dilation=2 if nd == 1 else 1)
    x = _poison(p["x"], 1)
    gy = p["tgy"] if transposed else p["gy"]
    out_shape = (naive.conv_transpose(x, w, p["b"], **kw) if transposed
                 else naive.conv(x, w, p["b"], **kw)).shape
    gy = np.random.default_rng(2).standard_normal(out_shape).astype(dtype)
    before = snapshot(dict(x=x, w=w, b=p["b"], gy=gy))

    # non-finite input: forward, and the gradients with a finite grad_output
    y, gx, gw, gb = _torch_grads(torch, F, kind, nd, x, w, p["b"], gy, kw)
    fwd = f(kind + "{nd}d", nd)
    bwd = f(kind + "{nd}d_backward", nd)
    assert_same_nonfinite(fwd(x, w, p["b"], **kw), y, dtype)
    got = bwd(gy, x, w, **kw)
    if not transposed:   # the transposed weight gradient pairs x with padding
        assert_same_nonfinite(got[1], gw, dtype)
    assert_same_nonfinite(got[0], gx, dtype)
    assert_same_nonfinite(got[2], gb, dtype)

    # non-finite grad_output: the data gradient (and the bias gradient)
    gyp = _poison(gy, 3)
    xf = p["x"]
    _, gx, gw, gb = _torch_grads(torch, F, kind, nd, xf, w, p["b"], gyp, kw)
    got = bwd(gyp, xf, w, **kw)
    assert_same_nonfinite(got[2], gb, dtype)
    if not transposed:
        assert_same_nonfinite(got[0], gx, dtype)
        assert_same_nonfinite(f("conv{nd}d_input", nd)(xf.shape, w, gyp, **kw), gx,
                              dtype)
    else:    # grad wrt the transposed input is a forward conv of grad_output
        assert_same_nonfinite(got[1], gw, dtype)

    assert_unmodified(dict(x=x, w=w, b=p["b"], gy=gy), before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("nd", NDS)
@pytest.mark.parametrize("kind", ["conv", "conv_transpose"])
def test_nonfinite_weights_without_padding_match_torch(kind, nd, dtype, torch):
    """Non-finite weights, no zero padding: every output that a tap reaches
    gets the NaN/inf, and only those, as in PyTorch (forward and weight
    gradients here; the ``backward_data`` outputs in the next test)."""
    import torch.nn.functional as F
    p = problem(nd, dtype, seed=5)
    transposed = kind == "conv_transpose"
    kw = dict(TRANS_KW if transposed else CONV_KW, padding=0)
    w = _poison(p["tw"] if transposed else p["w"], 4)
    x = p["x"]
    y_ref = (naive.conv_transpose(x, w, None, **kw) if transposed
             else naive.conv(x, w, None, **kw))
    gy = np.random.default_rng(8).standard_normal(y_ref.shape).astype(dtype)
    y, gx, gw, gb = _torch_grads(torch, F, kind, nd, x, w, p["b"], gy, kw)
    got = f(kind + "{nd}d_backward", nd)(gy, x, w, **kw)
    assert_same_nonfinite(got[1], gw, dtype)
    if transposed:    # computed by backward_data: see the test below
        assert_same_nonfinite(got[0], gx, dtype)
    else:
        assert_same_nonfinite(f(kind + "{nd}d", nd)(x, w, p["b"], **kw), y, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("nd", NDS)
@pytest.mark.parametrize("kind", ["conv", "conv_transpose"])
def test_nonfinite_weights_backward_data_match_torch(kind, nd, dtype, torch):
    """The data gradient of conv and the forward of conv_transpose (both the
    ``backward_data`` primitive) with non-finite weights and no padding: an
    input element that a tap never reaches gets nothing from that tap."""
    import torch.nn.functional as F
    p = problem(nd, dtype, seed=5)
    transposed = kind == "conv_transpose"
    kw = dict(TRANS_KW if transposed else CONV_KW, padding=0)
    w = _poison(p["tw"] if transposed else p["w"], 4)
    x = p["x"]
    y_ref = (naive.conv_transpose(x, w, None, **kw) if transposed
             else naive.conv(x, w, None, **kw))
    gy = np.random.default_rng(8).standard_normal(y_ref.shape).astype(dtype)
    y, gx, gw, gb = _torch_grads(torch, F, kind, nd, x, w, p["b"], gy, kw)
    if transposed:
        assert_same_nonfinite(f(kind + "{nd}d", nd)(x, w, p["b"], **kw), y, dtype)
    else:
        got = f(kind + "{nd}d_backward", nd)(gy, x, w, **kw)
        assert_same_nonfinite(got[0], gx, dtype)
        assert_same_nonfinite(f("conv{nd}d_input", nd)(x.shape, w, gy, **kw), gx,
                              dtype)


@pytest.mark.parametrize("nd", NDS)
@pytest.mark.parametrize("stride", [1, 2])
def test_nonfinite_weight_meets_zero_padding(nd, stride):
    """A non-finite weight tap that falls on implicit zero padding: IEEE
    arithmetic on the zero-padded input (NumPy, and PyTorch's conv2d/conv3d)
    gives ``inf * 0 = NaN`` there; the result must not depend on the stride or
    on which axis the padding is on."""
    p = problem(nd, seed=9)
    x, w = p["x"], np.array(p["w"], copy=True)
    w[(0, 0) + (0,) * nd] = np.inf       # the corner tap reads padding first
    w[(3, 1) + (-1,) * nd] = np.nan
    kw = dict(stride=stride, padding=1, groups=2)
    want = naive.conv(x, w, p["b"], **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert_same_nonfinite(f("conv{nd}d", nd)(x, w, p["b"], **kw), want,
                              np.float64)


@pytest.mark.parametrize("nd", NDS)
def test_nonfinite_grad_output_meets_zero_padding(nd):
    """The weight gradient pairs every grad_output element with every tap,
    including taps that fall on the zero padding: a NaN or inf grad_output
    element makes every tap NaN or inf (IEEE on the padded input, as NumPy
    and PyTorch compute it)."""
    p = problem(nd, seed=12)
    gy = _poison(p["gy"], 6)
    kw = dict(CONV_KW)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = naive.conv_weight(p["x"], p["w"].shape, gy, **kw)
    got = f("conv{nd}d_weight", nd)(p["x"], p["w"].shape, gy, **kw)
    assert_same_nonfinite(got, want, np.float64)


# ---------------------------------------------------------------------------
# memory layouts
# ---------------------------------------------------------------------------

def _strided(a):
    big = np.full(a.shape[:-1] + (2 * a.shape[-1],), np.nan, a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


def _negative(a):
    v = np.array(a[(slice(None, None, -1),) * a.ndim], copy=True)
    return v[(slice(None, None, -1),) * a.ndim]


def _read_only(a):
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


LAYOUTS = {
    "non-contiguous": _strided,
    "fortran": np.asfortranarray,
    "negative-stride": _negative,
    "read-only": _read_only,
    "transposed-view": lambda a: np.ascontiguousarray(a.T).T,
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("nd", NDS)
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_layouts_give_identical_results(op, nd, layout):
    arrays, p = op.arrays(nd)
    want = op.call(nd, arrays, p)
    odd = {k: LAYOUTS[layout](v) for k, v in arrays.items()}
    for k, v in odd.items():
        np.testing.assert_array_equal(v, arrays[k])
    before = snapshot(odd)
    flags = {k: (v.flags.writeable, v.strides) for k, v in odd.items()}
    assert_bits_equal(op.call(nd, odd, p), want)
    assert_unmodified(odd, before)
    assert flags == {k: (v.flags.writeable, v.strides) for k, v in odd.items()}


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_broadcast_zero_stride_inputs(op):
    """Zero-stride (``np.broadcast_to``) operands are read-only views."""
    arrays, p = op.arrays(2)
    flat = {k: np.broadcast_to(v.reshape(-1)[:1].reshape((1,) * v.ndim), v.shape)
            for k, v in arrays.items()}
    dense = {k: np.array(v) for k, v in flat.items()}
    assert_bits_equal(op.call(2, flat, p), op.call(2, dense, p))


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_results_match_reference_and_inputs_unchanged(op):
    for nd in NDS:
        arrays, p = op.arrays(nd)
        before = snapshot(arrays)
        assert_close64(op.call(nd, arrays, p), op.ref(nd, arrays, p))
        assert_unmodified(arrays, before)


# ---------------------------------------------------------------------------
# zero-size axes
# ---------------------------------------------------------------------------

def _zero_case(nd, what):
    """(x, w, b, kw) for a convolution with one empty axis."""
    r = np.random.default_rng(0)
    N, C, K, sp = 2, 4, 6, list(SIZES[nd])
    kw = dict(padding=1, groups=2)
    if what == "N":
        N = 0
    elif what == "C":
        C, kw = 0, dict(padding=1, groups=1)
    elif what == "K":
        K = 0
    elif what == "spatial":
        sp[-1] = 0
        kw = dict(padding=2, groups=2)
    Cg = C // kw["groups"]
    x = r.standard_normal((N, C) + tuple(sp))
    w = r.standard_normal((K, Cg) + KERNELS[nd])
    b = r.standard_normal(K)
    return x, w, b, kw


@pytest.mark.parametrize("what", ["N", "C", "K", "spatial"])
@pytest.mark.parametrize("nd", NDS)
def test_zero_size_conv_and_gradients(nd, what):
    x, w, b, kw = _zero_case(nd, what)
    before = snapshot(dict(x=x, w=w, b=b))
    y = f("conv{nd}d", nd)(x, w, b, **kw)
    want = naive.conv(x, w, b, **kw)
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    gy = np.random.default_rng(1).standard_normal(y.shape)
    gi, gw, gb = f("conv{nd}d_backward", nd)(gy, x, w, **kw)
    np.testing.assert_allclose(gi, naive.conv_input(x.shape, w, gy, **kw), atol=1e-12)
    np.testing.assert_allclose(gw, naive.conv_weight(x, w.shape, gy, **kw), atol=1e-12)
    np.testing.assert_allclose(gb, naive.conv_bias(gy, nd), atol=1e-12)
    assert gi.shape == x.shape and gw.shape == w.shape and gb.shape == b.shape
    assert_unmodified(dict(x=x, w=w, b=b), before)


@pytest.mark.parametrize("what", ["N", "C", "K", "spatial"])
@pytest.mark.parametrize("nd", NDS)
def test_zero_size_conv_transpose_and_gradients(nd, what):
    r = np.random.default_rng(0)
    N, C, Kg, sp = 2, 4, 3, list(SIZES[nd])
    groups = 2
    if what == "N":
        N = 0
    elif what == "C":
        C, groups = 0, 1
    elif what == "K":
        Kg = 0
    elif what == "spatial":
        sp[-1] = 0          # output size (0-1)*s + d*(k-1) + 1 stays positive
    kw = dict(stride=1, padding=0, groups=groups)
    x = r.standard_normal((N, C) + tuple(sp))
    w = r.standard_normal((C, Kg) + tuple(k + 1 for k in KERNELS[nd]))
    b = r.standard_normal(Kg * groups)
    y = f("conv_transpose{nd}d", nd)(x, w, b, **kw)
    want = naive.conv_transpose(x, w, b, **kw)
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, atol=1e-12)
    g = r.standard_normal(y.shape)
    gi, gw, gb = f("conv_transpose{nd}d_backward", nd)(g, x, w, **kw)
    assert gi.shape == x.shape and gw.shape == w.shape and gb.shape == b.shape
    np.testing.assert_allclose(gi, _crop(naive.conv(g, w, groups=groups), x.shape),
                               atol=1e-12)
    np.testing.assert_allclose(gw, naive.conv_weight(g, w.shape, x, groups=groups),
                               atol=1e-12)
    np.testing.assert_allclose(gb, naive.conv_bias(g, nd), atol=1e-12)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular", "symmetric"])
def test_zero_size_spatial_with_padding_mode_is_an_error(mode):
    x = np.ones((1, 2, 0))
    raises_naming(ValueError, "padding", lambda: numbaconv.conv1d(
        x, np.ones((3, 2, 3)), padding=1, padding_mode=mode))


@pytest.mark.parametrize("nd", NDS)
def test_zero_size_spatial_without_padding_is_an_error(nd):
    x = np.ones((1, 2) + (0,) * nd)
    with pytest.raises(ValueError, match="[Kk]ernel"):
        f("conv{nd}d", nd)(x, np.ones((3, 2) + (1,) * nd))


# ---------------------------------------------------------------------------
# kernels larger than the input
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("nd", NDS)
def test_kernel_larger_than_input(nd):
    r = np.random.default_rng(4)
    x = r.standard_normal((1, 2) + (3,) * nd)
    w = r.standard_normal((2, 2) + (5,) * nd)
    conv = f("conv{nd}d", nd)
    with pytest.raises(ValueError, match="[Kk]ernel size"):
        conv(x, w)
    with pytest.raises(ValueError, match="[Kk]ernel size"):
        conv(x, w[..., :2], dilation=3)          # dilated span 4 > 3
    for kw in (dict(padding=1), dict(padding=2), dict(padding="same"),
               dict(padding=1, padding_mode="circular"),
               dict(padding=2, padding_mode="replicate")):
        assert_close64(conv(x, w, **kw), naive.conv(x, w, **kw))
    y = f("conv_transpose{nd}d", nd)(x, w)    # always valid: the output grows
    assert_close64(y, naive.conv_transpose(x, w))
    with pytest.raises(ValueError, match="reflect"):
        conv(x, w, padding=3, padding_mode="reflect")


# ---------------------------------------------------------------------------
# hyper-parameters: types, values, tuple lengths
# ---------------------------------------------------------------------------

def _conv_call(nd, **kw):
    p = problem(nd)
    return lambda: f("conv{nd}d", nd)(p["x"], p["w"], p["b"], **kw)


def _trans_call(nd, **kw):
    p = problem(nd)
    return lambda: f("conv_transpose{nd}d", nd)(p["x"], p["tw"], p["b"], **kw)


@pytest.mark.parametrize("nd", NDS)
@pytest.mark.parametrize("name", ["stride", "dilation", "padding"])
def test_wrong_tuple_length(nd, name):
    for length in {0, nd - 1, nd + 1} - {nd}:
        value = tuple([1] * length)
        raises_naming((ValueError, TypeError), name,
                      lambda: _conv_call(nd, groups=2, **{name: value})())
        raises_naming((ValueError, TypeError), name,
                      lambda: _trans_call(nd, groups=2, **{name: value})())


@pytest.mark.parametrize("nd", NDS)
def test_wrong_tuple_length_transposed_only(nd):
    for length in {0, nd - 1, nd + 1} - {nd}:
        raises_naming((ValueError, TypeError), "output_padding",
                      lambda: _trans_call(nd, groups=2,
                                          output_padding=(0,) * length)())
    # output_size: nd (spatial) or nd + 2 (batched, all dims) entries only
    p = problem(nd)
    base = naive.conv_transpose(p["x"], p["tw"], groups=2).shape
    for bad in (base[2:] + (1,), base[3:], base[1:]):
        if len(bad) in (nd, nd + 2):
            continue
        raises_naming(ValueError, "output_size",
                      lambda: _trans_call(nd, groups=2, output_size=bad)())
    # pairs of the wrong length
    raises_naming(ValueError, "padding",
                  lambda: _conv_call(nd, groups=2, padding=((1, 1, 1),) * nd)())


BAD_HYPER = [
    ("stride", 0), ("stride", -1), ("stride", 1.5), ("stride", None),
    ("stride", "2"), ("stride", True), ("stride", (1.0,)),
    ("dilation", 0), ("dilation", -2), ("dilation", 2.0), ("dilation", None),
    ("padding", -1), ("padding", 1.5), ("padding", None), ("padding", "SAME"),
    ("padding", "full"), ("padding", ((1, -1),)), ("padding", (True,)),
    ("groups", 0), ("groups", -1), ("groups", 2.0), ("groups", None),
    ("groups", 3),
    ("padding_mode", "mirror"), ("padding_mode", None), ("padding_mode", "ZEROS"),
    ("padding_mode", 0),
]


@pytest.mark.parametrize("name,value", BAD_HYPER, ids=[f"{n}={v!r}" for n, v in BAD_HYPER])
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "conv_transpose"])
def test_bad_hyper_parameter(name, value, transposed):
    kw = {"groups": 2, name: value}
    if name == "padding" and isinstance(value, tuple):
        kw[name] = value
    call = (_trans_call if transposed else _conv_call)(1, **kw)
    raises_naming((ValueError, TypeError), name, call)


@pytest.mark.parametrize("kw,name", [
    (dict(stride=2, output_padding=2), "output_padding"),
    (dict(stride=2, output_padding=-1), "output_padding"),
    (dict(stride=2, output_padding=0.5), "output_padding"),
    (dict(stride=2, output_size=(100,)), "output_size"),
    (dict(stride=2, output_size=(1,)), "output_size"),
    (dict(stride=2, output_size=18), "output_size"),
    (dict(stride=2, output_size=(18.0,)), "output_size"),
    (dict(stride=2, output_size="18"), "output_size"),
    (dict(stride=2, output_size=(3, 6, 14)), "output_size"),
    (dict(padding="same", stride=2, output_padding=1), "padding"),
    (dict(padding=5), "output size"),
], ids=lambda v: repr(v) if isinstance(v, dict) else v)
def test_bad_transposed_arguments(kw, name):
    raises_naming((ValueError, TypeError), name, _trans_call(1, groups=2, **kw))


HUGE = [("stride", 2 ** 63), ("stride", 2 ** 64), ("stride", (2 ** 63,)),
        ("dilation", 2 ** 64), ("padding", 2 ** 64), ("padding", ((0, 2 ** 63),))]


@pytest.mark.parametrize("name,value", HUGE)
def test_hyper_parameters_beyond_int64_are_value_errors(name, value):
    """Values that do not fit the kernels' 64-bit index arithmetic are
    rejected up front: never a compiler error, an OverflowError, or a result
    computed with wrapped-around indices."""
    if name == "stride":
        raises_naming(ValueError, name, _conv_call(1, groups=2, **{name: value}))
    else:   # an impossible kernel span or output size is an acceptable reason
        with pytest.raises(ValueError):
            _conv_call(1, groups=2, **{name: value})()


@pytest.mark.parametrize("kw", [dict(stride=2 ** 62), dict(dilation=2 ** 61)], ids=repr)
def test_huge_but_representable_hyper_parameters(kw):
    """Large values that fit int64 are either computed exactly or rejected
    with ValueError/MemoryError (an impossible output size)."""
    p = problem(1)
    try:
        y = numbaconv.conv1d(p["x"], p["w"], p["b"], groups=2, **kw)
    except (ValueError, MemoryError):
        return
    assert_close64(y, naive.conv(p["x"], p["w"], p["b"], groups=2, **kw))
    with pytest.raises((ValueError, MemoryError)):
        numbaconv.conv1d(p["x"], p["w"], p["b"], groups=2, padding=2 ** 62)


# ---------------------------------------------------------------------------
# gradient-only arguments
# ---------------------------------------------------------------------------

def test_input_size_and_weight_size():
    p = problem(1)
    x, w, gy = p["x"], p["w"], p["gy"]
    ci = lambda size: numbaconv.conv1d_input(size, w, gy, **CONV_KW)    # noqa: E731
    cw = lambda size: numbaconv.conv1d_weight(x, size, gy, **CONV_KW)   # noqa: E731
    assert ci(np.array(x.shape)).shape == x.shape
    assert ci(list(x.shape)).shape == x.shape
    raises_naming((ValueError, TypeError), "input_size", lambda: ci(None))
    raises_naming((ValueError, TypeError), "input", lambda: ci((2, 4, -7)))
    raises_naming((ValueError, TypeError), "grad_output", lambda: ci((2, 4, 30)))
    raises_naming((ValueError, TypeError), "weight", lambda: cw((6, 2)))
    raises_naming((ValueError, TypeError), "weight", lambda: cw((6, 2, 0)))
    raises_naming((ValueError, TypeError), "weight_size", lambda: cw(None))


@pytest.mark.parametrize("which", ["input_size", "weight_size"])
@pytest.mark.parametrize("bad", [(2, 4, 7.5), (2, 4, "7"), "abc", (2, 4, None)],
                         ids=["float", "str-entry", "str", "None-entry"])
def test_non_integer_sizes_are_a_type_error(which, bad):
    """A size must be a tuple of ints: 7.5 is not silently truncated to 7."""
    p = problem(1)
    if which == "input_size":
        call = lambda: numbaconv.conv1d_input(bad, p["w"], p["gy"], **CONV_KW)  # noqa
    else:
        if isinstance(bad, tuple):      # the kernel entry: 3.5, "3", None
            bad = (6, 2, {7.5: 3.5, "7": "3", None: None}[bad[2]])
        call = lambda: numbaconv.conv1d_weight(p["x"], bad, p["gy"], **CONV_KW)  # noqa
    raises_naming((TypeError, ValueError), which, call)


@pytest.mark.parametrize("mask", [(True,), (True, False), (1, 1, 1, 1), None, 3, "abc"],
                         ids=repr)
def test_bad_output_mask(mask):
    p = problem(1)
    raises_naming((ValueError, TypeError), "output_mask",
                  lambda: numbaconv.conv1d_backward(p["gy"], p["x"], p["w"],
                                                    output_mask=mask, **CONV_KW))


@pytest.mark.parametrize("op", [o for o in OPS if "grad_output" in o.operands],
                         ids=lambda o: o.name)
def test_grad_output_of_the_wrong_shape(op):
    arrays, p = op.arrays(2)
    g = arrays["grad_output"]
    for shape in (g.shape[:-1] + (g.shape[-1] + 1,), (g.shape[0] + 1,) + g.shape[1:],
                  g.shape[1:]):
        bad = dict(arrays, grad_output=np.ones(shape))
        raises_naming(ValueError, "grad_output", lambda: op.call(2, bad, p))


# ---------------------------------------------------------------------------
# out=
# ---------------------------------------------------------------------------

OUT_OPS = [o for o in OPS if o.name in ("conv", "conv_transpose")]


@pytest.mark.parametrize("nd", NDS)
@pytest.mark.parametrize("op", OUT_OPS, ids=lambda o: o.name)
def test_out_good(op, nd):
    arrays, p = op.arrays(nd)
    want = op.call(nd, arrays, p)
    for make in (np.empty_like, lambda a: np.asfortranarray(np.empty_like(a)),
                 _strided, _negative):
        out = make(np.full_like(want, np.nan))
        got = op.call(nd, arrays, p, out=out)
        assert got is out
        np.testing.assert_array_equal(out, want)
    # unbatched call, unbatched out
    un = {k: (v[0] if k == "input" else v) for k, v in arrays.items()}
    out = np.empty(want.shape[1:])
    assert op.call(nd, un, p, out=out) is out
    np.testing.assert_array_equal(out, want[0])


@pytest.mark.parametrize("op", OUT_OPS, ids=lambda o: o.name)
def test_out_bad(op):
    nd = 2
    arrays, p = op.arrays(nd)
    before = snapshot(arrays)
    want = op.call(nd, arrays, p)

    def bad(out, exc=(ValueError, TypeError)):
        raises_naming(exc, "out", lambda: op.call(nd, arrays, p, out=out))

    bad(np.empty(want.shape[:-1] + (want.shape[-1] + 1,)))      # shape
    bad(np.empty(want.shape[1:]))                               # missing batch
    bad(np.empty(want.shape, np.float32))                       # dtype
    bad(np.empty(want.shape, np.int64))
    ro = np.empty_like(want)
    ro.setflags(write=False)
    bad(ro)                                                     # read-only
    bad(want.tolist())                                          # not an array
    bad(3.0)
    bad(np.float64(3.0))
    bad(memoryview(np.empty_like(want)))
    assert_unmodified(arrays, before)


@pytest.mark.parametrize("op", OUT_OPS, ids=lambda o: o.name)
def test_out_overlapping_an_input(op):
    nd = 1
    arrays, p = op.arrays(nd)
    want = op.call(nd, arrays, p)
    n_out = want.size
    for arg, a in arrays.items():
        # a buffer holding the operand and the output with a shared stretch
        buf = np.zeros(a.size + n_out)
        start = max(a.size - 1, 0)                  # overlap by one element
        view = buf[:a.size].reshape(a.shape)
        view[...] = a
        out = buf[start:start + n_out].reshape(want.shape)
        ops = dict(arrays, **{arg: view})
        before = view.copy()
        raises_naming(ValueError, "out", lambda: op.call(nd, ops, p, out=out))
        np.testing.assert_array_equal(view, before)
    # the very same array as out and input, where the shapes allow it
    x = np.random.default_rng(0).standard_normal((2, 3, 8))
    w = np.ones((3, 3, 1))
    with pytest.raises(ValueError, match="out"):
        numbaconv.conv1d(x, w, out=x)
    # interleaved: out and input share a buffer but no element (allowed)
    z = np.zeros((2, 3, 16))
    xin = z[:, :, 0::2]
    xin[...] = x
    out = z[:, :, 1::2]
    numbaconv.conv1d(xin, w, out=out)
    np.testing.assert_allclose(out, naive.conv(x, w), rtol=1e-12)
    np.testing.assert_array_equal(xin, x)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
@pytest.mark.parametrize("op", OUT_OPS, ids=lambda o: o.name)
def test_out_matrix_subclass(op):
    """np.matrix is an ndarray that cannot be reshaped to 5-D: a clear error
    (or a correct result), never a compiler error."""
    arrays, p = op.arrays(1)
    un = {k: (v[0] if k == "input" else v) for k, v in arrays.items()}
    want = op.call(1, un, p)
    out = np.asmatrix(np.empty(want.shape))
    try:
        op.call(1, un, p, out=out)
    except (TypeError, ValueError) as exc:
        assert "out" in str(exc)
    else:
        np.testing.assert_array_equal(np.asarray(out), want)


# ---------------------------------------------------------------------------
# devices
# ---------------------------------------------------------------------------

# conv*_input / conv*_weight keep torch.nn.grad's signature (no device=)
DEVICE_OPS = [o for o in OPS if o.name not in ("conv_input", "conv_weight")]


@pytest.mark.parametrize("device", ["gpu", "CPU", "cuda:x", "cuda:-1", "", 0, True,
                                    ["cpu"]], ids=repr)
@pytest.mark.parametrize("op", DEVICE_OPS, ids=lambda o: o.name)
def test_unknown_device(op, device):
    arrays, p = op.arrays(1)
    raises_naming(ValueError, "device", lambda: op.call(1, arrays, p, device=device))


@pytest.mark.parametrize("op", DEVICE_OPS, ids=lambda o: o.name)
def test_device_cpu_explicit(op):
    arrays, p = op.arrays(1)
    assert_bits_equal(op.call(1, arrays, p, device="cpu"), op.call(1, arrays, p))


def _gpu_usable():
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:
        return False


def test_device_cuda_without_gpu_is_a_clear_error():
    if _gpu_usable():
        pytest.skip("a GPU is usable here")
    p = problem(1)
    with pytest.raises(Exception) as info:
        numbaconv.conv1d(p["x"], p["w"], device="cuda")
    assert not isinstance(info.value, (AttributeError, ImportError, NameError,
                                       KeyError, IndexError)), repr(info.value)
    msg = str(info.value).lower()
    assert "cuda" in msg or "gpu" in msg
