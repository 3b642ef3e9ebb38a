"""Moving arrays between the caller's GPU library and the CUDA kernels.

The kernels take Numba device arrays.  Callers hand in whatever their
library uses: Numba device arrays, CuPy arrays, PyTorch CUDA tensors, any
object with ``__cuda_array_interface__`` (CAI), or a DLPack producer whose
``__dlpack_device__()`` says CUDA.  These helpers view such objects as Numba
device arrays without copying, and give results back as the caller's kind.

Streams
    Our kernels run on Numba's default stream (normally the legacy default
    stream, which is ordered with every blocking stream).  When the input
    advertises another stream (CAI v3 ``"stream"``, or PyTorch's current
    stream), ``as_device_array`` makes the default stream wait for it with
    an event, and ``wrap_like`` makes the caller's stream wait for our
    default stream before it touches the result.  Neither blocks the host.

Importing this module imports neither Numba's CUDA target nor CuPy nor
PyTorch: ``is_cuda_array`` works on any machine, and the other helpers
import ``numba.cuda`` when called.  CuPy and PyTorch are only used through
``sys.modules`` when an object of theirs is being handled.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from typing import Any, Optional

import numpy as np

__all__ = ["is_cuda_array", "as_device_array", "wrap_like", "hand_over",
           "device_id", "device_context", "to_device", "to_host",
           "ascontiguous", "copy_into", "memory_range", "is_read_only"]

# DLPack device types (dlpack.h: DLDeviceType).
_KDL_CPU = 1
_KDL_CUDA = 2
_KDL_CUDA_MANAGED = 13
_CUDA_DLPACK_DEVICES = (_KDL_CUDA, _KDL_CUDA_MANAGED)

# CAI v3 stream values that are already ordered with our default stream:
# no stream given, the legacy default stream (1), the per-thread one (2).
_ORDERED_STREAMS = (None, 0, 1, 2)


def _simulating() -> bool:
    from . import _simulator_enabled
    return _simulator_enabled()


def _package(obj: Any) -> str:
    """Top-level package of the object's type, e.g. ``'torch'``, ``'cupy'``."""
    return type(obj).__module__.partition(".")[0]


def _is_numba_device_array(obj: Any) -> bool:
    return bool(getattr(type(obj), "__cuda_ndarray__", False))


def _is_torch_tensor(obj: Any) -> bool:
    return _package(obj) == "torch" and "torch" in sys.modules and \
        isinstance(obj, sys.modules["torch"].Tensor)


def _cai(obj: Any) -> Optional[dict]:
    """The CUDA Array Interface of ``obj``, or None (never raises)."""
    try:
        return getattr(obj, "__cuda_array_interface__", None)
    except Exception:  # e.g. torch raises for CPU tensors
        return None


def _dlpack_device(obj: Any):
    method = getattr(obj, "__dlpack_device__", None)
    if method is None or not hasattr(obj, "__dlpack__"):
        return None
    try:
        device_type, index = method()
        return int(device_type), int(index)
    except Exception:
        return None


def is_cuda_array(obj: Any) -> bool:
    """Whether ``obj`` is an array in GPU memory that the kernels can use.

    True for Numba device arrays (also the simulator's), objects exposing
    ``__cuda_array_interface__`` (CuPy, PyTorch CUDA tensors, ...), and
    DLPack producers whose ``__dlpack_device__()`` reports a CUDA device.
    Imports nothing.

    Parameters
    ----------
    obj : object

    Returns
    -------
    bool

    Examples
    --------
    >>> import numpy as np
    >>> is_cuda_array(np.zeros(3))
    False
    """
    if _is_numba_device_array(obj):
        return True
    if _is_torch_tensor(obj):
        return bool(obj.is_cuda)
    if _cai(obj) is not None:
        return True
    device = _dlpack_device(obj)
    return device is not None and device[0] in _CUDA_DLPACK_DEVICES


