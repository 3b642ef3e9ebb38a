"""Float sums cast to a narrower integer output as SciPy's ``ndimage`` stores
them, on every thread.

SciPy's C code stores each sum with C's cast, which on the machines it runs
on truncates the value toward zero to a 32-bit integer and keeps the low
bits the output type has: 255.9 -> 255, 256.0 -> 0 and -1.5 -> 255 for
``uint8``.  ``truncate_into`` does exactly that for every value of
magnitude below 2**31; larger ones, inf and NaN (where C's result depends
on the compiler) are left to NumPy's cast by the caller.  NumPy's own cast
of a large result runs on one thread and costs as much as the correlation
of an 8-bit image.

>>> import numpy as np
>>> from numbaconv.cpu.cast import truncate_into
>>> out = np.empty(4, np.uint8)
>>> truncate_into(np.array([255.9, 256.0, -1.5, 3.0]), out, 2)
0
>>> out
array([255,   0, 255,   3], dtype=uint8)
"""

import numpy as np
from numba import njit, prange

from .._config import NJIT_PARALLEL

#: Sums of this magnitude or more (and inf, NaN) are not cast here.
LIMIT = 2.0 ** 31


@njit(**NJIT_PARALLEL)
def truncate_into(src, dst, workers):
    """``dst[i] = src[i]`` truncated toward zero and wrapped to ``dst``'s
    integer type, for 1-d C-contiguous arrays of one length; returns how
    many values lie outside ``(-2**31, 2**31)`` (inf and NaN included).
    Where that is not zero, ``dst`` holds zeros at their places."""
    n = src.shape[0]
    chunk = -(-n // workers)
    outside = 0
    for t in prange(workers):
        for i in range(t * chunk, min(n, (t + 1) * chunk)):
            v = src[i]
            inside = -LIMIT < v < LIMIT
            # A select, not a branch, so that the loop vectorises; the
            # conversion of a value out of range would be undefined.
            dst[i] = np.int64(v if inside else 0.0)
            outside += 0 if inside else 1
    return outside
