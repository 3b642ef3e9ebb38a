"""CPU ``forward`` primitive: direct cross-correlation, no im2col.

``forward_cpu`` runs the kernel ``plan.py`` chooses: the broadcast path
(``broadcast.py``) for many output channels per group, the panel path
(``panel.py``) for four to seven where its block fits the registers, and for
few output channels the pitched path below at unit height and width stride,
else the row path.  Every kernel gives each output element to
exactly one task and sums it in an order fixed by the shapes, so the result
does not depend on the thread count.

The pitched path works on *pitched planes*.  A task takes a band of output
rows (all their columns, or a chunk of them where rows are long) of several
consecutive output planes.  It copies the input rows the band reads, once
per input plane, into a tile whose rows are ``Wp = OW + dilation*(KW-1)``
long, bordered by the padding mode (zeros, a constant, or the input at the
mode's index map: no padded copy of the input is ever made), keeping a
ring of the input planes that its output planes' depth taps read.  With
that pitch the input under tap ``(kd, kh, kw)`` of flat output ``p`` is at
``plane(kd) + p + kh*dh*Wp + kw*dw``: for a block of ``PITCHED_VECTORS``
vectors of consecutive flat outputs every tap is one weight broadcast over
one contiguous run of inputs, and the block's sums stay in registers
through every tap of every input channel (a ``vector_block`` of
``_vector.py``).  The last ``Wp - OW`` columns of each row are scratch and
never reach ``out``.  Depth taps in zero or constant padding read a plane
of that value.

Most of those loads cross a cache line (the runs start at every offset
``kw``), so the loads, not the multiply-adds, set the pace.  Where rows are
long enough (``use_pairs``), a task takes its rows two at a time: the input
row under tap ``kh`` of one row is under tap ``kh - 1`` of the next, so each
loaded vector feeds both rows (``pair_taps``), for ``KH + 1`` instead of
``2*KH`` loads per kernel column.  With four or more kernel rows
(``use_quads``) it takes them four at a time (``quad_taps``): ``KH + 3``
loads per kernel column for four rows, as rank-1 updates of a block of
explicit vectors (``_vector.block_update``).

Other strides take the row path: one output row at a time, reading the input
at the stride.
"""

import numpy as np
from numba import njit, prange

from ._target import PITCHED_VECTORS, VECTOR_BYTES
from ._vector import (block_spiller, block_update, block_zero, vector_block, vector_lanes,
                      wide_vectors)
from .._backend import EDGE_CODES, edge_mode
from .._config import NJIT_PARALLEL, NJIT_SERIAL
from .._threading import thread_count
from ._index import (bias_like, claim, copy_row, padding_source, task_counter, unravel3, unravel4,
                     valid_range, zero_padded)
from .broadcast import blocking, broadcast_weight, forward_broadcast, plain_placement
from .panel import forward_panels, panel_weight
from .plan import forward_choice

