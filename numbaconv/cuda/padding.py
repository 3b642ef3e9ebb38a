"""CUDA explicit padding (reflect, replicate, circular, symmetric), adjoint.

``pad`` gives every padded element one thread that copies its source
element.  ``pad_backward`` is the adjoint, written in gather form so that
no atomics are needed: one thread per interior element sums the padded
positions that were copied from it.  Only the interior position itself and
the halo positions can be such copies, so each thread tests
``1 + lo + hi`` candidates per axis, in a fixed order.

``pad_constant`` fills the halo with one value (SciPy's ``constant`` mode
with a ``cval``), one thread per padded element like ``pad``.
"""

from __future__ import annotations

from numba import cuda

from .. import _config
from .._backend import MODES
from ._indexing import (elementwise_launch, global_thread_id, grid_size,
                        halo_candidate, int3, pad_source, unravel5)


@cuda.jit(**_config.CUDA_JIT)
def pad_kernel(x, lo, mode, out):
    """Fill ``out`` with ``x`` padded by ``lo`` at the start of each axis.

    The high-side padding is implied by the shape of ``out``.

    Parameters
    ----------
    x : device array, shape (N, C, D, H, W)
    lo : tuple of 3 int
    mode : int
        Code from ``numbaconv._backend.MODES``.
    out : device array, shape (N, C, D + lo + hi, H + ..., W + ...)
        Fully overwritten.
    """
    D = x.shape[2]
    H = x.shape[3]
    W = x.shape[4]
    C = out.shape[1]
    PD = out.shape[2]
    PH = out.shape[3]
    PW = out.shape[4]
    for flat in range(global_thread_id(), out.size, grid_size()):
        n, c, pd, ph, pw = unravel5(flat, C, PD, PH, PW)
        sd = pad_source(pd - lo[0], D, mode)
        sh = pad_source(ph - lo[1], H, mode)
        sw = pad_source(pw - lo[2], W, mode)
        out[n, c, pd, ph, pw] = x[n, c, sd, sh, sw]


@cuda.jit(**_config.CUDA_JIT)
def pad_constant_kernel(x, lo, value, out):
    """Fill ``out`` with ``x`` placed at ``lo`` and ``value`` around it.

    Parameters
    ----------
    x : device array, shape (N, C, D, H, W), any strides
    lo : tuple of 3 int
    value : float
    out : device array, shape (N, C, D + lo + hi, H + ..., W + ...)
        Fully overwritten.
    """
    D = x.shape[2]
    H = x.shape[3]
    W = x.shape[4]
    C = out.shape[1]
    PD = out.shape[2]
    PH = out.shape[3]
    PW = out.shape[4]
    for flat in range(global_thread_id(), out.size, grid_size()):
        n, c, pd, ph, pw = unravel5(flat, C, PD, PH, PW)
        sd = pd - lo[0]
        sh = ph - lo[1]
        sw = pw - lo[2]
        if (sd < 0 or sd >= D or sh < 0 or sh >= H or sw < 0 or sw >= W):
            out[n, c, pd, ph, pw] = value
        else:
            out[n, c, pd, ph, pw] = x[n, c, sd, sh, sw]


@cuda.jit(**_config.CUDA_JIT)
def pad_backward_kernel(gp, lo, hi, mode, gx):
    """Fold the gradient of a padded array back onto the interior.

    ``gx[n, c, i] = sum of gp[n, c, p] over the p whose source is i``.

    Parameters
    ----------
    gp : device array, shape (N, C, D + lo + hi, H + ..., W + ...)
    lo, hi : tuple of 3 int
    mode : int
        Code from ``numbaconv._backend.MODES``.
    gx : device array, shape (N, C, D, H, W)
        Fully overwritten.
    """
    C = gx.shape[1]
    D = gx.shape[2]
    H = gx.shape[3]
    W = gx.shape[4]
    for flat in range(global_thread_id(), gx.size, grid_size()):
        n, c, i, j, l = unravel5(flat, C, D, H, W)
        acc = gx.dtype.type(0)
        for qd in range(lo[0] + 1 + hi[0]):
            pd = halo_candidate(qd, i, lo[0], D)
            if pad_source(pd - lo[0], D, mode) != i:
                continue
            for qh in range(lo[1] + 1 + hi[1]):
                ph = halo_candidate(qh, j, lo[1], H)
                if pad_source(ph - lo[1], H, mode) != j:
                    continue
                for qw in range(lo[2] + 1 + hi[2]):
                    pw = halo_candidate(qw, l, lo[2], W)
                    if pad_source(pw - lo[2], W, mode) != l:
                        continue
                    acc += gp[n, c, pd, ph, pw]
        gx[n, c, i, j, l] = acc


def pad_cuda(x, lo, hi, mode, out):
    """Launch ``pad_kernel`` on the default stream.

    Takes the arguments of ``Backend.pad``; ``mode`` is a name from
    ``numbaconv._backend.MODES``.
    """
    if out.size == 0:
        return
    blocks, threads = elementwise_launch(out.size)
    pad_kernel[blocks, threads](x, int3(lo), MODES[mode], out)


def pad_backward_cuda(gp, lo, hi, mode, gx):
    """Launch ``pad_backward_kernel`` on the default stream.

    Takes the arguments of ``Backend.pad_backward``; ``mode`` is a name from
    ``numbaconv._backend.MODES``.
    """
    if gx.size == 0:
        return
    blocks, threads = elementwise_launch(gx.size)
    pad_backward_kernel[blocks, threads](gp, int3(lo), int3(hi),
                                         MODES[mode], gx)


def pad_constant_cuda(x, lo, hi, value, out):
    """Launch ``pad_constant_kernel`` on the default stream.

    ``out`` = ``x`` with ``lo`` before and ``hi`` after each spatial axis
    filled with ``value``.
    """
    if out.size == 0:
        return
    blocks, threads = elementwise_launch(out.size)
    pad_constant_kernel[blocks, threads](x, int3(lo), float(value), out)