def as_device_array(obj: Any):
    """View a GPU array as a Numba device array, without copying.

    Parameters
    ----------
    obj : object
        Anything ``is_cuda_array`` accepts.  The view keeps ``obj`` alive.

    Returns
    -------
    numba.cuda.cudadrv.devicearray.DeviceNDArray
        Same shape, strides and dtype as ``obj``.

    Raises
    ------
    TypeError
        If ``obj`` is not a GPU array.
    ValueError
        If ``obj`` is a masked CAI array.

    Notes
    -----
    If the producer advertises a stream other than the default ones, the
    default stream is made to wait for it (an event, no host block), so
    kernels queued afterwards see the producer's finished data.  The view
    is created in the current CUDA context; enter the array's device first
    (``device_context``) when several GPUs are in use.

    Examples
    --------
    >>> import cupy                                   # doctest: +SKIP
    >>> d = as_device_array(cupy.ones((2, 3)))        # doctest: +SKIP
    >>> d.shape                                       # doctest: +SKIP
    (2, 3)
    """
    if _is_numba_device_array(obj):
        return obj
    if _is_torch_tensor(obj):
        if not obj.is_cuda:
            raise TypeError(f"expected a CUDA tensor, got one on {obj.device}")
        # Its interface refuses tensors that require grad; we only read.
        obj = obj.detach()
        _default_stream_waits_for(_torch_stream(obj))
        desc = obj.__cuda_array_interface__
    else:
        desc = _cai(obj)
    if desc is not None:
        if desc.get("mask") is not None:
            raise ValueError("masked CUDA arrays are not supported")
        _default_stream_waits_for(desc.get("stream"))
        if _simulating():
            return _simulated_view(desc, owner=obj)
        from numba import cuda
        return cuda.from_cuda_array_interface(desc, owner=obj, sync=False)
    device = _dlpack_device(obj)
    if device is not None and (device[0] in _CUDA_DLPACK_DEVICES
                               or (_simulating() and device[0] == _KDL_CPU)):
        return _from_dlpack(obj)
    raise TypeError(f"expected an array in GPU memory, got "
                    f"{type(obj).__module__}.{type(obj).__qualname__}")


def wrap_like(result: Any, template: Any) -> Any:
    """Give the device array ``result`` back as the kind of ``template``.

    CuPy in gives CuPy out, a PyTorch CUDA tensor gives a tensor on the same
    device, a Numba device array (or any other GPU array) gives ``result``
    itself.  No copy is made: the returned object shares ``result``'s memory
    and keeps it alive (a NumPy template gives a host copy instead).  The
    caller's current stream is first made to wait for our default stream
    (an event, no host block).

    Parameters
    ----------
    result : DeviceNDArray
        Output of a kernel.
    template : object
        One of the caller's input arrays.

    Returns
    -------
    object

    Examples
    --------
    >>> import torch                                  # doctest: +SKIP
    >>> t = torch.ones(3, device="cuda")              # doctest: +SKIP
    >>> wrap_like(as_device_array(t), t).device       # doctest: +SKIP
    device(type='cuda', index=0)
    """
    if _is_numba_device_array(template):
        return result
    if isinstance(template, np.ndarray):
        return to_host(result)
    hand_over(template)
    if _is_torch_tensor(template):
        torch = sys.modules["torch"]
        return torch.as_tensor(result, device=template.device)
    if _package(template) == "cupy":
        return sys.modules["cupy"].asarray(result)
    # Other producers: a Numba device array, which speaks CAI itself.
    return result


def hand_over(obj: Any) -> None:
    """Let the caller's stream for ``obj`` see the work queued so far.

    ``obj`` is a GPU array the caller gets back (a result, or an ``out=``
    array written in place).  The stream the caller's library will use
    for it (PyTorch's or CuPy's current stream, or the CAI v3 stream it
    advertises) is made to wait for our default stream, with an event: the
    host does not block.  Nothing happens for Numba device arrays (they
    live on the default stream) or in the simulator.

    Examples
    --------
    >>> import cupy                                   # doctest: +SKIP
    >>> a = cupy.zeros(3)                             # doctest: +SKIP
    >>> hand_over(a)                                  # doctest: +SKIP
    """
    if _is_numba_device_array(obj):
        return
    if _is_torch_tensor(obj):
        _stream_waits_for_default(_torch_stream(obj))
        return
    if _package(obj) == "cupy":
        cupy = sys.modules["cupy"]
        _stream_waits_for_default(cupy.cuda.get_current_stream().ptr)
        return
    desc = _cai(obj)
    if desc is not None:
        _stream_waits_for_default(desc.get("stream"))


