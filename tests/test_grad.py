"""Gradients: conv{1,2,3}d_input / _weight / _backward and
conv_transpose{1,2,3}d_backward against the reference, PyTorch autograd,
finite differences and the adjoint identity; output_mask; determinism."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import naive
from conftest import (assert_close, case_id, case_seed, pairwise_cases,
                      random_array, to_torch)

numbaconv = pytest.importorskip("numbaconv")

MODES = ["zeros", "reflect", "replicate", "circular", "symmetric"]


def fn(name, nd):
    return getattr(numbaconv, name.format(nd=nd))


# ---------------------------------------------------------------------------
# problems
# ---------------------------------------------------------------------------

FACTORS = dict(
    nd=[1, 2, 3],
    kernel=["odd", "even", "mixed"],
    stride=[1, 2, 3, "tuple"],
    dilation=[1, 2, "tuple"],
    groups=["1", "2", "depthwise"],
    padding=["int", "tuple", "pairs", "same", "valid"],
    mode=MODES,
    dtype=["float32", "float64"],
    batched=[True, False],
)

CASES = pairwise_cases(FACTORS, seed=23, extra=60)


def build_problem(case, seed):
    """x, w, grad_output and the keyword arguments of a convolution."""
    r = np.random.default_rng(seed)
    nd = case["nd"]
    dtype = np.dtype(case["dtype"])
    kernels = {"odd": [1, 3], "even": [2, 4], "mixed": [1, 2, 3, 4]}[case["kernel"]]
    k = tuple(int(r.choice(kernels)) for _ in range(nd))
    if nd == 3:
        k = tuple(min(v, 3) for v in k)
    per_axis = (lambda spec, ch: tuple(int(r.choice(ch)) for _ in range(nd))
                if spec == "tuple" else int(spec))
    stride = per_axis(case["stride"], [1, 2, 3])
    dilation = per_axis(case["dilation"], [1, 2])
    s3, d3 = naive._tup(stride, nd), naive._tup(dilation, nd)
    if case["groups"] == "1":
        groups, C, K = 1, int(r.integers(1, 4)), int(r.integers(1, 4))
    elif case["groups"] == "2":
        groups, C, K = 2, 2 * int(r.integers(1, 3)), 2 * int(r.integers(1, 3))
    else:
        C = int(r.integers(2, 4))
        groups, K = C, C * int(r.integers(1, 3))
    padding = case["padding"]
    if padding == "int":
        padding = int(r.integers(1, 3))
    elif padding == "tuple":
        padding = tuple(int(r.integers(0, 3)) for _ in range(nd))
    elif padding == "pairs":
        padding = tuple((int(r.integers(0, 3)), int(r.integers(0, 3))) for _ in range(nd))
    base = {1: (5, 11), 2: (4, 8), 3: (3, 6)}[nd]
    size = []
    for ax in range(nd):
        L = max(int(r.integers(*base)), d3[ax] * (k[ax] - 1) + 1)
        if padding == "same":
            lo, hi = naive.resolve_padding("same", (L,), (k[ax],), (s3[ax],), (d3[ax],))
        else:
            lo, hi = naive.resolve_padding(padding, (L,) * nd, k, s3, d3)
            lo, hi = (lo[ax],), (hi[ax],)
        size.append(max(L, lo[0] + 1, hi[0] + 1))
    size = tuple(size)
    N = int(r.integers(1, 3))
    lead = (N,) if case["batched"] else ()
    x = r.standard_normal(lead + (C,) + size).astype(dtype)
    w = r.standard_normal((K, C // groups) + k).astype(dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    lo, hi = naive.resolve_padding(padding, size, k, s3, d3)
    out = naive.conv_output_shape(size, k, s3, d3, lo, hi)
    gy = r.standard_normal(lead + (K,) + out).astype(dtype)
    return x, w, gy, kw


def ref_grads(x, w, gy, kw, mode):
    """(gx, gw, gb) and their magnitudes (same sums over |terms|)."""
    nd = w.ndim - 2
    gx = naive.conv_input(x.shape, w, gy, padding_mode=mode, **kw)
    gw = naive.conv_weight(x, w.shape, gy, padding_mode=mode, **kw)
    gb = naive.conv_bias(gy, nd)
    mx = naive.conv_input(x.shape, np.abs(w), np.abs(gy), padding_mode=mode, **kw)
    mw = naive.conv_weight(np.abs(x), w.shape, np.abs(gy), padding_mode=mode, **kw)
    mb = naive.conv_bias(np.abs(gy), nd)
    return (gx, gw, gb), (mx, mw, mb)


# ---------------------------------------------------------------------------
# the product against the reference
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_backward_vs_reference(case):
    x, w, gy, kw = build_problem(case, case_seed(case))
    nd, mode = case["nd"], case["mode"]
    snap = (x.copy(), w.copy(), gy.copy())
    gx, gw, gb = fn("conv{nd}d_backward", nd)(gy, x, w, padding_mode=mode, **kw)
    refs, mags = ref_grads(x, w, gy, kw, mode)
    for name, got, ref, mag in zip(("input", "weight", "bias"), (gx, gw, gb), refs, mags):
        assert got.dtype == x.dtype, name
        assert_close(got, ref, magnitude=mag, err_msg=f"grad {name}: {case} {kw}")
    # the single-gradient functions agree bit for bit
    gx1 = fn("conv{nd}d_input", nd)(x.shape, w, gy, padding_mode=mode, **kw)
    gw1 = fn("conv{nd}d_weight", nd)(x, w.shape, gy, padding_mode=mode, **kw)
    np.testing.assert_array_equal(gx1, gx)
    np.testing.assert_array_equal(gw1, gw)
    for before, after in zip(snap, (x, w, gy)):
        np.testing.assert_array_equal(before, after)


# ---------------------------------------------------------------------------
# PyTorch autograd
# ---------------------------------------------------------------------------

def _torch_conv_grads(torch, F, x, w, gy, kw, mode):
    """Autograd of F.pad(mode) + F.conv (padding resolved by the reference)."""
    nd = w.ndim - 2
    unb = x.ndim == nd + 1
    xb, gyb = (x[None], gy[None]) if unb else (x, gy)
    s3, d3 = naive._tup(kw["stride"], nd), naive._tup(kw["dilation"], nd)
    lo, hi = naive.resolve_padding(kw["padding"], xb.shape[2:], w.shape[2:], s3, d3)
    tpad = [v for a, c in zip(reversed(lo), reversed(hi)) for v in (a, c)]
    tx = to_torch(torch, xb.astype(np.float64)).requires_grad_(True)
    tw = to_torch(torch, w.astype(np.float64)).requires_grad_(True)
    tb = torch.zeros(w.shape[0], dtype=torch.float64, requires_grad=True)
    xp = F.pad(tx, tpad, mode="constant" if mode == "zeros" else mode)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    y = conv(xp, tw, tb, stride=s3, dilation=d3, groups=kw["groups"])
    y.backward(to_torch(torch, gyb.astype(np.float64)))
    gx = tx.grad.numpy()
    return (gx[0] if unb else gx), tw.grad.numpy(), tb.grad.numpy()


TORCH_CASES = [c for c in CASES if c["mode"] != "symmetric"][:80]


@pytest.mark.parametrize("case", TORCH_CASES, ids=[case_id(c) for c in TORCH_CASES])
def test_backward_vs_torch_autograd(case, torch, F):
    x, w, gy, kw = build_problem(case, case_seed(case))
    nd, mode = case["nd"], case["mode"]
    got = fn("conv{nd}d_backward", nd)(gy, x, w, padding_mode=mode, **kw)
    ref = _torch_conv_grads(torch, F, x, w, gy, kw, mode)
    _, mags = ref_grads(x, w, gy, kw, mode)
    for name, g, r, m in zip(("input", "weight", "bias"), got, ref, mags):
        assert_close(g, r, magnitude=m, err_msg=f"grad {name}")


NN_GRAD = [
    # nd, N, C, K, size, k, stride, padding, dilation, groups
    (1, 2, 4, 6, (11,), (3,), 2, 1, 1, 2),
    (1, 1, 3, 2, (9,), (4,), 3, 2, 2, 1),
    (2, 2, 2, 4, (7, 6), (3, 2), (2, 1), (1, 0), (1, 2), 1),
    (2, 1, 3, 6, (8, 8), (3, 3), 2, 1, 1, 3),
    (3, 2, 2, 2, (5, 4, 6), (3, 2, 3), (1, 2, 2), (1, 0, 1), 1, 1),
    (3, 1, 4, 4, (6, 5, 5), (2, 3, 2), 2, 0, (2, 1, 1), 2),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", NN_GRAD)
def test_torch_nn_grad(case, dtype, rng, torch):
    """conv*d_input / conv*d_weight are argument-compatible with torch.nn.grad."""
    nd, N, C, K, size, k, s, p, d, g = case
    x = random_array(rng, (N, C) + size, dtype)
    w = random_array(rng, (K, C // g) + k, dtype)
    s3, d3, p3 = naive._tup(s, nd), naive._tup(d, nd), naive._tup(p, nd)
    out = naive.conv_output_shape(size, k, s3, d3, p3, p3)
    gy = random_array(rng, (N, K) + out, dtype)
    tgrad = torch.nn.grad
    t_in = getattr(tgrad, f"conv{nd}d_input")
    t_w = getattr(tgrad, f"conv{nd}d_weight")
    x64, w64, gy64 = (to_torch(torch, a.astype(np.float64)) for a in (x, w, gy))
    ref_x = t_in(x.shape, w64, gy64, s, p, d, g).numpy()
    ref_w = t_w(x64, w.shape, gy64, s, p, d, g).numpy()
    got_x = fn("conv{nd}d_input", nd)(x.shape, w, gy, s, p, d, g)
    got_w = fn("conv{nd}d_weight", nd)(x, w.shape, gy, s, p, d, g)
    kw = dict(stride=s, padding=p, dilation=d, groups=g)
    _, (mx, mw, _) = ref_grads(x, w, gy, kw, "zeros")
    assert got_x.dtype == dtype and got_w.dtype == dtype
    assert_close(got_x, ref_x, magnitude=mx)
    assert_close(got_w, ref_w, magnitude=mw)
    # torch.Size and lists are fine as sizes
    np.testing.assert_array_equal(
        fn("conv{nd}d_input", nd)(torch.Size(x.shape), w, gy, s, p, d, g), got_x)
    np.testing.assert_array_equal(
        fn("conv{nd}d_weight", nd)(x, list(w.shape), gy, s, p, d, g), got_w)


# ---------------------------------------------------------------------------
# transposed convolution gradients
# ---------------------------------------------------------------------------

TRANSPOSE = [
    # nd, N, Cin, Cout, size, k, stride, padding, output_padding, groups, dilation
    (1, 2, 4, 6, (6,), (3,), 2, 1, 1, 2, 1),
    (1, 1, 3, 2, (5,), (4,), 3, 2, 2, 1, 2),
    (2, 2, 2, 3, (4, 5), (3, 2), (2, 1), (1, 0), (1, 0), 1, 1),
    (2, 1, 3, 3, (4, 4), (3, 3), 2, 1, 0, 3, (1, 2)),
    (3, 2, 2, 4, (3, 3, 4), (3, 2, 3), (2, 1, 2), (1, 0, 1), (1, 0, 0), 2, 1),
    (3, 1, 2, 2, (3, 4, 3), (2, 3, 2), (1, 2, 1), 0, (0, 1, 1), 1, (2, 1, 2)),
]


def crop_to(y, shape):
    """The leading ``shape`` block of ``y``.

    With output_padding >= stride (allowed while < dilation) the convolution
    of a transposed output has more positions than the transposed input; the
    transposed op is the adjoint of the convolution restricted to the first
    ones.
    """
    assert y.ndim == len(shape) and y.shape[:2] == tuple(shape[:2]), (y.shape, shape)
    assert all(a >= b for a, b in zip(y.shape, shape)), (y.shape, shape)
    return y[tuple(slice(0, n) for n in shape)]


def _transpose_problem(case, rng, dtype=np.float64):
    nd, N, Cin, Cout, size, k, s, p, op, g, d = case
    x = random_array(rng, (N, Cin) + size, dtype)
    w = random_array(rng, (Cin, Cout // g) + k, dtype)
    kw = dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)
    y = naive.conv_transpose(x, w, **kw)
    gy = random_array(rng, y.shape, dtype)
    return x, w, gy, kw


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", TRANSPOSE)
def test_transpose_backward_vs_torch(case, dtype, rng, torch, F):
    nd = case[0]
    x, w, gy, kw = _transpose_problem(case, rng, dtype)
    tx = to_torch(torch, x.astype(np.float64)).requires_grad_(True)
    tw = to_torch(torch, w.astype(np.float64)).requires_grad_(True)
    tb = torch.zeros(w.shape[1] * kw["groups"], dtype=torch.float64, requires_grad=True)
    conv_t = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[nd]
    y = conv_t(tx, tw, tb, **kw)
    assert tuple(y.shape) == gy.shape
    y.backward(to_torch(torch, gy.astype(np.float64)))
    gx, gw, gb = fn("conv_transpose{nd}d_backward", nd)(gy, x, w, **kw)
    # magnitudes: the transposed op's input gradient is a forward convolution
    ckw = dict(stride=kw["stride"], padding=kw["padding"], dilation=kw["dilation"],
               groups=kw["groups"])
    mx = crop_to(naive.conv(np.abs(gy), np.abs(w), **ckw), x.shape)
    mw = naive.conv_weight(np.abs(gy), w.shape, np.abs(x), **ckw)
    for name, got, ref, mag in (("input", gx, tx.grad.numpy(), mx),
                                ("weight", gw, tw.grad.numpy(), mw),
                                ("bias", gb, tb.grad.numpy(), None)):
        assert got.dtype == dtype, name
        assert_close(got, ref, magnitude=mag, err_msg=f"grad {name}")


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular", "symmetric"])
@pytest.mark.parametrize("case", TRANSPOSE[::2])
def test_transpose_backward_modes(case, mode, rng):
    """The transposed op T = A^T (A: conv with the mode), so dT/dx is A and
    dT/dw is the conv weight gradient with x and grad_output swapped."""
    nd = case[0]
    x, w, gy, kw = _transpose_problem(case, rng)
    ckw = dict(stride=kw["stride"], padding=kw["padding"], dilation=kw["dilation"],
               groups=kw["groups"])
    gx, gw, gb = fn("conv_transpose{nd}d_backward", nd)(gy, x, w, padding_mode=mode, **kw)
    assert_close(gx, crop_to(naive.conv(gy, w, padding_mode=mode, **ckw), x.shape),
                 magnitude=crop_to(naive.conv(np.abs(gy), np.abs(w), padding_mode=mode, **ckw),
                                   x.shape))
    assert_close(gw, naive.conv_weight(gy, w.shape, x, padding_mode=mode, **ckw),
                 magnitude=naive.conv_weight(np.abs(gy), w.shape, np.abs(x),
                                             padding_mode=mode, **ckw))
    assert_close(gb, naive.conv_bias(gy, nd))
    # finite differences of L = <T(x, w), gy> along random directions
    T = fn("conv_transpose{nd}d", nd)
    for arg, grad in ((0, gx), (1, gw)):
        v = random_array(rng, (x, w)[arg].shape)
        eps = 1e-3
        args_p = [x, w]
        args_m = [x, w]
        args_p[arg] = (x, w)[arg] + eps * v
        args_m[arg] = (x, w)[arg] - eps * v
        fd = (np.vdot(T(*args_p, padding_mode=mode, **kw), gy)
              - np.vdot(T(*args_m, padding_mode=mode, **kw), gy)) / (2 * eps)
        assert abs(fd - np.vdot(grad, v)) <= 1e-8 * (1 + abs(fd)), (arg, fd, np.vdot(grad, v))


# ---------------------------------------------------------------------------
# finite differences (float64, tiny shapes)
# ---------------------------------------------------------------------------

FD_CASES = [
    # nd, x shape, w shape, kwargs
    (1, (2, 2, 6), (3, 2, 3), dict(stride=2, padding=(2,), dilation=1, groups=1)),
    (1, (1, 2, 7), (2, 1, 2), dict(stride=1, padding="same", dilation=2, groups=2)),
    (2, (1, 2, 4, 5), (2, 2, 2, 3), dict(stride=(1, 2), padding=((1, 2), (2, 0)), dilation=1,
                                         groups=1)),
    (3, (1, 1, 3, 4, 3), (2, 1, 2, 2, 3), dict(stride=1, padding=1, dilation=(1, 2, 1),
                                               groups=1)),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", FD_CASES)
def test_finite_differences(case, mode, rng):
    """Elementwise central differences of L = 0.5*|y|^2 + <y, c>.

    L is quadratic, so central differences are exact up to rounding."""
    nd, xs, ws, kw = case
    conv = fn("conv{nd}d", nd)
    x = random_array(rng, xs)
    w = random_array(rng, ws)
    b = random_array(rng, (ws[0],))
    y = conv(x, w, b, padding_mode=mode, **kw)
    c = random_array(rng, y.shape)

    def loss(x_, w_, b_):
        y_ = conv(x_, w_, b_, padding_mode=mode, **kw)
        return 0.5 * np.sum(y_ * y_) + np.sum(y_ * c)

    gy = y + c
    gx, gw, gb = fn("conv{nd}d_backward", nd)(gy, x, w, padding_mode=mode, **kw)
    eps = 1e-4
    for arr, grad in ((x, gx), (w, gw), (b, gb)):
        fd = np.zeros_like(arr)
        for idx in itertools.product(*(range(n) for n in arr.shape)):
            old = arr[idx]
            arr[idx] = old + eps
            lp = loss(x, w, b)
            arr[idx] = old - eps
            lm = loss(x, w, b)
            arr[idx] = old
            fd[idx] = (lp - lm) / (2 * eps)
        scale = np.abs(gy).sum() * (np.abs(x).max() + np.abs(w).max() + 1)
        np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-9 * scale)


# ---------------------------------------------------------------------------
# adjoint identity, to 1e-12 in float64
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", [c for c in CASES if c["dtype"] == "float64"],
                         ids=[case_id(c) for c in CASES if c["dtype"] == "float64"])
def test_adjoint_identity(case):
    x, w, gy, kw = build_problem(case, case_seed(case) + 5)
    nd, mode = case["nd"], case["mode"]
    y = fn("conv{nd}d", nd)(x, w, padding_mode=mode, **kw)
    gx = fn("conv{nd}d_input", nd)(x.shape, w, gy, padding_mode=mode, **kw)
    gw = fn("conv{nd}d_weight", nd)(x, w.shape, gy, padding_mode=mode, **kw)
    lhs = np.vdot(y, gy)
    scale = np.vdot(naive.conv(np.abs(x), np.abs(w), padding_mode=mode, **kw), np.abs(gy))
    assert abs(lhs - np.vdot(x, gx)) <= 1e-12 * scale
    assert abs(lhs - np.vdot(w, gw)) <= 1e-12 * scale


@pytest.mark.parametrize("case", TRANSPOSE)
@pytest.mark.parametrize("mode", MODES)
def test_transpose_adjoint_identity(case, mode, rng):
    """<conv_transpose(x), g> == <x, conv(g)> for every padding mode."""
    nd = case[0]
    x, w, gy, kw = _transpose_problem(case, rng)
    ckw = dict(stride=kw["stride"], padding=kw["padding"], dilation=kw["dilation"],
               groups=kw["groups"])
    try:
        t = fn("conv_transpose{nd}d", nd)(x, w, padding_mode=mode, **kw)
    except ValueError:
        pytest.skip("mode cannot pad this size")
    y = crop_to(fn("conv{nd}d", nd)(gy, w, padding_mode=mode, **ckw), x.shape)
    scale = np.vdot(np.abs(t), np.abs(gy)) + np.vdot(np.abs(x), np.abs(y))
    assert abs(np.vdot(t, gy) - np.vdot(x, y)) <= 1e-12 * scale


# ---------------------------------------------------------------------------
# output_mask
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("mask", list(itertools.product([False, True], repeat=3)))
def test_output_mask(mask, transposed, rng):
    if transposed:
        x, w, gy, kw = _transpose_problem(TRANSPOSE[2], rng)
        f = numbaconv.conv_transpose2d_backward
    else:
        x = random_array(rng, (2, 3, 6, 5))
        w = random_array(rng, (4, 3, 3, 2))
        kw = dict(stride=1, padding=1, dilation=1, groups=1)
        gy = random_array(rng, (2, 4, 6, 6))
        f = numbaconv.conv2d_backward
    full = f(gy, x, w, **kw)
    got = f(gy, x, w, output_mask=mask, **kw)
    assert isinstance(got, tuple) and len(got) == 3
    for m, g, ref in zip(mask, got, full):
        if m:
            np.testing.assert_array_equal(g, ref)
        else:
            assert g is None
    # lists and numpy bools are masks too
    got = f(gy, x, w, output_mask=[bool(m) for m in np.array(mask)], **kw)
    assert [g is None for g in got] == [not m for m in mask]


# ---------------------------------------------------------------------------
# grad_output shape and other bad input
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("nd", [1, 2, 3])
def test_grad_output_wrong_shape(nd):
    x = np.zeros((2, 3) + (6,) * nd)
    w = np.zeros((4, 3) + (3,) * nd)
    expected = str((2, 4) + (4,) * nd)
    for bad in ((2, 4) + (5,) * nd, (2, 5) + (4,) * nd, (4,) + (4,) * nd):
        gy_bad = np.zeros(bad)
        for call in (lambda: fn("conv{nd}d_input", nd)(x.shape, w, gy_bad),
                     lambda: fn("conv{nd}d_weight", nd)(x, w.shape, gy_bad),
                     lambda: fn("conv{nd}d_backward", nd)(gy_bad, x, w)):
            with pytest.raises(ValueError, match="grad_output") as exc:
                call()
            assert expected in str(exc.value), str(exc.value)
    wt = np.zeros((3, 2) + (3,) * nd)
    expected_t = str((2, 2) + (8,) * nd)
    with pytest.raises(ValueError, match="grad_output") as exc:
        fn("conv_transpose{nd}d_backward", nd)(np.zeros((2, 2) + (7,) * nd), x, wt)
    assert expected_t in str(exc.value), str(exc.value)


def test_grad_bad_arguments():
    x = np.zeros((2, 3, 6, 6))
    w = np.zeros((4, 3, 3, 3))
    gy = np.zeros((2, 4, 4, 4))
    with pytest.raises(ValueError, match="channels"):
        numbaconv.conv2d_input((2, 5, 6, 6), w, gy)
    with pytest.raises(ValueError, match="weight"):
        numbaconv.conv2d_weight(x, (4, 3, 3), gy)
    with pytest.raises(ValueError, match="output_mask"):
        numbaconv.conv2d_backward(gy, x, w, output_mask=(True, True))
    with pytest.raises(TypeError, match="grad_output"):
        numbaconv.conv2d_backward(gy.astype(np.float32), x, w)
    with pytest.raises(TypeError, match="grad_output|weight"):
        numbaconv.conv2d_input(x.shape, w, gy.astype(np.int64))
    with pytest.raises(ValueError, match="padding_mode"):
        numbaconv.conv2d_input(x.shape, w, gy, padding_mode="mirror")
    with pytest.raises(ValueError, match="device"):
        numbaconv.conv2d_backward(gy, x, w, device="tpu")


def test_unbatched_and_empty(rng):
    x = random_array(rng, (3, 7))
    w = random_array(rng, (2, 3, 3))
    gy = random_array(rng, (2, 5))
    gx, gw, gb = numbaconv.conv1d_backward(gy, x, w)
    rx, rw, rb = numbaconv.conv1d_backward(gy[None], x[None], w)
    np.testing.assert_array_equal(gx, rx[0])
    np.testing.assert_array_equal(gw, rw)
    np.testing.assert_array_equal(gb, rb)
    assert gx.shape == (3, 7)
    np.testing.assert_array_equal(numbaconv.conv1d_input((3, 7), w, gy), gx)
    # empty batch: zero gradients of the right shapes
    gx, gw, gb = numbaconv.conv1d_backward(np.zeros((0, 2, 5)), np.zeros((0, 3, 7)), w)
    assert gx.shape == (0, 3, 7)
    np.testing.assert_array_equal(gw, np.zeros_like(w))
    np.testing.assert_array_equal(gb, np.zeros(2))


def test_layouts(rng):
    x = random_array(rng, (2, 4, 6, 5))
    w = random_array(rng, (4, 2, 3, 3))
    gy = random_array(rng, (2, 4, 3, 5))
    kw = dict(stride=(2, 1), padding=1, groups=2)
    expect = numbaconv.conv2d_backward(gy, x, w, padding_mode="reflect", **kw)
    ro = gy.copy()
    ro.flags.writeable = False
    for xv, wv, gv in ((np.asfortranarray(x), np.asfortranarray(w), np.asfortranarray(gy)),
                       (x[..., ::-1][..., ::-1], w[:, ::-1][:, ::-1], ro),
                       (np.repeat(x, 2, -1)[..., ::2], w, np.repeat(gy, 3, 0)[::3])):
        got = numbaconv.conv2d_backward(gv, xv, wv, padding_mode="reflect", **kw)
        for a, b in zip(got, expect):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------
# determinism: bit-identical whatever the thread count
# ---------------------------------------------------------------------------

def test_bit_identical_across_thread_counts(rng):
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs at least 2 Numba threads")
    x = random_array(rng, (3, 6, 10, 9, 8))
    w = random_array(rng, (8, 3, 3, 3, 3))
    b = random_array(rng, (8,))
    xt = random_array(rng, (2, 6, 5, 4, 4))
    wt = random_array(rng, (6, 4, 3, 2, 3))
    kw = dict(stride=(1, 2, 1), padding=1, groups=2)

    def run():
        res = []
        for mode in ("zeros", "reflect", "symmetric"):
            y = numbaconv.conv3d(x, w, b, padding_mode=mode, **kw)
            res.append(y)
            res.extend(numbaconv.conv3d_backward(y, x, w, padding_mode=mode, **kw))
            t = numbaconv.conv_transpose3d(xt, wt, stride=2, padding=1, output_padding=1,
                                           groups=2, padding_mode=mode)
            res.append(t)
            res.extend(numbaconv.conv_transpose3d_backward(
                t, xt, wt, stride=2, padding=1, output_padding=1, groups=2,
                padding_mode=mode))
        res.append(numbaconv.conv3d(x.astype(np.float32), w.astype(np.float32), **kw))
        res.extend(numbaconv.conv3d_backward(res[-1], x.astype(np.float32),
                                             w.astype(np.float32), **kw))
        return res

    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run()
        numba.set_num_threads(2)
        two = run()
    finally:
        numba.set_num_threads(before)
    assert len(one) == len(two)
    for i, (a, c) in enumerate(zip(one, two)):
        assert a.dtype == c.dtype
        np.testing.assert_array_equal(a, c, err_msg=f"result {i} depends on the thread count")
    # and run to run
    again = run()
    for a, c in zip(one, again):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("mode", MODES[1:])
def test_tiny_axes_gradients(mode, rng):
    """pad_backward on axes of size 1, 2 and 3 with every padding they allow."""
    for size in (1, 2, 3):
        max_pad = size - 1 if mode == "reflect" else (size if mode in ("circular", "symmetric")
                                                       else size + 2)
        for lo in range(max_pad + 1):
            for hi in range(max_pad + 1):
                pad = ((lo, hi), (1, 1), (hi, lo))
                x = random_array(rng, (1, 2, size, 3, size))
                w = random_array(rng, (2, 2, 1, 2, 1))
                kw = dict(padding=pad)
                gy = random_array(rng, (1, 2, size + lo + hi, 4, size + lo + hi))
                gx, gw, _ = numbaconv.conv3d_backward(gy, x, w, padding_mode=mode, **kw)
                assert_close(gx, naive.conv_input(x.shape, w, gy, padding_mode=mode, **kw),
                             err_msg=f"size={size} pad={pad}")
                assert_close(gw, naive.conv_weight(x, w.shape, gy, padding_mode=mode, **kw),
                             err_msg=f"size={size} pad={pad}")


MEDIUM = [
    ((1, 6, 70, 80), (7, 6, 3, 3), dict(padding="same")),
    ((2, 5, 61, 90), (6, 5, 3, 2), dict(padding=((2, 1), (0, 3)), dilation=(2, 3))),
    ((2, 6, 3, 40, 110), (10, 3, 2, 3, 3), dict(stride=(2, 1, 1), padding=1, groups=2)),
    ((2, 6, 3000), (5, 6, 5), dict(padding=2, stride=2)),
    ((1, 5, 33, 65), (9, 5, 4, 3), dict(stride=(2, 3), padding=(1, 2))),
    ((1, 256, 5, 6, 5), (3, 256, 3, 3, 3), dict(padding=1)),  # long reductions
]


@pytest.mark.parametrize("mode", ["zeros", "circular"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", MEDIUM)
def test_medium_sizes(case, dtype, mode, rng):
    xs, ws, kw = case
    nd = len(ws) - 2
    full = dict(stride=1, padding=0, dilation=1, groups=1)
    full.update(kw)
    x = random_array(rng, xs, dtype)
    w = random_array(rng, ws, dtype)
    y = naive.conv(x, w, padding_mode=mode, **full)
    gy = random_array(rng, y.shape, dtype)
    got = fn("conv{nd}d_backward", nd)(gy, x, w, padding_mode=mode, **full)
    refs, mags = ref_grads(x, w, gy, full, mode)
    for name, g, r, m in zip(("input", "weight", "bias"), got, refs, mags):
        assert g.dtype == dtype
        assert_close(g, r, magnitude=m, err_msg=f"grad {name}")


def test_weight_gradient_over_padding_only(rng):
    """An input of width 0 padded to 2: the weight gradient sums nothing but zeros."""
    for _ in range(2):
        gw = numbaconv.conv1d_weight(np.zeros((1, 2, 0)), (3, 2, 1), random_array(rng, (1, 3, 2)),
                                     padding=1)
        np.testing.assert_array_equal(gw, np.zeros((3, 2, 1)))
    gx = numbaconv.conv1d_input((1, 0, 5), np.zeros((2, 0, 3)), random_array(rng, (1, 2, 3)))
    assert gx.shape == (1, 0, 5)
