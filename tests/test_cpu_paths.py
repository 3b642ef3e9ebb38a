"""The CPU kernels' internal paths, each forced by its shape, against the
reference: cache-sized row blocks, reading the input in place (one kernel
column, no width padding), the three-tap and single-tap channel blocks, the
polyphase adjoint at stride 2, the general strided loops, the panel and
broadcast paths for many channels and the sub-pixel transposed convolution."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import naive
import numbaconv
from conftest import assert_close

# (kernel, padding, dilation, stride): shapes chosen so that height spans
# several row blocks of the pitched weight gradient (row_blocks splits planes of about 8 KiB).
CASES = [
    ((1, 3, 1), (0, 1, 0), (1, 2, 1), 1),   # in place, except the first block
    ((1, 1, 1), 0, 1, 1),                   # pure channel mixing, in place
    ((2, 5, 1), (1, 2, 0), 1, 1),
    ((1, 4, 1), 0, (1, 3, 1), 1),
    ((3, 3, 3), 1, 1, 1),                   # three-tap blocks
    ((2, 2, 5), (1, 0, 2), (1, 1, 2), 1),   # three taps plus single taps
    ((3, 3, 3), 1, 1, 2),                   # general strided loop
    ((2, 3, 2), (0, 1, 1), (2, 1, 1), (1, 2, 1)),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel,padding,dilation,stride", CASES)
def test_conv3d_paths_and_gradients(kernel, padding, dilation, stride, dtype, rng):
    x = rng.standard_normal((2, 5, 4, 70, 19)).astype(dtype)
    w = rng.standard_normal((6, 5) + kernel).astype(dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    y = numbaconv.conv3d(x, w, **kw)
    assert_close(y, naive.conv(x, w, None, **kw), dtype)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gi, gw, _ = numbaconv.conv3d_backward(gy, x, w, **kw)
    assert_close(gi, naive.conv_input(x.shape, w, gy, **kw), dtype)
    assert_close(gw, naive.conv_weight(x, w.shape, gy, **kw), dtype)


@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, 0), (4, 2, 1), (3, 3, 1),
                                                   (1, 2, 0), ((3, 2, 5), (2, 1, 3), 1)])
def test_conv_transpose3d_polyphase(kernel, stride, padding, rng):
    x = rng.standard_normal((2, 6, 5, 9, 7))
    k = (kernel,) * 3 if isinstance(kernel, int) else kernel
    w = rng.standard_normal((6, 2) + k)
    b = rng.standard_normal(4)
    got = numbaconv.conv_transpose3d(x, w, b, stride=stride, padding=padding, groups=2)
    want = naive.conv_transpose(x, w, b, stride=stride, padding=padding, groups=2)
    assert_close(got, want, np.float64)


# Channel counts that take the panel path (``numbaconv/cpu/panel.py``):
# output channels per group not a multiple of the 4x4 register block, widths
# not a multiple of it either, and every stride/dilation/padding combination.
PANEL_CASES = [
    ((3, 3, 3), 1, 1, 1, 1),
    ((2, 3, 5), (1, 0, 2), (1, 2, 1), 1, 2),
    ((3, 3, 3), 1, 1, 2, 1),
    ((1, 3, 2), (0, 1, 1), (1, 1, 3), (1, 2, 3), 2),
    ((3, 2, 3), "same", (2, 1, 2), 1, 1),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel,padding,dilation,stride,groups", PANEL_CASES)
def test_conv3d_panel_path(kernel, padding, dilation, stride, groups, dtype, rng):
    from numbaconv.cpu.panel import use_panels
    x = rng.standard_normal((2, 12, 5, 9, 13)).astype(dtype)
    w = rng.standard_normal((10, 12 // groups) + kernel).astype(dtype)
    b = rng.standard_normal(10).astype(dtype)
    assert use_panels(w.shape, groups)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y = numbaconv.conv3d(x, w, b, **kw)
    assert_close(y, naive.conv(x, w, b, **kw), dtype)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gi, gw, _ = numbaconv.conv3d_backward(gy, x, w, **kw)
    assert_close(gi, naive.conv_input(x.shape, w, gy, **kw), dtype)
    assert_close(gw, naive.conv_weight(x, w.shape, gy, **kw), dtype)


@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 2), (3, 2)])
def test_conv3d_panel_path_wide_rows(stride, dilation, rng):
    """Rows wider than one gather block, padding at both ends of the row."""
    from numbaconv.cpu.panel import GATHER_BLOCK, use_panels
    W = 2 * GATHER_BLOCK + 11
    x = rng.standard_normal((1, 6, 3, 4, W))
    w = rng.standard_normal((5, 6, 2, 3, 3))
    assert use_panels(w.shape, 1)
    kw = dict(stride=(1, 1, stride), padding=(1, 0, 4), dilation=(1, 1, dilation))
    y = numbaconv.conv3d(x, w, **kw)
    assert_close(y, naive.conv(x, w, None, **kw), np.float64)
    gy = rng.standard_normal(y.shape)
    gw = numbaconv.conv3d_weight(x, w.shape, gy, **kw)
    assert_close(gw, naive.conv_weight(x, w.shape, gy, **kw), np.float64)


def assert_same_nonfinite(got, want):
    """NaN and inf exactly where the reference has them (some NaN), and the
    finite values close."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    assert np.isnan(got).any() and finite.any()
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("K", [4, 16])
def test_conv3d_many_channels_weight_gradient_nonfinite_output_gradient_meets_padding(K, rng):
    """An inf in the output gradient times the zero padding gives NaN in the
    weight gradient of the taps that reach the padding, as in the reference,
    on the panel path (4 channels) and the broadcast path (16)."""
    from numbaconv.cpu.broadcast_grad import GRAD_MIN_CHANNELS, use_broadcast_grad
    from numbaconv.cpu.panel import use_panels
    x = rng.standard_normal((1, 8, 4, 6, 7))
    w_shape = (K, 8, 3, 3, 3)
    assert use_panels(w_shape, 1) and use_broadcast_grad(w_shape, 1) == (K >= GRAD_MIN_CHANNELS)
    gy = rng.standard_normal((1, K, 4, 6, 7))
    gy[0, 1, 0, 0, 0] = np.inf
    got = numbaconv.conv3d_weight(x, w_shape, gy, padding=1)
    with np.errstate(invalid="ignore"):
        want = naive.conv_weight(x, w_shape, gy, padding=1)
    assert_same_nonfinite(got, want)


