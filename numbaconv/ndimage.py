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
* the forward primitive then runs with zero padding 0 (stride 1).  On
  large images (two filtered axes) the pad is skipped: the interior runs
  with the kernel's implicit zero padding and the border outputs are
  recomputed from thin gathered slabs of the padded input.

Integer and boolean data are computed in ``float64`` and cast to the output
dtype as SciPy casts them (truncation toward zero).  Complex data or weights
are composed of real correlations as SciPy composes them.

Reuse by other array layers
---------------------------
:func:`_ndimage_plan` is the whole argument normalisation, without any array
work: it takes the input's shape, the weights, mode, cval, origin and axes
and returns an :class:`NdimagePlan` (filtered axes, per-axis ``lo``/``hi``
padding, the correlation weights after any flip, the backend padding mode).
A chunked layer (dask) takes its halos from ``plan.halo`` (``(before,
after)`` input elements per axis; none along ``plan.batch_axes``), extends
each block by them with the mode acting only at the edges of the whole
array (as dask's ``map_overlap`` does with a ``boundary``), calls the same
function with the caller's arguments on the extended block and crops the
halo off the result: an output whose taps all fall inside the extended
block does not depend on the mode.

Examples
--------
>>> import numpy as np
>>> from numbaconv import ndimage
>>> ndimage.correlate1d(np.array([2, 8, 0, 4, 1, 9, 9, 0]), weights=[1, 3])
array([ 8, 26,  8, 12,  7, 28, 36,  9])
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Optional, Sequence, Union

# MODES, NdimagePlan and _ndimage_plan are this module's too: a chunked
# layer (dask) plans its calls with them.
from ._ndimage_args import MODES, NdimagePlan, _is_dataarray, _ndimage_plan  # noqa: F401
from ._dispatch import is_dask_array
from ._ndimage_run import _correlate

__all__ = ["correlate", "convolve", "correlate1d", "convolve1d", "MODES",
           "NdimagePlan"]

Array = Any

# ---------------------------------------------------------------------------
# array kinds at the edge
# ---------------------------------------------------------------------------

def _wrap_like_dataarray(result, template):
    import xarray as xr
    return xr.DataArray(result, dims=template.dims, coords=template.coords,
                        attrs=dict(template.attrs), name=template.name)


def _edge(func):
    """Take xarray DataArrays in and give them back, around ``func``; hand
    dask arrays (also inside a DataArray) to ``numbaconv.dask``."""
    signature = inspect.signature(func)

    def run(input, weights, *args, **kwargs):
        if not is_dask_array(input):
            return func(input, weights, *args, **kwargs)
        from . import dask as chunked
        bound = signature.bind(input, weights, *args, **kwargs)
        bound.apply_defaults()
        named = {k: v for k, v in bound.arguments.items()
                 if k not in ("input", "weights")}
        return chunked.ndimage_call(func.__name__, input, weights, **named)

    @functools.wraps(func)
    def call(input, weights, *args, **kwargs):
        if not _is_dataarray(input):
            return run(input, weights, *args, **kwargs)
        output = kwargs.get("output")
        if _is_dataarray(output):
            kwargs["output"] = output.values
            run(input.data, weights, *args, **kwargs)
            return output
        result = run(input.data, weights, *args, **kwargs)
        return _wrap_like_dataarray(result, input)
    return call


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