def device_id(obj: Any) -> Optional[int]:
    """Ordinal of the GPU that holds ``obj``, or None if it cannot be told.

    None is returned for host arrays, for empty GPU arrays (no memory
    behind them) and for pointers the driver does not know.

    Parameters
    ----------
    obj : object
        Anything ``is_cuda_array`` accepts.

    Returns
    -------
    int or None

    Examples
    --------
    >>> import cupy                                   # doctest: +SKIP
    >>> with cupy.cuda.Device(1):                     # doctest: +SKIP
    ...     a = cupy.zeros(3)
    >>> device_id(a)                                  # doctest: +SKIP
    1
    """
    if not is_cuda_array(obj):
        return None
    if _is_torch_tensor(obj):
        return obj.device.index
    if _package(obj) == "cupy" and hasattr(obj, "device"):
        return int(obj.device.id)
    if _simulating():
        return 0  # the simulator has exactly one device
    if _is_numba_device_array(obj) or _cai(obj) is not None:
        desc = obj.__cuda_array_interface__
        return _pointer_device(desc["data"][0])
    device = _dlpack_device(obj)
    if device is not None and device[0] in _CUDA_DLPACK_DEVICES:
        return device[1]
    return None


def memory_range(array: Any):
    """The byte addresses ``[start, stop)`` spanned by a device array.

    ``array`` is a Numba device array (as ``as_device_array`` returns).  An
    empty array spans nothing: ``(0, 0)``.  Two arrays whose ranges do not
    intersect share no memory; intersecting ranges may.

    Examples
    --------
    >>> import numpy as np
    >>> d = to_device(np.zeros(4))                    # doctest: +SKIP
    >>> start, stop = memory_range(d)                 # doctest: +SKIP
    >>> stop - start                                  # doctest: +SKIP
    32
    """
    if _simulating():
        host = array._ary
        pointer = host.__array_interface__["data"][0]
        shape, strides = host.shape, host.strides
        itemsize = host.dtype.itemsize
    else:
        desc = array.__cuda_array_interface__
        pointer = desc["data"][0]
        shape = tuple(desc["shape"])
        itemsize = np.dtype(desc["typestr"]).itemsize
        strides = desc.get("strides")
        if strides is None:
            strides = []
            step = itemsize
            for extent in reversed(shape):
                strides.insert(0, step)
                step *= max(extent, 1)
    if not pointer or 0 in shape:
        return 0, 0
    low = sum(s * (n - 1) for s, n in zip(strides, shape) if s < 0)
    high = sum(s * (n - 1) for s, n in zip(strides, shape) if s > 0)
    return pointer + low, pointer + high + itemsize


def is_read_only(obj: Any) -> bool:
    """Whether a GPU array says it must not be written (CAI ``data[1]``).

    Examples
    --------
    >>> import numpy as np
    >>> is_read_only(to_device(np.zeros(2)))          # doctest: +SKIP
    False
    """
    if _is_numba_device_array(obj):
        host = getattr(obj, "_ary", None)  # the simulator's device arrays
        return host is not None and not host.flags.writeable
    if _is_torch_tensor(obj):
        return False
    desc = _cai(obj)
    return bool(desc is not None and desc["data"][1])


def device_context(index: Optional[int]):
    """Context manager that makes GPU ``index`` current (None: no change).

    Kernels launch on, and imported views belong to, the current device;
    enter the device of the operands before calling the backend.

    Examples
    --------
    >>> with device_context(None):
    ...     pass
    """
    if index is None or _simulating():
        return contextlib.nullcontext()
    from numba import cuda
    return cuda.gpus[index]


def to_device(array: Any):
    """Copy a host array to a new C-contiguous device array.

    Queued on the default stream, so later kernels see the data.

    Examples
    --------
    >>> import numpy as np
    >>> d = to_device(np.arange(3.0))                 # doctest: +SKIP
    """
    from numba import cuda
    return cuda.to_device(np.ascontiguousarray(array))


def to_host(array: Any) -> np.ndarray:
    """Copy a device array to a new NumPy array.

    The copy is ordered after all work queued on the default stream and
    waits for it, so the values are final.

    Examples
    --------
    >>> import numpy as np
    >>> to_host(to_device(np.arange(3.0))).tolist()   # doctest: +SKIP
    [0.0, 1.0, 2.0]
    """
    return ascontiguous(array).copy_to_host()


