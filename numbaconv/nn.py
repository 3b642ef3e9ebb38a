"""Convolution layers: parameters, initialisation, forward, backward and state.

``Conv1d`` ... ``ConvTranspose3d`` take PyTorch's constructor arguments in
PyTorch's positional order, so model code ports unchanged, and own what the
functional API leaves to the caller:

* the parameters ``weight`` and ``bias`` (NumPy arrays, or GPU arrays after
  ``.to("cuda")``), initialised like PyTorch (uniform in ``[-b, b]`` with
  ``b = 1 / sqrt(fan_in)``, for the weight and the bias) from a seedable
  ``numpy.random.Generator``;
* the gradients ``weight_grad`` and ``bias_grad``, accumulated by every
  ``backward`` call until ``zero_grad``;
* the shape rules (``output_shape``) and the state (``state_dict``,
  ``load_state_dict``, with PyTorch's key names and shapes).

There is no autograd: ``layer(x)`` keeps the input, and
``layer.backward(grad_output)`` returns the gradient with respect to that
input while accumulating the parameter gradients.  A layer may be shared
between threads: the input is kept per thread (each thread's ``backward``
follows its own ``forward``) and the accumulation holds a lock.  Every computation is a
call to :mod:`numbaconv.functional` or :mod:`numbaconv.grad`.

>>> import numpy as np
>>> from numbaconv.nn import Conv2d
>>> layer = Conv2d(3, 8, 3, padding=1, rng=0)
>>> x = np.ones((2, 3, 16, 16), dtype=np.float32)
>>> y = layer(x)
>>> y.shape
(2, 8, 16, 16)
>>> layer.backward(np.ones_like(y)).shape
(2, 3, 16, 16)
"""

from __future__ import annotations

import math
import numbers
import threading
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import functional, grad
from ._shapes import (check_groups, check_padding, check_padding_mode, conv_spec,
                      int_tuple, transpose_spec)

Array = Any
IntOrTuple = Union[int, Tuple[int, ...]]
Padding = Union[int, str, Tuple[int, ...], Tuple[Tuple[int, int], ...]]
RNG = Union[None, int, np.random.Generator]

DEVICES = ("cpu", "cuda")
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def _generator(rng: RNG) -> np.random.Generator:
    """``rng`` as a Generator: a Generator itself, an int seed, or None (fresh)."""
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"rng must be a non-negative int seed, got {rng!r}")
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator, "
                    f"got {type(rng).__name__}")


def _positive_int(value, name: str) -> int:
    if (not isinstance(value, numbers.Integral) or isinstance(value, bool)
            or value < 1):
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _layer_padding(padding, nd: int):
    """Validated padding as the layer stores it: a string, a tuple of ints,
    or (when some axis pads unevenly) a tuple of (low, high) pairs."""
    pairs = check_padding(padding, nd)
    if isinstance(padding, str):
        return padding
    if all(lo == hi for lo, hi in pairs):
        return tuple(lo for lo, _ in pairs)
    return pairs


def _as_array(x):
    """Arrays (host or GPU) pass through; anything else becomes a NumPy array."""
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return x
    return np.asarray(x)


def _host_numpy(value) -> np.ndarray:
    """A state-dict value as a NumPy array; torch tensors are converted
    through their own ``detach().cpu()`` (torch is never imported here)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "copy_to_host"):          # Numba device array
        return value.copy_to_host()
    if hasattr(value, "get") and hasattr(value, "__cuda_array_interface__"):
        return value.get()                      # CuPy array
    return np.asarray(value)


def _dtype_name(x) -> str:
    """The name of an array's dtype ('float64'), for NumPy, GPU arrays and
    torch tensors alike (torch is never imported here)."""
    dtype = getattr(x, "dtype", None)
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype).replace("torch.", "")


def _as_dtype(value) -> Optional[np.dtype]:
    """``value`` as float32 or float64 (NumPy or torch spelling), else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        dtype = np.dtype(value)
    except TypeError:
        try:
            dtype = np.dtype(str(value).replace("torch.", ""))
        except TypeError:
            return None
    return dtype if dtype in _DTYPES else None


def _cuda_arrays(need_gpu: bool):
    """The CUDA backend's array helpers; RuntimeError when it cannot be used."""
    try:
        from . import cuda
        from .cuda import arrays
    except ImportError as exc:
        raise RuntimeError(
            f"the CUDA backend of numbaconv is not available ({exc}); install "
            f"it with: pip install \"numbaconv[cuda]\"") from exc
    if need_gpu:
        require = getattr(cuda, "require_backend", None)
        if require is None:
            raise RuntimeError("the CUDA backend of numbaconv is not available "
                               "(numbaconv.cuda has no require_backend)")
        require()
    return arrays


# ---------------------------------------------------------------------------
# the shared base class
# ---------------------------------------------------------------------------

