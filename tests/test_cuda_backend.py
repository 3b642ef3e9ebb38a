"""Tests of the CUDA backend (``numbaconv.cuda``) against NumPy references.

Run on an NVIDIA GPU, or without one under Numba's CUDA simulator:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_cuda_backend.py

(the variable must be set before Numba is imported).  Without either, the
module is skipped.  The simulator runs every CUDA thread as a Python thread,
so the shapes here are tiny.

The references are written independently of the kernels: forward and the
weight gradient as sums of strided slices of a zero-padded input, the data
gradient in scatter form (the kernels gather), padding with ``numpy.pad``,
and its adjoint by padding an array of indices with ``numpy.pad``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import numbaconv.cuda as nc_cuda

pytestmark = pytest.mark.cuda

_OK, _REASON = nc_cuda.cuda_status()
if not _OK:
    pytest.skip(f"CUDA backend not usable: {_REASON}", allow_module_level=True)

from numba import cuda  # noqa: E402  (only once CUDA is known to be usable)

from numbaconv import _config  # noqa: E402
from numbaconv.cuda import _indexing, arrays  # noqa: E402
from numbaconv.cuda.backend import CUDABackend  # noqa: E402

SIMULATOR = nc_cuda._simulator_enabled()
DTYPES = [np.float32, np.float64]
NP_PAD_MODE = {"reflect": "reflect", "replicate": "edge",
               "circular": "wrap", "symmetric": "symmetric"}


@pytest.fixture(scope="module", autouse=True)
def _fast_simulator_barriers():
    # The simulator's syncthreads polls its Python threads under the GIL; a
    # short switch interval lets blocked threads resume promptly, which
    # makes the block reductions an order of magnitude faster to simulate.
    if not SIMULATOR:
        yield
        return
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@pytest.fixture(scope="module")
def be():
    backend = nc_cuda.get_backend()
    assert isinstance(backend, CUDABackend) and backend.name == "cuda"
    assert nc_cuda.require_backend() is backend
    return backend


def tol(dtype):
    return dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else \
        dict(rtol=1e-12, atol=1e-12)


def garbage(be, shape, dtype):
    """A device array full of NaN: kernels must overwrite every element."""
    return cuda.to_device(np.full(shape, np.nan, dtype))


# --- references (float64 NumPy) ---------------------------------------------

def out_size(size, k, s, d, lo, hi):
    return (size + lo + hi - d * (k - 1) - 1) // s + 1


def _windows(xp, taps, stride, dilation, out_spatial):
    """Slices of the padded input read by each tap, shape (N, C, *out)."""
    return tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                 for t, s, d, o in zip(taps, stride, dilation, out_spatial))


def _padded_extent(x_spatial, k_spatial, stride, dilation, pad_lo,
                   out_spatial):
    """Zero-padding (lo, hi) per axis so that every tap read is in range."""
    pads = []
    for size, k, s, d, lo, o in zip(x_spatial, k_spatial, stride, dilation,
                                    pad_lo, out_spatial):
        need = (o - 1) * s + (k - 1) * d + 1
        pads.append((lo, max(0, need - lo - size)))
    return pads


def ref_forward(x, w, b, stride, dilation, pad_lo, groups, out_spatial):
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    n, c = x.shape[:2]
    k, cg = w.shape[:2]
    kg = k // groups
    pads = _padded_extent(x.shape[2:], w.shape[2:], stride, dilation, pad_lo,
                          out_spatial)
    xp = np.pad(x, [(0, 0), (0, 0)] + pads)
    y = np.zeros((n, k) + tuple(out_spatial))
    for g in range(groups):
        xs = xp[:, g * cg:(g + 1) * cg]
        ws = w[g * kg:(g + 1) * kg]
        for taps in np.ndindex(*w.shape[2:]):
            win = _windows(xp, taps, stride, dilation, out_spatial)
            patch = xs[(slice(None), slice(None)) + win]
            tap = ws[(slice(None), slice(None)) + taps]
            y[:, g * kg:(g + 1) * kg] += np.einsum("ncdhw,kc->nkdhw", patch,
                                                   tap)
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None, None]
    return y


def ref_backward_data(gy, w, x_shape, stride, dilation, pad_lo, groups):
    """Scatter form: every gy element adds w * gy to the inputs it read."""
    gy = gy.astype(np.float64)
    w = w.astype(np.float64)
    k, cg = w.shape[:2]
    kg = k // groups
    out_spatial = gy.shape[2:]
    pads = _padded_extent(x_shape[2:], w.shape[2:], stride, dilation, pad_lo,
                          out_spatial)
    gxp = np.zeros(x_shape[:2] + tuple(s + lo + hi for s, (lo, hi)
                                       in zip(x_shape[2:], pads)))
    for g in range(groups):
        for taps in np.ndindex(*w.shape[2:]):
            win = _windows(gxp, taps, stride, dilation, out_spatial)
            gxp[(slice(None), slice(g * cg, (g + 1) * cg)) + win] += np.einsum(
                "nkdhw,kc->ncdhw", gy[:, g * kg:(g + 1) * kg],
                w[(slice(g * kg, (g + 1) * kg), slice(None)) + taps])
    crop = tuple(slice(lo, lo + s) for s, (lo, _) in zip(x_shape[2:], pads))
    return gxp[(slice(None), slice(None)) + crop]


def ref_backward_weight(x, gy, w_shape, stride, dilation, pad_lo, groups):
    x = x.astype(np.float64)
    gy = gy.astype(np.float64)
    k, cg = w_shape[:2]
    kg = k // groups
    out_spatial = gy.shape[2:]
    pads = _padded_extent(x.shape[2:], w_shape[2:], stride, dilation, pad_lo,
                          out_spatial)
    xp = np.pad(x, [(0, 0), (0, 0)] + pads)
    gw = np.zeros(w_shape)
    for g in range(groups):
        for taps in np.ndindex(*w_shape[2:]):
            win = _windows(xp, taps, stride, dilation, out_spatial)
            patch = xp[(slice(None), slice(g * cg, (g + 1) * cg)) + win]
            gw[(slice(g * kg, (g + 1) * kg), slice(None)) + taps] = np.einsum(
                "nkdhw,ncdhw->kc", gy[:, g * kg:(g + 1) * kg], patch)
    return gw


def ref_pad(x, lo, hi, mode):
    widths = [(0, 0), (0, 0)] + list(zip(lo, hi))
    return np.pad(x.astype(np.float64), widths, mode=NP_PAD_MODE[mode])


def ref_pad_backward(gp, x_shape, lo, hi, mode):
    """Adjoint of ``ref_pad``: pad the flat indices, then sum by source."""
    size = int(np.prod(x_shape))
    index = np.arange(size).reshape(x_shape)
    widths = [(0, 0), (0, 0)] + list(zip(lo, hi))
    source = np.pad(index, widths, mode=NP_PAD_MODE[mode])
    return np.bincount(source.ravel(), weights=gp.astype(np.float64).ravel(),
                       minlength=size).reshape(x_shape)


# --- convolution primitives -------------------------------------------------

# (id, x shape, w shape, stride, dilation, pad_lo, pad_hi, groups, bias)
CONV_CASES = [
    ("plain", (2, 2, 3, 4, 5), (2, 2, 2, 2, 3),
     (1, 1, 1), (1, 1, 1), (0, 0, 0), (0, 0, 0), 1, True),
    ("strided-dilated-grouped-asymmetric", (1, 4, 4, 5, 6), (4, 2, 2, 2, 2),
     (2, 1, 2), (1, 2, 1), (1, 0, 2), (0, 1, 1), 2, False),
    ("depthwise-lifted-1d", (2, 2, 1, 1, 7), (2, 1, 1, 1, 3),
     (1, 1, 2), (1, 1, 2), (0, 0, 3), (0, 0, 1), 2, True),
    ("stride-beyond-kernel", (1, 2, 1, 3, 7), (2, 2, 1, 2, 1),
     (1, 1, 3), (1, 1, 1), (0, 1, 0), (0, 0, 0), 1, False),
]
CONV_IDS = [case[0] for case in CONV_CASES]


def make_conv_case(case, dtype, seed=0):
    _, xs, ws, stride, dilation, pad_lo, pad_hi, groups, bias = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype) if bias else None
    out_spatial = tuple(out_size(*a) for a in zip(
        xs[2:], ws[2:], stride, dilation, pad_lo, pad_hi))
    gy = rng.standard_normal((xs[0], ws[0]) + out_spatial).astype(dtype)
    return x, w, b, gy, stride, dilation, pad_lo, groups


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_forward(be, case, dtype):
    x, w, b, gy, stride, dilation, pad_lo, groups = make_conv_case(case, dtype)
    out = garbage(be, gy.shape, dtype)
    be.forward(cuda.to_device(x), cuda.to_device(w),
               None if b is None else cuda.to_device(b),
               stride, dilation, pad_lo, groups, out)
    got = out.copy_to_host()
    assert got.dtype == dtype
    want = ref_forward(x, w, b, stride, dilation, pad_lo, groups, gy.shape[2:])
    np.testing.assert_allclose(got, want, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_backward_data(be, case, dtype):
    x, w, _, gy, stride, dilation, pad_lo, groups = make_conv_case(case, dtype)
    gx = garbage(be, x.shape, dtype)
    be.backward_data(cuda.to_device(gy), cuda.to_device(w), stride, dilation,
                     pad_lo, groups, gx)
    got = gx.copy_to_host()
    assert got.dtype == dtype
    want = ref_backward_data(gy, w, x.shape, stride, dilation, pad_lo, groups)
    np.testing.assert_allclose(got, want, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_backward_weight(be, case, dtype):
    x, w, _, gy, stride, dilation, pad_lo, groups = make_conv_case(case, dtype)
    gw = garbage(be, w.shape, dtype)
    be.backward_weight(cuda.to_device(x), cuda.to_device(gy), stride,
                       dilation, pad_lo, groups, gw)
    got = gw.copy_to_host()
    assert got.dtype == dtype
    want = ref_backward_weight(x, gy, w.shape, stride, dilation, pad_lo,
                               groups)
    np.testing.assert_allclose(got, want, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_grad(be, dtype):
    rng = np.random.default_rng(1)
    gy = rng.standard_normal((3, 4, 2, 3, 5)).astype(dtype)
    gb = garbage(be, (4,), dtype)
    be.bias_grad(cuda.to_device(gy), gb)
    np.testing.assert_allclose(gb.copy_to_host(),
                               gy.astype(np.float64).sum(axis=(0, 2, 3, 4)),
                               **tol(dtype))


def test_adjoint_identity(be):
    """<forward(x), g> == <x, backward_data(g)>, with both from the kernels."""
    case = CONV_CASES[1]
    x, w, _, gy, stride, dilation, pad_lo, groups = make_conv_case(
        case, np.float64, seed=3)
    y = be.empty(gy.shape, np.float64)
    be.forward(cuda.to_device(x), cuda.to_device(w), None, stride, dilation,
               pad_lo, groups, y)
    gx = be.empty(x.shape, np.float64)
    be.backward_data(cuda.to_device(gy), cuda.to_device(w), stride, dilation,
                     pad_lo, groups, gx)
    lhs = np.vdot(y.copy_to_host(), gy)
    rhs = np.vdot(x, gx.copy_to_host())
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_reductions_are_bit_identical_across_runs(be):
    x, w, _, gy, stride, dilation, pad_lo, groups = make_conv_case(
        CONV_CASES[2], np.float32, seed=4)
    dx, dgy = cuda.to_device(x), cuda.to_device(gy)
    results = []
    for _ in range(2):
        gw = garbage(be, w.shape, np.float32)
        be.backward_weight(dx, dgy, stride, dilation, pad_lo, groups, gw)
        gb = garbage(be, (w.shape[0],), np.float32)
        be.bias_grad(dgy, gb)
        results.append((gw.copy_to_host(), gb.copy_to_host()))
    for first, second in zip(*results):
        assert first.tobytes() == second.tobytes()


def test_capped_grid_still_covers_every_element(be, monkeypatch):
    """With the grid capped at one block, the grid-stride loops do the rest."""
    monkeypatch.setattr(_indexing, "MAX_BLOCKS", 1)
    monkeypatch.setattr(_config, "CUDA_BLOCK", 32)
    case = CONV_CASES[0]
    x, w, b, gy, stride, dilation, pad_lo, groups = make_conv_case(
        case, np.float64)
    out = garbage(be, gy.shape, np.float64)  # 72 elements, 32 threads
    be.forward(cuda.to_device(x), cuda.to_device(w), cuda.to_device(b),
               stride, dilation, pad_lo, groups, out)
    np.testing.assert_allclose(
        out.copy_to_host(),
        ref_forward(x, w, b, stride, dilation, pad_lo, groups, gy.shape[2:]),
        **tol(np.float64))
    gw = garbage(be, w.shape, np.float64)  # 48 weights, one block
    be.backward_weight(cuda.to_device(x), cuda.to_device(gy), stride,
                       dilation, pad_lo, groups, gw)
    np.testing.assert_allclose(
        gw.copy_to_host(),
        ref_backward_weight(x, gy, w.shape, stride, dilation, pad_lo, groups),
        **tol(np.float64))


def test_concurrent_calls_from_threads(be):
    """Calls from a thread pool (as dask's threaded scheduler makes them)."""
    from concurrent.futures import ThreadPoolExecutor

    def run(seed):
        x, w, b, gy, stride, dilation, pad_lo, groups = make_conv_case(
            CONV_CASES[2], np.float64, seed=seed)
        out = be.empty(gy.shape, np.float64)
        be.forward(cuda.to_device(x), cuda.to_device(w), cuda.to_device(b),
                   stride, dilation, pad_lo, groups, out)
        want = ref_forward(x, w, b, stride, dilation, pad_lo, groups,
                           gy.shape[2:])
        return np.abs(out.copy_to_host() - want).max()

    with ThreadPoolExecutor(max_workers=3) as pool:
        errors = list(pool.map(run, range(4)))
    assert max(errors) < 1e-12


def test_empty_batch(be):
    """No zero-size grid is launched; reductions over nothing give zeros."""
    x = np.zeros((0, 2, 3, 3, 3))
    w = np.ones((2, 2, 2, 2, 2))
    gy = np.zeros((0, 2, 2, 2, 2))
    dx, dw, dgy = cuda.to_device(x), cuda.to_device(w), cuda.to_device(gy)
    one = (1, 1, 1)
    zero = (0, 0, 0)
    be.forward(dx, dw, None, one, one, zero, 1, be.empty(gy.shape, x.dtype))
    be.backward_data(dgy, dw, one, one, zero, 1, be.empty(x.shape, x.dtype))
    gw = garbage(be, w.shape, np.float64)
    be.backward_weight(dx, dgy, one, one, zero, 1, gw)
    np.testing.assert_array_equal(gw.copy_to_host(), 0.0)
    gb = garbage(be, (2,), np.float64)
    be.bias_grad(dgy, gb)
    np.testing.assert_array_equal(gb.copy_to_host(), 0.0)
    be.pad(dx, (1, 1, 1), (1, 1, 1), "reflect", be.empty((0, 2, 5, 5, 5),
                                                          x.dtype))
    be.pad_backward(be.empty((0, 2, 5, 5, 5), x.dtype), (1, 1, 1), (1, 1, 1),
                    "reflect", be.empty(x.shape, x.dtype))


def test_empty_output_space_gives_zero_weight_gradient(be):
    x = cuda.to_device(np.ones((1, 1, 1, 1, 2)))
    gy = cuda.to_device(np.ones((1, 1, 1, 1, 0)))
    gw = garbage(be, (1, 1, 1, 1, 3), np.float64)
    be.backward_weight(x, gy, (1, 1, 1), (1, 1, 1), (0, 0, 0), 1, gw)
    np.testing.assert_array_equal(gw.copy_to_host(), 0.0)


def test_nan_and_inf_propagate(be):
    x = np.ones((1, 1, 1, 1, 4))
    x[0, 0, 0, 0, 1] = np.nan
    x[0, 0, 0, 0, 3] = np.inf
    w = np.ones((1, 1, 1, 1, 1))
    out = garbage(be, x.shape, np.float64)
    be.forward(cuda.to_device(x), cuda.to_device(w), None, (1, 1, 1),
               (1, 1, 1), (0, 0, 0), 1, out)
    np.testing.assert_array_equal(out.copy_to_host(), x)


# --- padding ----------------------------------------------------------------

# (x shape, lo, hi): asymmetric, and within every mode's limits.
PAD_SHAPE, PAD_LO, PAD_HI = (1, 2, 3, 4, 5), (1, 2, 0), (2, 0, 3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", list(NP_PAD_MODE))
def test_pad(be, mode, dtype):
    x = np.random.default_rng(5).standard_normal(PAD_SHAPE).astype(dtype)
    want = ref_pad(x, PAD_LO, PAD_HI, mode)
    out = garbage(be, want.shape, dtype)
    be.pad(cuda.to_device(x), PAD_LO, PAD_HI, mode, out)
    np.testing.assert_array_equal(out.copy_to_host(), want.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", list(NP_PAD_MODE))
def test_pad_backward(be, mode, dtype):
    padded = tuple(s + lo + hi for s, lo, hi in zip(PAD_SHAPE[2:], PAD_LO,
                                                    PAD_HI))
    gp = np.random.default_rng(6).standard_normal(
        PAD_SHAPE[:2] + padded).astype(dtype)
    gx = garbage(be, PAD_SHAPE, dtype)
    be.pad_backward(cuda.to_device(gp), PAD_LO, PAD_HI, mode, gx)
    np.testing.assert_allclose(gx.copy_to_host(),
                               ref_pad_backward(gp, PAD_SHAPE, PAD_LO, PAD_HI,
                                                mode), **tol(dtype))


@pytest.mark.parametrize("mode", ["replicate", "symmetric", "circular"])
def test_pad_wider_than_the_axis(be, mode):
    """Halos longer than the axis wrap or mirror more than once."""
    shape, lo, hi = (1, 1, 1, 2, 3), (0, 3, 1), (1, 2, 5)
    x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    want = ref_pad(x, lo, hi, mode)
    out = garbage(be, want.shape, np.float64)
    be.pad(cuda.to_device(x), lo, hi, mode, out)
    np.testing.assert_array_equal(out.copy_to_host(), want)
    gp = np.random.default_rng(7).standard_normal(want.shape)
    gx = garbage(be, shape, np.float64)
    be.pad_backward(cuda.to_device(gp), lo, hi, mode, gx)
    np.testing.assert_allclose(gx.copy_to_host(),
                               ref_pad_backward(gp, shape, lo, hi, mode),
                               **tol(np.float64))


# --- 64-bit index arithmetic ------------------------------------------------

@cuda.jit
def _thread_index_probe(block_idx, block_dim, thread_idx, out):
    for i in range(out.size):
        out[i] = _indexing.flat_thread_index(block_idx[i], block_dim[i],
                                             thread_idx[i])


@cuda.jit
def _unravel_probe(flat, dims, out):
    for i in range(flat.size):
        a, b, c, d, e = _indexing.unravel5(flat[i], dims[1], dims[2], dims[3],
                                           dims[4])
        out[i, 0] = a
        out[i, 1] = b
        out[i, 2] = c
        out[i, 3] = d
        out[i, 4] = e


@cuda.jit
def _tap_probe(values, out):
    # values: (o or i, t, stride, dilation, pad_lo, out_size) per row
    for r in range(values.shape[0]):
        out[r, 0] = _indexing.tap_input_index(values[r, 0], values[r, 1],
                                              values[r, 2], values[r, 3],
                                              values[r, 4])
        out[r, 1] = _indexing.tap_output_index(values[r, 0], values[r, 1],
                                               values[r, 2], values[r, 3],
                                               values[r, 4], values[r, 5])


def test_thread_index_is_64_bit():
    """32-bit CUDA coordinates whose flat index passes 2**31 (and 2**32)."""
    block_idx = np.array([2**31 - 1, 2**31 - 1, 3_000_000, 5], np.int32)
    block_dim = np.array([1024, 1, 1024, 128], np.int32)
    thread_idx = np.array([1023, 0, 17, 3], np.int32)
    out = cuda.device_array(4, np.int64)
    _thread_index_probe[1, 1](cuda.to_device(block_idx),
                              cuda.to_device(block_dim),
                              cuda.to_device(thread_idx), out)
    want = (block_idx.astype(object) * block_dim.astype(object)
            + thread_idx.astype(object))
    assert out.copy_to_host().tolist() == want.tolist()
    assert want[0] == 2**41 - 1


def test_unravel_is_64_bit():
    dims = np.array([5, 3, 1024, 1024, 1024], np.int64)  # 16 Gi elements
    flat = np.array([0, 2**31 + 7, 2**32 + 12345, int(np.prod(dims)) - 1],
                    np.int64)
    out = cuda.device_array((flat.size, 5), np.int64)
    _unravel_probe[1, 1](cuda.to_device(flat), cuda.to_device(dims), out)
    want = np.stack(np.unravel_index(flat, tuple(dims)), axis=1)
    np.testing.assert_array_equal(out.copy_to_host(), want)


def test_tap_indices_are_64_bit():
    big = 3 * 2**31
    rows = np.array([
        # o/i,     t, stride, dilation, pad_lo, out_size
        [big, 2, 3, 5, 7, 2 * big],
        [big + 1, 1, 2, 2**31, 4, 2 * big],
        [9 * 2**30 + 3, 3, 4, 1, 0, 2**40],
    ], np.int64)
    out = cuda.device_array((rows.shape[0], 2), np.int64)
    _tap_probe[1, 1](cuda.to_device(rows), out)
    got = out.copy_to_host()
    for r, (o, t, s, d, p, n) in enumerate(rows.tolist()):
        assert got[r, 0] == o * s + t * d - p
        num = o + p - t * d
        want = num // s if num >= 0 and num % s == 0 and num // s < n else -1
        assert got[r, 1] == want


def test_launch_geometry(monkeypatch):
    monkeypatch.setattr(_config, "CUDA_BLOCK", 128)
    assert _indexing.elementwise_launch(1) == (1, 128)
    assert _indexing.elementwise_launch(3 * 2**40) == (_indexing.MAX_BLOCKS,
                                                       128)
    assert _indexing.reduction_launch(10, 5) == (10, 32)
    assert _indexing.reduction_launch(10, 100) == (10, 128)
    monkeypatch.setattr(_config, "CUDA_BLOCK", 100)  # not a power of two
    assert _indexing.reduction_threads(10**9) == 64


# --- array interop ----------------------------------------------------------

class _CAIHolder:
    """A foreign GPU array: exposes only ``__cuda_array_interface__``."""

    def __init__(self, device_array):
        self._keep = device_array
        if SIMULATOR:  # simulated device memory is host memory
            host = device_array._ary
            self.__cuda_array_interface__ = {
                "shape": host.shape, "strides": host.strides,
                "typestr": host.dtype.str, "data": (host.ctypes.data, False),
                "version": 3, "stream": None}
        else:
            self.__cuda_array_interface__ = dict(
                device_array.__cuda_array_interface__)


def test_is_cuda_array():
    d = cuda.to_device(np.zeros(3))
    assert arrays.is_cuda_array(d)
    assert arrays.is_cuda_array(_CAIHolder(d))
    assert not arrays.is_cuda_array(np.zeros(3))
    assert not arrays.is_cuda_array([1.0, 2.0])
    assert not arrays.is_cuda_array(3.0)


def test_as_device_array_is_zero_copy_and_wrap_like(be):
    d = cuda.to_device(np.arange(24, dtype=np.float32).reshape(1, 2, 1, 3, 4))
    assert arrays.as_device_array(d) is d
    assert arrays.wrap_like(d, d) is d
    foreign = _CAIHolder(d)
    view = arrays.as_device_array(foreign)
    assert view.shape == d.shape and view.dtype == d.dtype
    # Write through the view; the original must see it.
    be.pad_backward(cuda.to_device(np.ones((1, 2, 1, 3, 4), np.float32)),
                    (0, 0, 0), (0, 0, 0), "replicate", view)
    np.testing.assert_array_equal(d.copy_to_host(), 1.0)
    assert arrays.wrap_like(view, foreign) is view
    host = arrays.wrap_like(view, np.zeros(1))
    assert isinstance(host, np.ndarray) and host.shape == d.shape


@pytest.mark.skipif(not SIMULATOR, reason="fakes a DLPack device with host "
                    "memory, which only the simulator can read")
def test_dlpack_producer_is_zero_copy():
    host = np.arange(6.0).reshape(2, 3)

    class Producer:
        def __dlpack__(self, stream=None):
            return host.__dlpack__()

        def __dlpack_device__(self):
            return (2, 0)  # claims CUDA

    producer = Producer()
    assert arrays.is_cuda_array(producer)
    view = arrays.as_device_array(producer)
    assert view.shape == (2, 3)
    np.testing.assert_array_equal(view.copy_to_host(), host)
    host[1, 2] = 42.0
    assert view.copy_to_host()[1, 2] == 42.0
    assert arrays.device_id(producer) == 0


def test_device_id_and_context():
    d = cuda.to_device(np.zeros(4))
    index = arrays.device_id(d)
    expected = 0 if SIMULATOR else cuda.get_current_device().id
    assert index == expected
    with arrays.device_context(index):
        pass
    with arrays.device_context(None):
        pass
    assert arrays.device_id(np.zeros(3)) is None


def test_host_round_trip_and_ascontiguous():
    a = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    d = arrays.to_device(a[:, ::2])  # non-contiguous host input
    np.testing.assert_array_equal(arrays.to_host(d), a[:, ::2])
    full = arrays.to_device(a)
    assert arrays.ascontiguous(full) is full
    strided = full[:, 1:, ::2]
    assert not strided.is_c_contiguous()
    packed = arrays.ascontiguous(strided)
    assert packed.is_c_contiguous()
    np.testing.assert_array_equal(arrays.to_host(packed), a[:, 1:, ::2])


def test_copy_into_strided_target():
    target = arrays.to_device(np.zeros((2, 3, 4)))
    arrays.copy_into(target[:, ::2, 1:], np.ones((2, 2, 3)))  # from the host
    source = arrays.to_device(np.full((3, 2), 7.0))
    arrays.copy_into(target[1, :, ::3], source)  # device to device
    want = np.zeros((2, 3, 4))
    want[:, ::2, 1:] = 1.0
    want[1, :, ::3] = 7.0
    np.testing.assert_array_equal(arrays.to_host(target), want)
    with pytest.raises(ValueError, match="shape"):
        arrays.copy_into(target, source)


def test_torch_cuda_interop(be):
    if SIMULATOR:
        pytest.skip("needs a CUDA device")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs PyTorch with a CUDA device")
    t = torch.arange(24, dtype=torch.float32, device="cuda").reshape(
        1, 2, 1, 3, 4).requires_grad_(False)
    assert arrays.is_cuda_array(t)
    assert arrays.device_id(t) == t.device.index
    d = arrays.as_device_array(t)
    out = be.empty(d.shape, np.float32)
    be.pad(d, (0, 0, 0), (0, 0, 0), "reflect", out)
    back = arrays.wrap_like(out, t)
    assert isinstance(back, torch.Tensor) and back.device == t.device
    assert torch.equal(back, t)
    assert not arrays.is_cuda_array(torch.zeros(3))


def test_cupy_interop(be):
    if SIMULATOR:
        pytest.skip("needs a CUDA device")
    cupy = pytest.importorskip("cupy")
    a = cupy.arange(24, dtype=cupy.float64).reshape(1, 2, 1, 3, 4)
    assert arrays.is_cuda_array(a)
    d = arrays.as_device_array(a)
    out = be.empty(d.shape, np.float64)
    be.pad(d, (0, 0, 0), (0, 0, 0), "circular", out)
    back = arrays.wrap_like(out, a)
    assert isinstance(back, cupy.ndarray)
    assert bool((back == a).all())


# --- availability -----------------------------------------------------------

def test_status_without_numba_cuda(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "numba_cuda"
                        else real(name, *a))
    ok, reason = nc_cuda._probe.__wrapped__()
    assert not ok
    assert "numba-cuda" in reason and 'pip install "numbaconv[cuda]"' in reason


def test_import_needs_no_gpu():
    """Importing the package (and telling arrays apart) imports no CUDA;
    the status never raises."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    code = ("import sys, numpy, numbaconv.cuda as c\n"
            "from numbaconv.cuda.arrays import is_cuda_array\n"
            "assert not is_cuda_array(numpy.zeros(3))\n"
            "assert 'numba.cuda' not in sys.modules\n"
            "ok, why = c.cuda_status()\n"
            "assert isinstance(ok, bool) and why\n"
            "print(ok, why)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
