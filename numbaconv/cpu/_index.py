"""Index helpers shared by the CPU kernels (inlined into them by LLVM)."""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._config import NJIT_SERIAL


@njit(inline="always", **NJIT_SERIAL)
def valid_range(offset, stride, size, n_out):
    """Output indices ``o`` in ``[0, n_out)`` whose input ``o*stride + offset``
    lies in ``[0, size)``, as a half-open range ``(lo, hi)``.

    Computing the range once per kernel tap keeps the bounds tests out of the
    innermost loop, which is what lets LLVM vectorise it.
    """
    lo = 0
    if offset < 0:
        lo = (-offset + stride - 1) // stride
    if size - offset <= 0:
        return lo, lo
    hi = (size - offset - 1) // stride + 1
    if hi > n_out:
        hi = n_out
    if hi < lo:
        hi = lo
    return lo, hi


@njit(inline="always", **NJIT_SERIAL)
def copy_row(dst, src, i0, i1, fill=0.0):
    """dst[:i0] = fill, dst[i0:i1] = src, dst[i1:] = fill: one bordered row
    (``src`` may be of another dtype: each element is cast as it is copied).

    Written as loops over slices indexed by the bare loop variable: an index
    like ``j - i0`` with a run-time offset could be negative as far as Numba
    knows, and its negative-index wraparound test in every iteration keeps
    LLVM from vectorising the copy; Numba's slice assignment is not much
    faster either.
    """
    body = dst[i0:i1]
    tail = dst[i1:]
    for i in range(i0):
        dst[i] = fill
    for i in range(i1 - i0):
        body[i] = src[i]
    for i in range(dst.shape[0] - i1):
        tail[i] = fill


@njit(inline="always", **NJIT_SERIAL)
def fill_run(dst, start, count, value):
    """dst[start:start + count] = value (``dst`` 1-d, C-contiguous), by
    unsigned offsets; ``start`` a signed integer (Numba adds an unsigned
    and a signed integer in float64)."""
    for i in range(count):
        dst[np.uint64(start + i)] = value


@njit(inline="always", **NJIT_SERIAL)
def padding_source(j, size, mode):
    """Source index of padded position ``j`` for a padding mode code.

    Mirrors ``numbaconv._backend.padding_index`` (the documented statement
    of the maps): 1 reflect, 2 replicate, 3 circular, 4 symmetric.
    """
    if j >= 0 and j < size:
        return j
    if mode == 2:
        return 0 if j < 0 else size - 1
    if mode == 3:
        return j % size
    if mode == 1:
        if size == 1:
            return 0
        period = 2 * (size - 1)
        j = j % period
        return j if j < size else period - j
    period = 2 * size
    j = j % period
    return j if j < size else period - 1 - j


def zero_padded(x, pad_lo, out_size, taps, stride, dilation):
    """``x`` explicitly zero-padded so that every tap of every output lands
    inside it, and the low padding that remains (none).

    The kernels skip taps that fall on implicit zero padding, which is exact
    while every product with a padded zero is zero.  When a weight or an
    output gradient holds inf or NaN, IEEE arithmetic on the padded input
    gives ``inf * 0 = NaN`` there (as NumPy and PyTorch compute it); that rare
    case is computed on a materialised copy instead.
    """
    import numpy as np
    widths = [(0, 0), (0, 0)]
    for L, lo, O, k, s, d in zip(x.shape[2:], pad_lo, out_size, taps, stride, dilation):
        need = (O - 1) * s + d * (k - 1) + 1
        widths.append((lo, max(0, need - lo - L)))
    if not any(lo or hi for lo, hi in widths):
        return x, pad_lo
    return np.pad(x, widths), (0, 0, 0)


@njit(**NJIT_SERIAL)
def all_finite(a):
    """True when no element is inf or NaN, without a temporary array (the
    arrays checked may be as large as the data)."""
    s = a.dtype.type(0)
    for v in a.reshape(-1):
        s += v * 0
    return s == 0


@njit(inline="always", **NJIT_SERIAL)
def unravel3(task, s1, s2):
    """``(i0, i1, i2)`` with ``task = (i0*s1 + i1)*s2 + i2``: a ``prange``
    task's indices, the last one varying fastest."""
    rest = task // s2
    return rest // s1, rest % s1, task % s2


@njit(inline="always", **NJIT_SERIAL)
def unravel4(task, s1, s2, s3):
    """``(i0, i1, i2, i3)`` with ``task = ((i0*s1 + i1)*s2 + i2)*s3 + i3``
    (see ``unravel3``)."""
    i0, i1, i2 = unravel3(task // s3, s1, s2)
    return i0, i1, i2, task % s3


# The two helpers below make a parallel kernel's small arrays before its
# ``prange`` loop.  They are compiled as functions of their own (not
# inlined): in the body of a ``parallel=True`` function, ``np.zeros`` or a
# slice assignment becomes a parallel loop of its own, launched on the
# threads before the kernel's own loop; that is a fixed cost of every call.

@njit(**NJIT_SERIAL)
def task_counter():
    """The counter that ``claim`` hands tasks out from, at zero."""
    counter = np.empty(1, dtype=np.int64)
    counter[0] = 0
    return counter


@njit(**NJIT_SERIAL)
def bias_like(b, has_bias, K, out):
    """The bias of ``K`` channels in ``out``'s dtype: ``b``, or zeros
    without one."""
    bias = np.empty(K, dtype=out.dtype)
    for k in range(K):
        bias[k] = 0
        if has_bias:
            bias[k] = b[k]
    return bias


@intrinsic
def claim(typingctx, counter):
    """Atomically adds one to ``counter[0]`` (a 1-d int64 array) and returns
    its value before: the next task for the thread that calls it.  Threads
    that claim tasks this way share the work by how fast each one goes, so a
    core slowed by another process holds up one task, not a fixed share."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        one = ir.Constant(ir.IntType(64), 1)
        return builder.atomic_rmw("add", data, one, "monotonic")
    return types.int64(counter), codegen


@intrinsic
def prefetch(typingctx, array, offset):
    """Asks the CPU to bring the cache line at byte ``offset`` from the start
    of ``array``'s data into its caches (a hint: nothing is read, no fault
    if the address is not mapped).  For data a kernel will read a little
    later from memory, in rows too short for the hardware prefetchers."""
    if not isinstance(offset, types.Integer):
        raise TypeError("prefetch: the offset must be an integer")

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        i8p = ir.IntType(8).as_pointer()
        at = context.cast(builder, args[1], signature.args[1], types.int64)
        ptr = builder.gep(builder.bitcast(data, i8p), [at])
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0")
        # read, keep in all levels (locality 3), data cache
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return types.none(array, offset), codegen


@njit(inline="always", **NJIT_SERIAL)
def prefetch_bytes(a, offset, nbytes):
    """Prefetches the cache lines of ``nbytes`` bytes from byte ``offset``
    of ``a``'s data (``offset`` a signed integer, ``nbytes`` > 0)."""
    for b in range(0, nbytes, 64):
        prefetch(a, offset + b)
    prefetch(a, offset + nbytes - 1)
