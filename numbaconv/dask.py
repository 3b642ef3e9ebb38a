"""Convolution of dask arrays: lazy, chunk by chunk, exact.

Every public function of numbaconv takes dask arrays (``conv*d``,
``conv_transpose*d``, the gradient functions; :func:`correlate_ndimage` for
the SciPy dialect) and gives back a lazy dask array: the call checks the
arguments against the shapes, builds a graph and computes nothing.  Each
task is an ordinary in-memory numbaconv call on one block with its halo.

How a block is made (see :mod:`numbaconv._halo`): an output block needs a
range of the input along each axis, wider than the block by the kernel's
reach (size, dilation, padding, SciPy's ``origin``), and it may start before
0 or end past the edge.  Each position of that range reads the element of
the *whole* array that the padding mode names (or the fill value of the
constant modes), so the mode acts on the edges of the whole array only, and
the task copies exactly those slices out of the input chunks it depends on
(as many chunks as the range touches: chunks smaller than the halo, and
irregular chunks, need no special case).  The block is then convolved with
no padding.  Results equal the in-memory call to rounding, for any chunking.

Layout of the result
--------------------
* Output chunks are regular (equal, the last one smaller), so
  ``dask.array.to_zarr`` writes them without a rechunk.  Along a spatial
  axis an output chunk holds ``ceil(c / stride)`` elements (``c * stride``
  for a transposed convolution), where ``c`` is the input's largest chunk
  along that axis: with ``padding='same'`` and a stride that divides ``c``,
  output block ``i`` is computed from input block ``i`` and its halo.  The
  batch axis keeps the input's largest chunk as its chunk size.
* The channel axis: a task reads *all* input channels of its spatial tile
  (channel chunks are merged inside the task, in channel order, so the sums
  are the in-memory ones), and the output has one chunk along channels.
* Weights and bias are small NumPy arrays, placed in the graph once, as a
  single key each that every task refers to: on a distributed cluster they
  travel to each worker once, not once per chunk.  A dask weight is
  computed once, when the call is made.
* Weight and bias gradients are sums over blocks: one partial (in float64)
  per block, added in a fixed binary tree over the blocks in grid order, so
  the result does not depend on the scheduler.
* The graph holds one task per output block (plus the tree for gradients):
  it grows linearly with the number of chunks.

Threads
-------
Each task sets Numba's thread count for its own kernel calls
(:func:`task_threads`): ``cores // pool threads`` in dask's threaded
scheduler (the size of the pool running the task), so that dask's threads times Numba's threads stays within the
cores; on a ``dask.distributed`` worker ``OMP_NUM_THREADS`` (which its nanny
sets to 1: one core per task) when set, else ``cores // worker threads``;
all of Numba's threads under Numba's workqueue layer, where numbaconv runs
one kernel at a time anyway.  ``dask.config.set({"numbaconv.task-threads":
n})`` overrides the rule.

>>> import numpy as np, dask.array as da, numbaconv
>>> x = da.from_array(np.random.default_rng(0).standard_normal((1, 2, 40, 40)),
...                   chunks=(1, 2, 16, 16))
>>> w = np.ones((3, 2, 3, 3))
>>> y = numbaconv.conv2d(x, w, padding=1, padding_mode="reflect")
>>> y.chunks
((1,), (3,), (16, 16, 8), (16, 16, 8))
>>> ref = numbaconv.conv2d(x.compute(), w, padding=1, padding_mode="reflect")
>>> bool(np.allclose(y.compute(), ref))
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _halo
from ._dask_graph import (_Input, _bias_graph, _data_graph, _forward_graph,
                          _numpy_chunks, _out_chunk, _small, _source_of,  # noqa: F401
                          _weight_graph)
from ._dask_tasks import _Layout, _cast, _threads, task_threads  # noqa: F401 (re-exported)
from ._dispatch import check_dtype, is_dask_array
from ._shapes import check_grad_output, conv_spec, transpose_spec

__all__ = ["correlate_ndimage", "ndimage_call", "task_threads", "is_dask_array",
           "SCIPY_MODES"]

#: SciPy's extension modes (``scipy.ndimage.correlate``'s ``mode``).
SCIPY_MODES = ("reflect", "constant", "nearest", "mirror", "wrap",
               "grid-mirror", "grid-constant", "grid-wrap")

Array = Any


# ---------------------------------------------------------------------------
# PyTorch dialect
# ---------------------------------------------------------------------------

def _check_kind(arr, name: str, ref_dtype=None):
    _numpy_chunks(arr, name)
    dtype = check_dtype(name, arr.dtype)
    if ref_dtype is not None and dtype != ref_dtype:
        raise TypeError(f"{name} has dtype {dtype} but input has dtype "
                        f"{ref_dtype}; cast them to one dtype")
    return dtype


def _no_out(out, device):
    if out is not None:
        raise TypeError("out= is not supported for dask arrays: the result is "
                        "lazy; write it with dask.array.store or to_zarr")
    if device not in (None, "cpu"):
        raise ValueError(f"device={device!r}: a dask array is computed chunk "
                         f"by chunk on the CPU; pass device=None or 'cpu'")


def _as_dask(arr, like):
    """A NumPy operand next to a dask one becomes a dask array with the same
    chunks along matching axes (it is split, not copied per task)."""
    if is_dask_array(arr):
        return arr
    import dask.array as da
    arr = np.asarray(arr)
    chunks = tuple(c if i < like.ndim and arr.shape[i] == like.shape[i] else -1
                   for i, c in enumerate(like.chunksize)) if arr.ndim == like.ndim \
        else "auto"
    return da.from_array(arr, chunks=chunks)


def _batched(arr, spec):
    return _Input(arr, 0 if spec.batched else 1)


def _unbatch(arr, spec):
    return arr if spec.batched else arr[0]


def _operands(input, weight, bias):
    """The input's dtype and the weight and bias as checked NumPy arrays."""
    dtype = _check_kind(input, "input")
    weight, bias = _small(weight, "weight"), _small(bias, "bias")
    _check_kind(weight, "weight", dtype)
    if bias is not None:
        _check_kind(bias, "bias", dtype)
    return dtype, weight, bias


