"""CPU ``forward`` for eight or more output channels: weights broadcast over vectors of outputs.

Per output row ``(n, g, od, oh)`` the convolution is a small matrix product
``out[k, p] = sum over (c, kd, kh, kw) of w[k, c, kd, kh, kw] * x[..., p*sw + kw*dw - pw]``.
This kernel computes it in *broadcast form*, the form of a tuned matrix
product: a register block of ``KB`` output channels x ``3*V`` outputs (``V`` = one
vector register of the target; ``KB`` as many as the register file holds,
``_target.BROADCAST_ROWS``: eight with 32 registers, twenty-four vector
accumulators) is updated per reduction step by loading three vectors of
inputs (consecutive outputs ``p`` read consecutive input columns) and
broadcasting ``KB`` weights, for ``3*KB`` vector multiply-adds.  No
across-lane additions and no transposition are needed.

Three pieces keep the reduction loop down to those loads and multiply-adds:

* the accumulators are a stack buffer of vectors (``vector_block`` in
  ``_vector.py``), updated by ``block_step``, which emits the vector
  operations itself with constant indices; LLVM keeps the whole block in
  registers for the whole reduction (see ``_vector.py`` for why this is not
  left to LLVM's unrolling of plain loops);
* the offsets are unsigned, so Numba adds no negative-index test, and the
  weights of one step are adjacent;
* the reduction is one flat loop over a table of where each tap's inputs
  start (``ring_taps``), not loops over ``c, kd, kh, kw``, whose short
  inner loops (three width taps per kernel row) would spend a good share of
  the time in their exits.

A task takes a block of output rows of several consecutive output planes
(``blocking``).  It copies the input rows they read into a *tile* of input
planes, ``T[c, slot, a, m, L, i] = x[n, g*Cg + c, id, ih0 + L*sh + a,
i*sw + m - pw]`` (zero outside the input): each row in its row phase ``a``
and column phase ``m``, each input row once although ``KH`` output rows
read it.  The tile is a ring: input plane ``id`` lives in slot ``id % M``
(``M`` the depth span of the kernel), so the next output plane copies only
the planes it adds, and one more plane of zeros serves the depth taps in the
padding.  Under tap ``(kh, kw)`` the outputs of a row read the contiguous
run of row phase ``(kh*dh) % sh``, row ``r + (kh*dh) // sh``, column phase
``(kw*dw) % sw``, from column ``(kw*dw) // sw``, for any stride and
dilation; the next output row reads the next row of the same phase, so a
register block can run over several rows as one flat run (``blocking``).
Padding is real zeros in the tile, so an inf or NaN weight meets it as in
the reference (``inf * 0 = NaN``).

Each output is summed in the same order whatever the thread count.
"""

import numpy as np
from numba import njit, prange

from .._config import NJIT_PARALLEL, NJIT_SERIAL
from ._index import bias_like, claim, copy_row, fill_run, task_counter, unravel4, valid_range
from ._target import BROADCAST_ROWS, BROADCAST_VECTORS, MASKED, VECTOR_BYTES
from ._vector import (block_spiller, block_update, block_zero, store_every_other, vector_block,
                      vector_lanes, wide_vectors)

#: Output channels of one register block.
KB = BROADCAST_ROWS
#: ``block_step(block, x, xo, a, ao)``: one rank-1 update of a whole block,
#: ``block[j, p] += a[ao + j] * x[xo + p]`` (see ``_vector.block_update``).
block_step = block_update(0, KB, BROADCAST_VECTORS)
#: ``block_spill(block, out)``: a whole block into ``out``, row by row.
block_spill = block_spiller(KB * BROADCAST_VECTORS)
#: Output channels per group from which this path runs: one whole block, at
#: most eight.  Where a block is eight channels (32 vector registers) the
#: panels of ``panel.py`` beat it on four to seven; with 16 registers the
#: block is four channels, and the panels' sixteen accumulators would not
#: fit, so it takes every call from four channels on.
BROADCAST_MIN_CHANNELS = min(8, KB)
#: Most output rows per task: their input rows are copied once for all of
#: them (``KH`` output rows share ``KH - 1`` input rows).
MAX_ROWS = 8
#: Most bytes of a flat-blocked task's tile (see ``blocking``): half of a 2 MiB L2
#: cache.  Bigger tasks waste less: one partly used block per run.
FLAT_TILE_BYTES = 1 << 20
#: Fewest tasks per thread where a flat-blocked task takes more rows.
TASKS_PER_THREAD = 4
#: Tasks per thread where tasks span several output planes (``blocking``):
#: fewer, longer tasks copy fewer input planes twice, more balance better.
RING_TASKS_PER_THREAD = 8


