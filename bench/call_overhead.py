"""Time per call on small arrays, where the fixed cost of a call dominates.

    python bench/call_overhead.py [--rounds 7] [--calls 300]

Every case runs numbaconv and its peers (PyTorch, ``scipy.ndimage.correlate``
where the case has one channel) on the same arrays, with the same number of
threads (Numba's; PyTorch is set to it), in interleaved rounds.  A round
times ``--calls`` back-to-back calls of each contender; the figure is the
median over rounds of the mean time per call, in microseconds, and the ratio
is peer time / numbaconv time.  Peers that are not installed are skipped.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import numbaconv
from numba import get_num_threads

try:
    import torch
except ImportError:          # the peers are optional
    torch = None
try:
    from scipy import ndimage
except ImportError:
    ndimage = None


def cases(rng):
    """(title, our call, {peer: call}) per case."""
    f32, f64 = np.float32, np.float64
    out = []

    def single(nd, size, k, dtype):
        x = rng.standard_normal((1, 1) + (size,) * nd).astype(dtype)
        w = rng.standard_normal((1, 1) + (k,) * nd).astype(dtype)
        conv = getattr(numbaconv, f"conv{nd}d")
        peers = {}
        if ndimage is not None:
            xs, ws = x[0, 0], w[0, 0]
            peers["scipy.ndimage"] = lambda: ndimage.correlate(xs, ws, mode="constant")
        if torch is not None:
            tconv = getattr(torch.nn.functional, f"conv{nd}d")
            xt, wt = torch.from_numpy(x), torch.from_numpy(w)
            peers["PyTorch"] = lambda: tconv(xt, wt, padding="same")
        title = f"conv{nd}d {np.dtype(dtype).name} 1x1x{size}^{nd}, k{k}, padding 'same'"
        out.append((title, lambda: conv(x, w, padding="same"), peers))

    def layer(nd, n, c, k_out, size, k, dtype):
        x = rng.standard_normal((n, c) + (size,) * nd).astype(dtype)
        w = rng.standard_normal((k_out, c) + (k,) * nd).astype(dtype)
        b = rng.standard_normal(k_out).astype(dtype)
        conv = getattr(numbaconv, f"conv{nd}d")
        peers = {}
        if torch is not None:
            tconv = getattr(torch.nn.functional, f"conv{nd}d")
            xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
            peers["PyTorch"] = lambda: tconv(xt, wt, bt, padding=k // 2)
        title = (f"conv{nd}d {np.dtype(dtype).name} {n}x{c}->{k_out}, {size}^{nd}, k{k}, "
                 f"padding {k // 2}, bias")
        out.append((title, lambda: conv(x, w, b, padding=k // 2), peers))

    single(1, 256, 5, f64)
    single(2, 32, 3, f32)
    single(3, 16, 3, f64)
    layer(2, 1, 3, 8, 64, 3, f32)
    layer(3, 1, 4, 4, 16, 3, f32)
    return out


def per_call_us(fns, rounds, calls):
    """Median over interleaved rounds of the mean microseconds per call."""
    samples = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            fn()
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            samples[i].append((time.perf_counter() - t0) / calls * 1e6)
    return [statistics.median(s) for s in samples]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args(argv)
    threads = get_num_threads()
    if torch is not None:
        torch.set_num_threads(threads)
    print(f"threads: {threads}; median of {args.rounds} rounds of {args.calls} calls; "
          f"ratio = peer time / numbaconv time")
    print(f"{'case':58s} {'numbaconv':>10s}  peer")
    for title, ours, peers in cases(np.random.default_rng(0)):
        names = list(peers)
        times = per_call_us([ours] + [peers[n] for n in names], args.rounds, args.calls)
        cells = [f"{n} {t:.1f} us ({t / times[0]:.2f}x)" for n, t in zip(names, times[1:])]
        print(f"{title:58s} {times[0]:7.1f} us  " + "; ".join(cells))


if __name__ == "__main__":
    main()
