"""A new result array per call against one ``out=`` array reused by every call.

    python bench/output_reuse.py [--rounds 9]

Single-channel images (``conv2d``, k5, ``padding_mode='reflect'``) of a
few sizes, float64 and float32.  Each figure is the median over interleaved
rounds of one call's time, in milliseconds; ``new / reused`` is how much a
fresh output costs.  A fresh output's first writes fault its pages in, a
cost set by the operating system (and, on a virtual machine, its host), not
by the convolution.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import numbaconv


def timed(call) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    print("| image | dtype | new output (ms) | reused out= (ms) | new / reused |")
    print("|---|---|---:|---:|---:|")
    for size in (512, 1024, 2048, 4096):
        for dtype in (np.float64, np.float32):
            x = rng.standard_normal((1, 1, size, size)).astype(dtype)
            w = rng.standard_normal((1, 1, 5, 5)).astype(dtype)
            kw = dict(padding=2, padding_mode="reflect")
            out = numbaconv.conv2d(x, w, **kw)

            def new():
                numbaconv.conv2d(x, w, **kw)

            def reused():
                numbaconv.conv2d(x, w, out=out, **kw)

            new(), reused()
            t_new, t_reused = [], []
            for _ in range(args.rounds):
                t_new.append(timed(new))
                t_reused.append(timed(reused))
            a, b = statistics.median(t_new) * 1e3, statistics.median(t_reused) * 1e3
            print(f"| {size}^2 | {np.dtype(dtype).name} | {a:.2f} | {b:.2f} | {a / b:.2f} |")


if __name__ == "__main__":
    main()