def conv(nd, input, weight, bias, stride, padding, dilation, groups,
         padding_mode, out=None, device=None):
    """``conv{nd}d`` of a dask ``input`` (called by ``numbaconv.conv*d``)."""
    _no_out(out, device)
    dtype, weight, bias = _operands(input, weight, bias)
    spec = conv_spec(nd, input.shape, weight.shape,
                     None if bias is None else bias.shape, stride, padding,
                     dilation, groups, padding_mode)
    x = _batched(input, spec)
    w5 = np.ascontiguousarray(weight).reshape(spec.w_shape)
    sp = list(range(2, nd + 2))
    y_size = spec.y_size[3 - nd:]
    out_chunks = (_halo.regular_chunks(spec.N, _out_chunk(x.chunks[0])), (spec.K,)) + tuple(
        _halo.regular_chunks(L, _out_chunk(x.chunks[ax], 1, spec.stride[3 - nd + i]))
        for i, (ax, L) in enumerate(zip(sp, y_size)))
    layout = _Layout(tuple(range(nd + 2)), 1, True, nd)
    y = _forward_graph(
        x, w5, None if bias is None else np.ascontiguousarray(bias),
        roles=["batch", "channel"] + ["spatial"] * nd, spatial=sp,
        out_chunks=out_chunks, mode=spec.padding_mode, fill=0.0,
        stride=spec.stride, dilation=spec.dilation, lo=spec.pad_lo,
        groups=spec.groups, layout=layout, compute_dtype=dtype, out_dtype=dtype,
        token_parts=(w5, bias, spec), prefix=f"conv{nd}d")
    return _unbatch(y, spec)


