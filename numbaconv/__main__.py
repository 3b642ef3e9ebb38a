"""Command line: ``python -m numbaconv info | demo | bench``.

* ``info``  versions, threads, threading layer, cache and GPU status;
* ``demo``  a 3-D edge filter on a synthetic sphere, checked against an
  independent NumPy reference, with timings and throughput;
* ``bench`` the side-by-side benchmarks (see ``bench/README.md``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time

import numpy as np


def info() -> int:
    """Print versions, threads and whether a CUDA GPU is usable."""
    import llvmlite
    import numba

    import numbaconv
    from numbaconv import _config

    rows = [
        ("numbaconv", numbaconv.__version__),
        ("python", platform.python_version()),
        ("numpy", np.__version__),
        ("numba", numba.__version__),
        ("llvmlite", llvmlite.__version__),
        ("machine", f"{platform.machine()}, {platform.system()}"),
        ("threads", str(numba.get_num_threads())),
        ("threading layer", str(numba.config.THREADING_LAYER)),
        ("fastmath flags", str(sorted(_config.FASTMATH) if _config.FASTMATH else "off")),
        ("on-disk cache", "on" if _config.CACHE else "off"),
    ]
    try:
        from numbaconv.cuda import cuda_status
        usable, reason = cuda_status()
        rows.append(("cuda", ("usable: " if usable else "not usable: ") + reason))
    except ImportError as exc:  # pragma: no cover - depends on the install
        rows.append(("cuda", f"not usable: {exc}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def sphere(n: int, radius: float) -> np.ndarray:
    """A float64 ``(1, 1, n, n, n)`` volume: 1 inside a ball, 0 outside."""
    c = (n - 1) / 2
    z, y, x = np.ogrid[:n, :n, :n]
    inside = (z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2 <= radius ** 2
    return inside.astype(np.float64)[None, None]


def sobel3d() -> np.ndarray:
    """The three 3-D Sobel derivative kernels as a ``(3, 1, 3, 3, 3)`` weight."""
    smooth = np.array([1.0, 2.0, 1.0])
    diff = np.array([-1.0, 0.0, 1.0])
    kz = np.einsum("i,j,k->ijk", diff, smooth, smooth)
    return np.stack([kz, kz.transpose(1, 0, 2), kz.transpose(1, 2, 0)])[:, None] / 32


def reference_correlate(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Independent check: 'same' cross-correlation with edge replication, as a
    sum of shifted copies of the padded volume (one NumPy pass per tap)."""
    k = w.shape[-1]
    p = k // 2
    xp = np.pad(x[0, 0], p, mode="edge")
    n = x.shape[-1]
    out = np.zeros((w.shape[0], n, n, n))
    for a in range(k):
        for b in range(k):
            for c in range(k):
                out += w[:, 0, a, b, c, None, None, None] * xp[None, a:a + n, b:b + n, c:c + n]
    return out[None]


def demo(size: int = 128) -> int:
    """Edge-detect a synthetic sphere with conv3d and check the result."""
    import numba

    import numbaconv

    x = sphere(size, size / 3)
    w = sobel3d()
    print(f"numbaconv demo: 3-D Sobel edge filter on a {size}^3 float64 sphere, "
          f"{numba.get_num_threads()} threads")

    t0 = time.perf_counter()
    y = numbaconv.conv3d(x, w, padding="same", padding_mode="replicate")
    first = time.perf_counter() - t0
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        numbaconv.conv3d(x, w, padding="same", padding_mode="replicate", out=y)
        times.append(time.perf_counter() - t0)
    warm = float(np.median(times))

    ref = reference_correlate(x, w)
    err = float(np.max(np.abs(y - ref)))
    magnitude = np.sqrt((y[0] ** 2).sum(axis=0))
    on_edge = magnitude > 0.25
    c = (size - 1) / 2
    z, yy, xx = np.nonzero(on_edge)
    radii = np.sqrt((z - c) ** 2 + (yy - c) ** 2 + (xx - c) ** 2)

    flops = 2 * y.size * w[0].size
    print(f"  first call (includes compilation or cache load): {first:8.3f} s")
    print(f"  warm call (median of 5):                         {warm * 1e3:8.2f} ms")
    print(f"  throughput: {x.size / warm / 1e6:8.1f} Mvoxel/s, {flops / warm / 1e9:6.2f} GFLOP/s")
    print(f"  max |numbaconv - NumPy reference| = {err:.2e}")
    print(f"  edge voxels: {on_edge.sum()}, radius {radii.mean():.2f} +- {radii.std():.2f} "
          f"(sphere radius {size / 3:.2f})")
    ok = err < 1e-12 and abs(radii.mean() - size / 3) < 1.5
    print("  check: " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


#: Where the benchmark harness lives in a checkout of the repository.
HARNESS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "bench", "harness.py")


def bench(argv) -> int:
    """Runs the repository's ``bench/harness.py`` with ``argv``, or says how
    to get it: the harness and its peers are not part of the package."""
    if not os.path.isfile(HARNESS):
        print("the benchmark harness is not installed with numbaconv: run it from a "
              "checkout of the repository, `python bench/harness.py --help` "
              "(or `python -m numbaconv bench` there)", file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location("numbaconv_bench_harness", HARNESS)
    harness = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = harness     # dataclasses look their module up
    spec.loader.exec_module(harness)
    return harness.main(list(argv))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        # Hand every remaining argument to the benchmark's own parser
        # (argparse.REMAINDER would not pass along leading "--options").
        return bench(argv[1:])
    # The module docstring is reStructuredText; --help prints plain text.
    parser = argparse.ArgumentParser(
        prog="python -m numbaconv",
        description="numbaconv's command line: info, demo or bench.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, threads and GPU status")
    p_demo = sub.add_parser("demo", help="3-D edge filter on a synthetic sphere")
    p_demo.add_argument("--size", type=int, default=128, help="volume edge (default 128)")
    p_bench = sub.add_parser("bench", help="side-by-side benchmarks against peers")
    p_bench.add_argument("args", nargs=argparse.REMAINDER,
                         help="options for the benchmark (see --help there)")
    ns = parser.parse_args(argv)
    if ns.command == "info":
        return info()
    if ns.command == "demo":
        return demo(ns.size)
    return bench(ns.args)


if __name__ == "__main__":
    sys.exit(main())
