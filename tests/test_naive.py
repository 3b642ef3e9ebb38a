"""The reference in tests/naive.py, checked against PyTorch and against itself.

If these fail, every other comparison in the suite is meaningless.
"""

from __future__ import annotations

import numpy as np
import pytest

import naive
from conftest import assert_close, random_array, to_torch

# (nd, N, C, K, size, kernel, stride, dilation, padding, groups)
CASES = [
    (1, 2, 3, 4, (11,), (3,), (1,), (1,), (1,), 1),
    (1, 1, 4, 6, (10,), (4,), (2,), (2,), (3,), 2),
    (2, 2, 2, 3, (7, 8), (3, 2), (1, 2), (1, 1), (1, 0), 1),
    (2, 1, 4, 8, (9, 6), (3, 3), (2, 1), (2, 1), (2, 1), 4),
    (3, 2, 2, 2, (5, 6, 4), (3, 2, 3), (1, 2, 1), (1, 1, 2), (1, 0, 2), 1),
    (3, 1, 6, 4, (6, 5, 7), (2, 3, 1), (2, 1, 3), (2, 1, 1), (0, 1, 0), 2),
]


def _torch_conv(F, nd):
    return {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]


def _torch_convt(F, nd):
    return {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[nd]


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_torch(case, rng, torch, F):
    nd, N, C, K, size, k, s, d, p, g = case
    x = random_array(rng, (N, C) + size)
    w = random_array(rng, (K, C // g) + k)
    b = random_array(rng, (K,))
    ref = _torch_conv(F, nd)(to_torch(torch, x), to_torch(torch, w), to_torch(torch, b),
                             stride=s, padding=p, dilation=d, groups=g).numpy()
    got = naive.conv_forward(x, w, b, s, d, p, p, g)
    assert_close(got, ref)
    # the public-level helper agrees with the canonical one
    assert_close(naive.conv(x, w, b, stride=s, padding=p, dilation=d, groups=g), ref)


@pytest.mark.parametrize("case", CASES)
def test_backward_matches_torch(case, rng, torch, F):
    nd, N, C, K, size, k, s, d, p, g = case
    x = random_array(rng, (N, C) + size)
    w = random_array(rng, (K, C // g) + k)
    tx = to_torch(torch, x).requires_grad_(True)
    tw = to_torch(torch, w).requires_grad_(True)
    y = _torch_conv(F, nd)(tx, tw, stride=s, padding=p, dilation=d, groups=g)
    gy = random_array(rng, tuple(y.shape))
    y.backward(to_torch(torch, gy))
    gx = naive.conv_backward_data(gy, w, x.shape, s, d, p, g)
    gw = naive.conv_backward_weight(x, gy, w.shape, s, d, p, g)
    assert_close(gx, tx.grad.numpy())
    assert_close(gw, tw.grad.numpy())
    assert_close(naive.conv_bias(gy, nd), gy.sum(axis=(0,) + tuple(range(2, 2 + nd))))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("op", [0, 1])
def test_transpose_matches_torch(case, op, rng, torch, F):
    nd, N, C, K, size, k, s, d, p, g = case
    op = tuple(min(op, max(si, di) - 1) for si, di in zip(s, d))
    x = random_array(rng, (N, K) + size)
    w = random_array(rng, (K, C // g) + k)
    b = random_array(rng, (C,))
    ref = _torch_convt(F, nd)(to_torch(torch, x), to_torch(torch, w), to_torch(torch, b),
                              stride=s, padding=p, output_padding=op, groups=g,
                              dilation=d).numpy()
    got = naive.conv_transpose(x, w, b, stride=s, padding=p, output_padding=op,
                               groups=g, dilation=d)
    assert_close(got, ref)


@pytest.mark.parametrize("case", CASES)
def test_transpose_is_backward_data(case, rng):
    """Scatter-form transpose == gather-form data gradient (independent code)."""
    nd, N, C, K, size, k, s, d, p, g = case
    x = random_array(rng, (N, C) + size)
    w = random_array(rng, (K, C // g) + k)
    out = naive.conv_output_shape(size, k, s, d, p, p)
    gy = random_array(rng, (N, K) + out)
    gx = naive.conv_backward_data(gy, w, x.shape, s, d, p, g)
    # output_padding recovers the input positions the floor division dropped
    full = naive.transpose_output_shape(out, k, s, d, p, p, (0,) * nd)
    op = tuple(L - f for L, f in zip(size, full))
    assert all(o >= 0 for o in op)
    gt = naive.conv_transpose(gy, w, stride=s, padding=p, output_padding=op,
                              groups=g, dilation=d)
    assert_close(gt, gx)


def test_asymmetric_padding_matches_torch_pad(rng, torch, F):
    x = random_array(rng, (2, 3, 6, 7))
    w = random_array(rng, (2, 3, 3, 2))
    lo, hi = (2, 0), (1, 3)
    xp = F.pad(to_torch(torch, x), (lo[1], hi[1], lo[0], hi[0]))
    ref = F.conv2d(xp, to_torch(torch, w), stride=(2, 1)).numpy()
    assert_close(naive.conv_forward(x, w, None, (2, 1), (1, 1), lo, hi, 1), ref)
    assert_close(naive.conv(x, w, stride=(2, 1), padding=((2, 1), (0, 3))), ref)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_pad_matches_torch(mode, nd, rng, torch, F):
    size = (5, 4, 6)[:nd]
    x = random_array(rng, (2, 3) + size)
    lo, hi = (1, 3, 2)[:nd], (2, 0, 3)[:nd]
    tpad = []
    for a, b in zip(reversed(lo), reversed(hi)):
        tpad += [a, b]
    ref = F.pad(to_torch(torch, x), tpad, mode=mode).numpy()
    np.testing.assert_array_equal(naive.pad(x, lo, hi, mode), ref)


def test_pad_index_maps_match_backend():
    """np.pad's modes are the index maps the kernels are specified by."""
    from numbaconv._backend import MODES, padding_index
    for mode, code in MODES.items():
        for size in (1, 2, 3, 5):
            max_pad = {"reflect": size - 1, "circular": size}.get(mode, 2 * size + 1)
            for p in range(0, max_pad + 1):
                got = naive.pad(np.arange(size), (p,), (p,), mode)
                want = [padding_index(j, size, code) for j in range(-p, size + p)]
                np.testing.assert_array_equal(got, want, err_msg=f"{mode} size={size} pad={p}")


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular", "symmetric"])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_pad_adjoint_identity(mode, nd, rng):
    """<pad(x), g> == <x, pad_backward(g)> for every mode."""
    size = (4, 3, 5)[:nd]
    lo, hi = (2, 1, 3)[:nd], (3, 2, 0)[:nd]
    if mode == "reflect":
        lo = tuple(min(a, L - 1) for a, L in zip(lo, size))
        hi = tuple(min(a, L - 1) for a, L in zip(hi, size))
    x = random_array(rng, (2, 3) + size)
    xp = naive.pad(x, lo, hi, mode)
    g = random_array(rng, xp.shape)
    gx = naive.pad_backward(g, lo, hi, mode, x.shape)
    assert gx.shape == x.shape
    lhs = float(np.sum(xp * g))
    rhs = float(np.sum(x * gx))
    assert abs(lhs - rhs) <= 1e-12 * float(np.sum(np.abs(xp * g)))
    # pad_backward sums exactly the gradient mass (nothing lost) unless zeros
    if mode != "zeros":
        assert_close(gx.sum(), g.sum(), magnitude=np.abs(g).sum())


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_pad_backward_matches_torch(mode, rng, torch, F):
    x = random_array(rng, (1, 2, 5, 4))
    tx = to_torch(torch, x).requires_grad_(True)
    y = F.pad(tx, (1, 3, 2, 1), mode=mode)
    g = random_array(rng, tuple(y.shape))
    y.backward(to_torch(torch, g))
    assert_close(naive.pad_backward(g, (2, 1), (1, 3), mode, x.shape), tx.grad.numpy())


def test_same_padding_rule():
    # stride 1: total = d*(k-1), extra element at the end
    assert naive.resolve_padding("same", (10,), (4,), (1,), (1,)) == ((1,), (2,))
    assert naive.resolve_padding("same", (10,), (3,), (1,), (2,)) == ((2,), (2,))
    # JAX rule at stride 2: out = ceil(10/2) = 5, total = 4*2 + 3 - 10 = 1
    assert naive.resolve_padding("same", (10,), (3,), (2,), (1,)) == ((0,), (1,))
    # total clipped at zero
    assert naive.resolve_padding("same", (9,), (1,), (3,), (1,)) == ((0,), (0,))
    for L in range(1, 12):
        for k in (1, 2, 3, 4):
            for s in (1, 2, 3):
                lo, hi = naive.resolve_padding("same", (L,), (k,), (s,), (1,))
                out = naive.conv_output_shape((L,), (k,), (s,), (1,), lo, hi)
                assert out == (-(-L // s),)


def test_unbatched(rng):
    x = random_array(rng, (3, 7, 6))
    w = random_array(rng, (2, 3, 3, 3))
    assert_close(naive.conv(x, w, padding=1), naive.conv(x[None], w, padding=1)[0])
    wt = random_array(rng, (3, 2, 3, 3))
    assert_close(naive.conv_transpose(x, wt, stride=2),
                 naive.conv_transpose(x[None], wt, stride=2)[0])
