"""CPU ``backward_weight`` for sixteen or more output channels: input values broadcast over vectors of output channels.

The weight gradient of one group is a matrix product over every output
position ``(n, od, oh, p)``:

    gw[k, col] = sum over positions of gy[n, k, od, oh, p] * X[col](n, od, oh, p)

where a *column* ``col = (c, kd, kh, kw)`` names one weight tap and
``X[col]`` is the input value that tap reads for that output.  This kernel
computes it in broadcast form, the transpose of ``broadcast.py``'s forward:
a register block of ``NC`` columns x ``2*V`` output channels (``V`` = one
vector register of the target; ``NC`` as many as the register file holds,
``_target.GRAD_ROWS``: eight with 32 registers) is written as explicit
vector operations (``_vector.block_update_at``; see the note on register
blocks there).  Per output position it loads two vectors of output-gradient
values (the channels, made contiguous by transposing ``gy`` once per block
of rows into ``Gt[r, p, k]``) and broadcasts ``NC`` input values read in
place from a tile of input rows, for ``2*NC`` vector multiply-adds.  The inputs need no
transposition: the column ``(c, kd, kh, kw)`` at output ``p`` is element
``base[col] + p`` of the tile, so ``base`` is a table made once per block.
The tile is a ring of input planes (``broadcast.fill_ring``), kept
across the output planes of a block of rows, so each input plane is copied
once per block of rows and not once per depth tap; the next block's rows
are prefetched (``prefetch_next``).  The channel axis is padded to a
multiple of ``2*V`` with zeros in ``Gt``; those sums are computed and
dropped, so this path is used only from ``GRAD_MIN_CHANNELS`` output channels
per group.

Work is split into tasks of (chunk of blocks of output rows, output plane
fastest; group; range of input channels); see ``split`` for what each
costs.  A task sums at most ``FLUSH_TERMS`` terms per element in registers,
in the data type, then adds them to its float64 slot (``_vector.block_adder``);
the chunks are added in chunk order at the end.  Every split depends on the
shapes alone, so the result is bit-identical for any number of threads.

Padding is real zeros in the tile, so an inf or NaN in the output gradient
meets it as in the reference (``inf * 0 = NaN``).
"""

import numpy as np
from numba import get_num_threads, njit, prange

from .._config import NJIT_PARALLEL, NJIT_SERIAL
from ._index import claim, prefetch_bytes, task_counter, unravel3
from ._target import GRAD_ROWS, GRAD_VECTORS, VECTOR_BYTES
from ._vector import (block_adder, block_update_at, block_zero, vector_block, vector_lanes,
                      wide_vectors)
from .broadcast import fill_ring, ring_taps

#: Columns (weight taps) of one register block.
NC = GRAD_ROWS
#: Output channels per group from which this path beats the panels of
#: ``panel_grad.py`` despite padding the channels to ``GRAD_VECTORS*V``: at
#: least half of the float32 channels of a block (16 with AVX-512).
GRAD_MIN_CHANNELS = GRAD_VECTORS * VECTOR_BYTES // 4 // 2
#: Most output rows per block: the input rows they read are copied once.
BLOCK_ROWS = 8
#: Terms summed per gradient element in the data type before they are added
#: to the float64 total.
FLUSH_TERMS = 1024
#: Most bytes of the transposed output gradient ``Gt`` of one task.
GT_BYTES = 1 << 20
#: Tasks the work is split into where the shapes allow, so that every core
#: has several (a fixed number: the split must not depend on the threads).
TASKS = 16
#: Most bytes of the float64 partial sums of all chunks.
PARTIAL_BYTES = 4 << 20
#: Fewest columns of a task's range of input channels.
MIN_COLUMNS = 256


def use_broadcast_grad(w_shape, groups):
    """True when the broadcast path should compute this weight gradient."""
    return w_shape[0] // groups >= GRAD_MIN_CHANNELS


