"""CPU ``forward`` for four to seven output channels per group: register-blocked dot products over row panels.

When a group has several output channels and a long reduction (input
channels x depth taps x height taps), the convolution of one output row is a
small matrix product, and what makes a matrix product fast is a *register
block*: four outputs x four output channels = sixteen running sums kept in
registers, each pair of loads (one input, one weight) feeding sixteen
multiply-adds.  LLVM vectorises the sixteen sums along the reduction axis
when that axis is contiguous in both operands, which fixes the layout.

Per output row ``(n, g, od, oh)`` a task gathers the *panel*
``Q[i, (c, kd, kh)] = x[n, g*Cg + c, od*sd + kd*dd - pd, oh*sh + kh*dh - ph, i - pw]``
(zero outside the input): the input columns of the row, transposed so that
the reduction axis is contiguous.  Output ``p`` under width tap ``kw`` reads
panel row ``p*sw + kw*dw`` whole, so one panel serves every width tap and
any stride or dilation, and it is only ``C*KD*KH`` values per input column
(it is never the ``KW``-times-larger im2col matrix).  The weight is
reordered once per call to ``Wt[g, k, (kw, c, kd, kh)]`` to match.

Padding is real zeros in the panel, so an inf or NaN weight meets them as
IEEE arithmetic says (``inf * 0 = NaN``), like PyTorch, without a padded
copy of the input.  Each output element is summed in a fixed order that
depends only on the shapes: results are identical for any thread count.
"""

import numpy as np
from numba import njit, prange

from .._config import NJIT_PARALLEL, NJIT_SERIAL
from ._index import bias_like, claim, task_counter, unravel4
from ._vector import wide_vectors

#: Outputs x output channels of one register block (the kernel below is
#: written out for 4 x 4; the constants name the padding it implies).
PANEL_OUTPUTS = 4
PANEL_CHANNELS = 4
#: Smallest reduction length (``Cg*KD*KH``) and output channels per group for
#: which panels beat the pitched path of ``forward.py``.
MIN_REDUCTION = 16
PANEL_MIN_CHANNELS = 4
#: Panel rows transposed together by ``gather_panel``.
GATHER_BLOCK = 32


def use_panels(w_shape, groups):
    """True when the panel path should run a convolution with this weight.

    A kernel one column wide stays on the pitched path: there every tap reads
    the input rows in place, while a panel would only transpose them.
    """
    K, Cg, KD, KH, KW = w_shape
    return (K // groups >= PANEL_MIN_CHANNELS and Cg * KD * KH >= MIN_REDUCTION
            and KW > 1)


