"""GPU benchmark: numbaconv's CUDA kernels beside PyTorch/cuDNN and CuPy.

Every case runs numbaconv (Numba device arrays in and out) and its peers in
one process on one GPU: PyTorch/cuDNN in float32 with TF32 off and on and in
float64, and ``cupyx.scipy.ndimage.correlate`` for single-channel volumes.
Each timing is the median of repeated warm calls, each followed by a device
synchronisation; the first call of numbaconv (which compiles its kernels) is
reported on its own.  Results are checked against the peer (TF32 off) before
they are timed: a mismatch is reported in the table, never hidden.

The figure of merit is ``peer time / numbaconv time``: above 1 numbaconv is
faster.  A peer that is not installed (or has no GPU) is skipped with a note.

Usage::

    PYTHONPATH=. python bench/gpu_bench.py [--out bench/RESULTS-gpu.md]
        [--png bench/ratios-gpu.png] [--budget SECONDS] [--tiny] [--only NAME]

``--tiny`` runs every case on tiny shapes (seconds under Numba's CUDA
simulator, ``NUMBA_ENABLE_CUDASIM=1``), to check the script itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time
from typing import List, Optional

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass
class Case:
    """One benchmark case: what numbaconv and the peers compute."""

    name: str
    kind: str            # "conv", "train", "single", "transpose"
    nd: int
    n: int
    c_in: int
    c_out: int
    size: int
    k: int
    dtype: str
    stride: int = 1
    padding: int = 0
    tiny: tuple = ()     # (n, c_in, c_out, size) under --tiny

    def shapes(self, tiny):
        n, ci, co, sz = self.tiny if tiny else (self.n, self.c_in, self.c_out,
                                                 self.size)
        sp = (sz,) * self.nd
        if self.kind == "transpose":
            return (n, ci) + sp, (ci, co) + (self.k,) * self.nd
        return (n, ci) + sp, (co, ci) + (self.k,) * self.nd

    def flops(self, tiny):
        """2 x multiply-adds of the direct convolution (x3 for a training
        step: forward, data and weight gradients)."""
        xs, ws = self.shapes(tiny)
        if self.kind == "transpose":
            spatial = np.prod(xs[2:])
            macs = xs[0] * spatial * ws[0] * ws[1] * self.k ** self.nd
        else:
            spatial = np.prod([(s + 2 * self.padding - self.k) // self.stride + 1
                               for s in xs[2:]])
            macs = xs[0] * spatial * ws[0] * ws[1] * self.k ** self.nd
        return 2.0 * macs * (3 if self.kind == "train" else 1)


# The GPU-sized cases first (a run cut short keeps them), then the CPU
# bench's shapes.
CASES: List[Case] = [
    Case("conv3d 4x64->64 64^3 k3", "conv", 3, 4, 64, 64, 64, 3, "float32",
         padding=1, tiny=(1, 2, 2, 4)),
    Case("conv3d 4x64->64 64^3 k3 train", "train", 3, 4, 64, 64, 64, 3,
         "float32", padding=1, tiny=(1, 2, 2, 3)),
    Case("conv3d 4x64->64 64^3 k3", "conv", 3, 4, 64, 64, 64, 3, "float64",
         padding=1, tiny=(1, 2, 2, 3)),
    Case("single 1x1x256^3 k3", "single", 3, 1, 1, 1, 256, 3, "float32",
         padding=1, tiny=(1, 1, 1, 9)),
    Case("single 1x1x256^3 k7", "single", 3, 1, 1, 1, 256, 7, "float32",
         padding=3, tiny=(1, 1, 1, 9)),
    Case("conv2d 32x64->64 112^2 k3", "conv", 2, 32, 64, 64, 112, 3,
         "float32", padding=1, tiny=(1, 2, 2, 6)),
    Case("conv3d 4x32->32 32^3 k3", "conv", 3, 4, 32, 32, 32, 3, "float32",
         padding=1, tiny=(1, 2, 3, 5)),
    Case("conv3d 4x32->32 32^3 k3 train", "train", 3, 4, 32, 32, 32, 3,
         "float32", padding=1, tiny=(1, 2, 3, 4)),
    Case("conv3d 4x32->32 32^3 k3", "conv", 3, 4, 32, 32, 32, 3, "float64",
         padding=1, tiny=(1, 2, 2, 4)),
    Case("conv3d 4x32->32 32^3 k3 train", "train", 3, 4, 32, 32, 32, 3,
         "float64", padding=1, tiny=(1, 2, 2, 3)),
    Case("single 1x1x128^3 k3", "single", 3, 1, 1, 1, 128, 3, "float32",
         padding=1, tiny=(1, 1, 1, 9)),
    Case("single 1x1x128^3 k5", "single", 3, 1, 1, 1, 128, 5, "float64",
         padding=2, tiny=(1, 1, 1, 9)),
    Case("conv_transpose3d 2x32->16 16^3 k4 s2", "transpose", 3, 2, 32, 16,
         16, 4, "float32", stride=2, padding=1, tiny=(1, 2, 2, 3)),
    Case("conv_transpose3d 2x64->24 32^3 k2 s2", "transpose", 3, 2, 64, 24,
         32, 2, "float32", stride=2, tiny=(1, 2, 2, 3)),
    Case("conv2d 8x64->64 56^2 k3", "conv", 2, 8, 64, 64, 56, 3, "float32",
         padding=1, tiny=(1, 2, 3, 6)),
]


@dataclasses.dataclass
class Row:
    case: Case
    ours_s: float
    first_s: float
    peers: dict           # peer name -> seconds
    error: Optional[float]   # max |ours - reference| / max |reference|
    notes: List[str]


def _median_time(fn, sync, repeats, budget):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
        if sum(times) > budget:
            break
    return statistics.median(times)


class Peers:
    """The optional peers, imported once; each attribute is None when absent."""

    def __init__(self, tiny):
        self.notes = []
        self.torch = None
        self.device = "cuda"
        self.cupy = self.cupyx_ndimage = None
        try:
            import torch
            if torch.cuda.is_available():
                self.torch = torch
            elif tiny:
                # Checks the comparison code itself (no timings to trust).
                self.torch, self.device = torch, "cpu"
                self.notes.append("PyTorch has no CUDA device here: its CPU "
                                  "build stands in (--tiny)")
            else:
                self.notes.append("PyTorch has no CUDA device here: skipped")
        except ImportError:
            self.notes.append("PyTorch not installed: skipped")
        try:
            import cupy
            import cupyx.scipy.ndimage as cnd
            cupy.zeros(1)
            self.cupy, self.cupyx_ndimage = cupy, cnd
        except Exception as exc:  # not installed, or no usable GPU
            self.notes.append(f"cupyx.scipy.ndimage unavailable "
                              f"({type(exc).__name__}): skipped")


def run_case(case: Case, peers: Peers, tiny: bool, repeats: int,
             budget: float) -> Row:
    """Time one case for numbaconv and every available peer."""
    from numba import cuda

    import numbaconv

    dtype = np.dtype(case.dtype)
    rng = np.random.default_rng(0)
    xs, ws = case.shapes(tiny)
    x = rng.standard_normal(xs).astype(dtype)
    w = (rng.standard_normal(ws) / np.sqrt(np.prod(ws[1:]))).astype(dtype)
    b = rng.standard_normal(ws[1] if case.kind == "transpose" else ws[0]
                            ).astype(dtype)
    dx, dw, db = cuda.to_device(x), cuda.to_device(w), cuda.to_device(b)
    conv = getattr(numbaconv, f"conv{case.nd}d")
    tconv = getattr(numbaconv, f"conv_transpose{case.nd}d")
    backward = getattr(numbaconv, f"conv{case.nd}d_backward")
    kw = dict(stride=case.stride, padding=case.padding)
    notes: List[str] = []

    if case.kind == "transpose":
        def ours():
            return tconv(dx, dw, db, **kw)
    elif case.kind == "single":
        def ours():
            return conv(dx, dw, None, **kw)
    else:
        y0 = conv(dx, dw, db, **kw)
        dgy = cuda.to_device(rng.standard_normal(y0.shape).astype(dtype))
        if case.kind == "train":
            def ours():
                y = conv(dx, dw, db, **kw)
                return (y,) + tuple(backward(dgy, dx, dw, **kw))
        else:
            def ours():
                return conv(dx, dw, db, **kw)

    sync = cuda.synchronize
    t0 = time.perf_counter()
    result = ours()
    sync()
    first = time.perf_counter() - t0
    ours_s = _median_time(ours, sync, repeats, budget)
    got = [r.copy_to_host() for r in
           (result if isinstance(result, tuple) else (result,))]

    times = {}
    error = None
    torch = peers.torch
    if torch is not None:
        F = torch.nn.functional
        dev = torch.device(peers.device)
        tsync = (torch.cuda.synchronize if peers.device == "cuda"
                 else (lambda: None))
        tx = torch.from_numpy(x).to(dev)
        tw = torch.from_numpy(w).to(dev)
        tb = torch.from_numpy(b).to(dev)
        fn = getattr(F, f"conv_transpose{case.nd}d" if case.kind ==
                     "transpose" else f"conv{case.nd}d")
        if case.kind == "train":
            tx.requires_grad_(True)
            tw.requires_grad_(True)
            tb.requires_grad_(True)
            tgy = torch.from_numpy(dgy.copy_to_host()).to(dev)

            def peer():
                y = fn(tx, tw, tb, **kw)
                return (y,) + torch.autograd.grad(y, (tx, tw, tb), tgy)
        else:
            bias = None if case.kind == "single" else tb

            def peer():
                with torch.no_grad():
                    return (fn(tx, tw, bias, **kw),)
        settings = [("PyTorch", False)]
        if dtype == np.float32:
            settings.append(("PyTorch TF32", True))
        for name, tf32 in settings:
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.benchmark = True
            ref = peer()
            tsync()
            if not tf32:
                error = max(
                    float(np.abs(g - r.detach().cpu().numpy()).max()
                          / max(1e-30, float(r.detach().abs().max())))
                    for g, r in zip(got, ref))
            times[name] = _median_time(peer, tsync, repeats, budget)
        torch.backends.cudnn.allow_tf32 = False
    if case.kind == "single" and peers.cupyx_ndimage is not None:
        cp = peers.cupy
        vol = cp.asarray(x[0, 0])
        ker = cp.asarray(w[0, 0])

        def cupy_peer():
            return peers.cupyx_ndimage.correlate(vol, ker, mode="constant",
                                                 cval=0.0)
        ref = cupy_peer()
        cp.cuda.Device().synchronize()
        err = float(np.abs(got[0][0, 0] - cp.asnumpy(ref)).max()
                    / max(1e-30, float(np.abs(cp.asnumpy(ref)).max())))
        error = err if error is None else max(error, err)
        times["cupyx.ndimage"] = _median_time(
            cupy_peer, cp.cuda.Device().synchronize, repeats, budget)
    limit = 1e-3 if dtype == np.float32 else 1e-9
    if error is not None and error > limit:
        notes.append(f"MISMATCH: relative error {error:.2e} > {limit:g}")
    return Row(case, ours_s, first, times, error, notes)


def describe_device():
    """What ``numbaconv.cuda.cuda_status`` found: the GPU and its compute
    capability, or the simulator."""
    from numbaconv.cuda import cuda_status
    return cuda_status()[1]


def write_markdown(path, rows, header_notes, device, wall, tiny):
    peers = []
    for r in rows:
        for p in r.peers:
            if p not in peers:
                peers.append(p)
    lines = ["# numbaconv on the GPU", "",
             f"Device: {device}. Python {platform.python_version()}, "
             f"NumPy {np.__version__}."
             + (" **Tiny shapes (--tiny): a check of the script, not a "
                "measurement.**" if tiny else ""), "",
             "Median of warm calls, each followed by a device "
             "synchronisation; `first call` includes compiling numbaconv's "
             "kernels.  Ratios are peer time / numbaconv time (above 1: "
             "numbaconv faster).  `error` is the largest difference from "
             "PyTorch (TF32 off) or CuPy, relative to the largest value.", "",
             "numbaconv's times include allocating its results with Numba's "
             "default allocator (no caching pool, unlike PyTorch and CuPy).",
             "",
             "Reproduce: `bash bench/gpu_run.sh` (or `PYTHONPATH=. python "
             "bench/gpu_bench.py`).", ""]
    head = ["case", "dtype", "numbaconv ms", "first call s", "GFLOP/s"] + \
        [f"{p} ms" for p in peers] + [f"ratio {p}" for p in peers] + \
        ["error", "notes"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for r in rows:
        gflops = r.case.flops(tiny) / r.ours_s / 1e9
        cells = [r.case.name, r.case.dtype, f"{r.ours_s * 1e3:.3f}",
                 f"{r.first_s:.1f}", f"{gflops:.0f}"]
        cells += [f"{r.peers[p] * 1e3:.3f}" if p in r.peers else "-"
                  for p in peers]
        cells += [f"{r.peers[p] / r.ours_s:.2f}" if p in r.peers else "-"
                  for p in peers]
        cells += ["-" if r.error is None else f"{r.error:.1e}",
                  "; ".join(r.notes)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for note in header_notes:
        lines.append(f"* {note}")
    lines.append(f"* wall time of the benchmark: {wall:.0f} s")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def write_chart(path, rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels, series = [], {}
    for r in rows:
        labels.append(f"{r.case.name} {r.case.dtype}")
        for p, t in r.peers.items():
            series.setdefault(p, {})[len(labels) - 1] = t / r.ours_s
    fig, ax = plt.subplots(figsize=(10, 0.45 * max(len(labels), 2) + 1.5))
    height = 0.8 / max(1, len(series))
    for j, (peer, values) in enumerate(series.items()):
        ys = [i + j * height for i in values]
        ax.barh(ys, list(values.values()), height=height, label=peer)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("peer time / numbaconv time (above 1: numbaconv faster)")
    if series:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no peer available", transform=ax.transAxes,
                ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "RESULTS-gpu.md"))
    ap.add_argument("--png", default=os.path.join(here, "ratios-gpu.png"))
    ap.add_argument("--tiny", action="store_true",
                    help="tiny shapes: checks the script (CUDA simulator)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--budget", type=float, default=270.0,
                    help="seconds for all cases; later cases get fewer "
                    "repeats when it runs short")
    ap.add_argument("--only", help="run only the cases whose name contains "
                    "one of these comma-separated texts")
    args = ap.parse_args(argv)
    from numbaconv.cuda import cuda_status
    ok, reason = cuda_status()
    if not ok:
        print(f"gpu_bench: CUDA is not usable here: {reason}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    peers = Peers(args.tiny)
    wanted = args.only.split(",") if args.only else [""]
    cases = [c for c in CASES if any(t in f"{c.name} {c.dtype}"
                                     for t in wanted)]
    rows: List[Row] = []
    device = describe_device()
    failed = False
    for i, case in enumerate(cases):
        left = args.budget - (time.perf_counter() - started)
        per_case = max(0.2, left / max(1, len(cases) - i) / 4)
        try:
            row = run_case(case, peers, args.tiny,
                           1 if args.tiny else args.repeats, per_case)
        except Exception as exc:   # keep every other figure of the run
            failed = True
            print(f"{case.name} {case.dtype}: FAILED {type(exc).__name__}: "
                  f"{exc}", file=sys.stderr)
            continue
        failed |= any(n.startswith("MISMATCH") for n in row.notes)
        rows.append(row)
        ratios = ", ".join(f"{p} {t / row.ours_s:.2f}x"
                           for p, t in row.peers.items())
        print(f"{case.name} {case.dtype}: {row.ours_s * 1e3:.3f} ms "
              f"(first {row.first_s:.1f} s) {ratios} {' '.join(row.notes)}",
              flush=True)
        # Rewritten after each case: a run cut short keeps what it measured.
        write_markdown(args.out, rows, peers.notes, device,
                       time.perf_counter() - started, args.tiny)
    write_markdown(args.out, rows, peers.notes, device,
                   time.perf_counter() - started, args.tiny)
    try:
        write_chart(args.png, rows)
    except ImportError:
        print("matplotlib is not installed: no chart "
              "(pip install matplotlib)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
