"""How the SciPy dialect runs: the input laid out as ``(N, 1, D, H, W)``
and the forward primitive with the padding mode, on the CPU or the GPU.

``_correlate`` is the whole call once the array kind is known (NumPy or a
GPU array): complex data split into real correlations, the plan (cached for
repeated calls), the layout, the forward primitive with the padding mode
(the CPU kernel applies it and the cast to the compute dtype as it loads
the input; the GPU pads explicitly first), the cast to the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ._dispatch import _is_gpu, _writable_alias, cpu_backend, place
from ._ndimage_args import (NdimagePlan, _check_real_dtype, _compute_dtype,
                            _host_weights, _ndimage_plan, _output_dtype,
                            _TypeError, _ValueError)

_ONE3 = (1, 1, 1)

# ---------------------------------------------------------------------------
# the computation
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Layout:
    """How an input of the plan's shape is seen as ``(N, 1, D, H, W)``.

    ``perm`` orders the input's axes (None: they stay in place, the 5-D view
    is a reshape); ``shape5``/``kernel5`` are the data and weight shapes,
    ``lo`` the padding before the three spatial axes (the output's shape
    implies the padding after them).
    """

    perm: Optional[Tuple[int, ...]]
    shape5: Tuple[int, ...]
    kernel5: Tuple[int, ...]
    lo: Tuple[int, int, int]


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
                  tuple(g[2] for g in groups))
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
    if output is None and x.dtype.char in "fd" and _layout(plan).perm is None:
        # A new array of the float input's dtype is what ``_run_host`` makes:
        # no output to check, cast into or compute in slabs.
        return _run_host(plan, x, x.dtype)
    _check_real_dtype("input", x.dtype)
    target = _host_output(output, x)
    cdt = _compute_dtype(x.dtype, target.dtype)
    # The kernels write the caller's array when they can.
    direct = target if (target.dtype == cdt and target.flags.c_contiguous
                        and not np.may_share_memory(target, x)) else None
    if direct is None and _in_slabs(plan, x, target):
        _run_in_slabs(plan, x, cdt, target)
        return target
    result = _run_host(plan, x, cdt, direct)
    if result is not target:
        _cast_into(target, result)
    return target


def _cast_into(target: np.ndarray, result: np.ndarray) -> None:
    """``target[...] = result`` as SciPy casts a sum to the output's type."""
    with np.errstate(invalid="ignore", over="ignore"):
        if target.dtype == np.bool_:
            # SciPy stores C's (unsigned char) cast: 0.5 and 256.0 are False.
            result = result.astype(np.uint8)
        np.copyto(target, result, casting="unsafe")


#: Bytes of the computed slab that ``_run_in_slabs`` casts at a time (a
#: slab stays in the caches between the kernel and the cast).
_SLAB_BYTES = 1 << 21


def _in_slabs(plan: NdimagePlan, x: np.ndarray, target: np.ndarray) -> bool:
    """Whether a result of another dtype than the computation's is computed
    slab by slab into the target (``_run_in_slabs``) rather than whole and
    then cast: no array of the whole result in the compute dtype is made."""
    return (x.size * 8 > 2 * _SLAB_BYTES and target.flags.c_contiguous
            and not np.may_share_memory(target, x) and _layout(plan).perm is None
            and not _zero_weights_meet_non_finite(plan, x))


