"""CUDA gradient of the convolution with respect to its input.

Also the forward of the transposed convolution, and its bias step
(``add_bias``).

Fast path (``plan.backward_data_plan`` chooses): the adjoint of a
stride-``s`` convolution splits into ``s`` phases per axis, each a
unit-stride correlation of ``gy`` with the flipped, channel-swapped taps
that reach it (``plan.axis_phases``, as on the CPU).  ``adjoint_weight_kernel``
builds every phase's small weight on the device, and each phase runs on the
tiled forward kernel, which stores its outputs straight into their strided
place in ``gx`` and adds the bias as it stores.

That forward reads zeros where ``gy`` has no element, and a NaN or inf
weight would turn those into NaN where the adjoint has no term at all.  So
``finite_flag_kernel`` checks the weight on the device (no host
synchronisation): with a non-finite weight the phase kernels return at once
and the gather kernel below computes ``gx`` exactly; otherwise the gather
kernel returns at once.

Gather kernel: one thread per ``gx`` element.  Rather than scattering each ``gy`` element
into the inputs it touched (which would need atomics, and atomics make
floating-point sums schedule-dependent), each thread gathers: for every tap
it solves ``i == o * stride + t * dilation - pad_lo`` for the output index
``o`` and adds ``w * gy`` when a solution exists.  Every ``gx`` element is
written once, by one thread, in a fixed order.
"""

from __future__ import annotations


import numpy as np
from numba import cuda

from .. import _config
from ._indexing import (block_sum, elementwise_launch, global_thread_id,
                        grid_size, int3, tap_output_index, unravel5)
from .forward import tiled_launch
from .plan import backward_data_plan

#: Grid cap of the guarded gather launch: a block that finds the weight
#: finite returns at once, so the grid is kept small, and the grid-stride
#: loop covers ``gx`` when it does run.
GUARDED_GATHER_BLOCKS = 2048
#: Threads of the one-block finiteness check.
FLAG_THREADS = 256


@cuda.jit(**_config.CUDA_JIT)
def backward_data_kernel(gy, w, b, stride, dilation, pad_lo, groups, flag,
                         gx):
    """Compute every element of ``gx`` (see ``numbaconv._backend``).

    Runs only when ``flag[0] != 0`` (pass ``flag`` = None to run always);
    adds ``b[c]`` (None: no bias).

    Parameters
    ----------
    gy : device array, shape (N, K, OD, OH, OW)
    w : device array, shape (K, C // groups, KD, KH, KW)
    stride, dilation, pad_lo : tuple of 3 int
    groups : int
    gx : device array, shape (N, C, D, H, W)
        Fully overwritten.
    """
    if flag is not None:
        if flag[0] == 0:
            return
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
        if b is not None:
            acc = b[c]
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


def backward_data_cuda(gy, w, stride, dilation, pad_lo, groups, gx, b=None):
    """The gather kernel alone, on the default stream (adds ``b`` when given).

    Takes the arguments of ``Backend.backward_data``; ordered with later
    work on the same stream, no host synchronisation.
    """
    if gx.size == 0:
        return
    blocks, threads = elementwise_launch(gx.size)
    backward_data_kernel[blocks, threads](gy, w, b, int3(stride),
                                          int3(dilation), int3(pad_lo),
                                          int(groups), None, gx)


@cuda.jit(**_config.CUDA_JIT)
def finite_flag_kernel(w, flag):
    """``flag[0] = 1`` if ``w`` (flat) holds a NaN or inf, else 0.

    One block; every thread scans a strided part, and an integer tree (a
    count, exact in any order) merges the block.
    """
    scratch = cuda.shared.array(0, dtype=flag.dtype)
    bad = np.int32(0)
    for i in range(np.int64(cuda.threadIdx.x), w.size,
                   np.int64(cuda.blockDim.x)):
        v = w[i]
        if not (v - v == 0):   # NaN - NaN and inf - inf are NaN
            bad = np.int32(1)
    total = block_sum(scratch, bad)
    if cuda.threadIdx.x == 0:
        flag[0] = np.int32(1) if total > 0 else np.int32(0)