#: Target bytes of the tile of one ``forward_pitched`` task.
PITCHED_TILE_BYTES = 1 << 18
#: Tasks per thread of ``forward_pitched`` (for load balance); fewer tasks
#: span more output planes, and load fewer input planes twice.
TASKS_PER_THREAD = 4
#: Most outputs computed per real output where ``forward_pitched`` takes rows
#: in pairs or fours (see ``use_pairs``, ``use_quads``).
PAIR_WASTE = 1.25
#: Output rows that share each load in ``quad_taps``.
QUAD = 4
#: ``forward_pitched``'s mark of a tile slot that holds no plane (plane
#: indices before the edge map may be negative).
NO_PLANE = np.iinfo(np.int64).min


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
def load_tile(plane, row0, nrows, col0, pitch, mode, fill, tile):
    """tile[r*pitch + j] = plane[row0 + r, j - col0], where that lies outside
    the plane what the edge ``mode`` gives (a code of
    ``_backend.EDGE_CODES``): 0 zero, 5 ``fill``, else the plane at the
    mode's index map.  ``plane`` may be of another dtype than ``tile``
    (each element is cast as it is copied).  Rows are copied by
    ``_index.copy_row``, which vectorises."""
    H, W = plane.shape
    j0 = min(max(col0, 0), pitch)
    j1 = min(max(col0 + W, j0), pitch)
    mapped = mode != 0 and mode != 5
    for r in range(nrows):
        dst = tile[r * pitch:(r + 1) * pitch]
        ih = row0 + r
        if mapped:
            src = plane[padding_source(ih, H, mode)]
            copy_row(dst, src[j0 - col0:j1 - col0], j0, j1)
            for j in range(j0):
                dst[j] = src[padding_source(j - col0, W, mode)]
            for j in range(j1, pitch):
                dst[j] = src[padding_source(j - col0, W, mode)]
        elif ih < 0 or ih >= H:
            for j in range(pitch):
                dst[j] = fill
        else:
            copy_row(dst, plane[ih, j0 - col0:j1 - col0], j0, j1, fill)


