"""Convolution and transposed convolution in 1, 2 and 3 dimensions.

Each function validates its arguments (``_shapes``), places the call on a
device (``_dispatch``) and runs the primitives (``_ops``).  The semantics are
PyTorch's ``torch.nn.functional`` ones, with a few documented extensions:
``padding='same'`` at any stride, per-axis ``(low, high)`` padding pairs,
``padding_mode`` (including ``'symmetric'``) on the functional API and on
transposed convolutions, and ``out=``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

from . import _ops
from ._call import Call
from ._dispatch import is_dask_array
from ._shapes import conv_spec, transpose_spec

IntOrTuple = Union[int, Tuple[int, ...]]
Padding = Union[int, str, Tuple[int, ...], Tuple[Tuple[int, int], ...]]
Array = Any


def _conv(nd, input, weight, bias, stride, padding, dilation, groups,
          padding_mode, out, device):
    if is_dask_array(input):
        from . import dask as chunked
        return chunked.conv(nd, input, weight, bias, stride, padding, dilation,
                            groups, padding_mode, out, device)
    call = Call(device, input=input, weight=weight, bias=bias)
    spec = conv_spec(nd, call.shape("input"), call.shape("weight"),
                     call.shape("bias"), stride, padding, dilation, groups,
                     padding_mode)

    def compute(y5):
        b = None if bias is None else call.view5("bias", (spec.K,))
        _ops.conv_forward(call.backend, spec, call.view5("input", spec.x_shape),
                          call.view5("weight", spec.w_shape), b, y5)

    return call.result(spec.output_shape, spec.y_shape, compute, out)


def _conv_transpose(nd, input, weight, bias, stride, padding, output_padding,
                    groups, dilation, output_size, padding_mode, out, device):
    if is_dask_array(input):
        from . import dask as chunked
        return chunked.conv_transpose(nd, input, weight, bias, stride, padding,
                                      output_padding, groups, dilation,
                                      output_size, padding_mode, out, device)
    call = Call(device, input=input, weight=weight, bias=bias)
    spec = transpose_spec(nd, call.shape("input"), call.shape("weight"),
                          call.shape("bias"), stride, padding, output_padding,
                          groups, dilation, output_size, padding_mode)

    def compute(x5):
        b = None if bias is None else call.view5("bias", (spec.C,))
        _ops.conv_input(call.backend, spec, call.view5("input", spec.y_shape),
                        call.view5("weight", spec.w_shape), x5, b)

    return call.result(spec.output_shape, spec.x_shape, compute, out)


# ---------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------

def conv1d(input: Array, weight: Array, bias: Optional[Array] = None,
           stride: IntOrTuple = 1, padding: Padding = 0, dilation: IntOrTuple = 1,
           groups: int = 1, *, padding_mode: str = "zeros", out: Optional[Array] = None,
           device: Optional[str] = None) -> Array:
    return _conv(1, input, weight, bias, stride, padding, dilation, groups,
                 padding_mode, out, device)


def conv2d(input: Array, weight: Array, bias: Optional[Array] = None,
           stride: IntOrTuple = 1, padding: Padding = 0, dilation: IntOrTuple = 1,
           groups: int = 1, *, padding_mode: str = "zeros", out: Optional[Array] = None,
           device: Optional[str] = None) -> Array:
    return _conv(2, input, weight, bias, stride, padding, dilation, groups,
                 padding_mode, out, device)


def conv3d(input: Array, weight: Array, bias: Optional[Array] = None,
           stride: IntOrTuple = 1, padding: Padding = 0, dilation: IntOrTuple = 1,
           groups: int = 1, *, padding_mode: str = "zeros", out: Optional[Array] = None,
           device: Optional[str] = None) -> Array:
    return _conv(3, input, weight, bias, stride, padding, dilation, groups,
                 padding_mode, out, device)


def conv_transpose1d(input: Array, weight: Array, bias: Optional[Array] = None,
                     stride: IntOrTuple = 1, padding: Padding = 0,
                     output_padding: IntOrTuple = 0, groups: int = 1,
                     dilation: IntOrTuple = 1, *,
                     output_size: Optional[Sequence[int]] = None,
                     padding_mode: str = "zeros", out: Optional[Array] = None,
                     device: Optional[str] = None) -> Array:
    return _conv_transpose(1, input, weight, bias, stride, padding, output_padding,
                           groups, dilation, output_size, padding_mode, out, device)


def conv_transpose2d(input: Array, weight: Array, bias: Optional[Array] = None,
                     stride: IntOrTuple = 1, padding: Padding = 0,
                     output_padding: IntOrTuple = 0, groups: int = 1,
                     dilation: IntOrTuple = 1, *,
                     output_size: Optional[Sequence[int]] = None,
                     padding_mode: str = "zeros", out: Optional[Array] = None,
                     device: Optional[str] = None) -> Array:
    return _conv_transpose(2, input, weight, bias, stride, padding, output_padding,
                           groups, dilation, output_size, padding_mode, out, device)


def conv_transpose3d(input: Array, weight: Array, bias: Optional[Array] = None,
                     stride: IntOrTuple = 1, padding: Padding = 0,
                     output_padding: IntOrTuple = 0, groups: int = 1,
                     dilation: IntOrTuple = 1, *,
                     output_size: Optional[Sequence[int]] = None,
                     padding_mode: str = "zeros", out: Optional[Array] = None,
                     device: Optional[str] = None) -> Array:
    return _conv_transpose(3, input, weight, bias, stride, padding, output_padding,
                           groups, dilation, output_size, padding_mode, out, device)


# ---------------------------------------------------------------------------
# docstrings (one template per family, filled per dimension)
# ---------------------------------------------------------------------------

_SPATIAL = {1: "L", 2: "H, W", 3: "D, H, W"}
_KERNEL = {1: "kW", 2: "kH, kW", 3: "kD, kH, kW"}
_EXAMPLE_IN = {1: "(2, 4, 100)", 2: "(2, 4, 32, 32)", 3: "(2, 4, 16, 16, 16)"}
_EXAMPLE_W = {1: "(8, 4, 3)", 2: "(8, 4, 3, 3)", 3: "(8, 4, 3, 3, 3)"}
_EXAMPLE_OUT = {1: "(2, 8, 100)", 2: "(2, 8, 32, 32)", 3: "(2, 8, 16, 16, 16)"}
_EXAMPLE_TOUT = {1: "(2, 4, 200)", 2: "(2, 4, 64, 64)", 3: "(2, 4, 32, 32, 32)"}
_EXAMPLE_TW = {1: "(8, 4, 4)", 2: "(8, 4, 4, 4)", 3: "(8, 4, 4, 4, 4)"}
_EXAMPLE_TIN = {1: "(2, 8, 100)", 2: "(2, 8, 32, 32)", 3: "(2, 8, 16, 16, 16)"}

#: The padding modes, shown on ``a b c d`` padded by 2 on each side, with
#: their NumPy (``np.pad``) and SciPy (``ndimage``) names.
_MODE_TABLE = """\
    ================  ===================  ==========  =================
    ``padding_mode``  ``a b c d`` padded   ``np.pad``  ``scipy.ndimage``
    ================  ===================  ==========  =================
    'zeros'           ``0 0|a b c d|0 0``  constant    constant
    'reflect'         ``c b|a b c d|c b``  reflect     mirror
    'replicate'       ``a a|a b c d|d d``  edge        nearest
    'circular'        ``c d|a b c d|a b``  wrap        wrap
    'symmetric'       ``b a|a b c d|d c``  symmetric   reflect
    ================  ===================  ==========  =================
