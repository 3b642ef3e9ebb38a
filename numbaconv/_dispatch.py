"""Which device runs a call, and array handling at the device boundary.

``device=None`` lets the arrays decide: NumPy arrays (and anything
``numpy.asarray`` accepts) run on the CPU; arrays that live on an NVIDIA GPU
(``__cuda_array_interface__``: Numba device arrays, CuPy, PyTorch CUDA
tensors; or a CUDA DLPack producer) run there, zero-copy.  The rules:

* the result is the same kind of array as the call's main input (its first
  operand): a GPU input gives a result of the same library on the same GPU,
  a host input gives a NumPy array, also when ``device="cuda"`` computed it
  (the operands are copied in and the result copied back), and a PyTorch
  CPU tensor gives a CPU tensor (sharing the result's memory);
* PyTorch CPU tensors are read in place (``requires_grad`` ones too: their
  data, outside autograd), and an ``out=`` tensor is written in place;
* ``device="cuda:N"`` picks GPU ``N`` (``"cuda"`` is the operands' GPU, or
  the current one); an ``N`` this machine does not have is a ``ValueError``;
* operands of a GPU call that live on the host (a NumPy weight next to a
  GPU input, say) are copied to the GPU, once per call;
* ``device="cpu"`` with a GPU operand, operands on two different GPUs, a
  GPU ``out=`` where the result is a host array and a host ``out=`` where
  it is a GPU array are ``ValueError``\\ s that say where each array lives;
* ``device="cuda"`` (or a GPU operand) where CUDA is not usable is a
  ``RuntimeError`` that says why and how to install the GPU support.

A GPU call runs with the operands' GPU made current
(:meth:`Placement.context`), queues its kernels on Numba's default stream
and does not synchronise; ``numbaconv.cuda.arrays`` orders that stream with
the streams the caller's arrays advertise.

Nothing here imports ``numba.cuda`` unless a call involves the GPU.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Optional

import numpy as np

from .cuda.arrays import is_cuda_array  # imports no CUDA library

DEVICES = (None, "cpu", "cuda")
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Types that are never GPU arrays: checked first, so that the common host
# call does not even look for the GPU array protocols.
_HOST_TYPES = (np.ndarray, np.generic, list, tuple, int, float, complex,
               bool, str, bytes, memoryview)


_CPU_BACKEND = None


def cpu_backend():
    """The CPU backend (imported on first use: it compiles nothing until called)."""
    global _CPU_BACKEND
    if _CPU_BACKEND is None:
        from .cpu import BACKEND
        _CPU_BACKEND = BACKEND
    return _CPU_BACKEND


def is_dask_array(obj) -> bool:
    """Whether ``obj`` is a dask array, told by its type's module (so that
    dask is never imported for other arrays).

    >>> is_dask_array(np.ones(3))
    False
    """
    kind = type(obj)
    return kind.__name__ == "Array" and kind.__module__.startswith("dask.")


def _is_gpu(obj) -> bool:
    if obj is None or isinstance(obj, _HOST_TYPES):
        return False
    return is_cuda_array(obj)


def _gpu_index(obj) -> Optional[int]:
    from .cuda import arrays
    return arrays.device_id(obj)


def _where(obj) -> str:
    """Where ``obj`` lives, for error messages: 'on GPU 1', 'on the host'."""
    if not _is_gpu(obj):
        return "on the host"
    index = _gpu_index(obj)
    return "on a GPU" if index is None else f"on GPU {index}"


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
    """The device of one call: converts its operands and wraps its result.

    Parameters
    ----------
    backend
        The CPU or CUDA backend.
    template
        A GPU input whose kind the result takes (when ``host_result`` is
        False).
    host_result : bool
        Whether results are NumPy arrays (the call's main input is one).
    device_index : int or None
        The GPU that holds the operands (None: the current one).
    """

    def __init__(self, backend, template: Any = None, host_result: bool = True,
                 device_index: Optional[int] = None):
        self.backend = backend
        self.template = template
        self.host_result = host_result
        self.device_index = device_index
        self.torch_result = False  # host result handed back as a torch tensor
        self._gpu_operands = []   # (name, device array) for overlap checks
        self._moved = {}          # id(operand) -> (operand, contiguous copy)

    @property
    def device(self) -> str:
        return self.backend.name

    @property
    def on_gpu(self) -> bool:
        return self.backend.name != "cpu"

    def context(self):
        """Context manager that makes the call's GPU current (no-op on the CPU)."""
        if not self.on_gpu:
            return contextlib.nullcontext()
        from .cuda import arrays
        return arrays.device_context(self.device_index)

    def _where_call(self) -> str:
        if self.device_index is None:
            return "on the GPU"
        return f"on GPU {self.device_index}"

    # -- operands ------------------------------------------------------------
    def operand(self, obj, name: str, dtype: Optional[np.dtype] = None,
                dtype_from: str = "input"):
        """``obj`` as an array (GPU arrays stay where they are), dtype checked.

        ``dtype``, when given, is the dtype of the call, taken from its first
        operand ``dtype_from``: other operands must match it exactly.  Nothing
        is copied here (except to native byte order); see :meth:`contiguous`.
        """
        if _is_gpu(obj):
            from .cuda import arrays
            arr = arrays.as_device_array(obj)
            self._gpu_operands.append((name, arr))
        else:
            arr = _host_array(_torch_host_view(obj, name), name)
        got = check_dtype(name, arr.dtype)
        if dtype is not None and got != dtype:
            raise TypeError(f"{name} has dtype {got} but {dtype_from} has dtype "
                            f"{dtype}; cast them to one dtype")
        return arr

    def contiguous(self, arr):
        """A C-contiguous copy of ``arr`` on this device (no copy when it is one).

        On the GPU a host operand is copied in, and a strided GPU operand
        packed, once per call however often it is asked for.
        """
        if not self.on_gpu:
            return _writable_alias(np.ascontiguousarray(arr))
        if not isinstance(arr, np.ndarray) and arr.is_c_contiguous():
            return arr
        key = id(arr)
        if key not in self._moved:
            from .cuda import arrays
            if isinstance(arr, np.ndarray):
                moved = arrays.to_device(np.ascontiguousarray(arr))
            else:
                moved = arrays.ascontiguous(arr)
            self._moved[key] = (arr, moved)  # holding arr keeps its id unique
        return self._moved[key][1]

    def is_contiguous(self, arr) -> bool:
        if isinstance(arr, np.ndarray):
            return arr.flags.c_contiguous
        return arr.is_c_contiguous()

    def copy_into(self, target, source) -> None:
        if not self.on_gpu:
            target[...] = source
        else:
            from .cuda import arrays
            arrays.copy_into(target, source)

    # -- results ---------------------------------------------------------------
    def output(self, out, shape: tuple, dtype: np.dtype, inputs: tuple):
        """The array the kernels write: ``out`` itself when that is possible.

        For a GPU call whose result is a host array, a host ``out`` gets a
        device buffer here and the result in :meth:`wrap_out`.
        """
        if out is None:
            return self.backend.empty(shape, dtype)
        if _is_torch_cpu(out):
            out = _torch_out_view(out)
        if not self.on_gpu:
            if _is_gpu(out):
                raise ValueError(f"out is a GPU array ({_where(out)}) but "
                                 f"this call runs on the CPU (its inputs "
                                 f"are host arrays); pass a NumPy array "
                                 f"as out")
            self._check_host_out(out, shape, dtype, inputs)
            return out
        if self.host_result:
            # The result comes back to the host: out must be a host array.
            if _is_gpu(out):
                raise ValueError(f"out is a GPU array ({_where(out)}) but the "
                                 f"result of this call is a host array (its "
                                 f"input is a host array); pass a NumPy array "
                                 f"as out, or pass the input as a GPU array")
            self._check_host_out(out, shape, dtype, inputs)
            return self.backend.empty(shape, dtype)
        if not _is_gpu(out):
            if not isinstance(out, np.ndarray):
                raise TypeError(f"out must be a GPU array like the input, got "
                                f"{type(out).__name__}")
            raise ValueError(f"out is a host array but this call runs "
                             f"{self._where_call()} (its input is a GPU "
                             f"array); pass a GPU array as out")
        index = _gpu_index(out)
        if None not in (index, self.device_index) and index != self.device_index:
            raise ValueError(f"out lives on GPU {index} but the inputs live on "
                             f"GPU {self.device_index}; pass an out on GPU "
                             f"{self.device_index}")
        from .cuda import arrays
        if arrays.is_read_only(out):
            raise ValueError("out is read-only")
        view = arrays.as_device_array(out)
        self._check_out(view, shape, dtype)
        start, stop = arrays.memory_range(view)
        for name, arr in self._gpu_operands:
            lo, hi = arrays.memory_range(arr)
            if start < hi and lo < stop:
                raise ValueError(f"out overlaps {name}; pass an array that "
                                 f"shares no memory with the inputs")
        return view

    def _check_host_out(self, out, shape, dtype, inputs) -> None:
        """A NumPy ``out``: right shape and dtype, writable, no overlap."""
        if not isinstance(out, np.ndarray) or isinstance(out, np.matrix):
            raise TypeError(f"out must be a numpy.ndarray, got "
                            f"{type(out).__name__}")
        self._check_out(out, shape, dtype)
        if not out.flags.writeable:
            raise ValueError("out is read-only")
        for name, arr in inputs:
            if _is_torch_cpu(arr):
                arr = arr.detach().numpy()
            if arr is not None and _overlaps(out, arr):
                raise ValueError(f"out overlaps {name}; pass an array that "
                                 f"shares no memory with the inputs")

    @staticmethod
    def _check_out(out, shape, dtype) -> None:
        if tuple(out.shape) != tuple(shape):
            raise ValueError(f"out has shape {tuple(out.shape)}, expected {tuple(shape)}")
        if np.dtype(out.dtype) != dtype:
            raise ValueError(f"out has dtype {out.dtype}, expected {dtype}")

    def wrap(self, result):
        """The result as the caller's kind of array."""
        if self.on_gpu:
            from .cuda import arrays
            if not self.host_result:
                return arrays.wrap_like(result, self.template)
            result = arrays.to_host(result)
        if self.torch_result:
            return sys.modules["torch"].from_numpy(result)
        return result

    def wrap_out(self, out, target):
        """Finish a call that wrote ``target`` for the caller's ``out``."""
        if not self.on_gpu:
            return out
        from .cuda import arrays
        if self.host_result:
            host = _torch_out_view(out) if _is_torch_cpu(out) else out
            host[...] = arrays.to_host(target)
        else:
            arrays.hand_over(out)
        return out


def _host_array(obj, name):
    """``obj`` as a NumPy array in native byte order (no copy otherwise)."""
    try:
        arr = np.asarray(obj)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} cannot be read as an array: {exc}") from None
    if arr.dtype == object:
        raise TypeError(f"{name} must be an array of numbers, got an object array")
    if arr.dtype.kind == "f" and not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))   # e.g. big-endian FITS data
    return arr


