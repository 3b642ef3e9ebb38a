"""CPU ``backward_data`` primitive: the adjoint of ``forward`` in the input.

Gather form at the level of tasks: a task owns one depth plane of a block of
input channels of ``gx`` and collects, tap by tap, every output that read it.
No two threads write the same element, so there is no race and no atomic, and
the summation order is fixed by the loop nest alone.

At unit stride the adjoint is itself a forward correlation: of ``gy`` with
the kernel flipped in space and its channel axes swapped within each group,
under padding ``dilation*(k-1) - pad``.  That case runs on the forward fast
path (``forward_cpu``: panels or pitched tiles) after building the small flipped weight.

At stride ``s`` (with dilation 1 on the strided axes) the adjoint splits into
``s`` *phases* per axis: the inputs ``i = s*q + r`` of phase ``r`` are reached
only by the taps ``t = t_r, t_r + s, ...`` with ``t_r = (r + pad) mod s``, and
each phase is again a unit-stride correlation of ``gy`` with that flipped
sub-kernel.  Each phase is computed on the fast path into a small buffer
(``1/s`` of ``gx`` per strided axis) and copied to its strided place.

Anything else (stride and dilation both above 1 on one axis) takes the
general loop: the output index along depth is solved for (``i + pad - t*d``
must be a multiple of the stride); along height and width the loop runs over
the outputs a tap reaches, writing ``gx`` rows at the stride.
"""

import numpy as np
from numba import get_num_threads, njit, prange

from ._vector import wide_vectors
from .._config import NJIT_PARALLEL
from ._index import claim, task_counter, unravel4, valid_range
from .forward import axpy, forward_cpu
from .plan import backward_data_choice
from .subpixel import subpixel_cpu

#: Input channels per task.
CB = 4


@njit(**NJIT_PARALLEL)
def backward_data_kernel(gy, w, stride, dilation, pad_lo, groups, workers, gx):
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
    # Each of ``workers`` threads claims tasks one at a time (see
    # ``broadcast.forward_broadcast``).
    counter = task_counter()
    for worker in prange(max(1, min(workers, ntask))):
        wide_vectors()
        task = claim(counter)
        while task < ntask:
            n, g, cb, i_d = unravel4(task, groups, ncb, D)
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
            task = claim(counter)


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


def axis_phases(size, taps, stride, dilation, pad):
    """The phases of one axis: (r, taps slice, n taps, padding, count).

    Phase ``r`` holds the inputs ``i = stride*q + r`` (``count`` of them); it is
    the correlation of ``gy`` with the flipped taps ``slice`` (``n`` of them,
    dilation ``dilation``) under low padding ``padding``.
    """
    phases = []
    for r in range(stride):
        count = -(-(size - r) // stride)
        if count <= 0:
            continue
        first = (r + pad) % stride
        n = len(range(first, taps, stride))
        e = (r + pad - first) // stride
        phases.append((r, slice(first, None, stride), n, dilation * (n - 1) - e, count))
    return phases


@njit(**NJIT_PARALLEL)
def scatter_phase(src, r, s, gx):
    """gx[:, :, rd::sd, rh::sh, rw::sw] = src."""
    N, C, Q0, Q1, Q2 = src.shape
    for task in prange(N * C * Q0):
        wide_vectors()
        q0 = task % Q0
        nc = task // Q0
        n = nc // C
        c = nc % C
        dst = gx[n, c, r[0] + q0 * s[0]]
        for q1 in range(Q1):
            # A strided view indexed by the bare loop variable: no
            # negative-index test per element (see ``_index.copy_row``).
            row = dst[r[1] + q1 * s[1], r[2]::s[2]]
            srow = src[n, c, q0, q1]
            for q2 in range(Q2):
                row[q2] = srow[q2]


def backward_data_cpu(gy, w, stride, dilation, pad_lo, groups, gx, b=None):
    """Host entry: ``gx`` = the adjoint of ``forward`` applied to ``gy``, plus
    ``b[c]`` when given (the sub-pixel path adds it as it stores each sum,
    the others in a pass of their own)."""
    # The fast paths correlate over a zero-bordered gy, where a non-finite
    # weight would meet those zeros (inf * 0 = NaN); the adjoint sums only the
    # taps that reach a real output, which the general loop does exactly.
    choice = backward_data_choice(w.shape, stride, dilation, groups, bool(np.isfinite(w).all()))
    if choice.kernel == "gather":
        backward_data_kernel(gy, w, stride, dilation, pad_lo, groups, get_num_threads(), gx)
    elif choice.kernel == "subpixel":
        subpixel_cpu(gy, w, choice.params["taps"], stride, dilation, pad_lo, groups, gx, b)
        return
    else:
        per_phase(gy, w, stride, dilation, pad_lo, groups, gx)
    if b is not None:
        add_bias_kernel(gx, b)


def per_phase(gy, w, stride, dilation, pad_lo, groups, gx):
    """The adjoint as one stride-1 convolution per phase of the strided grid
    (``axis_phases``), each scattered to its place in ``gx``."""
    axes = [axis_phases(L, T, s, d, p) for L, T, s, d, p
            in zip(gx.shape[2:], w.shape[2:], stride, dilation, pad_lo)]
    for pd_ in axes[0]:
        for ph_ in axes[1]:
            for pw_ in axes[2]:
                phase = (pd_, ph_, pw_)
                direct = stride == (1, 1, 1)
                target = gx if direct else np.empty(
                    gx.shape[:2] + tuple(p[4] for p in phase), gx.dtype)
                if any(p[2] == 0 for p in phase):
                    target[...] = 0          # no tap reaches this phase
                else:
                    sub = w[:, :, phase[0][1], phase[1][1], phase[2][1]]
                    forward_cpu(gy, adjoint_weight(sub, groups), None, (1, 1, 1),
                                dilation, tuple(p[3] for p in phase), groups, target)
                if not direct:
                    scatter_phase(target, tuple(p[0] for p in phase), stride, gx)


@njit(**NJIT_PARALLEL)
def add_bias_kernel(y, b):
    """y[:, k] += b[k] (the bias of a transposed convolution)."""
    N, K, D, H, W = y.shape
    for task in prange(N * K * D):
        wide_vectors()
        k = (task // D) % K
        plane = y[task // (K * D), k, task % D]
        bk = b[k]
        for h in range(H):
            row = plane[h]
            for i in range(W):
                row[i] += bk


def add_bias_cpu(y, b):
    add_bias_kernel(y, b)
