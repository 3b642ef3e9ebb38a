"""CPU ``forward`` primitive: direct cross-correlation, no im2col.

Work is split into tasks of (batch, group, block of ``KB`` output channels,
output depth plane, block of output rows).  A task owns its slab of ``out``,
so threads never write the same element and the result does not depend on
the thread count; a single volume still yields plenty of tasks.

The fast path (stride 1 along height and width) works on *pitched planes*.
Per input channel and depth tap the task copies the input rows it needs into
a small zero-bordered tile whose rows are ``Wp = OW + dilation*(KW-1)`` long,
and accumulates into a tile of the same pitch.  With equal pitches, the input
element under tap ``(kh, kw)`` of output ``p`` (flat index in the tile) is at
``p + kh*dh*Wp + kw*dw``: every tap becomes one long contiguous
multiply-add over the whole block of rows, which LLVM vectorises, and the
``KB`` output channels share each input load.  The last ``Wp - OW`` columns
of each accumulator row are scratch and never reach ``out``.  Padding is
never materialised beyond this per-thread tile.

Other strides take the row path: the same loop nest, one output row at a
time, reading the input at the stride.
"""

import numpy as np
from numba import njit, prange

from ._vector import wide_vectors
from .._config import NJIT_PARALLEL, NJIT_SERIAL
from ._index import copy_row, valid_range, zero_padded
from .broadcast import broadcast_weight, forward_broadcast, use_broadcast
from .panel import forward_panels, panel_weight, use_panels

#: Output channels per task: each input load feeds this many multiply-adds.
KB = 4
#: Target bytes of one output-channel accumulator tile: ``KB`` of them and
#: the input tile should stay in the L1 data cache.
TILE_BYTES = 8192


