"""Gradients of convolution and transposed convolution.

* ``conv{1,2,3}d_input`` / ``conv{1,2,3}d_weight`` take the arguments of
  ``torch.nn.grad.conv*d_input`` / ``conv*d_weight`` (plus ``padding_mode``);
* ``conv{1,2,3}d_backward`` and ``conv_transpose{1,2,3}d_backward`` return
  ``(grad_input, grad_weight, grad_bias)`` at once, with ``None`` where
  ``output_mask`` is False.

All padding modes are differentiable: for a non-zero mode the gradient of the
padded halo folds back into the interior (``pad_backward``).  Weight and bias
gradients are reductions summed in a fixed order: the results are identical
whatever the number of threads.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from . import _ops
from ._call import Call
from ._dispatch import is_dask_array
from ._shapes import check_grad_output, conv_spec, transpose_spec
from .functional import IntOrTuple, Padding

Array = Any
Grads = Tuple[Optional[Array], Optional[Array], Optional[Array]]


def _size(value, name: str) -> tuple:
    """A shape given as a tuple (or torch.Size, list) of ints."""
    bad = TypeError(f"{name} must be a shape (a tuple of ints), got {value!r}")
    if isinstance(value, (str, bytes)):
        raise bad
    try:
        items = tuple(value)
    except TypeError:
        raise bad from None
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
               for v in items):
        raise bad
    return tuple(int(v) for v in items)


def _check_mask(output_mask) -> tuple:
    """Three truth values: which of (input, weight, bias) gradients to compute."""
    bad = TypeError(f"output_mask must be a sequence of 3 bools (input, weight, "
                    f"bias), got {output_mask!r}")
    if isinstance(output_mask, (str, bytes)):
        raise bad
    try:
        items = tuple(output_mask)
    except TypeError:
        raise bad from None
    if len(items) != 3:
        raise ValueError(f"output_mask must have 3 entries (input, weight, bias), "
                         f"got {output_mask!r}")
    if not all(isinstance(m, (bool, np.bool_)) for m in items):
        raise bad
    return tuple(bool(m) for m in items)


def _conv_input(nd, input_size, weight, grad_output, stride, padding, dilation,
                groups, padding_mode, device=None):
    if is_dask_array(grad_output):
        from . import dask as chunked
        return chunked.conv_input(nd, input_size, weight, grad_output, stride,
                                  padding, dilation, groups, padding_mode, device)
    call = Call(device, grad_output=grad_output, weight=weight)
    spec = conv_spec(nd, _size(input_size, "input_size"), call.shape("weight"),
                     None, stride, padding, dilation, groups, padding_mode)
    check_grad_output(spec, call.shape("grad_output"))

    def compute(gx5):
        _ops.conv_input(call.backend, spec, call.view5("grad_output", spec.y_shape),
                        call.view5("weight", spec.w_shape), gx5)

    return call.result(spec.input_shape, spec.x_shape, compute)


def _conv_weight(nd, input, weight_size, grad_output, stride, padding, dilation,
                 groups, padding_mode, device=None):
    if is_dask_array(input) or is_dask_array(grad_output):
        from . import dask as chunked
        return chunked.conv_weight(nd, input, weight_size, grad_output, stride,
                                   padding, dilation, groups, padding_mode, device)
    call = Call(device, input=input, grad_output=grad_output)
    weight_size = _size(weight_size, "weight_size")
    spec = conv_spec(nd, call.shape("input"), weight_size, None, stride, padding,
                     dilation, groups, padding_mode)
    check_grad_output(spec, call.shape("grad_output"))

    def compute(gw5):
        _ops.conv_weight(call.backend, spec, call.view5("input", spec.x_shape),
                         call.view5("grad_output", spec.y_shape), gw5)

    return call.result(spec.weight_shape, spec.w_shape, compute)


def _bias(call: Call, shape5: tuple, channels: int):
    """Sum of ``grad_output`` (5-D shape ``shape5``) over batch and space."""
    return call.result((channels,), (channels,), lambda gb: call.backend.bias_grad(
        call.view5("grad_output", shape5), gb))


def _conv_backward(nd, grad_output, input, weight, stride, padding, dilation,
                   groups, padding_mode, output_mask, device) -> Grads:
    mask = _check_mask(output_mask)
    if is_dask_array(input) or is_dask_array(grad_output):
        from . import dask as chunked
        return chunked.conv_backward(nd, grad_output, input, weight, stride,
                                     padding, dilation, groups, padding_mode,
                                     mask, device)
    call = Call(device, input=input, weight=weight, grad_output=grad_output)
    spec = conv_spec(nd, call.shape("input"), call.shape("weight"), None, stride,
                     padding, dilation, groups, padding_mode)
    check_grad_output(spec, call.shape("grad_output"))
    be = call.backend
    gy5 = lambda: call.view5("grad_output", spec.y_shape)  # noqa: E731
    gi = gw = gb = None
    if mask[0]:
        gi = call.result(spec.input_shape, spec.x_shape, lambda gx5: _ops.conv_input(
            be, spec, gy5(), call.view5("weight", spec.w_shape), gx5))
    if mask[1]:
        gw = call.result(spec.weight_shape, spec.w_shape, lambda gw5: _ops.conv_weight(
            be, spec, call.view5("input", spec.x_shape), gy5(), gw5))
    if mask[2]:
        gb = _bias(call, spec.y_shape, spec.K)
    return gi, gw, gb


def _conv_transpose_backward(nd, grad_output, input, weight, stride, padding,
                             output_padding, groups, dilation, padding_mode,
                             output_mask, device) -> Grads:
    # The transposed call maps the spec's y (its input) to x (its output), so
    # its input gradient is the forward convolution of grad_output and its
    # weight gradient is backward_weight with the roles of x and y swapped.
    mask = _check_mask(output_mask)
    if is_dask_array(input) or is_dask_array(grad_output):
        from . import dask as chunked
        return chunked.conv_transpose_backward(
            nd, grad_output, input, weight, stride, padding, output_padding,
            groups, dilation, padding_mode, mask, device)
    call = Call(device, input=input, weight=weight, grad_output=grad_output)
    spec = transpose_spec(nd, call.shape("input"), call.shape("weight"), None,
                          stride, padding, output_padding, groups, dilation,
                          None, padding_mode)
    check_grad_output(spec, call.shape("grad_output"))
    be = call.backend
    g5 = lambda: call.view5("grad_output", spec.x_shape)  # noqa: E731
    gi = gw = gb = None
    if mask[0]:
        gi = call.result(spec.input_shape, spec.y_shape, lambda y5: _ops.conv_forward(
            be, spec, g5(), call.view5("weight", spec.w_shape), None, y5))
    if mask[1]:
        gw = call.result(spec.weight_shape, spec.w_shape, lambda gw5: _ops.conv_weight(
            be, spec, g5(), call.view5("input", spec.y_shape), gw5))
    if mask[2]:
        gb = _bias(call, spec.x_shape, spec.C)
    return gi, gw, gb


# ---------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------

def conv1d_input(input_size: Sequence[int], weight: Array, grad_output: Array,
                 stride: IntOrTuple = 1, padding: Padding = 0,
                 dilation: IntOrTuple = 1, groups: int = 1, *,
                 padding_mode: str = "zeros", device: Optional[str] = None) -> Array:
    return _conv_input(1, input_size, weight, grad_output, stride, padding,
                       dilation, groups, padding_mode, device)


def conv2d_input(input_size: Sequence[int], weight: Array, grad_output: Array,
                 stride: IntOrTuple = 1, padding: Padding = 0,
                 dilation: IntOrTuple = 1, groups: int = 1, *,
                 padding_mode: str = "zeros", device: Optional[str] = None) -> Array:
    return _conv_input(2, input_size, weight, grad_output, stride, padding,
                       dilation, groups, padding_mode, device)


def conv3d_input(input_size: Sequence[int], weight: Array, grad_output: Array,
                 stride: IntOrTuple = 1, padding: Padding = 0,
                 dilation: IntOrTuple = 1, groups: int = 1, *,
                 padding_mode: str = "zeros", device: Optional[str] = None) -> Array:
    return _conv_input(3, input_size, weight, grad_output, stride, padding,
                       dilation, groups, padding_mode, device)


def conv1d_weight(input: Array, weight_size: Sequence[int], grad_output: Array,
                  stride: IntOrTuple = 1, padding: Padding = 0,
                  dilation: IntOrTuple = 1, groups: int = 1, *,
                  padding_mode: str = "zeros", device: Optional[str] = None) -> Array:
    return _conv_weight(1, input, weight_size, grad_output, stride, padding,
                        dilation, groups, padding_mode, device)


def conv2d_weight(input: Array, weight_size: Sequence[int], grad_output: Array,
                  stride: IntOrTuple = 1, padding: Padding = 0,
                  dilation: IntOrTuple = 1, groups: int = 1, *,
                  padding_mode: str = "zeros", device: Optional[str] = None) -> Array:
    return _conv_weight(2, input, weight_size, grad_output, stride, padding,
                        dilation, groups, padding_mode, device)


def conv3d_weight(input: Array, weight_size: Sequence[int], grad_output: Array,
                  stride: IntOrTuple = 1, padding: Padding = 0,
                  dilation: IntOrTuple = 1, groups: int = 1, *,
                  padding_mode: str = "zeros", device: Optional[str] = None) -> Array:
    return _conv_weight(3, input, weight_size, grad_output, stride, padding,
                        dilation, groups, padding_mode, device)


def conv1d_backward(grad_output: Array, input: Array, weight: Array,
                    stride: IntOrTuple = 1, padding: Padding = 0,
                    dilation: IntOrTuple = 1, groups: int = 1, *,
                    padding_mode: str = "zeros",
                    output_mask: Sequence[bool] = (True, True, True),
                    device: Optional[str] = None) -> Grads:
    return _conv_backward(1, grad_output, input, weight, stride, padding, dilation,
                          groups, padding_mode, output_mask, device)


def conv2d_backward(grad_output: Array, input: Array, weight: Array,
                    stride: IntOrTuple = 1, padding: Padding = 0,
                    dilation: IntOrTuple = 1, groups: int = 1, *,
                    padding_mode: str = "zeros",
                    output_mask: Sequence[bool] = (True, True, True),
                    device: Optional[str] = None) -> Grads:
    return _conv_backward(2, grad_output, input, weight, stride, padding, dilation,
                          groups, padding_mode, output_mask, device)


def conv3d_backward(grad_output: Array, input: Array, weight: Array,
                    stride: IntOrTuple = 1, padding: Padding = 0,
                    dilation: IntOrTuple = 1, groups: int = 1, *,
                    padding_mode: str = "zeros",
                    output_mask: Sequence[bool] = (True, True, True),
                    device: Optional[str] = None) -> Grads:
    return _conv_backward(3, grad_output, input, weight, stride, padding, dilation,
                          groups, padding_mode, output_mask, device)


def conv_transpose1d_backward(grad_output: Array, input: Array, weight: Array,
                              stride: IntOrTuple = 1, padding: Padding = 0,
                              output_padding: IntOrTuple = 0, groups: int = 1,
                              dilation: IntOrTuple = 1, *, padding_mode: str = "zeros",
                              output_mask: Sequence[bool] = (True, True, True),
                              device: Optional[str] = None) -> Grads:
    return _conv_transpose_backward(1, grad_output, input, weight, stride, padding,
                                    output_padding, groups, dilation, padding_mode,
                                    output_mask, device)


def conv_transpose2d_backward(grad_output: Array, input: Array, weight: Array,
                              stride: IntOrTuple = 1, padding: Padding = 0,
                              output_padding: IntOrTuple = 0, groups: int = 1,
                              dilation: IntOrTuple = 1, *, padding_mode: str = "zeros",
                              output_mask: Sequence[bool] = (True, True, True),
                              device: Optional[str] = None) -> Grads:
    return _conv_transpose_backward(2, grad_output, input, weight, stride, padding,
                                    output_padding, groups, dilation, padding_mode,
                                    output_mask, device)


def conv_transpose3d_backward(grad_output: Array, input: Array, weight: Array,
                              stride: IntOrTuple = 1, padding: Padding = 0,
                              output_padding: IntOrTuple = 0, groups: int = 1,
                              dilation: IntOrTuple = 1, *, padding_mode: str = "zeros",
                              output_mask: Sequence[bool] = (True, True, True),
                              device: Optional[str] = None) -> Grads:
    return _conv_transpose_backward(3, grad_output, input, weight, stride, padding,
                                    output_padding, groups, dilation, padding_mode,
                                    output_mask, device)


# ---------------------------------------------------------------------------
# docstrings
# ---------------------------------------------------------------------------

_EX_X = {1: "(2, 3, 20)", 2: "(2, 3, 12, 12)", 3: "(2, 3, 8, 8, 8)"}
_EX_W = {1: "(4, 3, 3)", 2: "(4, 3, 3, 3)", 3: "(4, 3, 3, 3, 3)"}
_EX_Y = {1: "(2, 4, 18)", 2: "(2, 4, 10, 10)", 3: "(2, 4, 6, 6, 6)"}
_EX_TW = {1: "(4, 3, 3)", 2: "(4, 3, 3, 3)", 3: "(4, 3, 3, 3, 3)"}
_EX_TX = {1: "(2, 4, 20)", 2: "(2, 4, 12, 12)", 3: "(2, 4, 8, 8, 8)"}

_ARGS = """\
stride, padding, dilation, groups, padding_mode
    As in the forward ``conv{nd}d`` call whose gradient is wanted."""

_INPUT_DOC = """Gradient of ``conv{nd}d`` with respect to its input.

