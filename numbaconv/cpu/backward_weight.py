"""CPU ``backward_weight`` and ``bias_grad`` primitives.

``gw[k, c, t]`` is a sum over the batch and every output position, so the
work is a reduction.  It is split into tasks of (block of ``TILE_CHANNELS`` output
channels, input channel, chunk of (batch, depth) planes); each task writes
its own partial sums, and the partials of the chunks are added in chunk
order at the end.  The chunks depend on the shapes alone, never on the
number of threads, so the result is bit-identical however many threads run.
Sums are accumulated in float64: they run over ``N * OD * OH * OW`` terms,
far more than float32 holds accurately.

Convolutions with sixteen or more output channels per group take the
broadcast path of ``broadcast_grad.py`` (a register-blocked matrix product
over tiles of input rows), four to fifteen the panel path of
``panel_grad.py`` (register-blocked updates over the row panels of the
forward).  For the others, the fast path (stride 1 along height and width) uses the pitched tiles of
``forward``: the output gradient is copied into tiles of pitch
``Wp = OW + dw*(KW-1)`` with zeros in the scratch columns, so each tap is one
long dot product, four output channels sharing each input load.  A scratch
product is ``0 * x``, which is exactly zero only when ``x`` is finite; a tile
holding inf or NaN therefore takes the row-by-row loop, which never touches
scratch columns, and NaN/inf propagate exactly as in a direct sum.
"""

import numpy as np
from numba import get_num_threads, njit, prange

from ._vector import wide_vectors
from .._config import NJIT_PARALLEL, NJIT_SERIAL
from ._index import all_finite, claim, task_counter, unravel4, valid_range, zero_padded
from .forward import load_tile
from .broadcast_grad import weight_grad_cpu
from .plan import backward_weight_choice
from .panel_grad import CHUNKS, weight_grad_panels

#: Target number of independent tasks; more chunks than needed only costs memory.
TASKS = 64
#: Output channels per task of the pitched path: each input load feeds this
#: many multiply-adds.
TILE_CHANNELS = 4
#: Target bytes of one output-channel gradient tile: ``TILE_CHANNELS`` of them and the
#: input tile should stay in the L1 data cache.
TILE_BYTES = 8192