# The rank-1 updates of the pitched block (``_vector.block_update``): one
# row of all ``PITCHED_VECTORS`` vectors (``block_taps``), and the two half
# rows of a pair (``pair_taps``): the first, both, the second.
whole_row = block_update(0, 1, PITCHED_VECTORS)
pair_first = block_update(0, 1, PITCHED_VECTORS // 2)
pair_both = block_update(0, 2, PITCHED_VECTORS // 2)
pair_second = block_update(1, 1, PITCHED_VECTORS // 2)
#: Copies a pitched block (all ``PITCHED_VECTORS`` vectors) to memory.
pitched_spill = block_spiller(PITCHED_VECTORS)


@njit(inline="always", **NJIT_SERIAL)
def block_taps(acc, tile, wk, offsets, P0):
    """acc[i] = sum over taps t of wk[t] * tile[offsets[t] + P0 + i] for the
    ``PITCHED_VECTORS`` vectors of a block (``acc``: a ``vector_block``):
    each tap is one weight broadcast over the block's inputs, which lie in
    one contiguous run.  One flat loop over every tap (input channels and
    depth included), so that the accumulators stay in registers through
    all of them."""
    block_zero(acc)
    P = np.uint64(P0)
    for t in range(wk.shape[0]):
        whole_row(acc, tile, offsets[np.uint64(t)] + P, wk, np.uint64(t))


@njit(inline="always", **NJIT_SERIAL)
def pair_taps(acc, tile, wh, wm, wt, head, mid, tail, P0):
    """The sums of two half blocks (``PITCHED_VECTORS // 2`` vectors each) one
    output row apart: ``A`` at flat outputs ``P0 + i`` in row 0 of ``acc``,
    ``B`` at ``P0 + pitch + i`` in row 1 (unit height dilation).

    The input row under ``A``'s tap ``kh`` is the one under ``B``'s tap
    ``kh - 1``, so one load serves two multiply-adds: ``A`` alone takes the
    ``head`` taps (``kh = 0``), both the ``mid`` taps (``wm[2t], wm[2t + 1]``
    the weights of ``A`` and ``B``), ``B`` alone the ``tail`` taps
    (``kh = KH - 1``); each table holds where a tap's run starts, relative
    to ``P0``.  Three flat loops, one after the other, each keeping the
    accumulators in registers.  Every term is a real tap (no zero weights),
    so inf and NaN meet exactly what they meet in the reference.
    """
    block_zero(acc)
    P = np.uint64(P0)
    for t in range(head.shape[0]):
        pair_first(acc, tile, head[np.uint64(t)] + P, wh, np.uint64(t))
    for t in range(mid.shape[0]):
        pair_both(acc, tile, mid[np.uint64(t)] + P, wm, np.uint64(2 * t))
    for t in range(tail.shape[0]):
        pair_second(acc, tile, tail[np.uint64(t)] + P, wt, np.uint64(t))


#: Vectors of each row of a ``quad_taps`` block.
QUAD_VECTORS = PITCHED_VECTORS // QUAD
# The rank-1 updates of ``quad_taps``, one per set of rows a load serves:
# rows 0, 0-1, 0-2, all four, 1-3, 2-3 and 3.
quad_first1 = block_update(0, 1, QUAD_VECTORS)
quad_first2 = block_update(0, 2, QUAD_VECTORS)
quad_first3 = block_update(0, 3, QUAD_VECTORS)
quad_all4 = block_update(0, 4, QUAD_VECTORS)
quad_last3 = block_update(1, 3, QUAD_VECTORS)
quad_last2 = block_update(2, 2, QUAD_VECTORS)
quad_last1 = block_update(3, 1, QUAD_VECTORS)


@njit(inline="always", **NJIT_SERIAL)
def quad_taps(acc, tile, wq, table, CK, KH, P0):
    """The sums of four quarter blocks (``QUAD_VECTORS`` vectors each) on
    four consecutive output rows ``r``: flat outputs ``P0 + r*pitch + i``, row
    ``r`` of ``acc`` (a ``vector_block``; unit height dilation, ``KH >= 3``).

    Input row ``L`` (from the first row's) is row ``L - r`` of the kernel for
    output row ``r``, so one load serves every row ``r`` with
    ``0 <= L - r < KH``: row 0 for ``L = 0``, rows 0-1 for ``L = 1``, 0-2 for
    ``L = 2``, all four for ``3 <= L < KH``, then rows 1-3, 2-3 and 3.  That
    is ``KH + 3`` loads per kernel column for four rows, against
    ``2*(KH + 1)`` in pairs.  ``table[e]`` is where entry ``e`` of the
    kernel's table reads, ``L``-major (``CK`` entries ``(c, kd, kw)`` per
    ``L``); ``wq[4*e + j]`` is the weight of the ``j``-th row it serves
    (``quad_weights``).  Seven rank-1 updates of constant shape, one per
    set of rows (``_vector.block_update``), in four flat loops, so the
    accumulators stay in registers.  Every term is a real tap, so inf and
    NaN meet exactly what they meet in the reference.  Each output's terms
    come in an order fixed by its row in the four (row 3 takes its last
    kernel rows first).
    """
    block_zero(acc)
    P = np.uint64(P0)
    # The loads that serve one or two rows cost as much as those that serve
    # four, so the loops of rows 0 and 3, 0-1 and 2-3, 0-2 and 1-3 run
    # side by side: twice the multiply-adds per pass, on independent
    # accumulators where the rows differ.
    for e in range(0, CK):
        f = e + (KH + 2) * CK
        quad_first1(acc, tile, table[np.uint64(e)] + P, wq, np.uint64(QUAD * e))
        quad_last1(acc, tile, table[np.uint64(f)] + P, wq, np.uint64(QUAD * f))
    for e in range(CK, 2 * CK):
        f = e + KH * CK
        quad_first2(acc, tile, table[np.uint64(e)] + P, wq, np.uint64(QUAD * e))
        quad_last2(acc, tile, table[np.uint64(f)] + P, wq, np.uint64(QUAD * f))
    for e in range(2 * CK, 3 * CK):
        f = e + (KH - 2) * CK
        quad_first3(acc, tile, table[np.uint64(e)] + P, wq, np.uint64(QUAD * e))
        quad_last3(acc, tile, table[np.uint64(f)] + P, wq, np.uint64(QUAD * f))
    for e in range(3 * CK, KH * CK):
        quad_all4(acc, tile, table[np.uint64(e)] + P, wq, np.uint64(QUAD * e))


@njit(inline="always", **NJIT_SERIAL)
def store_pitched(block, i0, m, P0, pitch, CW, OW, outf, row0, bias):
    """outf[row0 + r*OW + q] = block[i0 + i] + bias for the block's first
    ``m`` flat outputs ``P0 + i = r*pitch + q`` that are real outputs (``q < CW``,
    the task's columns): ``row0`` is where the task's first output row starts
    in ``outf``, the output flat, whose rows are ``OW`` long.  Flat, unsigned
    indices: a view per run would cost reference-count updates (atomic, on a
    counter every thread shares), and a possibly negative index a wraparound
    test that keeps LLVM from vectorising the copy."""
    r, q = divmod(P0, pitch)
    i = 0
    while i < m:
        take = min(m - i, pitch - q)
        if q < CW:
            dst = row0 + r * OW + q - i
            for t in range(i, i + min(take, CW - q)):
                outf[np.uint64(dst + t)] = block[np.uint64(i0 + t)] + bias
        i += take
        r += 1
        q = 0


@njit(inline="always", **NJIT_SERIAL)
def tap_tables(c, kd, base, pitch, KD, KH, KW, dh, dw, offsets, pairs, head, mid, tail,
               quads, quad):
    """Where the taps of input channel ``c`` and depth tap ``kd``, whose
    input plane starts at ``base`` in the tile, read for a block at flat
    output 0: in ``offsets`` (``block_taps``, order ``(c, kd, kh, kw)``),
    with ``pairs`` in ``head``, ``mid`` and ``tail`` (``pair_taps``) and
    with ``quads`` in ``quad`` (``quad_taps``, order ``(L, c, kd, kw)``)."""
    Cg = offsets.shape[0] // (KD * KH * KW)
    for kh in range(KH):
        for kw in range(KW):
            offsets[(c * KD + kd) * KH * KW + kh * KW + kw] = base + kh * dh * pitch + kw * dw
    if pairs:
        cd = c * KD + kd
        for kw in range(KW):
            head[cd * KW + kw] = base + kw * dw
            tail[cd * KW + kw] = base + KH * pitch + kw * dw
            for kh in range(1, KH):
                mid[(cd * (KH - 1) + kh - 1) * KW + kw] = base + kh * pitch + kw * dw
    if quads:
        for li in range(KH + QUAD - 1):     # input row li of a four
            for kw in range(KW):
                quad[((li * Cg + c) * KD + kd) * KW + kw] = base + li * pitch + kw * dw


@njit(**NJIT_PARALLEL)
def forward_pitched(x, w, b, has_bias, stride_d, dilation, pad_lo, mode, fill, groups, rows,
                    depth, cols, pairs, wh, wm, wt, quads, wq, workers, out):
    """Fast path: stride 1 along height and width (any depth stride).  A task
    computes ``cols`` columns of ``rows`` output rows of ``depth`` consecutive
    output planes (``pitched_split``); ``w`` C-contiguous.  With ``quads`` (``quad_weights``
    gives ``wq``), rows go four at a time through ``quad_taps``; with
    ``pairs`` (``pair_weights`` gives ``wh, wm, wt``), two at a time through
    ``pair_taps``; the rows left at the end of a band through ``block_taps``.
    The padding is the edge ``mode`` (see ``load_tile``), applied as the
    tiles are loaded: no padded copy of ``x`` is made.  ``x`` may be of
    another real dtype than ``w`` and ``out`` (cast as it is loaded)."""
    N, C, D, H, W = x.shape
    K, Cg, KD, KH, KW = w.shape
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    dd, dh, dw = dilation
    pd, ph, pw = pad_lo
    Kg = K // groups
    pitch = cols + dw * (KW - 1)
    nrb = -(-OH // rows)
    ndb = -(-OD // depth)
    ncb = -(-OW // cols)
    plane = (rows + dh * (KH - 1)) * pitch     # one input plane's rows of a task
    # Input planes kept per channel: every plane one output plane's taps read
    # has its own slot (plane index modulo the window's span).
    M = (KD - 1) * dd + 1
    taps = KD * KH * KW
    mapped = mode != 0 and mode != 5    # out-of-range planes are read through the map
    wf = w.reshape(K, Cg * taps)
    # The bias in the output's type (a float64 zero would make every store
    # a float64 addition), and the output flat (see store_pitched).
    bias = bias_like(b, has_bias, K, out)
    outf = out.reshape(-1)
    ntask = N * groups * ndb * nrb * ncb
    # Each of ``workers`` threads claims tasks one at a time (see
    # ``broadcast.forward_broadcast``).
    counter = task_counter()
    for worker in prange(max(1, min(workers, ntask))):
        wide_vectors()
        # Inside the prange body, so the block's size is a compile-time
        # constant (see broadcast.py).
        BW = PITCHED_VECTORS * vector_lanes(w)
        acc = vector_block(w)
        # A thread's scratch, for all its tasks.  The tile: slots (c, i_d % M),
        # then one plane of the padding value (zero or ``fill``) that depth
        # taps in the padding read (so an inf or NaN weight meets real
        # values there, as in the reference), then values that the last
        # block's scratch outputs read past the end.  Set once: a slot holds
        # the rows a task loaded until it loads others, and only scratch
        # outputs read rows their task did not load (uninitialised memory
        # could hold slow denormal numbers).  A slot is keyed by the plane's
        # index before the edge map, so the planes one output plane reads
        # have distinct slots even where the map repeats a plane.
        zero = Cg * M * plane
        tile = np.zeros(zero + plane + BW, dtype=w.dtype)
        tile[zero:] = fill
        loaded = np.empty(Cg * M, dtype=np.int64)
        offsets = np.empty(Cg * taps, dtype=np.uint64)
        # The pair tables (see pair_taps): (c, kd, kw), (c, kd, kh >= 1, kw),
        # (c, kd, kw).
        head = np.empty(Cg * KD * KW if pairs else 0, dtype=np.uint64)
        mid = np.empty(Cg * KD * (KH - 1) * KW if pairs else 0, dtype=np.uint64)
        tail = np.empty(Cg * KD * KW if pairs else 0, dtype=np.uint64)
        # The quad table (see quad_taps): (L, c, kd, kw).
        CK = Cg * KD * KW
        quad = np.empty((KH + 3) * CK if quads else 0, dtype=np.uint64)
        block = np.empty(BW, dtype=out.dtype)
        task = claim(counter)
        while task < ntask:
            n, g, db, rb = unravel4(task // ncb, groups, ndb, nrb)
            ow0 = (task % ncb) * cols
            CW = min(cols, OW - ow0)         # the task's columns
            oh0 = rb * rows
            nr = min(rows, OH - oh0)
            nrows = nr + dh * (KH - 1)       # input rows loaded per plane
            L = (nr - 1) * pitch + CW        # flat outputs of a plane, scratch included
            loaded[:] = NO_PLANE             # the slots hold no plane of these rows yet
            for od in range(db * depth, min(OD, (db + 1) * depth)):
                for c in range(Cg):
                    for kd in range(KD):
                        i_d = od * stride_d + kd * dd - pd
                        base = zero
                        if mapped or 0 <= i_d < D:
                            slot = c * M + i_d % M
                            base = slot * plane
                            if loaded[slot] != i_d:
                                load_tile(x[n, g * Cg + c, padding_source(i_d, D, mode)],
                                          oh0 - ph, nrows, pw - ow0, pitch, mode, fill,
                                          tile[base:base + plane])
                                loaded[slot] = i_d
                        tap_tables(c, kd, base, pitch, KD, KH, KW, dh, dw, offsets, pairs,
                                   head, mid, tail, quads, quad)
                for j in range(Kg):
                    k = g * Kg + j
                    row0 = (((n * K + k) * OD + od) * OH + oh0) * OW + ow0
                    first = 0
                    if quads:
                        BQ = BW // QUAD
                        for m in range(nr // QUAD):
                            for q0 in range(0, CW, BQ):
                                P0 = QUAD * m * pitch + q0
                                quad_taps(acc, tile, wq[k], quad, CK, KH, P0)
                                pitched_spill(acc, block)
                                cnt = min(BQ, CW - q0)
                                for r in range(QUAD):
                                    store_pitched(block, r * BQ, cnt, P0 + r * pitch, pitch,
                                                  CW, OW, outf, row0, bias[k])
                        first = (nr // QUAD) * QUAD * pitch
                    elif pairs:
                        BH = BW // 2
                        for m in range(nr // 2):
                            for q0 in range(0, CW, BH):
                                P0 = 2 * m * pitch + q0
                                pair_taps(acc, tile, wh[k], wm[k], wt[k], head, mid, tail, P0)
                                pitched_spill(acc, block)
                                cnt = min(BH, CW - q0)
                                store_pitched(block, 0, cnt, P0, pitch, CW, OW, outf, row0,
                                              bias[k])
                                store_pitched(block, BH, cnt, P0 + pitch, pitch, CW, OW, outf,
                                              row0, bias[k])
                        first = (nr // 2) * 2 * pitch
                    for P0 in range(first, L, BW):
                        block_taps(acc, tile, wf[k], offsets, P0)
                        pitched_spill(acc, block)
                        store_pitched(block, 0, min(BW, L - P0), P0, pitch, CW, OW, outf,
                                      row0, bias[k])
            task = claim(counter)


def use_pairs(OW, kshape, dilation, itemsize):
    """True when ``forward_pitched`` should take rows two at a time
    (``pair_taps``): unit height dilation, two or more kernel rows, and rows
    that fill whole half blocks with at most ``PAIR_WASTE`` of them computed
    and dropped (pairs run row by row, not flat)."""
    half = (PITCHED_VECTORS // 2) * VECTOR_BYTES // itemsize
    return (dilation[1] == 1 and kshape[1] >= 2 and OW > 0
            and -(-OW // half) * half <= PAIR_WASTE * OW)


def use_quads(OW, kshape, dilation, itemsize):
    """True when ``forward_pitched`` should take rows four at a time
    (``quad_taps``): unit height dilation, four or more kernel rows, and rows
    that fill whole quarter blocks with at most ``PAIR_WASTE`` of them
    computed and dropped (quads run row by row, not flat).  With three
    kernel rows no load serves all four rows, so pairs do as well."""
    quarter = (PITCHED_VECTORS // QUAD) * VECTOR_BYTES // itemsize
    return (dilation[1] == 1 and kshape[1] >= QUAD and OW > 0
            and -(-OW // quarter) * quarter <= PAIR_WASTE * OW)


def quad_weights(w, quads):
    """``wq`` of ``quad_taps`` per output channel: for each entry
    ``(L, c, kd, kw)`` of the kernel's table, the weights of the four rows
    it may serve, first row first (row ``r`` takes kernel row ``L - r``;
    places of rows it does not serve are zero), flat."""
    K, Cg, KD, KH, KW = w.shape
    if not quads:
        return np.empty((K, 0), w.dtype)
    wq = np.zeros((K, KH + QUAD - 1, Cg, KD, KW, QUAD), w.dtype)
    for L in range(KH + QUAD - 1):
        lo, hi = max(0, L - KH + 1), min(QUAD - 1, L)
        for r in range(lo, hi + 1):
            wq[:, L, :, :, :, r - lo] = w[:, :, :, L - r, :]
    return wq.reshape(K, -1)


def pair_weights(w, pairs):
    """``(wh, wm, wt)`` of ``pair_taps`` per output channel: the weights of
    kernel row 0, of rows ``kh >= 1`` next to those of rows ``kh - 1``, and of
    the last row, in the order of the kernel's tables, flat (empty without
    pairs)."""
    K = w.shape[0]
    if not pairs:
        return (np.empty((K, 0), w.dtype), np.empty((K, 0), w.dtype),
                np.empty((K, 0), w.dtype))
    wh = np.ascontiguousarray(w[:, :, :, 0, :]).reshape(K, -1)
    wm = np.ascontiguousarray(np.stack([w[:, :, :, 1:, :], w[:, :, :, :-1, :]], axis=-1))
    wt = np.ascontiguousarray(w[:, :, :, -1, :]).reshape(K, -1)
    return wh, wm.reshape(K, -1), wt


def pitched_split(out_shape, kshape, dilation, C, groups, itemsize, threads, together=1):
    """``(rows, depth, cols)`` of a ``forward_pitched`` task.

    Columns: whole rows, unless ``together`` rows of every plane in the
    tile (every input channel's planes under the depth taps) would not fit
    ``PITCHED_TILE_BYTES``; then as many whole blocks of outputs as do.
    Rows: as many as keep the tile near ``PITCHED_TILE_BYTES``, in bands of
    equal size.  Then as many output planes per task as leave
    ``TASKS_PER_THREAD`` tasks per thread; where even one plane per task
    leaves fewer (long 1-D signals, a few long rows), the columns are split
    further, in whole blocks.  Each output is summed in the same order
    whatever the split."""
    N, K, OD, OH, OW = out_shape
    KD, KH, KW = kshape
    halo = dilation[2] * (KW - 1)
    block = PITCHED_VECTORS * VECTOR_BYTES // itemsize
    planes = (C // groups) * ((KD - 1) * dilation[0] + 1) + 1
    band = together + dilation[1] * (KH - 1)       # input rows of the fewest output rows
    cols = OW
    fit = PITCHED_TILE_BYTES // (planes * band * itemsize) - halo
    if fit < OW:
        ncb = -(-OW // max(block, fit))
        cols = min(OW, -(-(-(-OW // ncb)) // block) * block)
    most = PITCHED_TILE_BYTES // (planes * (cols + halo) * itemsize) - dilation[1] * (KH - 1)
    nrb = -(-OH // max(1, min(OH, most)))
    rows = -(-OH // nrb)
    if rows % together and rows < OH:
        # Whole pairs or fours (``together`` rows); only the last band may
        # end with fewer.
        rows = min(OH, -(-rows // together) * together)
        nrb = -(-OH // rows)
    wanted = TASKS_PER_THREAD * threads
    chunks = max(1, min(OD, -(-wanted // (N * groups * nrb))))
    ncb = -(-OW // cols)
    if N * groups * nrb * OD * ncb < wanted and OW > block:
        ncb = max(ncb, min(-(-OW // block), -(-wanted // (N * groups * nrb * OD))))
        cols = min(OW, -(-(-(-OW // ncb)) // block) * block)
    return rows, -(-OD // chunks), cols


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
        n, k, od = unravel3(task, K, OD)
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


class PitchedCall:
    """A call of ``forward_pitched`` made ready for an input and an output of
    one shape: its kernel's arguments but those two (the weights in the
    kernel's orders, the split into tasks), and whether it runs on the
    calling thread alone.  ``call(x, out)`` runs it.

    ``forward_cpu`` makes one per call; a caller that repeats a call with
    the same weights, shapes, dtypes and thread count may keep one and skip
    that host work (``numbaconv.ndimage`` keeps one per cached plan: on a
    small image the host work takes longer than the kernel).

    >>> import numpy as np
    >>> from numbaconv.cpu.plan import forward_choice
    >>> w = np.ones((1, 1, 1, 3, 3))
    >>> out = np.empty((1, 1, 1, 2, 2))
    >>> choice = forward_choice(w.shape, (1, 1, 1), (1, 1, 1), 1, 2, 8, True, out.size)
    >>> call = PitchedCall(choice, 1, w, None, (1, 1, 1), (1, 1, 1), (0, 0, 0), 1,
    ...                    out.shape, out.dtype, "zeros", 0.0, 1)
    >>> call(np.arange(16.0).reshape(1, 1, 1, 4, 4), out)
    >>> out[0, 0, 0]
    array([[45., 54.],
           [81., 90.]])
    """

    __slots__ = ("args", "threads", "one")

    def __init__(self, choice, C, w, b, stride, dilation, pad_lo, groups, out_shape,
                 out_dtype, mode, cval, threads):
        has_bias = b is not None
        if not has_bias:
            b = np.empty(0, dtype=out_dtype)
        mode = edge_mode(mode, cval)
        fill = float(cval) if mode == "constant" else 0.0
        together = choice.params["rows_together"]
        quads, pairs = together == QUAD, together == 2
        self.one = choice.params["one_thread"] and threads > 1
        self.threads = threads
        rows, depth, cols = pitched_split(out_shape, w.shape[2:], dilation, C, groups,
                                          w.itemsize, 1 if self.one else threads, together)
        self.args = (np.ascontiguousarray(w), b, has_bias, stride[0], dilation, pad_lo,
                     EDGE_CODES[mode], fill, groups, rows, depth, cols,
                     pairs, *pair_weights(w, pairs), quads, quad_weights(w, quads))

    def __call__(self, x, out):
        x = np.ascontiguousarray(x)
        if not self.one:
            forward_pitched(x, *self.args, self.threads, out)
            return
        set_count = thread_count()[1]
        set_count(1)
        try:
            forward_pitched(x, *self.args, 1, out)
        finally:
            set_count(self.threads)


def forward_cpu(x, w, b, stride, dilation, pad_lo, groups, out, mode="zeros", cval=0.0):
    """Host entry: ``b`` may be None; ``mode``/``cval`` as in the backend
    contract (``_backend``).  Runs the kernel ``plan.forward_choice`` names
    (see the table in ``plan.py``).  The pitched path applies the padding
    mode as it loads its tiles, and takes ``x`` of any real dtype; the
    others get ``x`` explicitly padded and of the weight's dtype."""
    threads = thread_count()[0]()
    mode = edge_mode(mode, cval)
    choice = forward_choice(w.shape, stride, dilation, groups, out.shape[4], w.itemsize,
                            True, out.size)
    kernel = choice.kernel
    if kernel == "pitched":
        call = PitchedCall(choice, x.shape[1], w, b, stride, dilation, pad_lo, groups,
                           out.shape, out.dtype, mode, cval, threads)
        call(x, out)
        return
    has_bias = b is not None
    if not has_bias:
        b = np.empty(0, dtype=out.dtype)
    x = np.ascontiguousarray(x, dtype=w.dtype)
    if mode != "zeros":
        from . import BACKEND
        from .._ops import explicitly_padded
        x = explicitly_padded(BACKEND, x, pad_lo, out.shape[2:], w.shape[2:], stride,
                              dilation, mode, cval)
        pad_lo = (0, 0, 0)
    if kernel == "broadcast":
        place, spread = plain_placement(out.shape[1])
        rows, flat, depth = blocking(out.shape[2:], w.shape[2:], stride, dilation, x.itemsize,
                                     w.shape[1], x.shape[0] * groups, threads)
        forward_broadcast(x, broadcast_weight(w, groups), b, has_bias,
                          w.shape[2:], stride, dilation, pad_lo, groups, out.shape[2:], rows,
                          flat, depth, place, spread, threads, out)
    elif kernel == "panels":
        forward_panels(x, panel_weight(w, groups), b, has_bias,
                       w.shape[2:], stride, dilation, pad_lo, groups, threads, out)
    else:
        # The row path skips the taps that fall in the padding; with an inf
        # or NaN weight they must give NaN, so the padding becomes real zeros.
        if not np.isfinite(w).all():
            x, pad_lo = zero_padded(x, pad_lo, out.shape[2:], w.shape[2:], stride, dilation)
        forward_rows(x, w, b, has_bias, stride, dilation, pad_lo, groups, out)
