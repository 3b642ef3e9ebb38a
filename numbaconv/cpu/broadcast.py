"""CPU ``forward`` for eight or more output channels: weights broadcast over vectors of outputs.

Per output row ``(n, g, od, oh)`` the convolution is a small matrix product
``out[k, p] = sum over (c, kd, kh, kw) of w[k, c, kd, kh, kw] * x[..., p*sw + kw*dw - pw]``.
This kernel computes it in *broadcast form*, the form of a tuned matrix
product: a register block of eight output channels x ``2*V`` outputs
(``V`` = one 512-bit vector: 16 float32 or 8 float64 values) is sixteen
vector accumulators.  Per reduction step it loads two vectors of inputs
(consecutive outputs ``p`` read consecutive input columns) and broadcasts
eight weights, for sixteen vector multiply-adds.  No across-lane additions
and no transposition are needed.

Four pieces make LLVM compile that from plain loops:

* the accumulators live in a fixed-size *stack* buffer (``register_block``
  in ``_vector.py``); with the loop over the block's outputs fully unrolled,
  LLVM keeps all of them in registers for the whole reduction.  (A NumPy
  array is heap memory, and its loads and stores would stay in the loop.)
* the block's width is a compile-time constant (``vector_lanes``), so that
  loop does unroll;
* the index along an input row is cast to unsigned, so Numba adds no
  negative-index test, and the weights of one step are adjacent;
* the reduction is one flat loop over a table of where each tap's inputs
  start (``tap_offsets``), not loops over ``c, kd, kh, kw``: with three
  width taps per kernel row, the inner loop's exits cost about an eighth of
  the time.

A task takes a block of up to ``ROWS`` output rows and first copies the input
rows they read into a *tile*
``T[c, kd, l, m, i] = x[n, g*Cg + c, id, ih0 + l, i*sw + m - pw]`` (zero
outside the input), each input row once although ``KH`` output rows read it.
The ``sw`` phases of a row lie side by side, so that under width tap ``kw``
the outputs read the contiguous run starting at phase ``(kw*dw) % sw``,
column ``(kw*dw) // sw``, for any stride and dilation.  Padding is real
zeros in the tile, so an inf or NaN weight meets it as in the reference
(``inf * 0 = NaN``).

Each output is summed in the same order whatever the thread count.
"""

import numpy as np
from numba import carray, njit, prange

from .._config import NJIT_PARALLEL, NJIT_SERIAL
from ._index import copy_row
from ._vector import rank1_update, register_block, vector_lanes, wide_vectors

#: Output channels of one register block.
KB = 8
#: Output channels per group from which this path beats the panels.
MIN_CHANNELS = 8
#: Most output rows per task: their input rows are copied once for all of
#: them (``KH`` output rows share ``KH - 1`` input rows).
ROWS = 8


def use_broadcast(w_shape, groups):
    """True when the broadcast path should run a convolution with this weight."""
    return w_shape[0] // groups >= MIN_CHANNELS