@njit(inline="always", **NJIT_SERIAL)
def row_blocks(n_rows, pitch, itemsize):
    """Split ``n_rows`` rows of ``pitch`` elements into equal blocks of about
    ``TILE_BYTES``; returns (rows per block, number of blocks)."""
    nrb = max(1, min(n_rows, (n_rows * pitch * itemsize + TILE_BYTES - 1) // TILE_BYTES))
    rows = (n_rows + nrb - 1) // nrb
    return rows, (n_rows + rows - 1) // rows


@njit(inline="always", **NJIT_SERIAL)
def row_sum(a):
    s = a.dtype.type(0)
    for j in range(a.shape[0]):
        s += a[j]
    return s


@njit(inline="always", **NJIT_SERIAL)
def dot(g, x):
    s = g.dtype.type(0)
    for j in range(x.shape[0]):
        s += g[j] * x[j]
    return s


@njit(inline="always", **NJIT_SERIAL)
def dot4(g0, g1, g2, g3, x):
    """Four dot products sharing one input: four multiply-adds per load of x."""
    s0 = s1 = s2 = s3 = x.dtype.type(0)
    for j in range(x.shape[0]):
        xv = x[j]
        s0 += g0[j] * xv
        s1 += g1[j] * xv
        s2 += g2[j] * xv
        s3 += g3[j] * xv
    return s0, s1, s2, s3


@njit(inline="always", **NJIT_SERIAL)
def dot4x2(g0, g1, g2, g3, xa, xb):
    """Eight dot products: four gradients against two inputs, each load
    feeding four or two multiply-adds."""
    a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = xa.dtype.type(0)
    for j in range(xa.shape[0]):
        u = xa[j]
        v = xb[j]
        h0 = g0[j]
        h1 = g1[j]
        h2 = g2[j]
        h3 = g3[j]
        a0 += h0 * u
        a1 += h1 * u
        a2 += h2 * u
        a3 += h3 * u
        b0 += h0 * v
        b1 += h1 * v
        b2 += h2 * v
        b3 += h3 * v
    return a0, a1, a2, a3, b0, b1, b2, b3


@njit(inline="always", **NJIT_SERIAL)
def tap_sums_pair(acc, acc_b, gyt, tile, tile_b, nk, kd, kh, kw, shift, length):
    """``tap_sums`` (flat path) for two input channels at once."""
    x = tile[shift:shift + length]
    xb = tile_b[shift:shift + length]
    j = 0
    while j + 4 <= nk:
        a0, a1, a2, a3, b0, b1, b2, b3 = dot4x2(
            gyt[j, :length], gyt[j + 1, :length], gyt[j + 2, :length],
            gyt[j + 3, :length], x, xb)
        acc[j, kd, kh, kw] += a0
        acc[j + 1, kd, kh, kw] += a1
        acc[j + 2, kd, kh, kw] += a2
        acc[j + 3, kd, kh, kw] += a3
        acc_b[j, kd, kh, kw] += b0
        acc_b[j + 1, kd, kh, kw] += b1
        acc_b[j + 2, kd, kh, kw] += b2
        acc_b[j + 3, kd, kh, kw] += b3
        j += 4
    while j < nk:
        acc[j, kd, kh, kw] += dot(gyt[j, :length], x)
        acc_b[j, kd, kh, kw] += dot(gyt[j, :length], xb)
        j += 1


@njit(inline="always", **NJIT_SERIAL)
def tap_sums(acc, gyt, tile, nk, kd, kh, kw, shift, pitch, nr, OW, flat):
    """acc[j, kd, kh, kw] += sum over the block of gy_j * (tile shifted)."""
    if flat:
        length = nr * pitch
        x = tile[shift:shift + length]
        j = 0
        while j + 4 <= nk:
            s0, s1, s2, s3 = dot4(gyt[j, :length], gyt[j + 1, :length],
                                  gyt[j + 2, :length], gyt[j + 3, :length], x)
            acc[j, kd, kh, kw] += s0
            acc[j + 1, kd, kh, kw] += s1
            acc[j + 2, kd, kh, kw] += s2
            acc[j + 3, kd, kh, kw] += s3
            j += 4
        while j < nk:
            acc[j, kd, kh, kw] += dot(gyt[j, :length], x)
            j += 1
    else:
        for j in range(nk):
            s = 0.0
            for r in range(nr):
                p = r * pitch
                s += dot(gyt[j, p:p + OW], tile[p + shift:p + shift + OW])
            acc[j, kd, kh, kw] += s


@njit(**NJIT_PARALLEL)
def backward_weight_pitched(x, gy, stride_d, dilation, pad_lo, groups, nchunk, workers,
                            partial):
    """Fast path (stride 1 along height and width): partial[chunk] = sums."""
    N, C, D, H, W = x.shape
    K, Cg, KD, KH, KW = partial.shape[1:]
    OD, OH, OW = gy.shape[2], gy.shape[3], gy.shape[4]
    dd, dh, dw = dilation
    pd, ph, pw = pad_lo
    Kg = K // groups
    pitch = OW + dw * (KW - 1)
    rows, nrb = row_blocks(OH, pitch, x.itemsize)
    tile_rows = rows + dh * (KH - 1) + 1
    nkb = (Kg + TILE_CHANNELS - 1) // TILE_CHANNELS
    ncp = (Cg + 1) // 2                            # input channels in pairs
    planes = N * OD
    per_chunk = (planes + nchunk - 1) // nchunk
    ntask = groups * nkb * ncp * nchunk
    # Each of ``workers`` threads claims tasks one at a time (see
    # ``broadcast.forward_broadcast``).
    counter = task_counter()
    for worker in prange(max(1, min(workers, ntask))):
        wide_vectors()
        task = claim(counter)
        while task < ntask:
            g, kb, cp, chunk = unravel4(task, nkb, ncp, nchunk)
            k0 = g * Kg + kb * TILE_CHANNELS
            nk = min(TILE_CHANNELS, (g + 1) * Kg - k0)
            c = 2 * cp
            pair = c + 1 < Cg
            acc = np.zeros((2, TILE_CHANNELS, KD, KH, KW), dtype=np.float64)
            gyt = np.zeros((TILE_CHANNELS, rows * pitch), dtype=gy.dtype)
            tiles = np.empty((2, tile_rows * pitch), dtype=x.dtype)
            for plane in range(chunk * per_chunk, min(planes, (chunk + 1) * per_chunk)):
                n = plane // OD
                od = plane % OD
                for rb in range(nrb):
                    oh0 = rb * rows
                    nr = min(rows, OH - oh0)
                    for j in range(nk):
                        for r in range(nr):
                            dst = gyt[j, r * pitch:r * pitch + OW]
                            src = gy[n, k0 + j, od, oh0 + r]
                            for ow in range(OW):
                                dst[ow] = src[ow]
                            # scratch columns stay zero from the allocation
                    for kd in range(KD):
                        i_d = od * stride_d + kd * dd - pd
                        if i_d < 0 or i_d >= D:
                            continue
                        nrows = nr + dh * (KH - 1) + 1
                        load_tile(x[n, g * Cg + c, i_d], oh0 - ph, nrows, pw, pitch, 0, 0.0,
                                  tiles[0])
                        flat = all_finite(tiles[0, :nrows * pitch])
                        flat_b = False
                        if pair:
                            load_tile(x[n, g * Cg + c + 1, i_d], oh0 - ph, nrows, pw, pitch,
                                      0, 0.0, tiles[1])
                            flat_b = all_finite(tiles[1, :nrows * pitch])
                        for kh in range(KH):
                            for kw in range(KW):
                                shift = kh * dh * pitch + kw * dw
                                if pair and flat and flat_b:
                                    tap_sums_pair(acc[0], acc[1], gyt, tiles[0], tiles[1], nk,
                                                  kd, kh, kw, shift, nr * pitch)
                                    continue
                                tap_sums(acc[0], gyt, tiles[0], nk, kd, kh, kw, shift,
                                         pitch, nr, OW, flat)
                                if pair:
                                    tap_sums(acc[1], gyt, tiles[1], nk, kd, kh, kw, shift,
                                             pitch, nr, OW, flat_b)
            for j in range(nk):
                partial[chunk, k0 + j, c] = acc[0, j]
                if pair:
                    partial[chunk, k0 + j, c + 1] = acc[1, j]
            task = claim(counter)

@njit(**NJIT_PARALLEL)
def backward_weight_rows(x, gy, stride, dilation, pad_lo, groups, gw):
    """General path (any stride): one task per (k, c, kd, kh) row of taps."""
    N, C, D, H, W = x.shape
    K, Cg, KD, KH, KW = gw.shape
    OD, OH, OW = gy.shape[2], gy.shape[3], gy.shape[4]
    sd, sh, sw = stride
    dd, dh, dw = dilation
    pd, ph, pw = pad_lo
    Kg = K // groups
    ntask = K * Cg * KD * KH
    for task in prange(ntask):
        wide_vectors()
        k, c, kd, kh = unravel4(task, Cg, KD, KH)
        ci = (k // Kg) * Cg + c
        od0, od1 = valid_range(kd * dd - pd, sd, D, OD)
        oh0, oh1 = valid_range(kh * dh - ph, sh, H, OH)
        for kw in range(KW):
            off = kw * dw - pw
            ow0, ow1 = valid_range(off, sw, W, OW)
            acc = 0.0
            if ow1 > ow0:
                i0 = ow0 * sw + off
                i1 = (ow1 - 1) * sw + off + 1
                for n in range(N):
                    for od in range(od0, od1):
                        xplane = x[n, ci, od * sd + kd * dd - pd]
                        gyplane = gy[n, k, od]
                        for oh in range(oh0, oh1):
                            acc += dot(gyplane[oh, ow0:ow1],
                                       xplane[oh * sh + kh * dh - ph, i0:i1:sw])
            gw[k, c, kd, kh, kw] = acc


@njit(**NJIT_PARALLEL)
def sum_chunks(partial, gw):
    """gw = sum of the partials over chunks, in chunk order."""
    flat = gw.reshape(-1)
    src = partial.reshape((partial.shape[0], -1))
    for i in prange(flat.shape[0]):
        s = 0.0
        for chunk in range(src.shape[0]):
            s += src[chunk, i]
        flat[i] = s


@njit(**NJIT_PARALLEL)
def bias_grad_kernel(gy, gb):
    """gb[k] = sum over batch and space of gy[:, k]."""
    N, K, OD, OH, OW = gy.shape
    for k in prange(K):
        acc = 0.0
        for n in range(N):
            for od in range(OD):
                for oh in range(OH):
                    acc += row_sum(gy[n, k, od, oh])
        gb[k] = acc


def backward_weight_cpu(x, gy, stride, dilation, pad_lo, groups, gw):
    """Host entry: runs the kernel ``plan.backward_weight_choice`` names
    (see the table in ``plan.py``)."""
    K, Cg, KD, KH, KW = gw.shape
    kernel = backward_weight_choice(gw.shape, stride, groups).kernel
    if kernel == "broadcast":
        weight_grad_cpu(x, gy, stride, dilation, pad_lo, groups, gw)
        return
    if kernel == "panels":
        nchunk = max(1, min(gy.shape[0] * gy.shape[2], CHUNKS))
        partial = np.empty((nchunk, groups, K // groups, KW * Cg * KD * KH), np.float64)
        weight_grad_panels(np.ascontiguousarray(x), gy, gw.shape[2:], stride, dilation,
                           pad_lo, groups, get_num_threads(), partial)
        # NumPy adds the chunks one after another, in chunk order, as
        # ``sum_chunks`` does; the weight is small, so this costs nothing and
        # spares loading one more compiled kernel on the first call.
        total = partial.sum(axis=0).reshape(K, KW, Cg, KD, KH)
        gw[...] = total.transpose(0, 2, 3, 4, 1)
        return
    if not all_finite(gy):
        x, pad_lo = zero_padded(x, pad_lo, gy.shape[2:], gw.shape[2:], stride, dilation)
    if kernel == "pitched":
        jobs = groups * -(-(K // groups) // TILE_CHANNELS) * ((Cg + 1) // 2)
        nchunk = max(1, min(gy.shape[0] * gy.shape[2], -(-TASKS // jobs)))
        partial = np.empty((nchunk,) + gw.shape, dtype=np.float64)
        backward_weight_pitched(x, gy, stride[0], dilation, pad_lo, groups, nchunk,
                                get_num_threads(), partial)
        sum_chunks(partial, gw)
    else:
        backward_weight_rows(x, gy, stride, dilation, pad_lo, groups, gw)


def bias_grad_cpu(gy, gb):
    bias_grad_kernel(gy, gb)
