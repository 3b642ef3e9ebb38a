"""CPU ``backward_weight`` for four to fifteen output channels per group, over the row panels of ``panel.py``.

The weight gradient in the panel layout of the forward is

    gwt[g, k, (kw, c, kd, kh)] = sum over output rows and p of
                                 gy[n, g*Kg + k, od, oh, p] * Q[p*sw + kw*dw, (c, kd, kh)]

with ``Q`` the panel of output row ``(n, g, od, oh)``.  For one output ``p``
and width dilation 1 the panel values of every width tap are one contiguous
run ``Q[p*sw : p*sw + KW]`` (flattened), exactly as long and laid out as a
row of ``gwt``: the update is ``gwt[k] += gy[k, p] * run(p)``.  The kernel
below does it for four output channels times four outputs at once
(``axpy4x4``; two outputs, ``axpy4x2``, on 16-register targets): every
accumulator element is loaded and stored once per sixteen multiply-adds,
the sixteen ``gy`` values stay in registers, and the
loop runs along the contiguous run, where LLVM vectorises it.  No scratch
columns are summed: every product is a real term (padding is real zeros in
the panel), so inf and NaN propagate as in a direct sum.

Work is split into tasks of (group, chunk of (batch, depth) planes).  A task
writes the sums over its chunk to its own slot of ``partial``; the slots are
added in chunk order at the end (``sum_chunks``).  The chunks depend on the
shapes alone, so the result is bit-identical for any number of threads.
Sums over more than a few hundred terms are kept in float64: a task sums
``FLUSH_TERMS`` terms per element in the data type, then adds them to its
float64 slot.
"""

import numpy as np
from numba import njit, prange

from .._config import NJIT_PARALLEL, NJIT_SERIAL
from ._index import claim, task_counter
from ._target import TARGET
from ._vector import wide_vectors
from .forward import axpy, axpy4
from .panel import gather_panel

#: (batch, depth) chunks of the reduction: the tasks per group.  Each holds a
#: float64 copy of the weight gradient, so this also bounds the memory.
CHUNKS = 16
#: Terms summed per weight-gradient element in the data type before they are
#: added to the float64 total.
FLUSH_TERMS = 1024
#: Outputs per register block of four output channels: four (``axpy4x4``)
#: with 32 vector registers, two (``axpy4x2``) with 16.
BLOCK_OUTPUTS = 4 if TARGET.registers >= 32 else 2


@njit(inline="always", **NJIT_SERIAL)
def axpy4x4(a0, a1, a2, a3, q0, q1, q2, q3, G, k0, p0):
    """``a_j += sum_i G[k0 + j, p0 + i] * q_i`` for j, i = 0..3."""
    g00, g01, g02, g03 = G[k0, p0], G[k0, p0 + 1], G[k0, p0 + 2], G[k0, p0 + 3]
    g10, g11, g12, g13 = G[k0 + 1, p0], G[k0 + 1, p0 + 1], G[k0 + 1, p0 + 2], G[k0 + 1, p0 + 3]
    g20, g21, g22, g23 = G[k0 + 2, p0], G[k0 + 2, p0 + 1], G[k0 + 2, p0 + 2], G[k0 + 2, p0 + 3]
    g30, g31, g32, g33 = G[k0 + 3, p0], G[k0 + 3, p0 + 1], G[k0 + 3, p0 + 2], G[k0 + 3, p0 + 3]
    for j in range(a0.shape[0]):
        u0, u1, u2, u3 = q0[j], q1[j], q2[j], q3[j]
        a0[j] += g00 * u0 + g01 * u1 + g02 * u2 + g03 * u3
        a1[j] += g10 * u0 + g11 * u1 + g12 * u2 + g13 * u3
        a2[j] += g20 * u0 + g21 * u1 + g22 * u2 + g23 * u3
        a3[j] += g30 * u0 + g31 * u1 + g32 * u2 + g33 * u3


@njit(inline="always", **NJIT_SERIAL)
def axpy4x2(a0, a1, a2, a3, q0, q1, G, k0, p0):
    """``a_j += sum_i G[k0 + j, p0 + i] * q_i`` for j = 0..3, i = 0..1: the
    block for 16-register targets, where the sixteen broadcast values of
    ``axpy4x4`` would not stay in registers beside its operands."""
    g00, g01, g10, g11 = G[k0, p0], G[k0, p0 + 1], G[k0 + 1, p0], G[k0 + 1, p0 + 1]
    g20, g21, g30, g31 = G[k0 + 2, p0], G[k0 + 2, p0 + 1], G[k0 + 3, p0], G[k0 + 3, p0 + 1]
    for j in range(a0.shape[0]):
        u0, u1 = q0[j], q1[j]
        a0[j] += g00 * u0 + g01 * u1
        a1[j] += g10 * u0 + g11 * u1
        a2[j] += g20 * u0 + g21 * u1
        a3[j] += g30 * u0 + g31 * u1


