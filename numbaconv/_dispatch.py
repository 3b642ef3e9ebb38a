"""Which device runs a call, and array handling at the device boundary.

``device=None`` lets the arrays decide: NumPy arrays (and anything
``numpy.asarray`` accepts) run on the CPU; arrays that live on an NVIDIA GPU
(``__cuda_array_interface__``: Numba device arrays, CuPy, PyTorch CUDA
tensors; or a CUDA DLPack capsule) run there, zero-copy, and the result comes
back as the same kind of array.  ``device="cuda"`` with host arrays copies
them in and the result out; ``device="cpu"`` with GPU arrays is an error.

Nothing here touches the GPU unless a call asks for it.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np


DEVICES = (None, "cpu", "cuda")
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def cpu_backend():
    """The CPU backend (imported on first use: it compiles nothing until called)."""
    from .cpu import BACKEND
    return BACKEND


def _is_gpu(obj) -> bool:
    if obj is None or isinstance(obj, np.ndarray):
        return False
    if hasattr(obj, "__cuda_array_interface__"):
        return True
    dev = getattr(obj, "__dlpack_device__", None)
    if dev is not None:
        try:
            return dev()[0] in (2, 3, 13)  # kDLCUDA, kDLCUDAHost, kDLCUDAManaged
        except Exception:
            return False
    return False


def check_dtype(name: str, dtype) -> np.dtype:
    """float32/float64 only; anything else is a TypeError that says what to do."""
    dtype = np.dtype(dtype)
    if dtype in FLOAT_DTYPES:
        return dtype
    if dtype.kind in "biu":
        hint = f"cast it with {name}.astype(numpy.float32) or numpy.float64"
        raise TypeError(f"{name} has dtype {dtype}; numbaconv computes in float32 "
                        f"or float64: {hint}")
    if dtype.kind == "f":
        raise TypeError(f"{name} has dtype {dtype}; numbaconv computes in float32 "
                        f"or float64: cast it with {name}.astype(numpy.float32)")
    if dtype.kind == "c":
        raise TypeError(f"{name} has complex dtype {dtype}, which is not "
                        f"supported; convolve the real and imaginary parts "
                        f"separately (as float32 or float64)")
    raise TypeError(f"{name} has dtype {dtype}, which is not a floating-point "
                    f"type; convert it to a float32 or float64 array")


class Placement:
    """The device of one call: converts its operands and wraps its result."""

    def __init__(self, backend, template: Any = None, host_result: bool = True):
        self.backend = backend
        self.template = template        # a GPU input whose kind the result takes
        self.host_result = host_result  # return NumPy arrays

    @property
    def device(self) -> str:
        return self.backend.name

    # -- operands ------------------------------------------------------------
    def operand(self, obj, name: str, dtype: Optional[np.dtype] = None):
        """``obj`` as an array (GPU arrays stay where they are), dtype checked.

        ``dtype``, when given, is the dtype of the call (the input's): other
        operands must match it exactly.  Nothing is copied here; see
        :meth:`contiguous`.
        """
        if _is_gpu(obj):
            from .cuda import arrays
            arr = arrays.as_device_array(obj)
        else:
            arr = _host_array(obj, name)
        got = check_dtype(name, arr.dtype)
        if dtype is not None and got != dtype:
            raise TypeError(f"{name} has dtype {got} but input has dtype {dtype}; "
                            f"cast them to one dtype")
        return arr

    def contiguous(self, arr):
        """A C-contiguous copy of ``arr`` on this device (no copy when it is one)."""
        if self.backend.name == "cpu":
            return np.ascontiguousarray(arr)
        from .cuda import arrays
        if isinstance(arr, np.ndarray):
            return arrays.to_device(np.ascontiguousarray(arr))
        return arrays.ascontiguous(arr)

    def is_contiguous(self, arr) -> bool:
        if isinstance(arr, np.ndarray):
            return arr.flags.c_contiguous
        return arr.is_c_contiguous()

    def copy_into(self, target, source) -> None:
        if self.backend.name == "cpu":
            target[...] = source
        else:
            from .cuda import arrays
            arrays.copy_into(target, source)

    # -- results ---------------------------------------------------------------
    def output(self, out, shape: tuple, dtype: np.dtype, inputs: tuple):
        """The array the kernels write: ``out`` itself when that is possible."""
        if out is None:
            return self.backend.empty(shape, dtype)
        if self.backend.name == "cpu":
            if not isinstance(out, np.ndarray):
                if _is_gpu(out):
                    raise ValueError("out is a GPU array but this call runs on "
                                     "the CPU (its inputs are host arrays); pass a "
                                     "NumPy array as out")
                raise TypeError(f"out must be a numpy.ndarray, got "
                                f"{type(out).__name__}")
        else:
            if not _is_gpu(out):
                raise ValueError("out is a host array but this call runs on the "
                                 "GPU; pass a GPU array as out")
            from .cuda import arrays
            out = arrays.as_device_array(out)
        if tuple(out.shape) != tuple(shape):
            raise ValueError(f"out has shape {tuple(out.shape)}, expected {tuple(shape)}")
        if np.dtype(out.dtype) != dtype:
            raise ValueError(f"out has dtype {out.dtype}, expected {dtype}")
        if self.backend.name == "cpu":
            if not out.flags.writeable:
                raise ValueError("out is read-only")
            for name, arr in inputs:
                if arr is not None and _overlaps(out, arr):
                    raise ValueError(f"out overlaps {name}; pass an array that "
                                     f"shares no memory with the inputs")
        return out

    def wrap(self, result):
        if self.backend.name == "cpu":
            return result
        from .cuda import arrays
        if self.host_result:
            return arrays.to_host(result)
        return arrays.wrap_like(result, self.template)


def _host_array(obj, name):
    arr = np.asarray(obj)
    if arr.dtype == object:
        raise TypeError(f"{name} must be an array of numbers, got an object array")
    return arr


def _overlaps(a: np.ndarray, b) -> bool:
    if not isinstance(b, np.ndarray) or not np.may_share_memory(a, b):
        return False
    try:
        return bool(np.shares_memory(a, b, max_work=10_000))
    except np.exceptions.TooHardError:
        return True


def place(device, **operands) -> Placement:
    """Pick the device for a call from ``device`` and its operands."""
    if device not in DEVICES:
        raise ValueError(f"device must be None, 'cpu' or 'cuda', got {device!r}")
    on_gpu = [name for name, obj in operands.items() if _is_gpu(obj)]
    if device == "cpu" or (device is None and not on_gpu):
        if on_gpu:
            raise ValueError(f"device='cpu' but {', '.join(on_gpu)} live(s) on a "
                             f"GPU; copy them to the host first or use device='cuda'")
        return Placement(cpu_backend())
    from . import cuda
    backend = cuda.require_backend()
    template = operands[on_gpu[0]] if on_gpu else None
    if on_gpu:
        from .cuda import arrays
        ids = {name: arrays.device_id(operands[name]) for name in on_gpu}
        if len(set(ids.values())) > 1:
            where = ", ".join(f"{n} on GPU {i}" for n, i in ids.items())
            raise ValueError(f"arrays live on different GPUs: {where}")
    # The result follows the call's main input: a host input gets a host result.
    first = next(iter(operands))
    return Placement(backend, template, host_result=not _is_gpu(operands[first]))
