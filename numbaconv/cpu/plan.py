"""Which CPU kernel runs a call, and why: the one place that chooses.

Each primitive has a table, read top to bottom; the first row whose
condition holds names the kernel family that runs the call.  ``Kg`` is the
number of output channels per group, ``Cg`` input channels per group, ``KB``
the channels of the broadcast forward's register block (the target's:
``_target.BROADCAST_ROWS``).

forward (``forward.forward_cpu``)

=========== ==========================================================
kernel      when
=========== ==========================================================
broadcast   ``Kg >= broadcast.BROADCAST_MIN_CHANNELS`` (one block: ``min(8, KB)``)
panels      ``Kg >= 4``, ``Cg*KD*KH >= 16``, ``KW > 1``
pitched     unit height and width stride (rows one, two or four at a time;
            one thread below ``ONE_THREAD_WORK`` multiply-adds)
rows        anything else (a non-finite weight: the padding made real zeros)
=========== ==========================================================

backward_data (``backward_data.backward_data_cpu``)

=========== ==========================================================
kernel      when
=========== ==========================================================
gather      a non-finite weight, or stride and dilation both above 1 on an axis
subpixel    every strided axis has dilation 1 and ``s | KD``; enough channels
            x phases for a broadcast block, and ``Kg*n_d*n_h >= 16``
phases      anything else: one stride-1 forward per phase, scattered
=========== ==========================================================

backward_weight (``backward_weight.backward_weight_cpu``)

=========== ==========================================================
kernel      when
=========== ==========================================================
broadcast   ``Kg >= broadcast_grad.GRAD_MIN_CHANNELS`` (half a block of channels)
panels      ``Kg >= 4``, ``Cg*KD*KH >= 16``, ``KW > 1``
pitched     unit height and width stride
rows        anything else
=========== ==========================================================

``explain`` answers for a call's shapes, with the block parameters.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence, Union

import numpy as np

from . import _target
from .broadcast import BROADCAST_MIN_CHANNELS, KB, use_broadcast
from .broadcast_grad import GRAD_MIN_CHANNELS
from .broadcast_grad import use_broadcast_grad
from .panel import MIN_REDUCTION, PANEL_CHANNELS, PANEL_OUTPUTS, use_panels
from .subpixel import subpixel_taps


class Choice(NamedTuple):
    """A kernel family, why it runs the call, and its block parameters."""

    kernel: str
    reason: str
    params: dict


#: Multiply-adds below which the pitched forward runs on the calling thread
#: alone: waking the other threads (or waiting for one that another process
#: holds) costs more than they would take off such a call.
ONE_THREAD_WORK = 1 << 17


def forward_choice(w_shape, stride, dilation, groups, out_width, itemsize,
                   finite_weight=True, outputs=None) -> Choice:
    """The forward kernel for a (lifted, 3-D) weight shape and parameters;
    ``outputs`` (all output elements) decides whether a small call runs on
    one thread."""
    from .forward import QUAD, use_pairs, use_quads
    K, Cg, KD, KH, KW = w_shape
    Kg = K // groups
    if use_broadcast(w_shape, groups):
        return Choice("broadcast", "%d output channels per group >= %d (a register block "
                      "of %d channels x %d vectors)" % (Kg, BROADCAST_MIN_CHANNELS, KB,
                                                       _target.BROADCAST_VECTORS),
                      dict(channels=KB, vectors=_target.BROADCAST_VECTORS))
    if use_panels(w_shape, groups):
        return Choice("panels", "%d output channels per group, a reduction of %d >= %d "
                      "values per kernel column" % (Kg, Cg * KD * KH, MIN_REDUCTION),
                      dict(outputs=PANEL_OUTPUTS, channels=PANEL_CHANNELS))
    if stride[1] == 1 and stride[2] == 1:
        quads = use_quads(out_width, w_shape[2:], dilation, itemsize)
        pairs = not quads and use_pairs(out_width, w_shape[2:], dilation, itemsize)
        together = QUAD if quads else 2 if pairs else 1
        small = outputs is not None and outputs * Cg * KD * KH * KW < ONE_THREAD_WORK
        return Choice("pitched", "%d output channel(s) per group, unit height and width "
                      "stride; output rows %d at a time%s" % (
                          Kg, together, "; fewer than %d multiply-adds: one thread"
                          % ONE_THREAD_WORK if small else ""),
                      dict(vectors=_target.PITCHED_VECTORS, rows_together=together,
                           one_thread=small))
    return Choice("rows", "%d output channel(s) per group and stride %s along height or "
                  "width%s" % (Kg, tuple(stride[1:]), "" if finite_weight else
                               "; a non-finite weight: the padding is made real zeros"),
                  {})


def backward_data_choice(w_shape, stride, dilation, groups, finite_weight=True) -> Choice:
    """The input-gradient kernel for a (lifted, 3-D) weight shape and parameters."""
    if not finite_weight or any(s > 1 and d > 1 for s, d in zip(stride, dilation)):
        return Choice("gather", "a non-finite weight: only the taps that reach a real "
                      "output are summed" if not finite_weight else
                      "stride and dilation both above 1 on an axis", {})
    taps = subpixel_taps(w_shape, stride, dilation, groups)
    if taps is not None:
        return Choice("subpixel", "stride %s, every phase with taps %s: one broadcast "
                      "forward over all phases" % (tuple(stride), taps), dict(taps=taps))
    return Choice("phases", "one stride-1 forward per phase of stride %s, each choosing "
                  "its own kernel" % (tuple(stride),), {})


def backward_weight_choice(w_shape, stride, groups) -> Choice:
    """The weight-gradient kernel for a (lifted, 3-D) weight shape and stride."""
    K, Cg, KD, KH, KW = w_shape
    Kg = K // groups
    if use_broadcast_grad(w_shape, groups):
        return Choice("broadcast", "%d output channels per group >= %d (a register block "
                      "of %d taps x %d vectors of channels)" % (
                          Kg, GRAD_MIN_CHANNELS, _target.GRAD_ROWS, _target.GRAD_VECTORS),
                      dict(taps=_target.GRAD_ROWS, vectors=_target.GRAD_VECTORS))
    if use_panels(w_shape, groups):
        return Choice("panels", "%d output channels per group, a reduction of %d >= %d "
                      "values per kernel column" % (Kg, Cg * KD * KH, MIN_REDUCTION), {})
    if stride[1] == 1 and stride[2] == 1:
        return Choice("pitched", "%d output channel(s) per group, unit height and width "
                      "stride" % Kg, {})
    return Choice("rows", "%d output channel(s) per group and stride %s along height or "
                  "width" % (Kg, tuple(stride[1:])), {})


def _lifted(value, ndim, name):
    values = (value,) * ndim if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) != ndim or not all(isinstance(v, (int, np.integer)) and v >= 0
                                      for v in values):
        raise ValueError("%s must be a non-negative int or %d of them, got %r"
                         % (name, ndim, value))
    return (1,) * (3 - ndim) + tuple(int(v) for v in values)


Ints = Union[int, Sequence[int]]


def explain(op: str, input_shape: Sequence[int], weight_shape: Sequence[int], *,
            stride: Ints = 1, padding: Ints = 0, dilation: Ints = 1, groups: int = 1,
            dtype="float32", finite: bool = True) -> Choice:
    """Which CPU kernel a convolution call takes, and why.

    Parameters
    ----------
    op : {"forward", "backward_data", "backward_weight"}
        The primitive: a convolution's forward, its input gradient (also a
        transposed convolution's forward) or its weight gradient.
    input_shape, weight_shape : sequence of int
        ``(N, C, *spatial)`` and ``(K, C/groups, *kernel)``, 1 to 3 spatial
        axes (of the convolution whose primitive ``op`` is).
    stride, padding, dilation : int or sequence of int
        As in ``conv3d`` (zero padding, number of elements per side).
    groups : int
    dtype : str or numpy dtype
        ``float32`` or ``float64``.
    finite : bool
        False when the weight holds inf or NaN (other kernels then apply).

    Returns
    -------
    Choice
        ``kernel`` (the family), ``reason`` and ``params`` (block shape).

    Examples
    --------
    >>> from numbaconv.cpu.plan import explain
    >>> explain("forward", (1, 32, 16, 16, 16), (32, 32, 3, 3, 3), padding=1).kernel
    'broadcast'
    >>> explain("forward", (1, 1, 64, 64), (1, 1, 5, 5), padding=2).kernel
    'pitched'
    """
    if op not in ("forward", "backward_data", "backward_weight"):
        raise ValueError("op must be 'forward', 'backward_data' or 'backward_weight', "
                         "got %r" % (op,))
    ndim = len(weight_shape) - 2
    if not 1 <= ndim <= 3 or len(input_shape) != ndim + 2:
        raise ValueError("input_shape %r and weight_shape %r must be (N, C, *spatial) and "
                         "(K, C/groups, *kernel) with 1 to 3 spatial axes"
                         % (tuple(input_shape), tuple(weight_shape)))
    stride = _lifted(stride, ndim, "stride")
    padding = _lifted(padding, ndim, "padding")
    dilation = _lifted(dilation, ndim, "dilation")
    w_shape = tuple(weight_shape[:2]) + (1,) * (3 - ndim) + tuple(weight_shape[2:])
    size = (1,) * (3 - ndim) + tuple(input_shape[2:])
    out = [(L + 2 * p - d * (k - 1) - 1) // s + 1
           for L, p, d, k, s in zip(size, padding, dilation, w_shape[2:], stride)]
    if op == "forward":
        return forward_choice(w_shape, stride, dilation, groups, out[2],
                              np.dtype(dtype).itemsize, finite,
                              int(input_shape[0]) * w_shape[0] * int(np.prod(out)))
    if op == "backward_data":
        return backward_data_choice(w_shape, stride, dilation, groups, finite)
    return backward_weight_choice(w_shape, stride, groups)