@njit(inline="always", **NJIT_SERIAL)
def accumulate_row(acc, Qf, R, G, sw, dw, KW):
    """acc[k, (kw, r)] += sum_p G[k, p] * Q[p*sw + kw*dw, r] for one output row
    (``G = gy[n, group's channels, od, oh]``, ``Qf`` its flattened panel)."""
    Kg, OW = G.shape
    nseg, Ls = (1, KW * R) if dw == 1 else (KW, R)
    for seg in range(nseg):
        o = seg * Ls
        k0 = 0
        while k0 + 4 <= Kg:
            a0, a1, a2 = acc[k0, o:o + Ls], acc[k0 + 1, o:o + Ls], acc[k0 + 2, o:o + Ls]
            a3 = acc[k0 + 3, o:o + Ls]
            p0 = 0
            while p0 + BLOCK_OUTPUTS <= OW:
                s0 = (p0 * sw + seg * dw) * R
                s1 = s0 + sw * R
                if BLOCK_OUTPUTS == 4:
                    s2 = s1 + sw * R
                    s3 = s2 + sw * R
                    axpy4x4(a0, a1, a2, a3, Qf[s0:s0 + Ls], Qf[s1:s1 + Ls],
                            Qf[s2:s2 + Ls], Qf[s3:s3 + Ls], G, k0, p0)
                else:
                    axpy4x2(a0, a1, a2, a3, Qf[s0:s0 + Ls], Qf[s1:s1 + Ls], G, k0, p0)
                p0 += BLOCK_OUTPUTS
            for p in range(p0, OW):
                s = (p * sw + seg * dw) * R
                axpy4(a0, a1, a2, a3, G[k0, p], G[k0 + 1, p], G[k0 + 2, p],
                      G[k0 + 3, p], Qf[s:s + Ls])
            k0 += 4
        for k in range(k0, Kg):
            for p in range(OW):
                s = (p * sw + seg * dw) * R
                axpy(acc[k, o:o + Ls], G[k, p], Qf[s:s + Ls])


@njit(**NJIT_PARALLEL)
def weight_grad_panels(x, gy, kshape, stride, dilation, pad_lo, groups, workers, partial):
    """partial[chunk, g, k, (kw, c, kd, kh)] = the chunk's share of the weight
    gradient of group ``g``; ``x`` must be C-contiguous (see ``gather_panel``)."""
    N, C = x.shape[0], x.shape[1]
    K, OD, OH, OW = gy.shape[1], gy.shape[2], gy.shape[3], gy.shape[4]
    KW = kshape[2]
    Kg, Cg = K // groups, C // groups
    sw, dw = stride[2], dilation[2]
    nq = (OW - 1) * sw + (KW - 1) * dw + 1
    R = Cg * kshape[0] * kshape[1]
    nchunk = partial.shape[0]
    planes = N * OD
    per_chunk = (planes + nchunk - 1) // nchunk
    flush_rows = max(1, FLUSH_TERMS // OW)
    ntask = nchunk * groups
    # Each of ``workers`` threads claims tasks one at a time (see
    # ``broadcast.forward_broadcast``).
    counter = task_counter()
    for worker in prange(max(1, min(workers, ntask))):
        wide_vectors()
        task = claim(counter)
        while task < ntask:
            chunk = task % nchunk
            g = task // nchunk
            total = partial[chunk, g]
            total[:] = 0.0
            acc = np.zeros((Kg, KW * R), dtype=x.dtype)
            Q = np.empty((nq, R), dtype=x.dtype)
            Qf = Q.reshape(-1)
            rows = np.empty(R, dtype=np.int64)
            for plane in range(chunk * per_chunk, min(planes, (chunk + 1) * per_chunk)):
                n = plane // OD
                od = plane % OD
                for oh in range(OH):
                    gather_panel(x, n, g * Cg, Cg, od, oh, kshape, stride, dilation,
                                 pad_lo, rows, Q)
                    accumulate_row(acc, Qf, R, gy[n, g * Kg:(g + 1) * Kg, od, oh],
                                   sw, dw, KW)
                    if (oh + 1) % flush_rows == 0 or oh == OH - 1:
                        for k in range(Kg):
                            t, a = total[k], acc[k]
                            for j in range(t.shape[0]):
                                t[j] += a[j]
                                a[j] = 0.0
            task = claim(counter)