# -- PyTorch CPU tensors (torch is never imported here: a tensor's presence
#    means the caller imported it) ---------------------------------------------

def _is_torch_cpu(obj) -> bool:
    if obj is None or isinstance(obj, _HOST_TYPES) or "torch" not in sys.modules:
        return False
    torch = sys.modules["torch"]
    return isinstance(obj, torch.Tensor) and obj.device.type == "cpu"


def _torch_host_view(obj, name: str):
    """A CPU tensor's memory as a NumPy array (no copy, no autograd); any
    other object unchanged."""
    if not _is_torch_cpu(obj):
        return obj
    try:
        return obj.detach().resolve_conj().resolve_neg().numpy()
    except (TypeError, RuntimeError):     # bfloat16 and the like
        name_dtype = str(obj.dtype).replace("torch.", "")
        raise TypeError(f"{name} has dtype torch.{name_dtype}; numbaconv computes "
                        f"in float32 or float64: cast it with {name}.float() or "
                        f"{name}.double()") from None


def _torch_out_view(out) -> np.ndarray:
    """The NumPy view an ``out=`` CPU tensor is written through."""
    if out.requires_grad:
        raise ValueError("out is a tensor that requires grad; numbaconv writes "
                         "out= in place, outside autograd: pass a tensor "
                         "without requires_grad (or out.detach())")
    if out.dtype not in (sys.modules["torch"].float32, sys.modules["torch"].float64):
        raise ValueError(f"out has dtype {out.dtype}, expected float32 or float64")
    return out.numpy()