def _run_in_slabs(plan: NdimagePlan, x: np.ndarray, cdt: np.dtype,
                  target: np.ndarray) -> None:
    """``target`` = the correlation of ``x``, computed in dtype ``cdt`` a
    slab of the outermost axis of the 5-D layout at a time (the kernel
    reads the whole input, so the padding mode still acts at its edges
    only: a slab from output ``s`` on is the forward with ``s`` less
    padding before that axis) and cast as SciPy casts it."""
    from ._threading import kernel_launch
    from .cpu.forward import forward_cpu
    lay = _layout(plan)
    x5 = _contiguous(_kernel_input(x, cdt)).reshape(lay.shape5)
    w5 = _weights5(plan, plan.weights, lay, cdt)
    t5 = target.reshape(lay.shape5)
    # The slab axis: the batch, or the first spatial axis of more than one
    # element (slabs then lie whole in memory).
    axis = 0
    if lay.shape5[0] == 1:
        axis = next((a for a in (2, 3) if lay.shape5[a] > 1), 4)
    size = lay.shape5[axis]
    step = max(1, _SLAB_BYTES // (cdt.itemsize * math.prod(lay.shape5[axis + 1:])))
    buffer = np.empty((min(step, size),) + lay.shape5[axis + 1:], cdt)
    index = [slice(None)] * 5
    for s0 in range(0, size, step):
        s1 = min(size, s0 + step)
        index[axis] = slice(s0, s1)
        part = buffer[:s1 - s0].reshape(lay.shape5[:axis] + (s1 - s0,)
                                        + lay.shape5[axis + 1:])
        if axis == 0:
            source, lo = x5[s0:s1], lay.lo
        else:
            source = x5
            lo = tuple(p - s0 if a + 2 == axis else p for a, p in enumerate(lay.lo))
        with kernel_launch():
            forward_cpu(source, w5, None, _ONE3, _ONE3, lo, 1, part, plan.pad_mode,
                        plan.cval)
        _cast_into(t5[tuple(index)], part)


#: Plans of recent calls: a repeated small call skips the argument checks.
_PLANS: dict = {}
_PLANS_KEPT = 256


def _frozen(value):
    """A hashable key for an argument, with the types of its items (1 and
    1.0 are different arguments: one of them may be an error)."""
    kind = type(value)
    if kind is list or kind is tuple:
        return (kind, *map(_frozen, value))
    return (kind, value)


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
    if _zero_weights_meet_non_finite(plan, x):
        return _skipping_non_finite(plan, x, cdt)
    return _forward_host(plan, _kernel_input(x, cdt), plan.weights, plan.cval, cdt, out)


def _zero_weights_meet_non_finite(plan: NdimagePlan, x: np.ndarray) -> bool:
    """Whether an inf or NaN, of the input or of the constant mode's
    ``cval``, may lie under a tap of zero weight, which SciPy leaves out of
    the sum: then only ``_skipping_non_finite`` gives SciPy's result."""
    return (plan.skips_zero_weights and plan.has_zero_weight
            and (not _all_finite(x)
                 or (plan.pad_mode == "constant" and not math.isfinite(plan.cval))))


def _kernel_input(x: np.ndarray, cdt: np.dtype) -> np.ndarray:
    """``x`` as the kernels read it: they cast integers and both float
    widths as they load; a bool array is read as its bytes, float16 is
    cast first."""
    if x.dtype == np.bool_:
        return x.view(np.uint8)
    if x.dtype.kind not in "iu" and x.dtype not in (np.float32, np.float64):
        return x.astype(cdt)
    return x


def _all_finite(x: np.ndarray) -> bool:
    if x.dtype.kind != "f":
        return True
    from .cpu._index import all_finite
    return bool(all_finite(np.ascontiguousarray(x)))


def _forward_host(plan: NdimagePlan, x: np.ndarray, weights: np.ndarray,
                  cval: float, cdt: np.dtype,
                  out: Optional[np.ndarray] = None) -> np.ndarray:
    """One real correlation on the CPU, in dtype ``cdt``: the forward
    primitive with the plan's padding mode, which its kernel applies as it
    loads the input (cast to ``cdt`` there too)."""
    lay = _layout(plan)
    if lay.perm is not None:
        x = x.transpose(lay.perm)
    x5 = _contiguous(x).reshape(lay.shape5)
    if out is not None and lay.perm is None:
        y = out.reshape(lay.shape5)
    else:
        y = np.empty(lay.shape5, cdt)
    cpu = _cpu()
    call = None
    if weights is plan.weights and cval == plan.cval:
        call = _prepared_call(plan, cdt, cpu)
    if call is not None:
        with cpu.kernel_launch():
            call(x5, y)
    else:
        cpu_backend().forward(x5, _weights5(plan, weights, lay, cdt), None, _ONE3, _ONE3,
                              lay.lo, 1, y, plan.pad_mode, cval)
    if lay.perm is None:
        return out if out is not None else y.reshape(x.shape)
    return y.reshape(x.shape).transpose(np.argsort(lay.perm))


_CPU = None


def _cpu():
    """What the host path calls in the CPU backend, imported on first use
    (importing numbaconv does not import Numba) and kept: an import
    statement in a function costs microseconds on every call."""
    global _CPU
    if _CPU is None:
        from types import SimpleNamespace

        from ._threading import kernel_launch, thread_count
        from .cpu.forward import PitchedCall
        from .cpu.plan import forward_choice
        _CPU = SimpleNamespace(get_num_threads=thread_count()[0], kernel_launch=kernel_launch,
                               PitchedCall=PitchedCall, forward_choice=forward_choice)
    return _CPU


def _prepared_call(plan: NdimagePlan, cdt: np.dtype, cpu):
    """The CPU forward of the plan's own weights in dtype ``cdt``, made
    ready once per thread count and kept with the plan (a plan is reused by
    repeated calls): ``call(x5, y)`` with ``y`` of the layout's shape, or
    None where the call takes another kernel than the pitched one."""
    threads = cpu.get_num_threads()
    calls = plan.__dict__.get("_calls")
    if calls is None:
        calls = plan.__dict__["_calls"] = {}
    key = (cdt.char, threads)
    call = calls.get(key)
    if call is None:
        lay = _layout(plan)
        w5 = _weights5(plan, plan.weights, lay, cdt)
        choice = cpu.forward_choice(w5.shape, _ONE3, _ONE3, 1, lay.shape5[4], w5.itemsize,
                                    True, math.prod(lay.shape5))
        call = False
        if choice.kernel == "pitched":
            call = cpu.PitchedCall(choice, 1, w5, None, _ONE3, _ONE3, lay.lo, 1,
                                   lay.shape5, cdt, plan.pad_mode, plan.cval, threads)
        calls[key] = call
    return call or None


def _weights5(plan: NdimagePlan, weights: np.ndarray, lay: _Layout, dtype):
    """The weights as the kernels take them; the plan's own are kept per
    dtype (a plan is reused by repeated calls)."""
    if weights is not plan.weights:
        return np.ascontiguousarray(weights, dtype=dtype).reshape(lay.kernel5)
    kept = plan.__dict__.setdefault("_weights5", {})
    w5 = kept.get(dtype)
    if w5 is None:
        w5 = kept[dtype] = np.ascontiguousarray(weights, dtype=dtype).reshape(lay.kernel5)
    return w5


def _contiguous(a: np.ndarray) -> np.ndarray:
    if a.flags.c_contiguous and a.flags.writeable:
        return a
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
                           cval if math.isfinite(cval) else 0.0, cdt)
    f64 = np.float64

    def hits(mask, mask_cval, taps):
        return _forward_host(plan, mask.astype(f64), taps.astype(f64),
                             float(mask_cval), np.dtype(f64)) > 0

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
    return _is_gpu(obj)


def _correlate_gpu(input, weights, output, mode, cval, origin, axes,
                   convolution, axis):
    """The CUDA backend on a GPU input; the result is the input's kind."""
    placement = place(None, input=input)
    from .cuda import arrays
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
        w5 = arrays.to_device(np.ascontiguousarray(plan.weights, dtype=dtype)
                              .reshape(lay.kernel5))
        y = be.empty(lay.shape5, dtype)
        be.forward(x5, w5, None, _ONE3, _ONE3, lay.lo, 1, y, plan.pad_mode, plan.cval)
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

