"""The CPU backend: ``@njit(parallel=True)`` kernels behind the Backend contract."""

import importlib

import numpy as np

from .._config import CACHE
from .._threading import serialized

if CACHE:
    # Before any kernel is compiled or loaded: the cache key covers the
    # flags, the target and every helper module (see _cache.py).
    from ._cache import install
    install()


class _Kernel:
    """A backend method whose module is imported on first use.

    A first call in a fresh process pays for importing every kernel module
    it touches (their Numba dispatchers and intrinsics, 5-15 ms each on a
    small machine); a forward convolution needs none of the gradient
    modules.  On first access the descriptor imports ``module``, wraps its
    ``name`` with ``serialized`` and puts it in its own place on the class
    that defines it (not on a subclass it was reached through, whose own
    methods must stay), so later calls do not come back here.  Two threads
    that get there at once each install an equal wrapper.
    """

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __set_name__(self, owner, attr):
        self.home, self.attr = owner, attr

    def __get__(self, obj, owner=None):
        fn = getattr(importlib.import_module(self.module, __name__), self.name)
        setattr(self.home, self.attr, staticmethod(serialized(fn)))
        return getattr(self.home, self.attr)


class CPUBackend:
    """Implements ``numbaconv._backend.Backend`` with NumPy arrays.

    Every method may launch parallel kernels; ``serialized`` keeps concurrent
    calls from several Python threads safe under Numba's workqueue layer.
    """

    name = "cpu"

    @staticmethod
    def empty(shape, dtype):
        return np.empty(shape, dtype=dtype)

    forward = _Kernel(".forward", "forward_cpu")
    backward_data = _Kernel(".backward_data", "backward_data_cpu")
    backward_weight = _Kernel(".backward_weight", "backward_weight_cpu")
    bias_grad = _Kernel(".backward_weight", "bias_grad_cpu")
    add_bias = _Kernel(".backward_data", "add_bias_cpu")
    pad = _Kernel(".padding", "pad_cpu")
    pad_constant = _Kernel(".padding", "pad_constant_cpu")
    pad_backward = _Kernel(".padding", "pad_backward_cpu")


BACKEND = CPUBackend()
