"""numbaconv.ndimage against scipy.ndimage itself.

Random configurations (hypothesis) cover every function, mode, cval,
origin, axes, dtype, kernel parity and kernels larger than the input, with
every output form; fixed cases cover complex data, inf and NaN, array kinds
and the errors.  SciPy sums in float64 and in another order, so results are
compared within rounding: exactly where every sum is exact (integer data and
weights), within 1e-12 (float64) or 1e-5 (float32) of the sum of the
magnitudes of the terms otherwise.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, strategies as st

from _hypothesis_profiles import examples

scipy_ndimage = pytest.importorskip("scipy.ndimage")
if tuple(int(p) for p in __import__("scipy").__version__.split(".")[:2]) < (1, 15):
    pytest.skip("the reference needs scipy >= 1.15 (axes=)", allow_module_level=True)

from numbaconv import ndimage  # noqa: E402

MODES = list(ndimage.MODES)
FUNCS = ["correlate", "convolve", "correlate1d", "convolve1d"]
DTYPES = [np.float64, np.float32, np.int16, np.uint8, np.bool_]


def _magnitude(name, x, w, kwargs):
    """The same call on |x| and |w| (bounds the rounding of every sum)."""
    kw = dict(kwargs, output=np.float64)
    if "cval" in kw:
        kw["cval"] = abs(kw["cval"]) if np.isfinite(kw["cval"]) else 0.0
    return getattr(scipy_ndimage, name)(np.abs(x.astype(np.float64)),
                                        np.abs(np.asarray(w, np.float64)), **kw)


def assert_matches(name, x, w, ours, theirs, kwargs):
    assert ours.dtype == theirs.dtype, (ours.dtype, theirs.dtype)
    assert ours.shape == theirs.shape
    if theirs.dtype.kind in "biu" or theirs.size == 0:
        np.testing.assert_array_equal(ours, theirs)
        return
    rtol = 1e-5 if np.float32 in (ours.dtype, x.dtype) else 1e-12
    mag = _magnitude(name, x, w, kwargs)
    finite = np.isfinite(theirs)
    np.testing.assert_array_equal(np.isfinite(ours), finite)
    np.testing.assert_array_equal(ours[~finite], theirs[~finite])
    err = np.abs(ours[finite].astype(np.float64) - theirs[finite])
    bound = rtol * (mag[finite] + 1e-30) + (1e-30 if rtol > 1e-6 else 0)
    assert np.all(err <= bound), (err.max(), name, kwargs)


@st.composite
def configs(draw):
    name = draw(st.sampled_from(FUNCS))
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 7), min_size=ndim, max_size=ndim)))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    mode = draw(st.sampled_from(MODES))
    cval = draw(st.sampled_from([0.0, 1.5, -2.0, 3.0]))
    kwargs = {"mode": mode, "cval": cval}
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    exact = dtype.kind in "biu"   # integer data: integer weights, exact sums
    if name.endswith("1d"):
        axis = draw(st.integers(-ndim, ndim - 1))
        k = draw(st.integers(1, shape[axis] + 4))      # larger than the input too
        kshape = (k,)
        kwargs["axis"] = axis
        sizes = [k]
    else:
        filt = draw(st.lists(st.booleans(), min_size=ndim, max_size=ndim))
        use_axes = draw(st.booleans()) and ndim > 1
        axes = tuple(a for a in range(ndim) if filt[a]) or (ndim - 1,)
        ks = [draw(st.integers(1, shape[a] + 4)) for a in range(ndim)]
        if use_axes:
            order = draw(st.permutations(axes))
            kwargs["axes"] = tuple(order)
            kshape = tuple(ks[a] for a in sorted(axes))
            # origins follow the given order (unless every axis is named)
            sizes = ([ks[a] for a in order] if len(order) < ndim else list(kshape))
        else:
            kshape = tuple(ks)
            sizes = list(kshape)
    if exact:
        w = rng.integers(-3, 4, kshape).astype(np.float64)
        x = rng.integers(0, 4 if dtype == np.uint8 else 50, shape).astype(dtype)
        if dtype == np.int16:
            x = x - 25
    else:
        w = rng.standard_normal(kshape)
        if draw(st.booleans()):
            w[rng.random(kshape) < 0.3] = 0.0            # zero taps
        x = rng.standard_normal(shape).astype(dtype)
    if draw(st.booleans()):
        w = w.astype(np.float32) if not exact else w.astype(np.int64)
    if draw(st.booleans()):
        w = w.tolist()                                   # a list of weights
    origin_kind = draw(st.sampled_from(["zero", "int", "seq"]))
    if origin_kind == "int" and all(s == sizes[0] for s in sizes):
        k = sizes[0]
        kwargs["origin"] = draw(st.integers(-(k // 2), (k - 1) // 2))
    elif origin_kind != "zero":
        origins = [draw(st.integers(-(k // 2), (k - 1) // 2)) for k in sizes]
        if name.endswith("1d"):
            kwargs["origin"] = origins[0]
        else:
            kwargs["origin"] = tuple(origins)
            if "axes" not in kwargs and len(origins) == 1:
                kwargs["origin"] = origins[0]
    output = draw(st.sampled_from(["none", "dtype", "array"]))
    return name, x, w, kwargs, output


@examples(120)
@given(configs())
def test_matches_scipy(config):
    name, x, w, kwargs, output = config
    x_before = x.copy()
    w_before = np.array(w, copy=True)
    theirs_kw, ours_kw = dict(kwargs), dict(kwargs)
    if output == "dtype":
        target = np.float64 if x.dtype.kind in "bf" else np.int32
        theirs_kw["output"] = ours_kw["output"] = target
    elif output == "array":
        dt = np.float32 if x.dtype == np.float32 else np.float64
        theirs_kw["output"] = np.full(x.shape, 7, dt)
        ours_kw["output"] = np.full(x.shape, 7, dt)
    theirs = getattr(scipy_ndimage, name)(x, w, **theirs_kw)
    ours = getattr(ndimage, name)(x, w, **ours_kw)
    if output == "array":
        assert ours is ours_kw["output"]
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(np.asarray(w), w_before)
    assert_matches(name, x, w, ours, theirs, kwargs)


@examples(30)
@given(st.integers(0, 2**32 - 1), st.sampled_from(MODES),
       st.sampled_from(["correlate", "convolve"]))
def test_axes_of_a_stack(seed, mode, name):
    """A 4-D stack filtered over one to three of its axes in one call."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(tuple(rng.integers(1, 6, 4)))
    n = int(rng.integers(1, 4))
    axes = tuple(int(a) - 4 if rng.random() < 0.5 else int(a)
                 for a in rng.choice(4, n, replace=False))
    w = rng.standard_normal(tuple(rng.integers(1, 5, n)))
    kw = {"mode": mode, "cval": 0.5, "axes": axes}
    assert_matches(name, x, w, getattr(ndimage, name)(x, w, **kw),
                   getattr(scipy_ndimage, name)(x, w, **kw), kw)


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("kinds", ["cc", "cr", "rc"])
def test_complex(name, kinds):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 6)) + (1j * rng.standard_normal((5, 6))
                                       if kinds[0] == "c" else 0)
    kshape = (3,) if name.endswith("1d") else (3, 2)
    w = rng.standard_normal(kshape) + (1j * rng.standard_normal(kshape)
                                       if kinds[1] == "c" else 0)
    cval = 1 + 2j if kinds[0] == "c" else 1.0
    kw = {"mode": "constant", "cval": cval}
    ours = getattr(ndimage, name)(x, w, **kw)
    theirs = getattr(scipy_ndimage, name)(x, w, **kw)
    assert ours.dtype == theirs.dtype
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    out = np.zeros(x.shape, np.complex64)
    assert getattr(ndimage, name)(x.astype(np.complex64) if kinds[0] == "c"
                                  else x.astype(np.float32), w, output=out,
                                  **kw) is out