Argument-compatible with ``torch.nn.grad.conv{nd}d_input``.

Parameters
----------
input_size : tuple of ints
    Shape of the forward call's input (batched or unbatched).
weight : array
    The forward call's weight.
grad_output : array
    Gradient of the loss with respect to the forward output; its shape must
    be the forward output shape.
{args}
device : {{None, 'cpu', 'cuda', 'cuda:N'}}
    Where to compute; None follows the arrays (a numbaconv extension).

Returns
-------
array of shape ``input_size``

Examples
--------
>>> import numpy as np, numbaconv
>>> w = np.ones({ex_w}); g = np.ones({ex_y})
>>> numbaconv.conv{nd}d_input({ex_x}, w, g).shape
{ex_x}
"""

_WEIGHT_DOC = """Gradient of ``conv{nd}d`` with respect to its weight.

Argument-compatible with ``torch.nn.grad.conv{nd}d_weight``.

Parameters
----------
input : array
    The forward call's input.
weight_size : tuple of ints
    Shape of the forward call's weight.
grad_output : array
    Gradient of the loss with respect to the forward output.
{args}
device : {{None, 'cpu', 'cuda', 'cuda:N'}}
    Where to compute; None follows the arrays (a numbaconv extension).

Returns
-------
array of shape ``weight_size``