@cuda.jit(**_config.CUDA_JIT)
def adjoint_weight_kernel(w, groups, first, step, count, out):
    """One phase's weight for the data gradient, on the device.

    ``out[g*Cg + c, k, j] = w[g*Kg + k, c, first + step*(count-1-j)]`` per
    axis: the taps that reach the phase, flipped, with the two channel axes
    exchanged within each group.

    Parameters
    ----------
    w : device array, shape (K, Cg, KD, KH, KW)
    groups : int
    first, step, count : tuple of 3 int
    out : device array, shape (groups * Cg, K // groups, *count)
    """
    K = w.shape[0]
    Cg = w.shape[1]
    Kg = K // groups
    for flat in range(global_thread_id(), out.size, grid_size()):
        gc, k, jd, jh, jw = unravel5(flat, Kg, count[0], count[1], count[2])
        g = gc // Cg
        c = gc - g * Cg
        out[gc, k, jd, jh, jw] = w[
            g * Kg + k, c, first[0] + step[0] * (count[0] - 1 - jd),
            first[1] + step[1] * (count[1] - 1 - jh),
            first[2] + step[2] * (count[2] - 1 - jw)]


@cuda.jit(**_config.CUDA_JIT)
def fill_phase_kernel(b, off, step, count, flag, gx):
    """``gx`` at the phase ``off + step * q`` (``q < count``) = ``b[c]`` or 0:
    the inputs that no tap reaches.  Returns at once when ``flag[0] != 0``
    (the gather kernel writes everything then)."""
    if flag[0] != 0:
        return
    C = gx.shape[1]
    for flat in range(global_thread_id(),
                      gx.shape[0] * C * count[0] * count[1] * count[2],
                      grid_size()):
        n, c, qd, qh, qw = unravel5(flat, C, count[0], count[1], count[2])
        v = gx.dtype.type(0)
        if b is not None:
            v = b[c]
        gx[n, c, off[0] + step[0] * qd, off[1] + step[1] * qh,
           off[2] + step[2] * qw] = v


def backward_data_launch(gy, w, stride, dilation, pad_lo, groups, gx, b=None):
    """``Backend.backward_data``: the path ``plan.backward_data_plan`` chooses.

    Everything is queued on the default stream; nothing waits for the GPU.
    """
    if gx.size == 0:
        return
    plan = backward_data_plan(gy.shape, w.shape, gx.shape, stride, dilation,
                              pad_lo, groups, np.dtype(gx.dtype).itemsize)
    if plan.kernel == "gather":
        backward_data_cuda(gy, w, stride, dilation, pad_lo, groups, gx, b)
        return
    flag = cuda.device_array(1, dtype=np.int32)
    finite_flag_kernel[1, FLAG_THREADS, 0, FLAG_THREADS * 4](
        w.reshape(w.size), flag)
    K, Cg = w.shape[:2]
    C = gx.shape[1]
    Kg = K // groups
    sizes = [C * Kg * p[0][2] * p[1][2] * p[2][2]
             for p, fp in plan.phases if fp is not None]
    wbuf = cuda.device_array(max(1, sum(sizes)), dtype=w.dtype)
    start = 0
    for phase, fp in plan.phases:
        off = tuple(p[0] for p in phase)
        count = tuple(p[4] for p in phase)
        if fp is None:
            total = gx.shape[0] * C * count[0] * count[1] * count[2]
            if total:
                blocks, threads = elementwise_launch(total)
                fill_phase_kernel[blocks, threads](b, off, int3(stride),
                                                  count, flag, gx)
            continue
        taps = tuple(p[2] for p in phase)
        size = C * Kg * taps[0] * taps[1] * taps[2]
        w_adj = wbuf[start:start + size].reshape((C, Kg) + taps)
        start += size
        blocks, threads = elementwise_launch(size)
        adjoint_weight_kernel[blocks, threads](
            w, int(groups), tuple(p[1] for p in phase), int3(stride), taps,
            w_adj)
        tiled_launch(fp, gy, w_adj, b, (1, 1, 1), dilation,
                     tuple(p[3] for p in phase), gx, extent=count, ooff=off,
                     ostep=stride, flag=flag)
    blocks, threads = elementwise_launch(gx.size)
    backward_data_kernel[min(blocks, GUARDED_GATHER_BLOCKS), threads](
        gy, w, b, int3(stride), int3(dilation), int3(pad_lo), int(groups),
        flag, gx)


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