@pytest.mark.parametrize("mode", MODES)
def test_inf_and_nan_under_zero_weights(mode):
    """SciPy's correlate leaves zero (and NaN) weights out of each sum."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 9))
    x[3, 3], x[5, 5], x[1, 1], x[0, 8] = np.nan, np.inf, -np.inf, np.inf
    w = np.array([[0, 1, 0], [1, -1, 1], [0, 2, 0.0]])
    for cval in (0.0, np.nan, np.inf):
        for name in ("correlate", "convolve"):
            kw = {"mode": mode, "cval": cval}
            np.testing.assert_array_equal(getattr(ndimage, name)(x, w, **kw),
                                          getattr(scipy_ndimage, name)(x, w, **kw))
    w[0, 0] = np.nan
    np.testing.assert_array_equal(ndimage.correlate(x[:4, :4], w),
                                  scipy_ndimage.correlate(x[:4, :4], w))
    # The 1-D functions multiply every weight, NaN too.
    xs = np.arange(6.0)
    np.testing.assert_array_equal(
        ndimage.correlate1d(xs, [1, np.nan, 0], mode="constant"),
        scipy_ndimage.correlate1d(xs, [1, np.nan, 0], mode="constant"))


def test_casts_as_scipy():
    """Integer results truncate toward zero; float32 data, float64 output."""
    x = np.array([1, 3, 5, -7], np.int32)
    for w in ([0, 0.5, 0], [0, 0.9, 0], [0.3, 0.3, 0.3]):
        np.testing.assert_array_equal(ndimage.correlate1d(x, w),
                                      scipy_ndimage.correlate1d(x, w))
    xf = np.random.default_rng(5).standard_normal((6, 6)).astype(np.float32)
    w = np.random.default_rng(6).standard_normal((3, 3))
    ours = ndimage.correlate(xf, w, output=np.float64)
    np.testing.assert_allclose(ours, scipy_ndimage.correlate(xf, w, output=np.float64),
                               rtol=1e-12, atol=1e-12)


def test_output_may_be_the_input():
    x = np.arange(20.0).reshape(4, 5)
    expected = scipy_ndimage.correlate(x, np.ones((3, 3)))
    assert ndimage.correlate(x, np.ones((3, 3)), output=x) is x
    np.testing.assert_allclose(x, expected)


def test_strided_and_read_only_input():
    x = np.random.default_rng(7).standard_normal((9, 12))[::2, ::3]
    x.flags.writeable = False
    w = np.ones((2, 3))
    np.testing.assert_allclose(ndimage.convolve(x, w, mode="wrap"),
                               scipy_ndimage.convolve(x, w, mode="wrap"), rtol=1e-12)


def test_empty_and_scalar_like():
    x = np.zeros((0, 4))
    assert ndimage.correlate(x, np.ones((1, 3))).shape == (0, 4)
    np.testing.assert_array_equal(ndimage.correlate(np.arange(5.0), [2.0]),
                                  scipy_ndimage.correlate(np.arange(5.0), [2.0]))


def test_plan_for_chunked_layers():
    plan = ndimage._ndimage_plan((10, 20, 30), np.ones((4, 3)), "wrap",
                                 origin=(1, -1), axes=(2, 0))
    # weights fill the axes in ascending order, origins follow the given order
    assert plan.axes == (0, 2)
    assert plan.halo == ((1, 2), (0, 0), (2, 0))
    assert plan.pad_mode == "circular"
    conv = ndimage._ndimage_plan((10,), [1.0, 2.0], "reflect", convolution=True)
    assert conv.weights.tolist() == [2.0, 1.0] and conv.lo == (0,)


def test_dataarray_in_dataarray_out():
    xr = pytest.importorskip("xarray")
    data = np.random.default_rng(8).standard_normal((4, 5, 6))
    da = xr.DataArray(data, dims=("t", "y", "x"),
                      coords={"t": np.arange(4), "x": np.linspace(0, 1, 6)},
                      attrs={"units": "K"}, name="temperature")
    out = ndimage.correlate(da, np.ones((3, 3)), axes=(1, 2))
    assert isinstance(out, xr.DataArray)
    assert out.dims == da.dims and out.name == da.name and out.attrs == da.attrs
    assert out.coords.equals(da.coords)
    np.testing.assert_allclose(out.values, scipy_ndimage.correlate(
        data, np.ones((3, 3)), axes=(1, 2)), rtol=1e-12)
    line = ndimage.convolve1d(da, [1, 2, 3], axis=0)
    assert isinstance(line, xr.DataArray) and line.dims == da.dims


def test_importing_numbaconv_does_not_import_scipy():
    code = ("import sys, numbaconv; assert 'scipy' not in sys.modules; "
            "numbaconv.ndimage; assert 'scipy' not in sys.modules; "
            "assert 'xarray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------
# errors: what SciPy rejects, rejected before any work, nothing modified
# ---------------------------------------------------------------------------

BAD = [
    ("correlate", (5, 5), (3, 3), {"origin": 2}, ValueError, "origin"),
    ("correlate", (5, 5), (4, 4), {"origin": -3}, ValueError, "origin"),
    ("convolve", (5, 5), (2, 2), {"origin": (1, 0)}, ValueError, "origin"),
    ("correlate1d", (5, 5), (3,), {"origin": 2}, ValueError, "origin"),
    ("correlate", (5, 5), (3,), {}, ValueError, "weights.ndim"),
    ("correlate", (5, 5, 5), (3, 3), {"axes": (0,)}, ValueError, "len(axes)"),
    ("correlate", (5, 5, 5), (3, 3), {"axes": (1, 1)}, ValueError, "unique"),
    ("correlate", (5, 5), (3,), {"axes": (2,)}, ValueError, "out of range"),
    ("correlate", (5, 5), (3, 3), {"mode": "edge"}, ValueError, "'grid-wrap'"),
    ("correlate1d", (5, 5), (3,), {"mode": "zeros"}, ValueError, "'mirror'"),
    ("correlate", (5, 5), (3, 3), {"output": np.zeros((5, 4))}, ValueError, "shape"),
    ("correlate", (5, 5), (3, 3), {"origin": (0, 0, 0)}, ValueError, "origin"),
    ("correlate", (5, 5), (3, 3), {"mode": ["reflect", "wrap"]}, ValueError, "sequence"),
    ("correlate", (5, 5), (3, 3), {"cval": 1j}, ValueError, "cval"),
    ("correlate", (5, 5), (3, 3), {"output": np.float16}, TypeError, "float16"),
    ("correlate1d", (5, 5), (3, 3), {}, ValueError, "1-D"),
    ("correlate1d", (5, 5), (3,), {"axis": 2}, ValueError, "axis"),
]


@pytest.mark.parametrize("name, shape, kshape, kwargs, error, words", BAD)
def test_rejects_what_scipy_rejects(name, shape, kshape, kwargs, error, words):
    x = np.arange(float(np.prod(shape))).reshape(shape)
    w = np.ones(kshape)
    before = x.copy(), w.copy()
    out = kwargs.get("output")
    with pytest.raises((ValueError, RuntimeError, TypeError, IndexError)):
        getattr(scipy_ndimage, name)(x, w, **kwargs)
    with pytest.raises(error, match=None) as info:
        getattr(ndimage, name)(x, w, **kwargs)
    assert words in str(info.value)
    np.testing.assert_array_equal(x, before[0])
    np.testing.assert_array_equal(w, before[1])
    if isinstance(out, np.ndarray):
        assert not out.any()


def test_scipy_runtime_errors_are_still_runtime_errors():
    with pytest.raises(RuntimeError):
        ndimage.correlate(np.ones((3, 3)), np.ones(3))
    with pytest.raises(RuntimeError):
        ndimage.correlate(np.ones((3, 3)), np.ones((3, 3)), mode="bogus")


def test_float16_and_four_axes_are_clear_errors():
    with pytest.raises(TypeError, match="float16"):
        ndimage.correlate(np.ones((3, 3), np.float16), np.ones((3, 3)))
    with pytest.raises(ValueError, match="at most 3 axes"):
        ndimage.correlate(np.ones((3, 3, 3, 3)), np.ones((2, 2, 2, 2)))


# ---------------------------------------------------------------------------
# GPU arrays (a GPU, or NUMBA_ENABLE_CUDASIM=1 set before Numba is imported)
# ---------------------------------------------------------------------------

def _cuda_usable():
    import numbaconv.cuda as nc_cuda
    return nc_cuda.cuda_status()


@pytest.mark.cuda
@pytest.mark.skipif(not _cuda_usable()[0], reason="CUDA backend not usable")
@pytest.mark.parametrize("mode", ["reflect", "constant", "mirror", "wrap", "nearest"])
def test_gpu_arrays(mode):
    from numba import cuda
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    cases = [("correlate", rng.standard_normal((2, 3)), {"axes": (0, 2)}),
             ("convolve", rng.standard_normal((3, 6, 2)), {"origin": (0, 1, -1)}),
             ("correlate1d", rng.standard_normal(4), {"axis": 1})]
    for name, w, kw in cases:
        kw = dict(kw, mode=mode, cval=1.5)
        result = getattr(ndimage, name)(cuda.to_device(x), w, **kw)
        assert hasattr(result, "copy_to_host")          # a device array back
        assert_matches(name, x, w, result.copy_to_host(),
                       getattr(scipy_ndimage, name)(x, w, **kw), kw)
    out = cuda.device_array(x.shape, np.float32)
    assert ndimage.correlate(cuda.to_device(x), np.ones((3, 3, 3)), output=out,
                             mode=mode) is out
    np.testing.assert_allclose(out.copy_to_host(), scipy_ndimage.correlate(
        x, np.ones((3, 3, 3)), mode=mode), rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="float32 or float64"):
        ndimage.correlate(cuda.to_device(x.astype(np.int32)), np.ones((3, 3, 3)))
    # axes that need the transposed layout; a strided device input
    x4 = rng.standard_normal((3, 4, 5, 2))
    w = rng.standard_normal((2, 3))
    kw = {"axes": (0, 2), "mode": mode, "cval": 2.0}
    assert_matches("correlate", x4, w,
                   ndimage.correlate(cuda.to_device(x4), w, **kw).copy_to_host(),
                   scipy_ndimage.correlate(x4, w, **kw), kw)
    kw = {"axis": 2, "mode": mode}
    assert_matches("convolve1d", x4[:, ::2], [1, 2, 3],
                   ndimage.convolve1d(cuda.to_device(x4)[:, ::2], [1, 2, 3],
                                      **kw).copy_to_host(),
                   scipy_ndimage.convolve1d(x4[:, ::2], [1, 2, 3], **kw), kw)


@examples(60)
@given(configs())
def test_slab_path_matches_scipy(config):
    """Results of another dtype than the computation's, computed a slab at a
    time and cast (``_run_in_slabs``), on every shape, not only large ones."""
    import numbaconv._ndimage_run as module
    saved = module._SLAB_BYTES
    module._SLAB_BYTES = 16
    try:
        test_matches_scipy.hypothesis.inner_test(config)
    finally:
        module._SLAB_BYTES = saved


def test_slab_path_runs_where_results_are_cast(monkeypatch):
    """Slab by slab along the batch, depth and row axes, into integer and
    boolean outputs, with every mode acting at the whole array's edges."""
    import numbaconv._ndimage_run as module
    monkeypatch.setattr(module, "_SLAB_BYTES", 64)
    calls = []
    run = module._run_in_slabs
    monkeypatch.setattr(module, "_run_in_slabs", lambda *a: calls.append(1) or run(*a))
    rng = np.random.default_rng(7)
    for shape, w, kw in [((5, 6, 7), rng.standard_normal((3, 3, 3)), {"mode": "wrap"}),
                         ((30, 9), rng.standard_normal((4, 3)), {"mode": "mirror"}),
                         ((4, 12, 11), rng.standard_normal((3, 3)), {"axes": (1, 2)}),
                         ((200,), rng.standard_normal(6), {"mode": "nearest"}),
                         ((2, 3, 4, 5, 6), rng.standard_normal((3, 3, 3)),
                          {"axes": (0, 2, 4), "mode": "constant", "cval": 7.0})]:
        x = (rng.random(shape) * 300).astype(np.uint8)
        for output in (np.uint8, np.int16, bool):
            assert_matches("correlate", x, w, ndimage.correlate(x, w, output=output, **kw),
                           scipy_ndimage.correlate(x, w, output=output, **kw), kw)
    # The transposed layout (last shape) is cast whole.
    assert len(calls) == 12
    # A boolean input is read as its bytes.
    x = rng.random((9, 40)) > 0.5
    w = rng.standard_normal((3, 2))
    assert_matches("correlate", x, w, ndimage.correlate(x, w, output=np.int8),
                   scipy_ndimage.correlate(x, w, output=np.int8), {})
    assert len(calls) == 13


