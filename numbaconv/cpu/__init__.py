"""The CPU backend: ``@njit(parallel=True)`` kernels behind the Backend contract."""

import numpy as np

from .._threading import serialized
from .backward_data import add_bias_cpu, backward_data_cpu
from .backward_weight import backward_weight_cpu, bias_grad_cpu
from .forward import forward_cpu
from .padding import pad_backward_cpu, pad_cpu


class CPUBackend:
    """Implements ``numbaconv._backend.Backend`` with NumPy arrays.

    Every method may launch parallel kernels; ``serialized`` keeps concurrent
    calls from several Python threads safe under Numba's workqueue layer.
    """

    name = "cpu"

    @staticmethod
    def empty(shape, dtype):
        return np.empty(shape, dtype=dtype)

    forward = staticmethod(serialized(forward_cpu))
    backward_data = staticmethod(serialized(backward_data_cpu))
    backward_weight = staticmethod(serialized(backward_weight_cpu))
    bias_grad = staticmethod(serialized(bias_grad_cpu))
    add_bias = staticmethod(serialized(add_bias_cpu))
    pad = staticmethod(serialized(pad_cpu))
    pad_backward = staticmethod(serialized(pad_backward_cpu))


BACKEND = CPUBackend()
