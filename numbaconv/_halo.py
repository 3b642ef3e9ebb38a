"""Halo plans: which elements of which chunks make up a block with its halo.

Pure NumPy, no dask: :mod:`numbaconv.dask` builds its graphs from these
plans, and the tasks run them.  The idea is one index map per axis.  A block
that needs the positions ``q0 <= q < q1`` of an axis (in the coordinates of
the whole array, so ``q`` may lie before 0 or past the end) reads element
``src(q)`` of the whole array, where ``src`` is the extension mode's index
map (:func:`source_index`), or the fill value where the mode is a constant
one.  Consecutive positions whose sources step by +1, -1 or 0 inside one
chunk form a *run*: one slice of the block, one slice of the chunk.  A block
is the product of the runs of its axes, so the padding mode acts on the
edges of the whole array only, whatever the chunking, and a chunk smaller
than the halo simply contributes several runs.

>>> runs, fill = axis_runs(-2, 4, [0, 3, 6], 6, "symmetric")
>>> [(r.chunk, r.dst, r.src) for r in runs]
[(0, slice(0, 2, None), slice(1, None, -1)), (0, slice(2, 5, None), slice(0, 3, None)), (1, slice(5, 6, None), slice(0, 1, None))]
>>> fill
False
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

#: Index maps of the extension modes.  PyTorch's names and SciPy's names
#: that mean the same map are listed once each; ``None`` is a constant fill.
_MODE_MAP = {
    "zeros": None, "constant": None, "grid-constant": None,
    "replicate": "edge", "nearest": "edge",
    "circular": "wrap", "wrap": "wrap", "grid-wrap": "wrap",
    "reflect": "whole", "mirror": "whole",          # PyTorch reflect, SciPy mirror
    "symmetric": "half", "grid-mirror": "half",     # SciPy reflect is "half" too
    "none": "none",                                  # no extension: in range only
}


def canonical_mode(mode: str, scipy: bool = False) -> Optional[str]:
    """The index map behind a mode name (SciPy's 'reflect' is the half-sample
    mirror, PyTorch's the whole-sample one).

    >>> canonical_mode("reflect"), canonical_mode("reflect", scipy=True)
    ('whole', 'half')
    """
    if scipy and mode == "reflect":
        return "half"
    return _MODE_MAP[mode]


def source_index(q: np.ndarray, size: int, kind: Optional[str]) -> np.ndarray:
    """Index of the whole array that position ``q`` reads, -1 for the fill.

    >>> source_index(np.arange(-3, 6), 3, "whole").tolist()
    [1, 2, 1, 0, 1, 2, 1, 0, 1]
    >>> source_index(np.arange(-3, 6), 3, "half").tolist()
    [2, 1, 0, 0, 1, 2, 2, 1, 0]
    """
    q = np.asarray(q, dtype=np.int64)
    inside = (q >= 0) & (q < size)
    if kind is None or kind == "none" or size == 0:
        return np.where(inside, q, -1)
    if kind == "edge":
        return np.clip(q, 0, size - 1)
    if kind == "wrap":
        return q % size
    if kind == "whole":
        if size == 1:
            return np.zeros_like(q)
        period = 2 * (size - 1)
        r = q % period
        return np.where(r < size, r, period - r)
    if kind == "half":
        period = 2 * size
        r = q % period
        return np.where(r < size, r, period - 1 - r)
    raise ValueError(f"unknown index map {kind!r}")


@dataclass(frozen=True)
class Run:
    """Positions ``dst`` of a block read elements ``src`` of chunk ``chunk``
    (``src`` has one element when the positions repeat it)."""

    chunk: int
    dst: slice
    src: slice
    step: int


def _slice(start: int, n: int, step: int) -> slice:
    if step == 1:
        return slice(start, start + n)
    if step == 0:
        return slice(start, start + 1)
    stop = start - n
    return slice(start, None if stop < 0 else stop, -1)


def axis_runs(q0: int, q1: int, bounds: Sequence[int], size: int,
              mode: Optional[str]) -> Tuple[List[Run], bool]:
    """The runs of positions ``q0 <= q < q1`` of one axis.

    ``bounds`` are the chunk boundaries (``bounds[i] <= index <
    bounds[i + 1]`` is chunk ``i``); ``mode`` a mode name or index map.
    Returns the runs and whether some positions take the fill value
    (positions whose source lies outside ``bounds`` are left out as well).
    """
    kind = _MODE_MAP.get(mode, mode)
    q = np.arange(q0, q1, dtype=np.int64)
    src = source_index(q, size, kind)
    bounds = np.asarray(bounds, dtype=np.int64)
    chunk = np.searchsorted(bounds, src, side="right") - 1
    valid = (src >= 0) & (chunk >= 0) & (chunk < len(bounds) - 1)
    fill = bool((~valid).any())
    n = len(q)
    if n == 0:
        return [], False
    d = np.diff(src)
    # Where a run must end whatever its direction: another chunk, the fill,
    # or a jump; inside these segments a run ends where the step changes
    # (the turning point of a mirror).
    cut = np.flatnonzero((chunk[1:] != chunk[:-1]) | ~valid[1:] | ~valid[:-1]
                         | (np.abs(d) > 1)) + 1
    runs = []
    for s0, e0 in zip([0] + cut.tolist(), cut.tolist() + [n]):
        if not valid[s0]:
            continue
        s = s0
        while s < e0:
            if e0 - s == 1:
                step, e = 1, s + 1
            else:
                step = int(d[s])
                other = np.flatnonzero(d[s:e0 - 1] != step)
                e = s + 1 + (int(other[0]) if len(other) else e0 - 1 - s)
            c = int(chunk[s])
            local = int(src[s] - bounds[c])
            runs.append(Run(c, slice(s, e), _slice(local, e - s, step), step))
            s = e
    return runs, fill


@dataclass(frozen=True)
class Gather:
    """How one task assembles a block from chunks: ``block[dst] = chunk[src]``
    for each piece, over a block first filled with the fill value when
    ``fill`` is set.  The chunks arrive in the order of ``pieces``."""

    shape: Tuple[int, ...]
    fill: bool
    pieces: Tuple[Tuple[Tuple[slice, ...], Tuple[slice, ...]], ...]


def gather_plan(ranges: Sequence[Tuple[int, int]],
                bounds: Sequence[Sequence[int]], sizes: Sequence[int],
                modes: Sequence[Optional[str]]) -> Tuple[Gather, list]:
    """The plan of one block and the chunk indices its pieces read.

    >>> plan, chunks = gather_plan([(-1, 3)], [[0, 2, 4]], [4], ["zeros"])
    >>> plan.fill, chunks
    (True, [(0,), (1,)])
    """
    per_axis = []
    fill = False
    for (q0, q1), b, size, mode in zip(ranges, bounds, sizes, modes):
        runs, f = axis_runs(q0, q1, b, size, mode)
        per_axis.append(runs)
        fill |= f
    pieces, chunks = [], []
    for combo in itertools.product(*per_axis):
        chunks.append(tuple(r.chunk for r in combo))
        pieces.append((tuple(r.dst for r in combo), tuple(r.src for r in combo)))
    shape = tuple(q1 - q0 for q0, q1 in ranges)
    return Gather(shape, fill, tuple(pieces)), chunks


def assemble(plan: Gather, chunks: Sequence[np.ndarray], dtype,
             fill_value: float = 0.0) -> np.ndarray:
    """Run a :class:`Gather` plan on the chunks it names (a new C-contiguous
    array; a piece that repeats one element broadcasts it).

    >>> plan, _ = gather_plan([(-1, 3)], [[0, 2, 4]], [4], ["constant"])
    >>> assemble(plan, [np.array([1., 2.]), np.array([3., 4.])], np.float64, 9.0)
    array([9., 1., 2., 3.])
    """
    if plan.fill and fill_value == 0:
        block = np.zeros(plan.shape, dtype=dtype)     # zeroed pages, no pass
    elif plan.fill:
        block = np.full(plan.shape, fill_value, dtype=dtype)
    else:
        block = np.empty(plan.shape, dtype=dtype)
    for (dst, src), chunk in zip(plan.pieces, chunks):
        block[dst] = chunk[src]
    return block


def bounds_of(chunks: Sequence[int]) -> List[int]:
    """Chunk sizes -> boundaries: ``(2, 3) -> [0, 2, 5]``.

    >>> bounds_of((2, 3))
    [0, 2, 5]
    """
    return [0] + np.cumsum(chunks, dtype=np.int64).tolist()


def regular_chunks(size: int, chunk: int) -> Tuple[int, ...]:
    """``size`` cut into chunks of ``chunk`` (the last one smaller).

    >>> regular_chunks(10, 4)
    (4, 4, 2)
    """
    if size == 0:
        return (0,)
    chunk = max(1, min(chunk, size))
    full, rest = divmod(size, chunk)
    return (chunk,) * full + ((rest,) if rest else ())
