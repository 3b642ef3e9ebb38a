"""CPU ``pad`` (explicit padding for the non-zero modes) and its adjoint.

``pad`` is a gather: each padded element copies the source element named by
the mode's index map.  ``pad_backward`` is the adjoint: each input element
receives the sum of the padded elements that copied it.  It is written as a
gather too, one task per input depth plane, so the sums run in a fixed order.

``pad_constant`` fills the halo with one value (SciPy's ``constant`` mode
with a ``cval``); it is a gather like ``pad`` and has no adjoint here (the
SciPy dialect computes no gradients).
"""

from numba import njit, prange

from .._backend import MODES
from .._config import NJIT_PARALLEL
from ._index import padding_source


@njit(**NJIT_PARALLEL)
def pad_kernel(x, lo, mode, out):
    N, C, D, H, W = x.shape
    PD, PH, PW = out.shape[2], out.shape[3], out.shape[4]
    ld, lh, lw = lo
    for task in prange(N * C * PD):
        p_d = task % PD
        nc = task // PD
        n = nc // C
        c = nc % C
        src = x[n, c, padding_source(p_d - ld, D, mode)]
        dst = out[n, c, p_d]
        for p_h in range(PH):
            srow = src[padding_source(p_h - lh, H, mode)]
            drow = dst[p_h]
            for p_w in range(lw):
                drow[p_w] = srow[padding_source(p_w - lw, W, mode)]
            inner = drow[lw:lw + W]          # bare loop index: vectorised copy
            for i in range(W):
                inner[i] = srow[i]
            for p_w in range(lw + W, PW):
                drow[p_w] = srow[padding_source(p_w - lw, W, mode)]


@njit(**NJIT_PARALLEL)
def pad_backward_kernel(gp, lo, mode, gx):
    N, C, D, H, W = gx.shape
    PD, PH, PW = gp.shape[2], gp.shape[3], gp.shape[4]
    ld, lh, lw = lo
    for task in prange(N * C * D):
        i_d = task % D
        nc = task // D
        n = nc // C
        c = nc % C
        dst = gx[n, c, i_d]
        for ih in range(H):
            for iw in range(W):
                dst[ih, iw] = 0.0
        for p_d in range(PD):
            if padding_source(p_d - ld, D, mode) != i_d:
                continue
            src = gp[n, c, p_d]
            for p_h in range(PH):
                srow = src[p_h]
                drow = dst[padding_source(p_h - lh, H, mode)]
                for p_w in range(lw):
                    drow[padding_source(p_w - lw, W, mode)] += srow[p_w]
                inner = srow[lw:lw + W]
                for i in range(W):
                    drow[i] += inner[i]
                for p_w in range(lw + W, PW):
                    drow[padding_source(p_w - lw, W, mode)] += srow[p_w]


@njit(**NJIT_PARALLEL)
def pad_constant_kernel(x, lo, value, out):
    N, C, D, H, W = x.shape
    PD, PH, PW = out.shape[2], out.shape[3], out.shape[4]
    ld, lh, lw = lo
    fill = out.dtype.type(value)
    for task in prange(N * C * PD):
        p_d = task % PD
        nc = task // PD
        n = nc // C
        c = nc % C
        dst = out[n, c, p_d]
        i_d = p_d - ld
        if i_d < 0 or i_d >= D:
            for p_h in range(PH):
                for p_w in range(PW):
                    dst[p_h, p_w] = fill
            continue
        src = x[n, c, i_d]
        for p_h in range(PH):
            drow = dst[p_h]
            i_h = p_h - lh
            if i_h < 0 or i_h >= H:
                for p_w in range(PW):
                    drow[p_w] = fill
                continue
            srow = src[i_h]
            for p_w in range(lw):
                drow[p_w] = fill
            inner = drow[lw:lw + W]          # bare loop index: vectorised copy
            for i in range(W):
                inner[i] = srow[i]
            for p_w in range(lw + W, PW):
                drow[p_w] = fill


def pad_cpu(x, lo, hi, mode, out):
    pad_kernel(x, lo, MODES[mode], out)


def pad_backward_cpu(gp, lo, hi, mode, gx):
    pad_backward_kernel(gp, lo, MODES[mode], gx)


def pad_constant_cpu(x, lo, hi, value, out):
    """``out`` = ``x`` with ``lo`` before and ``hi`` after each spatial axis
    filled with ``value`` (``x`` may be strided, ``out`` is contiguous)."""
    pad_constant_kernel(x, lo, float(value), out)
