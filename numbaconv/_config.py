"""Compilation flags and tunables, read once from ``NUMBACONV_*`` variables.

Every ``@njit`` / ``@cuda.jit`` decorator in the package takes its flags from
here, so the policy lives in one place:

* ``FASTMATH`` is Numba's flag *set* without ``nnan``/``ninf``: contraction and
  reassociation let LLVM vectorise and fuse, while NaN and inf still propagate
  exactly as in NumPy.  ``NUMBACONV_FASTMATH=0`` turns it off.
* ``CACHE`` enables Numba's on-disk cache (``NUMBACONV_CACHE=0`` disables it).
  Numba itself falls back to a per-user directory when the package directory
  is read-only, and honours ``NUMBA_CACHE_DIR``.
* ``CUDA_BLOCK`` is the default number of threads per CUDA block
  (``NUMBACONV_CUDA_BLOCK``).
"""

from __future__ import annotations

import os


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in ("0", "false", "no", "off", "")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


FASTMATH = ({"contract", "reassoc", "nsz", "arcp"}
            if _env_flag("NUMBACONV_FASTMATH", True) else False)
CACHE = _env_flag("NUMBACONV_CACHE", True)
CUDA_BLOCK = _env_int("NUMBACONV_CUDA_BLOCK", 128)

#: Flags for CPU kernels: ``njit(**NJIT_PARALLEL)``.
NJIT_PARALLEL = dict(parallel=True, fastmath=FASTMATH, cache=CACHE,
                     error_model="numpy", nogil=True)
#: Flags for small serial CPU helpers inlined into the kernels.
NJIT_SERIAL = dict(fastmath=FASTMATH, cache=CACHE, error_model="numpy",
                   nogil=True)
#: Flags for CUDA kernels: ``cuda.jit(**CUDA_JIT)``.  CUDA's ``fastmath``
#: would also flush denormals to zero and approximate division, so it stays
#: off; NVVM contracts multiply-adds into FMAs by default anyway.
CUDA_JIT = dict(fastmath=False)