def test_slab_path_keeps_a_non_finite_constant_out_of_skipped_taps(monkeypatch):
    """A NaN or inf ``cval`` under a zero weight does not reach the result
    (SciPy skips zero weights), also where the result is cast."""
    import numbaconv._ndimage_run as module
    monkeypatch.setattr(module, "_SLAB_BYTES", 64)
    x = (np.random.default_rng(3).random((12, 13)) * 100).astype(np.int16)
    w = np.array([[0.0, 1.0, 0.0], [2.0, 0.0, -1.0], [0.0, 0.5, 0.0]])
    for cval in (np.nan, np.inf, -np.inf):
        kw = {"mode": "constant", "cval": cval}
        assert_matches("correlate", x, w, ndimage.correlate(x, w, output=np.float32, **kw),
                       scipy_ndimage.correlate(x, w, output=np.float32, **kw), kw)


def test_repeated_calls_reuse_the_prepared_kernel_call():
    """A repeated call runs the kernel call its plan prepared, one per
    thread count, with the same result as the first call and as SciPy."""
    import numba

    import numbaconv._ndimage_run as module
    x = np.random.default_rng(5).random((20, 30))
    w = np.array([[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]])
    first = ndimage.correlate(x, w, mode="wrap")
    assert_matches("correlate", x, w, first, scipy_ndimage.correlate(x, w, mode="wrap"),
                   {"mode": "wrap"})
    plan = module._cached_plan(x.shape, w, "wrap", 0.0, 0, None, False, None)
    prepared = dict(plan.__dict__["_calls"])
    assert len(prepared) == 1 and all(prepared.values())
    np.testing.assert_array_equal(ndimage.correlate(x, w, mode="wrap"), first)
    assert plan.__dict__["_calls"] == prepared
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        np.testing.assert_array_equal(ndimage.correlate(x, w, mode="wrap"), first)
    finally:
        numba.set_num_threads(before)
    assert len(plan.__dict__["_calls"]) == (2 if before > 1 else 1)
    assert numba.get_num_threads() == before


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plain_call_equals_the_general_path(dtype):
    """A float input and no ``output`` take a shorter way to the same
    kernel call: bit for bit the result of the general path, which an
    ``output`` dtype, a strided view or a read-only input takes."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 24, 40)).astype(dtype)
    w = rng.standard_normal((3, 1, 4))
    for mode in ("reflect", "constant", "wrap"):
        kw = {"mode": mode, "cval": 1.5}
        plain = ndimage.correlate(x, w, **kw)
        assert plain.dtype == dtype
        np.testing.assert_array_equal(plain, ndimage.correlate(x, w, output=dtype, **kw))
        wide = np.zeros((2, 24, 80), dtype)
        wide[..., ::2] = x
        np.testing.assert_array_equal(plain, ndimage.correlate(wide[..., ::2], w, **kw))
        frozen = x.copy()
        frozen.flags.writeable = False
        np.testing.assert_array_equal(plain, ndimage.correlate(frozen, w, **kw))
        assert_matches("correlate", x, w, plain, scipy_ndimage.correlate(x, w, **kw), kw)


def test_boolean_results_are_cast_as_scipy_casts():
    """A boolean output holds C's (unsigned char) cast of each sum."""
    x = np.ones(5, bool)
    for w in ([0, 0.5, 0], [0, 256, 0], [0, 257, 0], [0, -1, 0], [0, -0.5, 0]):
        np.testing.assert_array_equal(ndimage.correlate1d(x, w),
                                      scipy_ndimage.correlate1d(x, w))
    data = np.array([1.5, 256.0, -0.7, 0.2])
    np.testing.assert_array_equal(ndimage.correlate(data, [1.0], output=bool),
                                  scipy_ndimage.correlate(data, [1.0], output=bool))