def conv_transpose(nd, input, weight, bias, stride, padding, output_padding,
                   groups, dilation, output_size, padding_mode, out=None,
                   device=None):
    """``conv_transpose{nd}d`` of a dask ``input``."""
    _no_out(out, device)
    dtype, weight, bias = _operands(input, weight, bias)
    spec = transpose_spec(nd, input.shape, weight.shape,
                          None if bias is None else bias.shape, stride, padding,
                          output_padding, groups, dilation, output_size,
                          padding_mode)
    y = _batched(input, spec)
    w5 = np.ascontiguousarray(weight).reshape(spec.w_shape)
    sizes = [_out_chunk(y.chunks[0]), spec.C] + [
        _out_chunk(y.chunks[2 + i], spec.stride[3 - nd + i]) for i in range(nd)]
    x = _data_graph(spec, y, w5, None if bias is None else np.ascontiguousarray(bias),
                    sizes, dtype, f"conv_transpose{nd}d", (w5, bias, spec))
    return _unbatch(x, spec)


def conv_input(nd, input_size, weight, grad_output, stride, padding, dilation,
               groups, padding_mode, device=None):
    """``conv{nd}d_input`` with a dask ``grad_output``."""
    from .grad import _size
    _no_out(None, device)
    dtype = _check_kind(grad_output, "grad_output")
    weight = _small(weight, "weight")
    _check_kind(weight, "weight", dtype)
    spec = conv_spec(nd, _size(input_size, "input_size"), weight.shape, None,
                     stride, padding, dilation, groups, padding_mode)
    check_grad_output(spec, grad_output.shape)
    return _input_grad(spec, _batched(grad_output, spec), weight, dtype, None)


def _input_grad(spec, gy, weight, dtype, x_chunks):
    nd = spec.nd
    w5 = np.ascontiguousarray(weight).reshape(spec.w_shape)
    if x_chunks is not None:
        sizes = [_out_chunk(c) for c in x_chunks]
    else:
        sizes = [_out_chunk(gy.chunks[0]), spec.C] + [
            _out_chunk(gy.chunks[2 + i], spec.stride[3 - nd + i]) for i in range(nd)]
    gx = _data_graph(spec, gy, w5, None, sizes, dtype, f"conv{nd}d-input",
                     (w5, spec))
    return _unbatch(gx, spec)


def conv_weight(nd, input, weight_size, grad_output, stride, padding, dilation,
                groups, padding_mode, device=None):
    """``conv{nd}d_weight`` with a dask ``input`` or ``grad_output``."""
    from .grad import _size
    _no_out(None, device)
    lead = input if is_dask_array(input) else grad_output
    input, grad_output = _as_dask(input, lead), _as_dask(grad_output, lead)
    dtype = _check_kind(input, "input")
    _check_kind(grad_output, "grad_output", dtype)
    spec = conv_spec(nd, input.shape, _size(weight_size, "weight_size"), None,
                     stride, padding, dilation, groups, padding_mode)
    check_grad_output(spec, grad_output.shape)
    return _weight_graph(spec, _batched(input, spec), _batched(grad_output, spec),
                         dtype, f"conv{nd}d-weight", (spec,))


def conv_backward(nd, grad_output, input, weight, stride, padding, dilation,
                  groups, padding_mode, mask, device=None):
    """``conv{nd}d_backward`` with dask arrays: three lazy gradients."""
    _no_out(None, device)
    lead = input if is_dask_array(input) else grad_output
    input, grad_output = _as_dask(input, lead), _as_dask(grad_output, lead)
    dtype = _check_kind(input, "input")
    _check_kind(grad_output, "grad_output", dtype)
    weight = _small(weight, "weight")
    _check_kind(weight, "weight", dtype)
    spec = conv_spec(nd, input.shape, weight.shape, None, stride, padding,
                     dilation, groups, padding_mode)
    check_grad_output(spec, grad_output.shape)
    x, gy = _batched(input, spec), _batched(grad_output, spec)
    gi = gw = gb = None
    if mask[0]:
        gi = _input_grad(spec, gy, weight, dtype, x.chunks)
    if mask[1]:
        gw = _weight_graph(spec, x, gy, dtype, f"conv{nd}d-weight", (spec,))
    if mask[2]:
        gb = _bias_graph(gy, nd, dtype, f"conv{nd}d-bias", (spec,))
    return gi, gw, gb


