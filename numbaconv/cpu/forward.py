"""CPU ``forward`` primitive: direct cross-correlation, no im2col.

Work is split into tasks of (batch, group, block of ``KB`` output channels,
output depth plane).  A task owns its slab of ``out``, so threads never write
the same element and the result does not depend on the thread count; a
single volume still yields ``K/KB * OD`` tasks, enough for every core.

Within a task the loop order is tap-major: for every input channel and
kernel tap, each output row of the block receives ``w * shifted input row``.
The innermost loop runs along the output width over contiguous memory
(stride 1) with its bounds precomputed, so LLVM vectorises it, and the
output slab (``KB x OH x OW``) stays in cache while all taps accumulate.
"""

import numpy as np
from numba import njit, prange

from .._config import NJIT_PARALLEL
from ._index import valid_range

#: Output channels per task: enough reuse of each input row, small slabs.
KB = 4


@njit(**NJIT_PARALLEL)
def forward_kernel(x, w, b, has_bias, stride, dilation, pad_lo, groups, out):
    """out = x (*) w (+ b); see ``numbaconv._backend`` for the exact sums."""
    N, C, D, H, W = x.shape
    K, Cg, KD, KH, KW = w.shape
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    sd, sh, sw = stride
    dd, dh, dw = dilation
    pd, ph, pw = pad_lo
    Kg = K // groups
    nkb = (Kg + KB - 1) // KB
    ntask = N * groups * nkb * OD
    for task in prange(ntask):
        od = task % OD
        rest = task // OD
        kb = rest % nkb
        rest //= nkb
        g = rest % groups
        n = rest // groups
        k0 = g * Kg + kb * KB
        k1 = min(k0 + KB, (g + 1) * Kg)
        for k in range(k0, k1):
            bias = b[k] if has_bias else 0.0
            plane = out[n, k, od]
            for oh in range(OH):
                row = plane[oh]
                for ow in range(OW):
                    row[ow] = bias
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
                        for k in range(k0, k1):
                            wv = w[k, c, kd, kh, kw]
                            oplane = out[n, k, od]
                            for oh in range(oh0, oh1):
                                xrow = xplane[oh * sh + kh * dh - ph]
                                orow = oplane[oh]
                                for ow in range(ow0, ow1):
                                    orow[ow] += wv * xrow[ow * sw + off]


def forward_cpu(x, w, b, stride, dilation, pad_lo, groups, out):
    """Host entry: ``b`` may be None."""
    has_bias = b is not None
    if not has_bias:
        b = np.empty(0, dtype=out.dtype)
    forward_kernel(x, w, b, has_bias, stride, dilation, pad_lo, groups, out)
