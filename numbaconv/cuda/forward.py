"""CUDA forward convolution: ``out = x * w (+ b)`` (cross-correlation).

One thread per output element.  Adjacent threads own adjacent output
columns, so their reads of ``x`` are adjacent too (coalesced) and they all
read the same weight element (a broadcast).  Taps that land in the implicit
zero padding are skipped, never read.
"""

from __future__ import annotations

from numba import cuda

from .. import _config
from ._indexing import (elementwise_launch, global_thread_id, grid_size,
                        int3, tap_input_index, unravel5)


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
        for cg in range(Cg):
            c = c0 + cg
            for td in range(KD):
                id_ = tap_input_index(od, td, stride[0], dilation[0],
                                      pad_lo[0])
                if id_ < 0 or id_ >= D:
                    continue
                for th in range(KH):
                    ih = tap_input_index(oh, th, stride[1], dilation[1],
                                         pad_lo[1])
                    if ih < 0 or ih >= H:
                        continue
                    for tw in range(KW):
                        iw = tap_input_index(ow, tw, stride[2], dilation[2],
                                             pad_lo[2])
                        if iw < 0 or iw >= W:
                            continue
                        acc += w[k, cg, td, th, tw] * x[n, c, id_, ih, iw]
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
