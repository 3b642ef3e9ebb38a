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

import contextlib
import itertools
import math
import os
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

from . import _halo
from ._dispatch import check_dtype, cpu_backend, is_dask_array
from ._shapes import ConvSpec, check_grad_output, conv_spec, transpose_spec

__all__ = ["correlate_ndimage", "ndimage_call", "task_threads", "is_dask_array",
           "SCIPY_MODES"]

#: SciPy's extension modes (``scipy.ndimage.correlate``'s ``mode``).
SCIPY_MODES = ("reflect", "constant", "nearest", "mirror", "wrap",
               "grid-mirror", "grid-constant", "grid-wrap")

Array = Any


# ---------------------------------------------------------------------------
# threads inside a task
# ---------------------------------------------------------------------------

def _cores() -> int:
    import numba
    return int(numba.config.NUMBA_NUM_THREADS)


def task_threads() -> int:
    """The number of Numba threads a task uses here (see the module docstring).

    >>> 1 <= task_threads() <= __import__("numba").config.NUMBA_NUM_THREADS
    True
    """
    import dask
    cores = _cores()
    override = dask.config.get("numbaconv.task-threads", None)
    if override:
        return max(1, min(int(override), cores))
    from ._threading import needs_serialization, _serialize
    if _serialize is not None and needs_serialization():
        return cores            # workqueue: one kernel at a time
    worker = _distributed_worker()
    if worker is not None:
        omp = os.environ.get("OMP_NUM_THREADS")
        if omp and omp.isdigit() and int(omp) > 0:
            return min(int(omp), cores)
        return max(1, cores // max(1, int(worker.state.nthreads)))
    pool = _threaded_pool_size()
    if pool is None:            # the synchronous scheduler, or not in dask
        return cores
    return max(1, cores // pool)


def _threaded_pool_size() -> Optional[int]:
    """Threads of the dask threaded-scheduler pool running this task, if any."""
    import threading
    from dask import threaded
    me = threading.current_thread()
    pools = [threaded.default_pool] + [p for per in list(threaded.pools.values())
                                       for p in list(per.values())]
    for pool in pools:
        if pool is None:
            continue
        # a pool's thread joins its ``_threads`` only after it starts running
        # tasks, so its name (the pool's prefix) is checked as well
        prefix = getattr(pool, "_thread_name_prefix", None)
        if me in getattr(pool, "_threads", ()) or (
                prefix and me.name.startswith(prefix + "_")):
            return int(pool._max_workers)
    if me is not threading.main_thread():
        from dask.system import CPU_COUNT
        import dask
        return int(dask.config.get("num_workers", None) or CPU_COUNT)
    return None


def _distributed_worker():
    try:
        from distributed import get_worker
        return get_worker()
    except (ImportError, ValueError):
        return None


@contextlib.contextmanager
def _threads():
    import numba
    old = numba.get_num_threads()
    numba.set_num_threads(task_threads())   # thread-local in Numba
    try:
        yield
    finally:
        numba.set_num_threads(old)


# ---------------------------------------------------------------------------
# inputs: by chunk or straight from their source
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Read:
    """How a task gets the arrays its gather plan names, from its inputs:
    the chunks themselves (``boxes`` None), or boxes read from the source
    array (the one input); ``lead`` size-1 axes are put in front."""

    boxes: Optional[Tuple[Tuple[slice, ...], ...]]
    which: Optional[Tuple[int, ...]]
    lead: int

    def fetch(self, inputs):
        if self.boxes is None:
            arrays = inputs
        else:
            read = [np.asarray(inputs[0][box]) for box in self.boxes]
            arrays = [read[i] for i in self.which]
        if self.lead:
            arrays = [a[(None,) * self.lead] for a in arrays]
        return arrays


def _source_of(arr):
    """The array-like a dask array was made from with ``from_array`` /
    ``from_zarr`` (its graph: one source key and one getter per chunk), as
    ``(key, source)``, or None for any other dask array."""
    try:
        graph = arr.__dask_graph__()
        deps = graph.dependencies.get(arr.name, set())
        if len(graph.layers) != 2 or len(deps) != 1:
            return None
        (key,) = deps
        layer = graph.layers[key]
        if not str(key).startswith("original-") or len(layer) != 1 or key not in layer:
            return None
        source = layer[key]
    except (AttributeError, KeyError, TypeError):
        return None
    if (not hasattr(source, "__getitem__") or isinstance(source, (tuple, list))
            or tuple(getattr(source, "shape", ())) != tuple(arr.shape)
            or np.dtype(getattr(source, "dtype", object)) != arr.dtype):
        return None
    return key, source


def _segments(q0, q1, size, mode):
    """Boundaries of the runs of source indices positions ``q0..q1`` read."""
    src = _halo.source_index(np.arange(q0, q1), size, _halo._MODE_MAP.get(mode, mode))
    used = np.unique(src[src >= 0])
    if used.size == 0:
        return [0, 1]
    cut = np.flatnonzero(np.diff(used) > 1)
    starts = np.concatenate([used[:1], used[cut + 1]])
    stops = np.concatenate([used[cut], used[-1:]]) + 1
    edges = []
    for a, b in zip(starts.tolist(), stops.tolist()):
        if edges and edges[-1] == a:
            edges[-1] = b
        else:
            edges += [a, b]
    return edges


class _Input:
    """A dask array as the tasks read it, with ``lead`` size-1 axes in front
    (an unbatched input seen as a batch of one).

    A chunk's task is shared by every block whose halo reaches it, so dask
    keeps it in memory until all of them are done: for a volume processed
    slab by slab that is a whole slab of chunks.  An array made straight from
    an array-like source (``from_zarr``, ``from_array`` of a memory map) is
    instead read by each task itself, block and halo at once, so nothing is
    kept between tasks and the memory is bounded by the chunks in flight,
    whatever the size of the volume.  The price: a chunk is read (and, in a
    compressed store, decompressed) once by every block whose halo reaches
    it, up to 3**d times.  ``dask.config.set({"numbaconv.read-through":
    False})`` shares the chunks instead.
    """

    def __init__(self, arr, lead: int = 0):
        self.arr, self.lead = arr, lead
        self.shape = (1,) * lead + tuple(arr.shape)
        self.chunks = ((1,),) * lead + tuple(arr.chunks)
        self.bounds = _edges(self.chunks)
        import dask
        self.source = (_source_of(arr) if dask.config.get("numbaconv.read-through", True)
                       else None)
        self.name = arr.name
        self.ndim = len(self.shape)

    def plan(self, ranges, modes):
        """(gather plan, _Read, keys the task takes) for one block."""
        if self.source is None:
            plan, idx = _halo.gather_plan(ranges, self.bounds, self.shape, modes)
            keys = [(self.arr.name,) + tuple(c[self.lead:]) for c in idx]
            return plan, _Read(None, None, self.lead), keys
        bounds = [_segments(q0, q1, n, m) if q1 > q0 else [0, 1]
                  for (q0, q1), n, m in zip(ranges, self.shape, modes)]
        plan, idx = _halo.gather_plan(ranges, bounds, self.shape, modes)
        boxes, which = [], []
        for c in idx:
            box = tuple(slice(b[i], b[i + 1])
                        for b, i in zip(bounds[self.lead:], c[self.lead:]))
            if box not in boxes:
                boxes.append(box)
            which.append(boxes.index(box))
        return plan, _Read(tuple(boxes), tuple(which), self.lead), [self.source[0]]


# ---------------------------------------------------------------------------
# jobs: what one task computes (picklable, opaque to dask)
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Layout:
    """How a block of any rank maps onto the canonical 5-D problem.

    ``perm`` orders the block's axes as (batch axes, channel axis if any,
    spatial axes); the batch axes are flattened into N.
    """

    perm: Tuple[int, ...]
    n_batch: int
    has_channel: bool
    nd: int

    def to5(self, block: np.ndarray) -> np.ndarray:
        b = block.transpose(self.perm) if self.perm != tuple(range(block.ndim)) else block
        shape = b.shape
        n = math.prod(shape[:self.n_batch])
        c = shape[self.n_batch] if self.has_channel else 1
        sp = shape[len(shape) - self.nd:]
        return np.ascontiguousarray(b).reshape((n, c) + (1,) * (3 - self.nd) + sp)

    def from5(self, y5: np.ndarray, batch_shape: tuple) -> np.ndarray:
        sp = y5.shape[5 - self.nd:]
        shape = batch_shape + ((y5.shape[1],) if self.has_channel else ()) + sp
        y = y5.reshape(shape)
        if self.perm != tuple(range(len(shape))):
            y = y.transpose(np.argsort(self.perm))
        return y


@dataclass(frozen=True)
class _ForwardJob:
    gather: _halo.Gather
    read: _Read
    fill: float
    layout: _Layout
    out_spatial: Tuple[int, ...]
    stride: Tuple[int, int, int]
    dilation: Tuple[int, int, int]
    groups: int
    compute_dtype: np.dtype
    out_dtype: np.dtype


def _forward_task(job: _ForwardJob, w5, b, chunks):
    x = _halo.assemble(job.gather, job.read.fetch(chunks), job.compute_dtype,
                       job.fill)
    lay = job.layout
    batch_shape = tuple(x.transpose(lay.perm).shape[:lay.n_batch])
    x5 = lay.to5(x)
    y5 = np.empty((x5.shape[0], w5.shape[0]) + (1,) * (3 - lay.nd)
                  + job.out_spatial, dtype=job.compute_dtype)
    if y5.size:
        with _threads():
            cpu_backend().forward(x5, w5, b, job.stride, job.dilation, (0, 0, 0),
                                  job.groups, y5)
    y = lay.from5(y5, batch_shape)
    return _cast(y, job.out_dtype)


def _cast(y, dtype):
    if y.dtype == dtype:
        return y
    if np.dtype(dtype).kind in "iub":
        # SciPy stores a float sum into an integer output by C's cast
        return np.trunc(y).astype(dtype)
    return y.astype(dtype)


@dataclass(frozen=True)
class _WeightJob:
    x_gather: _halo.Gather
    y_gather: _halo.Gather
    x_read: _Read
    y_read: _Read
    stride: Tuple[int, int, int]
    dilation: Tuple[int, int, int]
    groups: int
    w_shape: Tuple[int, ...]
    nd: int


def _weight_task(job: _WeightJob, n_x, chunks):
    lay = _Layout(tuple(range(job.nd + 2)), 1, True, job.nd)
    x5 = lay.to5(_halo.assemble(job.x_gather, job.x_read.fetch(chunks[:n_x]),
                                np.float64))
    gy5 = lay.to5(_halo.assemble(job.y_gather, job.y_read.fetch(chunks[n_x:]),
                                 np.float64))
    gw = np.zeros(job.w_shape, dtype=np.float64)
    if x5.size and gy5.size:
        with _threads():
            cpu_backend().backward_weight(x5, gy5, job.stride, job.dilation,
                                          (0, 0, 0), job.groups, gw)
    return gw


def _bias_task(gather: _halo.Gather, read: _Read, nd: int, chunks):
    lay = _Layout(tuple(range(nd + 2)), 1, True, nd)
    gy5 = lay.to5(_halo.assemble(gather, read.fetch(chunks), np.float64))
    gb = np.zeros(gy5.shape[1], dtype=np.float64)
    if gy5.size:
        with _threads():
            cpu_backend().bias_grad(gy5, gb)
    return gb


def _add(a, b):
    return a + b


def _finish(total, dtype, shape):
    return total.astype(dtype).reshape(shape)


@dataclass(frozen=True)
class _Box:
    """One box of padded positions of a transposed block and where it folds."""

    gather: _halo.Gather
    read: _Read
    pad_lo: Tuple[int, int, int]
    size: Tuple[int, ...]           # padded positions per spatial axis
    fold: Tuple[Tuple[slice, int], ...]   # per spatial axis: (dst, step)


@dataclass(frozen=True)
class _DataJob:
    boxes: Tuple[_Box, ...]
    counts: Tuple[int, ...]          # chunks each box reads
    shape: Tuple[int, ...]           # the output block (N, C, spatial...)
    stride: Tuple[int, int, int]
    dilation: Tuple[int, int, int]
    groups: int
    nd: int
    dtype: np.dtype


def _data_task(job: _DataJob, w5, b, chunks):
    lay = _Layout(tuple(range(job.nd + 2)), 1, True, job.nd)
    out = np.zeros(job.shape, dtype=job.dtype)
    at = 0
    with _threads():
        for box, count in zip(job.boxes, job.counts):
            gy5 = lay.to5(_halo.assemble(box.gather,
                                         box.read.fetch(chunks[at:at + count]),
                                         job.dtype))
            at += count
            gp5 = np.empty(job.shape[:2] + (1,) * (3 - job.nd) + box.size,
                           dtype=job.dtype)
            cpu_backend().backward_data(gy5, w5, job.stride, job.dilation,
                                        box.pad_lo, job.groups, gp5)
            _fold_into(out, gp5.reshape(job.shape[:2] + box.size), box.fold)
        if b is not None:
            out += b.reshape((1, -1) + (1,) * job.nd)
    return out


def _fold_into(out, piece, fold):
    """``out[dst] += piece``, the adjoint of the halo's gather: a reversed
    run adds through a reversed slice, a run that repeats one element sums."""
    dst = [slice(None), slice(None)]
    for ax, (sl, step) in enumerate(fold, start=2):
        if step == 0:
            piece = piece.sum(axis=ax, keepdims=True)
        dst.append(sl)
    out[tuple(dst)] += piece


# ---------------------------------------------------------------------------
# graph building
# ---------------------------------------------------------------------------

def _dask():
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
    return da, tokenize, HighLevelGraph


def _constant_key(layer: dict, name: str, suffix: str, value):
    """Put ``value`` in the graph once, as its own key (None stays None)."""
    if value is None:
        return None
    key = f"{name}-{suffix}"
    layer[key] = value
    return key


def _block_grid(chunks):
    return itertools.product(*[range(len(c)) for c in chunks])


def _edges(chunks):
    return [_halo.bounds_of(c) for c in chunks]


def _new_array(name, layer, deps, chunks, dtype):
    da, _, HighLevelGraph = _dask()
    graph = HighLevelGraph.from_collections(name, layer, dependencies=deps)
    return da.Array(graph, name, chunks, dtype=dtype)


def _numpy_chunks(arr, name: str) -> None:
    meta = getattr(arr, "_meta", None)
    if meta is not None and type(meta) is not np.ndarray:
        raise TypeError(f"{name} is a dask array of {type(meta).__module__}."
                        f"{type(meta).__name__} chunks; numbaconv's dask support "
                        f"computes NumPy chunks on the CPU")


def _small(value, name: str):
    """A weight or bias as a NumPy array (a dask one is computed here, once)."""
    if value is None:
        return None
    if is_dask_array(value):
        value = value.compute()
    return np.asarray(value)


def _out_chunk(chunks_axis, factor_num=1, factor_den=1) -> int:
    c = max(chunks_axis) if len(chunks_axis) else 1
    return max(1, -(-c * factor_num // factor_den))


def _forward_graph(x, w5, b, *, roles, spatial, out_chunks, mode,
                   fill, stride, dilation, lo, groups, layout, compute_dtype,
                   out_dtype, token_parts, prefix):
    """Lazy forward convolution of the dask array ``x`` (any rank).

    ``roles[i]`` is 'batch', 'channel' or 'spatial' for axis ``i``;
    ``spatial`` lists the spatial axes in the kernel's order (lifted
    parameters ``stride``, ``dilation``, ``lo`` are per spatial axis).
    """
    _, tokenize, _ = _dask()
    name = f"{prefix}-{tokenize(x.name, *token_parts)}"
    layer = {}
    wkey = _constant_key(layer, name, "weight", w5)
    bkey = _constant_key(layer, name, "bias", b)
    nd = len(spatial)
    lifted = {ax: 3 - nd + i for i, ax in enumerate(spatial)}
    out_edges = [_halo.bounds_of(c) for c in out_chunks]
    modes = ["none" if r != "spatial" else mode for r in roles]
    for idx in _block_grid(out_chunks):
        ranges = []
        out_sp = []
        for ax, i in enumerate(idx):
            a, e = out_edges[ax][i], out_edges[ax][i + 1]
            if roles[ax] == "batch":
                ranges.append((a, e))
            elif roles[ax] == "channel":
                ranges.append((0, x.shape[ax]))
            else:
                j = lifted[ax]
                span = dilation[j] * (w5.shape[2 + j] - 1) + 1
                if e > a:
                    ranges.append((a * stride[j] - lo[j],
                                   (e - 1) * stride[j] + span - lo[j]))
                else:
                    ranges.append((0, 0))
                out_sp.append(e - a)
        plan, read, keys = x.plan(ranges, modes)
        job = _ForwardJob(plan, read, fill, layout, tuple(out_sp), stride,
                          dilation, groups, compute_dtype, out_dtype)
        layer[(name,) + idx] = (_forward_task, job, wkey, bkey, keys)
    return _new_array(name, layer, [x.arr], out_chunks, out_dtype)


def _tree_sum(layer, name, keys):
    """Add the values of ``keys`` in a fixed binary tree; returns the root key."""
    level = 0
    while len(keys) > 1:
        nxt = []
        for i in range(0, len(keys), 2):
            if i + 1 == len(keys):
                nxt.append(keys[i])
                continue
            key = (f"{name}-sum", level, i // 2)
            layer[key] = (_add, keys[i], keys[i + 1])
            nxt.append(key)
        keys, level = nxt, level + 1
    return keys[0]


def _x_gather_for_output(spec: ConvSpec, x, out_ranges):
    """The gather plan of the padded input a block of ``y`` reads."""
    nd = spec.nd
    ranges = [out_ranges[0], (0, x.shape[1])]
    for i in range(nd):
        j = 3 - nd + i
        a, e = out_ranges[2 + i]
        span = spec.dilation[j] * (spec.kernel[j] - 1) + 1
        ranges.append((a * spec.stride[j] - spec.pad_lo[j],
                       (e - 1) * spec.stride[j] + span - spec.pad_lo[j])
                      if e > a else (0, 0))
    modes = ["none", "none"] + [spec.padding_mode] * nd
    return x.plan(ranges, modes)


def _weight_graph(spec: ConvSpec, x, gy, dtype, prefix, token_parts):
    """Lazy weight gradient: ``backward_weight`` of x (the spec's input side)
    and gy (its output side), one partial per block of gy."""
    _, tokenize, _ = _dask()
    name = f"{prefix}-{tokenize(x.name, gy.name, *token_parts)}"
    layer = {}
    parts = []
    gy_edges = _edges(gy.chunks)
    grid = [range(len(c)) for i, c in enumerate(gy.chunks) if i != 1]
    for idx in itertools.product(*grid):
        rng = [(gy_edges[0][idx[0]], gy_edges[0][idx[0] + 1]), (0, gy.shape[1])]
        rng += [(gy_edges[2 + i][k], gy_edges[2 + i][k + 1])
                for i, k in enumerate(idx[1:])]
        xplan, xread, xkeys = _x_gather_for_output(spec, x, rng)
        yplan, yread, ykeys = gy.plan(rng, ["none"] * gy.ndim)
        job = _WeightJob(xplan, yplan, xread, yread, spec.stride, spec.dilation,
                         spec.groups, spec.w_shape, spec.nd)
        key = (f"{name}-part",) + idx
        layer[key] = (_weight_task, job, len(xkeys), xkeys + ykeys)
        parts.append(key)
    root = _tree_sum(layer, name, parts)
    shape = spec.weight_shape
    layer[(name,) + (0,) * len(shape)] = (_finish, root, dtype, shape)
    return _new_array(name, layer, [x.arr, gy.arr], tuple((s,) for s in shape),
                      dtype)


def _bias_graph(gy, nd, dtype, prefix, token_parts):
    _, tokenize, _ = _dask()
    name = f"{prefix}-{tokenize(gy.name, *token_parts)}"
    layer = {}
    parts = []
    edges = _edges(gy.chunks)
    grid = [range(len(c)) for i, c in enumerate(gy.chunks) if i != 1]
    for idx in itertools.product(*grid):
        rng = [(edges[0][idx[0]], edges[0][idx[0] + 1]), (0, gy.shape[1])]
        rng += [(edges[2 + i][k], edges[2 + i][k + 1]) for i, k in enumerate(idx[1:])]
        plan, read, keys = gy.plan(rng, ["none"] * gy.ndim)
        key = (f"{name}-part",) + idx
        layer[key] = (_bias_task, plan, read, nd, keys)
        parts.append(key)
    root = _tree_sum(layer, name, parts)
    layer[(name, 0)] = (_finish, root, dtype, (gy.shape[1],))
    return _new_array(name, layer, [gy.arr], ((gy.shape[1],),), dtype)


def _axis_boxes(a, e, L, lo, hi, mode):
    """Padded positions whose gradient folds into ``[a, e)`` of one axis:
    [(p0, p1, dst slice, step)], the interior first, then the halo's runs."""
    boxes = [(a + lo, e + lo, slice(0, e - a), 1)]
    if mode == "zeros" or (lo == 0 and hi == 0):
        return boxes
    for q0, q1 in ((-lo, 0), (L, L + hi)):
        if q1 <= q0:
            continue
        runs, _ = _halo.axis_runs(q0, q1, [a, e], L, mode)
        for r in runs:
            p0 = q0 + lo + r.dst.start
            p1 = q0 + lo + r.dst.stop
            # r.src indexes the block: it is where these positions fold to
            boxes.append((p0, p1, r.src, r.step))
    return boxes


def _data_graph(spec: ConvSpec, gy, w5, b, out_chunk_sizes, dtype, prefix,
                token_parts):
    """Lazy ``backward_data`` (a transposed convolution) of the dask ``gy``
    (the spec's y side, batched), giving the spec's x side, plus ``b``."""
    _, tokenize, _ = _dask()
    name = f"{prefix}-{tokenize(gy.name, *token_parts)}"
    layer = {}
    wkey = _constant_key(layer, name, "weight", w5)
    bkey = _constant_key(layer, name, "bias", b)
    nd = spec.nd
    x_size = spec.x_size[3 - nd:]
    out_chunks = (_halo.regular_chunks(spec.N, out_chunk_sizes[0]), (spec.C,)) + tuple(
        _halo.regular_chunks(L, c) for L, c in zip(x_size, out_chunk_sizes[2:]))
    out_edges = _edges(out_chunks)
    gy_edges = _edges(gy.chunks)
    L_out = gy.shape[2:]
    for idx in _block_grid(out_chunks):
        n0, n1 = out_edges[0][idx[0]], out_edges[0][idx[0] + 1]
        per_axis = []
        for i in range(nd):
            j = 3 - nd + i
            a, e = out_edges[2 + i][idx[2 + i]], out_edges[2 + i][idx[2 + i] + 1]
            per_axis.append(_axis_boxes(a, e, x_size[i], spec.pad_lo[j],
                                        spec.pad_hi[j], spec.padding_mode))
        boxes, counts, keys = [], [], []
        for combo in itertools.product(*per_axis):
            ranges = [(n0, n1), (0, spec.K)]
            pads = [0, 0, 0]
            empty = False
            for i, (p0, p1, _, _) in enumerate(combo):
                j = 3 - nd + i
                s, span = spec.stride[j], spec.dilation[j] * (spec.kernel[j] - 1) + 1
                o0 = max(0, min(-(-(p0 - span + 1) // s), p0 // s))
                o1 = min(L_out[i], (p1 - 1) // s + 1)
                if o1 <= o0:
                    empty = True
                    break
                ranges.append((o0, o1))
                pads[j] = p0 - o0 * s
            if empty:
                continue
            plan, read, box_keys = gy.plan(ranges, ["none"] * gy.ndim)
            size = tuple(p1 - p0 for p0, p1, _, _ in combo)
            fold = tuple((dst, step) for _, _, dst, step in combo)
            boxes.append(_Box(plan, read, tuple(pads), size, fold))
            counts.append(len(box_keys))
            keys += box_keys
        shape = (n1 - n0, spec.C) + tuple(
            out_edges[2 + i][idx[2 + i] + 1] - out_edges[2 + i][idx[2 + i]]
            for i in range(nd))
        job = _DataJob(tuple(boxes), tuple(counts), shape, spec.stride,
                       spec.dilation, spec.groups, nd, dtype)
        layer[(name,) + idx] = (_data_task, job, wkey, bkey, keys)
    return _new_array(name, layer, [gy.arr], out_chunks, dtype)


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


def conv(nd, input, weight, bias, stride, padding, dilation, groups,
         padding_mode, out=None, device=None):
    """``conv{nd}d`` of a dask ``input`` (called by ``numbaconv.conv*d``)."""
    _no_out(out, device)
    dtype = _check_kind(input, "input")
    weight, bias = _small(weight, "weight"), _small(bias, "bias")
    _check_kind(weight, "weight", dtype)
    if bias is not None:
        _check_kind(bias, "bias", dtype)
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
    dtype = _check_kind(input, "input")
    weight, bias = _small(weight, "weight"), _small(bias, "bias")
    _check_kind(weight, "weight", dtype)
    if bias is not None:
        _check_kind(bias, "bias", dtype)
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