"""

_CONV_MODE = """\
padding_mode : {{'zeros', 'reflect', 'replicate', 'circular', 'symmetric'}}
    How the input is extended beyond its edges ('zeros' is PyTorch's
    default; 'symmetric' is beyond PyTorch):

""" + _MODE_TABLE.replace("{", "{{").replace("}", "}}") + """
    'reflect' needs padding < size; 'circular' and 'symmetric' need
    padding <= size.
"""

_TRANSPOSE_MODE = """\
padding_mode : {{'zeros', 'reflect', 'replicate', 'circular', 'symmetric'}}
    The padding mode of the convolution this call is the adjoint of.  With
    'zeros' the output is that convolution's input gradient, cropped by
    ``padding``; with another mode the parts that fell on the padded halo
    fold back onto the edge elements the halo was copied from.  The modes
    extend the convolution's input (this call's output) as in
    :func:`numbaconv.conv{nd}d`'s table, with the same size rules
    measured on this call's output size.
"""

_COMMON_PARAMS = """\
stride : int or tuple of {nd} ints, default 1
    Step between output positions, per axis.
dilation : int or tuple of {nd} ints, default 1
    Spacing between kernel taps, per axis.
groups : int, default 1
    Split channels into this many independent groups (``groups == C_in``
    with ``C_out = m * C_in`` is a depthwise convolution with multiplier m).
{mode}out : array, optional
    Array to write the result into: same kind of array as the input, exact
    output shape and dtype, sharing no memory with the inputs.
device : {{None, 'cpu', 'cuda', 'cuda:N'}}
    Where to compute.  None follows the arrays (GPU arrays run on the GPU);
    'cuda:N' picks GPU N.