Examples
--------
>>> import numpy as np, numbaconv
>>> x = np.ones({ex_x}); g = np.ones({ex_y})
>>> numbaconv.conv{nd}d_weight(x, {ex_w}, g).shape
{ex_w}
"""

_BACKWARD_DOC = """All gradients of ``conv{nd}d`` at once.

Parameters
----------
grad_output, input, weight : arrays
    The output gradient and the forward call's input and weight.
{args}
output_mask : 3 bools, default (True, True, True)
    Which of (input, weight, bias) gradients to compute.
device : {{None, 'cpu', 'cuda', 'cuda:N'}}
    Where to compute; None follows the arrays.

Returns
-------
(grad_input, grad_weight, grad_bias)
    ``None`` where ``output_mask`` is False.  ``grad_bias`` is the sum of
    ``grad_output`` over batch and space.

Examples
--------
>>> import numpy as np, numbaconv
>>> x = np.ones({ex_x}); w = np.ones({ex_w}); g = np.ones({ex_y})
>>> gi, gw, gb = numbaconv.conv{nd}d_backward(g, x, w)
>>> gi.shape, gw.shape, gb.shape
({ex_x}, {ex_w}, (4,))
"""

_TBACKWARD_DOC = """All gradients of ``conv_transpose{nd}d`` at once.