def panel_weight(w, groups):
    """``w`` reordered to ``Wt[g, k, (kw, c, kd, kh)]``, output channels padded
    with zeros to a multiple of ``PANEL_CHANNELS`` (their sums are computed and dropped)."""
    K, Cg, KD, KH, KW = w.shape
    Kg = K // groups
    Kgp = -(-Kg // PANEL_CHANNELS) * PANEL_CHANNELS
    wt = np.zeros((groups, Kgp, KW, Cg, KD, KH), w.dtype)
    wt[:, :Kg] = w.reshape(groups, Kg, Cg, KD, KH, KW).transpose(0, 1, 5, 2, 3, 4)
    return wt.reshape(groups, Kgp, KW * Cg * KD * KH)


@njit(inline="always", **NJIT_SERIAL)
def block4x4(Qf, R, i0, si, di, Wt, k0, KW):
    """Sixteen sums: outputs ``p = 0..3`` (panel rows ``i0 + p*si + kw*di``)
    times weight rows ``k0..k0+3``, over every width tap and the panel width.

    ``Qf`` is the panel flattened (rows of ``R``).  With width dilation 1 the
    panel rows of consecutive width taps follow each other in memory, so the
    reduction over ``(kw, r)`` is one contiguous run of ``KW*R`` values: one
    long vectorised loop instead of ``KW`` short ones, each of which ends in
    sixteen horizontal (across-lane) additions.

    Returned in the order ``(p0k0, p0k1, p0k2, p0k3, p1k0, ...)``.
    """
    z = Qf.dtype.type(0)
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = z
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = z
    w0, w1, w2, w3 = Wt[k0], Wt[k0 + 1], Wt[k0 + 2], Wt[k0 + 3]
    nseg, L = (1, KW * R) if di == 1 else (KW, R)
    for seg in range(nseg):
        a = (i0 + seg * di) * R
        q0 = Qf[a:a + L]
        q1 = Qf[a + si * R:a + si * R + L]
        q2 = Qf[a + 2 * si * R:a + 2 * si * R + L]
        q3 = Qf[a + 3 * si * R:a + 3 * si * R + L]
        o = seg * L
        for r in range(L):
            x0, x1, x2, x3 = q0[r], q1[r], q2[r], q3[r]
            y0, y1, y2, y3 = w0[o + r], w1[o + r], w2[o + r], w3[o + r]
            s00 += x0 * y0
            s01 += x0 * y1
            s02 += x0 * y2
            s03 += x0 * y3
            s10 += x1 * y0
            s11 += x1 * y1
            s12 += x1 * y2
            s13 += x1 * y3
            s20 += x2 * y0
            s21 += x2 * y1
            s22 += x2 * y2
            s23 += x2 * y3
            s30 += x3 * y0
            s31 += x3 * y1
            s32 += x3 * y2
            s33 += x3 * y3
    return (s00, s01, s02, s03, s10, s11, s12, s13,
            s20, s21, s22, s23, s30, s31, s32, s33)


@njit(inline="always", **NJIT_SERIAL)
def gather_panel(x, n, c0, Cg, od, oh, kshape, stride, dilation, pad_lo, rows, Q):
    """Q[i, (c, kd, kh)] = input column ``i - pw`` of the row under tap
    (c, kd, kh) of output row (od, oh); zero where that is padding.

    This is a transposition: input rows become panel columns.  It runs in
    blocks of ``GATHER_BLOCK`` panel rows, input row by input row: each read
    is a contiguous (vectorised) piece of an input row, and the block's
    panel rows, written one element per input row, stay in the L1 cache
    until they are full.  The flat offsets of the input rows (-1: padding)
    are listed first in ``rows``.
    """
    D, H, W = x.shape[2], x.shape[3], x.shape[4]
    KD, KH = kshape[0], kshape[1]
    xf = x.reshape(-1)
    nq, R = Q.shape
    pw = pad_lo[2]
    i0 = min(max(pw, 0), nq)
    i1 = min(max(W + pw, i0), nq)
    q = 0
    for c in range(Cg):
        for kd in range(KD):
            i_d = od * stride[0] + kd * dilation[0] - pad_lo[0]
            for kh in range(KH):
                ih = oh * stride[1] + kh * dilation[1] - pad_lo[1]
                if i_d < 0 or i_d >= D or ih < 0 or ih >= H:
                    rows[q] = -1
                else:
                    rows[q] = (((n * x.shape[1] + c0 + c) * D + i_d) * H + ih) * W
                q += 1
    Q[:i0] = 0.0
    Q[i1:] = 0.0
    for b0 in range(i0, i1, GATHER_BLOCK):
        b1 = min(b0 + GATHER_BLOCK, i1)
        for q in range(R):
            o = rows[q]
            if o < 0:
                for i in range(b0, b1):
                    Q[i, q] = 0.0
            else:
                src = xf[o + b0 - pw:o + b1 - pw]
                for i in range(b1 - b0):
                    Q[b0 + i, q] = src[i]


@njit(**NJIT_PARALLEL)
def forward_panels(x, Wt, b, has_bias, kshape, stride, dilation, pad_lo, groups, workers,
                   out):
    """out = conv(x, w) + b with ``Wt = panel_weight(w, groups)``; ``x`` must be
    C-contiguous (the panel gather indexes it flat)."""
    N, C = x.shape[0], x.shape[1]
    K, OD, OH, OW = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    KW = kshape[2]
    Kg, Cg = K // groups, C // groups
    Kgp = Wt.shape[1]
    sw, dw = stride[2], dilation[2]
    OWp = -(-OW // PANEL_OUTPUTS) * PANEL_OUTPUTS
    nq = max(1, (OWp - 1) * sw + (KW - 1) * dw + 1)   # panel rows the blocks read
    R = Cg * kshape[0] * kshape[1]
    # The bias in the output's type: a float64 zero would make every store a
    # float64 addition.
    bias = bias_like(b, has_bias, K, out)
    ntask = N * groups * OD * OH
    # Each of ``workers`` threads claims tasks one at a time (see
    # ``broadcast.forward_broadcast``).
    counter = task_counter()
    for worker in prange(max(1, min(workers, ntask))):
        wide_vectors()
        # One panel per thread, not per task (a task is one output row):
        # ``gather_panel`` writes all of it.
        Q = np.empty((nq, R), dtype=x.dtype)
        rows = np.empty(R, dtype=np.int64)
        Qf = Q.reshape(-1)
        task = claim(counter)
        while task < ntask:
            n, g, od, oh = unravel4(task, groups, OD, OH)
            gather_panel(x, n, g * Cg, Cg, od, oh, kshape, stride, dilation, pad_lo, rows, Q)
            Wg = Wt[g]
            # Output-channel blocks outside: the block's four weight rows stay in
            # the L1 cache while the panel rows stream past them.
            for k0 in range(0, Kgp, PANEL_CHANNELS):
                for p0 in range(0, OWp, PANEL_OUTPUTS):
                    s = block4x4(Qf, R, p0 * sw, sw, dw, Wg, k0, KW)
                    for j in range(min(PANEL_CHANNELS, Kg - k0)):
                        k = g * Kg + k0 + j
                        dst = out[n, k, od, oh]
                        for p in range(min(PANEL_OUTPUTS, OW - p0)):
                            dst[p0 + p] = s[p * PANEL_CHANNELS + j] + bias[k]
            task = claim(counter)