def broadcast_weight(w, groups):
    """``w`` reordered to ``Wb[g, kb, (c, kd, kh), kw, j]`` with output
    channel ``kb*KB + j``; channels padded with zeros to a multiple of ``KB``
    (their sums are computed and dropped).  The eight weights of one
    reduction step are adjacent, and the steps follow the loop order."""
    K, Cg, KD, KH, KW = w.shape
    Kg = K // groups
    nkb = -(-Kg // KB)
    wb = np.zeros((groups, nkb * KB, Cg, KD, KH, KW), w.dtype)
    wb[:, :Kg] = w.reshape(groups, Kg, Cg, KD, KH, KW)
    wb = wb.reshape(groups, nkb, KB, Cg * KD * KH, KW).transpose(0, 1, 3, 4, 2)
    return np.ascontiguousarray(wb)


@njit(inline="always", **NJIT_SERIAL)
def load_rows(x, n, c0, i_d0, ih0, dilation_d, stride, pw, T):
    """T[c, kd, l, m, i] = x[n, c0 + c, i_d0 + kd*dilation_d, ih0 + l, i*sw + m - pw],
    zero outside the input: the input rows a block of output rows reads.

    Unit width stride is the common case and has a branch of its own: there
    the copy is one contiguous run, with bounds fixed for the whole tile.
    """
    D, H, W = x.shape[2], x.shape[3], x.shape[4]
    Cg, KD, NL, sw, Wq = T.shape
    # Columns i with 0 <= i - pw < W (unit stride): [j0, j1).
    j0 = min(max(pw, 0), Wq)
    j1 = min(max(W + pw, j0), Wq)
    for c in range(Cg):
        for kd in range(KD):
            i_d = i_d0 + kd * dilation_d
            for l in range(NL):
                ih = ih0 + l
                if i_d < 0 or i_d >= D or ih < 0 or ih >= H:
                    T[c, kd, l] = 0.0
                elif sw == 1:
                    copy_row(T[c, kd, l, 0], x[n, c0 + c, i_d, ih, j0 - pw:j1 - pw], j0, j1)
                else:
                    xrow = x[n, c0 + c, i_d, ih]
                    for m in range(sw):
                        # Columns i with 0 <= i*sw + m - pw < W: [i0, i1).
                        i0 = min(max(-((m - pw) // sw), 0), Wq)
                        i1 = min(max((W - 1 - m + pw) // sw + 1, i0), Wq)
                        copy_row(T[c, kd, l, m], xrow[i0 * sw + m - pw::sw], i0, i1)


@njit(inline="always", **NJIT_SERIAL)
def block_sums(acc, T, wb, taps, base):
    """acc[j, p] = sum over reduction steps s of wb[s, j] * T[taps[s] + base + p]
    for the eight channels j and the block's ``2*V`` outputs.

    ``T`` is the task's tile, flat; step ``s`` is a tap ``(c, kd, kh, kw)``,
    ``taps[s]`` where its run starts for the task's first output row and
    ``base`` the block's offset from there.  One flat loop over every step:
    see the module's docstring.  The index is
    cast to unsigned: Numba then adds no negative-index test, which would
    stop LLVM from vectorising the loop over ``p``.
    """
    PW = 2 * vector_lanes(T)
    for j in range(KB):
        for p in range(PW):
            acc[j, p] = 0.0
    for s in range(wb.shape[0]):
        wv = wb[np.uint64(s)]
        w0, w1, w2, w3 = wv[0], wv[1], wv[2], wv[3]
        w4, w5, w6, w7 = wv[4], wv[5], wv[6], wv[7]
        o = taps[np.uint64(s)] + base
        for p in range(PW):
            rank1_update(acc, p, T[np.uint64(o + p)], w0, w1, w2, w3, w4, w5, w6, w7)


@njit(inline="always", **NJIT_SERIAL)
def tap_offsets(KH, KW, dh, dw, Cg_KD, NL, sw, Wq):
    """Where each reduction step's run of inputs starts in a flat tile
    ``T[(c, kd), l, m, i]`` (see ``load_rows``) for a task's first output
    row, in the step order of ``broadcast_weight``: tap ``(c, kd, kh, kw)``
    reads row ``kh*dh`` of ``(c, kd)``, phase ``(kw*dw) % sw`` from column
    ``(kw*dw) // sw``."""
    taps = np.empty(Cg_KD * KH * KW, dtype=np.uint64)
    s = 0
    for ck in range(Cg_KD):
        for kh in range(KH):
            for kw in range(KW):
                taps[s] = ((ck * NL + kh * dh) * sw + (kw * dw) % sw) * Wq + (kw * dw) // sw
                s += 1
    return taps


@njit(**NJIT_PARALLEL)
def forward_broadcast(x, Wb, b, has_bias, kshape, stride, dilation, pad_lo, groups, out):
    """out = conv(x, w) + b with ``Wb = broadcast_weight(w, groups)``; ``x``
    C-contiguous."""
    N, C = x.shape[0], x.shape[1]
    K, OD, OH, OW = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    KD, KH, KW = kshape
    Kg, Cg = K // groups, C // groups
    nkb = Wb.shape[1]
    sh, sw = stride[1], stride[2]
    dh, dw = dilation[1], dilation[2]
    # Outputs per register block: two vectors.
    PW = 2 * vector_lanes(x)
    OWp = -(-OW // PW) * PW
    Wq = OWp + ((KW - 1) * dw) // sw
    # Output rows per task, and the input rows they read.
    nrb = -(-OH // ROWS)
    RB = -(-OH // nrb)
    NL = (RB - 1) * sh + (KH - 1) * dh + 1
    taps = tap_offsets(KH, KW, dh, dw, Cg * KD, NL, sw, Wq)
    Wf = Wb.reshape(groups, nkb, -1, KB)
    ntask = N * groups * OD * nrb
    for task in prange(ntask):
        wide_vectors()
        # Inside the prange body, so that the block's shape is a constant of
        # the function compiled from it (its loops then unroll completely);
        # a value from outside arrives as a run-time argument.
        acc = carray(register_block(x), (KB, 2 * vector_lanes(x)))
        rb = task % nrb
        rest = task // nrb
        od = rest % OD
        rest //= OD
        g = rest % groups
        n = rest // groups
        oh0 = rb * RB
        T = np.empty((Cg, KD, NL, sw, Wq), dtype=x.dtype)
        load_rows(x, n, g * Cg, od * stride[0] - pad_lo[0], oh0 * sh - pad_lo[1],
                  dilation[0], stride, pad_lo[2], T)
        Tf = T.reshape(-1)
        for oh in range(oh0, min(oh0 + RB, OH)):
            for kb in range(nkb):
                for p0 in range(0, OWp, PW):
                    block_sums(acc, Tf, Wf[g, kb], taps, (oh - oh0) * sh * sw * Wq + p0)
                    for j in range(min(KB, Kg - kb * KB)):
                        k = g * Kg + kb * KB + j
                        bias = b[k] if has_bias else 0.0
                        dst = out[n, k, od, oh]
                        for p in range(min(PW, OW - p0)):
                            dst[p0 + p] = acc[j, p] + bias
