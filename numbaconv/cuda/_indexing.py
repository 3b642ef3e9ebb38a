"""Device helpers shared by the CUDA kernels, and the launch geometry.

Index arithmetic is 64-bit everywhere.  CUDA reports ``blockIdx``,
``blockDim``, ``threadIdx`` and ``gridDim`` as 32-bit integers, so the first
thing every kernel does is widen them (``flat_thread_index``) before any
product is formed; array shapes are already 64-bit (``intp``) in Numba, so
everything derived from them stays 64-bit.  A tensor past 2**31 elements
therefore never wraps an index.

Every kernel here walks its output with a grid-stride loop: thread ``t``
handles flat indices ``t, t + G, t + 2G, ...`` where ``G`` is the number of
threads in the grid.  Each output element is still written by exactly one
thread, and the grid can be capped (``MAX_BLOCKS``) without losing elements.

The helpers are ``@cuda.jit(device=True)`` functions rather than ``@njit``
ones because the CUDA simulator cannot call ``@njit`` code from a kernel.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from .. import _config

#: Upper bound on the number of blocks of an element-wise launch; the
#: grid-stride loop covers whatever the grid does not.  2**20 blocks is far
#: more than any GPU keeps resident, so the cap never costs parallelism.
MAX_BLOCKS = 1 << 20

#: Largest block of the reductions (CUDA's limit of threads per block); the
#: reduction block size is a power of two no larger than this, and each
#: reduction launch gets one element of dynamic shared memory per thread.
MAX_REDUCE_THREADS = 1024

_device = cuda.jit(device=True, **_config.CUDA_JIT)


@_device
def flat_thread_index(block_idx, block_dim, thread_idx):
    """Flat 64-bit index of a thread from its 32-bit CUDA coordinates.

    Parameters
    ----------
    block_idx, block_dim, thread_idx : int
        ``blockIdx.x``, ``blockDim.x`` and ``threadIdx.x`` (32-bit on the GPU).

    Returns
    -------
    numpy.int64
        ``block_idx * block_dim + thread_idx`` computed in 64 bits; the
        32-bit product would wrap once a grid covers 2**31 elements.
    """
    return np.int64(block_idx) * np.int64(block_dim) + np.int64(thread_idx)


@_device
def global_thread_id():
    """Flat 64-bit index of the calling thread in a 1-D grid."""
    return flat_thread_index(cuda.blockIdx.x, cuda.blockDim.x,
                             cuda.threadIdx.x)


@_device
def grid_size():
    """Number of threads in the 1-D grid, as a 64-bit integer."""
    return np.int64(cuda.gridDim.x) * np.int64(cuda.blockDim.x)


@_device
def unravel5(flat, n1, n2, n3, n4):
    """Split a C-order flat index into five coordinates.

    Parameters
    ----------
    flat : int64
        Flat index into an array of shape ``(n0, n1, n2, n3, n4)``.
    n1, n2, n3, n4 : int64
        The trailing extents (the leading one is not needed).

    Returns
    -------
    tuple of int64
        ``(i0, i1, i2, i3, i4)``, as ``numpy.unravel_index`` would give.
    """
    i4 = flat % n4
    flat = flat // n4
    i3 = flat % n3
    flat = flat // n3
    i2 = flat % n2
    flat = flat // n2
    i1 = flat % n1
    i0 = flat // n1
    return i0, i1, i2, i3, i4


@_device
def unravel4(flat, n1, n2, n3):
    """Split a C-order flat index into four coordinates (see ``unravel5``)."""
    i3 = flat % n3
    flat = flat // n3
    i2 = flat % n2
    flat = flat // n2
    i1 = flat % n1
    i0 = flat // n1
    return i0, i1, i2, i3


@_device
def block_sum(scratch, value):
    """Sum ``value`` over the threads of the block, in a fixed order.

    A pairwise tree over ``scratch[0:blockDim.x]``: at each level thread
    ``t`` adds element ``t + step`` into element ``t``.  The shape of the tree
    depends only on the block size, never on the schedule, so the result is
    bit-identical from run to run.  Every thread of the block must call it
    (it synchronises), and ``blockDim.x`` must be a power of two.

    Parameters
    ----------
    scratch : shared array
        At least ``blockDim.x`` elements of the accumulation dtype.
    value : float
        This thread's partial sum.

    Returns
    -------
    float
        The block total (the same value in every thread).
    """
    tid = cuda.threadIdx.x
    scratch[tid] = value
    cuda.syncthreads()
    step = cuda.blockDim.x // 2
    while step > 0:
        if tid < step:
            scratch[tid] += scratch[tid + step]
        cuda.syncthreads()
        step //= 2
    total = scratch[0]
    # Nobody may overwrite scratch (next call) before every thread read it.
    cuda.syncthreads()
    return total


@_device
def tap_input_index(o, t, stride, dilation, pad_lo):
    """Input index read by output ``o`` through tap ``t`` (may be outside)."""
    return o * stride + t * dilation - pad_lo


@_device
def tap_output_index(i, t, stride, dilation, pad_lo, out_size):
    """Output index whose tap ``t`` reads input index ``i``, or -1 if none.

    Solves ``i == o * stride + t * dilation - pad_lo`` for ``o``; there is no
    solution when the numerator is negative or not a multiple of the stride,
    or when ``o`` falls outside ``[0, out_size)``.
    """
    num = i + pad_lo - t * dilation
    if num < 0 or num % stride != 0:
        return np.int64(-1)
    o = num // stride
    if o >= out_size:
        return np.int64(-1)
    return np.int64(o)


@_device
def pad_source(j, size, mode):
    """Source index of padded position ``j`` (relative to the interior).

    The compiled twin of ``numbaconv._backend.padding_index``; ``mode`` is
    the integer code from ``numbaconv._backend.MODES``.
    """
    if j >= 0 and j < size:
        return np.int64(j)
    if mode == 2:  # replicate
        if j < 0:
            return np.int64(0)
        return np.int64(size - 1)
    if mode == 3:  # circular (Python's % floors, as needed for j < 0)
        return np.int64(j % size)
    if mode == 1:  # reflect: the edge is not repeated, period 2*(size-1)
        if size == 1:
            return np.int64(0)
        period = 2 * (size - 1)
        r = j % period
        if r < size:
            return np.int64(r)
        return np.int64(period - r)
    # symmetric: the edge is repeated, period 2*size
    period = 2 * size
    r = j % period
    if r < size:
        return np.int64(r)
    return np.int64(period - 1 - r)


@_device
def halo_candidate(q, i, lo, size):
    """The ``q``-th padded position that may map onto interior index ``i``.

    The padded positions whose source can be ``i`` are the interior one
    (``lo + i``) and any position of the two halos, so ``q`` runs over
    ``range(lo + 1 + hi)``: ``q < lo`` is the low halo, ``q == lo`` the
    interior position and ``q > lo`` the high halo.  The caller keeps only
    the candidates whose ``pad_source`` is ``i``.
    """
    if q < lo:
        return np.int64(q)
    if q == lo:
        return np.int64(lo + i)
    return np.int64(size + q - 1)


def int3(values):
    """Three Python ints, so any integer type compiles to one signature."""
    return tuple(int(v) for v in values)


def elementwise_launch(total):
    """Grid and block size for a one-thread-per-element kernel.

    Parameters
    ----------
    total : int
        Number of output elements (positive).

    Returns
    -------
    tuple of int
        ``(blocks, threads)``; the grid is capped at ``MAX_BLOCKS`` and the
        kernels' grid-stride loops cover the rest.
    """
    threads = max(1, min(int(_config.CUDA_BLOCK), 1024))
    blocks = min(-(-total // threads), MAX_BLOCKS)
    return blocks, threads


def reduction_threads(length):
    """Threads per block for a block reduction over ``length`` terms.

    A power of two (the tree in ``block_sum`` halves the block at each
    level) between 32 and ``min(CUDA_BLOCK, MAX_REDUCE_THREADS)``, no larger
    than needed to give each thread one term.  It depends only on the
    problem shape and the configuration, so the summation order, and hence
    the result, is reproducible.
    """
    cap = 32
    limit = min(int(_config.CUDA_BLOCK), MAX_REDUCE_THREADS)
    while cap * 2 <= limit:
        cap *= 2
    threads = 32
    while threads < cap and threads < length:
        threads *= 2
    return threads


def reduction_launch(outputs, terms):
    """Grid and block size for a one-block-per-output reduction kernel.

    Parameters
    ----------
    outputs : int
        Number of values reduced to (positive); one block each, the grid
        capped at ``MAX_BLOCKS`` (the kernels loop over the rest).
    terms : int
        Number of terms summed into each value.

    Returns
    -------
    tuple of int
        ``(blocks, threads)``.
    """
    return min(outputs, MAX_BLOCKS), reduction_threads(terms)
