"""SciPy's ``ndimage`` correlations, multi-threaded: a drop-in for
``scipy.ndimage.correlate``, ``convolve``, ``correlate1d`` and ``convolve1d``.

The functions take SciPy's arguments (SciPy >= 1.15 signatures) and give
SciPy's results, up to floating-point rounding (the sums run in another
order; ``float32`` data is summed in ``float32``).  They are a translation
onto the same primitives as the rest of the library, no kernels of their
own:

* the input becomes one channel of ``(N, 1, D, H, W)``, in place: each
  filtered axis is a spatial axis, each run of unfiltered axes after the
  first filtered one a spatial axis of kernel size 1, the axes before it
  the batch (``axes=``, or kernel axes of size 1, leave axes unfiltered);
* the SciPy mode becomes an explicit ``pad`` step (``reflect`` is the
  backend's ``symmetric``, ``mirror`` its ``reflect``, ``nearest`` its
  ``replicate``, ``wrap`` its ``circular``; ``constant`` pads with ``cval``,
  or is the forward kernel's implicit zero padding when ``cval`` is 0);
* ``origin`` makes the padding asymmetric: along an axis with ``k`` taps,
  ``lo = k // 2 + origin`` and ``hi = k - 1 - lo``;
* ``convolve`` correlates with the flipped weights and SciPy's origin rule
  (``origin -> -origin - 1`` for an even ``k``);
* the forward primitive then runs with zero padding 0 (stride 1).

Integer and boolean data are computed in ``float64`` and cast to the output
dtype as SciPy casts them (truncation toward zero).  Complex data or weights
are composed of real correlations as SciPy composes them.

Reuse by other array layers
---------------------------
:func:`_ndimage_plan` is the whole argument normalisation, without any array
work: it takes the input's shape, the weights, mode, cval, origin and axes
and returns an :class:`NdimagePlan` (filtered axes, per-axis ``lo``/``hi``
padding, the correlation weights after any flip, the backend padding mode).
A chunked layer (dask) can take its halos from ``plan.halo`` and call
:func:`correlate` on each block with ``mode`` of the plan on the edges of
the whole array.

Examples
--------
>>> import numpy as np
>>> from numbaconv import ndimage
>>> ndimage.correlate1d(np.array([2, 8, 0, 4, 1, 9, 9, 0]), weights=[1, 3])
array([ 8, 26,  8, 12,  7, 28, 36,  9])
"""

from __future__ import annotations

import functools
import math
import operator
import sys
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from ._dispatch import place

__all__ = ["correlate", "convolve", "correlate1d", "convolve1d", "MODES",
           "NdimagePlan"]

Array = Any

#: SciPy's mode names, and the padding each one is (``constant``: ``cval``).
MODES = {
    "reflect": "symmetric",
    "grid-mirror": "symmetric",
    "mirror": "reflect",
    "nearest": "replicate",
    "wrap": "circular",
    "grid-wrap": "circular",
    "constant": "constant",
    "grid-constant": "constant",
}

#: Weights whose magnitude is at most this (and NaN weights) take no part in
#: SciPy's ``correlate``/``convolve`` (not in the 1-D functions).
_SKIPPED_WEIGHT = np.finfo(np.float64).eps

_MAX_AXES = 3
_ONE3 = (1, 1, 1)
_ZERO3 = (0, 0, 0)


class _ValueError(ValueError, RuntimeError):
    """Bad argument that SciPy reports as a ``RuntimeError``: also one, so
    code written against SciPy keeps catching it."""


class _TypeError(TypeError, RuntimeError):
    """Bad type that SciPy reports as a ``RuntimeError`` (see _ValueError)."""


@dataclass(frozen=True)
class NdimagePlan:
    """A SciPy-dialect call reduced to the library's terms.

    Attributes
    ----------
    shape : tuple of int
        The input's shape.
    axes : tuple of int
        The filtered axes, ascending (at most three; kernel axes of size 1
        are not filtered).
    weights : numpy.ndarray
        float64 correlation weights over ``axes`` (flipped for a
        convolution; the weights SciPy skips are zeros).
    lo, hi : tuple of int
        Padding before and after each axis of ``axes``.
    mode : str
        SciPy's mode name as given.
    pad_mode : str
        ``'constant'`` or a ``numbaconv._backend.MODES`` name.
    cval : float
        The constant of the constant modes.
    skips_zero_weights : bool
        Whether taps with zero weight take no part in a sum (``correlate``
        and ``convolve``; a NaN input under them does not reach the result).
    """

    shape: Tuple[int, ...]
    axes: Tuple[int, ...]
    weights: np.ndarray
    lo: Tuple[int, ...]
    hi: Tuple[int, ...]
    mode: str
    pad_mode: str
    cval: float
    skips_zero_weights: bool

    @property
    def batch_axes(self) -> Tuple[int, ...]:
        """The axes that are not filtered, ascending."""
        return tuple(a for a in range(len(self.shape)) if a not in self.axes)

    @property
    def halo(self) -> Tuple[Tuple[int, int], ...]:
        """``(before, after)`` input elements each output reads, per input axis."""
        pads = dict(zip(self.axes, zip(self.lo, self.hi)))
        return tuple(pads.get(a, (0, 0)) for a in range(len(self.shape)))