"""

_CONV_DOC = """{nd}-D convolution (cross-correlation, as in PyTorch).

Parameters
----------
input : array of shape (N, C_in, {sp}) or (C_in, {sp})
    float32 or float64.  Unbatched input gives unbatched output.
weight : array of shape (C_out, C_in / groups, {k})
    Same dtype as ``input``.
bias : array of shape (C_out,), optional
padding : int, tuple, 'same' or 'valid', default 0
    How much to pad each axis, with zeros or as ``padding_mode`` says: an
    int, a tuple of {nd} ints, or a tuple of {nd} ``(low, high)`` pairs.
    'valid' is no padding; 'same' keeps the output size at
    ``ceil(size / stride)`` (at stride 1 the odd element of padding goes at
    the end, like PyTorch; at larger strides JAX's rule applies).
{common}
Returns
-------
array of shape (N, C_out, {sp_out}), or (C_out, {sp_out}) for unbatched input
    Per axis ``out = floor((size + low + high - dilation*(k-1) - 1) / stride) + 1``.
    Same dtype and kind of array as ``input`` (``out`` itself when given).

Raises
------
ValueError, TypeError
    On any inconsistent shape, hyper-parameter or dtype, before any compute.

Examples
--------
>>> import numpy as np, numbaconv
>>> x = np.random.default_rng(0).standard_normal({ex_in})
>>> w = np.ones({ex_w}) / 27
>>> numbaconv.conv{nd}d(x, w, padding="same").shape
{ex_out}
"""

_TRANSPOSE_DOC = """{nd}-D transposed convolution (the adjoint of conv{nd}d), as in PyTorch.

``conv_transpose{nd}d(g, w, ...)`` equals ``conv{nd}d_input(size, w, g, ...)``
plus the bias: the gradient of ``conv{nd}d`` with respect to its input.  With
a non-zero ``padding_mode`` it is defined the same way, as the exact adjoint
of the convolution with that padding mode (the padded halo folds back into
the output), which PyTorch does not offer.

Parameters
----------
input : array of shape (N, C_in, {sp}) or (C_in, {sp})
weight : array of shape (C_in, C_out / groups, {k})
bias : array of shape (C_out,), optional
padding : int, tuple, 'same' or 'valid', default 0
    The padding of the corresponding convolution (it crops the output).
    'same' makes the output exactly ``size * stride``.
output_padding : int or tuple of {nd} ints, default 0
    Extra size added at the high end of each axis, ``< max(stride, dilation)``.
output_size : tuple, optional
    The wanted output size (spatial dims, or all dims); it picks
    ``output_padding`` and must lie in the valid range, which the error states.
{common}
Returns
-------
array of shape (N, C_out, {sp_out}), or (C_out, {sp_out}) for unbatched input
    Per axis ``out = (size - 1)*stride - low - high + dilation*(k-1)
    + output_padding + 1``.  Same dtype and kind of array as ``input``
    (``out`` itself when given).

Examples
--------
>>> import numpy as np, numbaconv
>>> x = np.random.default_rng(0).standard_normal({ex_in})
>>> w = np.ones({ex_w})
>>> numbaconv.conv_transpose{nd}d(x, w, stride=2, padding=1).shape
{ex_out}
"""

for _nd, _f in ((1, conv1d), (2, conv2d), (3, conv3d)):
    _f.__doc__ = _CONV_DOC.format(
        nd=_nd, sp=_SPATIAL[_nd], k=_KERNEL[_nd],
        sp_out=", ".join(f"{a}_out" for a in _SPATIAL[_nd].split(", ")),
        common=_COMMON_PARAMS.format(nd=_nd, mode=_CONV_MODE.format(nd=_nd)),
        ex_in=_EXAMPLE_IN[_nd], ex_w=_EXAMPLE_W[_nd], ex_out=_EXAMPLE_OUT[_nd])

for _nd, _f in ((1, conv_transpose1d), (2, conv_transpose2d), (3, conv_transpose3d)):
    _f.__doc__ = _TRANSPOSE_DOC.format(
        nd=_nd, sp=_SPATIAL[_nd], k=_KERNEL[_nd],
        sp_out=", ".join(f"{a}_out" for a in _SPATIAL[_nd].split(", ")),
        common=_COMMON_PARAMS.format(nd=_nd, mode=_TRANSPOSE_MODE.format(nd=_nd)),
        ex_in=_EXAMPLE_TIN[_nd], ex_w=_EXAMPLE_TW[_nd], ex_out=_EXAMPLE_TOUT[_nd])

__all__ = ["conv1d", "conv2d", "conv3d",
           "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"]
