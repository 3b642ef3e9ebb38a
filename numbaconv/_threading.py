"""Thread safety of kernel launches across Numba's threading layers.

Numba runs ``parallel=True`` kernels on one of three threading layers:

* ``tbb`` and ``omp`` are thread-safe: several Python threads may launch
  parallel kernels at once (as dask's threaded scheduler or a
  ``ThreadPoolExecutor`` does), and the kernels release the GIL;
* ``workqueue`` is not: a second concurrent launch makes Numba print
  "Concurrent access has been detected" and **abort the process**.

:func:`kernel_launch` (a context manager) and :func:`serialized` (a
decorator) guard a launch with a process-wide lock when, and only when, the
active layer is ``workqueue``.  Which layer is active is known for sure only
once Numba has launched a first parallel kernel (``numba.threading_layer()``
raises before that), so until then every launch takes the lock; afterwards
the answer is cached and thread-safe layers pay one attribute read.  A
``NUMBA_THREADING_LAYER=workqueue`` request is honoured from the start.

Serialising only affects workqueue users, who get correct results with one
kernel in flight at a time (each kernel still uses every Numba thread);
everyone else keeps full concurrency.

>>> from numbaconv._threading import kernel_launch, serialized
>>> with kernel_launch():
...     pass
>>> @serialized
... def launch(a):
...     return a + 1
>>> launch(1)
2
"""

from __future__ import annotations

import functools
import threading
from typing import Callable, Optional, TypeVar

import numba

__all__ = ["kernel_launch", "serialized", "needs_serialization", "LOCK", "thread_count"]

F = TypeVar("F", bound=Callable)

#: The lock that serialises launches under the workqueue layer.  Re-entrant,
#: so a guarded function may call another guarded function.
LOCK = threading.RLock()

#: Cached verdict once the active layer is known: True (workqueue: lock) or
#: False (thread-safe layer: no lock).  None while no layer is loaded yet.
_serialize: Optional[bool] = None


def _requested_layer() -> str:
    return str(getattr(numba.config, "THREADING_LAYER", "default")).lower()


def needs_serialization() -> bool:
    """Whether launches must hold :data:`LOCK` (the workqueue layer, or not
    known yet because no parallel kernel has run in this process)."""
    global _serialize
    if _serialize is not None:
        return _serialize
    if _requested_layer() == "workqueue":
        _serialize = True
        return True
    try:
        layer = numba.threading_layer()
    except ValueError:          # no parallel kernel launched yet
        return True
    _serialize = (layer == "workqueue")
    return _serialize


class _KernelLaunch:
    """Context manager behind :func:`kernel_launch` (no generator overhead)."""

    __slots__ = ("_held",)

    def __init__(self):
        self._held = False

    def __enter__(self):
        if needs_serialization():
            LOCK.acquire()
            self._held = True
        return self

    def __exit__(self, *exc):
        if self._held:
            self._held = False
            LOCK.release()
        return False


def kernel_launch() -> _KernelLaunch:
    """A context manager to wrap around one parallel kernel launch.

    >>> with kernel_launch():
    ...     pass   # forward_kernel(...) goes here
    """
    return _KernelLaunch()


def serialized(fn: F) -> F:
    """Decorate a host function that launches parallel kernels so that its
    launches never overlap under the workqueue threading layer."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if needs_serialization():
            with LOCK:
                return fn(*args, **kwargs)
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


_THREAD_COUNT: Optional[tuple] = None


def thread_count() -> tuple:
    """``(get, set)``: functions that read and set the calling thread's
    Numba thread count, as ``numba.get_num_threads`` and
    ``numba.set_num_threads`` do.

    The public functions take a lock and check their argument on every
    call, a few microseconds, which a call of a small kernel pays three
    times (read, set to one, restore).  Once Numba's threads are up (the
    first call here starts them), the C functions behind them are called
    directly, under the names Numba has given them since 0.49; a Numba
    without them gets the public functions.

    >>> get, set_ = thread_count()
    >>> n = get()
    >>> set_(1); get()
    1
    >>> set_(n)
    """
    global _THREAD_COUNT
    if _THREAD_COUNT is None:
        from numba.np.ufunc import parallel
        numba.get_num_threads()         # starts the threads
        get = getattr(parallel, "_get_num_threads", None)
        set_ = getattr(parallel, "_set_num_threads", None)
        if not (callable(get) and callable(set_)):
            get, set_ = numba.get_num_threads, numba.set_num_threads
        _THREAD_COUNT = (get, set_)
    return _THREAD_COUNT