def split(Cg, taps, Kgp, groups, units):
    """``(channel ranges, chunks)``: about ``TASKS`` tasks where the shapes
    allow.  Chunks of the ``units`` (blocks of output rows) come first, as many as fit in
    ``PARTIAL_BYTES`` (each holds a float64 copy of the gradient); then
    input channels are split into equal ranges of at least ``MIN_COLUMNS``
    columns (each range's task transposes the whole output gradient again,
    which costs as much as about sixteen columns of products)."""
    copy = groups * Cg * taps * Kgp * 8
    chunks = max(1, min(units, TASKS // groups, PARTIAL_BYTES // copy))
    most = max(1, min(-(-TASKS // (groups * chunks)), Cg * taps // MIN_COLUMNS))
    ranges = max(d for d in range(1, min(Cg, most) + 1) if Cg % d == 0)
    return ranges, chunks


def block_sizes(OW, Kgp, itemsize):
    """``(rows, span)``: output rows per block and outputs per run of a row,
    so that a block sums at most ``FLUSH_TERMS`` terms and its ``Gt`` fits
    in ``GT_BYTES``."""
    terms = max(1, min(FLUSH_TERMS, GT_BYTES // (Kgp * itemsize)))
    rows = max(1, min(BLOCK_ROWS, terms // OW))
    return rows, max(1, min(OW, terms // rows))


#: One reduction step of ``block_sums``: ``NC`` columns' input values, each
#: broadcast against ``GRAD_VECTORS`` vectors of output-gradient channels.
grad_step = block_update_at(NC, GRAD_VECTORS)
#: Adds a ``block_sums`` block to the float64 sums, column by column.
grad_flush = block_adder(NC, GRAD_VECTORS)


@njit(inline="always", **NJIT_SERIAL)
def block_sums(acc, Tf, base, rowstep, col0, Gtf, span, Kgp, nr, ns, k0):
    """acc[j, i] = sum over rows r < nr and outputs q < ns of
    ``Gt[r, q, k0 + i] * Tf[base[col0 + j] + r*rowstep + q]``: ``NC`` columns
    (``base`` is padded to a whole number of blocks by repeating its last
    column, whose sums are dropped) times ``GRAD_VECTORS`` vectors of output
    channels from ``k0`` (``acc``: a ``vector_block``; ``Gtf``: ``Gt``
    flat, of shape ``(rows, span, Kgp)``).

    Indices are unsigned so that Numba adds no negative-index tests.
    """
    block_zero(acc)
    for r in range(nr):
        row = np.uint64(r * rowstep)
        g = np.uint64(r * span * Kgp + k0)
        for q in range(ns):
            grad_step(acc, Gtf, g + np.uint64(q * Kgp), Tf, row + np.uint64(q), base,
                      np.uint64(col0))


@njit(inline="always", **NJIT_SERIAL)
def transpose_rows(gy, n, k0, Kg, od, oh0, nr, p0, ns, Gt):
    """Gt[r, q, k] = gy[n, k0 + k, od, oh0 + r, p0 + q] for ``k < Kg``,
    ``r < nr``, ``q < ns`` (the padded channels of ``Gt`` stay zero).
    Unsigned flat indices: a possibly negative index costs a wraparound
    test on every element."""
    span, Kgp = Gt.shape[1], Gt.shape[2]
    Gtf = Gt.reshape(-1)
    for k in range(Kg):
        for r in range(nr):
            src = gy[n, k0 + k, od, oh0 + r]
            dst = np.uint64(r * span * Kgp + k)
            for q in range(ns):
                Gtf[dst + np.uint64(q * Kgp)] = src[np.uint64(p0 + q)]


@njit(inline="always", **NJIT_SERIAL)
def prefetch_next(x, gy, n, c0, nc, k0, Kg, od, oh0, nr, ih0, NL, stride_d, dd, pd, KD, loaded):
    """Prefetches what the block of output plane ``od`` (the next one) will
    read from memory: rows ``ih0`` to ``ih0 + NL - 1`` of the input planes
    it adds to the ring (``loaded``) of channels ``c0`` to ``c0 + nc - 1``,
    and its output-gradient rows (``x`` C-contiguous; byte offsets signed).

    Each is read once per block of rows, a row of a few hundred bytes at
    the stride of a plane, which the hardware prefetchers do not follow:
    without this, copying them into the ring and ``Gt`` stalled on memory.
    A block computes for far longer than they take to arrive."""
    C, D, H, W = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
    M = loaded.shape[0]
    for kd in range(KD):
        i_d = od * stride_d + kd * dd - pd
        if 0 <= i_d < D and loaded[i_d % M] != i_d:
            for c in range(c0, c0 + nc):
                for ih in range(max(ih0, 0), min(ih0 + NL, H)):
                    prefetch_bytes(x, (((n * C + c) * D + i_d) * H + ih) * W * x.itemsize,
                                   W * x.itemsize)
    s0, s1, s2, s3 = gy.strides[0], gy.strides[1], gy.strides[2], gy.strides[3]
    for k in range(k0, k0 + Kg):
        for r in range(nr):
            prefetch_bytes(gy, n * s0 + k * s1 + od * s2 + (oh0 + r) * s3,
                           gy.shape[4] * gy.itemsize)


@njit(**NJIT_PARALLEL)
def weight_grad_broadcast(x, gy, kshape, stride, dilation, pad_lo, groups, nranges,
                          rows, span, workers, partial):
    """partial[chunk, g, col, k] = the chunk's share of ``gw[g*Kg + k, col]``
    (``col = (c, kd, kh, kw)`` flattened; ``k`` padded to ``partial.shape[3]``);
    ``x`` C-contiguous."""
    N, C = x.shape[0], x.shape[1]
    K, OD, OH, OW = gy.shape[1], gy.shape[2], gy.shape[3], gy.shape[4]
    KD, KH, KW = kshape
    Kg, Cg = K // groups, C // groups
    sh, sw = stride[1], stride[2]
    dh, dw = dilation[1], dilation[2]
    Kgp = partial.shape[3]
    taps = KD * KH * KW
    # The tile of a task: a ring of input planes, ``M`` slots per channel,
    # then a plane of zeros (see ``broadcast.fill_ring``), so that the blocks
    # of consecutive output planes load each input plane once.  A plane holds
    # the rows a block reads in their sh row and sw column phases (see
    # ``broadcast.load_plane``), so that the next output row reads Wq further.
    Wq = OW + ((KW - 1) * dw) // sw
    NL = (rows - 1) * sh + (KH - 1) * dh + 1
    NLa = -(-NL // sh)                  # rows of each row phase (``broadcast.load_plane``)
    M = (KD - 1) * dilation[0] + 1
    nc = Cg // nranges
    # The reduction runs over blocks of output rows, chunk by chunk; a
    # block is a unit ``(n, rb, od)``, ``od`` fastest.
    nchunk = partial.shape[0]
    nrb = -(-OH // rows)
    per_chunk = -(-(N * OD * nrb) // nchunk)
    ntask = nchunk * groups * nranges
    # Each of ``workers`` threads claims tasks one at a time (see
    # ``broadcast.forward_broadcast``); each task owns its slot of ``partial``.
    counter = task_counter()
    for worker in prange(max(1, min(workers, ntask))):
        wide_vectors()
        # Inside the prange body, so the block's shape is a compile-time
        # constant (see broadcast.py).
        PW = GRAD_VECTORS * vector_lanes(x)
        acc = vector_block(x)
        task = claim(counter)
        while task < ntask:
            chunk, g, cr = unravel3(task, groups, nranges)
            c_lo, c_hi = cr * nc, (cr + 1) * nc
            ncols = (c_hi - c_lo) * taps
            # The task's slot of ``partial``, flat: ``(column, channel)``.
            total = partial[chunk, g, c_lo * taps:c_hi * taps].reshape(-1)
            total[:] = 0.0
            T = np.zeros((nc * M + 1, sh, sw, NLa, Wq), dtype=x.dtype)
            Tf = T.reshape(-1)
            loaded = np.full(M, -1, dtype=np.int64)
            plane = np.empty(nc * KD, dtype=np.int64)
            # base[c*taps + t]: where tap t of channel c (of the task's range)
            # reads output 0 of the block's first row (``broadcast.ring_taps``),
            # then copies of the last column up to a whole number of blocks.
            base = np.empty(-(-ncols // NC) * NC, dtype=np.uint64)
            Gt = np.zeros((rows, span, Kgp), dtype=x.dtype)
            Gtf = Gt.reshape(-1)
            rows_of = -1
            for unit in range(chunk * per_chunk, min(N * OD * nrb, (chunk + 1) * per_chunk)):
                od = unit % OD
                n, rb = divmod(unit // OD, nrb)
                if unit // OD != rows_of:       # other rows: the ring is stale
                    rows_of = unit // OD
                    loaded[:] = -1
                oh0 = rb * rows
                nr = min(rows, OH - oh0)
                fill_ring(x, n, g * Cg + c_lo, od * stride[0] - pad_lo[0], dilation[0],
                          oh0 * sh - pad_lo[1], stride, pad_lo[2], T, loaded, plane)
                ring_taps(base, plane, KH, KW, dh, dw, sh, sw, NLa, Wq)
                base[ncols:] = base[ncols - 1]
                if od + 1 < OD:
                    prefetch_next(x, gy, n, g * Cg + c_lo, nc, g * Kg, Kg, od + 1, oh0, nr,
                                  oh0 * sh - pad_lo[1], NL, stride[0], dilation[0], pad_lo[0],
                                  KD, loaded)
                for p0 in range(0, OW, span):
                    ns = min(span, OW - p0)
                    transpose_rows(gy, n, g * Kg, Kg, od, oh0, nr, p0, ns, Gt)
                    for col0 in range(0, ncols, NC):
                        for k0 in range(0, Kgp, PW):
                            block_sums(acc, Tf[p0:], base, Wq, col0, Gtf, span, Kgp,
                                       nr, ns, k0)
                            grad_flush(acc, total, np.uint64(col0 * Kgp + k0), np.uint64(Kgp),
                                       min(NC, ncols - col0))
            task = claim(counter)


def weight_grad_cpu(x, gy, stride, dilation, pad_lo, groups, gw):
    """Host entry: gw = the weight gradient, by ``weight_grad_broadcast``."""
    K, Cg, KD, KH, KW = gw.shape
    Kg = K // groups
    lanes = GRAD_VECTORS * VECTOR_BYTES // x.itemsize
    Kgp = -(-Kg // lanes) * lanes
    rows, span = block_sizes(gy.shape[4], Kgp, x.itemsize)
    units = gy.shape[0] * gy.shape[2] * -(-gy.shape[3] // rows)
    nranges, nchunk = split(Cg, KD * KH * KW, Kgp, groups, units)
    partial = np.empty((nchunk, groups, Cg * KD * KH * KW, Kgp), np.float64)
    weight_grad_broadcast(np.ascontiguousarray(x), gy, gw.shape[2:], stride, dilation,
                          pad_lo, groups, nranges, rows, span, get_num_threads(), partial)
    # NumPy adds the chunks one after another, in chunk order; the weight is
    # small, so this costs nothing next to the kernel.
    total = partial.sum(axis=0) if nchunk > 1 else partial[0]
    gw[...] = total[:, :, :Kg].transpose(0, 2, 1).reshape(gw.shape)
