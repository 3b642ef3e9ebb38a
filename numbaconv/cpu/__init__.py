"""The CPU backend: ``@njit(parallel=True)`` kernels behind the Backend contract."""

import numpy as np

from .backward_data import add_bias_cpu, backward_data_cpu
from .backward_weight import backward_weight_cpu, bias_grad_cpu
from .forward import forward_cpu
from .padding import pad_backward_cpu, pad_cpu


class CPUBackend:
    """Implements ``numbaconv._backend.Backend`` with NumPy arrays."""

    name = "cpu"

    @staticmethod
    def empty(shape, dtype):
        return np.empty(shape, dtype=dtype)

    forward = staticmethod(forward_cpu)
    backward_data = staticmethod(backward_data_cpu)
    backward_weight = staticmethod(backward_weight_cpu)
    bias_grad = staticmethod(bias_grad_cpu)
    add_bias = staticmethod(add_bias_cpu)
    pad = staticmethod(pad_cpu)
    pad_backward = staticmethod(pad_backward_cpu)


BACKEND = CPUBackend()