@njit(inline="always", **NJIT_SERIAL)
def row_blocks(n_rows, pitch, itemsize):
    """Split ``n_rows`` rows of ``pitch`` elements into equal blocks of about
    ``TILE_BYTES``; returns (rows per block, number of blocks)."""
    nrb = max(1, min(n_rows, (n_rows * pitch * itemsize + TILE_BYTES - 1) // TILE_BYTES))
    rows = (n_rows + nrb - 1) // nrb
    return rows, (n_rows + rows - 1) // rows


@njit(inline="always", **NJIT_SERIAL)
def axpy(out, w, x):
    """out += w * x over two equal-length contiguous vectors."""
    for j in range(x.shape[0]):
        out[j] += w * x[j]


@njit(inline="always", **NJIT_SERIAL)
def axpy4(o0, o1, o2, o3, w0, w1, w2, w3, x):
    """Four ``axpy`` sharing one input: four multiply-adds per load of x."""
    for j in range(x.shape[0]):
        xv = x[j]
        o0[j] += w0 * xv
        o1[j] += w1 * xv
        o2[j] += w2 * xv
        o3[j] += w3 * xv


@njit(inline="always", **NJIT_SERIAL)
def axpy4x3(o0, o1, o2, o3, w, k0, c, kd, kh, kw, x0, x1, x2):
    """``axpy4`` over three taps at once (inputs x0, x1, x2): each output
    element is loaded and stored once per three taps instead of once per tap,
    and the twelve weights stay in registers."""
    a0, a1, a2 = w[k0, c, kd, kh, kw], w[k0, c, kd, kh, kw + 1], w[k0, c, kd, kh, kw + 2]
    b0, b1, b2 = w[k0 + 1, c, kd, kh, kw], w[k0 + 1, c, kd, kh, kw + 1], w[k0 + 1, c, kd, kh, kw + 2]
    c0, c1, c2 = w[k0 + 2, c, kd, kh, kw], w[k0 + 2, c, kd, kh, kw + 1], w[k0 + 2, c, kd, kh, kw + 2]
    d0, d1, d2 = w[k0 + 3, c, kd, kh, kw], w[k0 + 3, c, kd, kh, kw + 1], w[k0 + 3, c, kd, kh, kw + 2]
    for j in range(x0.shape[0]):
        u = x0[j]
        v = x1[j]
        t = x2[j]
        o0[j] += a0 * u + a1 * v + a2 * t
        o1[j] += b0 * u + b1 * v + b2 * t
        o2[j] += c0 * u + c1 * v + c2 * t
        o3[j] += d0 * u + d1 * v + d2 * t


@njit(inline="always", **NJIT_SERIAL)
def axpy1x3(o, w0, w1, w2, x0, x1, x2):
    """``axpy`` over three taps at once (one load and store of o per three taps)."""
    for j in range(x0.shape[0]):
        o[j] += w0 * x0[j] + w1 * x1[j] + w2 * x2[j]


@njit(inline="always", **NJIT_SERIAL)
def taps_block4(acc, j, tile, w, k, c, kd, dh, dw, pitch, length):
    """All (kh, kw) taps for output channels k..k+3 (rows j..j+3 of acc)."""
    KH, KW = w.shape[3], w.shape[4]
    o0, o1 = acc[j, :length], acc[j + 1, :length]
    o2, o3 = acc[j + 2, :length], acc[j + 3, :length]
    for kh in range(KH):
        kw = 0
        while kw + 3 <= KW:
            s0 = kh * dh * pitch + kw * dw
            axpy4x3(o0, o1, o2, o3, w, k, c, kd, kh, kw, tile[s0:s0 + length],
                    tile[s0 + dw:s0 + dw + length],
                    tile[s0 + 2 * dw:s0 + 2 * dw + length])
            kw += 3
        for kw in range(kw, KW):
            s0 = kh * dh * pitch + kw * dw
            axpy4(o0, o1, o2, o3, w[k, c, kd, kh, kw], w[k + 1, c, kd, kh, kw],
                  w[k + 2, c, kd, kh, kw], w[k + 3, c, kd, kh, kw],
                  tile[s0:s0 + length])


@njit(inline="always", **NJIT_SERIAL)
def axpy1x9(o, w, k, c, kd, kh, kw, tile, s0, row, dw, length):
    """A 3x3 block of taps for one output channel in one pass: nine loads
    of the tile (rows ``s0``, ``s0 + row``, ``s0 + 2*row``, columns shifted
    by 0, ``dw``, ``2*dw``) per load and store of the accumulator."""
    a0, a1, a2 = w[k, c, kd, kh, kw], w[k, c, kd, kh, kw + 1], w[k, c, kd, kh, kw + 2]
    b0, b1, b2 = w[k, c, kd, kh + 1, kw], w[k, c, kd, kh + 1, kw + 1], w[k, c, kd, kh + 1, kw + 2]
    c0, c1, c2 = w[k, c, kd, kh + 2, kw], w[k, c, kd, kh + 2, kw + 1], w[k, c, kd, kh + 2, kw + 2]
    # Nine separate slices: an index like ``j + dw`` with a run-time ``dw``
    # inside the loop would keep LLVM from vectorising it.
    t00, t01, t02 = (tile[s0:s0 + length], tile[s0 + dw:s0 + dw + length],
                     tile[s0 + 2 * dw:s0 + 2 * dw + length])
    s1 = s0 + row
    t10, t11, t12 = (tile[s1:s1 + length], tile[s1 + dw:s1 + dw + length],
                     tile[s1 + 2 * dw:s1 + 2 * dw + length])
    s2 = s1 + row
    t20, t21, t22 = (tile[s2:s2 + length], tile[s2 + dw:s2 + dw + length],
                     tile[s2 + 2 * dw:s2 + 2 * dw + length])
    for j in range(length):
        o[j] += (a0 * t00[j] + a1 * t01[j] + a2 * t02[j]
                 + b0 * t10[j] + b1 * t11[j] + b2 * t12[j]
                 + c0 * t20[j] + c1 * t21[j] + c2 * t22[j])


@njit(inline="always", **NJIT_SERIAL)
def taps_single(o, tile, w, k, c, kd, dh, dw, pitch, length):
    """All (kh, kw) taps for one output channel k: 3x3 blocks of taps in one
    pass each, then the remaining columns three rows at a time, then the
    remaining rows three columns at a time."""
    KH, KW = w.shape[3], w.shape[4]
    row = dh * pitch
    kh = 0
    while kh + 3 <= KH:
        kw = 0
        while kw + 3 <= KW:
            axpy1x9(o, w, k, c, kd, kh, kw, tile, kh * row + kw * dw, row, dw, length)
            kw += 3
        for t in range(kw, KW):
            s0 = kh * row + t * dw
            axpy1x3(o, w[k, c, kd, kh, t], w[k, c, kd, kh + 1, t],
                    w[k, c, kd, kh + 2, t], tile[s0:s0 + length],
                    tile[s0 + row:s0 + row + length],
                    tile[s0 + 2 * row:s0 + 2 * row + length])
        kh += 3
    for kh in range(kh, KH):
        kw = 0
        while kw + 3 <= KW:
            s0 = kh * row + kw * dw
            axpy1x3(o, w[k, c, kd, kh, kw], w[k, c, kd, kh, kw + 1],
                    w[k, c, kd, kh, kw + 2], tile[s0:s0 + length],
                    tile[s0 + dw:s0 + dw + length],
                    tile[s0 + 2 * dw:s0 + 2 * dw + length])
            kw += 3
        for t in range(kw, KW):
            s0 = kh * row + t * dw
            axpy(o, w[k, c, kd, kh, t], tile[s0:s0 + length])


@njit(inline="always", **NJIT_SERIAL)
def accumulate_taps(acc, tile, w, k0, nk, c, kd, dh, dw, pitch, length):
    """acc[j, :length] += sum over (kh, kw) of w[k0+j, c, kd, kh, kw] * shifted tile."""
    j = 0
    while j + 4 <= nk:
        taps_block4(acc, j, tile, w, k0 + j, c, kd, dh, dw, pitch, length)
        j += 4
    for jj in range(j, nk):
        taps_single(acc[jj, :length], tile, w, k0 + jj, c, kd, dh, dw, pitch, length)


@njit(inline="always", **NJIT_SERIAL)
def load_tile(plane, row0, nrows, col0, pitch, tile):
    """tile[r*pitch + j] = plane[row0 + r, j - col0], zero outside the plane
    (rows copied by ``_index.copy_row``, which vectorises)."""
    H, W = plane.shape
    j0 = min(max(col0, 0), pitch)
    j1 = min(max(col0 + W, j0), pitch)
    for r in range(nrows):
        dst = tile[r * pitch:(r + 1) * pitch]
        ih = row0 + r
        if ih < 0 or ih >= H:
            for j in range(pitch):
                dst[j] = 0.0
        else:
            copy_row(dst, plane[ih, j0 - col0:j1 - col0], j0, j1)


@njit(**NJIT_PARALLEL)
def forward_pitched(x, w, b, has_bias, stride_d, dilation, pad_lo, groups, out):
    """Fast path: stride 1 along height and width (any depth stride)."""
    N, C, D, H, W = x.shape
    K, Cg, KD, KH, KW = w.shape
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    dd, dh, dw = dilation
    pd, ph, pw = pad_lo
    Kg = K // groups
    pitch = OW + dw * (KW - 1)
    rows, nrb = row_blocks(OH, pitch, out.itemsize)   # output rows per task
    tile_rows = rows + dh * (KH - 1) + 1           # +1: the scratch columns of the last row
    nkb = (Kg + KB - 1) // KB
    ntask = N * groups * nkb * OD * nrb
    for task in prange(ntask):
        wide_vectors()
        rb = task % nrb
        rest = task // nrb
        od = rest % OD
        rest //= OD
        kb = rest % nkb
        rest //= nkb
        g = rest % groups
        n = rest // groups
        k0 = g * Kg + kb * KB
        nk = min(KB, (g + 1) * Kg - k0)
        oh0 = rb * rows
        nr = min(rows, OH - oh0)
        length = nr * pitch
        acc = np.zeros((KB, rows * pitch), dtype=out.dtype)
        tile = np.empty(tile_rows * pitch, dtype=x.dtype)
        # One kernel column and no width padding make the pitch the input
        # width; if the block's rows need no height padding either, the taps
        # can read the input in place.
        in_place = (KW == 1 and pw == 0 and pitch == W and oh0 - ph >= 0
                    and oh0 - ph + nr + dh * (KH - 1) <= H)
        for kd in range(KD):
            i_d = od * stride_d + kd * dd - pd
            if i_d < 0 or i_d >= D:
                continue
            for c in range(Cg):
                plane = x[n, g * Cg + c, i_d]
                if in_place:
                    # The input rows already have the tile's layout: no copy.
                    rows_in = plane.reshape(H * W)[(oh0 - ph) * W:]
                    accumulate_taps(acc, rows_in, w, k0, nk, c, kd, dh, dw, pitch, length)
                else:
                    load_tile(plane, oh0 - ph, nr + dh * (KH - 1) + 1, pw, pitch, tile)
                    accumulate_taps(acc, tile, w, k0, nk, c, kd, dh, dw, pitch, length)
        for j in range(nk):
            bias = b[k0 + j] if has_bias else 0.0
            for r in range(nr):
                dst = out[n, k0 + j, od, oh0 + r]
                src = acc[j, r * pitch:r * pitch + OW]
                for ow in range(OW):
                    dst[ow] = src[ow] + bias


@njit(**NJIT_PARALLEL)
def forward_rows(x, w, b, has_bias, stride, dilation, pad_lo, groups, out):
    """General path: any stride, one output row at a time."""
    N, C, D, H, W = x.shape
    K, Cg, KD, KH, KW = w.shape
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    sd, sh, sw = stride
    dd, dh, dw = dilation
    pd, ph, pw = pad_lo
    Kg = K // groups
    ntask = N * K * OD
    for task in prange(ntask):
        wide_vectors()
        od = task % OD
        rest = task // OD
        k = rest % K
        n = rest // K
        g = k // Kg
        bias = b[k] if has_bias else 0.0
        plane = out[n, k, od]
        plane[:, :] = bias
        for kd in range(KD):
            i_d = od * sd + kd * dd - pd
            if i_d < 0 or i_d >= D:
                continue
            for c in range(Cg):
                xplane = x[n, g * Cg + c, i_d]
                for kh in range(KH):
                    oh0, oh1 = valid_range(kh * dh - ph, sh, H, OH)
                    for kw in range(KW):
                        off = kw * dw - pw
                        ow0, ow1 = valid_range(off, sw, W, OW)
                        if ow1 <= ow0:
                            continue
                        wv = w[k, c, kd, kh, kw]
                        i0 = ow0 * sw + off
                        i1 = (ow1 - 1) * sw + off + 1
                        for oh in range(oh0, oh1):
                            axpy(plane[oh, ow0:ow1], wv,
                                 xplane[oh * sh + kh * dh - ph, i0:i1:sw])


def forward_cpu(x, w, b, stride, dilation, pad_lo, groups, out):
    """Host entry: ``b`` may be None.  Eight or more output channels per
    group take the broadcast path (``broadcast.py``), four to seven the panel
    path (``panel.py``), fewer the pitched path at unit H/W stride, else rows."""
    has_bias = b is not None
    if not has_bias:
        b = np.empty(0, dtype=out.dtype)
    if use_broadcast(w.shape, groups):
        forward_broadcast(np.ascontiguousarray(x), broadcast_weight(w, groups), b, has_bias,
                          w.shape[2:], stride, dilation, pad_lo, groups, out)
        return
    if use_panels(w.shape, groups):
        forward_panels(np.ascontiguousarray(x), panel_weight(w, groups), b, has_bias,
                       w.shape[2:], stride, dilation, pad_lo, groups, out)
        return
    if not np.isfinite(w).all():
        x, pad_lo = zero_padded(x, pad_lo, out.shape[2:], w.shape[2:], stride, dilation)
    if stride[1] == 1 and stride[2] == 1:
        forward_pitched(x, w, b, has_bias, stride[0], dilation, pad_lo, groups, out)
    else:
        forward_rows(x, w, b, has_bias, stride, dilation, pad_lo, groups, out)