class _ReadOnlyView:
    """Exposes a read-only array's memory through a writable interface."""

    def __init__(self, arr: np.ndarray):
        interface = dict(arr.__array_interface__)
        interface["data"] = (interface["data"][0], False)
        self.__array_interface__ = interface
        self._keep = arr


def _writable_alias(arr: np.ndarray) -> np.ndarray:
    """``arr`` itself, or a writable view of a read-only one.

    Numba compiles a separate copy of every kernel for read-only arrays (a
    memory-mapped volume, say), a long first call for no gain: the kernels
    never write their inputs.  The view shares the memory and keeps ``arr``
    alive; it never reaches the caller.
    """
    if arr.flags.writeable or arr.size == 0:
        return arr
    return np.asarray(_ReadOnlyView(arr))


def _overlaps(a: np.ndarray, b) -> bool:
    if not isinstance(b, np.ndarray) or not np.may_share_memory(a, b):
        return False
    try:
        return bool(np.shares_memory(a, b, max_work=10_000))
    except np.exceptions.TooHardError:
        return True


def _cuda_backend(device, on_gpu):
    """The CUDA backend, or a RuntimeError saying why it cannot run here."""
    from . import cuda
    usable, reason = cuda.cuda_status()
    if not usable:
        asked = (f"device={device!r} was requested" if device is not None else
                 f"{on_gpu[0]} is a GPU array")
        raise RuntimeError(f"{asked}, but CUDA is not usable here: {reason}")
    return cuda.require_backend()


