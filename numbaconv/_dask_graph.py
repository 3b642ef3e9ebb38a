"""The graphs of :mod:`numbaconv.dask`: one task per output block.

:class:`_Input` is a dask array as the tasks read it (by its chunks, or
straight from the array-like it was made from); the ``_*_graph`` functions
build the layers of forward convolutions, transposed convolutions (input
gradients), weight and bias gradients, with the weights placed in the graph
once.

>>> import dask.array as da
>>> _Input(da.zeros((4, 6), chunks=3)).bounds
[[0, 3, 4], [0, 3, 6]]
"""

from __future__ import annotations

import itertools

import numpy as np

from . import _halo
from ._dask_tasks import (_Box, _DataJob, _ForwardJob, _Read, _WeightJob, _add,
                          _bias_task, _data_task, _finish, _forward_task,
                          _weight_task)
from ._dispatch import is_dask_array
from ._shapes import ConvSpec


# ---------------------------------------------------------------------------
# inputs: by chunk or straight from their source
# ---------------------------------------------------------------------------

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


def _reduction_blocks(gy):
    """``(block index, range per axis)`` for every block of ``gy`` over the
    batch and spatial axes, the whole channel axis in each: the blocks whose
    partial sums a weight or bias gradient adds up."""
    edges = _edges(gy.chunks)
    grid = [range(len(c)) for i, c in enumerate(gy.chunks) if i != 1]
    for idx in itertools.product(*grid):
        rng = [(edges[0][idx[0]], edges[0][idx[0] + 1]), (0, gy.shape[1])]
        rng += [(edges[2 + i][k], edges[2 + i][k + 1])
                for i, k in enumerate(idx[1:])]
        yield idx, rng


def _weight_graph(spec: ConvSpec, x, gy, dtype, prefix, token_parts):
    """Lazy weight gradient: ``backward_weight`` of x (the spec's input side)
    and gy (its output side), one partial per block of gy."""
    _, tokenize, _ = _dask()
    name = f"{prefix}-{tokenize(x.name, gy.name, *token_parts)}"
    layer = {}
    parts = []
    for idx, rng in _reduction_blocks(gy):
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
    for idx, rng in _reduction_blocks(gy):
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
