"""The CUDA implementation of ``numbaconv._backend.Backend``.

Importing this module imports ``numba.cuda``; ``numbaconv.cuda.get_backend``
does so only after ``cuda_status`` has said the GPU (or the simulator) is
usable.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Tuple

from numba import cuda

from . import _simulator_enabled
from .._backend import edge_mode
from .backward_data import add_bias_cuda, backward_data_launch
from .backward_weight import bias_launch, weight_launch
from .forward import forward_launch
from .padding import pad_backward_cuda, pad_constant_cuda, pad_cuda

Int3 = Tuple[int, int, int]


class CUDABackend:
    """Convolution primitives as ``@cuda.jit`` kernels on NVIDIA GPUs.

    Arrays are Numba device arrays (5-D, C-contiguous, float32 or float64);
    see ``numbaconv._backend`` for the exact semantics of each method, and
    ``numbaconv.cuda.plan`` for which kernel each call takes.

    Every method queues its kernel on the default stream and returns
    without waiting: results are complete for whatever is queued after them
    on that stream (more kernels, ``copy_to_host``).  Kernels run on the
    current CUDA context, so a caller holding arrays on another GPU enters
    that device first (``numbaconv.cuda.arrays.device_context``).  Methods
    may be called from several threads at once.

    Examples
    --------
    >>> import numpy as np
    >>> from numbaconv.cuda import get_backend
    >>> be = get_backend()                                # doctest: +SKIP
    >>> x = be.to_device(np.ones((1, 1, 1, 1, 4)))        # doctest: +SKIP
    >>> w = be.to_device(np.ones((1, 1, 1, 1, 2)))        # doctest: +SKIP
    >>> y = be.empty((1, 1, 1, 1, 3), np.float64)         # doctest: +SKIP
    >>> one, zero = (1, 1, 1), (0, 0, 0)
    >>> be.forward(x, w, None, one, one, zero, 1, y)      # doctest: +SKIP
    >>> y.copy_to_host().ravel().tolist()                 # doctest: +SKIP
    [2.0, 2.0, 2.0]
    """

    name = "cuda"

    def __init__(self) -> None:
        # A GPU queues launches from any thread; the simulator runs one
        # kernel at a time and asserts on a concurrent launch, so there the
        # launches are serialised.
        self._launch_guard = (threading.Lock() if _simulator_enabled()
                              else contextlib.nullcontext())

    def empty(self, shape: tuple, dtype: Any) -> Any:
        """Allocate an uninitialised C-contiguous device array."""
        return cuda.device_array(tuple(shape), dtype=dtype)

    def to_device(self, array: Any) -> Any:
        """Copy a host array to the device (C-contiguous)."""
        from .arrays import to_device
        return to_device(array)

    def to_host(self, array: Any) -> Any:
        """Copy a device array to a new NumPy array (waits for queued work)."""
        from .arrays import to_host
        return to_host(array)

    def forward(self, x, w, b, stride: Int3, dilation: Int3, pad_lo: Int3,
                groups: int, out, mode: str = "zeros", cval: float = 0.0) -> None:
        """``out = x * w (+ b)`` (see ``_backend``); a padding ``mode`` other
        than zeros is an explicit pad first."""
        if edge_mode(mode, cval) != "zeros":
            from .._ops import explicitly_padded
            x = explicitly_padded(self, x, pad_lo, out.shape[2:], w.shape[2:], stride,
                                  dilation, mode, cval)
            pad_lo = (0, 0, 0)
        with self._launch_guard:
            forward_launch(x, w, b, stride, dilation, pad_lo, groups, out)

    def backward_data(self, gy, w, stride: Int3, dilation: Int3,
                      pad_lo: Int3, groups: int, gx, b=None) -> None:
        """``gx`` = adjoint of ``forward`` in ``x``, plus ``b`` (see ``_backend``)."""
        with self._launch_guard:
            backward_data_launch(gy, w, stride, dilation, pad_lo, groups, gx,
                                 b)

    def backward_weight(self, x, gy, stride: Int3, dilation: Int3,
                        pad_lo: Int3, groups: int, gw) -> None:
        """``gw`` = gradient of ``forward`` in ``w`` (see ``_backend``)."""
        with self._launch_guard:
            weight_launch(x, gy, stride, dilation, pad_lo, groups, gw)

    def bias_grad(self, gy, gb) -> None:
        """``gb[k] = sum(gy[:, k])``."""
        with self._launch_guard:
            bias_launch(gy, gb)

    def add_bias(self, y, b) -> None:
        """``y[:, k] += b[k]`` in place (the bias of a transposed convolution)."""
        with self._launch_guard:
            add_bias_cuda(y, b)

    def pad(self, x, lo: Int3, hi: Int3, mode: str, out) -> None:
        """Pad the spatial axes of ``x`` by ``mode`` (see ``_backend``)."""
        with self._launch_guard:
            pad_cuda(x, lo, hi, mode, out)

    def pad_constant(self, x, lo: Int3, hi: Int3, value: float, out) -> None:
        """Pad the spatial axes of ``x`` with ``value`` (see ``_backend``)."""
        with self._launch_guard:
            pad_constant_cuda(x, lo, hi, value, out)

    def pad_backward(self, gp, lo: Int3, hi: Int3, mode: str, gx) -> None:
        """Adjoint of ``pad`` (see ``_backend``)."""
        with self._launch_guard:
            pad_backward_cuda(gp, lo, hi, mode, gx)

    def __repr__(self) -> str:
        return "CUDABackend()"