def _check_mode(mode) -> str:
    if not isinstance(mode, str):
        if isinstance(mode, (list, tuple)):
            raise _ValueError(f"mode must be one string; a sequence of modes "
                              f"is not supported, got mode={mode!r}")
        raise _TypeError(f"mode must be a string, got {type(mode).__name__}")
    if mode not in MODES:
        valid = ", ".join(repr(m) for m in MODES)
        raise _ValueError(f"mode={mode!r} is not a boundary mode; valid modes "
                          f"are {valid}")
    return mode


def _check_cval(cval) -> float:
    if np.iscomplexobj(cval):
        raise ValueError(f"Cannot provide a complex-valued cval when the input "
                         f"is real, got cval={cval!r}")
    try:
        return float(cval)
    except (TypeError, ValueError):
        raise TypeError(f"cval must be a real number, got {cval!r}") from None


def _check_axes(axes, ndim: int) -> Tuple[int, ...]:
    """SciPy's axes rules: ints in range, unique; None means every axis."""
    if axes is None:
        return tuple(range(ndim))
    if np.isscalar(axes):
        axes = (axes,)
    try:
        items = tuple(axes)
    except TypeError:
        raise ValueError(f"axes must be an integer, iterable of integers, or "
                         f"None, got {axes!r}") from None
    out = []
    for ax in items:
        try:
            ax = operator.index(ax)
        except TypeError:
            raise TypeError(f"axes must be integers, got {ax!r} in "
                            f"axes={axes!r}") from None
        if ax < -ndim or ax > ndim - 1:
            raise ValueError(f"axes={axes!r}: axis {ax} is out of range for "
                             f"an input of {ndim} dimensions")
        out.append(ax % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"axes must be unique, got axes={axes!r}")
    return tuple(out)


def _origins(origin, axes: Tuple[int, ...], ndim: int) -> list:
    """One origin per input axis (0 on the axes not named in ``axes``)."""
    if isinstance(origin, str) or not np.iterable(origin):
        given = [origin] * len(axes)
    else:
        given = list(origin)
        if len(given) != len(axes):
            raise _ValueError(f"origin must be one int or one per filtered "
                              f"axis ({len(axes)}), got origin={origin!r}")
    if len(axes) == ndim:
        # SciPy maps origins to the given axes only when some axis is left
        # out; naming every axis keeps the positional order.
        axes = tuple(range(ndim))
    full = [0] * ndim
    for o, ax in zip(given, axes):
        try:
            full[ax] = operator.index(o)
        except TypeError:
            raise TypeError(f"origin must be an int or a sequence of ints, "
                            f"got origin={origin!r}") from None
    return full


def _real_weights(weights, name: str = "weights") -> np.ndarray:
    w = weights if isinstance(weights, np.ndarray) else _host_weights(weights)
    if w.dtype == object:
        raise TypeError(f"{name} must be an array of numbers, got an object array")
    if w.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {w.dtype}, which is not a real "
                        f"number type")
    return np.asarray(w, dtype=np.float64)


def _host_weights(weights) -> np.ndarray:
    if hasattr(weights, "__cuda_array_interface__") and not isinstance(weights, np.ndarray):
        from .cuda import arrays
        return arrays.to_host(arrays.as_device_array(weights))
    if _is_dataarray(weights):
        return np.asarray(weights.values)
    return np.asarray(weights)