def conv_transpose_backward(nd, grad_output, input, weight, stride, padding,
                            output_padding, groups, dilation, padding_mode,
                            mask, device=None):
    """``conv_transpose{nd}d_backward`` with dask arrays."""
    _no_out(None, device)
    lead = input if is_dask_array(input) else grad_output
    input, grad_output = _as_dask(input, lead), _as_dask(grad_output, lead)
    dtype = _check_kind(input, "input")
    _check_kind(grad_output, "grad_output", dtype)
    weight = _small(weight, "weight")
    _check_kind(weight, "weight", dtype)
    spec = transpose_spec(nd, input.shape, weight.shape, None, stride, padding,
                          output_padding, groups, dilation, None, padding_mode)
    check_grad_output(spec, grad_output.shape)
    y, g = _batched(input, spec), _batched(grad_output, spec)
    w5 = np.ascontiguousarray(weight).reshape(spec.w_shape)
    gi = gw = gb = None
    if mask[0]:
        # the forward convolution of grad_output, cut like the input
        sp = list(range(2, nd + 2))
        out_chunks = (_halo.regular_chunks(spec.N, _out_chunk(y.chunks[0])),
                      (spec.K,)) + tuple(
            _halo.regular_chunks(L, _out_chunk(y.chunks[ax]))
            for ax, L in zip(sp, spec.y_size[3 - nd:]))
        gi = _forward_graph(
            g, w5, None, roles=["batch", "channel"] + ["spatial"] * nd,
            spatial=sp, out_chunks=out_chunks,
            mode=spec.padding_mode, fill=0.0, stride=spec.stride,
            dilation=spec.dilation, lo=spec.pad_lo, groups=spec.groups,
            layout=_Layout(tuple(range(nd + 2)), 1, True, nd),
            compute_dtype=dtype, out_dtype=dtype, token_parts=(w5, spec),
            prefix=f"conv_transpose{nd}d-input")
        gi = _unbatch(gi, spec)
    if mask[1]:
        gw = _weight_graph(spec, g, y, dtype, f"conv_transpose{nd}d-weight",
                           (spec,))
    if mask[2]:
        gb = _bias_graph(g, nd, dtype, f"conv_transpose{nd}d-bias", (spec,))
    return gi, gw, gb


# ---------------------------------------------------------------------------
# SciPy dialect
# ---------------------------------------------------------------------------

def _scipy_axes(axes, ndim: int) -> tuple:
    import operator
    if axes is None:
        return tuple(range(ndim))
    if np.isscalar(axes):
        axes = (axes,)
    try:
        axes = tuple(operator.index(a) for a in axes)
    except TypeError:
        raise TypeError(f"axes must be an int, a sequence of ints or None, "
                        f"got {axes!r}") from None
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axes: axis {a} is out of range for an input of "
                             f"{ndim} dimensions")
    axes = tuple(a % ndim for a in axes)
    if len(set(axes)) != len(axes):
        raise ValueError(f"axes must be unique, got {axes!r}")
    return axes


def _origins(origin, n: int) -> tuple:
    if np.isscalar(origin):
        return (int(origin),) * n
    origin = tuple(int(o) for o in origin)
    if len(origin) != n:
        raise ValueError(f"origin must be an int or a sequence of {n} ints (one "
                         f"per filtered axis), got {origin!r}")
    return origin


