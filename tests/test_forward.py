"""conv1d / conv2d / conv3d against the float64 reference, PyTorch and SciPy."""

from __future__ import annotations

import numpy as np
import pytest

import naive
from conftest import (assert_close, case_id, case_seed, pairwise_cases,
                      random_array, to_torch)

numbaconv = pytest.importorskip("numbaconv")

MODES = ["zeros", "reflect", "replicate", "circular", "symmetric"]


def conv_fn(nd):
    return getattr(numbaconv, f"conv{nd}d")


# ---------------------------------------------------------------------------
# the parametrized product (a seeded covering array, not the full product)
# ---------------------------------------------------------------------------

FACTORS = dict(
    nd=[1, 2, 3],
    kernel=["odd", "even", "mixed"],
    stride=[1, 2, 3, "tuple"],
    dilation=[1, 2, "tuple"],
    groups=["1", "2", "depthwise"],
    padding=["int", "tuple", "pairs", "same", "valid", "zero"],
    mode=MODES,
    dtype=["float32", "float64"],
    bias=[False, True],
    batched=[True, False],
)


def build_problem(case, seed):
    """Concrete arrays and arguments for a case dict (deterministic)."""
    r = np.random.default_rng(seed)
    nd = case["nd"]
    dtype = np.dtype(case["dtype"])

    kernels = {"odd": [1, 3, 5], "even": [2, 4], "mixed": [1, 2, 3, 4]}[case["kernel"]]
    k = tuple(int(r.choice(kernels)) for _ in range(nd))
    if case["kernel"] == "odd" and nd >= 2:
        k = tuple(min(v, 3) for v in k)
    if nd == 3:
        k = tuple(min(v, 3) for v in k)

    def per_axis(spec, choices):
        if spec == "tuple":
            return tuple(int(r.choice(choices)) for _ in range(nd))
        return int(spec)

    stride = per_axis(case["stride"], [1, 2, 3])
    dilation = per_axis(case["dilation"], [1, 2])
    s3 = stride if isinstance(stride, tuple) else (stride,) * nd
    d3 = dilation if isinstance(dilation, tuple) else (dilation,) * nd

    if case["groups"] == "1":
        groups, C, K = 1, int(r.integers(1, 4)), int(r.integers(1, 4))
    elif case["groups"] == "2":
        groups = 2
        C, K = 2 * int(r.integers(1, 3)), 2 * int(r.integers(1, 3))
    else:  # depthwise with a channel multiplier
        C = int(r.integers(2, 4))
        groups, K = C, C * int(r.integers(1, 3))

    padding = case["padding"]
    if padding == "int":
        padding = int(r.integers(1, 3))
    elif padding == "zero":
        padding = 0
    elif padding == "tuple":
        padding = tuple(int(r.integers(0, 3)) for _ in range(nd))
    elif padding == "pairs":
        padding = tuple((int(r.integers(0, 3)), int(r.integers(0, 3))) for _ in range(nd))

    # spatial sizes: big enough for the kernel and for the padding mode
    base = {1: (5, 12), 2: (4, 9), 3: (3, 7)}[nd]
    size = []
    for ax in range(nd):
        L = int(r.integers(*base))
        span = d3[ax] * (k[ax] - 1) + 1
        L = max(L, span)
        if padding == "same":
            lo, hi = naive.resolve_padding("same", (L,), (k[ax],), (s3[ax],), (d3[ax],))
            lo, hi = lo[0], hi[0]
        else:
            lo, hi = naive.resolve_padding(padding, (L,) * nd, k, s3, d3)
            lo, hi = lo[ax], hi[ax]
        L = max(L, max(lo, hi) + 1)
        size.append(L)
    size = tuple(size)

    N = int(r.integers(1, 3))
    shape = ((N,) if case["batched"] else ()) + (C,) + size
    x = r.standard_normal(shape).astype(dtype)
    w = r.standard_normal((K, C // groups) + k).astype(dtype)
    b = r.standard_normal(K).astype(dtype) if case["bias"] else None
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return x, w, b, kwargs


CASES = pairwise_cases(FACTORS, seed=7, extra=150)


def reference(x, w, b, kwargs, mode):
    """(value, magnitude) of the float64 reference."""
    ref = naive.conv(x, w, b, padding_mode=mode, **kwargs)
    mag = naive.conv(np.abs(x), np.abs(w), None if b is None else np.abs(b),
                     padding_mode=mode, **kwargs)
    return ref, mag


def torch_conv(torch, F, x, w, b, kwargs, mode):
    """The same call through PyTorch (explicit F.pad with the reference's
    (lo, hi)), or None where torch has no such mode."""
    if mode == "symmetric":
        return None
    nd = w.ndim - 2
    unbatched = x.ndim == nd + 1
    xb = x[None] if unbatched else x
    stride = naive._tup(kwargs["stride"], nd)
    dilation = naive._tup(kwargs["dilation"], nd)
    lo, hi = naive.resolve_padding(kwargs["padding"], xb.shape[2:], w.shape[2:],
                                   stride, dilation)
    tpad = []
    for a, c in zip(reversed(lo), reversed(hi)):
        tpad += [a, c]
    tx = to_torch(torch, xb.astype(np.float64))
    tx = F.pad(tx, tpad, mode="constant" if mode == "zeros" else mode)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    y = fn(tx, to_torch(torch, w.astype(np.float64)),
           None if b is None else to_torch(torch, b.astype(np.float64)),
           stride=stride, dilation=dilation, groups=kwargs["groups"]).numpy()
    return y[0] if unbatched else y


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_product_vs_reference(case):
    x, w, b, kwargs = build_problem(case, case_seed(case))
    mode = case["mode"]
    x0, w0 = x.copy(), w.copy()
    got = conv_fn(case["nd"])(x, w, b, padding_mode=mode, **kwargs)
    ref, mag = reference(x, w, b, kwargs, mode)
    assert isinstance(got, np.ndarray)
    assert got.dtype == x.dtype
    assert_close(got, ref, magnitude=mag, err_msg=f"{case} {kwargs}")
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)


@pytest.mark.parametrize("case", CASES[:90], ids=[case_id(c) for c in CASES[:90]])
def test_product_vs_torch(case, torch, F):
    x, w, b, kwargs = build_problem(case, case_seed(case) + 1)
    mode = case["mode"]
    if mode == "symmetric":
        pytest.skip("torch has no symmetric (half-sample) padding")
    got = conv_fn(case["nd"])(x, w, b, padding_mode=mode, **kwargs)
    ref = torch_conv(torch, F, x, w, b, kwargs, mode)
    _, mag = reference(x, w, b, kwargs, mode)
    assert_close(got, ref, magnitude=mag)


# ---------------------------------------------------------------------------
# torch's own padding argument (independent of the reference's padding rules)
# ---------------------------------------------------------------------------

NATIVE = [
    # nd, size, k, stride, dilation, padding, groups, mode
    (1, (9,), (3,), 1, 1, "same", 1, "zeros"),
    (1, (10,), (4,), 1, 2, "same", 1, "zeros"),
    (1, (8,), (2,), 1, 1, "same", 2, "reflect"),
    (2, (7, 6), (2, 4), 1, 1, "same", 1, "zeros"),
    (2, (7, 6), (3, 2), 1, (2, 1), "same", 1, "circular"),
    (2, (8, 9), (3, 3), 2, 1, "valid", 1, "zeros"),
    (2, (8, 9), (3, 3), (2, 3), 1, (1, 2), 2, "replicate"),
    (3, (5, 6, 4), (3, 2, 2), 1, 1, "same", 1, "zeros"),
    (3, (5, 6, 7), (3, 3, 3), 2, 1, 1, 1, "reflect"),
    (3, (6, 5, 5), (2, 3, 1), (1, 2, 1), (2, 1, 1), (1, 0, 0), 2, "circular"),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", NATIVE)
def test_torch_native_padding(case, dtype, rng, torch, F):
    nd, size, k, s, d, p, g, mode = case
    x = random_array(rng, (2, 2 * g) + size, dtype)
    w = random_array(rng, (2 * g, 2) + k, dtype)
    b = random_array(rng, (2 * g,), dtype)
    mod = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}[nd](
        2 * g, 2 * g, k, stride=s, padding=p, dilation=d, groups=g,
        padding_mode=mode).double()
    with torch.no_grad():
        mod.weight.copy_(to_torch(torch, w.astype(np.float64)))
        mod.bias.copy_(to_torch(torch, b.astype(np.float64)))
        ref = mod(to_torch(torch, x.astype(np.float64))).numpy()
    got = conv_fn(nd)(x, w, b, stride=s, padding=p, dilation=d, groups=g, padding_mode=mode)
    assert got.dtype == dtype
    _, mag = reference(x, w, b, dict(stride=s, padding=p, dilation=d, groups=g), mode)
    assert_close(got, ref, magnitude=mag)


# ---------------------------------------------------------------------------
# 'same' padding: the output size rule, stride > 1 included
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("L", [5, 6, 7, 8])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("s", [1, 2, 3])
def test_same_output_size(L, k, s, rng):
    x = random_array(rng, (1, 1, L))
    w = random_array(rng, (1, 1, k))
    got = numbaconv.conv1d(x, w, stride=s, padding="same")
    assert got.shape == (1, 1, -(-L // s))
    total = max((-(-L // s) - 1) * s + k - L, 0)
    ref = naive.conv_forward(x, w, None, (s,), (1,), (total // 2,), (total - total // 2,), 1)
    assert_close(got, ref)


# ---------------------------------------------------------------------------
# SciPy's names of the padding modes
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_scipy_correlate_modes(mode, nd, rng):
    ndimage = pytest.importorskip("scipy.ndimage")
    size = {1: (13,), 2: (9, 8), 3: (6, 7, 5)}[nd]
    k = {1: (5,), 2: (3, 5), 3: (3, 3, 3)}[nd]
    vol = random_array(rng, size)
    ker = random_array(rng, k)
    ref = ndimage.correlate(vol, ker, mode=naive.SCIPY_MODES[mode], cval=0.0)
    got = conv_fn(nd)(vol[None, None], ker[None, None], padding="same", padding_mode=mode)
    assert_close(got[0, 0], ref, magnitude=ndimage.correlate(
        np.abs(vol), np.abs(ker), mode=naive.SCIPY_MODES[mode]))
    # unbatched single channel too
    got1 = conv_fn(nd)(vol[None], ker[None, None], padding="same", padding_mode=mode)
    assert got1.shape == (1,) + size
    np.testing.assert_array_equal(got1[0], got[0, 0])


# ---------------------------------------------------------------------------
# memory layouts, read-only inputs, inputs untouched
# ---------------------------------------------------------------------------

def _layouts(a, rng):
    """The same values as ``a`` in several memory layouts."""
    yield "fortran", np.asfortranarray(a)
    big = np.zeros(tuple(2 * n for n in a.shape), a.dtype)
    view = big[tuple(slice(None, None, 2) for _ in a.shape)]
    view[...] = a
    yield "strided", view
    rev = np.ascontiguousarray(a[tuple(slice(None, None, -1) for _ in a.shape)])
    yield "negative", rev[tuple(slice(None, None, -1) for _ in a.shape)]
    ro = a.copy()
    ro.flags.writeable = False
    yield "readonly", ro
    tr = np.ascontiguousarray(np.swapaxes(a, -1, -2)) if a.ndim >= 2 else a.copy()
    yield "swapped", np.swapaxes(tr, -1, -2) if a.ndim >= 2 else tr


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layouts(nd, mode, dtype, rng):
    size = {1: (9,), 2: (7, 6), 3: (5, 6, 4)}[nd]
    x = random_array(rng, (2, 4) + size, dtype)
    w = random_array(rng, (6, 2) + (3,) * nd, dtype)
    b = random_array(rng, (6,), dtype)
    kw = dict(stride=(2,) + (1,) * (nd - 1), padding=1, dilation=1, groups=2,
              padding_mode=mode)
    expect = conv_fn(nd)(x, w, b, **kw)
    _, mag = reference(x, w, b, {k: v for k, v in kw.items() if k != "padding_mode"}, mode)
    ref = naive.conv(x, w, b, **kw)
    assert_close(expect, ref, magnitude=mag)
    for (nx, xv), (nw, wv), (nb, bv) in zip(_layouts(x, rng), _layouts(w, rng), _layouts(b, rng)):
        if nx == "readonly" and dtype == np.float32:
            continue  # read-only arrays are a separate compiled signature: float64 suffices
        snap = (xv.copy(), wv.copy(), bv.copy())
        got = conv_fn(nd)(xv, wv, bv, **kw)
        assert got.dtype == dtype
        assert_close(got, ref, magnitude=mag, err_msg=f"layout {nx}")
        # bit-identical to the contiguous call: layout must not change the math
        np.testing.assert_array_equal(got, expect, err_msg=f"layout {nx}")
        for before, after in zip(snap, (xv, wv, bv)):
            np.testing.assert_array_equal(before, after)


def test_inputs_never_modified_all_modes(rng):
    for mode in MODES:
        x = random_array(rng, (1, 2, 5, 6, 4))
        w = random_array(rng, (3, 2, 3, 3, 3))
        b = random_array(rng, (3,))
        x.flags.writeable = w.flags.writeable = b.flags.writeable = False
        got = numbaconv.conv3d(x, w, b, padding=2, padding_mode=mode)
        assert_close(got, naive.conv(x, w, b, padding=2, padding_mode=mode))


# ---------------------------------------------------------------------------
# batch handling
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("mode", ["zeros", "circular"])
def test_empty_batch(nd, mode, rng):
    size = (6, 5, 4)[:nd]
    x = np.zeros((0, 3) + size)
    w = random_array(rng, (4, 3) + (3,) * nd)
    got = conv_fn(nd)(x, w, padding=1, stride=2, padding_mode=mode)
    out = naive.conv_output_shape(size, (3,) * nd, (2,) * nd, (1,) * nd, (1,) * nd, (1,) * nd)
    assert got.shape == (0, 4) + out
    assert got.dtype == np.float64


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_unbatched_matches_batched(nd, rng):
    size = (7, 6, 5)[:nd]
    x = random_array(rng, (4,) + size, np.float32)
    w = random_array(rng, (2, 2) + (2,) * nd, np.float32)
    got = conv_fn(nd)(x, w, padding="same", groups=2)
    assert got.shape == (2,) + size
    batched = conv_fn(nd)(x[None], w, padding="same", groups=2)
    np.testing.assert_array_equal(got, batched[0])


def test_batch_items_independent(rng):
    x = random_array(rng, (3, 2, 6, 6))
    w = random_array(rng, (2, 2, 3, 3))
    full = numbaconv.conv2d(x, w, padding=1)
    for n in range(3):
        np.testing.assert_array_equal(numbaconv.conv2d(x[n:n + 1], w, padding=1), full[n:n + 1])


# ---------------------------------------------------------------------------
# out=
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_argument(dtype, rng):
    x = random_array(rng, (2, 3, 6, 7, 5), dtype)
    w = random_array(rng, (4, 3, 3, 2, 3), dtype)
    b = random_array(rng, (4,), dtype)
    expect = numbaconv.conv3d(x, w, b, padding=(1, 0, 1), stride=(1, 2, 1))
    out = np.full(expect.shape, np.nan, dtype=dtype)
    res = numbaconv.conv3d(x, w, b, padding=(1, 0, 1), stride=(1, 2, 1), out=out)
    np.testing.assert_array_equal(out, expect)
    assert np.shares_memory(res, out)
    np.testing.assert_array_equal(res, expect)


def test_out_unbatched(rng):
    x = random_array(rng, (3, 8))
    w = random_array(rng, (2, 3, 3))
    out = np.empty((2, 6))
    numbaconv.conv1d(x, w, out=out)
    assert_close(out, naive.conv(x, w))


@pytest.mark.parametrize("bad", ["shape", "dtype", "batched_shape"])
def test_out_wrong(bad, rng):
    x = random_array(rng, (2, 3, 8))
    w = random_array(rng, (2, 3, 3))
    out = {"shape": np.empty((2, 2, 7)),
           "dtype": np.empty((2, 2, 6), np.float32),
           "batched_shape": np.empty((2, 6))}[bad]
    with pytest.raises((ValueError, TypeError), match="out"):
        numbaconv.conv1d(x, w, out=out)


def test_out_readonly_rejected(rng):
    x = random_array(rng, (1, 1, 8))
    w = random_array(rng, (1, 1, 3))
    out = np.zeros((1, 1, 6))
    out.flags.writeable = False
    with pytest.raises((ValueError, TypeError), match="out"):
        numbaconv.conv1d(x, w, out=out)
    np.testing.assert_array_equal(out, 0)


def test_out_not_ndarray_rejected(rng):
    x = random_array(rng, (1, 1, 8))
    w = random_array(rng, (1, 1, 3))
    with pytest.raises((ValueError, TypeError), match="out"):
        numbaconv.conv1d(x, w, out=[0.0] * 6)


def test_out_overlapping_input(rng):
    """Either an error, or the answer of a call without aliasing."""
    x = random_array(rng, (1, 2, 9, 9))
    w = random_array(rng, (2, 2, 3, 3))
    ref = naive.conv(x, w, padding=1)
    xa = x.copy()
    try:
        res = numbaconv.conv2d(xa, w, padding=1, out=xa)
    except ValueError as exc:
        assert "out" in str(exc)
    else:
        assert_close(res, ref)
        assert_close(xa, ref)


# ---------------------------------------------------------------------------
# special values and scale
# ---------------------------------------------------------------------------

def test_nan_and_inf_propagate(rng):
    x = random_array(rng, (1, 1, 12))
    x[0, 0, 5] = np.nan
    x[0, 0, 10] = np.inf
    w = np.ones((1, 1, 3))
    got = numbaconv.conv1d(x, w, padding=1)[0, 0]
    assert np.isnan(got[4:7]).all()
    assert np.isposinf(got[9:12]).all()
    assert np.isfinite(got[[0, 1, 2, 3, 7, 8]]).all()
    np.testing.assert_allclose(got[[0, 1, 2, 3, 7, 8]],
                               naive.conv(x, w, padding=1)[0, 0, [0, 1, 2, 3, 7, 8]],
                               rtol=1e-12, atol=1e-12)


def test_device_argument(rng):
    x = random_array(rng, (1, 2, 6))
    w = random_array(rng, (1, 2, 3))
    a = numbaconv.conv1d(x, w)
    np.testing.assert_array_equal(numbaconv.conv1d(x, w, device="cpu"), a)
    np.testing.assert_array_equal(numbaconv.conv1d(x, w, device=None), a)
    with pytest.raises(ValueError, match="device"):
        numbaconv.conv1d(x, w, device="tpu")


def test_large_channels_and_kernel_1x1(rng):
    """A 1x1 convolution is a matrix product over channels."""
    x = random_array(rng, (2, 17, 5, 4))
    w = random_array(rng, (9, 17, 1, 1))
    got = numbaconv.conv2d(x, w)
    ref = np.einsum("kc,nchw->nkhw", w[:, :, 0, 0], x)
    assert_close(got, ref, magnitude=np.einsum("kc,nchw->nkhw", np.abs(w[:, :, 0, 0]), np.abs(x)))


def test_symmetric_matches_numpy_pad(rng):
    """symmetric = NumPy 'symmetric' (half-sample mirror, edge repeated)."""
    x = random_array(rng, (1, 1, 4, 5))
    w = random_array(rng, (1, 1, 3, 5))
    xp = np.pad(x, [(0, 0), (0, 0), (1, 1), (2, 2)], mode="symmetric")
    ref = naive.conv_forward(xp, w, None, (1, 1), (1, 1), (0, 0), (0, 0), 1)
    got = numbaconv.conv2d(x, w, padding="same", padding_mode="symmetric")
    assert_close(got, ref)
    # padding == size is allowed for symmetric (like circular)
    got = numbaconv.conv2d(x, w, padding=((4, 4), (5, 5)), padding_mode="symmetric")
    assert_close(got, naive.conv(x, w, padding=((4, 4), (5, 5)), padding_mode="symmetric"))


@pytest.mark.parametrize("mode", MODES[1:])
def test_tiny_axes_every_padding_amount(mode, rng):
    """Index maps on axes of size 1, 2 and 3 with every padding they allow."""
    for size in (1, 2, 3):
        max_pad = size - 1 if mode == "reflect" else (size if mode in ("circular", "symmetric")
                                                       else size + 2)
        for lo in range(max_pad + 1):
            for hi in range(max_pad + 1):
                x = random_array(rng, (1, 2, size, 3, size))
                w = random_array(rng, (2, 2, 1, 1, 1))
                pad = ((lo, hi), (1, 1), (hi, lo))
                got = numbaconv.conv3d(x, w, padding=pad, padding_mode=mode)
                ref = naive.conv(x, w, padding=pad, padding_mode=mode)
                assert_close(got, ref, err_msg=f"size={size} pad={pad}")


# ---------------------------------------------------------------------------
# property-based: small random problems, valid or not
# ---------------------------------------------------------------------------

try:
    from hypothesis import given, settings, strategies as st
except ImportError:  # pragma: no cover
    given = None

if given is not None:
    @settings(max_examples=120, deadline=None, derandomize=True, database=None)
    @given(nd=st.integers(1, 2), size=st.lists(st.integers(1, 7), min_size=2, max_size=2),
           k=st.lists(st.integers(1, 4), min_size=2, max_size=2),
           s=st.lists(st.integers(1, 3), min_size=2, max_size=2),
           d=st.lists(st.integers(1, 3), min_size=2, max_size=2),
           pads=st.lists(st.integers(0, 4), min_size=4, max_size=4),
           mode=st.sampled_from(MODES), groups=st.sampled_from([1, 2]),
           same=st.booleans(), seed=st.integers(0, 2**16))
    def test_random_small_problems(nd, size, k, s, d, pads, mode, groups, same, seed):
        """Either the reference's answer, or a ValueError when the call is invalid."""
        r = np.random.default_rng(seed)
        size, k, s, d = tuple(size[:nd]), tuple(k[:nd]), tuple(s[:nd]), tuple(d[:nd])
        padding = "same" if same else tuple((pads[2 * i], pads[2 * i + 1]) for i in range(nd))
        lo, hi = naive.resolve_padding(padding, size, k, s, d)
        valid = all(L + a + b >= dd * (kk - 1) + 1
                    for L, a, b, kk, dd in zip(size, lo, hi, k, d))
        for L, a, b in zip(size, lo, hi):
            p = max(a, b)
            if mode == "reflect" and p >= L and p > 0:
                valid = False
            if mode in ("circular", "symmetric") and p > L:
                valid = False
        x = r.standard_normal((2, 2 * groups) + size)
        w = r.standard_normal((2 * groups, 2) + k)
        f = conv_fn(nd)
        if not valid:
            with pytest.raises(ValueError):
                f(x, w, stride=s, padding=padding, dilation=d, groups=groups,
                  padding_mode=mode)
            return
        got = f(x, w, stride=s, padding=padding, dilation=d, groups=groups, padding_mode=mode)
        ref, mag = reference(x, w, None, dict(stride=s, padding=padding, dilation=d,
                                              groups=groups), mode)
        assert_close(got, ref, magnitude=mag)


# ---------------------------------------------------------------------------
# medium sizes: several row blocks, channel blocks and tasks per plane
# ---------------------------------------------------------------------------

MEDIUM = [
    # x shape, w shape, kwargs
    ((1, 6, 70, 80), (7, 6, 3, 3), dict(padding="same")),
    ((2, 5, 61, 90), (6, 5, 3, 2), dict(padding=((2, 1), (0, 3)), dilation=(2, 3))),
    ((2, 6, 3, 40, 110), (10, 3, 2, 3, 3), dict(stride=(2, 1, 1), padding=1, groups=2)),
    ((2, 6, 5000), (5, 6, 5), dict(padding=2)),
    ((1, 5, 33, 65), (9, 5, 4, 3), dict(stride=(2, 3), padding=(1, 2))),
    ((1, 256, 5, 6, 5), (3, 256, 3, 3, 3), dict(padding=1)),  # long reductions
    ((1, 8, 4, 37, 45), (8, 1, 3, 3, 3), dict(padding="same", groups=8)),
]


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", MEDIUM)
def test_medium_sizes(case, dtype, mode, rng):
    xs, ws, kw = case
    nd = len(ws) - 2
    x = random_array(rng, xs, dtype)
    w = random_array(rng, ws, dtype)
    b = random_array(rng, (ws[0],), dtype)
    got = conv_fn(nd)(x, w, b, padding_mode=mode, **kw)
    full = dict(stride=1, padding=0, dilation=1, groups=1)
    full.update(kw)
    ref, mag = reference(x, w, b, full, mode)
    assert_close(got, ref, magnitude=mag)


def test_out_non_contiguous(rng):
    """A Fortran-ordered or strided ``out`` of the right shape and dtype is filled."""
    x = random_array(rng, (2, 3, 9, 8))
    w = random_array(rng, (4, 3, 3, 3))
    expect = numbaconv.conv2d(x, w, padding=1)
    out_f = np.asfortranarray(np.zeros(expect.shape))
    numbaconv.conv2d(x, w, padding=1, out=out_f)
    np.testing.assert_array_equal(out_f, expect)
    big = np.zeros(expect.shape[:-1] + (2 * expect.shape[-1],))
    out_s = big[..., ::2]
    numbaconv.conv2d(x, w, padding=1, out=out_s)
    np.testing.assert_array_equal(out_s, expect)
    np.testing.assert_array_equal(big[..., 1::2], 0.0)


@pytest.mark.parametrize("nd", [1, 3])
def test_degenerate_channels(nd, rng):
    """Zero input channels: a sum over nothing (bias only); zero outputs: empty."""
    b = random_array(rng, (2,))
    for _ in range(2):  # fresh (possibly recycled) output buffers must still be zeroed
        y = conv_fn(nd)(np.zeros((1, 0) + (5,) * nd), np.zeros((2, 0) + (3,) * nd), b)
        assert y.shape == (1, 2) + (3,) * nd
        np.testing.assert_array_equal(y, np.broadcast_to(b.reshape((1, 2) + (1,) * nd), y.shape))
    y = conv_fn(nd)(random_array(rng, (1, 2) + (5,) * nd), np.zeros((0, 2) + (3,) * nd))
    assert y.shape == (1, 0) + (3,) * nd