@pytest.mark.parametrize("K", [4, 8])
def test_conv3d_many_channels_nonfinite_weight_meets_padding(K, rng):
    """inf * (zero padding) = NaN on the border, as in PyTorch and the
    reference, on the panel path (4 channels) and the broadcast path (8)."""
    from numbaconv.cpu.broadcast import BROADCAST_MIN_CHANNELS, use_broadcast
    from numbaconv.cpu.panel import use_panels
    x = rng.standard_normal((1, 8, 4, 6, 7))
    w = rng.standard_normal((K, 8, 3, 3, 3))
    w[K - 3, 2, 0, 1, 2] = np.inf
    assert use_broadcast(w.shape, 1) == (K >= BROADCAST_MIN_CHANNELS) and use_panels(w.shape, 1)
    got = numbaconv.conv3d(x, w, padding=1)
    with np.errstate(invalid="ignore"):
        want = naive.conv(x, w, None, padding=1)
    assert_same_nonfinite(got, want)


def force_flat(monkeypatch, module, flat):
    """Makes ``module`` block the broadcast kernel's outputs row by row
    (``flat=False``) or as one flat run over a task's rows wherever that is
    (``flat=True``, at any stride); None keeps the choice by shape."""
    if flat is not None:
        choose = module.blocking
        def blocking(grid, kshape, stride, *rest):
            rows, _, depth = choose(grid, kshape, stride, *rest)
            return rows, flat, depth
        monkeypatch.setattr(module, "blocking", blocking)


# Strided adjoints whose kernel sizes the strides divide take the sub-pixel
# path (``numbaconv/cpu/subpixel.py``): every phase in one convolution of
# ``gy``, written to its strided place, outputs blocked row by row or flat.
# (kernel, stride, padding, dilation, output_padding, groups)
SUBPIXEL_CASES = [
    (4, 2, 1, 1, 0, 1),                        # the common up-sampling step
    (2, 2, 0, 1, 1, 1),                        # one tap per phase, padded tail
    ((4, 3, 6), (2, 1, 3), (3, 1, 2), (1, 2, 1), (1, 0, 2), 2),
    ((2, 4, 3), (2, 2, 1), (0, 2, 1), 1, 0, 3),
]


@pytest.mark.parametrize("flat", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel,stride,padding,dilation,output_padding,groups",
                         SUBPIXEL_CASES)
def test_conv_transpose3d_subpixel_path(kernel, stride, padding, dilation,
                                        output_padding, groups, dtype, flat, rng,
                                        monkeypatch):
    from numbaconv.cpu import subpixel
    from numbaconv.cpu.subpixel import subpixel_taps
    force_flat(monkeypatch, subpixel, flat)
    if flat:    # the weight copied directly, not gathered by a cached index
        monkeypatch.setattr(subpixel, "GATHER_MAX", 0)
    k = (kernel,) * 3 if isinstance(kernel, int) else kernel
    x = rng.standard_normal((2, 24, 5, 6, 7)).astype(dtype)
    w = rng.standard_normal((24, 3) + k).astype(dtype)
    b = rng.standard_normal(3 * groups).astype(dtype)
    s3 = (stride,) * 3 if isinstance(stride, int) else stride
    d3 = (dilation,) * 3 if isinstance(dilation, int) else dilation
    # The transposed convolution is the adjoint of a forward convolution
    # whose weight is (C_out, C_in / groups, *kernel).
    assert subpixel_taps((24, 3) + k, s3, d3, groups) is not None
    kw = dict(stride=stride, padding=padding, dilation=dilation,
              output_padding=output_padding, groups=groups)
    got = numbaconv.conv_transpose3d(x, w, b, **kw)
    assert_close(got, naive.conv_transpose(x, w, b, **kw), dtype)


@pytest.mark.parametrize("size", [(9, 8, 11), (10, 7, 9)])
def test_conv3d_input_gradient_subpixel_path_uncovered_tail(size, rng):
    """At stride 2 the last input row/column of an odd extent is read by no
    output: its gradient is zero, not left over."""
    from numbaconv.cpu.subpixel import subpixel_taps
    x = rng.standard_normal((1, 8) + size)
    w = rng.standard_normal((16, 8, 2, 2, 4))
    assert subpixel_taps(w.shape, (2, 2, 2), (1, 1, 1), 1) is not None
    kw = dict(stride=2, padding=(0, 0, 1))
    gy = rng.standard_normal(numbaconv.conv3d(x, w, **kw).shape)
    got = numbaconv.conv3d_input(x.shape, w, gy, **kw)
    assert_close(got, naive.conv_input(x.shape, w, gy, **kw), np.float64)


def test_conv_transpose3d_subpixel_path_nonfinite_input(rng):
    """inf in the input of a transposed convolution reaches exactly the
    outputs it touches (inf, or NaN where an inf of opposite sign meets it)."""
    from numbaconv.cpu.subpixel import subpixel_taps
    x = rng.standard_normal((1, 8, 4, 5, 6))
    w = rng.standard_normal((8, 4, 4, 4, 4))
    assert subpixel_taps((4, 8, 4, 4, 4), (2, 2, 2), (1, 1, 1), 1) is not None
    x[0, 3, 1, 2, 3] = np.inf
    x[0, 5, 1, 2, 4] = -np.inf
    got = numbaconv.conv_transpose3d(x, w, stride=2, padding=1)
    with np.errstate(invalid="ignore"):
        want = naive.conv_transpose(x, w, None, stride=2, padding=1)
    assert_same_nonfinite(got, want)


# Eight or more output channels per group take the broadcast path
# (``numbaconv/cpu/broadcast.py``): channel counts not a multiple of its
# eight-channel block, rows longer than one register block (32 float32 or
# 16 float64 outputs) and not a multiple of it, more output rows than one
# task takes, and every stride/dilation/padding combination.
# (kernel, padding, dilation, stride, groups, output channels)
BROADCAST_CASES = [
    ((3, 3, 3), 1, 1, 1, 1, 11),
    ((2, 3, 5), (1, 0, 2), (1, 2, 1), 1, 2, 16),
    ((3, 3, 3), 1, 1, 2, 1, 9),
    ((1, 3, 2), (0, 1, 1), (1, 1, 3), (1, 2, 3), 1, 8),
    ((3, 2, 3), "same", (2, 1, 2), 1, 3, 24),
    ((1, 1, 1), 0, 1, 1, 1, 8),
]


