"""An on-disk cache key that covers everything a CPU kernel's machine code depends on.

Numba keys a cached kernel on its own source file and the target CPU.  A
numbaconv kernel also inlines helpers from other modules (``_vector``,
``_index``, ``_target``, ``broadcast`` ...), takes its block shapes from
the target and its flags from ``_config`` (``NUMBACONV_FASTMATH``): after
an edit of a helper or a change of a flag, Numba would load the old code.

``install()`` puts a locator in front of Numba's own ones, for numbaconv's
CPU modules only.  It finds the directory Numba would use (the same
fallbacks: ``NUMBA_CACHE_DIR``, the package's ``__pycache__``, the per-user
directory) and keys it with ``KEY``: a hash of the compile flags, the
target (triple, CPU name and features) and the source of every module of
``numbaconv/cpu`` and of ``_config.py``.  Kernels compiled under another key
live in another subdirectory, so switching back and forth between flags or
ISAs reuses each one's cache, and the key is also part of the source stamp
Numba checks when it loads an index, so a stale entry is never served.
"""

import hashlib
import os

import llvmlite.binding as ll
from numba.core import caching

from .. import _config
from ._target import cpu_features, cpu_name

_CPU_DIR = os.path.dirname(os.path.abspath(__file__))
_PACKAGE_DIR = os.path.dirname(_CPU_DIR)


def _sources():
    """The files whose text can change a CPU kernel's code."""
    files = sorted(os.path.join(_CPU_DIR, f) for f in os.listdir(_CPU_DIR) if f.endswith(".py"))
    return files + [os.path.join(_PACKAGE_DIR, "_config.py")]


def cache_key() -> str:
    """The hash of the flags, the target and the CPU modules' sources."""
    def spelt(flags):       # sets sorted: their order changes from process to process
        return sorted((k, repr(sorted(v) if isinstance(v, (set, frozenset)) else v))
                      for k, v in flags.items())
    h = hashlib.sha256()
    flags = (spelt(_config.NJIT_PARALLEL), spelt(_config.NJIT_SERIAL))
    h.update(repr((flags, ll.get_process_triple(), cpu_name(), cpu_features())).encode())
    for path in _sources():
        h.update(os.path.basename(path).encode())
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


#: The key of this process (the sources as they were imported).
KEY = cache_key()


class KeyedLocator(caching._CacheLocator):
    """Numba's cache location for a numbaconv CPU kernel, in a subdirectory
    named by ``KEY``, with ``KEY`` in its source stamp."""

    #: The locators whose places this one keys, in Numba's order.
    bases = [cls for cls in caching.CacheImpl._locator_classes if cls is not None]

    def __init__(self, inner):
        self._inner = inner

    def get_cache_path(self):
        return os.path.join(self._inner.get_cache_path(), "numbaconv-" + KEY)

    def get_source_stamp(self):
        return (self._inner.get_source_stamp(), KEY)

    def get_disambiguator(self):
        return self._inner.get_disambiguator()

    @classmethod
    def from_function(cls, py_func, py_file):
        if os.path.dirname(os.path.abspath(py_file)) != _CPU_DIR:
            return None
        for base in cls.bases:
            inner = base.from_function(py_func, py_file)
            if inner is None:
                continue
            located = cls(inner)
            try:
                located.ensure_cache_path()
            except OSError:
                continue
            return located
        return None


def install():
    """Makes Numba look numbaconv's CPU kernels up with ``KeyedLocator``
    first (once; other functions are not affected)."""
    classes = caching.CacheImpl._locator_classes
    if KeyedLocator not in classes:
        classes.insert(0, KeyedLocator)