def ascontiguous(array: Any):
    """A C-contiguous device array with the contents of ``array``.

    Returns ``array`` itself when it already is C-contiguous; otherwise a
    copy made on the default stream.  Accepts 0-D to 5-D arrays.

    Examples
    --------
    >>> import numpy as np
    >>> d = to_device(np.arange(6.0).reshape(2, 3))   # doctest: +SKIP
    >>> to_host(ascontiguous(d[:, ::2])).tolist()     # doctest: +SKIP
    [[0.0, 2.0], [3.0, 5.0]]
    """
    if array.is_c_contiguous():
        return array
    from numba import cuda
    out = cuda.device_array(tuple(array.shape), dtype=array.dtype)
    copy_into(out, array)
    return out


def copy_into(target: Any, source: Any) -> None:
    """Copy ``source`` into the device array ``target``, whatever its strides.

    Parameters
    ----------
    target : DeviceNDArray
        Written in place (e.g. a non-contiguous ``out=`` array); 0-D to 5-D.
    source : DeviceNDArray or numpy.ndarray
        Same shape as ``target``; a host array is copied to the device first.
        Its dtype is converted to ``target``'s.

    Examples
    --------
    >>> import numpy as np
    >>> d = to_device(np.zeros((2, 4)))               # doctest: +SKIP
    >>> copy_into(d[:, ::2], np.ones((2, 2)))         # doctest: +SKIP
    >>> to_host(d).tolist()                           # doctest: +SKIP
    [[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0]]
    """
    shape = tuple(target.shape)
    if tuple(source.shape) != shape:
        raise ValueError(f"cannot copy an array of shape "
                         f"{tuple(source.shape)} into one of shape {shape}")
    ndim = len(shape)
    if ndim > 5:
        raise ValueError(f"device copies support up to 5 dimensions, "
                         f"got {ndim}")
    if isinstance(source, np.ndarray):
        source = to_device(source.astype(target.dtype, copy=False))
    if int(np.prod(shape)) == 0:
        return
    from . import get_backend
    # Leading size-1 axes make every rank a 5-D problem, and a copy is a pad
    # by zero: the pad kernel reads and writes through the arrays' strides.
    lead = (1,) * (5 - ndim)
    zeros = (0,) * (5 - ndim)
    get_backend().pad(
        _strided_view(source, lead + shape, zeros + tuple(source.strides)),
        (0, 0, 0), (0, 0, 0), "replicate",
        _strided_view(target, lead + shape, zeros + tuple(target.strides)))


def _strided_view(array, shape, strides):
    """The memory of ``array`` seen with another shape and byte strides."""
    if _simulating():
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
        host = np.lib.stride_tricks.as_strided(array._ary, shape, strides)
        return FakeCUDAArray(host)
    from numba import cuda
    desc = dict(array.__cuda_array_interface__)
    desc.update(shape=tuple(shape), strides=tuple(strides), stream=None)
    return cuda.from_cuda_array_interface(desc, owner=array, sync=False)


# --- streams ----------------------------------------------------------------

def _torch_stream(tensor) -> Optional[int]:
    """PyTorch's current stream on the tensor's device; None if default."""
    torch = sys.modules["torch"]
    handle = torch.cuda.current_stream(tensor.device).cuda_stream
    return handle or None


def _default_stream_waits_for(handle) -> None:
    """Order our default stream after the work queued so far on ``handle``."""
    if handle in _ORDERED_STREAMS or _simulating():
        return
    from numba import cuda
    event = cuda.event(timing=False)
    event.record(cuda.external_stream(int(handle)))
    event.wait(cuda.default_stream())


def _stream_waits_for_default(handle) -> None:
    """Order ``handle`` after the work queued so far on our default stream."""
    if handle in _ORDERED_STREAMS or _simulating():
        return
    from numba import cuda
    event = cuda.event(timing=False)
    event.record(cuda.default_stream())
    event.wait(cuda.external_stream(int(handle)))


def _pointer_device(pointer: int) -> Optional[int]:
    if not pointer:
        return None
    try:
        from numba.cuda.cudadrv import driver as drv
        attribute = (drv.binding.CUpointer_attribute
                     .CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL)
        value = drv.driver.cuPointerGetAttribute(
            attribute, drv.binding.CUdeviceptr(int(pointer)))
        return int(value)
    except Exception:
        return None


# --- DLPack -----------------------------------------------------------------

class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32),
                ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8),
                ("bits", ctypes.c_uint8),
                ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p),
                ("device", _DLDevice),
                ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class _DLManagedTensor(ctypes.Structure):
    pass


