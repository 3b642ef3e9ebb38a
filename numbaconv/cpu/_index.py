"""Index helpers shared by the CPU kernels (inlined into them by LLVM)."""

from numba import njit

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
