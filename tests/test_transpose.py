"""conv_transpose1d / 2d / 3d against the scatter-form reference and PyTorch.

With a non-zero ``padding_mode`` the transposed convolution is defined as the
exact adjoint of the convolution with that mode, i.e. ``conv{nd}d_input``.
"""

from __future__ import annotations

import numpy as np
import pytest

import naive
from conftest import (assert_close, case_id, case_seed, pairwise_cases,
                      random_array, to_torch)

numbaconv = pytest.importorskip("numbaconv")

MODES = ["zeros", "reflect", "replicate", "circular", "symmetric"]


def convt_fn(nd):
    return getattr(numbaconv, f"conv_transpose{nd}d")


def conv_input_fn(nd):
    return getattr(numbaconv, f"conv{nd}d_input")


def mode_ok(mode, size, lo, hi):
    """Can ``mode`` pad an axis of ``size`` by ``lo``/``hi``?"""
    p = max(lo, hi)
    if mode == "reflect":
        return p < size or p == 0
    if mode in ("circular", "symmetric"):
        return p <= size
    return True


def reference(x, w, b, kw, mode):
    """(value, magnitude) of the float64 reference of a transposed call.

    ``kw`` holds stride, padding, output_padding, groups, dilation and
    optionally output_size (spatial).  'zeros' uses the scatter-form
    reference; the other modes the adjoint of the padded convolution.
    """
    nd = w.ndim - 2
    kw = dict(kw)
    out_size = kw.pop("output_size", None)
    if out_size is not None:
        # output_padding = requested size - minimum size
        xb = x if x.ndim == nd + 2 else x[None]
        stride = naive._tup(kw["stride"], nd)
        dilation = naive._tup(kw["dilation"], nd)
        lo, hi = naive.resolve_padding(kw["padding"], xb.shape[2:], w.shape[2:], stride, dilation)
        base = naive.transpose_output_shape(xb.shape[2:], w.shape[2:], stride, dilation,
                                            lo, hi, (0,) * nd)
        kw["output_padding"] = tuple(o - m for o, m in zip(out_size[-nd:], base))

    def run(x, w, b):
        if mode == "zeros":
            return naive.conv_transpose(x, w, b, **kw)
        y = naive.conv_transpose(x, w, None, **kw)  # for the output shape only
        unb = x.ndim == nd + 1
        C = w.shape[1] * kw["groups"]
        shape = ((C,) if unb else (x.shape[0], C)) + y.shape[-nd:]
        gx = naive.conv_input(shape, w, x, kw["stride"], kw["padding"], kw["dilation"],
                              kw["groups"], mode)
        if b is not None:
            gx = gx + np.asarray(b, np.float64).reshape((-1,) + (1,) * nd)
        return gx

    ref = run(x, w, b)
    mag = run(np.abs(x), np.abs(w), None if b is None else np.abs(b))
    return ref, mag


# ---------------------------------------------------------------------------
# the parametrized product
# ---------------------------------------------------------------------------

FACTORS = dict(
    nd=[1, 2, 3],
    kernel=["odd", "even", "mixed"],
    stride=[1, 2, 3, "tuple"],
    dilation=[1, 2, "tuple"],
    groups=["1", "2", "depthwise"],
    padding=["int", "tuple", "pairs", "same", "valid", "zero"],
    output_padding=["none", "max", "tuple", "size_spatial", "size_full"],
    mode=MODES,
    dtype=["float32", "float64"],
    bias=[False, True],
    batched=[True, False],
)


def _valid(case):
    # 'same' fixes the output size: no output_padding / output_size with it
    return not (case["padding"] == "same" and case["output_padding"] != "none")


CASES = pairwise_cases(FACTORS, seed=11, extra=110, valid=_valid)


