"""Argument rules of the SciPy dialect (``numbaconv.ndimage``): no arrays
are touched here and nothing is compiled.

:func:`_ndimage_plan` checks a call's arguments as SciPy checks them and
translates them into an :class:`NdimagePlan`; the dtype helpers say what a
call computes in and writes.
"""

from __future__ import annotations

import operator
import sys
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

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
    def has_zero_weight(self) -> bool:
        """Whether some tap has weight zero (see ``skips_zero_weights``)."""
        found = self.__dict__.get("_zero")
        if found is None:
            found = not bool(np.all(self.weights != 0))
            object.__setattr__(self, "_zero", found)   # weights are read-only
        return found

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



def _is_dataarray(obj) -> bool:
    xr = sys.modules.get("xarray")
    return xr is not None and isinstance(obj, xr.DataArray)