Parameters
----------
grad_output, input, weight : arrays
    The output gradient and the forward call's input and weight.
stride, padding, output_padding, groups, dilation, padding_mode
    As in the forward ``conv_transpose{nd}d`` call.
output_mask : 3 bools, default (True, True, True)
    Which of (input, weight, bias) gradients to compute.
device : {{None, 'cpu', 'cuda', 'cuda:N'}}
    Where to compute; None follows the arrays.

Returns
-------
(grad_input, grad_weight, grad_bias)
    ``None`` where ``output_mask`` is False.

Examples
--------
>>> import numpy as np, numbaconv
>>> x = np.ones({ex_tx}); w = np.ones({ex_tw}); g = np.ones({ex_ty})
>>> gi, gw, gb = numbaconv.conv_transpose{nd}d_backward(g, x, w, padding=1, stride=1)
>>> gi.shape, gw.shape, gb.shape
({ex_tx}, {ex_tw}, (3,))
"""

for _nd in (1, 2, 3):
    _fmt = dict(nd=_nd, args=_ARGS.format(nd=_nd), ex_x=_EX_X[_nd], ex_w=_EX_W[_nd],
                ex_y=_EX_Y[_nd], ex_tx=_EX_TX[_nd], ex_tw=_EX_TW[_nd],
                ex_ty=_EX_X[_nd])
    globals()[f"conv{_nd}d_input"].__doc__ = _INPUT_DOC.format(**_fmt)
    globals()[f"conv{_nd}d_weight"].__doc__ = _WEIGHT_DOC.format(**_fmt)
    globals()[f"conv{_nd}d_backward"].__doc__ = _BACKWARD_DOC.format(**_fmt)
    globals()[f"conv_transpose{_nd}d_backward"].__doc__ = _TBACKWARD_DOC.format(**_fmt)

__all__ = [f"conv{n}d_{kind}" for n in (1, 2, 3) for kind in ("input", "weight", "backward")] \
    + [f"conv_transpose{n}d_backward" for n in (1, 2, 3)]
