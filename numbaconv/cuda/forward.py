"""CUDA forward convolution: ``out = x * w (+ b)`` (cross-correlation).

Two families (``plan.forward_plan`` chooses):

``tiled`` and ``single_channel`` (``make_tiled_kernel``)
    A block owns ``KB`` output channels x an ``RD x TY x TX`` tile of
    outputs.  For each pass of ``CB`` input channels it stages the input tile
    with its halo (zeros outside the volume, so the implicit padding costs no
    test in the inner loop) and the matching weight slice in shared memory,
    then every thread accumulates its ``RD x KB`` outputs in registers.  The
    tiled form reads ``RD`` inputs and ``KB`` weights (a broadcast) per tap
    for ``RD * KB`` multiply-adds; the single-channel form (one input channel
    per group) keeps the depth taps' weights in registers and slides down a
    column of ``RD + KD - 1`` inputs, each read once for ``KD`` taps.
    Base offsets of the (batch, channel) planes and of the tile are 64-bit;
    offsets inside a tile are 32-bit (cast with ``np.int32`` so the compiler
    narrows the arithmetic).  The kernel also writes a strided part of a
    larger output (``ooff``, ``ostep``): a stride phase of the data gradient.

``direct`` (``forward_kernel``)
    One thread per output element, zeros for taps that land in the padding.
    The fallback for tiles whose halo would not fit in shared memory.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda

from .. import _config
from ._indexing import (MAX_BLOCKS, elementwise_launch, global_thread_id,
                        grid_size, int3, tap_input_index, unravel5)
from .plan import THREADS, forward_plan, swapped


@cuda.jit(**_config.CUDA_JIT)
def forward_kernel(x, w, b, stride, dilation, pad_lo, groups, out):
    """Compute every element of ``out`` (see ``numbaconv._backend``).

    Parameters
    ----------
    x : device array, shape (N, C, D, H, W)
    w : device array, shape (K, C // groups, KD, KH, KW)
    b : device array of shape (K,) or None
        ``None`` compiles a variant without the bias term.
    stride, dilation, pad_lo : tuple of 3 int
    groups : int
    out : device array, shape (N, K, OD, OH, OW)
        Fully overwritten.
    """
    D = x.shape[2]
    H = x.shape[3]
    W = x.shape[4]
    K = out.shape[1]
    OD = out.shape[2]
    OH = out.shape[3]
    OW = out.shape[4]
    Cg = w.shape[1]
    KD = w.shape[2]
    KH = w.shape[3]
    KW = w.shape[4]
    Kg = K // groups

    for flat in range(global_thread_id(), out.size, grid_size()):
        n, k, od, oh, ow = unravel5(flat, K, OD, OH, OW)
        c0 = (k // Kg) * Cg  # first input channel of k's group
        # Accumulate in the data dtype: float32 problems stay float32.
        acc = out.dtype.type(0)
        if b is not None:
            acc = b[k]
        zero = out.dtype.type(0)
        for cg in range(Cg):
            c = c0 + cg
            for td in range(KD):
                id_ = tap_input_index(od, td, stride[0], dilation[0],
                                      pad_lo[0])
                in_d = id_ >= 0 and id_ < D
                for th in range(KH):
                    ih = tap_input_index(oh, th, stride[1], dilation[1],
                                         pad_lo[1])
                    in_h = in_d and ih >= 0 and ih < H
                    for tw in range(KW):
                        iw = tap_input_index(ow, tw, stride[2], dilation[2],
                                             pad_lo[2])
                        # A tap on the padding multiplies a zero, as the
                        # tiled kernels (and the CPU) do: inf * 0 is NaN.
                        v = zero
                        if in_h and iw >= 0 and iw < W:
                            v = x[n, c, id_, ih, iw]
                        acc += w[k, cg, td, th, tw] * v
        out[n, k, od, oh, ow] = acc


def forward_cuda(x, w, b, stride, dilation, pad_lo, groups, out):
    """Launch ``forward_kernel`` on the default stream.

    Takes the arguments of ``Backend.forward``.  Returns as soon as the
    kernel is queued: later work on the same stream (kernels, copies to the
    host) sees the finished result.
    """
    if out.size == 0:
        return
    blocks, threads = elementwise_launch(out.size)
    forward_kernel[blocks, threads](x, w, b, int3(stride), int3(dilation),
                                    int3(pad_lo), int(groups), out)


#: Positions of the launch parameters in the tuple ``p`` of a tiled kernel.
_PARAMS = ("C", "D", "H", "W", "KT", "Cg", "Kg", "kd", "kh", "kw",
           "sd", "sh", "sw", "dd", "dh", "dw", "pd", "ph", "pw",
           "OD", "OH", "OW", "ODf", "OHf", "OWf", "ood", "ooh", "oow",
           "osd", "osh", "osw", "CB", "NKB", "NTD", "NTH", "NTW", "NBLK")


@functools.lru_cache(maxsize=None)
def make_tiled_kernel(taps, rd, kb, ty, slide, guarded):
    """The tiled forward kernel for one compile-time configuration.

    Parameters
    ----------
    taps : tuple of 3 int
        Kernel size as compile-time constants, or ``(0, 0, 0)`` to read it
        from the launch parameters.
    rd, kb, ty : int
        Depth outputs per thread, output channels per block, threads along
        height (``THREADS // ty`` along width).
    slide : bool
        The single-channel inner loop (needs constant taps, unit stride and
        dilation along depth).
    guarded : bool
        The kernel returns at once when ``flag[0] != 0`` (the data gradient
        with a non-finite weight, which then takes the gather kernel).

    Returns
    -------
    numba.cuda dispatcher
        ``kernel[grid, THREADS, 0, smem](x, w, b, p, flag, out)`` with flat
        (1-D) ``x``, ``w``, ``out``, bias ``b`` or None, ``p`` the int64
        parameters named in ``_PARAMS``, and ``smem`` from the plan.
    """
    KD, KH, KW = taps
    RD, KB, TY = rd, kb, ty
    TX = THREADS // TY
    NACC = RD * KB
    NWR = (KD if slide else 1) * KB
    SLIDE, GUARD = slide, guarded
    NWARPS = THREADS // 32
    i32, u32, u64 = np.int32, np.uint32, np.uint64

    # No launch bound: capping registers at 128 (4 blocks per SM) makes
    # ptxas spill in some variants (bench/gpu_resources.py).
    @cuda.jit(**_config.CUDA_JIT)
    def tiled_forward_kernel(x, w, b, p, flag, out):
        if GUARD:
            if flag[0] != 0:
                return
        sm = cuda.shared.array(0, dtype=x.dtype)
        acc = cuda.local.array(NACC, dtype=x.dtype)
        wr = cuda.local.array(NWR, dtype=x.dtype)
        C, D, H, W, KT, Cg, Kg = p[0], p[1], p[2], p[3], p[4], p[5], p[6]
        kd = KD if KD > 0 else p[7]
        kh = KH if KH > 0 else p[8]
        kw = KW if KW > 0 else p[9]
        sd, sh, sw, dd, dh, dw = p[10], p[11], p[12], p[13], p[14], p[15]
        pd, ph, pw, OD, OH, OW = p[16], p[17], p[18], p[19], p[20], p[21]
        ODf, OHf, OWf, ood, ooh, oow = p[22], p[23], p[24], p[25], p[26], p[27]
        osd, osh, osw, CB, NKB = p[28], p[29], p[30], p[31], p[32]
        NTD, NTH, NTW, NBLK = p[33], p[34], p[35], p[36]
        groups = KT // Kg
        T = i32(kd * kh * kw)
        # Extents of the staged input tile (with halo), 32-bit from here on.
        ED = i32((RD - 1) * sd + (kd - 1) * dd + 1)
        EH = i32((TY - 1) * sh + (kh - 1) * dh + 1)
        EW = i32((TX - 1) * sw + (kw - 1) * dw + 1)
        EHW = i32(EH * EW)
        EXT = i32(ED * EHW)
        EDH = i32(ED * EH)
        WOFF = i32(CB * EXT)
        tid = i32(cuda.threadIdx.x)
        tx = i32(tid % TX)
        tyy = i32(tid // TX)
        lane = i32(tid % 32)
        warp = i32(tid // 32)
        xthread = i32(tyy * sh * EW + tx * sw)
        for blk in range(np.int64(cuda.blockIdx.x), NBLK,
                         np.int64(cuda.gridDim.x)):
            # kb fastest: neighbouring blocks share the input tile in L2.
            kbi = blk % NKB
            r = blk // NKB
            g = r % groups
            r = r // groups
            tw_ = r % NTW
            r = r // NTW
            th_ = r % NTH
            r = r // NTH
            td_ = r % NTD
            n = r // NTD
            k0 = g * Kg + kbi * KB
            kend = min((g + 1) * Kg, k0 + KB)
            d0 = td_ * RD
            h0 = th_ * TY
            w0 = tw_ * TX
            id0 = d0 * sd - pd
            ih0 = h0 * sh - ph
            iw0 = w0 * sw - pw
            for i in range(NACC):
                acc[i] = 0
                if b is not None:
                    if k0 + i % KB < kend:
                        acc[i] = b[u64(k0 + i % KB)]
            for c0 in range(0, Cg, CB):
                cb = i32(min(CB, Cg - c0))
                # Input tile: one warp per row, lanes along width (coalesced).
                rows = i32(cb * EDH)
                for row in range(warp, rows, NWARPS):
                    # Unsigned 32-bit: no floor-division sign fix-ups,
                    # no 64-bit division.
                    cc = u32(u32(row) // u32(EDH))
                    rem = u32(u32(row) - cc * u32(EDH))
                    ed = u32(rem // u32(EH))
                    eh = u32(rem - ed * u32(EH))
                    gd = id0 + ed
                    gh = ih0 + eh
                    inside = gd >= 0 and gd < D and gh >= 0 and gh < H
                    base = (((n * C + g * Cg + c0 + cc) * D + gd) * H + gh) * W
                    srow = i32(cc * EXT + ed * EHW + eh * EW)
                    for e in range(lane, EW, 32):
                        gx_ = iw0 + e
                        v = x.dtype.type(0)
                        if inside and gx_ >= 0 and gx_ < W:
                            v = x[u64(base + gx_)]
                        sm[u32(srow + e)] = v
                # Weight slice, laid out [channel][tap][k] for broadcasts.
                for e in range(tid, cb * T * KB, THREADS):
                    q = u32(u32(e) % u32(KB))
                    r2 = u32(u32(e) // u32(KB))
                    cc = u32(r2 // u32(T))
                    t = u32(r2 - cc * u32(T))
                    v = x.dtype.type(0)
                    if k0 + q < kend:
                        v = w[u64(((k0 + q) * Cg + c0 + cc) * T + t)]
                    sm[u32(WOFF + e)] = v
                cuda.syncthreads()
                for cc in range(cb):
                    xb = i32(cc * EXT + xthread)
                    wb = i32(WOFF + cc * T * KB)
                    if SLIDE:
                        for th in range(KH):
                            for tw in range(KW):
                                # The depth taps' weights, in registers.
                                for td in range(KD):
                                    for q in range(KB):
                                        wr[td * KB + q] = sm[u32(
                                            wb + ((td * KH + th) * KW + tw)
                                            * KB + q)]
                                col = i32(xb + th * dh * EW + tw * dw)
                                for j in range(RD + KD - 1):
                                    v = sm[u32(col + j * EHW)]
                                    for td in range(KD):
                                        if j - td >= 0 and j - td < RD:
                                            for q in range(KB):
                                                acc[(j - td) * KB + q] += \
                                                    wr[td * KB + q] * v
                    else:
                        t = i32(0)
                        for td in range(kd):
                            for th in range(kh):
                                rb = i32(xb + td * dd * EHW + th * dh * EW)
                                for tw in range(kw):
                                    for q in range(KB):
                                        wr[q] = sm[u32(wb + t * KB + q)]
                                    for rr in range(RD):
                                        v = sm[u32(rb + rr * sd * EHW + tw * dw)]
                                        for q in range(KB):
                                            acc[rr * KB + q] += wr[q] * v
                                    t += 1
                # Nobody restages before every thread has read the tile.
                cuda.syncthreads()
            oh = h0 + tyy
            ow = w0 + tx
            if oh < OH and ow < OW:
                ooff = (ooh + osh * oh) * OWf + oow + osw * ow
                for rr in range(RD):
                    od = d0 + rr
                    if od < OD:
                        for q in range(KB):
                            k = k0 + q
                            if k < kend:
                                out[u64(((n * KT + k) * ODf + ood + osd * od)
                                        * OHf * OWf + ooff)] = acc[rr * KB + q]

    return tiled_forward_kernel


def flat(a):
    """A 1-D view of a C-contiguous device array (no copy)."""
    return a.reshape(a.size)


def lifted(a, swap):
    """``a`` (5-D, C-contiguous) with depth and height exchanged when
    ``swap``: a reshape, valid because depth is 1 there."""
    return a.reshape(swapped(a.shape)) if swap else a


def tiled_params(plan, x_shape, w_shape, out_shape, stride, dilation, pad_lo,
                 extent, ooff, ostep):
    """The int64 parameter tuple of ``make_tiled_kernel`` (see ``_PARAMS``),
    with the shapes already in the plan's axis order."""
    N, C, D, H, W = x_shape
    K, Cg, kd, kh, kw = w_shape
    KT = out_shape[1]
    Kg = K // (C // Cg)
    OD, OH, OW = extent
    NKB = -(-Kg // plan.kb)
    NTD, NTH, NTW = -(-OD // plan.rd), -(-OH // plan.ty), -(-OW // plan.tx)
    nblk = N * (C // Cg) * NKB * NTD * NTH * NTW
    values = (C, D, H, W, KT, Cg, Kg, kd, kh, kw) + tuple(stride) \
        + tuple(dilation) + tuple(pad_lo) + (OD, OH, OW) \
        + tuple(out_shape[2:]) + tuple(ooff) + tuple(ostep) \
        + (plan.cb, NKB, NTD, NTH, NTW, nblk)
    return tuple(np.int64(v) for v in values), nblk


def tiled_launch(plan, x, w, b, stride, dilation, pad_lo, out, extent=None,
                 ooff=(0, 0, 0), ostep=(1, 1, 1), flag=None):
    """Queue the tiled forward of ``plan`` (a ``ForwardPlan``).

    ``extent`` (outputs per axis), ``ooff`` and ``ostep`` place the outputs
    at ``out[..., ooff + ostep * o]``; ``flag`` (an int32 device array)
    selects the guarded variant.
    """
    extent = tuple(out.shape[2:]) if extent is None else tuple(extent)
    if plan.swap:
        x, w, out = lifted(x, True), lifted(w, True), lifted(out, True)
        stride, dilation, pad_lo = (swapped(stride), swapped(dilation),
                                    swapped(pad_lo))
        extent, ooff, ostep = swapped(extent), swapped(ooff), swapped(ostep)
    p, nblk = tiled_params(plan, x.shape, w.shape, out.shape, int3(stride),
                           int3(dilation), int3(pad_lo), extent, int3(ooff),
                           int3(ostep))
    if nblk == 0:
        return
    kernel = make_tiled_kernel(plan.taps, plan.rd, plan.kb, plan.ty,
                               plan.kernel == "single_channel",
                               flag is not None)
    grid = min(nblk, MAX_BLOCKS)
    kernel[grid, THREADS, 0, plan.smem](
        flat(x), flat(w), b, p, flag if flag is not None else flat(x),
        flat(out))


def forward_launch(x, w, b, stride, dilation, pad_lo, groups, out):
    """``Backend.forward``: the kernel ``plan.forward_plan`` chooses."""
    if out.size == 0:
        return
    plan = forward_plan(x.shape, w.shape, out.shape, stride, dilation, pad_lo,
                        groups, np.dtype(out.dtype).itemsize)
    if plan.kernel == "direct":
        forward_cuda(x, w, b, stride, dilation, pad_lo, groups, out)
    else:
        tiled_launch(plan, x, w, b, stride, dilation, pad_lo, out)