class _ConvNd:
    """Everything the six layers share; subclasses set ``_nd``."""

    _nd: int = 0
    transposed: bool = False

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding,
                 dilation, groups, bias, padding_mode, output_padding, dtype,
                 device, rng) -> None:
        nd = self._nd
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.out_channels = _positive_int(out_channels, "out_channels")
        self.groups = check_groups(groups)
        for name, channels in (("in_channels", self.in_channels),
                               ("out_channels", self.out_channels)):
            if channels % self.groups:
                raise ValueError(f"{name} must be divisible by groups, got "
                                 f"{name}={channels} and groups={self.groups}")
        self.kernel_size = int_tuple(kernel_size, nd, "kernel_size", 1)
        self.stride = int_tuple(stride, nd, "stride", 1)
        self.dilation = int_tuple(dilation, nd, "dilation", 1)
        self.padding = _layer_padding(padding, nd)
        self.padding_mode = check_padding_mode(padding_mode)
        if self.transposed:
            self.output_padding = int_tuple(output_padding, nd, "output_padding", 0)
            limit = tuple(max(s, d) for s, d in zip(self.stride, self.dilation))
            if any(p >= m for p, m in zip(self.output_padding, limit)):
                raise ValueError(f"output_padding={output_padding!r} must be smaller "
                                 f"than max(stride, dilation)={limit} on every axis")
            if self.padding == "same" and any(self.output_padding):
                raise ValueError("output_padding must be 0 with padding='same', "
                                 "which fixes the output size to input size x stride")
        try:
            self.dtype = np.dtype(dtype)
        except TypeError:
            raise ValueError(f"dtype must be numpy.float32 or numpy.float64, "
                             f"got {dtype!r}") from None
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be numpy.float32 or numpy.float64, "
                             f"got {self.dtype}")
        if device not in DEVICES:
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")

        if self.transposed:
            shape = (self.in_channels, self.out_channels // self.groups)
        else:
            shape = (self.out_channels, self.in_channels // self.groups)
        self._weight_shape = shape + self.kernel_size
        self.device = "cpu"
        self._init_thread_state()
        self._rng = _generator(rng)
        self.weight: Array = np.zeros(self._weight_shape, self.dtype)
        self.bias: Optional[Array] = (np.zeros(self.out_channels, self.dtype)
                                      if bool(bias) else None)
        self.weight_grad: Array = np.zeros_like(self.weight)
        self.bias_grad: Optional[Array] = (None if self.bias is None
                                           else np.zeros_like(self.bias))
        self.reset_parameters()
        if device == "cuda":
            self.to("cuda")

    # -- threads ---------------------------------------------------------------
    # A layer may be shared between threads: what backward needs is kept per
    # thread (each thread's backward follows its own forward), and gradient
    # accumulation holds a lock.  `_generation` counts moves (`to`), so that
    # an input saved before a move is never used after it.
    def _init_thread_state(self) -> None:
        self._local = threading.local()
        self._grad_lock = threading.Lock()
        self._generation = 0

    @property
    def _saved(self):
        saved = getattr(self._local, "saved", None)
        if saved is None or saved[0] != self._generation:
            return None
        return saved[1]

    @_saved.setter
    def _saved(self, value) -> None:
        self._local.saved = None if value is None else (self._generation, value)

    def __getstate__(self) -> dict:
        # Pickling and copy.deepcopy skip the per-thread state and the lock.
        state = dict(self.__dict__)
        for key in ("_local", "_grad_lock"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()
        self._grad_lock = threading.Lock()

    # -- the functional calls behind the layer -------------------------------
    @property
    def _forward_fn(self):
        prefix = "conv_transpose" if self.transposed else "conv"
        return getattr(functional, f"{prefix}{self._nd}d")

    @property
    def _backward_fn(self):
        prefix = "conv_transpose" if self.transposed else "conv"
        return getattr(grad, f"{prefix}{self._nd}d_backward")

    # -- parameters as checked attributes ---------------------------------------
    @property
    def weight(self) -> Array:
        return self._weight

    @weight.setter
    def weight(self, value: Array) -> None:
        self._weight = self._checked("weight", value, self._weight_shape)

    @property
    def bias(self) -> Optional[Array]:
        return self._bias

    @bias.setter
    def bias(self, value: Optional[Array]) -> None:
        # None removes the bias; an array gives a bias-less layer one.
        had = getattr(self, "_bias", None) is not None
        self._bias = (None if value is None else
                      self._checked("bias", value, (self.out_channels,)))
        if "bias_grad" in self.__dict__ and had != (self._bias is not None):
            self.bias_grad = (None if self._bias is None else
                              self._place(np.zeros(self.out_channels, self.dtype)))

    def _checked(self, name: str, value, shape: tuple):
        """An array assigned to ``weight`` or ``bias``: exact shape and dtype."""
        if not (hasattr(value, "shape") and hasattr(value, "dtype")):
            raise TypeError(f"{name} must be an array of shape {shape}, got "
                            f"{type(value).__name__}")
        if tuple(value.shape) != shape:
            raise ValueError(f"{name} must have shape {shape} for this "
                             f"{type(self).__name__}, got an array of shape "
                             f"{tuple(value.shape)}")
        got = _dtype_name(value)
        if got != self.dtype.name:
            convert = (f", or convert the layer first with layer.to(numpy.{got})"
                       if got in ("float32", "float64") else "")
            raise TypeError(f"{name} has dtype {got} but the layer's dtype is "
                            f"{self.dtype.name}; assign {name}.astype(numpy."
                            f"{self.dtype.name}){convert}")
        return value

    def _check_input_dtype(self, x) -> None:
        """A float input of the other float dtype: say how to convert either."""
        got = _dtype_name(x)
        if got in ("float32", "float64") and got != self.dtype.name:
            raise TypeError(f"input has dtype {got} but this {type(self).__name__} "
                            f"layer's dtype is {self.dtype.name} (its parameters'); "
                            f"convert the input with x.astype(numpy."
                            f"{self.dtype.name}), or the layer with "
                            f"layer.to(numpy.{got})")

    @property
    def _fan_in(self) -> int:
        # weight.shape[1] * prod(kernel): (C_in/groups)*prod(k) for a
        # convolution, (C_out/groups)*prod(k) for a transposed one (PyTorch).
        return self._weight_shape[1] * math.prod(self.kernel_size)

    # -- parameters ----------------------------------------------------------
    def reset_parameters(self, rng: RNG = None) -> None:
        """Draw new parameters: uniform in ``[-b, b]``, ``b = 1/sqrt(fan_in)``.

        This is PyTorch's initialisation (``kaiming_uniform_`` with
        ``a=sqrt(5)`` for the weight, the same bound for the bias), with
        ``fan_in = weight.shape[1] * prod(kernel_size)``: ``(C_in/groups)``
        times the kernel volume for a convolution, ``(C_out/groups)`` times it
        for a transposed convolution.

        Parameters
        ----------
        rng : None, int or numpy.random.Generator
            Where to draw from: None continues the layer's own generator (the
            one built from the constructor's ``rng``), an int seeds a new one.

        Examples
        --------
        >>> from numbaconv.nn import Conv2d
        >>> a, b = Conv2d(2, 4, 3, rng=1), Conv2d(2, 4, 3, rng=2)
        >>> b.reset_parameters(rng=1)
        >>> bool((a.weight == b.weight).all() and (a.bias == b.bias).all())
        True
        """
        gen = self._rng if rng is None else _generator(rng)
        bound = 1.0 / math.sqrt(self._fan_in)
        weight = gen.uniform(-bound, bound, self._weight_shape).astype(self.dtype)
        bias = (None if self.bias is None else
                gen.uniform(-bound, bound, self.out_channels).astype(self.dtype))
        self.weight = self._place(weight)
        if bias is not None:
            self.bias = self._place(bias)

    def parameters(self) -> List[Array]:
        """The parameter arrays: ``[weight, bias]``, or ``[weight]`` without bias.

        Updating them in place updates the layer.

        Examples
        --------
        >>> from numbaconv.nn import Conv1d
        >>> [p.shape for p in Conv1d(4, 6, 5, groups=2, rng=0).parameters()]
        [(6, 2, 5), (6,)]
        """
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def zero_grad(self) -> None:
        """Reset ``weight_grad`` and ``bias_grad`` to zeros.

        Examples
        --------
        >>> import numpy as np
        >>> from numbaconv.nn import Conv1d
        >>> layer = Conv1d(1, 1, 3, rng=0)
        >>> y = layer(np.ones((1, 1, 10), dtype=np.float32))
        >>> _ = layer.backward(np.ones_like(y))
        >>> float(layer.weight_grad.sum()) > 0
        True
        >>> layer.zero_grad(); float(abs(layer.weight_grad).sum())
        0.0
        """
        with self._grad_lock:
            if isinstance(self.weight_grad, np.ndarray):
                self.weight_grad[...] = 0
            else:
                self.weight_grad = self._place(np.zeros(self._weight_shape, self.dtype))
            if self.bias is None:
                self.bias_grad = None
            elif isinstance(self.bias_grad, np.ndarray):
                self.bias_grad[...] = 0
            else:
                self.bias_grad = self._place(np.zeros(self.out_channels, self.dtype))

    # -- forward and backward ------------------------------------------------
    def __call__(self, *args, **kwargs) -> Array:
        return self.forward(*args, **kwargs)

    def _check_saved(self):
        saved = self._saved
        if saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward() was called before "
                               f"forward() in this thread: call the layer on an "
                               f"input first, then backward with the gradient of "
                               f"its output")
        return saved

    def _accumulate(self, gw, gb) -> None:
        with self._grad_lock:
            self.weight_grad = self._add(self.weight_grad, gw)
            if gb is not None:
                self.bias_grad = self._add(self.bias_grad, gb)

    def _add(self, acc, g):
        if isinstance(acc, np.ndarray) and self.device == "cpu":
            acc += _host_numpy(g)      # a torch tensor when the input was one
            return acc
        arrays = _cuda_arrays(need_gpu=False)
        host = [a if isinstance(a, np.ndarray) else arrays.to_host(a) for a in (acc, g)]
        return self._place(host[0] + host[1])

    # -- devices -------------------------------------------------------------
    def _place(self, host: np.ndarray) -> Array:
        """A host array moved to the layer's device."""
        if self.device == "cpu":
            return host
        return _cuda_arrays(need_gpu=True).to_device(host)

    def to(self, target: Any) -> "_ConvNd":
        """Move the layer to a device, or convert it to a dtype; return self.

        On ``'cuda'`` the parameters become GPU arrays and every call of the
        layer runs on the GPU (host inputs are copied in and the results come
        back as host arrays; GPU inputs give GPU results).  A dtype
        (``numpy.float64``, ``'float32'``, ``torch.float64``...) converts the
        parameters and their gradients, as ``module.to(torch.float64)`` does
        in PyTorch.  Either discards the inputs kept for ``backward``.

        Parameters
        ----------
        target : {'cpu', 'cuda'} or float32 / float64 dtype

        Raises
        ------
        ValueError
            ``target`` is neither a device nor float32 / float64.
        RuntimeError
            ``'cuda'`` when no usable GPU or CUDA backend is present; the layer
            is then left unchanged on its device.

        Examples
        --------
        >>> import numpy as np
        >>> from numbaconv.nn import Conv3d
        >>> layer = Conv3d(1, 1, 3, rng=0).to("cpu")
        >>> layer.device
        'cpu'
        >>> layer.to(np.float64).weight.dtype
        dtype('float64')
        """
        if isinstance(target, str) and target in DEVICES:
            return self._to_device(target)
        dtype = _as_dtype(target)
        if dtype is None:
            raise ValueError(f"to() takes a device ('cpu' or 'cuda') or a dtype "
                             f"(numpy.float32 or numpy.float64), got {target!r}")
        if dtype == self.dtype:
            return self
        names = ("weight", "bias", "weight_grad", "bias_grad")
        converted = {n: (None if getattr(self, n) is None else
                         self._place(_host_numpy(getattr(self, n)).astype(dtype)))
                     for n in names}
        self.dtype = dtype
        for name, value in converted.items():
            setattr(self, name, value)
        self._generation += 1          # inputs saved in the old dtype are dropped
        return self

    def _to_device(self, device: str) -> "_ConvNd":
        if device == self.device:
            return self
        arrays = _cuda_arrays(need_gpu=(device == "cuda"))

        def move(a):
            if device == "cuda":
                return arrays.to_device(np.ascontiguousarray(a))
            return arrays.to_host(a)

        names = ("weight", "bias", "weight_grad", "bias_grad")
        moved = {n: (None if getattr(self, n) is None else move(getattr(self, n)))
                 for n in names}
        for name, value in moved.items():
            setattr(self, name, value)
        self.device = device
        self._generation += 1          # inputs saved on the old device are dropped
        return self

    # -- state ---------------------------------------------------------------
    def _expected_state(self) -> Dict[str, tuple]:
        state = {"weight": self._weight_shape}
        if self.bias is not None:
            state["bias"] = (self.out_channels,)
        return state

    def state_dict(self, prefix: str = "", kind: str = "numpy") -> Dict[str, Any]:
        """The parameters under PyTorch's keys, as host copies.

        Keys are ``'weight'`` and ``'bias'`` (absent when ``bias=False``), with
        the shapes of the corresponding PyTorch module's state dict.

        Parameters
        ----------
        prefix : str, default ''
            Put before every key, e.g. ``'0.'`` for the first layer of a
            ``torch.nn.Sequential``.
        kind : {'numpy', 'torch'}, default 'numpy'
            NumPy arrays, or CPU torch tensors, which PyTorch's
            ``module.load_state_dict(layer.state_dict(kind="torch"))`` accepts
            directly (imports torch).

        Examples
        --------
        >>> from numbaconv.nn import ConvTranspose2d
        >>> sd = ConvTranspose2d(4, 6, 3, groups=2, rng=0).state_dict()
        >>> {k: v.shape for k, v in sd.items()}
        {'weight': (4, 3, 3, 3), 'bias': (6,)}
        >>> sorted(ConvTranspose2d(4, 6, 3, rng=0).state_dict(prefix="0."))
        ['0.bias', '0.weight']
        """
        if kind not in ("numpy", "torch"):
            raise ValueError(f"kind must be 'numpy' or 'torch', got {kind!r}")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        state = {"weight": np.array(_host_numpy(self.weight), copy=True)}
        if self.bias is not None:
            state["bias"] = np.array(_host_numpy(self.bias), copy=True)
        if kind == "torch":
            import torch
            state = {k: torch.from_numpy(v) for k, v in state.items()}
        return {prefix + k: v for k, v in state.items()}

    def load_state_dict(self, state_dict: Mapping[str, Any], prefix: str = "") -> None:
        """Copy parameters from ``state_dict`` (NumPy arrays or torch tensors).

        The state dict of the PyTorch module with the same arguments loads
        directly, and so does one layer of a model's state dict with
        ``prefix``.  Nothing is changed unless every entry is valid.

        Parameters
        ----------
        state_dict : mapping
            ``'weight'`` and, when the layer has a bias, ``'bias'``; values are
            arrays (or torch tensors) of exactly the layer's shapes and dtype.
        prefix : str, default ''
            Read the keys ``prefix + 'weight'`` and ``prefix + 'bias'`` (e.g.
            ``'0.'`` for the first layer of a ``torch.nn.Sequential``); keys
            without the prefix are left alone then.

        Raises
        ------
        ValueError
            On a missing or unexpected key (the message lists the keys found),
            or a value of the wrong shape or dtype; the message names the key.

        Examples
        --------
        >>> import numpy as np
        >>> from numbaconv.nn import Conv1d
        >>> layer = Conv1d(2, 3, 5, bias=False, rng=0)
        >>> layer.load_state_dict({"weight": np.zeros((3, 2, 5), np.float32)})
        >>> float(abs(layer.weight).sum())
        0.0
        >>> model = {"0.weight": np.ones((3, 2, 5), np.float32), "1.weight": None}
        >>> layer.load_state_dict(model, prefix="0.")
        >>> float(layer.weight.sum())
        30.0
        """
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping of names to arrays, got "
                            f"{type(state_dict).__name__}")
        expected = self._expected_state()
        found = list(state_dict.keys())
        # With a prefix, keys outside it belong to other layers of the model.
        mine = [k for k in found if isinstance(k, str) and k.startswith(prefix)
                or not prefix]
        missing = [prefix + k for k in expected if prefix + k not in mine]
        unexpected = [k for k in mine if not isinstance(k, str)
                      or k[len(prefix):] not in expected]
        if missing:
            shown = ", ".join(repr(k) for k in found[:8]) + (", ..." if len(found) > 8
                                                             else "")
            hint = ""
            dotted = sorted({k.rsplit(".", 1)[0] + "." for k in found
                             if isinstance(k, str) and "." in k
                             and k.rsplit(".", 1)[1] in expected})
            if dotted and not prefix:
                hint = (f"; for a layer inside a model pass its prefix, e.g. "
                        f"load_state_dict(state_dict, prefix={dotted[0]!r})")
            raise ValueError(f"missing key(s) in state_dict: "
                             f"{', '.join(repr(k) for k in missing)}; it has "
                             f"{shown or 'no keys'}{hint}")
        if unexpected:
            raise ValueError(f"unexpected key(s) in state_dict: "
                             f"{', '.join(repr(k) for k in unexpected)} (this layer "
                             f"has {', '.join(repr(prefix + k) for k in expected)})")
        values = {}
        for key, shape in expected.items():
            value = _host_numpy(state_dict[prefix + key])
            if tuple(value.shape) != shape:
                raise ValueError(f"state_dict[{prefix + key!r}] has shape "
                                 f"{tuple(value.shape)}, expected {shape}")
            if value.dtype != self.dtype:
                raise ValueError(f"state_dict[{prefix + key!r}] has dtype "
                                 f"{value.dtype}, expected {self.dtype}; cast it "
                                 f"first, or convert the layer with "
                                 f"layer.to(numpy.{value.dtype})")
            values[key] = np.array(value, dtype=self.dtype, copy=True, order="C")
        for key, value in values.items():
            setattr(self, key, self._place(value))

    # -- repr ----------------------------------------------------------------
    def __repr__(self) -> str:
        s = (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
             f"kernel_size={self.kernel_size}, stride={self.stride}")
        if isinstance(self.padding, str):
            s += f", padding={self.padding}"
        elif self.padding != (0,) * self._nd:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._nd:
            s += f", dilation={self.dilation}"
        if self.transposed and self.output_padding != (0,) * self._nd:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s + ")"


def _shape_of(x) -> tuple:
    return tuple(int(s) for s in x.shape)


class _Conv(_ConvNd):
    """Convolution layers (PyTorch's ``Conv*d``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrTuple,
                 stride: IntOrTuple = 1, padding: Padding = 0,
                 dilation: IntOrTuple = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", *, dtype: Any = np.float32,
                 device: str = "cpu", rng: RNG = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding,
                         dilation, groups, bias, padding_mode, 0, dtype, device, rng)

    def output_shape(self, input_shape: Sequence[int]) -> tuple:
        """The output shape for an input of shape ``input_shape`` (no compute).

        Raises the same ValueError the forward call would on a bad shape.

        Examples
        --------
        >>> from numbaconv.nn import Conv3d
        >>> Conv3d(4, 8, 3, stride=2, padding=1).output_shape((2, 4, 17, 16, 9))
        (2, 8, 9, 8, 5)
        """
        return conv_spec(self._nd, input_shape, self._weight_shape, None,
                         self.stride, self.padding, self.dilation, self.groups,
                         self.padding_mode).output_shape

    def forward(self, x: Array) -> Array:
        """The convolution of ``x``; keeps ``x`` for :meth:`backward`.

        Parameters
        ----------
        x : array of shape (N, C_in, *spatial) or (C_in, *spatial)
            Of the layer's dtype; unbatched input gives unbatched output.

        Returns
        -------
        array of shape ``output_shape(x.shape)``

        Examples
        --------
        >>> import numpy as np
        >>> from numbaconv.nn import Conv1d
        >>> Conv1d(2, 4, 3, rng=0)(np.ones((2, 10), np.float32)).shape
        (4, 8)
        """
        x = _as_array(x)
        self._check_input_dtype(x)
        y = self._forward_fn(x, self.weight, self.bias, self.stride, self.padding,
                             self.dilation, self.groups,
                             padding_mode=self.padding_mode, device=self.device)
        self._saved = x
        return y

    def backward(self, grad_output: Array) -> Array:
        """Gradient with respect to the last forward input; accumulates
        ``weight_grad`` (and ``bias_grad``).

        Parameters
        ----------
        grad_output : array
            Gradient of the loss with respect to the last forward output (same
            shape).  May be called more than once per forward; every call adds
            to the parameter gradients.

        Returns
        -------
        array of the last input's shape

        Raises
        ------
        RuntimeError
            When no forward call came first.

        Examples
        --------
        >>> import numpy as np
        >>> from numbaconv.nn import Conv2d
        >>> layer = Conv2d(1, 2, 3, rng=0)
        >>> y = layer(np.ones((1, 1, 5, 5), np.float32))
        >>> layer.backward(np.ones_like(y)).shape, layer.bias_grad.tolist()
        ((1, 1, 5, 5), [9.0, 9.0])
        """
        x = self._check_saved()
        gi, gw, gb = self._backward_fn(
            grad_output, x, self.weight, self.stride, self.padding, self.dilation,
            self.groups, padding_mode=self.padding_mode,
            output_mask=(True, True, self.bias is not None), device=self.device)
        self._accumulate(gw, gb)
        return gi


class _ConvTranspose(_ConvNd):
    """Transposed convolution layers (PyTorch's ``ConvTranspose*d``)."""

    transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrTuple,
                 stride: IntOrTuple = 1, padding: Padding = 0,
                 output_padding: IntOrTuple = 0, groups: int = 1, bias: bool = True,
                 dilation: IntOrTuple = 1, padding_mode: str = "zeros", *,
                 dtype: Any = np.float32, device: str = "cpu", rng: RNG = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding,
                         dilation, groups, bias, padding_mode, output_padding,
                         dtype, device, rng)

    def _spec(self, input_shape, output_size):
        return transpose_spec(self._nd, input_shape, self._weight_shape, None,
                              self.stride, self.padding, self.output_padding,
                              self.groups, self.dilation, output_size,
                              self.padding_mode)

    def output_shape(self, input_shape: Sequence[int],
                     output_size: Optional[Sequence[int]] = None) -> tuple:
        """The output shape for an input of shape ``input_shape`` (no compute).

        Parameters
        ----------
        input_shape : tuple of ints
        output_size : tuple of ints, optional
            As in :meth:`forward`.

        Examples
        --------
        >>> from numbaconv.nn import ConvTranspose2d
        >>> layer = ConvTranspose2d(8, 4, 3, stride=2, padding=1)
        >>> layer.output_shape((1, 8, 16, 16)), layer.output_shape((1, 8, 16, 16), (32, 32))
        ((1, 4, 31, 31), (1, 4, 32, 32))
        """
        return self._spec(input_shape, output_size).output_shape

    def forward(self, x: Array, output_size: Optional[Sequence[int]] = None) -> Array:
        """The transposed convolution of ``x``; keeps ``x`` for :meth:`backward`.

        Parameters
        ----------
        x : array of shape (N, C_in, *spatial) or (C_in, *spatial)
        output_size : tuple of ints, optional
            The wanted output size (spatial dims, or all dims), which picks the
            ``output_padding`` of this call in place of the layer's; the one
            used is remembered for :meth:`backward`.

        Examples
        --------
        >>> import numpy as np
        >>> from numbaconv.nn import ConvTranspose1d
        >>> layer = ConvTranspose1d(2, 1, 4, stride=2, padding=1, rng=0)
        >>> x = np.ones((1, 2, 8), np.float32)
        >>> layer(x).shape, layer(x, output_size=(17,)).shape
        ((1, 1, 16), (1, 1, 17))
        """
        x = _as_array(x)
        self._check_input_dtype(x)
        spec = self._spec(_shape_of(x), output_size)
        # padding='same' fixes output_padding itself (and forbids passing one)
        opad = (self.output_padding if self.padding == "same"
                else spec.output_padding[3 - self._nd:])
        y = self._forward_fn(x, self.weight, self.bias, self.stride, self.padding,
                             opad, self.groups, self.dilation,
                             padding_mode=self.padding_mode, device=self.device)
        self._saved = (x, opad)
        return y

    def backward(self, grad_output: Array) -> Array:
        """Gradient with respect to the last forward input; accumulates
        ``weight_grad`` (and ``bias_grad``).

        Parameters
        ----------
        grad_output : array
            Gradient of the loss with respect to the last forward output.

        Returns
        -------
        array of the last input's shape

        Raises
        ------
        RuntimeError
            When no forward call came first.

        Examples
        --------
        >>> import numpy as np
        >>> from numbaconv.nn import ConvTranspose2d
        >>> layer = ConvTranspose2d(2, 1, 2, stride=2, rng=0)
        >>> y = layer(np.ones((2, 3, 3), np.float32))
        >>> layer.backward(np.ones_like(y)).shape, layer.bias_grad.tolist()
        ((2, 3, 3), [36.0])
        """
        x, opad = self._check_saved()
        gi, gw, gb = self._backward_fn(
            grad_output, x, self.weight, self.stride, self.padding, opad,
            self.groups, self.dilation, padding_mode=self.padding_mode,
            output_mask=(True, True, self.bias is not None), device=self.device)
        self._accumulate(gw, gb)
        return gi


# ---------------------------------------------------------------------------
# the six layers
# ---------------------------------------------------------------------------

class Conv1d(_Conv):
    _nd = 1


class Conv2d(_Conv):
    _nd = 2


class Conv3d(_Conv):
    _nd = 3


class ConvTranspose1d(_ConvTranspose):
    _nd = 1


class ConvTranspose2d(_ConvTranspose):
    _nd = 2


class ConvTranspose3d(_ConvTranspose):
    _nd = 3


_SPATIAL = {1: "L", 2: "H, W", 3: "D, H, W"}
_KERNEL = {1: "kW", 2: "kH, kW", 3: "kD, kH, kW"}

_COMMON = """\
groups : int, default 1
    Independent channel groups; ``in_channels`` and ``out_channels`` must be
    divisible by it.
bias : bool, default True
    Whether the layer has a learnable bias of shape (out_channels,).
{dilation}padding_mode : {{'zeros', 'reflect', 'replicate', 'circular', 'symmetric'}}
    {mode_text}
dtype : numpy.float32 or numpy.float64, keyword-only, default float32
    Dtype of the parameters; inputs must have the same dtype (convert a
    layer with ``layer.to(numpy.float64)``).
device : {{'cpu', 'cuda'}}, keyword-only, default 'cpu'
    Where the parameters live and the layer computes (see :meth:`to`).
rng : None, int or numpy.random.Generator, keyword-only
    Source of the initial parameters: a seed or a generator makes them
    reproducible; None draws from a fresh ``numpy.random.default_rng()``.

Attributes
----------
weight : array of shape {wshape}
bias : array of shape (out_channels,), or None
    Assigning an array of another shape or dtype raises at once; assigning
    None to ``bias`` removes it.
weight_grad, bias_grad : arrays of the shapes of weight and bias
    Gradients accumulated by :meth:`backward` since the last :meth:`zero_grad`.
in_channels, out_channels, groups : int
kernel_size, stride, dilation{opad_attr} : tuple of {nd} ints
padding : str, tuple of {nd} ints, or tuple of {nd} (low, high) pairs
padding_mode, device : str
dtype : numpy.dtype

Raises
------
ValueError
    On an invalid argument; the message names it.
"""

_CONV_DOC = """{nd}-D convolution layer, PyTorch's ``torch.nn.Conv{nd}d``.

Maps input of shape (N, C_in, {sp}) or (C_in, {sp}) to (N, C_out, ...) or
(C_out, ...) with :func:`numbaconv.conv{nd}d`.

Parameters
----------
in_channels, out_channels : int
    Channels of the input and of the output.
kernel_size : int or tuple of {nd} ints
stride : int or tuple of {nd} ints, default 1
padding : int, tuple, 'same' or 'valid', default 0
    Per axis an int, or a (low, high) pair; 'same' keeps the output size at
    ``ceil(size / stride)`` (any stride, beyond PyTorch).
dilation : int or tuple of {nd} ints, default 1
{common}
Examples
--------
>>> import numpy as np
>>> from numbaconv.nn import Conv{nd}d
>>> layer = Conv{nd}d(4, 8, 3, padding=1, rng=0)
>>> layer
Conv{nd}d(4, 8, kernel_size={k3}, stride={s1}, padding={p1})
>>> x = np.random.default_rng(0).standard_normal({ex_in}).astype(np.float32)
>>> y = layer(x)
>>> y.shape
{ex_out}
>>> gx = layer.backward(np.ones_like(y))
>>> gx.shape, layer.weight_grad.shape
({ex_in}, {ex_w})
"""

_TRANSPOSE_DOC = """{nd}-D transposed convolution layer, PyTorch's ``torch.nn.ConvTranspose{nd}d``.

Maps input of shape (N, C_in, {sp}) or (C_in, {sp}) to (N, C_out, ...) or
(C_out, ...) with :func:`numbaconv.conv_transpose{nd}d`, the adjoint of a
convolution (with any ``padding_mode``, beyond PyTorch).

Parameters
----------
in_channels, out_channels : int
    Channels of the input and of the output.
kernel_size : int or tuple of {nd} ints
stride : int or tuple of {nd} ints, default 1
padding : int, tuple, 'same' or 'valid', default 0
    The padding of the corresponding convolution (it crops the output);
    'same' makes the output exactly ``size * stride``.
output_padding : int or tuple of {nd} ints, default 0
    Extra size at the high end of each axis, smaller than
    ``max(stride, dilation)``.
{common}
Examples
--------
>>> import numpy as np
>>> from numbaconv.nn import ConvTranspose{nd}d
>>> layer = ConvTranspose{nd}d(8, 4, 4, stride=2, padding=1, rng=0)
>>> x = np.random.default_rng(0).standard_normal({ex_tin}).astype(np.float32)
>>> y = layer(x)
>>> y.shape
{ex_tout}
>>> layer.backward(np.ones_like(y)).shape
{ex_tin}
"""

_CONV_MODE_TEXT = """How the input is extended beyond its edges ('symmetric' is NumPy's
    half-sample mirror, which PyTorch lacks); the table of
    :func:`numbaconv.conv{nd}d` shows each mode."""

_TRANSPOSE_MODE_TEXT = """The padding mode of the convolution this layer is the adjoint of:
    with a mode other than 'zeros', the output's padded halo folds back onto
    the edge elements it was copied from (see
    :func:`numbaconv.conv_transpose{nd}d`)."""

_EX_IN = {1: "(2, 4, 32)", 2: "(2, 4, 12, 12)", 3: "(2, 4, 6, 6, 6)"}
_EX_OUT = {1: "(2, 8, 32)", 2: "(2, 8, 12, 12)", 3: "(2, 8, 6, 6, 6)"}
_EX_W = {1: "(8, 4, 3)", 2: "(8, 4, 3, 3)", 3: "(8, 4, 3, 3, 3)"}
_EX_TIN = {1: "(2, 8, 16)", 2: "(2, 8, 6, 6)", 3: "(2, 8, 3, 3, 3)"}
_EX_TOUT = {1: "(2, 4, 32)", 2: "(2, 4, 12, 12)", 3: "(2, 4, 6, 6, 6)"}


def _tup(value, nd):
    return str((value,) * nd)


for _nd, _cls in ((1, Conv1d), (2, Conv2d), (3, Conv3d)):
    _cls.__doc__ = _CONV_DOC.format(
        nd=_nd, sp=_SPATIAL[_nd], k3=_tup(3, _nd), s1=_tup(1, _nd), p1=_tup(1, _nd),
        ex_in=_EX_IN[_nd], ex_out=_EX_OUT[_nd], ex_w=_EX_W[_nd],
        common=_COMMON.format(nd=_nd, opad_attr="", dilation="",
                              mode_text=_CONV_MODE_TEXT.format(nd=_nd),
                              wshape=f"(out_channels, in_channels / groups, "
                                     f"{_KERNEL[_nd]})"))

for _nd, _cls in ((1, ConvTranspose1d), (2, ConvTranspose2d), (3, ConvTranspose3d)):
    _cls.__doc__ = _TRANSPOSE_DOC.format(
        nd=_nd, sp=_SPATIAL[_nd], ex_tin=_EX_TIN[_nd], ex_tout=_EX_TOUT[_nd],
        common=_COMMON.format(
            nd=_nd, opad_attr=", output_padding",
            mode_text=_TRANSPOSE_MODE_TEXT.format(nd=_nd),
            dilation=f"dilation : int or tuple of {_nd} ints, default 1\n",
            wshape=f"(in_channels, out_channels / groups, {_KERNEL[_nd]})"))

__all__ = ["Conv1d", "Conv2d", "Conv3d",
           "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]


def __dir__() -> List[str]:
    # Tab completion (which reads dir()) offers the layers, not the names
    # this module imports (np, typing) or its helpers.
    return sorted(__all__ + [n for n in globals() if n.startswith("__")])
