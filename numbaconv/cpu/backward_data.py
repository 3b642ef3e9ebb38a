"""CPU ``backward_data`` primitive: the adjoint of ``forward`` in the input.

Gather form at the level of tasks: a task owns one depth plane of a block of
input channels of ``gx`` and collects, tap by tap, every output that read it.
No two threads write the same element, so there is no race and no atomic, and
the summation order is fixed by the loop nest alone.

Along the depth axis the output index is solved for (``i + pad - t*d`` must
be a multiple of the stride); along height and width the loop runs over the
outputs a tap reaches, writing ``gx`` rows at stride ``s``, which is the
contiguous, vectorisable case at stride 1.
"""

from numba import njit, prange

from .._config import NJIT_PARALLEL
from ._index import valid_range

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
                            for oh in range(oh0, oh1):
                                gxrow = gxplane[oh * sh + kh * dh - ph]
                                gyrow = gyplane[oh]
                                for ow in range(ow0, ow1):
                                    gxrow[ow * sw + off] += wv * gyrow[ow]


def backward_data_cpu(gy, w, stride, dilation, pad_lo, groups, gx):
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