@pytest.mark.parametrize("flat", [None, False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel,padding,dilation,stride,groups,K", BROADCAST_CASES)
def test_conv3d_broadcast_path(kernel, padding, dilation, stride, groups, K, dtype, flat,
                               rng, monkeypatch):
    from numbaconv.cpu import forward
    from numbaconv.cpu.broadcast import MAX_ROWS, use_broadcast
    force_flat(monkeypatch, forward, flat)
    x = rng.standard_normal((2, 6, 3, 2 * MAX_ROWS + 3, 37)).astype(dtype)
    w = rng.standard_normal((K, 6 // groups) + kernel).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    assert use_broadcast(w.shape, groups)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y = numbaconv.conv3d(x, w, b, **kw)
    assert_close(y, naive.conv(x, w, b, **kw), dtype)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gi = numbaconv.conv3d_input(x.shape, w, gy, **kw)
    assert_close(gi, naive.conv_input(x.shape, w, gy, **kw), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv3d_broadcast_flat_task_splits(dtype, rng, monkeypatch):
    """Flat-blocked tasks of one row up to the whole plane (tile budget and
    tasks per thread forced) give the reference and bit-identical results:
    each output's sum does not depend on the split."""
    from numbaconv.cpu import broadcast
    # Rows three outputs long: flat on every target (its blocks are at least
    # six values).
    x = rng.standard_normal((1, 4, 2, 23, 3)).astype(dtype)
    w = rng.standard_normal((9, 4, 2, 3, 3)).astype(dtype)
    assert broadcast.blocking((1, 23, 3), (2, 3, 3), (1, 1, 1), (1, 1, 1), x.itemsize,
                              4, 8, 2) == (23, True, 1)
    results = []
    for tile_bytes, tasks in [(1, 1), (1 << 30, 1), (1 << 30, 1000), (4000, 1)]:
        monkeypatch.setattr(broadcast, "FLAT_TILE_BYTES", tile_bytes)
        monkeypatch.setattr(broadcast, "TASKS_PER_THREAD", tasks)
        results.append(numbaconv.conv3d(x, w, padding=1))
    assert_close(results[0], naive.conv(x, w, None, padding=1), dtype)
    for y in results[1:]:
        np.testing.assert_array_equal(y, results[0])


def force_depth(monkeypatch, module, depth):
    """Makes ``module`` give each broadcast task ``depth`` output planes
    (more than there are: all of them)."""
    choose = module.blocking

    def blocking(*args):
        rows, flat, _ = choose(*args)
        return rows, flat, depth
    monkeypatch.setattr(module, "blocking", blocking)


@pytest.mark.parametrize("depth", [1, 2, 3, 1000])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("padding,dilation,stride", [
    (1, 1, 1), ((2, 1, 0), (2, 1, 1), (1, 1, 2)), ((0, 1, 1), 1, (2, 1, 1)),
    ((1, 0, 1), (3, 1, 1), (2, 2, 1)), ((3, 1, 1), (2, 1, 1), (3, 1, 1))])
def test_conv3d_broadcast_plane_ring(padding, dilation, stride, dtype, depth, rng,
                                     monkeypatch):
    """Broadcast tasks span ``depth`` output planes and keep a ring of input
    planes, with depth strides, dilations and padding that change which
    planes the ring reuses (the last case reuses none).  The forward and the
    input gradient (the same kernel) match the reference, and every split
    gives bit-identical results."""
    from numbaconv.cpu import forward
    x = rng.standard_normal((2, 5, 9, 17, 13)).astype(dtype)
    w = rng.standard_normal((9, 5, 3, 3, 3)).astype(dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    gy = rng.standard_normal(naive.conv(x, w, None, **kw).shape).astype(dtype)
    y1 = numbaconv.conv3d(x, w, **kw)
    gi1 = numbaconv.conv3d_input(x.shape, w, gy, **kw)
    force_depth(monkeypatch, forward, depth)      # the input gradient calls forward's too
    y = numbaconv.conv3d(x, w, **kw)
    gi = numbaconv.conv3d_input(x.shape, w, gy, **kw)
    assert_close(y, naive.conv(x, w, None, **kw), dtype)
    assert_close(gi, naive.conv_input(x.shape, w, gy, **kw), dtype)
    np.testing.assert_array_equal(y, y1)
    np.testing.assert_array_equal(gi, gi1)


@pytest.mark.parametrize("depth", [1, 2, 1000])
def test_conv_transpose3d_subpixel_plane_ring(depth, rng, monkeypatch):
    """The sub-pixel transposed convolution runs the broadcast kernel too:
    its tasks span ``depth`` planes of the stride phases' windows."""
    from numbaconv.cpu import subpixel
    force_depth(monkeypatch, subpixel, depth)
    x = rng.standard_normal((2, 5, 6, 7, 9))
    w = rng.standard_normal((5, 9, 4, 4, 4))
    y = numbaconv.conv_transpose3d(x, w, stride=2, padding=1)
    assert_close(y, naive.conv_transpose(x, w, None, stride=2, padding=1), np.float64)


# Sixteen or more output channels per group take the broadcast weight
# gradient (``numbaconv/cpu/broadcast_grad.py``): channel counts padded to two
# vectors (32 float32 or 16 float64) and spanning several of them, a last
# block of fewer than eight columns (weight taps), more output rows than one
# block takes, and every stride/dilation/padding combination.
# (kernel, padding, dilation, stride, groups, output channels)
BROADCAST_GRAD_CASES = [
    ((3, 3, 3), 1, 1, 1, 1, 16),
    ((2, 3, 5), (1, 0, 2), (1, 2, 1), 1, 2, 34),
    ((3, 3, 3), 1, 1, 2, 1, 17),
    ((1, 3, 2), (0, 1, 1), (1, 1, 3), (1, 2, 3), 1, 40),
    ((3, 2, 3), "same", (2, 1, 2), 1, 3, 48),
    ((1, 1, 1), 0, 1, 1, 1, 16),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel,padding,dilation,stride,groups,K", BROADCAST_GRAD_CASES)
def test_conv3d_broadcast_weight_gradient(kernel, padding, dilation, stride, groups, K,
                                          dtype, rng):
    from numbaconv.cpu.broadcast_grad import BLOCK_ROWS, use_broadcast_grad
    x = rng.standard_normal((2, 6, 3, 2 * BLOCK_ROWS + 3, 37)).astype(dtype)
    w_shape = (K, 6 // groups) + kernel
    assert use_broadcast_grad(w_shape, groups)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y_shape = numbaconv.conv3d(x, np.zeros(w_shape, dtype), **kw).shape
    gy = rng.standard_normal(y_shape).astype(dtype)
    gw = numbaconv.conv3d_weight(x, w_shape, gy, **kw)
    assert_close(gw, naive.conv_weight(x, w_shape, gy, **kw), dtype)


@pytest.mark.parametrize("stride", [1, 3])
def test_conv1d_broadcast_weight_gradient_long_rows(stride, rng):
    """Rows longer than one block sums (``FLUSH_TERMS``): a row runs in spans."""
    from numbaconv.cpu.broadcast_grad import FLUSH_TERMS
    W = (2 * FLUSH_TERMS + 300) * stride
    x = rng.standard_normal((2, 3, W))
    w_shape = (16, 3, 5)
    kw = dict(stride=stride, padding=2, dilation=2)
    gy = rng.standard_normal((2, 16, (W + 4 - 8 - 1) // stride + 1))
    gw = numbaconv.conv1d_weight(x, w_shape, gy, **kw)
    assert_close(gw, naive.conv_weight(x, w_shape, gy, **kw), np.float64)


@pytest.mark.parametrize("groups,ranges", [(1, False), (2, False), (1, True)])
@pytest.mark.parametrize("rows,short", [(2, 5), (3, 9)])
def test_conv3d_broadcast_weight_gradient_short_runs(rows, short, groups, ranges, rng,
                                                     monkeypatch):
    """Blocks of several output rows whose rows run in spans shorter than
    the row (``block_sizes`` forced): the last span of each row is shorter
    still.  With groups, and with the input channels split into ranges (the
    partial sums forced not to fit, so one chunk keeps the ring over every
    output plane)."""
    from numbaconv.cpu import broadcast_grad
    monkeypatch.setattr(broadcast_grad, "block_sizes",
                        lambda OW, Kgp, itemsize: (rows, OW - short))
    if ranges:
        monkeypatch.setattr(broadcast_grad, "PARTIAL_BYTES", 1)
        monkeypatch.setattr(broadcast_grad, "MIN_COLUMNS", 8)
    x = rng.standard_normal((2, 6, 5, 7, 13))
    w_shape = (16 * groups, 6 // groups, 3, 3, 3)
    kw = dict(padding=1, groups=groups)
    gy = rng.standard_normal((2, 16 * groups, 5, 7, 13))
    if ranges:
        assert broadcast_grad.split(6, 27, 16, 1, 2 * 5 * 3)[0] > 1
    gw = numbaconv.conv3d_weight(x, w_shape, gy, **kw)
    assert_close(gw, naive.conv_weight(x, w_shape, gy, **kw), np.float64)


@pytest.mark.parametrize("partial_bytes,min_columns", [(1, 8), (1 << 30, 1 << 30)])
def test_conv3d_broadcast_weight_gradient_task_splits(partial_bytes, min_columns,
                                                      monkeypatch, rng):
    """The work split two ways: by input-channel ranges and no chunks (the
    partial sums do not fit), and by chunks of row blocks alone."""
    from numbaconv.cpu import broadcast_grad
    monkeypatch.setattr(broadcast_grad, "PARTIAL_BYTES", partial_bytes)
    monkeypatch.setattr(broadcast_grad, "MIN_COLUMNS", min_columns)
    x = rng.standard_normal((3, 8, 3, 9, 11))
    w_shape = (20, 8, 3, 3, 3)
    ranges, chunks = broadcast_grad.split(8, 27, 32, 1, 3 * 3 * 2)
    assert (ranges, chunks) == ((8, 1) if partial_bytes == 1 else (1, 16))
    gy = rng.standard_normal((3, 20, 3, 9, 11))
    gw = numbaconv.conv3d_weight(x, w_shape, gy, padding=1)
    assert_close(gw, naive.conv_weight(x, w_shape, gy, padding=1), np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("depth,padding,dilation,stride", [
    (11, 1, 1, 1), (11, (2, 1, 0), (2, 1, 1), (1, 1, 2)), (11, (0, 1, 1), 1, (2, 1, 1)),
    (11, (1, 0, 1), (3, 1, 1), (2, 2, 1)), (2, 1, 1, 1), (3, (2, 1, 1), (2, 1, 1), 1)])
def test_conv3d_broadcast_weight_gradient_plane_ring(depth, padding, dilation, stride, dtype,
                                                     monkeypatch, rng):
    """The broadcast weight gradient keeps a ring of input planes across the
    output planes of a block of rows.  Four chunks of the units make
    chunks start and end in the middle of a run of output planes; with few
    output planes, the next block of rows wants the planes the ring holds,
    but for other rows.  Depth strides, dilations and padding change which
    planes it reuses.  The output gradient is a strided view (its rows are
    prefetched by their strides)."""
    from numbaconv.cpu import broadcast_grad
    monkeypatch.setattr(broadcast_grad, "TASKS", 4)
    monkeypatch.setattr(broadcast_grad, "PARTIAL_BYTES", 1 << 30)
    x = rng.standard_normal((2, 5, depth, 2 * broadcast_grad.BLOCK_ROWS + 1, 13)).astype(dtype)
    w_shape = (18, 5, 3, 3, 3)
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    y_shape = numbaconv.conv3d(x, np.zeros(w_shape, dtype), **kw).shape
    gy = rng.standard_normal(y_shape[:4] + (2 * y_shape[4],)).astype(dtype)[..., ::2]
    gw = numbaconv.conv3d_weight(x, w_shape, gy, **kw)
    assert_close(gw, naive.conv_weight(x, w_shape, gy, **kw), dtype)


# Few output channels at unit height/width stride take the pitched path
# (``forward.forward_pitched``): a task spans several output planes, keeping
# a ring of input planes, and several bands of rows.  Depth strides and
# dilations change which planes the ring reuses; depth padding reads a plane
# of zeros.
# (kernel, padding, dilation, depth stride, input channels, output channels)
PITCHED_CASES = [
    ((3, 3, 3), 1, 1, 1, 1, 1),
    ((5, 5, 5), 2, 1, 1, 1, 1),
    ((3, 2, 3), (2, 1, 0), (2, 1, 2), 1, 2, 3),
    ((2, 3, 1), (1, 1, 0), (3, 2, 1), 2, 3, 2),
    ((1, 1, 1), 0, 1, 3, 1, 2),
]


def force_rows(monkeypatch, together):
    """Makes the pitched path take rows four at a time (``together=4``), in
    pairs (2) or one at a time (1) wherever it can (unit height dilation,
    three or two kernel rows or more)."""
    from numbaconv.cpu import forward
    monkeypatch.setattr(forward, "use_quads", lambda OW, kshape, dilation, itemsize:
                        together == 4 and dilation[1] == 1 and kshape[1] >= 3)
    monkeypatch.setattr(forward, "use_pairs", lambda OW, kshape, dilation, itemsize:
                        together == 2 and dilation[1] == 1 and kshape[1] >= 2)


@pytest.mark.parametrize("together", [1, 2, 4])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel,padding,dilation,stride,C,K", PITCHED_CASES)
def test_conv3d_pitched_path_spans_planes_and_row_blocks(kernel, padding, dilation, stride,
                                                         C, K, dtype, together,
                                                         monkeypatch, rng):
    from numbaconv.cpu import forward
    force_rows(monkeypatch, together)
    monkeypatch.setattr(forward, "TASKS_PER_THREAD", 1)
    monkeypatch.setattr(forward, "PITCHED_TILE_BYTES", 4096)
    x = rng.standard_normal((2, C, 11, 23, 37)).astype(dtype)
    w = rng.standard_normal((K, C) + kernel).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    kw = dict(stride=(stride, 1, 1), padding=padding, dilation=dilation)
    y = numbaconv.conv3d(x, w, b, **kw)
    rows, depth, _ = forward.pitched_split(y.shape, kernel, np.broadcast_to(dilation, 3), C,
                                           1, x.itemsize, 1)
    assert depth > 1 and rows < y.shape[3]
    assert_close(y, naive.conv(x, w, b, **kw), dtype)


def explicitly_padded_reference(x, lo, out_size, taps, dilation, mode, cval):
    """``x`` padded in NumPy through ``_backend.padding_index`` (or with
    ``cval``) far enough for every tap of every output."""
    from numbaconv._backend import MODES, padding_index
    index = []
    for size, low, o, k, d in zip(x.shape[2:], lo, out_size, taps, dilation):
        j = np.arange(-low, o + d * (k - 1) - low)
        if mode == "constant":
            index.append((np.clip(j, 0, size - 1), (j < 0) | (j >= size)))
        else:
            index.append((np.array([padding_index(int(v), size, MODES[mode]) for v in j]),
                          None))
    xp = x[np.ix_(*[np.arange(n) for n in x.shape[:2]], *[i for i, _ in index])]
    xp = xp.astype(np.float64)
    for axis, (_, outside) in enumerate(index):
        if outside is not None:
            sel = [slice(None)] * 5
            sel[axis + 2] = outside
            xp[tuple(sel)] = cval
    return xp


# The pitched path applies every edge mode as it loads its tiles: rows and
# columns through the index map, depth planes too (a plane slot is keyed by
# the index before the map, so a map that wraps back does not overwrite a
# plane still in use); padding wider than the input; and an input of
# another dtype cast as it is loaded.
EDGE_CASES = [
    ("reflect", 0.0, (3, 3, 3), (1, 1, 1), (6, 9, 11)),
    ("replicate", 0.0, (3, 5, 4), (2, 3, 2), (3, 4, 5)),
    ("circular", 0.0, (3, 3, 3), (1, 1, 1), (7, 3, 3)),
    ("circular", 0.0, (5, 3, 7), (4, 2, 5), (2, 2, 3)),
    ("symmetric", 0.0, (4, 4, 2), (3, 2, 1), (2, 5, 3)),
    ("constant", 2.5, (3, 4, 3), (1, 2, 1), (4, 6, 40)),
    ("reflect", 0.0, (1, 7, 7), (0, 9, 9), (1, 3, 4)),
]


@pytest.mark.parametrize("together", [1, 2, 4])
@pytest.mark.parametrize("xtype", [np.float64, np.float32, np.uint8, np.int16])
@pytest.mark.parametrize("mode,cval,kernel,lo,size", EDGE_CASES)
def test_pitched_path_applies_edge_modes(mode, cval, kernel, lo, size, xtype, together, rng,
                                         monkeypatch):
    from numbaconv.cpu import forward
    force_rows(monkeypatch, together)
    monkeypatch.setattr(forward, "TASKS_PER_THREAD", 1)
    monkeypatch.setattr(forward, "PITCHED_TILE_BYTES", 2048)
    dtype = np.float32 if xtype == np.float32 else np.float64
    x = (rng.standard_normal((2, 2) + size) * 20).astype(xtype)
    w = rng.standard_normal((2, 2) + kernel).astype(dtype)
    out_size = tuple(s + 2 * p - k + 1 for s, p, k in zip(size, lo, kernel))
    assert forward.forward_choice(w.shape, (1, 1, 1), (1, 1, 1), 1, out_size[2],
                                  w.itemsize).kernel == "pitched"
    y = np.empty((2, 2) + out_size, dtype)
    forward.forward_cpu(x, w, None, (1, 1, 1), (1, 1, 1), lo, 1, y, mode, cval)
    xp = explicitly_padded_reference(x, lo, out_size, kernel, (1, 1, 1), mode, cval)
    assert_close(y, naive.conv(xp, w.astype(np.float64), None), dtype)


@pytest.mark.parametrize("together", [1, 2, 4])
@pytest.mark.parametrize("mode", ["zeros", "reflect", "circular"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pitched_path_splits_long_rows_into_columns(dtype, mode, together, rng, monkeypatch):
    """Rows longer than the tile holds, or too few rows for the threads,
    are split into column chunks of whole blocks (the last one shorter),
    each with its own halo, the padding mode still at the row's ends."""
    from numbaconv.cpu import forward
    from numbaconv.cpu._target import PITCHED_VECTORS, VECTOR_BYTES
    force_rows(monkeypatch, together)
    block = PITCHED_VECTORS * VECTOR_BYTES // np.dtype(dtype).itemsize
    W = 2 * block + 37
    monkeypatch.setattr(forward, "PITCHED_TILE_BYTES", 12 * block * np.dtype(dtype).itemsize)
    x = rng.standard_normal((1, 2, 3, 9, W)).astype(dtype)
    w = rng.standard_normal((2, 2, 3, 5, 7)).astype(dtype)
    b = rng.standard_normal(2).astype(dtype)
    kw = dict(padding=(1, 2, 3), padding_mode=mode)
    y = numbaconv.conv3d(x, w, b, **kw)
    _, _, cols = forward.pitched_split(y.shape, w.shape[2:], (1, 1, 1), 2, 1, x.itemsize, 2,
                                       together)
    assert cols % block == 0 and cols < W
    pads = [(0, 0), (0, 0), (1, 1), (2, 2), (3, 3)]
    xp = x if mode == "zeros" else np.pad(x, pads, mode={"reflect": "reflect",
                                                          "circular": "wrap"}[mode])
    want = naive.conv(x, w, b, padding=(1, 2, 3)) if mode == "zeros" else naive.conv(xp, w, b)
    assert_close(y, want, dtype)
    # A long 1-D signal: one row, split so that every thread has columns.
    s = rng.standard_normal((1, 1, 5 * block)).astype(dtype)
    k = rng.standard_normal((1, 1, 9)).astype(dtype)
    assert forward.pitched_split((1, 1, 1, 1, 5 * block - 8), (1, 1, 9), (1, 1, 1), 1, 1,
                                 s.itemsize, 2)[2] < 5 * block - 8
    assert_close(numbaconv.conv1d(s, k), naive.conv(s, k, None), dtype)


@pytest.mark.parametrize("threads", [1, 2, 16])
@pytest.mark.parametrize("width", [1, 5, 63, 64, 65, 4000])
def test_pitched_split_never_exceeds_the_row(width, threads):
    """A task's columns are at most the row, whatever the width and the
    threads: rows narrower than a block are never split nor widened."""
    from numbaconv.cpu import forward
    from numbaconv.cpu._target import PITCHED_VECTORS, VECTOR_BYTES
    for itemsize in (4, 8):
        block = PITCHED_VECTORS * VECTOR_BYTES // itemsize
        for out in [(1, 1, 1, 1, width), (1, 1, 1, 3, width), (2, 1, 4, 5, width)]:
            rows, depth, cols = forward.pitched_split(out, (1, 3, 3), (1, 1, 1), 1, 1,
                                                      itemsize, threads)
            assert 1 <= cols <= width and 1 <= rows <= out[3] and 1 <= depth <= out[2]
            assert cols == width or cols % block == 0


def test_one_thread_call_restores_the_thread_count(rng):
    """A call small enough for one thread leaves the caller's thread count."""
    from numba import get_num_threads, set_num_threads
    from numbaconv.cpu.plan import forward_choice
    before = get_num_threads()
    if before < 2:
        pytest.skip("needs two threads")
    set_num_threads(2)
    try:
        x = rng.standard_normal((1, 1, 4, 5, 6))
        w = rng.standard_normal((1, 1, 3, 3, 3))
        assert forward_choice(w.shape, (1, 1, 1), (1, 1, 1), 1, 4, 8, True,
                              2 * 3 * 4).params["one_thread"]
        assert_close(numbaconv.conv3d(x, w), naive.conv(x, w, None), np.float64)
        assert get_num_threads() == 2
    finally:
        set_num_threads(before)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("KH,together", [(2, 2), (3, 2), (5, 4)])
def test_conv3d_pitched_row_groups_chosen_by_shape(KH, together, dtype, rng, monkeypatch):
    """Rows taken in pairs (two or three kernel rows) or fours (four or more) on their
    own (rows long enough, no forcing), with groups, depth stride, width
    dilation and bands that end with fewer rows, against the reference."""
    from numbaconv.cpu import forward
    monkeypatch.setattr(forward, "PITCHED_TILE_BYTES", 1 << 14)
    # 15 output rows: the last band of every split ends with fewer rows.
    x = rng.standard_normal((1, 4, 5, 16 if KH == 2 else 15, 128)).astype(dtype)
    w = rng.standard_normal((2, 2, 2, KH, 3)).astype(dtype)
    b = rng.standard_normal(2).astype(dtype)
    kw = dict(stride=(2, 1, 1), padding=(1, (KH - 1) // 2, 2), dilation=(1, 1, 2), groups=2)
    y = numbaconv.conv3d(x, w, b, **kw)
    args = (y.shape[4], w.shape[2:], (1, 1, 2), x.itemsize)
    assert forward.use_quads(*args) == (together == 4)
    assert forward.use_pairs(*args)
    rows, _, _ = forward.pitched_split(y.shape, w.shape[2:], (1, 1, 2), 4, 2, x.itemsize, 1,
                                       together)
    assert rows % together == 0 and y.shape[3] % rows % together != 0
    assert_close(y, naive.conv(x, w, b, **kw), dtype)


@pytest.mark.parametrize("together", [1, 2, 4])
def test_conv3d_pitched_path_nonfinite_input_and_weight(together, rng, monkeypatch):
    """inf and NaN in the input reach exactly the outputs whose taps read them
    (scratch columns and neighbouring bands never leak), and an inf weight
    meets the zero padding as NaN, as in the reference; rows one, two and
    four at a time."""
    force_rows(monkeypatch, together)
    x = rng.standard_normal((1, 1, 6, 9, 20))
    x[0, 0, 2, 4, 19] = np.inf
    x[0, 0, 5, 0, 0] = np.nan
    w = rng.standard_normal((1, 1, 3, 3, 3))
    got = numbaconv.conv3d(x, w, padding=1)
    with np.errstate(invalid="ignore"):
        want = naive.conv(x, w, None, padding=1)
    assert_same_nonfinite(got, want)
    # Every output meets the inf weight: NaN where it lands on padding.
    w[0, 0, 0, 1, 2] = np.inf
    x = rng.standard_normal((1, 1, 6, 9, 20))
    got = numbaconv.conv3d(x, w, padding=1)
    with np.errstate(invalid="ignore"):
        want = naive.conv(x, w, None, padding=1)
    assert np.isnan(want).any() and np.isinf(want).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[np.isinf(want)], want[np.isinf(want)])


@pytest.mark.parametrize("together", [1, 2, 4])
def test_conv3d_pitched_tile_kept_across_tasks(together, rng, monkeypatch):
    """A thread keeps its tile from task to task: rows, planes and bands of
    earlier tasks, inf and NaN among them, stay in slots a later task does
    not load, and must reach none of its outputs.  One thread, many small
    tasks, the last band shorter than the others."""
    import numba

    from numbaconv.cpu import forward
    force_rows(monkeypatch, together)
    monkeypatch.setattr(forward, "TASKS_PER_THREAD", 20)
    monkeypatch.setattr(forward, "PITCHED_TILE_BYTES", 16384)
    x = rng.standard_normal((2, 2, 7, 23, 30))
    x[0, 1, 3, 5:9, 7] = np.inf
    x[0, 0, 6, 20:, :] = np.nan
    x[1, 1, 0, 0, 29] = -np.inf
    w = rng.standard_normal((1, 2, 3, 5, 3))
    kw = dict(padding=(1, 2, 1), stride=(2, 1, 1))
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        got = numbaconv.conv3d(x, w, **kw)
    finally:
        numba.set_num_threads(before)
    rows, depth, _ = forward.pitched_split(got.shape, w.shape[2:], (1, 1, 1), 2, 1, 8, 1,
                                           together)
    assert got.shape[3] % rows and depth < got.shape[2] and rows < got.shape[3]
    with np.errstate(invalid="ignore"):
        want = naive.conv(x, w, None, **kw)
    assert_same_nonfinite(got, want)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_store_every_other_writes_only_its_places(dtype):
    """The stride-2 store of the sub-pixel path: ``count`` values plus the
    bias at every other place from any offset, nothing written in between
    or past the last one."""
    from numba import njit

    from numbaconv.cpu._target import VECTOR_BYTES
    from numbaconv.cpu._vector import store_every_other

    @njit
    def store(out, at, src, frm, count, bias):
        store_every_other(out, np.uint64(at), src, np.uint64(frm), count, bias)

    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    src = np.arange(1, 2 * lanes + 1, dtype=dtype)
    for count in range(lanes + 1):
        for at in (0, 1, 3):
            out = np.full(3 * lanes + 4, np.nan, dtype)
            want = out.copy()
            want[at:at + 2 * count:2] = src[2:2 + count] + dtype(0.5)
            store(out, at, src, 2, count, dtype(0.5))
            np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_store_every_other_reads_nothing_past_its_values(dtype):
    """The last values of ``src`` end a page whose next page may not be read
    (``mprotect``): reading a whole vector from them would fault.  In a
    child process, so that a fault fails this test instead of the run."""
    code = textwrap.dedent(f"""
        import ctypes, mmap
        import numpy as np
        from numba import njit
        from numbaconv.cpu._vector import store_every_other

        @njit
        def store(out, at, src, frm, count, bias):
            store_every_other(out, np.uint64(at), src, np.uint64(frm), count, bias)

        dtype = np.dtype("{dtype}")
        page = mmap.PAGESIZE
        m = mmap.mmap(-1, 2 * page)
        start = ctypes.addressof((ctypes.c_char * (2 * page)).from_buffer(m))
        src = np.frombuffer(m, dtype=dtype, count=8, offset=page - 8 * dtype.itemsize)
        src[:] = np.arange(1, 9)
        out = np.zeros(64, dtype)
        store(out, 0, src, 0, 1, dtype.type(0))            # compiled before the guard
        libc = ctypes.CDLL(None)
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        assert libc.mprotect(start + page, page, 0) == 0   # PROT_NONE
        store(out, 3, src, 6, 2, dtype.type(0.5))
        assert list(out[3:8]) == [7.5, 0, 8.5, 0, 0], out[:10]
        print("ok")
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-2000:]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_vector_block_rank1_updates(dtype, rng):
    """The broadcast forward's register block of explicit vectors: steps of
    ``block[j, p] += a[ao + j] * x[xo + p]`` from unaligned offsets, spilled
    row by row, against NumPy's outer products; inf meets zero as NaN."""
    from numba import njit

    from numbaconv.cpu._target import BROADCAST_ROWS as BLOCK_ROWS
    from numbaconv.cpu._target import BROADCAST_VECTORS as BLOCK_VECTORS
    from numbaconv.cpu._target import VECTOR_BYTES
    from numbaconv.cpu._vector import block_zero, vector_block
    from numbaconv.cpu.broadcast import block_spill, block_step

    @njit
    def run(x, xo, a, out):
        acc = vector_block(x)
        block_zero(acc)
        for s in range(xo.shape[0]):
            block_step(acc, x, xo[s], a, np.uint64(s * BLOCK_ROWS))
        block_spill(acc, out)

    width = BLOCK_VECTORS * VECTOR_BYTES // np.dtype(dtype).itemsize
    steps = 7
    x = rng.standard_normal(300).astype(dtype)
    a = rng.standard_normal(steps * BLOCK_ROWS).astype(dtype)
    xo = rng.integers(0, 300 - width, steps).astype(np.uint64)
    x[int(xo[2]) + 5] = np.inf      # int(): NumPy 1 makes uint64 + int a float
    a[2 * BLOCK_ROWS + 1] = 0.0
    out = np.full(BLOCK_ROWS * width + 3, 7.0, dtype)
    run(x, xo, a, out)
    with np.errstate(invalid="ignore"):      # inf * 0 and inf - inf: NaN, as wanted
        want = sum(np.outer(a[s * BLOCK_ROWS:(s + 1) * BLOCK_ROWS].astype(np.float64),
                            x[int(o):int(o) + width].astype(np.float64))
                   for s, o in enumerate(xo))
    got = out[:BLOCK_ROWS * width].reshape(BLOCK_ROWS, width)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    assert np.allclose(got[finite], want[finite], rtol=1e-5 if dtype == np.float32 else 1e-12,
                       atol=1e-5 if dtype == np.float32 else 1e-12)
    assert np.all(out[BLOCK_ROWS * width:] == 7.0)      # nothing written past the block


@pytest.mark.parametrize("count", [8, 5, 1])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_vector_block_gathered_updates_and_float64_flush(count, dtype, rng):
    """The weight gradient's register block (the target's ``GRAD_ROWS``
    rows), each row broadcasting a value from its own place
    (``block_update_at``: a table of offsets plus one shared offset),
    against ``GRAD_VECTORS`` vectors; then its first ``count`` rows widened
    and added to float64 sums (``block_adder``), the other rows' sums
    untouched.  inf meets zero as NaN."""
    from numba import njit

    from numbaconv.cpu._target import GRAD_ROWS, GRAD_VECTORS, VECTOR_BYTES
    from numbaconv.cpu._vector import block_adder, block_update_at, block_zero, vector_block
    rows = GRAD_ROWS
    count = min(count, rows)
    update = block_update_at(rows, GRAD_VECTORS)
    add = block_adder(rows, GRAD_VECTORS)

    @njit
    def run(x, xo, a, ao, total, t0, stride, count):
        acc = vector_block(x)
        block_zero(acc)
        # Row j of step s reads a[ao[s, j]]: the table ao - 1 and the shared
        # offset 1 (its first entry is the one past the table's last row).
        table = (ao.reshape(-1) - np.uint64(1)).copy()
        for s in range(xo.shape[0]):
            update(acc, x, xo[s], a, np.uint64(1), table, np.uint64(ao.shape[1] * s))
        add(acc, total, t0, stride, count)

    width = GRAD_VECTORS * VECTOR_BYTES // np.dtype(dtype).itemsize
    steps, stride, t0 = 6, width + 5, 3
    x = rng.standard_normal(200).astype(dtype)
    a = rng.standard_normal(90).astype(dtype)
    xo = rng.integers(0, 200 - width, steps).astype(np.uint64)
    ao = rng.integers(1, 90, (steps, rows)).astype(np.uint64)
    x[int(xo[1]) + 3] = np.inf      # int(): NumPy 1 makes uint64 + int a float
    a[ao[1, 2]] = 0.0
    start = rng.standard_normal(t0 + rows * stride + 4)
    total = start.copy()
    run(x, xo, a, ao, total, np.uint64(t0), np.uint64(stride), count)
    with np.errstate(invalid="ignore"):
        block = sum(np.outer(a[ao[s]], x[int(o):int(o) + width]) for s, o in enumerate(xo))
    want = start.copy()
    for j in range(count):
        want[t0 + j * stride:t0 + j * stride + width] += block[j]
    assert np.array_equal(np.isnan(total), np.isnan(want))
    assert np.array_equal(np.isinf(total), np.isinf(want))
    finite = np.isfinite(want)
    assert np.allclose(total[finite], want[finite], rtol=1e-5 if dtype == np.float32 else 1e-12,
                       atol=1e-5 if dtype == np.float32 else 1e-12)
    untouched = np.ones(total.size, bool)
    for j in range(count):
        untouched[t0 + j * stride:t0 + j * stride + width] = False
    assert np.array_equal(total[untouched], start[untouched])


def test_prefetch_is_only_a_hint():
    """``_index.prefetch`` reads nothing and cannot fault: offsets before,
    far past and inside an array leave it and the result alone."""
    from numba import njit

    from numbaconv.cpu._index import prefetch, prefetch_bytes

    @njit
    def run(a, offsets):
        for o in offsets:
            prefetch(a, o)
        prefetch_bytes(a, -4096, 100)
        return a.sum()

    a = np.arange(100.0)
    offsets = np.array([-(1 << 40), -1, 0, 7, 799, 1 << 40, (1 << 62) - 1], dtype=np.int64)
    assert run(a, offsets) == 4950.0
    assert np.array_equal(a, np.arange(100.0))


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_claimed_tasks_are_each_done_once(workers):
    """Threads that take tasks with ``_index.claim`` (as the broadcast,
    pitched and weight-gradient kernels do) do every task exactly once,
    however many workers there are."""
    from numba import njit, prange

    from numbaconv.cpu._index import claim

    @njit(parallel=True)
    def run(ntask, workers, done):
        counter = np.zeros(1, dtype=np.int64)
        for worker in prange(workers):
            task = claim(counter)
            while task < ntask:
                done[task] += 1
                task = claim(counter)

    done = np.zeros(1000, dtype=np.int64)
    run(done.size, workers, done)
    assert np.all(done == 1)


def test_plan_explains_which_kernel_and_why():
    """The plan names the kernel family of a call and its block, for the
    target's register blocks; a bad op is a clear error."""
    from numbaconv.cpu import _target
    from numbaconv.cpu.plan import explain
    many = explain("forward", (1, 32, 16, 16, 16), (32, 32, 3, 3, 3), padding=1)
    assert many.kernel == "broadcast"
    assert many.params == dict(channels=_target.BROADCAST_ROWS,
                               vectors=_target.BROADCAST_VECTORS)
    assert "32 output channels per group" in many.reason
    single = explain("forward", (1, 1, 256, 256), (1, 1, 5, 5), padding=2, dtype="float64")
    assert single.kernel == "pitched" and single.params["rows_together"] == 4
    assert explain("forward", (1, 1, 64, 64), (1, 1, 3, 3), stride=2).kernel == "rows"
    few = explain("forward", (1, 8, 16, 16, 16), (4, 8, 3, 3, 3))
    assert few.kernel == ("panels" if _target.BROADCAST_ROWS > 4 else "broadcast")
    assert explain("backward_data", (1, 16, 8, 8), (16, 16, 4, 4), stride=2,
                   padding=1).kernel == "subpixel"
    assert explain("backward_data", (1, 16, 8, 8), (16, 16, 4, 4), stride=2,
                   finite=False).kernel == "gather"
    assert explain("backward_weight", (2, 32, 32, 32), (32, 32, 3, 3)).kernel == "broadcast"
    assert explain("backward_weight", (2, 1, 32, 32), (1, 1, 3, 3)).kernel == "pitched"
    with pytest.raises(ValueError, match="op must be"):
        explain("backwards", (1, 1, 8), (1, 1, 3))
    with pytest.raises(ValueError, match="stride"):
        explain("forward", (1, 1, 8, 8), (1, 1, 3, 3), stride=(1, 2, 3))


@pytest.mark.parametrize("K,C,stride,kernel", [(16, 8, 1, "forward_broadcast"),
                                               (1, 1, 1, "forward_pitched"),
                                               (1, 1, 2, "forward_rows")])
def test_forward_runs_the_kernel_the_plan_names(K, C, stride, kernel, monkeypatch):
    """``forward_cpu`` runs what ``plan.explain`` says (checked without
    compiling: the kernel is replaced by a stand-in that records its call)."""
    from numbaconv.cpu import forward
    from numbaconv.cpu.plan import explain
    called = []
    monkeypatch.setattr(forward, kernel, lambda *args: called.append(kernel))
    x = np.ones((1, C, 6, 7, 9), np.float32)
    w = np.ones((K, C, 3, 3, 3), np.float32)
    numbaconv.conv3d(x, w, stride=stride)
    assert called == [kernel]
    assert "forward_" + explain("forward", x.shape, w.shape, stride=stride).kernel == kernel