def _ndimage_plan(input_shape: Sequence[int], weights, mode: str = "reflect",
                  cval: float = 0.0, origin=0, axes=None, *,
                  convolution: bool = False, axis=None) -> NdimagePlan:
    """Check a SciPy-dialect call's arguments and translate them.

    Parameters
    ----------
    input_shape : tuple of int
        Shape of the input.
    weights : array_like
        Real weights: ``len(axes)`` dimensions (all dimensions when ``axes``
        is None), or one dimension when ``axis`` is given.
    mode, cval, origin, axes
        As in :func:`correlate`.
    convolution : bool
        Flip the weights and apply SciPy's origin rule for convolutions.
    axis : int, optional
        Makes this the plan of a 1-D call (``correlate1d``) along ``axis``:
        ``weights`` is 1-D and ``axes`` is ignored.

    Returns
    -------
    NdimagePlan

    Examples
    --------
    >>> p = _ndimage_plan((10, 20, 30), np.ones((1, 4, 3)), "mirror", origin=(0, 1, 0))
    >>> p.axes, p.lo, p.hi, p.pad_mode, p.halo
    ((1, 2), (3, 1), (0, 1), 'reflect', ((0, 0), (3, 0), (1, 1)))
    """
    shape = tuple(int(s) for s in input_shape)
    ndim = len(shape)
    mode = _check_mode(mode)
    cval = _check_cval(cval)
    w = _real_weights(weights)
    if axis is not None:
        if w.ndim != 1 or w.shape[0] < 1:
            raise _ValueError(f"weights must be a non-empty 1-D sequence, got "
                              f"weights of shape {w.shape}")
        try:
            axis = operator.index(axis)
        except TypeError:
            raise TypeError(f"axis must be an int, got {axis!r}") from None
        if not -ndim <= axis < ndim or ndim == 0:
            raise np.exceptions.AxisError(
                f"axis {axis} is out of bounds for array of dimension {ndim}")
        axes = (axis % ndim,)
        try:
            origins = [0] * ndim
            origins[axes[0]] = operator.index(origin)
        except TypeError:
            raise TypeError(f"origin must be an int, got origin={origin!r}") from None
        w = w.reshape([w.shape[0] if a == axes[0] else 1 for a in range(ndim)])
    else:
        axes = _check_axes(axes, ndim)
        origins = _origins(origin, axes, ndim)
        if len(axes) < ndim:
            if w.ndim != len(axes):
                raise _ValueError(f"weights.ndim ({w.ndim}) must match "
                                  f"len(axes) ({len(axes)}); weights has shape "
                                  f"{w.shape}, axes={axes}")
            w = np.expand_dims(w, tuple(a for a in range(ndim) if a not in axes))
        if w.ndim != ndim:
            raise _ValueError(f"weights.ndim ({w.ndim}) must match input.ndim "
                              f"({ndim}); weights has shape {w.shape}, input "
                              f"has shape {shape}")
        if w.size == 0:
            raise _ValueError(f"weights must not be empty, got shape {w.shape}")
    if convolution:
        w = w[(slice(None, None, -1),) * ndim]
        origins = [-o - (0 if k % 2 else 1) for o, k in zip(origins, w.shape)]
    for ax, (o, k) in enumerate(zip(origins, w.shape)):
        if o < -(k // 2) or o > (k - 1) // 2:
            what = "origin" if axis is None else f"origin (axis {ax})"
            raise ValueError(f"Invalid {what}: origin must satisfy "
                             f"-(weights.shape[k] // 2) <= origin[k] <= "
                             f"(weights.shape[k]-1) // 2; got origin {o} "
                             f"for {k} weights along axis {ax}"
                             + (" (after the convolution's flip)"
                                if convolution else ""))
    filtered = tuple(a for a in range(ndim) if w.shape[a] > 1)
    if len(filtered) > _MAX_AXES:
        raise ValueError(f"at most {_MAX_AXES} axes can be filtered in one "
                         f"call; weights of shape {w.shape} filter axes "
                         f"{filtered}: filter fewer axes per call")
    skips = axis is None
    w = w.reshape([w.shape[a] for a in filtered])
    if skips:
        # SciPy's correlate leaves out the taps it considers zero.
        w = np.where(np.abs(w) > _SKIPPED_WEIGHT, w, 0.0)
    lo = tuple(w.shape[i] // 2 + origins[a] for i, a in enumerate(filtered))
    hi = tuple(w.shape[i] - 1 - lo[i] for i in range(len(filtered)))
    w = np.ascontiguousarray(w)
    w.flags.writeable = False
    return NdimagePlan(shape, filtered, w, lo, hi, mode, MODES[mode], cval,
                       skips)


# ---------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------

def _output_dtype(output, input_dtype: np.dtype) -> Optional[np.dtype]:
    """The dtype ``output`` asks for (None: it is an array)."""
    if output is None:
        return input_dtype
    if isinstance(output, (type, np.dtype, str)):
        try:
            dtype = np.dtype(output)
        except TypeError:
            raise TypeError(f"output must be an array or a dtype, got "
                            f"{output!r}") from None
        return dtype
    return None


def _check_real_dtype(name: str, dtype: np.dtype) -> None:
    if dtype.kind in "biu" or dtype in (np.float32, np.float64):
        return
    if dtype == np.float16:
        raise _TypeError(f"{name} has dtype float16, which SciPy's ndimage "
                         f"does not support either; cast it to float32")
    raise _TypeError(f"{name} has dtype {dtype}, which is not supported: "
                     f"use a boolean, integer, float32 or float64 array")


def _compute_dtype(in_dtype: np.dtype, out_dtype: np.dtype) -> np.dtype:
    """float32 only where data and result are both float32 (SciPy sums in
    float64; a float32 result keeps float32's precision either way)."""
    if in_dtype == np.float32 and out_dtype == np.float32:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


# ---------------------------------------------------------------------------
# array kinds at the edge
# ---------------------------------------------------------------------------

def _is_dataarray(obj) -> bool:
    xr = sys.modules.get("xarray")
    return xr is not None and isinstance(obj, xr.DataArray)


def _wrap_like_dataarray(result, template):
    import xarray as xr
    return xr.DataArray(result, dims=template.dims, coords=template.coords,
                        attrs=dict(template.attrs), name=template.name)


def _edge(func):
    """Take xarray DataArrays in and give them back, around ``func``."""
    @functools.wraps(func)
    def call(input, weights, *args, **kwargs):
        if not _is_dataarray(input):
            return func(input, weights, *args, **kwargs)
        output = kwargs.get("output")
        if _is_dataarray(output):
            kwargs["output"] = output.values
            func(input.data, weights, *args, **kwargs)
            return output
        result = func(input.data, weights, *args, **kwargs)
        return _wrap_like_dataarray(result, input)
    return call


# ---------------------------------------------------------------------------
# the computation
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Layout:
    """How an input of the plan's shape is seen as ``(N, 1, D, H, W)``.

    ``perm`` orders the input's axes (None: they stay in place, the 5-D view
    is a reshape); ``shape5``/``kernel5`` are the data and weight shapes,
    ``lo``/``hi`` the padding of the three spatial axes.
    """

    perm: Optional[Tuple[int, ...]]
    shape5: Tuple[int, ...]
    kernel5: Tuple[int, ...]
    lo: Tuple[int, int, int]
    hi: Tuple[int, int, int]

    @property
    def padded5(self) -> Tuple[int, ...]:
        return self.shape5[:2] + tuple(s + a + b for s, a, b in
                                       zip(self.shape5[2:], self.lo, self.hi))


def _layout(plan: NdimagePlan) -> _Layout:
    """The 5-D view of the input that needs no copy where one exists.

    From the first filtered axis on, each filtered axis is a spatial axis
    and each run of unfiltered axes between or after them is one spatial
    axis of kernel size 1 (no padding); the axes before it are the batch.
    Where that takes more than three spatial axes, the unfiltered axes are
    moved to the front (a transposed copy).
    """
    cached = plan.__dict__.get("_layout")
    if cached is not None:
        return cached
    shape, axes = plan.shape, plan.axes
    pads = dict(zip(axes, zip(plan.lo, plan.hi, plan.weights.shape)))
    first = axes[0] if axes else len(shape)
    groups = []                     # [size, kernel, lo, hi] per spatial axis
    for a in range(first, len(shape)):
        if a in pads:
            lo, hi, k = pads[a]
            groups.append([shape[a], k, lo, hi])
        elif groups and groups[-1][1] == 1 and groups[-1][2:] == [0, 0]:
            groups[-1][0] *= shape[a]
        else:
            groups.append([shape[a], 1, 0, 0])
    perm = None
    batch = math.prod(shape[:first])
    if len(groups) > 3:
        perm = plan.batch_axes + axes
        batch = math.prod(shape[a] for a in plan.batch_axes)
        groups = [[shape[a], k, lo, hi] for a, (lo, hi, k) in
                  zip(axes, (pads[a] for a in axes))]
    if len(groups) < 3 and batch > 1:
        # The kernels split their work over rows and planes: a batch is
        # one more spatial axis of kernel size 1 where there is room.
        groups.insert(0, [batch, 1, 0, 0])
        batch = 1
    while len(groups) < 3:
        groups.insert(0, [1, 1, 0, 0])
    lay = _Layout(perm, (batch, 1) + tuple(g[0] for g in groups),
                  (1, 1) + tuple(g[1] for g in groups),
                  tuple(g[2] for g in groups), tuple(g[3] for g in groups))
    object.__setattr__(plan, "_layout", lay)   # a plan is reused (_cached_plan)
    return lay

def _correlate(input, weights, output, mode, cval, origin, axes,
               convolution, axis):
    """Everything but the edge: complex split, plan, device, run."""
    if _is_gpu_array(input):
        return _correlate_gpu(input, weights, output, mode, cval, origin,
                              axes, convolution, axis)
    x = _host_input(input)
    w = _host_weights(weights)
    if x.dtype.kind == "c" or w.dtype.kind == "c":
        return _complex(x, w, output, mode, cval, origin, axes, convolution,
                        axis)
    plan = _cached_plan(x.shape, w, mode, cval, origin, axes, convolution,
                        axis)
    _check_real_dtype("input", x.dtype)
    target = _host_output(output, x)
    cdt = _compute_dtype(x.dtype, target.dtype)
    # The kernels write the caller's array when they can.
    direct = target if (target.dtype == cdt and target.flags.c_contiguous
                        and not np.may_share_memory(target, x)) else None
    result = _run_host(plan, x, cdt, direct)
    if result is not target:
        with np.errstate(invalid="ignore", over="ignore"):
            np.copyto(target, result, casting="unsafe")
    return target


#: Plans of recent calls: a repeated small call skips the argument checks.
_PLANS: dict = {}
_PLANS_KEPT = 256


def _frozen(value):
    """A hashable key for an argument, with the types of its items (1 and
    1.0 are different arguments: one of them may be an error)."""
    if isinstance(value, (list, tuple)):
        return (type(value).__name__,) + tuple(_frozen(v) for v in value)
    return (type(value).__name__, value)


def _cached_plan(shape, w: np.ndarray, mode, cval, origin, axes, convolution,
                 axis) -> NdimagePlan:
    key = None
    if w.size <= 4096:
        key = (shape, w.dtype.str, w.shape, w.tobytes(), _frozen(mode),
               _frozen(cval), _frozen(origin), _frozen(axes), convolution,
               _frozen(axis))
        try:
            plan = _PLANS.get(key)
        except TypeError:           # an unhashable argument
            key = plan = None
        if plan is not None:
            return plan
    plan = _ndimage_plan(shape, w, mode, cval, origin, axes,
                         convolution=convolution, axis=axis)
    if key is not None:
        if len(_PLANS) >= _PLANS_KEPT:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def _host_input(input) -> np.ndarray:
    try:
        x = np.asarray(input)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"input cannot be read as an array: {exc}") from None
    if x.dtype == object:
        raise TypeError("input must be an array of numbers, got an object array")
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    return x


def _host_output(output, x: np.ndarray) -> np.ndarray:
    """The array the result goes to: ``output`` or a new one."""
    dtype = _output_dtype(output, x.dtype)
    if dtype is not None:
        _check_real_dtype("output", dtype)
        return np.empty(x.shape, dtype)
    if not isinstance(output, np.ndarray):
        raise TypeError(f"output must be a numpy.ndarray or a dtype, got "
                        f"{type(output).__name__}")
    if output.shape != x.shape:
        raise _ValueError(f"output has shape {output.shape}, expected the "
                          f"input's shape {x.shape}")
    if not output.flags.writeable:
        raise ValueError("output is read-only")
    _check_real_dtype("output", output.dtype)
    return output


def _run_host(plan: NdimagePlan, x: np.ndarray, cdt: np.dtype,
              out: Optional[np.ndarray] = None) -> np.ndarray:
    """The correlation of ``x`` as an array of dtype ``cdt``, shape of ``x``:
    ``out`` (C-contiguous, of that dtype) where it can be written directly."""
    if x.size == 0:
        return np.zeros(x.shape, cdt)
    w = plan.weights
    if plan.skips_zero_weights and not np.all(w != 0):
        if not _all_finite(x) or (plan.pad_mode == "constant"
                                  and not math.isfinite(plan.cval)):
            return _skipping_non_finite(plan, x, cdt)
    return _forward_host(plan, x.astype(cdt, copy=False), w, plan.cval, out)


def _all_finite(x: np.ndarray) -> bool:
    if x.dtype.kind != "f":
        return True
    from .cpu._index import all_finite
    return bool(all_finite(np.ascontiguousarray(x)))


def _forward_host(plan: NdimagePlan, x: np.ndarray, weights: np.ndarray,
                  cval: float, out: Optional[np.ndarray] = None) -> np.ndarray:
    """One real correlation on the CPU: pad, then the forward primitive."""
    from . import _dispatch
    from ._threading import serialized
    be = _dispatch.cpu_backend()
    lay = _layout(plan)
    if lay.perm is not None:
        x = x.transpose(lay.perm)
    x5 = _contiguous(x).reshape(lay.shape5)
    w5 = np.ascontiguousarray(weights, dtype=x.dtype).reshape(lay.kernel5)
    if out is not None and lay.perm is None:
        y = out.reshape(lay.shape5)
    else:
        y = np.empty(lay.shape5, x.dtype)
    if plan.pad_mode == "constant" and cval == 0.0:
        be.forward(x5, w5, None, _ONE3, _ONE3, lay.lo, 1, y)
    elif _thin_border(lay):
        be.forward(x5, w5, None, _ONE3, _ONE3, lay.lo, 1, y)
        _fix_border(be, lay, plan.pad_mode, cval, x5, w5, y)
    else:
        padded = np.empty(lay.padded5, x.dtype)
        if plan.pad_mode == "constant":
            from .cpu.padding import pad_constant_cpu
            serialized(pad_constant_cpu)(x5, lay.lo, lay.hi, cval, padded)
        else:
            be.pad(x5, lay.lo, lay.hi, plan.pad_mode, padded)
        be.forward(padded, w5, None, _ONE3, _ONE3, _ZERO3, 1, y)
    if lay.perm is None:
        return out if out is not None else y.reshape(x.shape)
    return y.reshape(x.shape).transpose(np.argsort(lay.perm))


#: The border path runs on images (two filtered axes) where the slabs it
#: gathers hold at most this fraction of the padded input's elements; above
#: 1 (the tests), on every layout that has an interior.
_BORDER_FRACTION = 0.25


def _border_slabs(lay: _Layout):
    """Per face: the output range along each spatial axis.

    The faces of axis ``a`` cover its first ``lo`` and last ``hi`` outputs,
    the interior outputs of the axes before it and every output of the
    axes after it, so the faces together cover each border output once.
    """
    sizes, lo, hi = lay.shape5[2:], lay.lo, lay.hi
    for a in range(3):
        for start, stop in ((0, lo[a]), (sizes[a] - hi[a], sizes[a])):
            if stop <= start:
                continue
            yield tuple((lo[b], sizes[b] - hi[b]) if b < a else
                        (start, stop) if b == a else (0, sizes[b])
                        for b in range(3))


def _thin_border(lay: _Layout) -> bool:
    """Whether computing the border outputs apart beats padding everything."""
    sizes, k = lay.shape5[2:], lay.kernel5[2:]
    if any(s < kk for s, kk in zip(sizes, k)):
        return False                 # no interior: faces would overlap
    if sum(kk > 1 for kk in k) != 2 and _BORDER_FRACTION <= 1:
        # Images: with one filtered axis the faces are narrow strips whose
        # gather and forward cost more than the pad; with three, six faces.
        return False
    gathered = sum(math.prod(o1 - o0 + kk - 1 for (o0, o1), kk in zip(face, k))
                   for face in _border_slabs(lay))
    return gathered <= _BORDER_FRACTION * math.prod(lay.padded5[2:])


def _source_indices(start: int, stop: int, size: int, mode: str):
    """Source of padded positions ``start..stop-1`` (relative to the
    interior) under ``mode``, and where they are outside (constant mode):
    the index maps of ``numbaconv._backend.padding_index``, vectorised."""
    j = np.arange(start, stop)
    outside = (j < 0) | (j >= size)
    if mode == "constant":
        return np.clip(j, 0, size - 1), outside
    if mode == "replicate":
        return np.clip(j, 0, size - 1), None
    if mode == "circular":
        return j % size, None
    if mode == "reflect":
        if size == 1:
            return np.zeros_like(j), None
        period = 2 * (size - 1)
        r = j % period
        return np.where(r < size, r, period - r), None
    period = 2 * size                                     # symmetric
    r = j % period
    return np.where(r < size, r, period - 1 - r), None


def _fix_border(be, lay: _Layout, mode: str, cval: float, x5, w5, y) -> None:
    """Recompute the outputs whose taps reach past the edges.

    ``y`` holds the correlation with implicit zero padding: right in the
    interior.  Each face gathers the padded input its outputs read (a thin
    slab) and runs the forward primitive on it.
    """
    sizes, k, lo = lay.shape5[2:], lay.kernel5[2:], lay.lo
    for face in _border_slabs(lay):
        indices, outside = [], []
        for (o0, o1), kk, l, size in zip(face, k, lo, sizes):
            idx, out_mask = _source_indices(o0 - l, o1 - l + kk - 1, size, mode)
            indices.append(idx)
            outside.append(out_mask)
        # One gather of the slab's elements only (per-axis takes would
        # copy whole planes along the axes the face spans).
        slab = x5[np.ix_(np.arange(x5.shape[0]), np.arange(1), *indices)]
        if mode == "constant":
            for axis, out_mask in enumerate(outside):
                if out_mask.any():
                    index = [slice(None)] * 5
                    index[axis + 2] = out_mask
                    slab[tuple(index)] = cval
        part = np.empty(lay.shape5[:2] + tuple(o1 - o0 for o0, o1 in face),
                        y.dtype)
        be.forward(slab, w5, None, _ONE3, _ONE3, _ZERO3, 1, part)
        y[(slice(None), slice(None)) + tuple(slice(o0, o1) for o0, o1 in face)] = part


def _contiguous(a: np.ndarray) -> np.ndarray:
    from ._dispatch import _writable_alias
    return _writable_alias(np.ascontiguousarray(a))


def _skipping_non_finite(plan: NdimagePlan, x: np.ndarray,
                         cdt: np.dtype) -> np.ndarray:
    """SciPy's result where zero weights lie over inf or NaN inputs.

    SciPy's ``correlate`` leaves the taps of zero weight out of each sum, so
    an inf or NaN under them never reaches the result (a product with zero
    would be NaN).  The finite part is one correlation with the non-finite
    values set to zero; exact counts of the NaN, +inf and -inf that meet a
    non-zero weight (correlations of 0/1 indicators) then say which outputs
    are NaN or infinite.
    """
    x = x.astype(cdt, copy=False)
    w, cval = plan.weights, plan.cval
    finite = np.isfinite(x)
    result = _forward_host(plan, np.where(finite, x, 0).astype(cdt), w,
                           cval if math.isfinite(cval) else 0.0)
    f64 = np.float64

    def hits(mask, mask_cval, taps):
        return _forward_host(plan, mask.astype(f64), taps.astype(f64),
                             float(mask_cval)) > 0

    nonzero, pos, neg = w != 0, w > 0, w < 0
    up = hits(x == np.inf, cval == np.inf, pos) | hits(x == -np.inf, cval == -np.inf, neg)
    down = hits(x == -np.inf, cval == -np.inf, pos) | hits(x == np.inf, cval == np.inf, neg)
    nan = hits(np.isnan(x), math.isnan(cval), nonzero) | (up & down)
    result = np.array(result, dtype=cdt)
    result[up] = np.inf
    result[down] = -np.inf
    result[nan] = np.nan
    return result


def _complex(x, w, output, mode, cval, origin, axes, convolution, axis):
    """SciPy's composition of a complex correlation from real ones."""
    if w.dtype.kind == "c" and not convolution:
        w = w.conj()          # as numpy.correlate: conjugate the weights
    dtype = _output_dtype(output, x.dtype)
    if dtype is None:
        if not isinstance(output, np.ndarray):
            raise TypeError(f"output must be a numpy.ndarray or a dtype, got "
                            f"{type(output).__name__}")
        if output.shape != x.shape:
            raise _ValueError(f"output has shape {output.shape}, expected the "
                              f"input's shape {x.shape}")
        if output.dtype.kind != "c":
            raise _TypeError(f"output must have a complex dtype for complex "
                             f"input or weights, got {output.dtype}")
        target = output
    else:
        if output is None or dtype.kind != "c":
            dtype = np.promote_types(dtype, np.complex64)
        target = np.empty(x.shape, dtype)
    if x.dtype.kind != "c" and np.iscomplexobj(cval):
        raise ValueError(f"Cannot provide a complex-valued cval when the input "
                         f"is real, got cval={cval!r}")
    real = np.empty(x.shape, target.real.dtype)

    def part(data, taps, c):
        return _correlate(data, taps, real.dtype, mode, c, origin, axes,
                          convolution, axis)

    if x.dtype.kind == "c" and w.dtype.kind == "c":
        target.real = part(x.real, w.real, np.real(cval)) - part(x.imag, w.imag, np.imag(cval))
        target.imag = part(x.real, w.imag, np.real(cval)) + part(x.imag, w.real, np.imag(cval))
    elif x.dtype.kind == "c":
        target.real = part(x.real, w, np.real(cval))
        target.imag = part(x.imag, w, np.imag(cval))
    else:
        target.real = part(x, w.real, cval)
        target.imag = part(x, w.imag, cval)
    return target


# ---------------------------------------------------------------------------
# GPU arrays
# ---------------------------------------------------------------------------

def _is_gpu_array(obj) -> bool:
    from ._dispatch import _is_gpu
    return _is_gpu(obj)


def _correlate_gpu(input, weights, output, mode, cval, origin, axes,
                   convolution, axis):
    """The CUDA backend on a GPU input; the result is the input's kind."""
    placement = place(None, input=input)
    from .cuda import arrays
    from .cuda.padding import pad_constant_cuda
    with placement.context():
        x = arrays.as_device_array(input)
        dtype = np.dtype(x.dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"input has dtype {dtype}; on the GPU "
                            f"numbaconv.ndimage takes float32 or float64 "
                            f"arrays: cast it first")
        w = _host_weights(weights)
        if w.dtype.kind == "c":
            raise TypeError("complex weights are not supported for GPU input: "
                            "correlate the real and imaginary parts")
        plan = _ndimage_plan(tuple(x.shape), w, mode, cval, origin, axes,
                             convolution=convolution, axis=axis)
        wanted = _output_dtype(output, dtype)
        if wanted is not None and wanted != dtype:
            raise TypeError(f"output dtype {wanted} differs from the input's "
                            f"{dtype}; on the GPU the output has the input's "
                            f"dtype")
        be = placement.backend
        shape = tuple(x.shape)
        if len(shape) > 5:
            raise ValueError(f"GPU input has {len(shape)} dimensions; at most "
                             f"5 are supported on the GPU")
        target = None
        if wanted is None:
            target = placement.output(output, shape, dtype, ())
        if x.size == 0:
            return output if target is not None else placement.wrap(
                be.empty(shape, dtype))
        lay = _layout(plan)
        perm = lay.perm or tuple(range(len(shape)))
        tshape = tuple(shape[a] for a in perm)
        xt = arrays._strided_view(x, tshape, tuple(x.strides[a] for a in perm))
        packed = arrays.ascontiguous(xt)
        x5 = packed.reshape(lay.shape5)
        padded = be.empty(lay.padded5, dtype)
        if plan.pad_mode == "constant":
            pad_constant_cuda(x5, lay.lo, lay.hi, plan.cval, padded)
        else:
            be.pad(x5, lay.lo, lay.hi, plan.pad_mode, padded)
        w5 = arrays.to_device(np.ascontiguousarray(plan.weights, dtype=dtype)
                              .reshape(lay.kernel5))
        y = be.empty(lay.shape5, dtype)
        be.forward(padded, w5, None, _ONE3, _ONE3, _ZERO3, 1, y)
        yt = y.reshape(tshape)
        if lay.perm is None and target is None:
            return placement.wrap(yt)
        inverse = tuple(int(i) for i in np.argsort(perm))
        view = arrays._strided_view(yt, shape, tuple(yt.strides[i] for i in inverse))
        if target is None:
            result = be.empty(shape, dtype)
            arrays.copy_into(result, view)
            return placement.wrap(result)
        arrays.copy_into(target, view)
        return placement.wrap_out(output, target)


# ---------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------

Origin = Union[int, Sequence[int]]


@_edge
def correlate(input: Array, weights: Array, output: Any = None,
              mode: str = "reflect", cval: float = 0.0, origin: Origin = 0,
              *, axes: Optional[Union[int, Sequence[int]]] = None) -> Array:
    """Multidimensional correlation, as ``scipy.ndimage.correlate``.

    Parameters
    ----------
    input : array_like
        NumPy array (or anything ``numpy.asarray`` takes), xarray
        ``DataArray``, or GPU array (CuPy, Numba device array).
    weights : array_like
        Weights with as many dimensions as ``input`` (as ``axes`` when given).
    output : array or dtype, optional
        Array to fill (returned), or the dtype of the result (default: the
        input's).
    mode : {'reflect', 'constant', 'nearest', 'mirror', 'wrap', \
'grid-mirror', 'grid-constant', 'grid-wrap'}
        How the input extends beyond its edges (SciPy's modes).
    cval : float
        The value outside the edges in the constant modes.
    origin : int or sequence of int
        Shift of the filter's centre, per filtered axis; must lie in
        ``[-(k // 2), (k - 1) // 2]`` for ``k`` weights along the axis.
    axes : int or sequence of int, optional
        The axes to filter (at most three with more than one weight); the
        others are independent.

    Returns
    -------
    array
        The correlation, the same shape as ``input``.

    Examples
    --------
    >>> import numpy as np
    >>> from numbaconv import ndimage
    >>> a = np.arange(25).reshape(5, 5)
    >>> ndimage.correlate(a, np.ones((3, 3)), mode="constant")
    array([[ 12,  21,  27,  33,  24],
           [ 33,  54,  63,  72,  51],
           [ 63,  99, 108, 117,  81],
           [ 93, 144, 153, 162, 111],
           [ 72, 111, 117, 123,  84]])
    """
    return _correlate(input, weights, output, mode, cval, origin, axes,
                      False, None)


@_edge
def convolve(input: Array, weights: Array, output: Any = None,
             mode: str = "reflect", cval: float = 0.0, origin: Origin = 0,
             *, axes: Optional[Union[int, Sequence[int]]] = None) -> Array:
    """Multidimensional convolution, as ``scipy.ndimage.convolve``.

    The correlation with the flipped weights, with SciPy's origin rule for
    even-sized kernels (the centre of ``k`` flipped weights moves by one).
    Parameters as in :func:`correlate`.

    Returns
    -------
    array
        The convolution, the same shape as ``input``.

    Examples
    --------
    >>> import numpy as np
    >>> from numbaconv import ndimage
    >>> a = np.array([[1, 2, 0, 0], [5, 3, 0, 4], [0, 0, 0, 7], [9, 3, 0, 0]])
    >>> k = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0]])
    >>> ndimage.convolve(a, k, mode="constant", cval=0.0)
    array([[11, 10,  7,  4],
           [10,  3, 11, 11],
           [15, 12, 14,  7],
           [12,  3,  7,  0]])
    """
    return _correlate(input, weights, output, mode, cval, origin, axes,
                      True, None)


@_edge
def correlate1d(input: Array, weights: Array, axis: int = -1,
                output: Any = None, mode: str = "reflect", cval: float = 0.0,
                origin: int = 0) -> Array:
    """One-dimensional correlation along ``axis``, as
    ``scipy.ndimage.correlate1d``.

    Parameters
    ----------
    input : array_like
        As in :func:`correlate`.
    weights : array_like
        1-D sequence of weights.
    axis : int
        The axis filtered; the others are independent lines.
    output, mode, cval
        As in :func:`correlate`.
    origin : int
        Shift of the filter's centre, in ``[-(k // 2), (k - 1) // 2]``.

    Returns
    -------
    array
        The correlation, the same shape as ``input``.

    Examples
    --------
    >>> import numpy as np
    >>> from numbaconv import ndimage
    >>> ndimage.correlate1d(np.array([2, 8, 0, 4, 1, 9, 9, 0]), weights=[1, 3])
    array([ 8, 26,  8, 12,  7, 28, 36,  9])
    """
    return _correlate(input, weights, output, mode, cval, origin, None,
                      False, axis)


@_edge
def convolve1d(input: Array, weights: Array, axis: int = -1,
               output: Any = None, mode: str = "reflect", cval: float = 0.0,
               origin: int = 0) -> Array:
    """One-dimensional convolution along ``axis``, as
    ``scipy.ndimage.convolve1d``.

    Parameters as in :func:`correlate1d`.

    Returns
    -------
    array
        The convolution, the same shape as ``input``.

    Examples
    --------
    >>> import numpy as np
    >>> from numbaconv import ndimage
    >>> ndimage.convolve1d(np.array([2, 8, 0, 4, 1, 9, 9, 0]), weights=[1, 3])
    array([14, 24,  4, 13, 12, 36, 27,  0])
    """
    return _correlate(input, weights, output, mode, cval, origin, None,
                      True, axis)
