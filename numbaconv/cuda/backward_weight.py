"""CUDA gradients of the convolution with respect to its weight and bias.

Both are reductions over the batch and the output positions, and both are
computed without atomics so that the result is bit-identical run to run:
one block owns one weight element (or one bias channel); its threads split
the terms of the sum in a fixed round-robin order, and the per-thread
partial sums are merged by a fixed-shape tree in shared memory
(``block_sum``).  The summation order depends only on the problem shape and
the block size, never on the schedule.

The tree's scratch is dynamic shared memory sized at launch, one element per
thread (``_scratch_bytes``): no more shared memory than the block uses, and
every thread of a block gets the same buffer in the CUDA simulator too, whose
static ``cuda.shared.array`` is allocated lazily by whichever thread gets
there first and can hand racing threads different arrays.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from .. import _config
from ._indexing import (block_sum, int3, reduction_launch, tap_input_index,
                        unravel4, unravel5)


@cuda.jit(**_config.CUDA_JIT)
def backward_weight_kernel(x, gy, stride, dilation, pad_lo, groups, gw):
    """Compute every element of ``gw`` (see ``numbaconv._backend``).

    Launched with one block per weight element (a block-stride loop covers
    a capped grid), a power-of-two block size and ``blockDim.x`` elements
    of dynamic shared memory.

    Parameters
    ----------
    x : device array, shape (N, C, D, H, W)
    gy : device array, shape (N, K, OD, OH, OW)
    stride, dilation, pad_lo : tuple of 3 int
    groups : int
    gw : device array, shape (K, C // groups, KD, KH, KW)
        Fully overwritten.
    """
    scratch = cuda.shared.array(0, dtype=gw.dtype)  # blockDim.x elements
    N = x.shape[0]
    D = x.shape[2]
    H = x.shape[3]
    W = x.shape[4]
    OD = gy.shape[2]
    OH = gy.shape[3]
    OW = gy.shape[4]
    K = gw.shape[0]
    Cg = gw.shape[1]
    KD = gw.shape[2]
    KH = gw.shape[3]
    KW = gw.shape[4]
    Kg = K // groups
    terms = N * OD * OH * OW  # one term per (n, od, oh, ow)
    first_term = np.int64(cuda.threadIdx.x)
    term_step = np.int64(cuda.blockDim.x)

    # Block-uniform loop: every thread of a block sees the same weight
    # elements, as block_sum's barriers require.
    for widx in range(np.int64(cuda.blockIdx.x), gw.size,
                      np.int64(cuda.gridDim.x)):
        k, cg, td, th, tw = unravel5(widx, Cg, KD, KH, KW)
        c = (k // Kg) * Cg + cg
        acc = gw.dtype.type(0)
        # Consecutive threads take consecutive output columns, so their
        # reads of gy and x are coalesced.
        for j in range(first_term, terms, term_step):
            n, od, oh, ow = unravel4(j, OD, OH, OW)
            id_ = tap_input_index(od, td, stride[0], dilation[0], pad_lo[0])
            ih = tap_input_index(oh, th, stride[1], dilation[1], pad_lo[1])
            iw = tap_input_index(ow, tw, stride[2], dilation[2], pad_lo[2])
            if (id_ >= 0 and id_ < D and ih >= 0 and ih < H
                    and iw >= 0 and iw < W):
                acc += gy[n, k, od, oh, ow] * x[n, c, id_, ih, iw]
        total = block_sum(scratch, acc)
        if cuda.threadIdx.x == 0:
            gw[k, cg, td, th, tw] = total


@cuda.jit(**_config.CUDA_JIT)
def bias_grad_kernel(gy, gb):
    """Compute ``gb[k] = sum(gy[:, k])``, one block per channel.

    Launched like ``backward_weight_kernel``.

    Parameters
    ----------
    gy : device array, shape (N, K, OD, OH, OW)
    gb : device array, shape (K,)
        Fully overwritten.
    """
    scratch = cuda.shared.array(0, dtype=gb.dtype)  # blockDim.x elements
    OD = gy.shape[2]
    OH = gy.shape[3]
    OW = gy.shape[4]
    terms = gy.shape[0] * OD * OH * OW
    first_term = np.int64(cuda.threadIdx.x)
    term_step = np.int64(cuda.blockDim.x)
    for k in range(np.int64(cuda.blockIdx.x), gb.size,
                   np.int64(cuda.gridDim.x)):
        acc = gb.dtype.type(0)
        for j in range(first_term, terms, term_step):
            n, od, oh, ow = unravel4(j, OD, OH, OW)
            acc += gy[n, k, od, oh, ow]
        total = block_sum(scratch, acc)
        if cuda.threadIdx.x == 0:
            gb[k] = total


def backward_weight_cuda(x, gy, stride, dilation, pad_lo, groups, gw):
    """Launch ``backward_weight_kernel`` on the default stream.

    Takes the arguments of ``Backend.backward_weight``.  An empty batch (or
    empty output) still launches, and writes zeros.
    """
    if gw.size == 0:
        return
    terms = x.shape[0] * gy.shape[2] * gy.shape[3] * gy.shape[4]
    blocks, threads = reduction_launch(gw.size, terms)
    backward_weight_kernel[blocks, threads, 0, _scratch_bytes(threads, gw)](
        x, gy, int3(stride), int3(dilation), int3(pad_lo), int(groups), gw)


def bias_grad_cuda(gy, gb):
    """Launch ``bias_grad_kernel`` on the default stream.

    Takes the arguments of ``Backend.bias_grad``; an empty batch writes
    zeros.
    """
    if gb.size == 0:
        return
    terms = gy.shape[0] * gy.shape[2] * gy.shape[3] * gy.shape[4]
    blocks, threads = reduction_launch(gb.size, terms)
    bias_grad_kernel[blocks, threads, 0, _scratch_bytes(threads, gb)](gy, gb)


def _scratch_bytes(threads, out):
    """Dynamic shared memory of a reduction block: one ``out`` element per thread."""
    return int(threads) * np.dtype(out.dtype).itemsize