def use_broadcast(w_shape, groups):
    """True when the broadcast path should run a convolution with this weight."""
    return w_shape[0] // groups >= BROADCAST_MIN_CHANNELS


def broadcast_weight(w, groups):
    """``w`` reordered to ``Wb[g, kb, (c, kd, kh), kw, j]`` with output
    channel ``kb*KB + j``; channels padded with zeros to a multiple of ``KB``
    (their sums are computed and dropped).  The ``KB`` weights of one
    reduction step are adjacent, and the steps follow the loop order."""
    K, Cg, KD, KH, KW = w.shape
    Kg = K // groups
    nkb = -(-Kg // KB)
    wb = np.zeros((groups, nkb * KB, Cg, KD, KH, KW), w.dtype)
    wb[:, :Kg] = w.reshape(groups, Kg, Cg, KD, KH, KW)
    wb = wb.reshape(groups, nkb, KB, Cg * KD * KH, KW).transpose(0, 1, 3, 4, 2)
    return np.ascontiguousarray(wb)


@njit(inline="always", **NJIT_SERIAL)
def load_plane(x, n, c, i_d, ih0, stride, pw, P):
    """P[a, m, L, i] = x[n, c, i_d, ih0 + L*sh + a, i*sw + m - pw], zero
    outside the input: the rows of one input plane that a block of output
    rows reads, split into their ``sh`` row phases and ``sw`` column phases
    (one plane of a tile).  Output row ``r`` under kernel row ``kh`` reads
    row phase ``(kh*dh) % sh``, row ``r + (kh*dh) // sh`` of it: consecutive
    output rows read consecutive rows of a phase, whatever the stride.

    At unit width stride each row is one bordered run, with bounds fixed
    for the whole tile.  Otherwise each row is split into its column phases
    in one pass (``split_columns``), addressed by offsets into flat views
    of the plane and the tile, with the bounds worked out once per plane.
    """
    D, H, W = x.shape[2], x.shape[3], x.shape[4]
    sh, sw, NLa, Wq = P.shape
    if sw == 1:
        # Columns i with 0 <= i - pw < W: [j0, j1), bounds fixed for the tile.
        j0 = min(max(pw, 0), Wq)
        j1 = min(max(W + pw, j0), Wq)
        for l in range(sh * NLa):
            a, L = l % sh, l // sh
            ih = ih0 + l
            if i_d < 0 or i_d >= D or ih < 0 or ih >= H:
                P[a, 0, L] = 0.0
            else:
                copy_row(P[a, 0, L], x[n, c, i_d, ih, j0 - pw:j1 - pw], j0, j1)
        return
    Pf = P.reshape(-1)
    if i_d < 0 or i_d >= D:
        Pf[:] = 0.0
        return
    xp = x[n, c, i_d].reshape(-1)
    # Columns i with every i*sw + m - pw, m < sw, in [0, W): [ia, ib).
    ia = min(-(-pw // sw), Wq)
    ib = min(max((W - sw + pw) // sw + 1, ia), Wq)
    for L in range(NLa):
        for a in range(sh):
            ih = ih0 + L * sh + a
            row = ((a * sw) * NLa + L) * Wq      # phase (a, 0), row L of the tile
            if ih < 0 or ih >= H:
                for m in range(sw):
                    fill_run(Pf, row + m * NLa * Wq, Wq, 0.0)
            else:
                split_columns(Pf, row, NLa * Wq, Wq, sw, xp, ih * W, W, pw, ia, ib)


@njit(inline="always", **NJIT_SERIAL)
def split_columns(Pf, row, phase, Wq, sw, xp, src, W, pw, ia, ib):
    """Pf[row + m*phase + i] = xp[src + i*sw + m - pw] for ``i < Wq``, zero
    where ``i*sw + m - pw`` is outside ``[0, W)``: one input row split into
    its ``sw`` column phases (``phase`` apart in ``Pf``).  In the columns
    ``[ia, ib)`` every phase lies in the row.

    Those columns are copied in one pass over the row, each element read
    once and in order; with ``sw`` 2 or 3 the read has a constant stride,
    which LLVM vectorises as wide loads and shuffles that deinterleave them
    (a copy phase by phase reads the row ``sw`` times, an element at a
    time).  The few columns at the row's ends are copied phase by phase.
    Offsets are unsigned where they index: a signed index costs a
    wraparound test per element.
    """
    for m in range(sw):
        d = row + m * phase
        for i in range(ia):
            j = i * sw + m - pw
            Pf[np.uint64(d + i)] = xp[np.uint64(src + j)] if 0 <= j < W else 0.0
        for i in range(ib, Wq):
            j = i * sw + m - pw
            Pf[np.uint64(d + i)] = xp[np.uint64(src + j)] if 0 <= j < W else 0.0
    n = ib - ia
    s0 = np.uint64(src + ia * sw - pw)
    d0 = np.uint64(row + ia)
    if sw == 2:
        d1 = d0 + np.uint64(phase)
        for i in range(n):
            Pf[d0 + np.uint64(i)] = xp[s0 + np.uint64(2 * i)]
            Pf[d1 + np.uint64(i)] = xp[s0 + np.uint64(2 * i + 1)]
    elif sw == 3:
        d1 = d0 + np.uint64(phase)
        d2 = d1 + np.uint64(phase)
        for i in range(n):
            Pf[d0 + np.uint64(i)] = xp[s0 + np.uint64(3 * i)]
            Pf[d1 + np.uint64(i)] = xp[s0 + np.uint64(3 * i + 1)]
            Pf[d2 + np.uint64(i)] = xp[s0 + np.uint64(3 * i + 2)]
    else:
        for m in range(sw):
            dm = d0 + np.uint64(m * phase)
            for i in range(n):
                Pf[dm + np.uint64(i)] = xp[s0 + np.uint64(i * sw + m)]


@njit(inline="always", **NJIT_SERIAL)
def block_sums(acc, T, wf, w0, steps, taps, base):
    """acc[j, p] = sum over reduction steps s < steps of
    ``wf[w0 + s*KB + j] * T[taps[s] + base + p]`` for the ``KB`` channels j
    and the block's ``3*V`` outputs (``acc``: a ``vector_block``).

    ``T`` is the task's tile, flat; step ``s`` is a tap ``(c, kd, kh, kw)``,
    ``taps[s]`` where its run starts for the task's first output row and
    ``base`` the block's offset from there; ``wf`` is ``broadcast_weight``
    flat, its block of channels from ``w0``.  One flat loop over every step
    (see the module's docstring).
    """
    block_zero(acc)
    for s in range(steps):
        block_step(acc, T, taps[np.uint64(s)] + np.uint64(base), wf,
                   np.uint64(w0) + np.uint64(s * KB))


@njit(inline="always", **NJIT_SERIAL)
def fill_ring(x, n, c0, i_d0, dilation_d, ih0, stride, pw, planes, loaded, plane):
    """Makes a ring tile hold what one output plane reads, and says where.

    ``planes`` is the tile, ``planes[c*M + slot]`` one input plane of channel
    ``c0 + c`` (``load_plane``) and its last plane zeros; input plane ``id``
    lives in slot ``id % M`` (``M = loaded.shape[0]``, the kernel's depth
    span), and ``loaded[slot]`` says which plane a slot holds (-1: none).
    Depth tap ``kd`` reads input plane ``i_d0 + kd*dilation_d``: the planes
    the ring lacks are loaded, and ``plane[c*KD + kd]`` is set to the tile
    plane the tap reads for channel ``c0 + c`` (the plane of zeros in the
    depth padding), for ``ring_taps``."""
    M = loaded.shape[0]
    zero = planes.shape[0] - 1
    nc = zero // M
    KD = plane.shape[0] // nc
    for kd in range(KD):
        i_d = i_d0 + kd * dilation_d
        slot = -1                       # in the padding
        if 0 <= i_d < x.shape[2]:
            slot = i_d % M
            if loaded[slot] != i_d:
                for c in range(nc):
                    load_plane(x, n, c0 + c, i_d, ih0, stride, pw, planes[c * M + slot])
                loaded[slot] = i_d
        for c in range(nc):
            plane[c * KD + kd] = c * M + slot if slot >= 0 else zero


@njit(inline="always", **NJIT_SERIAL)
def ring_taps(taps, plane, KH, KW, dh, dw, sh, sw, NLa, Wq):
    """Where each reduction step's run of inputs starts in the flat tile for
    a task's first output row, in the step order of ``broadcast_weight``:
    tap ``(c, kd, kh, kw)`` reads tile plane ``plane[c*KD + kd]``, row phase
    ``(kh*dh) % sh`` from its row ``(kh*dh) // sh``, column phase
    ``(kw*dw) % sw`` from column ``(kw*dw) // sw`` (see ``load_plane``); the
    next output row starts ``Wq`` further."""
    s = 0
    for ck in range(plane.shape[0]):
        for kh in range(KH):
            for kw in range(KW):
                a, L = (kh * dh) % sh, (kh * dh) // sh
                m, i = (kw * dw) % sw, (kw * dw) // sw
                taps[s] = (((plane[ck] * sh + a) * sw + m) * NLa + L) * Wq + i
                s += 1


def plain_placement(K):
    """``(place, spread)`` that put output channel ``k`` at ``out[n, k, od, oh, ow]``:
    the ordinary convolution (see ``forward_broadcast``)."""
    place = np.zeros((K, 4), dtype=np.int64)
    place[:, 0] = np.arange(K)
    return place, (1, 1, 1)


def blocking(grid, kshape, stride, dilation, itemsize, channels, batches, threads):
    """``(rows, flat, depth)``: output rows per task (tasks of equal size),
    whether a task's outputs are blocked as one flat run over its rows (see
    ``forward_broadcast``), and output planes per task.  ``channels`` is the
    number of input channels per group, ``batches`` the number of (batch,
    group) pairs.

    Flat is chosen when it takes fewer register blocks than row by row
    (rows shorter than a whole number of blocks).  Row by row, a task takes
    at most ``MAX_ROWS`` rows.
    Flat, it takes more where its tile stays within ``FLAT_TILE_BYTES`` and
    every thread still gets ``TASKS_PER_THREAD`` tasks: the run's last block
    is partly wasted, once per task.  Then, where consecutive output planes
    read some of the same input planes, a task takes as many output planes
    as leave ``RING_TASKS_PER_THREAD`` tasks per thread.  Each output's sum
    is the same for any split.
    """
    OD, OH, OW = grid
    sh, sw = stride[1], stride[2]
    planes = ring_planes(channels, kshape[0], dilation[0])
    bands = max(1, -(-OH // MAX_ROWS))
    rows = max(1, -(-OH // bands))
    flat = False
    PW = BROADCAST_VECTORS * VECTOR_BYTES // itemsize
    pitch = OW + ((kshape[2] - 1) * dilation[2]) // sw
    if -(-((rows - 1) * pitch + OW) // PW) < rows * -(-OW // PW):
        # Input rows that fit the tile, then the output rows that read them.
        fit = FLAT_TILE_BYTES // max(1, planes * sw * pitch * itemsize)
        most = (fit - dilation[1] * (kshape[1] - 1) - 1) // sh + 1
        bands = max(-(-OH // max(most, MAX_ROWS)),
                    min(bands, -(-TASKS_PER_THREAD * threads // max(1, batches * OD))))
        rows, flat = -(-OH // bands), True
    if stride[0] >= (kshape[0] - 1) * dilation[0] + 1:
        return rows, flat, 1            # consecutive output planes share no input plane
    nrb = -(-OH // rows)
    chunks = max(1, min(OD, -(-RING_TASKS_PER_THREAD * threads // max(1, batches * nrb))))
    return rows, flat, max(1, -(-OD // chunks))


def ring_planes(channels, KD, dd):
    """Planes of a task's tile: a ring of ``(KD - 1)*dd + 1`` input planes
    per channel, and one plane of zeros."""
    return channels * ((KD - 1) * dd + 1) + 1


@njit(inline="always", **NJIT_SERIAL)
def store_block(blk, nk, k0, P0, pitch, nr, n, od, oh0, place, spread, cols, bias, out,
                outf):
    """Writes a register block's sums ``blk[j*PW + i]`` (channel ``k0 + j``
    for ``j < nk``; tile position ``P0 + i = r*pitch + q``, output row
    ``oh0 + r`` for ``r < nr``, column ``q``) that are real outputs to their
    places in ``out`` (see ``forward_broadcast``), adding ``bias[k]``.  The
    block's outputs fall in runs, one per output row it touches; each run is
    stored for every channel in turn.

    Stores go through ``outf``, ``out`` flat, with unsigned indices: a view
    per run would cost two reference-count updates, atomic and on a counter
    every thread shares, and a possibly negative index a wraparound test
    that keeps LLVM from vectorising the copy.
    """
    PW = blk.shape[0] // KB
    C, D, H, W = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    sd, sh, sw = spread
    r, q = divmod(P0, pitch)
    i = 0
    while i < PW and r < nr:
        take = min(PW - i, pitch - q)
        for j in range(nk):
            k = k0 + j
            d = sd * od + place[k, 1]
            h = sh * (oh0 + r) + place[k, 2]
            lo, hi = max(q, cols[k, 0]), min(q + take, cols[k, 1])
            if 0 <= d < D and 0 <= h < H and lo < hi:
                bk = bias[k]
                src = j * PW + i - q
                dst = (((n * C + place[k, 0]) * D + d) * H + h) * W + place[k, 3]
                if sw == 1:
                    for t in range(lo, hi):
                        outf[np.uint64(dst + t)] = blk[np.uint64(src + t)] + bk
                elif sw == 2 and MASKED:
                    # A phase of a stride-2 transposed convolution: a vector at a time.
                    for t in range(lo, hi, vector_lanes(blk)):
                        store_every_other(outf, np.uint64(dst + 2 * t), blk,
                                          np.uint64(src + t), min(hi - t, vector_lanes(blk)),
                                          bk)
                else:
                    for t in range(lo, hi):
                        outf[np.uint64(dst + sw * t)] = blk[np.uint64(src + t)] + bk
        i += take
        r += 1
        q = 0


@njit(inline="always", **NJIT_SERIAL)
def block_lands(place, spread, k0, nk, axis, o, size):
    """True when output ``o`` along ``axis`` (1 depth, 2 height) of some
    channel ``k0 <= k < k0 + nk`` lands in ``out``, whose extent there is
    ``size``: ``0 <= spread*o + place[k, axis] < size``."""
    for k in range(k0, k0 + nk):
        if 0 <= spread * o + place[k, axis] < size:
            return True
    return False


@njit(**NJIT_PARALLEL)
def forward_broadcast(x, Wb, b, has_bias, kshape, stride, dilation, pad_lo, groups, grid,
                      rows, flat, depth, place, spread, workers, out):
    """The convolution of ``x`` (C-contiguous) with ``w``, ``Wb =
    broadcast_weight(w, groups)``, over the output grid ``grid = (OD, OH, OW)``,
    plus ``b``.  Output channel ``k`` goes to
    ``out[n, place[k, 0], spread[0]*od + place[k, 1], spread[1]*oh + place[k, 2],
    spread[2]*ow + place[k, 3]]`` where that lies in ``out``
    (``plain_placement``: the ordinary convolution; ``subpixel.py`` puts the
    phases of a transposed convolution on their strided grids).

    A task takes ``rows`` output rows of ``depth`` consecutive output
    planes (``blocking``), plane by plane.  Row by row, it
    computes each in blocks of ``3*V`` outputs, the row padded to a whole
    number of blocks.  With ``flat`` the tile's rows are only
    ``OW + (KW-1)*dw // sw`` long, and the blocks run over the task's rows as
    one flat run: a block may end in the next row, and the few outputs at
    row ends are computed and dropped.  Short rows (strided calls above
    all) waste less that way.
    """
    N, C = x.shape[0], x.shape[1]
    K = place.shape[0]
    OD, OH, OW = grid
    KD, KH, KW = kshape
    Kg, Cg = K // groups, C // groups
    nkb = Wb.shape[1]
    sh, sw = stride[1], stride[2]
    dh, dw = dilation[1], dilation[2]
    # Outputs per register block: ``BROADCAST_VECTORS`` vectors.
    PW = BROADCAST_VECTORS * vector_lanes(x)
    OWp = -(-OW // PW) * PW
    RB = rows
    nrb = -(-OH // RB)
    NL = (RB - 1) * sh + (KH - 1) * dh + 1
    NLa = -(-NL // sh)                  # rows of each row phase (see load_plane)
    # Consecutive output rows read runs ``Wq`` apart (``pitch``).
    Wq = (OW if flat else OWp) + ((KW - 1) * dw) // sw
    pitch = Wq
    Wf = Wb.reshape(-1)
    steps = Wb.shape[2] * Wb.shape[3]
    # The tile's planes: input plane ``id`` of channel ``c`` in ``c*M + id % M``,
    # then a plane of zeros for the depth taps in the padding.
    M = (KD - 1) * dilation[0] + 1
    zero = Cg * M
    tile = (zero + 1) * sh * sw * NLa * Wq
    ndb = -(-OD // depth)
    # Columns of each output channel that land in ``out``.
    cols = np.empty((K, 2), dtype=np.int64)
    for k in range(K):
        cols[k, 0], cols[k, 1] = valid_range(place[k, 3], spread[2], out.shape[4], OW)
    bias = bias_like(b, has_bias, K, out)
    outf = out.reshape(-1)
    ntask = N * groups * ndb * nrb
    # Each of ``workers`` threads (Numba's thread count; read by the caller,
    # as a compiled read of it cannot be cached) claims tasks one at a time
    # (``claim``) until none is left.
    counter = task_counter()
    for worker in prange(max(1, min(workers, ntask))):
        wide_vectors()
        # The accumulators: a stack buffer per prange body, in registers.
        acc = vector_block(x)
        # Zeros, once per thread: the plane of zeros, the 3*V values past the
        # tile that the flat run's last block reads, and the slots not loaded
        # yet, which a block that ends past its plane may read (only outputs
        # that are dropped, but uninitialised memory could hold slow
        # denormal numbers).
        Tf = np.zeros(tile + BROADCAST_VECTORS * vector_lanes(x), dtype=x.dtype)
        planes = Tf[:tile].reshape((zero + 1, sh, sw, NLa, Wq))
        loaded = np.empty(M, dtype=np.int64)
        plane = np.empty(Cg * KD, dtype=np.int64)
        taps = np.empty(Cg * KD * KH * KW, dtype=np.uint64)
        blk = np.empty(KB * BROADCAST_VECTORS * vector_lanes(x), dtype=out.dtype)
        task = claim(counter)
        while task < ntask:
            n, g, db, rb = unravel4(task, groups, ndb, nrb)
            oh0 = rb * RB
            nr = min(RB, OH - oh0)
            nrow, span = (1, (nr - 1) * pitch + OW) if flat else (nr, OWp)
            loaded[:] = -1              # the ring holds no plane of these rows yet
            for od in range(db * depth, min(OD, (db + 1) * depth)):
                fill_ring(x, n, g * Cg, od * stride[0] - pad_lo[0], dilation[0],
                          oh0 * sh - pad_lo[1], stride, pad_lo[2], planes, loaded, plane)
                ring_taps(taps, plane, KH, KW, dh, dw, sh, sw, NLa, Wq)
                for ol in range(nrow):
                    for kb in range(nkb):
                        k0, nk = g * Kg + kb * KB, min(KB, Kg - kb * KB)
                        # A block none of whose outputs land in ``out`` (a phase
                        # of a transposed convolution whose window here falls
                        # in the padding) is skipped.
                        if not (block_lands(place, spread[0], k0, nk, 1, od, out.shape[2])
                                and (flat or block_lands(place, spread[1], k0, nk, 2,
                                                         oh0 + ol, out.shape[3]))):
                            continue
                        for p0 in range(0, span, PW):
                            P0 = ol * pitch + p0
                            block_sums(acc, Tf, Wf, (g * nkb + kb) * steps * KB, steps, taps,
                                       P0)
                            block_spill(acc, blk)
                            store_block(blk, nk, k0, P0, pitch, nr, n, od, oh0, place, spread,
                                        cols, bias, out, outf)
            task = claim(counter)
