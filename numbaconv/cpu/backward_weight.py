"""CPU ``backward_weight`` and ``bias_grad`` primitives.

Each task owns one row of taps ``gw[k, c, kd, kh, :]`` and sums over the
batch and every output position in a fixed order, so the result is
bit-identical whatever the number of threads.  Row sums (over the output
width, vectorised) are accumulated in float64: the sums run over
``N * OD * OH * OW`` terms, far more than float32 holds accurately.
"""

import numpy as np
from numba import njit, prange

from .._config import NJIT_PARALLEL
from ._index import valid_range


@njit(**NJIT_PARALLEL)
def backward_weight_kernel(x, gy, stride, dilation, pad_lo, groups, gw):
    """gw[k, c, t] = sum over n, o of gy[n, k, o] * x[n, c_in, o*s + t*d - pad]."""
    N, C, D, H, W = x.shape
    K, Cg, KD, KH, KW = gw.shape
    OD, OH, OW = gy.shape[2], gy.shape[3], gy.shape[4]
    sd, sh, sw = stride
    dd, dh, dw = dilation
    pd, ph, pw = pad_lo
    Kg = K // groups
    ntask = K * Cg * KD * KH
    for task in prange(ntask):
        kh = task % KH
        rest = task // KH
        kd = rest % KD
        rest //= KD
        c = rest % Cg
        k = rest // Cg
        ci = (k // Kg) * Cg + c
        od0, od1 = valid_range(kd * dd - pd, sd, D, OD)
        oh0, oh1 = valid_range(kh * dh - ph, sh, H, OH)
        for kw in range(KW):
            off = kw * dw - pw
            ow0, ow1 = valid_range(off, sw, W, OW)
            acc = 0.0
            for n in range(N):
                for od in range(od0, od1):
                    xplane = x[n, ci, od * sd + kd * dd - pd]
                    gyplane = gy[n, k, od]
                    for oh in range(oh0, oh1):
                        xrow = xplane[oh * sh + kh * dh - ph]
                        gyrow = gyplane[oh]
                        s = gy.dtype.type(0)
                        for ow in range(ow0, ow1):
                            s += gyrow[ow] * xrow[ow * sw + off]
                        acc += np.float64(s)
            gw[k, c, kd, kh, kw] = acc


@njit(**NJIT_PARALLEL)
def bias_grad_kernel(gy, gb):
    """gb[k] = sum over batch and space of gy[:, k]."""
    N, K, OD, OH, OW = gy.shape
    for k in prange(K):
        acc = 0.0
        for n in range(N):
            for od in range(OD):
                for oh in range(OH):
                    row = gy[n, k, od, oh]
                    s = gy.dtype.type(0)
                    for ow in range(OW):
                        s += row[ow]
                    acc += np.float64(s)
        gb[k] = acc


def backward_weight_cpu(x, gy, stride, dilation, pad_lo, groups, gw):
    backward_weight_kernel(x, gy, stride, dilation, pad_lo, groups, gw)


def bias_grad_cpu(gy, gb):
    bias_grad_kernel(gy, gb)