_DLManagedTensor._fields_ = [
    ("dl_tensor", _DLTensor),
    ("manager_ctx", ctypes.c_void_p),
    ("deleter", ctypes.CFUNCTYPE(None, ctypes.POINTER(_DLManagedTensor))),
]

# DLPack type codes -> NumPy kind letters (kDLInt, kDLUInt, kDLFloat, kDLBool).
_DL_KINDS = {0: "i", 1: "u", 2: "f", 6: "b"}

_pyapi = ctypes.pythonapi
_pyapi.PyCapsule_IsValid.restype = ctypes.c_int
_pyapi.PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]
_pyapi.PyCapsule_GetPointer.restype = ctypes.c_void_p
_pyapi.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_pyapi.PyCapsule_SetName.restype = ctypes.c_int
_pyapi.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]


class _DLPackOwner:
    """Keeps a consumed DLPack tensor alive; frees it when collected."""

    def __init__(self, managed, producer):
        self._managed = managed
        self._producer = producer

    def __del__(self):
        managed, self._managed = self._managed, None
        if managed is not None and managed.contents.deleter:
            managed.contents.deleter(managed)


def _from_dlpack(obj):
    if _simulating():
        capsule = obj.__dlpack__()  # host memory: there is no stream
    else:
        # DLPack's "stream" names the consumer's stream: 1 is the legacy
        # default stream, 2 the per-thread one; the producer orders its
        # pending work before it.
        from . import _numba_cuda_config
        per_thread = getattr(_numba_cuda_config(),
                             "CUDA_PER_THREAD_DEFAULT_STREAM", False)
        capsule = obj.__dlpack__(stream=2 if per_thread else 1)
    if not _pyapi.PyCapsule_IsValid(capsule, b"dltensor"):
        raise TypeError("expected an unversioned DLPack capsule "
                        "named 'dltensor'")
    address = _pyapi.PyCapsule_GetPointer(capsule, b"dltensor")
    managed = ctypes.cast(address, ctypes.POINTER(_DLManagedTensor))
    # Renaming marks the capsule consumed: its destructor will no longer
    # free the tensor, the owner's deleter call will.
    _pyapi.PyCapsule_SetName(capsule, b"used_dltensor")
    owner = _DLPackOwner(managed, obj)

    tensor = managed.contents.dl_tensor
    dtype = tensor.dtype
    if dtype.lanes != 1 or dtype.code not in _DL_KINDS:
        raise TypeError(f"unsupported DLPack dtype (code={dtype.code}, "
                        f"bits={dtype.bits}, lanes={dtype.lanes})")
    itemsize = dtype.bits // 8
    ndim = tensor.ndim
    shape = tuple(tensor.shape[i] for i in range(ndim))
    strides = None
    if tensor.strides:
        strides = tuple(tensor.strides[i] * itemsize for i in range(ndim))
    desc = {
        "shape": shape,
        "strides": strides,
        "typestr": f"<{_DL_KINDS[dtype.code]}{itemsize}",
        "data": ((tensor.data or 0) + tensor.byte_offset, False),
        "version": 3,
        "stream": None,
    }
    if _simulating():
        return _simulated_view(desc, owner=owner)
    from numba import cuda
    return cuda.from_cuda_array_interface(desc, owner=owner, sync=False)


def _simulated_view(desc: dict, owner: Any):
    """Simulator only: device memory is host memory, so view it with NumPy."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
    dtype = np.dtype(desc["typestr"])
    shape = tuple(desc["shape"])
    strides = desc.get("strides")
    if strides is None:
        strides = []
        step = dtype.itemsize
        for extent in reversed(shape):
            strides.insert(0, step)
            step *= max(extent, 1)
    strides = tuple(strides)
    pointer = desc["data"][0]
    if pointer == 0 or 0 in shape:
        return FakeCUDAArray(np.empty(shape, dtype))
    # The byte range the view covers, which may start below the pointer
    # when some strides are negative.
    low = sum(s * (n - 1) for s, n in zip(strides, shape) if s < 0)
    high = sum(s * (n - 1) for s, n in zip(strides, shape) if s > 0)
    buffer = (ctypes.c_char * (high - low + dtype.itemsize)).from_address(
        pointer + low)
    buffer._owner = owner  # the NumPy view keeps the buffer, the buffer this
    host = np.ndarray(shape, dtype, buffer=buffer, offset=-low,
                      strides=strides)
    return FakeCUDAArray(host)
