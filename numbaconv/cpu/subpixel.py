"""CPU ``backward_data`` at stride > 1 for many channels: every phase from one panel.

This is the transposed convolution's main path (and the input gradient of a
strided convolution).  Along an axis with stride ``s``, dilation 1 and a
kernel of ``T = s*n`` taps, write tap ``t = s*j + m``.  The adjoint sends
output ``o`` under tap ``t`` to input ``i = s*o + t - p = s*(o + j) + m - p``,
so with ``u = o + j``:

    gx[s*u + m - p] = sum over j < n of gy[u - j] * w[s*j + m]

For each *phase* ``m`` this is a correlation of ``gy`` over the window
``gy[u-n+1 .. u]`` with ``n`` taps, and the window is the same for all ``s``
phases.  So one panel of ``gy`` rows (``panel.py``) serves every phase: the
phases become ``s`` times more output channels ("sub-pixel" channels), each
written to its place in the strided grid of ``gx``.  Compared with running
each phase as a convolution of its own, ``gy`` is transposed into panels once
instead of once per phase, there is no per-phase buffer and no scatter, and
each panel feeds ``s_d*s_h*s_w`` times more multiply-adds.

Axes with stride 1 have one phase and keep their dilation.  Every element of
``gx`` in ``[0, s*U - p)`` (``U`` windows per axis) has exactly one ``(u, m)``
and is written once; the rest, past the last window, no tap reaches: they
are set to zero.  Each sum runs over the taps in a fixed order, so results
do not depend on the thread count.
"""

import numpy as np
from numba import njit, prange

from .._config import NJIT_PARALLEL
from ._vector import wide_vectors
from .panel import (KB, MIN_CHANNELS, MIN_REDUCTION, PB, block1x4, block4x4,
                    gather_panel, panel_weight)


def subpixel_taps(w_shape, stride, dilation, groups):
    """Taps per phase ``(n_d, n_h, n_w)`` when this path applies, else None.

    It needs a stride above 1 somewhere, and along each strided axis dilation
    1 and a kernel size divisible by the stride (so that every phase has the
    same taps and no zero taps are added: a zero tap would turn an inf in
    ``gy`` into NaN where the reference has no term).  Few channels stay on
    the per-phase path, whose pitched kernels suit them better.
    """
    K, Cg = w_shape[:2]
    if all(s == 1 for s in stride):
        return None
    if any(s > 1 and (d != 1 or T % s) for s, d, T in zip(stride, dilation, w_shape[2:])):
        return None
    taps = tuple(T // s for s, T in zip(stride, w_shape[2:]))
    phases = stride[0] * stride[1] * stride[2]
    if Cg * phases < MIN_CHANNELS or (K // groups) * taps[0] * taps[1] < MIN_REDUCTION:
        return None
    return taps


def subpixel_weight(w, stride, groups):
    """The weight of every phase, flipped and channel-swapped as the adjoint
    needs, in the panel layout: ``(groups, phases * Cgp, n_w*Kg*n_d*n_h)``.

    Phase ``(m_d, m_h, m_w)`` owns rows ``[ph*Cgp, (ph+1)*Cgp)`` with
    ``ph = (m_d*s_h + m_h)*s_w + m_w``; ``Cgp`` is ``Cg`` padded to a
    multiple of ``KB``.
    """
    from .backward_data import adjoint_weight
    sd, sh, sw = stride
    parts = []
    for md in range(sd):
        for mh in range(sh):
            for mw in range(sw):
                sub = w[:, :, md::sd, mh::sh, mw::sw]
                parts.append(panel_weight(adjoint_weight(sub, groups), groups))
    return np.concatenate(parts, axis=1)


@njit(**NJIT_PARALLEL)
def subpixel_panels(gy, Ws, taps, stride, dilation, pad_lo, groups, gx):
    """gx = adjoint of forward applied to ``gy`` with
    ``Ws = subpixel_weight(w, stride, groups)``, for ``gx`` indices below
    ``s*U - p`` per axis (the caller zeroes the rest); ``gy`` C-contiguous."""
    N, K, OD, OH, OW = gy.shape
    C, D, H, W = gx.shape[1], gx.shape[2], gx.shape[3], gx.shape[4]
    Kg, Cg = K // groups, C // groups
    nd, nh, nw = taps
    sd, sh, sw = stride
    dd, dh, dw = dilation
    pd, ph, pw = pad_lo
    Cgp = Ws.shape[1] // (sd * sh * sw)
    # Windows per axis (a full correlation) and their low padding.
    Ud, Uh, Uw = OD + dd * (nd - 1), OH + dh * (nh - 1), OW + dw * (nw - 1)
    lo = (dd * (nd - 1), dh * (nh - 1), dw * (nw - 1))
    ones = (1, 1, 1)
    nq = Uw + dw * (nw - 1)
    R = Kg * nd * nh
    Uw4 = Uw - Uw % PB
    ntask = N * groups * Ud * Uh
    for task in prange(ntask):
        wide_vectors()
        uh = task % Uh
        rest = task // Uh
        ud = rest % Ud
        rest //= Ud
        g = rest % groups
        n = rest // groups
        Q = np.empty((nq, R), dtype=gy.dtype)
        rows = np.empty(R, dtype=np.int64)
        gather_panel(gy, n, g * Kg, Kg, ud, uh, (nd, nh), ones, dilation, lo, rows, Q)
        Qf = Q.reshape(-1)
        Wg = Ws[g]
        for md in range(sd):
            i_d = sd * ud + md - pd
            if i_d < 0 or i_d >= D:
                continue            # this window has no input of phase md
            for mh in range(sh):
                i_h = sh * uh + mh - ph
                if i_h < 0 or i_h >= H:
                    continue
                for mw in range(sw):
                    k1 = ((md * sh + mh) * sw + mw) * Cgp
                    for c0 in range(0, Cgp, KB):
                        kc = min(KB, Cg - c0)
                        for p0 in range(0, Uw4, PB):
                            s = block4x4(Qf, R, p0, 1, dw, Wg, k1 + c0, nw)
                            for j in range(kc):
                                dst = gx[n, g * Cg + c0 + j, i_d, i_h]
                                for p in range(PB):
                                    iw = sw * (p0 + p) + mw - pw
                                    if iw >= 0 and iw < W:
                                        dst[iw] = s[p * KB + j]
                        for u in range(Uw4, Uw):
                            iw = sw * u + mw - pw
                            if iw < 0 or iw >= W:
                                continue
                            s = block1x4(Qf, R, u, dw, Wg, k1 + c0, nw)
                            for j in range(kc):
                                gx[n, g * Cg + c0 + j, i_d, i_h, iw] = s[j]


def subpixel_cpu(gy, w, taps, stride, dilation, pad_lo, groups, gx):
    """Host entry of this path: runs the kernel, then zeroes what no tap reaches."""
    if gx.size == 0:
        return
    subpixel_panels(np.ascontiguousarray(gy), subpixel_weight(w, stride, groups), taps,
                    stride, dilation, pad_lo, groups, gx)
    for axis in range(3):
        windows = gy.shape[2 + axis] + dilation[axis] * (taps[axis] - 1)
        end = stride[axis] * windows - pad_lo[axis]
        if end < gx.shape[2 + axis]:
            index = [slice(None)] * 5
            index[2 + axis] = slice(max(end, 0), None)
            gx[tuple(index)] = 0
