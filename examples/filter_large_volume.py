"""Filter a zarr volume larger than memory into another zarr store, chunk by chunk.

A light-sheet or CT volume of 2048^3 float32 voxels is 32 GiB: more than
most machines hold.  Stored as zarr (one file per chunk), it can be filtered
with a few chunks in memory at a time: the input is opened lazily with
``dask.array.from_zarr``, ``numbaconv.conv3d`` builds a lazy graph (each
task convolves one block with its halo, the padding mode applied at the
edges of the whole volume only), and ``dask.array.to_zarr`` computes and
writes the result chunk by chunk, under dask's progress bar.

The script first writes a synthetic input volume (random values, float32,
stored as (1, D, H, W)) of ``--size`` voxels per side unless ``--input``
names an existing store (3-D or with a channel axis in front), then
smooths it with a normalised 5x5x5 Gaussian, ``padding='same'``,
``padding_mode='symmetric'`` (SciPy's 'reflect').  It prints the volume and
chunk sizes, the time and the peak resident memory of the filtering step.

Run it with::

    python examples/filter_large_volume.py --size 256 --chunk 64 --workdir /tmp/vol

``--size 2048`` writes and filters a 32 GiB volume in a few GiB of memory
(and needs 64 GiB of disk).  Needs ``pip install "numbaconv[dask]"``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from typing import List, Optional

import numpy as np


def gaussian_kernel(size: int = 5, sigma: float = 1.0) -> np.ndarray:
    """A normalised isotropic Gaussian as a (1, 1, size, size, size) weight."""
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-0.5 * (r / sigma) ** 2)
    k = g[:, None, None] * g[None, :, None] * g[None, None, :]
    return (k / k.sum()).astype(np.float32)[None, None]


def write_input(path: str, size: int, chunk: int, seed: int = 0) -> None:
    """A random float32 volume of ``size``^3 with a channel axis in front,
    (1, size, size, size), written chunk by chunk."""
    import dask.array as da
    rs = da.random.default_rng(seed)
    vol = rs.standard_normal((1, size, size, size), chunks=(1,) + (chunk,) * 3,
                             dtype=np.float32)
    da.to_zarr(vol, path, overwrite=True)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux: KiB units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def filter_volume(src: str, dst: str, progress: bool = True) -> dict:
    """Smooth the zarr volume at ``src`` into a new zarr store at ``dst``."""
    import dask.array as da
    from dask.diagnostics import ProgressBar

    import numbaconv

    volume = da.from_zarr(src)          # (C, D, H, W): an unbatched conv3d input
    if volume.ndim == 3:
        volume = volume[None]
    weight = gaussian_kernel().astype(volume.dtype)
    # warm up (compile) on a small block so the measurement below is the
    # filtering alone
    numbaconv.conv3d(np.zeros((1, 1, 8, 8, 8), volume.dtype), weight, padding="same")
    before = peak_rss_mib()
    start = time.perf_counter()
    # Each task reads its block and halo from the store itself, so no chunk
    # stays in memory waiting for the neighbours that also need it.
    smoothed = numbaconv.conv3d(volume, weight, padding="same",
                                padding_mode="symmetric")
    if progress:
        with ProgressBar():
            da.to_zarr(smoothed, dst, overwrite=True)
    else:
        da.to_zarr(smoothed, dst, overwrite=True)
    return {"seconds": time.perf_counter() - start,
            "rss_before_mib": before, "rss_peak_mib": peak_rss_mib(),
            "volume_mib": volume.nbytes / 2**20,
            "chunk_mib": float(np.prod(volume.chunksize)) * volume.dtype.itemsize / 2**20,
            "chunks": volume.numblocks}


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=96,
                        help="voxels per side of the synthetic volume (default 96)")
    parser.add_argument("--chunk", type=int, default=32,
                        help="chunk size per side (default 32)")
    parser.add_argument("--workdir", default="filter_large_volume",
                        help="directory for the input and output stores")
    parser.add_argument("--input", default=None,
                        help="an existing zarr volume to filter instead")
    parser.add_argument("--threads", type=int, default=None,
                        help="dask threads (default: one per core)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar; print the result as JSON")
    args = parser.parse_args(argv)

    import dask
    if args.threads:
        dask.config.set(num_workers=args.threads)
    os.makedirs(args.workdir, exist_ok=True)
    src = args.input or os.path.join(args.workdir, "input.zarr")
    if args.input is None:
        write_input(src, args.size, args.chunk)
    dst = os.path.join(args.workdir, "smoothed.zarr")
    result = filter_volume(src, dst, progress=not args.quiet)
    result["output"] = dst
    if args.quiet:
        print(json.dumps(result))
    else:
        print(f"volume {result['volume_mib']:.0f} MiB in chunks of "
              f"{result['chunk_mib']:.2f} MiB {result['chunks']}; filtered in "
              f"{result['seconds']:.1f} s; peak resident memory "
              f"{result['rss_peak_mib']:.0f} MiB ({result['rss_before_mib']:.0f} "
              f"MiB before filtering); written to {dst}")
    return result


if __name__ == "__main__":
    main()
