"""numbaconv on chunked dask volumes, side by side with its peers.

Two cases, each run in this one process, warm (every contender runs once
before timing), the median of ``--repeats`` timed runs reported (the
contenders timed in turns).  A dask
result is written with ``dask.array.store`` into a preallocated NumPy array
(block by block, as ``to_zarr`` writes a store), not gathered by
``compute()``, whose final concatenation of all blocks costs every dask
contender the same and is not convolution:

* ``correlate``: SciPy-dialect correlation of a chunked float32 volume with a
  dense kernel (``mode='reflect'``), ``numbaconv.ndimage.correlate`` (or, where
  that module is not there, ``numbaconv.dask.correlate_ndimage``) against
  ``dask_image.ndfilters.correlate``, same chunks, same threaded scheduler
  with the same number of threads.  Target: ratio (dask-image / numbaconv) >= 5.
* ``conv3d``: multi-channel ``conv3d`` on a chunked dask volume against the
  same call on the in-memory NumPy array (all of Numba's threads).  Target:
  dask time / in-memory time <= 1.3.

Results agree with each other (checked) before any timing counts.  Writes a
Markdown table to ``--out`` (default ``bench/RESULTS-dask.md``)::

    python bench/dask_bench.py                 # defaults below
    python bench/dask_bench.py --size 256 --chunk 128 --repeats 5

Needs ``pip install "numbaconv[dask,bench]"`` (dask-image for the first case).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Callable, List, Optional

import numpy as np


def median_times(fns: List[Callable[[], object]], repeats: int) -> List[float]:
    """Median time of each function, timed in turns (A B A B ...) so that a
    change in the machine's load hits every contender alike."""
    for fn in fns:
        fn()                               # warm: compile, caches
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, acc in zip(fns, times):
            start = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def stored(arr, threads: int) -> np.ndarray:
    """Compute ``arr`` into a preallocated array with dask's threaded scheduler."""
    import dask.array as da
    out = np.empty(arr.shape, arr.dtype)
    da.store(arr, out, lock=False, scheduler="threads", num_workers=threads)
    return out


def numbaconv_correlate():
    """The SciPy-dialect dask entry point: ndimage's when it exists."""
    try:
        from numbaconv import ndimage
        return ndimage.correlate, "numbaconv.ndimage.correlate"
    except ImportError:
        from numbaconv.dask import correlate_ndimage
        return correlate_ndimage, "numbaconv.dask.correlate_ndimage"


def case_correlate(size: int, chunk: int, k: int, threads: int, repeats: int) -> dict:
    import dask.array as da
    from dask_image import ndfilters

    corr, label = numbaconv_correlate()
    rng = np.random.default_rng(0)
    vol = da.from_array(rng.standard_normal((size,) * 3, dtype=np.float32),
                        chunks=chunk)
    kernel = rng.standard_normal((k,) * 3).astype(np.float32)
    ours = lambda: stored(corr(vol, kernel, mode="reflect"), threads)  # noqa: E731
    peer = lambda: stored(ndfilters.correlate(vol, kernel, mode="reflect"),  # noqa: E731
                          threads)
    a, b = ours(), peer()
    err = float(np.abs(a - b).max() / np.abs(b).max())
    if not err < 1e-4:
        raise SystemExit(f"correlate: results disagree (relative error {err:.3g})")
    t_ours, t_peer = median_times([ours, peer], repeats)
    return {"case": f"correlate {size}^3 float32, chunks {chunk}^3, kernel {k}^3, "
                    f"mode='reflect' ({label})",
            "peer": "dask_image.ndfilters.correlate", "ours_s": t_ours,
            "peer_s": t_peer, "ratio": t_peer / t_ours, "target": ">= 5 (peer / ours)",
            "met": t_peer / t_ours >= 5}


def case_conv3d(size: int, chunk: tuple, channels: int, threads: int,
                repeats: int) -> dict:
    import dask.array as da

    import numbaconv

    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, channels, size, size, size), dtype=np.float32)
    w = (rng.standard_normal((channels, channels, 3, 3, 3)) / 10).astype(np.float32)
    b = rng.standard_normal(channels).astype(np.float32)
    dx = da.from_array(x, chunks=(1, channels) + tuple(chunk))
    lazy = lambda: stored(numbaconv.conv3d(dx, w, b, padding="same"),  # noqa: E731
                          threads)
    eager = lambda: numbaconv.conv3d(x, w, b, padding="same")  # noqa: E731
    a, r = lazy(), eager()
    err = float(np.abs(a - r).max() / np.abs(r).max())
    if not err < 1e-5:
        raise SystemExit(f"conv3d: dask and in-memory disagree ({err:.3g})")
    t_dask, t_mem = median_times([lazy, eager], repeats)
    return {"case": f"conv3d {channels}->{channels} channels, {size}^3 float32, k3, "
                    f"chunks {'x'.join(map(str, chunk))} (channels whole)",
            "peer": "numbaconv.conv3d on the NumPy array", "ours_s": t_dask,
            "peer_s": t_mem, "ratio": t_dask / t_mem,
            "target": "<= 1.3 (dask / in-memory)", "met": t_dask / t_mem <= 1.3}


def write(rows: List[dict], path: str, args, threads: int) -> str:
    import numba
    lines = [
        "# numbaconv on dask: results", "",
        f"Command: `python bench/dask_bench.py --size {args.size} --chunk {args.chunk} "
        f"--kernel {args.kernel} --channels {args.channels} --repeats {args.repeats}"
        + (f" --conv-size {args.conv_size}" if args.conv_size else "")
        + (f" --conv-chunks {args.conv_chunks}" if args.conv_chunks else "") + "`"
        + (f" `--threads {args.threads}`" if args.threads else ""), "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs; dask threads = "
        f"Numba threads = {threads} (Numba {numba.__version__}, layer "
        f"{numba.threading_layer()}). Median of {args.repeats} warm runs.", "",
        "| case | peer | numbaconv (s) | peer (s) | ratio | target | met |",
        "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['peer']} | {r['ours_s']:.3f} | "
                     f"{r['peer_s']:.3f} | {r['ratio']:.2f} | {r['target']} | "
                     f"{'yes' if r['met'] else 'no'} |")
    text = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    return text


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--chunk", type=int, default=96)
    parser.add_argument("--kernel", type=int, default=5)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None,
                        help="dask and Numba threads (default: all cores)")
    parser.add_argument("--conv-size", type=int, default=None,
                        help="conv3d volume size (default: size // 2)")
    parser.add_argument("--conv-chunks", default=None,
                        help="conv3d spatial chunks D,H,W (default: chunk // 2 cubed)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default="correlate,conv3d")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(
        os.path.abspath(__file__)), "RESULTS-dask.md"))
    args = parser.parse_args(argv)
    import numba
    threads = args.threads or numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(threads)
    rows = []
    cases = args.cases.split(",")
    if "correlate" in cases:
        rows.append(case_correlate(args.size, args.chunk, args.kernel, threads,
                                   args.repeats))
    if "conv3d" in cases:
        chunks = (tuple(int(c) for c in args.conv_chunks.split(","))
                  if args.conv_chunks else (args.chunk // 2,) * 3)
        rows.append(case_conv3d(args.conv_size or args.size // 2, chunks,
                                args.channels, threads, args.repeats))
    print(write(rows, args.out, args, threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
