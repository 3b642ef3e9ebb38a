"""The CUDA backend: ``@cuda.jit`` kernels for NVIDIA GPUs.

Importing this package never imports ``numba.cuda``, so ``import numbaconv``
works on machines without numba-cuda, a CUDA driver or a GPU.  The kernels
are loaded on the first ``get_backend()`` call, after ``cuda_status()`` has
confirmed that they can run (on a GPU, or in Numba's CUDA simulator when
``NUMBA_ENABLE_CUDASIM=1`` was set before Numba was imported).
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from typing import Tuple

__all__ = ["cuda_status", "is_available", "get_backend", "require_backend"]

_INSTALL_HINT = 'install the CUDA extra with: pip install "numbaconv[cuda]"'

_NO_DEVICE = ("the NVIDIA driver is installed but found no CUDA device "
              "(check CUDA_VISIBLE_DEVICES and that the GPU is attached); "
              "on a machine with an NVIDIA GPU, " + _INSTALL_HINT)

# numba-cuda is installed when this is the reason, so the hint names only
# what is missing: the driver (the compiler libraries are checked after it).
_NO_DRIVER = ("no usable NVIDIA CUDA driver ({error}); numba-cuda is "
              "installed, what is missing is an NVIDIA GPU with its driver "
              "(nvidia-smi must work): install the NVIDIA driver for your "
              "GPU; without one, numbaconv runs on the CPU")

_backend = None
_backend_lock = threading.Lock()


def cuda_status() -> Tuple[bool, str]:
    """Whether the CUDA backend can run here, and why (not).

    Never raises and never allocates GPU memory; the probe runs once per
    process.

    Returns
    -------
    usable : bool
        True on a machine with a working driver and at least one CUDA
        device, or under the CUDA simulator.
    reason : str
        What was found (device name, simulator), or what is missing:
        numba-cuda, the NVIDIA driver, a CUDA device, or the NVVM compiler
        library, with how to install it.

    Examples
    --------
    >>> ok, reason = cuda_status()
    >>> isinstance(ok, bool) and isinstance(reason, str)
    True
    """
    return _probe()


def is_available() -> bool:
    """Shorthand for ``cuda_status()[0]``.

    Examples
    --------
    >>> is_available() in (True, False)
    True
    """
    return cuda_status()[0]


def get_backend():
    """The process-wide ``CUDABackend`` instance, created on first use.

    Raises
    ------
    RuntimeError
        If CUDA is not usable here; the message says why and how to install.

    Examples
    --------
    >>> be = get_backend()  # doctest: +SKIP
    >>> be.name             # doctest: +SKIP
    'cuda'
    """
    global _backend
    if _backend is None:
        ok, reason = cuda_status()
        if not ok:
            raise RuntimeError(f"CUDA device requested, but {reason}")
        with _backend_lock:
            if _backend is None:
                from .backend import CUDABackend
                _backend = CUDABackend()
    return _backend


def require_backend():
    """The ``CUDABackend``, or a RuntimeError saying why CUDA is unusable.

    The same as ``get_backend``; the name reads better at call sites that
    have just decided a call must run on the GPU.
    """
    return get_backend()


@functools.lru_cache(maxsize=None)
def _probe() -> Tuple[bool, str]:
    if importlib.util.find_spec("numba_cuda") is None:
        return False, f"numba-cuda is not installed; {_INSTALL_HINT}"
    try:
        import numba.cuda  # noqa: F401
    except Exception as exc:  # a broken install must not break the caller
        return False, (f"numba.cuda could not be imported ({exc}); "
                       f"{_INSTALL_HINT}")
    if _simulator_enabled():
        return True, ("CUDA simulator (NUMBA_ENABLE_CUDASIM=1): kernels run "
                      "as Python on the CPU, correct but very slow")
    try:
        from numba.cuda.cudadrv import driver as drv
        try:
            driver_ok = drv.driver.is_available
        except Exception:
            driver_ok = False
        error = drv.driver.initialization_error
        if not driver_ok:
            error = " ".join(str(error or "unknown error").split())
            if "NO_DEVICE" in error:
                return False, _NO_DEVICE
            return False, _NO_DRIVER.format(error=error)
        count = drv.driver.get_device_count()
        if count == 0:
            return False, _NO_DEVICE
        from numba.cuda.cudadrv import nvvm
        if not nvvm.is_available():
            return False, _compiler_missing("NVVM")
        try:
            # Compiling a kernel also needs libdevice and, in current
            # numba-cuda, NVRTC; finding libdevice looks both up.
            from numba.cuda.cudadrv.libs import get_libdevice
            if get_libdevice() is None:
                return False, _compiler_missing("libdevice")
        except Exception as exc:
            return False, _compiler_missing(" ".join(str(exc).split()))
        device = drv.driver.get_device(0)
        name = device.name
        if isinstance(name, bytes):
            name = name.decode(errors="replace")
        major, minor = device.compute_capability
    except Exception as exc:
        detail = " ".join(str(exc).split())
        return False, (f"CUDA could not be initialised ({detail}); "
                       f"{_INSTALL_HINT}")
    return True, (f"{count} CUDA device(s); device 0 is {name} "
                  f"(compute capability {major}.{minor})")


def _compiler_missing(what: str) -> str:
    return (f"the CUDA compiler libraries were not found ({what}); install "
            f"the CUDA toolkit, or its wheels with: "
            f'pip install "numba-cuda[cu12]" (or [cu13] to match a CUDA 13 '
            f"driver)")


def _numba_cuda_config():
    """numba-cuda's configuration module (imports ``numba.cuda``)."""
    try:
        from numba.cuda.core import config
    except ImportError:  # numba-cuda releases before numba.cuda.core
        from numba.core import config
    return config


def _simulator_enabled() -> bool:
    """Whether Numba's CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1)."""
    if importlib.util.find_spec("numba_cuda") is None:
        return False
    return bool(getattr(_numba_cuda_config(), "ENABLE_CUDASIM", False))