def build_problem(case, seed):
    r = np.random.default_rng(seed)
    nd = case["nd"]
    dtype = np.dtype(case["dtype"])
    kernels = {"odd": [1, 3], "even": [2, 4], "mixed": [1, 2, 3, 4]}[case["kernel"]]
    k = tuple(int(r.choice(kernels)) for _ in range(nd))
    if nd == 3:
        k = tuple(min(v, 3) for v in k)

    def per_axis(spec, choices):
        if spec == "tuple":
            return tuple(int(r.choice(choices)) for _ in range(nd))
        return int(spec)

    stride = per_axis(case["stride"], [1, 2, 3])
    dilation = per_axis(case["dilation"], [1, 2])
    s3 = naive._tup(stride, nd)
    d3 = naive._tup(dilation, nd)

    if case["groups"] == "1":
        groups, Cin, Cout = 1, int(r.integers(1, 4)), int(r.integers(1, 4))
    elif case["groups"] == "2":
        groups, Cin, Cout = 2, 2 * int(r.integers(1, 3)), 2 * int(r.integers(1, 3))
    else:  # depthwise: one input channel per group, multiplier outputs
        Cin = int(r.integers(2, 4))
        groups, Cout = Cin, Cin * int(r.integers(1, 3))

    padding = case["padding"]
    if padding == "int":
        padding = int(r.integers(1, 3))
    elif padding == "zero":
        padding = 0
    elif padding == "tuple":
        padding = tuple(int(r.integers(0, 3)) for _ in range(nd))
    elif padding == "pairs":
        padding = tuple((int(r.integers(0, 3)), int(r.integers(0, 3))) for _ in range(nd))

    limit = tuple(max(s, d) for s, d in zip(s3, d3))
    opk = case["output_padding"]
    if opk in ("none", "size_spatial", "size_full"):
        op = (0,) * nd
    elif opk == "max":
        op = tuple(m - 1 for m in limit)
    else:
        op = tuple(int(r.integers(0, m)) for m in limit)

    # input sizes: large enough that the output is positive and the mode can pad
    base = {1: (3, 8), 2: (2, 6), 3: (2, 4)}[nd]
    size = []
    for ax in range(nd):
        L = int(r.integers(*base))
        while True:
            if padding == "same":
                lo, hi, opx = naive.transpose_padding("same", (L,), (k[ax],), (s3[ax],), (d3[ax],))
                lo, hi, opa = lo[0], hi[0], opx[0]
            else:
                lo, hi = naive.resolve_padding(padding, (L,) * nd, k, s3, d3)
                lo, hi, opa = lo[ax], hi[ax], op[ax]
            out = (L - 1) * s3[ax] - lo - hi + d3[ax] * (k[ax] - 1) + opa + 1
            if out >= 1 and mode_ok(case["mode"], out, lo, hi):
                break
            L += 1
        size.append(L)
    size = tuple(size)

    N = int(r.integers(1, 3))
    shape = ((N,) if case["batched"] else ()) + (Cin,) + size
    x = r.standard_normal(shape).astype(dtype)
    w = r.standard_normal((Cin, Cout // groups) + k).astype(dtype)
    b = r.standard_normal(Cout).astype(dtype) if case["bias"] else None
    kw = dict(stride=stride, padding=padding, groups=groups, dilation=dilation)
    if opk in ("size_spatial", "size_full"):
        lo, hi = naive.resolve_padding(padding, size, k, s3, d3)
        minimum = naive.transpose_output_shape(size, k, s3, d3, lo, hi, (0,) * nd)
        want = tuple(m + int(r.integers(0, lim)) for m, lim in zip(minimum, limit))
        # the mode must still be able to pad the requested size
        want = tuple(w_ if mode_ok(case["mode"], w_, a, c) else m
                     for w_, m, a, c in zip(want, minimum, lo, hi))
        if opk == "size_full":
            want = (((N,) if case["batched"] else ()) + (Cout,) + want)
        kw["output_size"] = want
    else:
        kw["output_padding"] = op
    return x, w, b, kw


def _ref_kwargs(kw):
    out = dict(kw)
    out.setdefault("output_padding", 0)
    return out


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_product_vs_reference(case):
    x, w, b, kw = build_problem(case, case_seed(case))
    mode = case["mode"]
    x0, w0 = x.copy(), w.copy()
    got = convt_fn(case["nd"])(x, w, b, padding_mode=mode, **kw)
    ref, mag = reference(x, w, b, _ref_kwargs(kw), mode)
    assert got.dtype == x.dtype
    assert_close(got, ref, magnitude=mag, err_msg=f"{case} {kw}")
    if "output_size" in kw:
        assert got.shape[-case["nd"]:] == tuple(kw["output_size"][-case["nd"]:])
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)


def _torch_transpose(torch, F, x, w, b, kw):
    """PyTorch's conv_transpose with padding 0, then our crop (any lo/hi)."""
    nd = w.ndim - 2
    unb = x.ndim == nd + 1
    xb = x[None] if unb else x
    stride = naive._tup(kw["stride"], nd)
    dilation = naive._tup(kw["dilation"], nd)
    k = w.shape[2:]
    if kw["padding"] == "same":
        lo, hi, op = naive.transpose_padding("same", xb.shape[2:], k, stride, dilation)
    else:
        lo, hi = naive.resolve_padding(kw["padding"], xb.shape[2:], k, stride, dilation)
        op = naive._tup(kw.get("output_padding", 0), nd)
        if kw.get("output_size") is not None:
            base = naive.transpose_output_shape(xb.shape[2:], k, stride, dilation, lo, hi,
                                                (0,) * nd)
            op = tuple(o - m for o, m in zip(kw["output_size"][-nd:], base))
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[nd]
    full = fn(to_torch(torch, xb.astype(np.float64)), to_torch(torch, w.astype(np.float64)),
              stride=stride, dilation=dilation, groups=kw["groups"]).numpy()
    full = np.pad(full, [(0, 0), (0, 0)] + [(0, p) for p in op])
    out = naive.transpose_output_shape(xb.shape[2:], k, stride, dilation, lo, hi, op)
    y = full[(slice(None), slice(None)) + tuple(slice(a, a + o) for a, o in zip(lo, out))]
    if b is not None:
        y = y + b.astype(np.float64).reshape((-1,) + (1,) * nd)
    return y[0] if unb else y


ZERO_CASES = [c for c in CASES if c["mode"] == "zeros"]


@pytest.mark.parametrize("case", ZERO_CASES, ids=[case_id(c) for c in ZERO_CASES])
def test_product_vs_torch(case, torch, F):
    x, w, b, kw = build_problem(case, case_seed(case))
    got = convt_fn(case["nd"])(x, w, b, **kw)
    ref = _torch_transpose(torch, F, x, w, b, kw)
    _, mag = reference(x, w, b, _ref_kwargs(kw), "zeros")
    assert_close(got, ref, magnitude=mag)


# ---------------------------------------------------------------------------
# PyTorch's own arguments (padding, output_padding, output_size)
# ---------------------------------------------------------------------------

NATIVE = [
    # nd, size, k, stride, padding, output_padding, groups, dilation
    (1, (7,), (3,), 2, 1, 1, 1, 1),
    (1, (6,), (4,), 3, 2, 2, 2, 1),
    (1, (5,), (3,), 1, 2, 1, 1, 2),
    (2, (4, 5), (3, 2), (2, 1), (1, 0), (1, 0), 1, 1),
    (2, (5, 4), (3, 3), 2, 1, (0, 1), 3, (1, 2)),
    (3, (3, 4, 3), (3, 2, 3), (2, 2, 1), (1, 0, 1), (1, 1, 0), 1, 1),
    (3, (3, 3, 4), (2, 3, 2), (1, 2, 3), 0, (0, 1, 2), 2, (2, 1, 1)),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", NATIVE)
def test_torch_native(case, dtype, rng, torch, F):
    nd, size, k, s, p, op, g, d = case
    x = random_array(rng, (2, 2 * g) + size, dtype)
    w = random_array(rng, (2 * g, 3) + k, dtype)
    b = random_array(rng, (3 * g,), dtype)
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[nd]
    ref = fn(*(to_torch(torch, a.astype(np.float64)) for a in (x, w, b)), stride=s,
             padding=p, output_padding=op, groups=g, dilation=d).numpy()
    got = convt_fn(nd)(x, w, b, stride=s, padding=p, output_padding=op, groups=g, dilation=d)
    assert got.dtype == dtype
    _, mag = reference(x, w, b, dict(stride=s, padding=p, output_padding=op, groups=g,
                                     dilation=d), "zeros")
    assert_close(got, ref, magnitude=mag)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_output_size_matches_torch_module(nd, rng, torch):
    size = (4, 3, 3)[:nd]
    k = (3, 2, 3)[:nd]
    stride = (3, 2, 2)[:nd]
    mod = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d,
           3: torch.nn.ConvTranspose3d}[nd](2, 4, k, stride=stride, padding=1).double()
    x = random_array(rng, (2, 2) + size)
    w = mod.weight.detach().numpy().copy()
    b = mod.bias.detach().numpy().copy()
    base = naive.transpose_output_shape(size, k, stride, (1,) * nd, (1,) * nd, (1,) * nd,
                                        (0,) * nd)
    for extra in range(max(stride)):
        want = tuple(m + min(extra, s - 1) for m, s in zip(base, stride))
        with torch.no_grad():
            ref = mod(to_torch(torch, x), output_size=list(want)).numpy()
        got = convt_fn(nd)(x, w, b, stride=stride, padding=1, output_size=want)
        assert_close(got, ref)
        got_full = convt_fn(nd)(x, w, b, stride=stride, padding=1,
                                output_size=(2, 4) + want)
        np.testing.assert_array_equal(got_full, got)


@pytest.mark.parametrize("nd", [1, 2])
def test_output_size_out_of_range(nd, rng):
    x = random_array(rng, (1, 2) + (5,) * nd)
    w = random_array(rng, (2, 2) + (3,) * nd)
    base = (5 - 1) * 2 - 2 + 2 + 1  # stride 2, padding 1, k 3 -> 9, valid 9..10
    for bad in (base - 1, base + 2):
        want = (base,) * (nd - 1) + (bad,)
        with pytest.raises(ValueError, match="output_size") as exc:
            convt_fn(nd)(x, w, stride=2, padding=1, output_size=want)
        assert str(base) in str(exc.value) and str(base + 1) in str(exc.value), str(exc.value)


# ---------------------------------------------------------------------------
# beyond PyTorch: 'same' and non-zero padding modes
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("s", [1, 2, 3])
def test_same_is_input_times_stride(nd, k, s, rng):
    size = (5, 4, 3)[:nd]
    x = random_array(rng, (2, 3) + size)
    w = random_array(rng, (3, 2) + (min(k, 3) if nd == 3 else k,) * nd)
    got = convt_fn(nd)(x, w, stride=s, padding="same")
    assert got.shape == (2, 2) + tuple(L * s for L in size)
    # the adjoint of the 'same' convolution of an input of size L * s
    ref = naive.conv_input(got.shape, w, x, s, "same", 1, 1)
    assert_close(got, ref, magnitude=naive.conv_input(got.shape, np.abs(w), np.abs(x), s,
                                                       "same", 1, 1))
    lib = conv_input_fn(nd)(got.shape, w, x, stride=s, padding="same")
    assert_close(lib, ref)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_padding_mode_is_adjoint_of_conv(mode, nd, rng):
    """conv_transpose{nd}d(g, w, padding_mode=m) == conv{nd}d_input(x_shape, w, g, m)."""
    size = (9, 6, 5)[:nd]
    x_shape = (2, 4) + size
    w = random_array(rng, (6, 2) + (3,) * nd)
    kw = dict(stride=(2,) + (1,) * (nd - 1), padding=((2, 1),) + ((1, 2),) * (nd - 1),
              dilation=1, groups=2)
    out = naive.conv_output_shape(size, (3,) * nd, naive._tup(kw["stride"], nd), (1,) * nd,
                                  (2,) + (1,) * (nd - 1), (1,) + (2,) * (nd - 1))
    g = random_array(rng, (2, 6) + out)
    gi = conv_input_fn(nd)(x_shape, w, g, padding_mode=mode, **kw)
    op = (1,) + (0,) * (nd - 1)  # 9 = (4 - 1)*2 - 3 + 3 + 1 + 1 along the strided axis
    gt = convt_fn(nd)(g, w, stride=kw["stride"], padding=kw["padding"], output_padding=op,
                      groups=2, padding_mode=mode)
    assert gt.shape == x_shape
    assert_close(gt, gi)
    ref = naive.conv_input(x_shape, w, g, padding_mode=mode, **kw)
    assert_close(gt, ref, magnitude=naive.conv_input(x_shape, np.abs(w), np.abs(g),
                                                     padding_mode=mode, **kw))
    # and the adjoint identity with the library's forward convolution
    x = random_array(rng, x_shape)
    y = getattr(numbaconv, f"conv{nd}d")(x, w, padding_mode=mode, **kw)
    lhs, rhs = np.vdot(y, g), np.vdot(x, gt)
    assert abs(lhs - rhs) <= 1e-12 * (np.abs(y) * np.abs(g)).sum()


def test_transpose_bias_with_mode(rng):
    g = random_array(rng, (1, 2, 4, 4))
    w = random_array(rng, (2, 3, 3, 3))
    b = random_array(rng, (3,))
    with_b = numbaconv.conv_transpose2d(g, w, b, padding=1, padding_mode="circular")
    without = numbaconv.conv_transpose2d(g, w, padding=1, padding_mode="circular")
    assert_close(with_b, without + b[:, None, None])


# ---------------------------------------------------------------------------
# batch, layouts, out=
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("nd", [1, 2, 3])
def test_empty_batch(nd, rng):
    x = np.zeros((0, 2) + (3,) * nd, np.float32)
    w = random_array(rng, (2, 3) + (2,) * nd, np.float32)
    got = convt_fn(nd)(x, w, stride=2)
    assert got.shape == (0, 3) + (6,) * nd and got.dtype == np.float32


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_unbatched(nd, rng):
    x = random_array(rng, (2,) + (4,) * nd)
    w = random_array(rng, (2, 3) + (3,) * nd)
    got = convt_fn(nd)(x, w, stride=2, padding=1, output_padding=1)
    np.testing.assert_array_equal(got, convt_fn(nd)(x[None], w, stride=2, padding=1,
                                                    output_padding=1)[0])
    assert got.shape == (3,) + (8,) * nd


def test_layouts_and_readonly(rng):
    x = random_array(rng, (2, 4, 5, 6))
    w = random_array(rng, (4, 3, 3, 2))
    b = random_array(rng, (6,))
    expect = numbaconv.conv_transpose2d(x, w, b, stride=2, groups=2, padding=1)
    assert_close(expect, naive.conv_transpose(x, w, b, stride=2, groups=2, padding=1))
    xs = [np.asfortranarray(x), x[:, :, ::-1, :][:, :, ::-1, :],
          np.repeat(x, 2, axis=-1)[..., ::2]]
    ro = x.copy()
    ro.flags.writeable = False
    xs.append(ro)
    for xv in xs:
        wv = np.asfortranarray(w)
        got = numbaconv.conv_transpose2d(xv, wv, b[::-1][::-1], stride=2, groups=2, padding=1)
        np.testing.assert_array_equal(got, expect)
    np.testing.assert_array_equal(ro, x)


def test_out_argument(rng):
    x = random_array(rng, (2, 2, 4, 3, 3), np.float32)
    w = random_array(rng, (2, 2, 2, 2, 2), np.float32)
    expect = numbaconv.conv_transpose3d(x, w, stride=2)
    out = np.full(expect.shape, np.nan, np.float32)
    res = numbaconv.conv_transpose3d(x, w, stride=2, out=out)
    np.testing.assert_array_equal(out, expect)
    assert np.shares_memory(res, out)
    with pytest.raises(ValueError, match="out"):
        numbaconv.conv_transpose3d(x, w, stride=2, out=np.empty((2, 2, 8, 6, 5), np.float32))
    with pytest.raises((ValueError, TypeError), match="out"):
        numbaconv.conv_transpose3d(x, w, stride=2, out=np.empty(expect.shape, np.float64))


# ---------------------------------------------------------------------------
# property-based: small random transposed problems against PyTorch's rules
# ---------------------------------------------------------------------------

try:
    from hypothesis import given, settings, strategies as st
except ImportError:  # pragma: no cover
    given = None

if given is not None:
    @settings(max_examples=100, deadline=None, derandomize=True, database=None)
    @given(L=st.integers(1, 6), k=st.integers(1, 4), s=st.integers(1, 4), d=st.integers(1, 3),
           lo=st.integers(0, 4), hi=st.integers(0, 4), op=st.integers(0, 3),
           groups=st.sampled_from([1, 2]), seed=st.integers(0, 2**16))
    def test_random_small_transposed(L, k, s, d, lo, hi, op, groups, seed):
        """The reference's answer, or a ValueError exactly when the call is invalid."""
        r = np.random.default_rng(seed)
        x = r.standard_normal((2, 2 * groups, L))
        w = r.standard_normal((2 * groups, 3, k))
        out = (L - 1) * s - lo - hi + d * (k - 1) + op + 1
        valid = op < max(s, d) and out >= 1
        kw = dict(stride=s, padding=((lo, hi),), output_padding=op, groups=groups, dilation=d)
        if not valid:
            with pytest.raises(ValueError):
                numbaconv.conv_transpose1d(x, w, **kw)
            return
        got = numbaconv.conv_transpose1d(x, w, **kw)
        assert got.shape == (2, 3 * groups, out)
        ref, mag = reference(x, w, None, kw, "zeros")
        assert_close(got, ref, magnitude=mag)
