"""64-bit indexing on the CPU: arrays past 2**31 elements.

The volume is float32 ``(1, 1, 2049, 1024, 1024)``: 2**31 + 2**20 elements
(8 GiB), whose last depth plane starts exactly at flat index 2**31, so every
element of it is addressed past what a 32-bit index can hold.  A few
non-zero values are placed in that plane (and one before it); the rest of
the volume comes from ``numpy.zeros``, whose untouched pages cost no memory.
Each test runs one primitive over the whole volume and checks the outputs
around the non-zero values exactly against the float64 reference applied to
the plane, plus a sample of the all-zero remainder:

* ``forward`` (conv3d, a 1x1x3 kernel; the output is 8 GiB too);
* ``backward_data`` (conv_transpose3d; 8 GiB output);
* ``backward_weight`` and ``bias_grad`` (conv3d_backward over two huge
  operands that are almost all zero pages: little memory);
* ``pad`` (circular padding; the padded copy is 8 GiB, the strided output
  small).

Each test needs about 8.1 GiB of memory at its peak (one huge array really
written) and a few seconds per pass on two cores; memory is released
between tests.

When it runs (the rule):

* ``NUMBACONV_RUN_SLOW=0``: never;
* ``NUMBACONV_RUN_SLOW=1``: always, unless less than 10 GiB of memory is
  available (then it is skipped rather than risk the out-of-memory killer);
* unset: only when at least 20 GiB is available, so that a developer
  machine with room runs it and a small CI runner skips it.

"Available" is ``MemAvailable`` from ``/proc/meminfo`` (Linux); elsewhere the
tests run only with ``NUMBACONV_RUN_SLOW=1``.
"""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest

import naive
import numbaconv

GiB = 2 ** 30
SHAPE = (1, 1, 2049, 1024, 1024)
ELEMENTS = int(np.prod(SHAPE))
assert ELEMENTS > 2 ** 31
LAST = SHAPE[2] - 1                     # the depth plane past 2**31
assert LAST * SHAPE[3] * SHAPE[4] >= 2 ** 31


def _available_bytes():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _skip_reason():
    flag = os.environ.get("NUMBACONV_RUN_SLOW", "").strip()
    avail = _available_bytes()
    if flag == "0":
        return "NUMBACONV_RUN_SLOW=0"
    if flag == "1":
        if avail is not None and avail < 10 * GiB:
            return (f"needs about 10 GiB of memory, {avail / GiB:.1f} GiB "
                    f"available")
        return None
    if avail is None or avail < 20 * GiB:
        have = "unknown" if avail is None else f"{avail / GiB:.1f} GiB"
        return (f"huge-array tests run with NUMBACONV_RUN_SLOW=1 or with at "
                f"least 20 GiB available (available: {have})")
    return None


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(_skip_reason() is not None,
                                 reason=str(_skip_reason()))]

# non-zero input values: (h, w, value) in the last plane, including the very
# last element of the array and both row ends
POINTS = [(0, 0, 3.0), (0, 1, -1.0), (517, 511, 2.5), (1023, 1022, 7.0),
          (1023, 1023, -4.0)]
W3 = np.array([1.0, 10.0, 100.0], dtype=np.float32).reshape(1, 1, 1, 1, 3)
BIAS = np.array([0.5], dtype=np.float32)


@pytest.fixture(autouse=True)
def _free_memory():
    gc.collect()
    yield
    gc.collect()


def _sparse_volume(points=POINTS, early=True):
    x = np.zeros(SHAPE, dtype=np.float32)      # zero pages until written
    for h, w, v in points:
        x[0, 0, LAST, h, w] = v
    if early:
        x[0, 0, 3, 7, 9] = 5.0                # one value before 2**31
    return x


def _plane(points=POINTS):
    p = np.zeros(SHAPE[3:], dtype=np.float64)
    for h, w, v in points:
        p[h, w] = v
    return p


def _check_rest(y, fill, early_row_ref=None):
    """Spot-check the planes before the last: ``fill`` everywhere sampled."""
    for d in (0, 1, 1024, LAST - 1):
        np.testing.assert_array_equal(y[0, 0, d, ::97, :], fill)
    if early_row_ref is not None:
        np.testing.assert_array_equal(y[0, 0, 3, 7, :], early_row_ref)


def test_forward_past_2_31():
    x = _sparse_volume()
    y = numbaconv.conv3d(x, W3, BIAS, padding=(0, 0, 1))
    assert y.shape == SHAPE and y.dtype == np.float32
    ref = naive.conv(_plane()[None, None, None], W3.astype(np.float64),
                     BIAS, padding=(0, 0, 1))[0, 0, 0]
    np.testing.assert_array_equal(y[0, 0, LAST], ref.astype(np.float32))
    row = np.full(1024, 0.5, np.float32)
    row[8:11] = 0.5 + 5.0 * np.array([100.0, 10.0, 1.0], np.float32)
    _check_rest(y, np.float32(0.5), row)
    del x, y


def test_backward_data_past_2_31():
    x = _sparse_volume()
    y = numbaconv.conv_transpose3d(x, W3, BIAS, padding=(0, 0, 1))
    assert y.shape == SHAPE and y.dtype == np.float32
    ref = naive.conv_transpose(_plane()[None, None, None], W3.astype(np.float64),
                               BIAS, padding=(0, 0, 1))[0, 0, 0]
    np.testing.assert_array_equal(y[0, 0, LAST], ref.astype(np.float32))
    row = np.full(1024, 0.5, np.float32)
    row[8:11] = 0.5 + 5.0 * np.array([1.0, 10.0, 100.0], np.float32)
    _check_rest(y, np.float32(0.5), row)
    del x, y


def test_backward_weight_and_bias_past_2_31():
    x = _sparse_volume()
    gpoints = [(0, 1, 2.0), (517, 512, -3.0), (1023, 1023, 0.25),
               (1023, 1021, 1.5)]
    gy = _sparse_volume(gpoints, early=False)
    gy[0, 0, 3, 7, 10] = 4.0     # meets x[3, 7, 9] through the first tap
    _, gw, gb = numbaconv.conv3d_backward(gy, x, W3, padding=(0, 0, 1),
                                          output_mask=(False, True, True))
    ref = naive.conv_weight(_plane()[None, None, None], W3.shape,
                            _plane(gpoints)[None, None, None], padding=(0, 0, 1))
    ref[0, 0, 0, 0, 0] += 5.0 * 4.0
    np.testing.assert_array_equal(gw, ref.astype(np.float32))
    np.testing.assert_array_equal(gb, np.array([2.0 - 3.0 + 0.25 + 1.5 + 4.0],
                                               np.float32))
    del x, gy


def test_pad_past_2_31():
    x = _sparse_volume()
    w = np.full((1, 1, 1, 1, 1), 2.0, np.float32)
    y = numbaconv.conv3d(x, w, padding=(0, 1, 1), padding_mode="circular",
                         stride=(1, 1025, 1025))
    assert y.shape == (1, 1, SHAPE[2], 2, 2)
    # padded index 0 wraps to source 1023; padded 1025 to source 0
    expect = np.zeros((2, 2), np.float32)
    expect[0, 0] = 2 * -4.0     # x[LAST, 1023, 1023]
    expect[1, 1] = 2 * 3.0      # x[LAST, 0, 0]
    expect[0, 1] = 0.0          # x[LAST, 1023, 0]
    expect[1, 0] = 0.0          # x[LAST, 0, 1023]
    np.testing.assert_array_equal(y[0, 0, LAST], expect)
    assert not y[0, 0, :LAST].any()
    del x, y
