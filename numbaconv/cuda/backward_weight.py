"""CUDA gradients of the convolution with respect to its weight and bias.

Both are reductions over the batch and the output positions, computed
without atomics so that the result is bit-identical run to run.

The fast path (``weight_launch``, ``bias_launch``) splits the positions into
chunks fixed by the shape (``plan.weight_plan``, ``plan.bias_chunks``): a
first pass writes one partial sum per chunk, a second adds the chunks in
chunk order.  The weight gradient's first pass is an implicit matrix product
over shared-memory tiles (``chunked_weight_kernel``).

The fallback (``backward_weight_kernel``, for tiles that do not fit in
shared memory): one block owns one weight element; its threads split
the terms of the sum in a fixed round-robin order, and the per-thread
partial sums are merged by a fixed-shape tree in shared memory
(``block_sum``).  The summation order depends only on the problem shape and
the block size, never on the schedule.

The tree's scratch is dynamic shared memory sized at launch, one element per
thread (``_scratch_bytes``): no more shared memory than the block uses, and
every thread of a block gets the same buffer in the CUDA simulator too, whose
static ``cuda.shared.array`` is allocated lazily by whichever thread gets
there first and can hand racing threads different arrays.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from .. import _config
from ._indexing import (MAX_BLOCKS, block_sum, elementwise_launch,
                        global_thread_id, grid_size, int3, reduction_launch,
                        tap_input_index, unravel4, unravel5)
from .forward import flat, lifted
from .plan import (BG_THREADS, THREADS, WG_CQ, WG_KQ, WG_RC, WG_RK,
                   bias_chunks, swapped, weight_plan)


@cuda.jit(**_config.CUDA_JIT)
def backward_weight_kernel(x, gy, stride, dilation, pad_lo, groups, gw):
    """Compute every element of ``gw`` (see ``numbaconv._backend``).

    Launched with one block per weight element (a block-stride loop covers
    a capped grid), a power-of-two block size and ``blockDim.x`` elements
    of dynamic shared memory.

    Parameters
    ----------
    x : device array, shape (N, C, D, H, W)
    gy : device array, shape (N, K, OD, OH, OW)
    stride, dilation, pad_lo : tuple of 3 int
    groups : int
    gw : device array, shape (K, C // groups, KD, KH, KW)
        Fully overwritten.
    """
    scratch = cuda.shared.array(0, dtype=gw.dtype)  # blockDim.x elements
    N = x.shape[0]
    D = x.shape[2]
    H = x.shape[3]
    W = x.shape[4]
    OD = gy.shape[2]
    OH = gy.shape[3]
    OW = gy.shape[4]
    K = gw.shape[0]
    Cg = gw.shape[1]
    KD = gw.shape[2]
    KH = gw.shape[3]
    KW = gw.shape[4]
    Kg = K // groups
    terms = N * OD * OH * OW  # one term per (n, od, oh, ow)
    first_term = np.int64(cuda.threadIdx.x)
    term_step = np.int64(cuda.blockDim.x)

    # Block-uniform loop: every thread of a block sees the same weight
    # elements, as block_sum's barriers require.
    for widx in range(np.int64(cuda.blockIdx.x), gw.size,
                      np.int64(cuda.gridDim.x)):
        k, cg, td, th, tw = unravel5(widx, Cg, KD, KH, KW)
        c = (k // Kg) * Cg + cg
        acc = gw.dtype.type(0)
        # Consecutive threads take consecutive output columns, so their
        # reads of gy and x are coalesced.
        for j in range(first_term, terms, term_step):
            n, od, oh, ow = unravel4(j, OD, OH, OW)
            id_ = tap_input_index(od, td, stride[0], dilation[0], pad_lo[0])
            ih = tap_input_index(oh, th, stride[1], dilation[1], pad_lo[1])
            iw = tap_input_index(ow, tw, stride[2], dilation[2], pad_lo[2])
            if (id_ >= 0 and id_ < D and ih >= 0 and ih < H
                    and iw >= 0 and iw < W):
                acc += gy[n, k, od, oh, ow] * x[n, c, id_, ih, iw]
        total = block_sum(scratch, acc)
        if cuda.threadIdx.x == 0:
            gw[k, cg, td, th, tw] = total


def backward_weight_cuda(x, gy, stride, dilation, pad_lo, groups, gw):
    """Launch ``backward_weight_kernel`` on the default stream.

    Takes the arguments of ``Backend.backward_weight``.  An empty batch (or
    empty output) still launches, and writes zeros.
    """
    if gw.size == 0:
        return
    terms = x.shape[0] * gy.shape[2] * gy.shape[3] * gy.shape[4]
    blocks, threads = reduction_launch(gw.size, terms)
    backward_weight_kernel[blocks, threads, 0, _scratch_bytes(threads, gw)](
        x, gy, int3(stride), int3(dilation), int3(pad_lo), int(groups), gw)


def _scratch_bytes(threads, out):
    """Dynamic shared memory of a reduction block: one ``out`` element per thread."""
    return int(threads) * np.dtype(out.dtype).itemsize


# --- the chunked implicit matrix product (``plan.weight_plan``) -------------

#: Columns of ``gw`` ((channel, tap) pairs) and output channels per block.
_NCOLS = WG_CQ * WG_RC
_KBW = WG_KQ * WG_RK
_NWARPS = THREADS // 32
_NACC = WG_RK * WG_RC


@cuda.jit(**_config.CUDA_JIT)
def chunked_weight_kernel(x, gy, p, part):
    """One chunk's partial weight gradient for a block of ``gw``.

    A block owns ``_KBW`` output channels x ``_NCOLS`` columns ``(c, t)``
    of one group and sums ``gy[n, k, o] * x[n, c, o*s + t*d - pad]`` over
    the tiles of its chunk, tile by tile: it stages ``gy`` for its channels
    and ``x`` with its halo for the input channels its columns touch, then
    each thread adds ``WG_RK x WG_RC`` products per position.  The partial
    goes to ``part[chunk, k, c*T + t]`` (flat); positions are visited in a
    fixed order, so the sum does not depend on the schedule.

    Parameters
    ----------
    x, gy : flat device arrays of the (N, C, D, H, W) input and
        (N, K, OD, OH, OW) output gradient.
    p : tuple of int64
        ``N, C, D, H, W, K, Cg, Kg, kd, kh, kw, sd, sh, sw, dd, dh, dw,
        pd, ph, pw, OD, OH, OW, TD, TH, TW, NCH, COLB, KBLK, CHUNKS``
        (``NCH`` input channels staged per block).
    part : flat device array of ``CHUNKS * K * Cg * kd * kh * kw`` elements
    """
    i32, u32, u64 = np.int32, np.uint32, np.uint64
    sm = cuda.shared.array(0, dtype=x.dtype)
    acc = cuda.local.array(_NACC, dtype=x.dtype)
    gv = cuda.local.array(WG_RK, dtype=x.dtype)
    xoff = cuda.local.array(WG_RC, dtype=np.int32)
    N, C, D, H, W, K, Cg, Kg = p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
    kd, kh, kw, sd, sh, sw = p[8], p[9], p[10], p[11], p[12], p[13]
    dd, dh, dw, pd, ph, pw = p[14], p[15], p[16], p[17], p[18], p[19]
    OD, OH, OW, TD, TH, TW = p[20], p[21], p[22], p[23], p[24], p[25]
    NCH, COLB, KBLK, CHUNKS = p[26], p[27], p[28], p[29]
    groups = K // Kg
    T = i32(kd * kh * kw)
    CT = Cg * T
    ED = i32((TD - 1) * sd + (kd - 1) * dd + 1)
    EH = i32((TH - 1) * sh + (kh - 1) * dh + 1)
    EW = i32((TW - 1) * sw + (kw - 1) * dw + 1)
    EHW = i32(EH * EW)
    EXT = i32(ED * EHW)
    EDH = i32(ED * EH)
    P = i32(TD * TH * TW)
    GOFF = i32(NCH * EXT)
    NTD = (OD + TD - 1) // TD
    NTH = (OH + TH - 1) // TH
    NTW = (OW + TW - 1) // TW
    TT = N * NTD * NTH * NTW
    tid = i32(cuda.threadIdx.x)
    kq = i32(tid % WG_KQ)
    cq = i32(tid // WG_KQ)
    lane = i32(tid % 32)
    warp = i32(tid // 32)
    nblk = CHUNKS * groups * KBLK * COLB
    for blk in range(np.int64(cuda.blockIdx.x), nblk,
                     np.int64(cuda.gridDim.x)):
        cbi = blk % COLB
        r = blk // COLB
        kbi = r % KBLK
        r = r // KBLK
        g = r % groups
        chunk = r // groups
        col0 = cbi * _NCOLS
        c_first = col0 // T
        k0 = g * Kg + kbi * _KBW
        kend = min((g + 1) * Kg, k0 + _KBW)
        for q in range(WG_RC):
            col = col0 + cq + WG_CQ * q
            xoff[q] = 0
            if col < CT:
                c = col // T
                t = i32(col - c * T)
                td = i32(t // (kh * kw))
                t2 = i32(t - td * (kh * kw))
                th = i32(t2 // kw)
                tw = i32(t2 - th * kw)
                xoff[q] = i32((c - c_first) * EXT + td * dd * EHW
                              + th * dh * EW + tw * dw)
        for i in range(_NACC):
            acc[i] = 0
        # Threads with no channel or no column here stage but do not compute.
        active = k0 + kq * WG_RK < kend and col0 + cq < CT
        t_lo = chunk * TT // CHUNKS
        t_hi = (chunk + 1) * TT // CHUNKS
        for tile in range(t_lo, t_hi):
            r = tile
            a_w = r % NTW
            r = r // NTW
            a_h = r % NTH
            r = r // NTH
            a_d = r % NTD
            n = r // NTD
            od0 = a_d * TD
            oh0 = a_h * TH
            ow0 = a_w * TW
            id0 = od0 * sd - pd
            ih0 = oh0 * sh - ph
            iw0 = ow0 * sw - pw
            nch = i32(min(NCH, Cg - c_first))
            rows = i32(nch * EDH)
            for row in range(warp, rows, _NWARPS):
                # Unsigned 32-bit division (see forward.make_tiled_kernel).
                cc = u32(u32(row) // u32(EDH))
                rem = u32(u32(row) - cc * u32(EDH))
                ed = u32(rem // u32(EH))
                eh = u32(rem - ed * u32(EH))
                gd = id0 + ed
                gh = ih0 + eh
                inside = gd >= 0 and gd < D and gh >= 0 and gh < H
                base = ((((n * C + g * Cg + c_first + cc) * D + gd) * H + gh)
                        * W)
                srow = i32(cc * EXT + ed * EHW + eh * EW)
                for e in range(lane, EW, 32):
                    gx_ = iw0 + e
                    v = x.dtype.type(0)
                    if inside and gx_ >= 0 and gx_ < W:
                        v = x[u64(base + gx_)]
                    sm[u32(srow + e)] = v
            for e in range(tid, _KBW * P, THREADS):
                kk = u32(u32(e) // u32(P))
                pp = u32(u32(e) - kk * u32(P))
                pdd = u32(pp // u32(TH * TW))
                rem = u32(pp - pdd * u32(TH * TW))
                phh = u32(rem // u32(TW))
                pww = u32(rem - phh * u32(TW))
                od = od0 + pdd
                oh = oh0 + phh
                ow = ow0 + pww
                v = x.dtype.type(0)
                if k0 + kk < kend and od < OD and oh < OH and ow < OW:
                    v = gy[u64((((n * K + k0 + kk) * OD + od) * OH + oh) * OW
                               + ow)]
                sm[u32(GOFF + e)] = v
            cuda.syncthreads()
            gbase = i32(GOFF + kq * WG_RK * P)
            pp = i32(0)
            for pdd in range(TD if active else 0):
                for phh in range(TH):
                    pos = i32(pdd * sd * EHW + phh * sh * EW)
                    for pww in range(TW):
                        for kk in range(WG_RK):
                            gv[kk] = sm[u32(gbase + kk * P + pp)]
                        for q in range(WG_RC):
                            v = sm[u32(xoff[q] + pos)]
                            for kk in range(WG_RK):
                                acc[kk * WG_RC + q] += gv[kk] * v
                        pos += sw
                        pp += 1
            cuda.syncthreads()
        for kk in range(WG_RK):
            k = k0 + kq * WG_RK + kk
            if k < kend:
                for q in range(WG_RC):
                    col = col0 + cq + WG_CQ * q
                    if col < CT:
                        part[u64((chunk * K + k) * CT + col)] = \
                            acc[kk * WG_RC + q]


@cuda.jit(**_config.CUDA_JIT)
def sum_chunks_kernel(part, chunks, out):
    """``out[i] = sum over c of part[c * out.size + i]``, c in order."""
    size = out.size
    for i in range(global_thread_id(), size, grid_size()):
        acc = part[i]
        for c in range(1, chunks):
            acc += part[c * size + i]
        out[i] = acc


@cuda.jit(**_config.CUDA_JIT)
def bias_partial_kernel(gy, N, K, S, chunks, part):
    """``part[k * chunks + j]`` = the sum of chunk ``j`` of ``gy[:, k]``.

    ``gy`` is flat, ``S`` positions per (sample, channel).  The ``N * S``
    terms of channel ``k`` are cut into ``chunks`` equal ranges, one block
    each; threads stride over the range in a fixed order and a fixed tree
    (``block_sum``) merges them.
    """
    scratch = cuda.shared.array(0, dtype=part.dtype)
    total = N * S
    tid = np.int64(cuda.threadIdx.x)
    step = np.int64(cuda.blockDim.x)
    for blk in range(np.int64(cuda.blockIdx.x), K * chunks,
                     np.int64(cuda.gridDim.x)):
        k = blk // chunks
        j = blk - k * chunks
        lo = j * total // chunks
        hi = (j + 1) * total // chunks
        acc = part.dtype.type(0)
        if hi > lo:
            for n in range(lo // S, (hi + S - 1) // S):
                s0 = max(lo - n * S, 0)
                s1 = min(hi - n * S, S)
                base = (n * K + k) * S
                for s in range(s0 + tid, s1, step):
                    acc += gy[base + s]
        value = block_sum(scratch, acc)
        if cuda.threadIdx.x == 0:
            part[blk] = value


def weight_launch(x, gy, stride, dilation, pad_lo, groups, gw):
    """``Backend.backward_weight``: the kernel ``plan.weight_plan`` chooses.

    Queued on the default stream; an empty batch writes zeros.
    """
    if gw.size == 0:
        return
    plan = weight_plan(x.shape, gw.shape, gy.shape, stride, dilation, pad_lo,
                       groups, np.dtype(gw.dtype).itemsize)
    if plan.kernel == "direct":
        backward_weight_cuda(x, gy, stride, dilation, pad_lo, groups, gw)
        return
    if plan.swap:
        x, gy, gw = lifted(x, True), lifted(gy, True), lifted(gw, True)
        stride, dilation, pad_lo = (swapped(stride), swapped(dilation),
                                    swapped(pad_lo))
    N, C, D, H, W = x.shape
    K, Cg, kd, kh, kw = gw.shape
    values = (N, C, D, H, W, K, Cg, K // groups, kd, kh, kw) \
        + int3(stride) + int3(dilation) + int3(pad_lo) + tuple(gy.shape[2:]) \
        + plan.tile + (plan.channels, plan.col_blocks, plan.k_blocks,
                       plan.chunks)
    p = tuple(np.int64(v) for v in values)
    out = flat(gw)
    part = out if plan.chunks == 1 else cuda.device_array(
        plan.chunks * gw.size, dtype=gw.dtype)
    nblk = plan.chunks * groups * plan.k_blocks * plan.col_blocks
    chunked_weight_kernel[min(nblk, MAX_BLOCKS), THREADS, 0, plan.smem](
        flat(x), flat(gy), p, part)
    if plan.chunks > 1:
        blocks, threads = elementwise_launch(gw.size)
        sum_chunks_kernel[blocks, threads](part, plan.chunks, out)


def bias_launch(gy, gb):
    """``Backend.bias_grad``: two passes over chunks of (batch x space)."""
    if gb.size == 0:
        return
    chunks = bias_chunks(gy.shape)
    part = gb if chunks == 1 else cuda.device_array(gb.size * chunks,
                                                    dtype=gb.dtype)
    bias_partial_kernel[min(gb.size * chunks, MAX_BLOCKS), BG_THREADS, 0,
                        BG_THREADS * np.dtype(gb.dtype).itemsize](
        flat(gy), gy.shape[0], gy.shape[1],
        gy.shape[2] * gy.shape[3] * gy.shape[4], chunks, part)
    if chunks > 1:
        blocks, threads = elementwise_launch(gb.size)
        sum_chunks_kernel_strided[blocks, threads](part, chunks, gb)


@cuda.jit(**_config.CUDA_JIT)
def sum_chunks_kernel_strided(part, chunks, out):
    """``out[k] = sum over j of part[k * chunks + j]``, j in order."""
    for k in range(global_thread_id(), out.size, grid_size()):
        acc = part[k * chunks]
        for j in range(1, chunks):
            acc += part[k * chunks + j]
        out[k] = acc
