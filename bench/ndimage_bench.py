"""numbaconv.ndimage against scipy.ndimage, side by side in one process.

    python bench/ndimage_bench.py [--rounds 7] [--threads 2] [--quick]

Every case runs ``scipy.ndimage`` (single-threaded, as it is) and
``numbaconv.ndimage`` (on ``--threads`` Numba threads, default 2) on the
same arrays, in interleaved rounds after a warm-up call of each.  A round
times enough back-to-back calls of each to last about 0.2 s; the figure is
the median over rounds of the time per call, and the ratio is SciPy's time
divided by numbaconv's (above 1: numbaconv is faster).  Every case checks
first that both give the same result.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import numba
from scipy import ndimage as scipy_ndimage

from numbaconv import ndimage


def cases(rng, quick: bool):
    """(group, title, function name, input, weights, keyword arguments)."""
    out = []
    vol = 96 if quick else 128
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((vol,) * 3).astype(dtype)
        for k in (3, 5, 7):
            w = rng.standard_normal((k,) * 3)
            out.append(("3-D, k 3..7", f"correlate {np.dtype(dtype).name} "
                        f"{vol}^3 k{k}^3 reflect", "correlate", x, w, {}))
    x = rng.standard_normal((vol,) * 3).astype(np.float32)
    out.append(("3-D, k 3..7", f"convolve float32 {vol}^3 k4^3 constant cval=1",
                "convolve", x, rng.standard_normal((4,) * 3),
                {"mode": "constant", "cval": 1.0}))
    for k in (9, 15):
        side = 64 if quick else 96
        x = rng.standard_normal((side,) * 3).astype(np.float32)
        out.append(("kernels 9..15", f"correlate float32 {side}^3 k{k}^3 nearest",
                    "correlate", x, rng.standard_normal((k,) * 3),
                    {"mode": "nearest"}))
    for k in (9, 15):
        x = rng.standard_normal((1024, 1024)).astype(np.float32)
        out.append(("kernels 9..15", f"correlate float32 1024^2 k{k}^2 mirror",
                    "correlate", x, rng.standard_normal((k, k)),
                    {"mode": "mirror"}))
    img = 1024 if quick else 2048
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((img, img)).astype(dtype)
        for k in (3, 5):
            out.append(("2-D images", f"correlate {np.dtype(dtype).name} "
                        f"{img}^2 k{k}^2 reflect", "correlate", x,
                        rng.standard_normal((k, k)), {}))
    x = rng.integers(0, 255, (img, img), dtype=np.uint8)
    out.append(("2-D images", f"convolve uint8 {img}^2 k3^2 -> uint8", "convolve",
                x, np.ones((3, 3)) / 9, {}))
    x = rng.standard_normal((16, 512, 512)).astype(np.float32)
    out.append(("2-D images", "correlate float32 16x512^2 axes=(1, 2) k5^2",
                "correlate", x, rng.standard_normal((5, 5)), {"axes": (1, 2)}))
    x = rng.standard_normal((vol,) * 3).astype(np.float32)
    for axis in (0, 1, 2):
        for k in (3, 7):
            out.append(("correlate1d", f"correlate1d float32 {vol}^3 axis {axis} k{k}",
                        "correlate1d", x, rng.standard_normal(k), {"axis": axis}))
    x = rng.standard_normal((16, 16)).astype(np.float64)
    out.append(("small calls", "correlate float64 16^2 k3^2", "correlate", x,
                rng.standard_normal((3, 3)), {}))
    x = rng.standard_normal((8, 8, 8)).astype(np.float32)
    out.append(("small calls", "correlate float32 8^3 k3^3", "correlate", x,
                rng.standard_normal((3, 3, 3)), {}))
    x = rng.standard_normal(64)
    out.append(("small calls", "correlate1d float64 64 k5", "correlate1d", x,
                rng.standard_normal(5), {}))
    return out


def per_call(fn, seconds: float = 0.2) -> float:
    """Seconds per call over a batch of calls lasting about ``seconds``."""
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    calls = max(1, int(seconds / once))
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true",
                        help="smaller arrays, for a fast look")
    args = parser.parse_args(argv)
    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"numbaconv on {numba.get_num_threads()} threads, scipy.ndimage on 1; "
          f"median of {args.rounds} rounds; ratio = SciPy time / numbaconv time")
    print(f"{'case':58s} {'scipy ms':>10s} {'ours ms':>10s} {'ratio':>7s}")
    group = None
    for grp, title, name, x, w, kwargs in cases(rng, args.quick):
        if grp != group:
            print(f"-- {grp}")
            group = grp
        theirs = getattr(scipy_ndimage, name)
        ours = getattr(ndimage, name)
        a, b = theirs(x, w, **kwargs), ours(x, w, **kwargs)
        scale = float(np.abs(a).max()) if a.size else 1.0
        if a.dtype != b.dtype or not np.allclose(
                a.astype(np.float64), b.astype(np.float64),
                rtol=1e-4, atol=1e-4 * (scale + 1) + (1 if a.dtype.kind in "iu" else 0)):
            raise SystemExit(f"{title}: numbaconv and SciPy disagree")
        t_scipy, t_ours = [], []
        for _ in range(args.rounds):
            t_scipy.append(per_call(lambda: theirs(x, w, **kwargs)))
            t_ours.append(per_call(lambda: ours(x, w, **kwargs)))
        s, o = statistics.median(t_scipy), statistics.median(t_ours)
        print(f"{title:58s} {s * 1e3:10.3f} {o * 1e3:10.3f} {s / o:7.1f}", flush=True)


if __name__ == "__main__":
    main()