def correlate_ndimage(input: Array, weights: Any, mode: str = "reflect",
                      cval: float = 0.0, origin: Any = 0, axes: Any = None,
                      convolve: bool = False) -> Array:
    """``scipy.ndimage.correlate`` (or ``convolve``) of a dask array, lazily.

    The same results as SciPy for every mode, ``cval``, ``origin`` and
    ``axes`` (up to three filtered axes; weight axes of size 1 are not
    filtered), even-sized kernels and kernels larger than the input, computed
    block by block with numbaconv's forward convolution.

    Parameters
    ----------
    input : dask.array.Array
        float32/float64 are computed in their own precision; other real
        dtypes (integers, float16) in float64 and cast back as SciPy does.
    weights : array_like
        ``len(axes)`` dimensions (all of ``input``'s when ``axes`` is None);
        cast to the computing dtype.  A dask array is computed once.
    mode : {'reflect', 'constant', 'nearest', 'mirror', 'wrap', 'grid-mirror', 'grid-constant', 'grid-wrap'}
        SciPy's extension mode, at the edges of the whole array.
    cval : float
        The value beyond the edges in the constant modes.
    origin : int or sequence of int
        Shift of the kernel per filtered axis, ``-(k // 2) <= origin <= (k - 1) // 2``.
    axes : int or sequence of int, optional
        The axes to filter; the others are filtered independently.
    convolve : bool
        Compute ``scipy.ndimage.convolve`` instead (flipped weights, SciPy's
        origin rule).

    Returns
    -------
    dask.array.Array
        Same shape, dtype and chunks as ``input``.

    Examples
    --------
    >>> import numpy as np, dask.array as da, scipy.ndimage as ndi
    >>> from numbaconv.dask import correlate_ndimage
    >>> v = np.random.default_rng(1).standard_normal((20, 30))
    >>> k = np.arange(6.0).reshape(2, 3)
    >>> lazy = correlate_ndimage(da.from_array(v, chunks=7), k, mode="wrap")
    >>> bool(np.allclose(lazy.compute(), ndi.correlate(v, k, mode="wrap")))
    True
    """
    if not is_dask_array(input):
        raise TypeError(f"input must be a dask array, got {type(input).__name__}")
    _numpy_chunks(input, "input")
    if mode not in SCIPY_MODES:
        raise ValueError(f"mode must be one of {SCIPY_MODES}, got {mode!r}")
    in_dtype = np.dtype(input.dtype)
    if in_dtype.kind == "c":
        raise TypeError("input has a complex dtype; filter the real and "
                        "imaginary parts separately")
    if in_dtype.kind not in "biuf":
        raise TypeError(f"input has dtype {in_dtype}, which is not a number type")
    compute = in_dtype if in_dtype in (np.float32, np.float64) else np.dtype(np.float64)
    weights = _small(weights, "weights")
    if weights.dtype.kind == "c":
        raise TypeError("weights have a complex dtype; filter with the real and "
                        "imaginary parts separately")
    weights = np.asarray(weights, dtype=np.float64)
    ndim = input.ndim
    axes = _scipy_axes(axes, ndim)
    if weights.ndim != len(axes):
        raise ValueError(f"weights.ndim ({weights.ndim}) must match len(axes) "
                         f"({len(axes)})")
    if any(s == 0 for s in weights.shape):
        raise ValueError(f"weights must not be empty, got shape {weights.shape}")
    # SciPy's rules: weight axis j filters input axis sorted(axes)[j]; the
    # origins follow ``axes`` as given when some axes are left out, else the
    # input's axis order.
    given = _origins(origin, len(axes))
    by_axis = dict(zip(axes, given)) if len(axes) < ndim else dict(enumerate(given))
    wax = sorted(axes)
    origins = [by_axis[a] for a in wax]
    if convolve:
        weights = weights[(slice(None, None, -1),) * weights.ndim]
        origins = [-o - (0 if k & 1 else 1) for o, k in zip(origins, weights.shape)]
    for o, k in zip(origins, weights.shape):
        if o < -(k // 2) or o > (k - 1) // 2:
            raise ValueError(f"origin={origin!r} is out of range: it must satisfy "
                             f"-(weights.shape[k] // 2) <= origin[k] <= "
                             f"(weights.shape[k] - 1) // 2 for weights of shape "
                             f"{weights.shape}")
    # axes whose kernel has size 1 are not filtered
    keep = [j for j, k in enumerate(weights.shape) if k > 1]
    filt = [wax[j] for j in keep]
    if len(filt) > 3:
        raise ValueError(f"at most three axes can be filtered, got {len(filt)} "
                         f"(weights of shape {weights.shape})")
    kernel = weights.reshape([weights.shape[j] for j in keep]) if keep else \
        weights.reshape(())
    nd = len(filt)
    if nd == 0:
        scaled = input * weights.reshape(-1)[0]
        return scaled.astype(in_dtype) if compute == in_dtype else \
            scaled.map_blocks(_cast, in_dtype, dtype=in_dtype)
    kernel = np.ascontiguousarray(kernel.astype(compute))
    w5 = kernel.reshape((1, 1) + (1,) * (3 - nd) + kernel.shape)
    lo = [0, 0, 0]
    for i, j in enumerate(keep):
        lo[3 - nd + i] = weights.shape[j] // 2 + origins[j]
    batch = [a for a in range(ndim) if a not in filt]
    roles = ["spatial" if a in filt else "batch" for a in range(ndim)]
    layout = _Layout(tuple(batch + filt), len(batch), False, nd)
    out_chunks = tuple(_halo.regular_chunks(s, _out_chunk(c))
                       for s, c in zip(input.shape, input.chunks))
    return _forward_graph(
        _Input(input), w5, None, roles=roles, spatial=filt,
        out_chunks=out_chunks, mode=_halo.canonical_mode(mode, scipy=True),
        fill=float(cval), stride=(1, 1, 1), dilation=(1, 1, 1), lo=tuple(lo),
        groups=1, layout=layout, compute_dtype=compute, out_dtype=in_dtype,
        token_parts=(w5, mode, cval, tuple(lo), tuple(filt)),
        prefix="correlate" if not convolve else "convolve")


def ndimage_call(kind: str, input: Array, weights: Any, *, axis: int = -1,
                 output: Any = None, mode: str = "reflect", cval: float = 0.0,
                 origin: Any = 0, axes: Any = None) -> Array:
    """``numbaconv.ndimage``'s functions for a dask ``input``, with SciPy's
    arguments: ``kind`` is 'correlate', 'convolve', 'correlate1d' or
    'convolve1d'.  ``output`` may be None or a dtype (the result is lazy, so
    an output array cannot be filled; store the result with
    ``dask.array.store`` instead).

    >>> import numpy as np, dask.array as da, scipy.ndimage as ndi
    >>> v = np.arange(30.0).reshape(5, 6)
    >>> lazy = ndimage_call("convolve1d", da.from_array(v, chunks=2), [1.0, 2.0],
    ...                     axis=0, mode="mirror")
    >>> bool(np.allclose(lazy.compute(), ndi.convolve1d(v, [1.0, 2.0], axis=0,
    ...                                                  mode="mirror")))
    True
    """
    kinds = ("correlate", "convolve", "correlate1d", "convolve1d")
    if kind not in kinds:
        raise ValueError(f"kind must be one of {kinds}, got {kind!r}")
    if not is_dask_array(input):
        raise TypeError(f"input must be a dask array, got {type(input).__name__}")
    # the in-memory call's argument checks, so that the errors are its errors
    from ._ndimage_args import _ndimage_plan
    weights = _small(weights, "weights")
    _ndimage_plan(tuple(input.shape), weights, mode, cval, origin,
                  None if kind.endswith("1d") else axes,
                  convolution=kind.startswith("convolve"),
                  axis=axis if kind.endswith("1d") else None)
    out_dtype = None
    if output is not None:
        try:
            out_dtype = np.dtype(output)
        except TypeError:
            raise TypeError("output must be None or a dtype for a dask input: "
                            "the result is lazy; write it into an array with "
                            "dask.array.store") from None
    if kind.endswith("1d"):
        weights = np.asarray(_small(weights, "weights"))
        if weights.ndim != 1 or weights.shape[0] < 1:
            raise ValueError(f"weights must be a non-empty 1-D array, got shape "
                             f"{weights.shape}")
        if not -input.ndim <= axis < input.ndim:
            raise ValueError(f"axis {axis} is out of range for an input of "
                             f"{input.ndim} dimensions")
        axes = (axis % input.ndim,)
        if not np.isscalar(origin):
            raise TypeError(f"origin must be an int for {kind}, got {origin!r}")
    result = correlate_ndimage(input, weights, mode, cval, origin, axes,
                               convolve=kind.startswith("convolve"))
    if out_dtype is not None and out_dtype != result.dtype:
        result = result.map_blocks(_cast, out_dtype, dtype=out_dtype)
    return result
