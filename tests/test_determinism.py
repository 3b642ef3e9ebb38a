"""Determinism: outputs and gradients are bit-identical run to run and
whatever the number of threads.

The CPU kernels give every output element to exactly one task and sum each
reduction (weight and bias gradients, the padding adjoint) in a fixed order,
so neither repetition nor ``numba.set_num_threads`` may change a single bit.
Every op is run at 1 thread and at every other thread count up to
``NUMBA_NUM_THREADS`` (at most 1, 2 and the maximum), three times each.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

import numbaconv

REPEATS = 3
SIZES = {1: (37,), 2: (13, 11), 3: (7, 6, 9)}


def thread_counts():
    top = numba.config.NUMBA_NUM_THREADS
    return sorted({1, min(2, top), top})


def _bits(results):
    """Bytes of every array in a (possibly nested) result, with shapes/dtypes."""
    if isinstance(results, (tuple, list)):
        return tuple(_bits(r) for r in results)
    a = np.asarray(results)
    return (a.shape, a.dtype.str, a.tobytes())


def _problem(nd, dtype, seed=0):
    r = np.random.default_rng(seed + nd)
    sp = SIZES[nd]
    x = r.standard_normal((3, 4) + sp).astype(dtype)
    w = r.standard_normal((6, 2) + (3,) * nd).astype(dtype)
    b = r.standard_normal(6).astype(dtype)
    tw = r.standard_normal((4, 3) + (3,) * nd).astype(dtype)
    return r, x, w, b, tw


def _calls(nd, dtype):
    """name -> thunk, covering the six ops and all their gradients."""
    r, x, w, b, tw = _problem(nd, dtype)
    conv = getattr(numbaconv, f"conv{nd}d")
    convt = getattr(numbaconv, f"conv_transpose{nd}d")
    kw = dict(stride=2, padding=1, dilation=1, groups=2)
    mkw = dict(padding=2, groups=2, padding_mode="reflect")
    tkw = dict(stride=2, padding=1, output_padding=1, groups=2, dilation=1)
    y = conv(x, w, b, **kw)
    gy = r.standard_normal(y.shape).astype(dtype)
    ym = conv(x, w, b, **mkw)
    gym = r.standard_normal(ym.shape).astype(dtype)
    ty = convt(x, tw, b, **tkw)
    tgy = r.standard_normal(ty.shape).astype(dtype)
    tmkw = dict(padding=1, groups=2, padding_mode="symmetric")
    tym = convt(x, tw, b, **tmkw)
    tgym = r.standard_normal(tym.shape).astype(dtype)
    g = lambda name: getattr(numbaconv, name.format(nd=nd))  # noqa: E731
    return {
        "conv": lambda: conv(x, w, b, **kw),
        "conv-reflect": lambda: conv(x, w, b, **mkw),
        "conv_transpose": lambda: convt(x, tw, b, **tkw),
        "conv_transpose-symmetric": lambda: convt(x, tw, b, **tmkw),
        "conv_input": lambda: g("conv{nd}d_input")(x.shape, w, gy, **kw),
        "conv_weight": lambda: g("conv{nd}d_weight")(x, w.shape, gy, **kw),
        "conv_backward": lambda: g("conv{nd}d_backward")(gy, x, w, **kw),
        "conv_backward-reflect": lambda: g("conv{nd}d_backward")(gym, x, w, **mkw),
        "conv_transpose_backward": lambda: g("conv_transpose{nd}d_backward")(
            tgy, x, tw, **tkw),
        "conv_transpose_backward-symmetric": lambda: g(
            "conv_transpose{nd}d_backward")(tgym, x, tw, **tmkw),
    }


@pytest.fixture
def restore_threads():
    before = numba.get_num_threads()
    yield
    numba.set_num_threads(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_bit_identical_across_runs_and_thread_counts(nd, dtype, restore_threads):
    calls = _calls(nd, dtype)
    baseline = {}
    for threads in thread_counts():
        numba.set_num_threads(threads)
        for name, call in calls.items():
            for rep in range(REPEATS):
                got = _bits(call())
                if name not in baseline:
                    baseline[name] = got
                    continue
                assert got == baseline[name], (
                    f"{name} ({nd}-D, {np.dtype(dtype).name}) changed at "
                    f"{threads} thread(s), repeat {rep}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_large_reduction_identical_across_thread_counts(dtype, restore_threads):
    """A weight/bias gradient whose sums run over many terms (where a
    thread-dependent split would round differently) and a forward call with
    many tasks."""
    r = np.random.default_rng(11)
    x = r.standard_normal((4, 3, 40, 40)).astype(dtype)
    w = r.standard_normal((5, 3, 3, 3)).astype(dtype)
    gy = r.standard_normal((4, 5, 38, 38)).astype(dtype)
    results = []
    for threads in thread_counts() + [1]:
        numba.set_num_threads(threads)
        results.append(_bits(numbaconv.conv2d_backward(gy, x, w)))
        results.append(_bits(numbaconv.conv2d(x, w)))
    assert all(r == results[0] for r in results[0::2])
    assert all(r == results[1] for r in results[1::2])


@pytest.mark.parametrize("K", [6, 20])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_many_channel_weight_gradient_identical_across_thread_counts(dtype, K,
                                                                      restore_threads):
    """Enough channels for the panel path (6) or the broadcast path (20):
    their chunked weight-gradient sums (several flushes to float64 per chunk)
    must not depend on the threads."""
    from numbaconv.cpu.broadcast_grad import use_broadcast_grad
    from numbaconv.cpu.panel import use_panels
    r = np.random.default_rng(12)
    x = r.standard_normal((5, 8, 70, 41)).astype(dtype)
    w = r.standard_normal((K, 8, 3, 3)).astype(dtype)
    gy = r.standard_normal((5, K, 70, 41)).astype(dtype)
    assert use_panels((K, 8, 1, 3, 3), 1)
    assert use_broadcast_grad((K, 8, 1, 3, 3), 1) == (K == 20)
    results = []
    for threads in thread_counts() + [1]:
        numba.set_num_threads(threads)
        results.append(_bits(numbaconv.conv2d_weight(x, w.shape, gy, padding=1)))
    assert all(r == results[0] for r in results)


def test_out_argument_gives_same_bits():
    """Writing into ``out=`` (contiguous or not) changes nothing."""
    r = np.random.default_rng(3)
    x = r.standard_normal((2, 4, 10, 10))
    w = r.standard_normal((6, 4, 3, 3))
    ref = numbaconv.conv2d(x, w, padding=1)
    out = np.empty_like(ref)
    numbaconv.conv2d(x, w, padding=1, out=out)
    assert out.tobytes() == ref.tobytes()
    big = np.full((2, 6, 10, 20), np.nan)
    strided = big[:, :, :, ::2]
    numbaconv.conv2d(x, w, padding=1, out=strided)
    assert np.ascontiguousarray(strided).tobytes() == ref.tobytes()
    assert np.isnan(big[:, :, :, 1::2]).all()
