"""The smallest cached parallel kernel: what Numba's own start-up costs.

``python -m numbaconv bench`` times the first call of ``numba_alone`` in a
fresh process with a warm cache, beside the first calls of the real ops, so
that the report shows how much of a first call is Numba starting up (its
import, its compiler's registries, loading a cached kernel, starting its
threads) and how much is numbaconv.  Nothing else imports this module.
"""

from numba import njit, prange

from ._config import NJIT_PARALLEL


@njit(**NJIT_PARALLEL)
def numba_alone(a):
    """Sum of ``a``, one parallel loop.

    >>> import numpy as np
    >>> float(numba_alone(np.ones(10)))
    10.0
    """
    total = 0.0
    for i in prange(a.shape[0]):
        total += a[i]
    return total
