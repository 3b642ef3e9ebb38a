"""The tiled CUDA kernels at every tile edge, against ``tests/naive.py``.

Run on a GPU, or without one in Numba's CUDA simulator:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_cuda_kernels.py

Each case first asks ``numbaconv.cuda.plan`` which kernel the call takes and
checks it is the one the case is meant to exercise, so a change of plan
cannot quietly leave a kernel untested.  Shapes are tiny (the simulator runs
every GPU thread as a Python thread) but chosen to cross tile boundaries:
outputs that are not multiples of the tile, one-element axes, several tiles
per block (a capped grid), several channel passes and channel blocks,
stride and dilation above 1, groups, empty batches.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import naive
import numbaconv.cuda as nc_cuda

pytestmark = pytest.mark.cuda

_OK, _REASON = nc_cuda.cuda_status()
if not _OK:
    pytest.skip(f"CUDA backend not usable: {_REASON}", allow_module_level=True)

from numba import cuda  # noqa: E402

from numbaconv.cuda import backward_data as bd  # noqa: E402
from numbaconv.cuda import backward_weight as bw  # noqa: E402
from numbaconv.cuda import forward as fw  # noqa: E402
from numbaconv.cuda import plan  # noqa: E402

SIMULATOR = nc_cuda._simulator_enabled()


@pytest.fixture(scope="module", autouse=True)
def _fast_simulator_barriers():
    # See tests/test_cuda_backend.py: simulated barriers resume sooner.
    if not SIMULATOR:
        yield
        return
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def close(got, want, dtype):
    """float32: relative to the size of the sum; float64: tight."""
    want = np.asarray(want, np.float64)
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale * 4)


def nan_full(shape, dtype):
    """A device array of NaN: the kernels must overwrite every element."""
    return cuda.to_device(np.full(shape, np.nan, dtype))


def make(xs, ws, stride, dilation, pad_lo, pad_hi, groups, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    out = naive.conv_output_shape(xs[2:], ws[2:], stride, dilation, pad_lo,
                                  pad_hi)
    gy = rng.standard_normal((xs[0], ws[0]) + tuple(out)).astype(dtype)
    return x, w, b, gy


def run_forward(x, w, b, stride, dilation, pad_lo, pad_hi, groups, dtype):
    want = naive.conv_forward(x, w, b, stride, dilation, pad_lo, pad_hi,
                              groups)
    out = nan_full(want.shape, dtype)
    fw.forward_launch(cuda.to_device(x), cuda.to_device(w),
                      None if b is None else cuda.to_device(b), stride,
                      dilation, pad_lo, groups, out)
    close(out.copy_to_host(), want, dtype)


def run_backward_data(gy, w, x_shape, stride, dilation, pad_lo, groups, dtype,
                      b=None):
    want = naive.conv_backward_data(gy, w, x_shape, stride, dilation, pad_lo,
                                    groups)
    if b is not None:
        want = want + b.astype(np.float64)[None, :, None, None, None]
    gx = nan_full(x_shape, dtype)
    bd.backward_data_launch(cuda.to_device(gy), cuda.to_device(w), stride,
                            dilation, pad_lo, groups, gx,
                            None if b is None else cuda.to_device(b))
    got = gx.copy_to_host()
    if np.isfinite(w).all():
        close(got, want, dtype)
    return got, want


def run_backward_weight(x, gy, w_shape, stride, dilation, pad_lo, groups,
                        dtype):
    want = naive.conv_backward_weight(x, gy, w_shape, stride, dilation,
                                      pad_lo, groups)
    gw = nan_full(w_shape, dtype)
    bw.weight_launch(cuda.to_device(x), cuda.to_device(gy), stride, dilation,
                     pad_lo, groups, gw)
    close(gw.copy_to_host(), want, dtype)


def forward_kernel_of(x, w, stride, dilation, pad_lo, pad_hi, groups, dtype):
    out = naive.conv_output_shape(x.shape[2:], w.shape[2:], stride, dilation,
                                  pad_lo, pad_hi)
    return plan.forward_plan(x.shape, w.shape, (x.shape[0], w.shape[0]) + out,
                             stride, dilation, pad_lo, groups,
                             np.dtype(dtype).itemsize)


# --- forward ---------------------------------------------------------------

# (id, x, w, stride, dilation, pad_lo, pad_hi, groups, kernel, extra check)
FORWARD_CASES = [
    # 5x5x33 outputs: two tiles along every axis, a partial one on each.
    ("k3-edges", (1, 2, 5, 5, 33), (3, 2, 3, 3, 3), (1, 1, 1), (1, 1, 1),
     (1, 1, 1), (1, 1, 1), 1, "tiled", dict(taps=(3, 3, 3), rd=4)),
    # Kg = 9: two channel blocks (8 + 1); Cg = 3 with 2 channels per pass.
    ("channel-blocks-and-passes", (1, 3, 2, 3, 4), (9, 3, 3, 3, 3),
     (1, 1, 1), (1, 1, 1), (1, 1, 1), (1, 1, 1), 1, "tiled",
     dict(kb=8, cb=2)),
    # run-time kernel size, stride and dilation > 1, groups, asymmetric pad.
    ("general-strided-dilated-grouped", (2, 4, 5, 6, 7), (4, 2, 2, 3, 2),
     (2, 1, 3), (1, 2, 2), (1, 0, 2), (0, 2, 1), 2, "tiled",
     dict(taps=(0, 0, 0))),
    # 2-D: depth and height exchanged, register block along height.
    ("2d-lift", (1, 2, 1, 6, 9), (2, 2, 1, 3, 3), (1, 1, 1), (1, 1, 1),
     (0, 1, 1), (0, 1, 1), 1, "tiled", dict(swap=True, taps=(3, 1, 3),
                                             ty=1, rd=4)),
    # 1-D: one-element depth and height.
    ("1d", (2, 2, 1, 1, 9), (3, 2, 1, 1, 3), (1, 1, 2), (1, 1, 1),
     (0, 0, 1), (0, 0, 1), 1, "tiled", dict(taps=(1, 1, 3), rd=1, ty=1)),
    # One input channel, two outputs: the sliding single-channel kernel,
    # 10 depth outputs = two tiles of 8.
    ("single-channel", (1, 1, 10, 3, 5), (2, 1, 3, 3, 3), (1, 1, 1),
     (1, 1, 1), (1, 1, 1), (1, 1, 1), 1, "single_channel",
     dict(rd=8, kb=2)),
    # Depthwise (Cg = 1, Kg = 1) with stride along height and width.
    ("depthwise", (1, 2, 9, 4, 4), (2, 1, 3, 3, 3), (1, 2, 2), (1, 1, 2),
     (1, 1, 2), (1, 0, 1), 2, "single_channel", dict(kb=1)),
    # 1x1x1 kernel (the phases of a k2 s2 transposed convolution).
    ("pointwise", (1, 3, 2, 2, 3), (5, 3, 1, 1, 1), (1, 1, 1), (1, 1, 1),
     (0, 0, 0), (0, 0, 0), 1, "tiled", dict(taps=(1, 1, 1))),
]


# float64 runs the same code with half the channels per block: two cases.
FORWARD_RUNS = [(c, np.float32) for c in FORWARD_CASES] + \
    [(c, np.float64) for c in FORWARD_CASES
     if c[0] in ("k3-edges", "single-channel")]


@pytest.mark.parametrize("case,dtype", FORWARD_RUNS,
                         ids=[f"{c[0]}-{np.dtype(t).name}"
                              for c, t in FORWARD_RUNS])
def test_forward_tiles(case, dtype):
    _, xs, ws, s, d, lo, hi, g, kernel, extra = case
    if dtype == np.float64 and "kb" in extra:
        extra = dict(extra, kb=min(extra["kb"], 4))
    x, w, b, _ = make(xs, ws, s, d, lo, hi, g, dtype)
    p = forward_kernel_of(x, w, s, d, lo, hi, g, dtype)
    assert p.kernel == kernel, p.reason
    for name, value in extra.items():
        assert getattr(p, name) == value, (name, p)
    run_forward(x, w, None if case[0] == "pointwise" else b, s, d, lo, hi, g,
                dtype)


def test_forward_several_tiles_per_block(monkeypatch):
    """A grid capped at one block: that block walks every tile in turn."""
    monkeypatch.setattr(fw, "MAX_BLOCKS", 1)
    x, w, b, _ = make((2, 1, 9, 2, 3), (1, 1, 3, 1, 3), (1, 1, 1), (1, 1, 1),
                      (1, 0, 1), (1, 0, 1), 1, np.float32)
    p = forward_kernel_of(x, w, (1, 1, 1), (1, 1, 1), (1, 0, 1), (1, 0, 1),
                          1, np.float32)
    assert p.blocks > 1
    run_forward(x, w, b, (1, 1, 1), (1, 1, 1), (1, 0, 1), (1, 0, 1), 1,
                np.float32)


def test_forward_empty_batch():
    x, w, b, _ = make((0, 2, 3, 3, 3), (2, 2, 3, 3, 3), (1, 1, 1), (1, 1, 1),
                      (1, 1, 1), (1, 1, 1), 1, np.float32)
    run_forward(x, w, b, (1, 1, 1), (1, 1, 1), (1, 1, 1), (1, 1, 1), 1,
                np.float32)


# The simulator computes inf * 0 in NumPy scalars, which warn.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_forward_direct_fallback_when_the_halo_does_not_fit():
    """A dilation so large that one channel's tile exceeds shared memory;
    an inf tap on the padding gives NaN there, as in the tiled kernels."""
    s, d, lo, hi = (1, 1, 1), (1, 1, 7000), (0, 0, 1), (0, 0, 1)
    x, w, b, _ = make((1, 1, 1, 1, 14003), (1, 1, 1, 1, 3), s, d, lo, hi, 1,
                      np.float64)
    p = forward_kernel_of(x, w, s, d, lo, hi, 1, np.float64)
    assert p.kernel == "direct" and "shared memory" in p.reason
    run_forward(x, w, b, s, d, lo, hi, 1, np.float64)
    w[0, 0, 0, 0, 0] = np.inf
    with np.errstate(invalid="ignore"):
        want = naive.conv_forward(x, w, b, s, d, lo, hi, 1)
    out = nan_full(want.shape, np.float64)
    fw.forward_launch(cuda.to_device(x), cuda.to_device(w), cuda.to_device(b),
                      s, d, lo, 1, out)
    got = out.copy_to_host()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    assert np.isnan(want).any()


# The simulator computes inf * 0 in NumPy scalars, which warn.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_forward_inf_weight_on_padding_is_nan_as_in_numpy():
    """The staged halo holds zeros: inf * 0 = NaN, as the zero-padded
    reference computes (and as the CPU kernels do)."""
    x, w, b, _ = make((1, 2, 3, 3, 4), (2, 2, 3, 3, 3), (1, 1, 1), (1, 1, 1),
                      (1, 1, 1), (1, 1, 1), 1, np.float64)
    w[0, 0, 0, 0, 0] = np.inf
    with np.errstate(invalid="ignore"):
        want = naive.conv_forward(x, w, b, (1, 1, 1), (1, 1, 1), (1, 1, 1),
                                  (1, 1, 1), 1)
    out = nan_full(want.shape, np.float64)
    fw.forward_launch(cuda.to_device(x), cuda.to_device(w), cuda.to_device(b),
                      (1, 1, 1), (1, 1, 1), (1, 1, 1), 1, out)
    got = out.copy_to_host()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    assert np.isnan(want).any()


# --- data gradient -----------------------------------------------------------

# (id, x, w, stride, dilation, pad_lo, pad_hi, groups, n phases)
DATA_CASES = [
    # stride 2, k3, pad 1: phases with 2 and 1 taps per axis.
    ("s2-k3", (1, 2, 5, 4, 7), (3, 2, 3, 3, 3), (2, 2, 2), (1, 1, 1),
     (1, 1, 1), (1, 1, 1), 1, 8),
    # the transposed-convolution shape k2 s2: 1x1x1 taps per phase.
    ("k2-s2", (1, 3, 4, 4, 6), (2, 3, 2, 2, 2), (2, 2, 2), (1, 1, 1),
     (0, 0, 0), (0, 0, 0), 1, 8),
    # stride 3 > kernel 2 along width: a phase that no tap reaches.
    ("stride-beyond-kernel", (1, 2, 1, 3, 8), (2, 2, 1, 2, 2), (1, 1, 3),
     (1, 1, 1), (0, 1, 0), (0, 0, 0), 1, 3),
    # unit stride with dilation, groups, 1-element axes.
    ("dilated-grouped", (2, 4, 1, 5, 6), (6, 2, 1, 2, 3), (1, 1, 1),
     (1, 2, 2), (0, 1, 2), (0, 0, 1), 2, 1),
]


@pytest.mark.parametrize("with_bias", [False, True], ids=["", "bias"])
@pytest.mark.parametrize("case", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_backward_data_phases(case, with_bias):
    _, xs, ws, s, d, lo, hi, g, nphases = case
    dtype = np.float32
    x, w, b, gy = make(xs, ws, s, d, lo, hi, g, dtype, seed=3)
    p = plan.backward_data_plan(gy.shape, w.shape, xs, s, d, lo, g, 4)
    assert p.kernel == "phases", p.reason
    assert len(p.phases) == nphases
    run_backward_data(gy, w, xs, s, d, lo, g, dtype,
                      b=np.arange(xs[1], dtype=dtype) if with_bias else None)


def test_backward_data_float64_and_empty_batch():
    x, w, b, gy = make((1, 2, 3, 4, 5), (2, 2, 3, 2, 3), (2, 1, 2),
                       (1, 1, 1), (1, 0, 1), (1, 0, 1), 1, np.float64)
    run_backward_data(gy, w, x.shape, (2, 1, 2), (1, 1, 1), (1, 0, 1), 1,
                      np.float64)
    x, w, b, gy = make((0, 2, 3, 4, 5), (2, 2, 3, 2, 3), (2, 1, 2),
                       (1, 1, 1), (1, 0, 1), (1, 0, 1), 1, np.float64)
    run_backward_data(gy, w, x.shape, (2, 1, 2), (1, 1, 1), (1, 0, 1), 1,
                      np.float64)


def test_backward_data_gather_when_stride_and_dilation_meet():
    s, d = (1, 2, 1), (1, 2, 1)
    x, w, b, gy = make((1, 2, 2, 7, 3), (2, 2, 1, 2, 2), s, d, (0, 1, 0),
                       (0, 0, 1), 1, np.float32)
    p = plan.backward_data_plan(gy.shape, w.shape, x.shape, s, d, (0, 1, 0),
                                1, 4)
    assert p.kernel == "gather"
    run_backward_data(gy, w, x.shape, s, d, (0, 1, 0), 1, np.float32, b=b)


# The simulator computes inf * 0 in NumPy scalars, which warn.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_backward_data_nonfinite_weight_takes_the_exact_gather():
    """With an inf weight, an input that a tap never reaches gets nothing
    from it (no inf * 0 from the phase kernels' zero border)."""
    s, d, lo = (1, 1, 2), (1, 1, 1), (0, 0, 1)
    x, w, b, gy = make((1, 2, 1, 3, 6), (2, 2, 1, 2, 3), s, d, lo, (0, 0, 0),
                       1, np.float64)
    w[1, 0, 0, 1, 2] = np.inf
    with np.errstate(invalid="ignore"):
        got, want = run_backward_data(gy, w, x.shape, s, d, lo, 1, np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    assert finite.any() and not finite.all()
    close(got[finite], want[finite], np.float64)


# --- weight and bias gradients ----------------------------------------------

# (id, x, w, stride, dilation, pad_lo, pad_hi, groups, plan checks)
WEIGHT_CASES = [
    # tiles not multiples of (4, 4, 16), several chunks and a second pass.
    ("k3-chunks", (2, 2, 5, 5, 5), (3, 2, 3, 3, 3), (1, 1, 1), (1, 1, 1),
     (1, 1, 1), (1, 1, 1), 1, lambda p: p.chunks > 1),
    # 10 channels x 27 taps = 270 columns: two column blocks; Kg = 9: two
    # channel blocks; one chunk (written straight into gw).
    ("column-and-channel-blocks", (1, 10, 2, 2, 2), (9, 10, 3, 3, 3),
     (1, 1, 1), (1, 1, 1), (1, 1, 1), (1, 1, 1), 1,
     lambda p: p.col_blocks == 2 and p.k_blocks == 2),
    # stride, dilation, groups, asymmetric padding.
    ("strided-dilated-grouped", (1, 4, 4, 5, 7), (4, 2, 2, 2, 3), (2, 1, 2),
     (1, 2, 1), (1, 0, 2), (0, 1, 1), 2, lambda p: True),
    # 2-D (exchanged axes) and 1-D.
    ("2d-lift", (2, 2, 1, 5, 6), (3, 2, 1, 3, 3), (1, 1, 1), (1, 1, 1),
     (0, 1, 1), (0, 1, 1), 1, lambda p: p.swap),
    ("1d", (2, 3, 1, 1, 11), (2, 3, 1, 1, 4), (1, 1, 2), (1, 1, 1),
     (0, 0, 1), (0, 0, 2), 1, lambda p: not p.swap),
]


@pytest.mark.parametrize("case", WEIGHT_CASES, ids=[c[0] for c in WEIGHT_CASES])
def test_backward_weight_chunks(case):
    _, xs, ws, s, d, lo, hi, g, check = case
    dtype = np.float32
    x, w, b, gy = make(xs, ws, s, d, lo, hi, g, dtype, seed=5)
    p = plan.weight_plan(xs, ws, gy.shape, s, d, lo, g, 4)
    assert p.kernel == "chunked" and check(p), p
    run_backward_weight(x, gy, ws, s, d, lo, g, dtype)


def test_backward_weight_float64_capped_grid_and_empty_batch(monkeypatch):
    monkeypatch.setattr(bw, "MAX_BLOCKS", 1)
    x, w, b, gy = make((2, 2, 3, 3, 3), (2, 2, 2, 2, 2), (1, 1, 1),
                       (1, 1, 1), (0, 0, 0), (0, 0, 0), 1, np.float64)
    assert plan.weight_plan(x.shape, w.shape, gy.shape, (1, 1, 1), (1, 1, 1),
                            (0, 0, 0), 1, 8).chunks > 1
    run_backward_weight(x, gy, w.shape, (1, 1, 1), (1, 1, 1), (0, 0, 0), 1,
                        np.float64)
    x, w, b, gy = make((0, 2, 3, 3, 3), (2, 2, 2, 2, 2), (1, 1, 1),
                       (1, 1, 1), (0, 0, 0), (0, 0, 0), 1, np.float64)
    run_backward_weight(x, gy, w.shape, (1, 1, 1), (1, 1, 1), (0, 0, 0), 1,
                        np.float64)


def test_weight_gradient_is_bit_identical_run_to_run():
    x, w, b, gy = make((2, 2, 5, 5, 5), (3, 2, 3, 3, 3), (1, 1, 1),
                       (1, 1, 1), (1, 1, 1), (1, 1, 1), 1, np.float32, seed=9)
    dx, dgy = cuda.to_device(x), cuda.to_device(gy)
    results = []
    for _ in range(2):
        gw = nan_full(w.shape, np.float32)
        bw.weight_launch(dx, dgy, (1, 1, 1), (1, 1, 1), (1, 1, 1), 1, gw)
        results.append(gw.copy_to_host().tobytes())
    assert results[0] == results[1]


@pytest.mark.parametrize("shape", [(2, 3, 8, 16, 16), (1, 2, 1, 1, 5),
                                   (0, 2, 3, 3, 3)],
                         ids=["chunks", "one-chunk", "empty"])
def test_bias_gradient_chunks(shape):
    gy = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    chunks = plan.bias_chunks(shape)
    assert (chunks > 1) == (shape[0] == 2)
    gb = nan_full(shape[1], np.float32)
    bw.bias_launch(cuda.to_device(gy), gb)
    want = gy.astype(np.float64).sum(axis=(0, 2, 3, 4))
    close(gb.copy_to_host(), want, np.float32)


# --- the plan ------------------------------------------------------------------

def test_plan_docstring_examples():
    import doctest
    result = doctest.testmod(plan, optionflags=doctest.ELLIPSIS
                             | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 5 and result.failed == 0


def test_plan_explains_each_choice():
    one, zero = (1, 1, 1), (0, 0, 0)
    line = plan.explain("forward", (4, 32, 32, 32, 32), (32, 32, 3, 3, 3),
                        (4, 32, 32, 32, 32), one, one, one, 1, 4)
    assert line.startswith("forward: tiled") and "(3, 3, 3)" in line
    line = plan.explain("backward_data", (1, 4, 8, 8, 8), (4, 2, 2, 2, 2),
                        (1, 2, 16, 16, 16), (2, 2, 2), one, zero, 1, 4)
    assert line.startswith("backward_data: phases")
    line = plan.explain("backward_weight", (4, 32, 32, 32, 32),
                        (32, 32, 3, 3, 3), (4, 32, 32, 32, 32), one, one, one,
                        1, 8)
    assert line.startswith("backward_weight: chunked")


# --- the GPU benchmark script ---------------------------------------------------

def test_gpu_bench_runs_on_tiny_shapes(tmp_path):
    """bench/gpu_bench.py end to end on tiny shapes: the numbaconv calls,
    the comparison with PyTorch (its CPU build stands in without a GPU),
    the table and the chart."""
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "bench", "gpu_bench.py")
    spec = importlib.util.spec_from_file_location("gpu_bench", path)
    gpu_bench = importlib.util.module_from_spec(spec)
    sys.modules["gpu_bench"] = gpu_bench     # dataclasses look it up
    try:
        spec.loader.exec_module(gpu_bench)
    finally:
        sys.modules.pop("gpu_bench", None)
    out, png = tmp_path / "r.md", tmp_path / "r.png"
    rc = gpu_bench.main(["--tiny", "--out", str(out), "--png", str(png),
                         "--only", "32^3 k3 train float32,k2 s2"])
    assert rc == 0
    text = out.read_text()
    assert "conv3d 4x32->32 32^3 k3 train | float32" in text
    assert "k2 s2 | float32" in text
    assert "MISMATCH" not in text
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not png.exists()
    else:
        assert png.stat().st_size > 1000
    try:
        import torch  # noqa: F401
    except ImportError:
        return
    assert "ratio PyTorch" in text     # the peer ran and was compared
