"""CUDA gradient of the convolution with respect to its input (gather form).

Also the bias step of a transposed convolution (``add_bias``), which runs
right after this kernel on the same output.

One thread per ``gx`` element.  Rather than scattering each ``gy`` element
into the inputs it touched (which would need atomics, and atomics make
floating-point sums schedule-dependent), each thread gathers: for every tap
it solves ``i == o * stride + t * dilation - pad_lo`` for the output index
``o`` and adds ``w * gy`` when a solution exists.  Every ``gx`` element is
written once, by one thread, in a fixed order.
"""

from __future__ import annotations

from numba import cuda

from .. import _config
from ._indexing import (elementwise_launch, global_thread_id, grid_size,
                        int3, tap_output_index, unravel5)


@cuda.jit(**_config.CUDA_JIT)
def backward_data_kernel(gy, w, stride, dilation, pad_lo, groups, gx):
    """Compute every element of ``gx`` (see ``numbaconv._backend``).

    Parameters
    ----------
    gy : device array, shape (N, K, OD, OH, OW)
    w : device array, shape (K, C // groups, KD, KH, KW)
    stride, dilation, pad_lo : tuple of 3 int
    groups : int
    gx : device array, shape (N, C, D, H, W)
        Fully overwritten.
    """
    C = gx.shape[1]
    D = gx.shape[2]
    H = gx.shape[3]
    W = gx.shape[4]
    K = gy.shape[1]
    OD = gy.shape[2]
    OH = gy.shape[3]
    OW = gy.shape[4]
    Cg = w.shape[1]
    KD = w.shape[2]
    KH = w.shape[3]
    KW = w.shape[4]
    Kg = K // groups

    for flat in range(global_thread_id(), gx.size, grid_size()):
        n, c, id_, ih, iw = unravel5(flat, C, D, H, W)
        g = c // Cg
        cg = c - g * Cg  # c's position inside its group's weight slice
        acc = gx.dtype.type(0)
        for k in range(g * Kg, (g + 1) * Kg):
            for td in range(KD):
                od = tap_output_index(id_, td, stride[0], dilation[0],
                                      pad_lo[0], OD)
                if od < 0:
                    continue
                for th in range(KH):
                    oh = tap_output_index(ih, th, stride[1], dilation[1],
                                          pad_lo[1], OH)
                    if oh < 0:
                        continue
                    for tw in range(KW):
                        ow = tap_output_index(iw, tw, stride[2], dilation[2],
                                              pad_lo[2], OW)
                        if ow < 0:
                            continue
                        acc += w[k, cg, td, th, tw] * gy[n, k, od, oh, ow]
        gx[n, c, id_, ih, iw] = acc


def backward_data_cuda(gy, w, stride, dilation, pad_lo, groups, gx):
    """Launch ``backward_data_kernel`` on the default stream.

    Takes the arguments of ``Backend.backward_data``; ordered with later
    work on the same stream, no host synchronisation.
    """
    if gx.size == 0:
        return
    blocks, threads = elementwise_launch(gx.size)
    backward_data_kernel[blocks, threads](gy, w, int3(stride),
                                          int3(dilation), int3(pad_lo),
                                          int(groups), gx)


@cuda.jit(**_config.CUDA_JIT)
def add_bias_kernel(y, b):
    """``y[n, k, d, h, w] += b[k]`` in place, one thread per element.

    Parameters
    ----------
    y : device array, shape (N, K, D, H, W)
        Updated in place; every element is touched by exactly one thread.
    b : device array, shape (K,)
    """
    K = y.shape[1]
    D = y.shape[2]
    H = y.shape[3]
    W = y.shape[4]
    for flat in range(global_thread_id(), y.size, grid_size()):
        n, k, d, h, w = unravel5(flat, K, D, H, W)
        y[n, k, d, h, w] += b[k]


def add_bias_cuda(y, b):
    """Launch ``add_bias_kernel`` on the default stream.

    Takes the arguments of ``Backend.add_bias``; ordered after the kernel
    that wrote ``y`` on the same stream.
    """
    if y.size == 0:
        return
    blocks, threads = elementwise_launch(y.size)
    add_bias_kernel[blocks, threads](y, b)