def place(device, **operands) -> Placement:
    """Pick the device for a call from ``device`` and its operands.

    The first operand is the call's main input: its kind decides the kind
    of the result.
    """
    requested = device
    device, index = parse_device(device)
    on_gpu = [name for name, obj in operands.items() if _is_gpu(obj)]
    first = next(iter(operands))
    main = operands[first]
    if device == "cpu" or (device is None and not on_gpu):
        if on_gpu:
            where = ", ".join(f"{n} lives {_where(operands[n])}" for n in on_gpu)
            raise ValueError(f"device='cpu' but {where}; copy the GPU arrays "
                             f"to the host first or use device='cuda'")
        placement = Placement(cpu_backend())
        placement.torch_result = _is_torch_cpu(main)
        return placement
    backend = _cuda_backend(requested, on_gpu)
    ids = {name: _gpu_index(operands[name]) for name in on_gpu}
    known = sorted({i for i in ids.values() if i is not None})
    if len(known) > 1:
        where = ", ".join(f"{n} on GPU {i}" for n, i in ids.items() if i is not None)
        raise ValueError(f"arrays live on different GPUs: {where}; move them "
                         f"to one GPU")
    if index is not None:
        _check_gpu_index(requested, index)
        if known and known[0] != index:
            where = ", ".join(f"{n} lives on GPU {i}" for n, i in ids.items()
                              if i is not None)
            raise ValueError(f"device={requested!r} but {where}; move the arrays "
                             f"to GPU {index} or pass device='cuda:{known[0]}'")
        known = [index]
    host_result = first not in on_gpu
    placement = Placement(backend, None if host_result else main, host_result,
                          known[0] if known else None)
    placement.torch_result = host_result and _is_torch_cpu(main)
    return placement


def parse_device(device) -> tuple:
    """``device`` as (None, 'cpu' or 'cuda', GPU index or None).

    Accepts None, ``'cpu'``, ``'cuda'``, ``'cuda:N'`` (PyTorch's and CuPy's
    spelling) and ``torch.device`` objects.

    >>> parse_device("cuda:1"), parse_device("cpu"), parse_device(None)
    (('cuda', 1), ('cpu', None), (None, None))
    """
    text = device
    if type(device).__module__ == "torch" and type(device).__name__ == "device":
        text = str(device)
    if text is None or (isinstance(text, str) and text in DEVICES):
        return text, None
    if isinstance(text, str) and text.startswith("cuda:"):
        digits = text[len("cuda:"):]
        if digits.isdigit() and digits.isascii():
            return "cuda", int(digits)
    raise ValueError(f"device must be None, 'cpu', 'cuda' or 'cuda:N' (N a GPU "
                     f"index such as 0), got {device!r}")


def _check_gpu_index(requested, index: int) -> None:
    """GPU ``index`` exists here, or a ValueError that says which do."""
    from numba import cuda
    count = len(cuda.gpus)
    if index >= count:
        have = "GPU 0" if count == 1 else f"GPUs 0 to {count - 1}"
        raise ValueError(f"device={requested!r} but this machine has {count} CUDA "
                         f"device(s) ({have}); pass device='cuda:0'"
                         + (f" to 'cuda:{count - 1}'" if count > 1 else ""))
