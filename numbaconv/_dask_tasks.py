"""What one dask task of :mod:`numbaconv.dask` computes.

The jobs are small frozen dataclasses (picklable, opaque to dask) that say
how a task gets its block from its inputs (:class:`_Read`, a
:class:`numbaconv._halo.Gather` plan), how the block maps onto the canonical
5-D problem (:class:`_Layout`), and which primitive runs on it.  The tasks
set Numba's thread count for their own kernel calls (:func:`task_threads`).

>>> lay = _Layout((0, 1, 2), 1, True, 1)
>>> lay.to5(np.zeros((2, 3, 7))).shape
(2, 3, 1, 1, 7)
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from . import _halo
from ._dispatch import cpu_backend

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
# reading a task's inputs
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
