"""CPU ``backward_data`` primitive: the adjoint of ``forward`` in the input.

Gather form at the level of tasks: a task owns one depth plane of a block of
input channels of ``gx`` and collects, tap by tap, every output that read it.
No two threads write the same element, so there is no race and no atomic, and
the summation order is fixed by the loop nest alone.

At unit stride the adjoint is itself a forward correlation: of ``gy`` with
the kernel flipped in space and its channel axes swapped within each group,
under padding ``dilation*(k-1) - pad``.  That case runs on the forward fast
path (``forward_pitched``) after building the small flipped weight.

At other strides, the output index along depth is solved for (``i + pad -
t*d`` must be a multiple of the stride); along height and width the loop
runs over the outputs a tap reaches, writing ``gx`` rows at the stride.
"""

import numpy as np
from numba import njit, prange

from .._config import NJIT_PARALLEL
from ._index import valid_range
from .forward import axpy, forward_pitched

#: Input channels per task.
CB = 4


@njit(**NJIT_PARALLEL)
def backward_data_kernel(gy, w, stride, dilation, pad_lo, groups, gx):
    """gx = adjoint of forward applied to gy; see ``numbaconv._backend``."""
    N, C, D, H, W = gx.shape
    K, Cg, KD, KH, KW = w.shape
    OD, OH, OW = gy.shape[2], gy.shape[3], gy.shape[4]
    sd, sh, sw = stride
    dd, dh, dw = dilation
    pd, ph, pw = pad_lo
    Kg = K // groups
    ncb = (Cg + CB - 1) // CB
    ntask = N * groups * ncb * D
    for task in prange(ntask):
        i_d = task % D
        rest = task // D
        cb = rest % ncb
        rest //= ncb
        g = rest % groups
        n = rest // groups
        c0 = cb * CB
        c1 = min(c0 + CB, Cg)
        for c in range(c0, c1):
            plane = gx[n, g * Cg + c, i_d]
            for ih in range(H):
                row = plane[ih]
                for iw in range(W):
                    row[iw] = 0.0
        for kd in range(KD):
            t = i_d + pd - kd * dd
            if t < 0 or t % sd != 0:
                continue
            od = t // sd
            if od >= OD:
                continue
            for kk in range(Kg):
                k = g * Kg + kk
                gyplane = gy[n, k, od]
                for kh in range(KH):
                    oh0, oh1 = valid_range(kh * dh - ph, sh, H, OH)
                    for kw in range(KW):
                        off = kw * dw - pw
                        ow0, ow1 = valid_range(off, sw, W, OW)
                        for c in range(c0, c1):
                            wv = w[k, c, kd, kh, kw]
                            gxplane = gx[n, g * Cg + c, i_d]
                            if ow1 <= ow0:
                                continue
                            i0 = ow0 * sw + off
                            i1 = (ow1 - 1) * sw + off + 1
                            for oh in range(oh0, oh1):
                                axpy(gxplane[oh * sh + kh * dh - ph, i0:i1:sw], wv,
                                     gyplane[oh, ow0:ow1])


def adjoint_weight(w, groups):
    """The weight under which ``backward_data`` is a forward correlation.

    ``w[g*Kg + k, c, t]`` becomes ``w_adj[g*Cg + c, k, T-1-t]``: a copy of the
    (small) weight, flipped in space, channel axes swapped per group.
    """
    K, Cg = w.shape[:2]
    Kg = K // groups
    w_adj = w.reshape((groups, Kg, Cg) + w.shape[2:]).swapaxes(1, 2)
    return np.ascontiguousarray(
        w_adj.reshape((groups * Cg, Kg) + w.shape[2:])[:, :, ::-1, ::-1, ::-1])


def backward_data_cpu(gy, w, stride, dilation, pad_lo, groups, gx):
    if stride == (1, 1, 1):
        pad_adj = tuple(d * (k - 1) - p
                        for d, k, p in zip(dilation, w.shape[2:], pad_lo))
        forward_pitched(gy, adjoint_weight(w, groups), np.empty(0, gx.dtype), False,
                        1, dilation, pad_adj, groups, gx)
    else:
        backward_data_kernel(gy, w, stride, dilation, pad_lo, groups, gx)


@njit(**NJIT_PARALLEL)
def add_bias_kernel(y, b):
    """y[:, k] += b[k] (the bias of a transposed convolution)."""
    N, K, D, H, W = y.shape
    for task in prange(N * K * D):
        k = (task // D) % K
        plane = y[task // (K * D), k, task % D]
        bk = b[k]
        for h in range(H):
            row = plane[h]
            for i in range(W):
                row[i] += bk


def add_bias_cpu(y, b):
    add_bias_kernel(y, b)
