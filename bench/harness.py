"""Side-by-side benchmarks: ``python bench/harness.py [options]``.

``python -m numbaconv bench [options]`` runs this file too, from a checkout
of the repository (the harness is not part of the installed package).

Every case runs numbaconv and its peers (PyTorch, SciPy) in one process, on
the same arrays, with the same number of threads, after one untimed call
each (the call whose results are checked against each other), and reports
the median of ``--repeats`` timed calls, taken in interleaved rounds (ours,
peer, peer, ours, ...) so that a noisy neighbour slows every contender alike.
The figure of merit is the ratio ``peer time / numbaconv time``: above 1 we
are faster.  Two further cases run in fresh subprocesses: the peak extra
memory of one call, and the first-call time with a warm on-disk cache.

Results are printed and written to ``<out>/RESULTS.md`` and
``<out>/ratios.png`` (see ``bench/README.md`` for the columns and method).

Exit status: 0 when every case ran (targets met or not), 1 when a result
disagreed with a peer's (nothing is timed then), 2 for bad options.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

DEFAULT_REPEATS = 5
QUICK_REPEATS = 3
#: Output positions in the GEMM that stands in for BLAS peak (see ``blas_gflops``).
GEMM_CHUNK = 4096
#: Relative tolerances for the cross-checks: ``|ours - peer| <= rtol*|peer| +
#: atol*max|peer|`` elementwise.  float32 sums of ~10^5 terms, computed in a
#: different order by each library, differ by a few 1e-6 of the largest value.
TOLERANCE = {np.dtype(np.float32): (1e-3, 1e-4), np.dtype(np.float64): (1e-9, 1e-11)}
MIB = 2.0 ** 20
#: Seconds of idleness before every timed sample.  OpenMP runtimes keep their
#: worker threads spinning for a while after a parallel region (Intel's
#: KMP_BLOCKTIME is 200 ms); without a pause the previous contender's
#: spinning workers would compete for the cores with the one being timed.
#: The pause itself leaves caches cold and cores asleep, so every sample is
#: a call made right after an untimed call of the same function: a warm call,
#: as in any loop that calls one function repeatedly.
SETTLE = 0.25


class Mismatch(RuntimeError):
    """numbaconv and a peer disagree: the benchmark must not be trusted."""


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def conv_flops(n: int, c_out: int, out_spatial: Sequence[int], c_in_per_group: int,
               kernel: Sequence[int]) -> float:
    """Conventional convolution FLOP count: 2 x the multiply-adds of the direct
    algorithm, taps over the zero padding included.

    >>> conv_flops(1, 1, (4, 4), 1, (3, 3))
    288.0
    """
    return 2.0 * n * c_out * float(np.prod(out_spatial)) * c_in_per_group * float(np.prod(kernel))


def to_numpy(value: Any) -> np.ndarray:
    """A NumPy array from a NumPy array or a (CPU) torch tensor."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def check_close(case: str, peer: str, ours: Sequence[Any], theirs: Sequence[Any],
                labels: Sequence[str]) -> float:
    """Raise :class:`Mismatch` unless every pair agrees; return the largest
    error relative to the largest magnitude of the peer's result."""
    worst = 0.0
    for label, a, b in zip(labels, ours, theirs):
        a, b = to_numpy(a), to_numpy(b)
        if a.shape != b.shape:
            raise Mismatch(f"{case}: {label} has shape {a.shape} in numbaconv but "
                           f"{b.shape} in {peer}")
        rtol, atol = TOLERANCE[np.dtype(b.dtype)]
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        err = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if b.size else 0.0
        if not np.allclose(a, b, rtol=rtol, atol=atol * scale) or not np.isfinite(err):
            raise Mismatch(f"{case}: {label} differs from {peer}: max |diff| = {err:.3e}, "
                           f"max |{peer}| = {scale:.3e} (rtol {rtol:g}, atol {atol:g} x max)")
        worst = max(worst, err / scale if scale else err)
    return worst


def time_interleaved(fns: Sequence[Callable[[], Any]], repeats: int) -> List[float]:
    """Median seconds per function over ``repeats`` rounds.  Each round takes
    one sample of every function, in order: ``SETTLE`` idle seconds, an
    untimed call, then the timed call straight after it (the functions have
    been called before)."""
    times: List[List[float]] = [[] for _ in fns]
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            for i, fn in enumerate(fns):
                time.sleep(SETTLE)
                fn()  # untimed: wakes the cores and fills the caches
                t0 = time.perf_counter()
                result = fn()
                times[i].append(time.perf_counter() - t0)
                del result
    finally:
        if enabled:
            gc.enable()
    return [statistics.median(t) for t in times]


_BLAS_CACHE: Dict[Tuple[int, int, int, str], float] = {}


def blas_gflops(m: int, k: int, n: int, dtype: Any, budget: float = 0.3) -> float:
    """Peak GFLOP/s of NumPy's matrix product ``(m, k) @ (k, n)`` in ``dtype``:
    the fastest of repeated calls over about ``budget`` seconds (at least 10).

    The best call, not the median, because this is a reference for what the
    hardware can do: a multi-threaded BLAS that loses its time slice in the
    middle of a call waits for the straggler, and on a busy machine its
    median falls far below its peak."""
    key = (m, k, n, np.dtype(dtype).name)
    if key in _BLAS_CACHE:
        return _BLAS_CACHE[key]
    rng = np.random.default_rng(1)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c = np.empty((m, n), dtype=dtype)
    np.matmul(a, b, out=c)
    time.sleep(SETTLE)
    best, calls, start = float("inf"), 0, time.perf_counter()
    while calls < 10 or (time.perf_counter() - start < budget and calls < 100000):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
        calls += 1
    gflops = 2.0 * m * k * n / best / 1e9
    _BLAS_CACHE[key] = gflops
    return gflops


# ---------------------------------------------------------------------------
# the speed cases
# ---------------------------------------------------------------------------

@dataclass
class PeerRun:
    name: str                       # "PyTorch", "PyTorch autograd", "scipy.ndimage"
    fn: Callable[[], Any]
    target: float                   # ratio peer/ours to reach


@dataclass
class Prepared:
    """A case ready to run: our callable, the peers', what to compare."""
    ours: Callable[[], Any]
    peers: List[PeerRun]
    labels: Tuple[str, ...]         # names of the results each callable returns
    flops: float
    gemm: Tuple[int, int]           # (M, K) of the equivalent GEMM
    positions: int                  # output positions (GEMM N before chunking)
    dtype: Any
    title: str = ""                 # what was run, with the actual shapes


@dataclass
class Case:
    name: str
    build: Callable[["Env", bool], Prepared]


@dataclass
class Env:
    threads: int
    torch: Any = None
    ndimage: Any = None
    notes: List[str] = field(default_factory=list)


def _rng():
    return np.random.default_rng(20240601)


def _tuple_results(fn):
    def call():
        r = fn()
        return r if isinstance(r, tuple) else (r,)
    return call


def _conv_case(nd: int, n: int, c_in: int, c_out: int, size: int, k: int, dtype,
               train: bool, target: float, stride: int = 1, dilation: int = 1,
               groups: int = 1, padding: Optional[int] = None,
               ) -> Callable[[Env, bool], Prepared]:
    """conv{nd}d with bias, padding ``dilation*(k//2)`` unless given, forward
    or training step."""

    def build(env: Env, quick: bool) -> Prepared:
        import numbaconv
        nn_, ci, co, sz = (n, c_in, c_out, size)
        if quick:
            nn_, sz = min(n, 2), max(size // 2, 8)
            if groups == 1:
                ci, co = max(c_in // 4, min(c_in, 4)), max(c_out // 4, 4)
        rng = _rng()
        p = dilation * (k // 2) if padding is None else padding
        x = rng.standard_normal((nn_, ci) + (sz,) * nd).astype(dtype)
        cg = ci // groups
        w = (rng.standard_normal((co, cg) + (k,) * nd) / np.sqrt(cg * k ** nd)).astype(dtype)
        b = rng.standard_normal(co).astype(dtype)
        osz = (sz + 2 * p - dilation * (k - 1) - 1) // stride + 1
        gy = rng.standard_normal((nn_, co) + (osz,) * nd).astype(dtype)
        kw = dict(stride=stride, padding=p, dilation=dilation, groups=groups)
        conv = getattr(numbaconv, f"conv{nd}d")
        backward = getattr(numbaconv, f"conv{nd}d_backward")
        flops = conv_flops(nn_, co, (osz,) * nd, cg, (k,) * nd) * (3 if train else 1)
        peers = []
        if train:
            def ours():
                y = conv(x, w, b, **kw)
                gi, gw, gb = backward(gy, x, w, **kw)
                return y, gi, gw, gb
            labels = ("output", "grad input", "grad weight", "grad bias")
        else:
            def ours():
                return (conv(x, w, b, **kw),)
            labels = ("output",)
        if env.torch is not None:
            torch = env.torch
            F = torch.nn.functional
            tconv = getattr(F, f"conv{nd}d")
            if train:
                xt = torch.from_numpy(x).requires_grad_()
                wt = torch.from_numpy(w).requires_grad_()
                bt = torch.from_numpy(b).requires_grad_()
                gyt = torch.from_numpy(gy)

                def peer():
                    y = tconv(xt, wt, bt, **kw)
                    gi, gw, gb = torch.autograd.grad(y, (xt, wt, bt), gyt)
                    return y.detach(), gi, gw, gb
                peers.append(PeerRun("PyTorch autograd", peer, target))
            else:
                xt, wt, bt = (torch.from_numpy(a) for a in (x, w, b))

                def peer():
                    with torch.no_grad():
                        return (tconv(xt, wt, bt, **kw),)
                peers.append(PeerRun("PyTorch", peer, target))
        what = "training step (forward + 3 grads)" if train else "forward"
        extra = "".join(f" {name}{v}" for name, v, plain in
                        (("s", stride, 1), ("d", dilation, 1), ("g", groups, 1))
                        if v != plain)
        title = (f"conv{nd}d {np.dtype(dtype).name} {what}, {nn_}x{ci}->{co}, "
                 f"{sz}^{nd}, k{k} p{p}{extra}, bias")
        return Prepared(ours, peers, labels, flops, (co // groups, cg * k ** nd),
                        nn_ * osz ** nd, dtype, title)

    return build


#: SciPy's names of the padding modes (see DESIGN.md, "Semantics to match").
SCIPY_MODE = {"zeros": "constant", "reflect": "mirror", "replicate": "nearest",
              "circular": "wrap", "symmetric": "reflect"}


def _single_image_case(nd: int, size: int, k: int, dtype, mode: str,
                       target: float) -> Callable[[Env, bool], Prepared]:
    """One single-channel image (2-D) or volume (3-D), one k^nd kernel,
    'same' padding in ``mode``, against ``scipy.ndimage.correlate``."""

    def build(env: Env, quick: bool) -> Prepared:
        import numbaconv
        sz = max(size // 4, 16) if quick else size
        rng = _rng()
        x = rng.standard_normal((1, 1) + (sz,) * nd).astype(dtype)
        w = (rng.standard_normal((1, 1) + (k,) * nd) / k ** (nd / 2)).astype(dtype)
        conv = getattr(numbaconv, f"conv{nd}d")

        def ours():
            return (conv(x, w, padding="same", padding_mode=mode),)
        peers = []
        if env.ndimage is not None:
            ndimage = env.ndimage
            img, ker = x[0, 0], w[0, 0]

            def scipy_peer():
                return (ndimage.correlate(img, ker, mode=SCIPY_MODE[mode], cval=0.0)[None, None],)
            peers.append(PeerRun("scipy.ndimage", scipy_peer, target))
        title = (f"single channel {nd}-D 1x1x{sz}^{nd}, k{k} {np.dtype(dtype).name}, "
                 f"padding 'same' ({mode})")
        return Prepared(ours, peers, ("output",), conv_flops(1, 1, (sz,) * nd, 1, (k,) * nd),
                        (1, k ** nd), sz ** nd, dtype, title)

    return build


def _long_signal_case(length: int, k: int, dtype, target: float
                      ) -> Callable[[Env, bool], Prepared]:
    """One long single-channel 1-D signal, a long kernel, 'same' zero padding,
    against scipy.ndimage.correlate1d and PyTorch."""

    def build(env: Env, quick: bool) -> Prepared:
        import numbaconv
        L = length // 16 if quick else length
        rng = _rng()
        x = rng.standard_normal((1, 1, L)).astype(dtype)
        w = (rng.standard_normal((1, 1, k)) / np.sqrt(k)).astype(dtype)

        def ours():
            return (numbaconv.conv1d(x, w, padding="same"),)
        peers = []
        if env.ndimage is not None:
            ndimage = env.ndimage

            def scipy_peer():
                # correlate1d centres an even kernel one place further left.
                return (ndimage.correlate1d(x[0, 0], w[0, 0, ::1], mode="constant",
                                            origin=-1 if k % 2 == 0 else 0)[None, None],)
            peers.append(PeerRun("scipy.ndimage", scipy_peer, target))
        if env.torch is not None:
            torch = env.torch
            xt, wt = torch.from_numpy(x), torch.from_numpy(w)

            def torch_peer():
                with torch.no_grad():
                    return (torch.nn.functional.conv1d(xt, wt, padding="same"),)
            peers.append(PeerRun("PyTorch", torch_peer, 1.0))
        title = f"long signal 1x1x{L}, k{k} {np.dtype(dtype).name}, padding 'same'"
        return Prepared(ours, peers, ("output",), conv_flops(1, 1, (L,), 1, (k,)), (1, k), L,
                        dtype, title)

    return build


def _small_call_case(dtype) -> Callable[[Env, bool], Prepared]:
    """A small call (fixed cost): one 16^3 volume, k3, against SciPy."""

    def build(env: Env, quick: bool) -> Prepared:
        import numbaconv
        rng = _rng()
        x = rng.standard_normal((1, 1, 16, 16, 16)).astype(dtype)
        w = rng.standard_normal((1, 1, 3, 3, 3)).astype(dtype)

        def ours():
            return (numbaconv.conv3d(x, w, padding=1),)
        peers = []
        if env.ndimage is not None:
            ndimage = env.ndimage

            def scipy_peer():
                return (ndimage.correlate(x[0, 0], w[0, 0], mode="constant")[None, None],)
            peers.append(PeerRun("scipy.ndimage", scipy_peer, 1.0))
        title = f"small call 1x1x16^3, k3 {np.dtype(dtype).name}, zero padding 1"
        return Prepared(ours, peers, ("output",), conv_flops(1, 1, (16,) * 3, 1, (3,) * 3),
                        (1, 27), 16 ** 3, dtype, title)

    return build


def _single_channel_case(k: int, dtype, size: int = 128) -> Callable[[Env, bool], Prepared]:
    """One 1x1xS^3 volume, one k^3 kernel, 'same' zero padding."""

    def build(env: Env, quick: bool) -> Prepared:
        import numbaconv
        sz = 48 if quick else size
        rng = _rng()
        x = rng.standard_normal((1, 1, sz, sz, sz)).astype(dtype)
        w = (rng.standard_normal((1, 1, k, k, k)) / k ** 1.5).astype(dtype)

        def ours():
            return (numbaconv.conv3d(x, w, padding="same"),)
        peers = []
        if env.ndimage is not None:
            ndimage = env.ndimage
            vol, ker = x[0, 0], w[0, 0]

            def scipy_peer():
                return (ndimage.correlate(vol, ker, mode="constant", cval=0.0)[None, None],)
            peers.append(PeerRun("scipy.ndimage", scipy_peer, 20.0))
        if env.torch is not None:
            torch = env.torch
            xt, wt = torch.from_numpy(x), torch.from_numpy(w)

            def torch_peer():
                with torch.no_grad():
                    return (torch.nn.functional.conv3d(xt, wt, padding="same"),)
            peers.append(PeerRun("PyTorch", torch_peer, 50.0))
        title = (f"single channel 1x1x{sz}^3, k{k} {np.dtype(dtype).name}, "
                 "padding 'same' (zeros)")
        return Prepared(ours, peers, ("output",), conv_flops(1, 1, (sz,) * 3, 1, (k,) * 3),
                        (1, k ** 3), sz ** 3, dtype, title)

    return build


def _transpose_case(n: int, c_in: int, size: int, c_out: int, k: int, s: int, p: int,
                    dtype=np.float32, target: float = 1.0,
                    nd: int = 3) -> Callable[[Env, bool], Prepared]:
    """conv_transpose{nd}d with bias."""

    def build(env: Env, quick: bool) -> Prepared:
        import numbaconv
        nn_, ci, co, sz = (n, c_in, c_out, size)
        if quick:
            nn_, ci, co, sz = 1, max(c_in // 4, 4), max(c_out // 4, 4), max(size // 2, 4)
        rng = _rng()
        x = rng.standard_normal((nn_, ci) + (sz,) * nd).astype(dtype)
        w = (rng.standard_normal((ci, co) + (k,) * nd)
             / np.sqrt(ci * k ** nd / s ** nd)).astype(dtype)
        b = rng.standard_normal(co).astype(dtype)
        out_sz = (sz - 1) * s - 2 * p + k

        def ours():
            return (getattr(numbaconv, f"conv_transpose{nd}d")(x, w, b, stride=s, padding=p),)
        peers = []
        if env.torch is not None:
            torch = env.torch
            xt, wt, bt = (torch.from_numpy(a) for a in (x, w, b))

            def peer():
                with torch.no_grad():
                    return (getattr(torch.nn.functional, f"conv_transpose{nd}d")(
                            xt, wt, bt, stride=s, padding=p),)
            peers.append(PeerRun("PyTorch", peer, target))
        # The FLOPs of the convolution whose adjoint this is; the equivalent
        # GEMM reduces, per output element, over the taps that reach it.
        flops = conv_flops(nn_, ci, (sz,) * nd, co, (k,) * nd)
        title = (f"conv_transpose{nd}d {np.dtype(dtype).name} {nn_}x{ci}x{sz}^{nd} -> {co}x"
                 f"{out_sz}^{nd}, k{k} s{s} p{p}, bias")
        return Prepared(ours, peers, ("output",), flops,
                        (co, max(1, ci * k ** nd // s ** nd)), nn_ * out_sz ** nd, dtype,
                        title)

    return build


CASES: List[Case] = [
    Case("conv3d_f32", _conv_case(3, 4, 32, 32, 32, 3, np.float32, False, 1.0)),
    Case("conv3d_f32_train", _conv_case(3, 4, 32, 32, 32, 3, np.float32, True, 1.0)),
    Case("conv3d_f64", _conv_case(3, 4, 32, 32, 32, 3, np.float64, False, 4.0)),
    Case("conv3d_f64_train", _conv_case(3, 4, 32, 32, 32, 3, np.float64, True, 4.0)),
    Case("single_k3_f32", _single_channel_case(3, np.float32)),
    Case("single_k5_f64", _single_channel_case(5, np.float64)),
    Case("tconv3d_k4s2", _transpose_case(2, 32, 16, 16, 4, 2, 1)),
    Case("tconv3d_k2s2", _transpose_case(2, 64, 24, 32, 2, 2, 0)),
    Case("conv2d_f32", _conv_case(2, 8, 64, 64, 56, 3, np.float32, False, 0.8)),
]
#: The shape classes beyond the nine above (run with ``--cases`` or ``--all``):
#: strided, dilated, depthwise and grouped, pointwise, stems, 1-D signals,
#: single-channel images per padding mode, transposed 2-D, training steps
#: and a small call.
MORE_CASES: List[Case] = [
    Case("conv3d_s2_f32", _conv_case(3, 4, 32, 64, 32, 3, np.float32, False, 1.0, stride=2)),
    Case("conv3d_s2_f32_train", _conv_case(3, 4, 32, 64, 32, 3, np.float32, True, 1.0,
                                           stride=2)),
    Case("conv3d_s3_f32", _conv_case(3, 4, 32, 32, 33, 3, np.float32, False, 1.0, stride=3)),
    Case("conv3d_d2_f32", _conv_case(3, 4, 32, 32, 32, 3, np.float32, False, 1.0, dilation=2)),
    Case("conv2d_dw_f32", _conv_case(2, 8, 64, 64, 56, 3, np.float32, False, 1.0, groups=64)),
    Case("conv2d_g4_f32", _conv_case(2, 8, 64, 64, 56, 3, np.float32, False, 1.0, groups=4)),
    Case("conv2d_pw_f32", _conv_case(2, 8, 64, 64, 56, 1, np.float32, False, 1.0)),
    Case("conv2d_stem_f32", _conv_case(2, 8, 3, 64, 224, 7, np.float32, False, 1.0, stride=2)),
    Case("conv2d_f32_train", _conv_case(2, 8, 64, 64, 56, 3, np.float32, True, 1.0)),
    Case("conv1d_f32", _conv_case(1, 8, 64, 64, 4096, 5, np.float32, False, 1.0)),
    Case("long1d_k129_f64", _long_signal_case(1 << 20, 129, np.float64, 15.0)),
    Case("tconv2d_k4s2", _transpose_case(8, 64, 28, 32, 4, 2, 1, nd=2)),
    Case("small_k3_f32", _small_call_case(np.float32)),
] + [Case(f"single2d_{mode}_f64", _single_image_case(2, 2048, 5, np.float64, mode, 15.0))
     for mode in ("zeros", "reflect", "replicate", "circular", "symmetric")] + [
    Case(f"single3d_{mode}_f32", _single_image_case(3, 128, 3, np.float32, mode, 15.0))
    for mode in ("reflect", "replicate", "circular", "symmetric")]
EXTRA_CASES = ("memory", "startup")


@dataclass
class Row:
    case: str
    title: str
    peer: str
    ours_ms: Optional[float]
    peer_ms: Optional[float]
    target: Optional[float]
    gflops: Optional[float]
    blas_frac: Optional[float]
    error: Optional[float]          # max |ours - peer| / max |peer| at the check

    @property
    def ratio(self) -> Optional[float]:
        if self.ours_ms is None or self.peer_ms is None:
            return None
        return self.peer_ms / self.ours_ms

    @property
    def met(self) -> Optional[bool]:
        r = self.ratio
        return None if r is None or self.target is None else r >= self.target


def run_case(case: Case, env: Env, quick: bool, repeats: int) -> List[Row]:
    """Check, warm up and time one case; one row per peer (or one row
    without a peer when none is installed)."""
    prep = case.build(env, quick)
    ours = _tuple_results(prep.ours)
    peers = [(pr, _tuple_results(pr.fn)) for pr in prep.peers]
    # The first call of each is the untimed warm-up (and, for us, the compile):
    # its results are the ones cross-checked.
    mine = ours()
    errors = [check_close(case.name, pr.name, mine, fn(), prep.labels) for pr, fn in peers]
    del mine
    times = time_interleaved([ours] + [fn for _, fn in peers], repeats)
    ours_s = times[0]
    gflops = prep.flops / ours_s / 1e9
    m, k = prep.gemm
    blas = blas_gflops(m, k, min(prep.positions, GEMM_CHUNK), prep.dtype)
    frac = gflops / blas if blas > 0 else None
    rows = []
    for (pr, _), peer_s, err in zip(peers, times[1:], errors):
        rows.append(Row(case.name, prep.title, pr.name, ours_s * 1e3, peer_s * 1e3,
                        pr.target, gflops, frac, err))
    if not rows:
        rows.append(Row(case.name, prep.title, "(no peer installed)", ours_s * 1e3,
                        None, None, gflops, frac, None))
    return rows


# ---------------------------------------------------------------------------
# subprocess measurements: peak memory and start-up
# ---------------------------------------------------------------------------

def _child_env(**extra: str) -> Dict[str, str]:
    """The environment for a child process that imports this very numbaconv."""
    import numbaconv
    root = os.path.dirname(os.path.dirname(os.path.abspath(numbaconv.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def _run_child(args: Sequence[str], env: Dict[str, str], timeout: float = 900) -> dict:
    """Run ``worker(args)`` in a fresh interpreter; return its JSON result."""
    code = ("import sys, time; t0 = time.perf_counter(); import numbaconv; "
            "t = time.perf_counter() - t0; sys.path.insert(0, %r); "
            "from harness import worker; "
            "sys.exit(worker(sys.argv[1:], import_s=t))" % os.path.dirname(
                os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env,
                          capture_output=True, text=True, timeout=timeout)
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    raise RuntimeError(f"child {' '.join(args)} failed (exit {proc.returncode}): "
                       + " | ".join(tail))


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def _compiled_variants() -> int:
    """How many compiled specialisations numbaconv's CPU kernels hold."""
    import numbaconv.cpu as cpu
    from numba.core.dispatcher import Dispatcher
    total = 0
    for mod in list(sys.modules.values()):
        if mod is None or not getattr(mod, "__name__", "").startswith(cpu.__name__):
            continue
        for obj in vars(mod).values():
            if isinstance(obj, Dispatcher):
                total += len(obj.overloads)
    return total


def source_fingerprint() -> Dict[str, Tuple[int, int]]:
    """(mtime, size) of every module of the numbaconv package, by relative
    path: Numba's cache is keyed on them, and the subprocess cases import
    whatever is on disk when they start."""
    import numbaconv
    root = os.path.dirname(os.path.abspath(numbaconv.__file__))
    prints = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                st = os.stat(path)
                prints[os.path.relpath(path, root)] = (st.st_mtime_ns, st.st_size)
    return prints


def changed_sources(before: Dict[str, Tuple[int, int]],
                    after: Dict[str, Tuple[int, int]]) -> List[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


MEMORY_OPS = ("forward", "grad input", "grad weight")


def _memory_worker(lib: str, op: str, size: int, threads: int) -> dict:
    """Peak extra resident memory of one call (run in a fresh process)."""
    channels, k, p = 32, 3, 1
    dtype = np.float64
    if lib == "numbaconv":
        import numba

        import numbaconv
        numba.set_num_threads(threads)

        def call(x, w, gy, out):
            if op == "forward":
                return numbaconv.conv3d(x, w, padding=p, out=out)
            if op == "grad input":
                return numbaconv.conv3d_input(x.shape, w, gy, padding=p)
            return numbaconv.conv3d_weight(x, w.shape, gy, padding=p)
    else:
        import torch
        torch.set_num_threads(threads)
        torch.set_grad_enabled(False)

        def call(x, w, gy, out):
            xt, wt = torch.from_numpy(x), torch.from_numpy(w)
            gyt = None if gy is None else torch.from_numpy(gy)
            if op == "forward":
                return torch.nn.functional.conv3d(xt, wt, padding=p)
            if op == "grad input":
                return torch.nn.grad.conv3d_input(x.shape, wt, gyt, padding=p)
            return torch.nn.grad.conv3d_weight(xt, w.shape, gyt, padding=p)

    def operands(sz):
        rng = _rng()
        x = rng.standard_normal((1, channels, sz, sz, sz))   # written: resident
        w = rng.standard_normal((channels, channels, k, k, k))
        gy = rng.standard_normal((1, channels, sz, sz, sz)) if op != "forward" else None
        out = None
        if op == "forward":
            out = np.empty((1, channels, sz, sz, sz), dtype)
            out.fill(0.0)                                    # touch every page
        return x, w, gy, out

    # Compile (or load) and start the thread pools on a tiny problem first.
    call(*operands(6))
    call(*operands(8))
    gc.collect()
    variants = _compiled_variants() if lib == "numbaconv" else 0
    x, w, gy, out = operands(size)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                                         # peak RSS := current RSS
    before = _status_kib("VmRSS")
    result = call(x, w, gy, out)
    peak = _status_kib("VmHWM")
    if op == "forward":
        output_bytes = out.nbytes
        allocated = 0 if lib == "numbaconv" else output_bytes   # torch has no out=
    else:
        output_bytes = to_numpy(result).nbytes
        allocated = output_bytes                           # the result is the output
    extra = peak * 1024.0 - before * 1024.0 - allocated
    recompiled = lib == "numbaconv" and _compiled_variants() != variants
    return {"extra_mib": extra / MIB, "output_mib": output_bytes / MIB,
            "recompiled": recompiled}


STARTUP_OPS = ("conv3d", "conv3d_backward", "conv_transpose3d")
#: The start-up row that measures Numba alone (``_startup_probe``): no target.
NUMBA_ALONE = "numba-alone"
#: The target for an op's warm-cache first call (seconds).
STARTUP_TARGET_S = 0.5


def _startup_worker(op: str, import_s: float) -> dict:
    """First-call and second-call time of one op (fresh process); ``import_s``
    is the time the process took to import numbaconv (NumPy and Numba too)."""
    import numbaconv
    rng = _rng()
    f32 = np.float32
    if op == NUMBA_ALONE:
        a = np.ones(1000)

        def call():
            # Numba's import is part of this first call, as it is of the ops'.
            from numbaconv._startup_probe import numba_alone
            return numba_alone(a)
    elif op == "conv_transpose3d":
        x = rng.standard_normal((1, 32, 8, 8, 8)).astype(f32)
        w = rng.standard_normal((32, 16, 4, 4, 4)).astype(f32)
        b = rng.standard_normal(16).astype(f32)

        def call():
            return numbaconv.conv_transpose3d(x, w, b, stride=2, padding=1)
    else:
        x = rng.standard_normal((1, 32, 16, 16, 16)).astype(f32)
        w = rng.standard_normal((32, 32, 3, 3, 3)).astype(f32)
        b = rng.standard_normal(32).astype(f32)
        gy = rng.standard_normal((1, 32, 16, 16, 16)).astype(f32)
        if op == "conv3d":
            def call():
                return numbaconv.conv3d(x, w, b, padding=1)
        else:
            def call():
                return numbaconv.conv3d_backward(gy, x, w, padding=1)
    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    call()
    second = time.perf_counter() - t0
    return {"import_s": import_s, "first_s": first, "second_s": second}


def worker(argv: Sequence[str], import_s: float = float("nan")) -> int:
    """Entry point of the measurement subprocesses (prints ``RESULT {json}``)."""
    kind = argv[0]
    if kind == "memory":
        lib, op, size, threads = argv[1], argv[2], int(argv[3]), int(argv[4])
        result = _memory_worker(lib, op, size, threads)
    elif kind == "startup":
        result = _startup_worker(argv[1], import_s)
    else:
        raise SystemExit(f"unknown worker {kind!r}")
    print("RESULT " + json.dumps(result), flush=True)
    return 0


@dataclass
class MemoryRow:
    lib: str
    op: str
    extra_mib: Optional[float]
    output_mib: Optional[float]
    target_mib: Optional[float]
    note: str = ""

    @property
    def met(self) -> Optional[bool]:
        if self.target_mib is None or self.extra_mib is None:
            return None
        return self.extra_mib <= self.target_mib


def run_memory(env: Env, quick: bool, log: Callable[[str], None]) -> Tuple[List[MemoryRow], int]:
    size = 32 if quick else 64
    if not (sys.platform.startswith("linux") and os.path.exists("/proc/self/clear_refs")):
        env.notes.append("memory: skipped, peak RSS reset needs Linux /proc/self/clear_refs")
        return [], size
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError as exc:
        env.notes.append(f"memory: skipped, cannot reset the peak RSS ({exc.strerror})")
        return [], size
    libs = ["numbaconv"] + (["PyTorch"] if env.torch is not None else [])
    if env.torch is None:
        env.notes.append("memory: PyTorch not installed, its rows are skipped")
    rows = []
    for op in MEMORY_OPS:
        for lib in libs:
            log(f"  memory {lib:9s} {op} ...")
            try:
                # Every block >= 64 KiB is its own mapping (no reuse of freed,
                # already resident heap), so the output counts exactly once.
                r = _run_child(["memory", "numbaconv" if lib == "numbaconv" else "torch",
                                op, str(size), str(env.threads)],
                               _child_env(MALLOC_MMAP_THRESHOLD_="65536"))
            except Exception as exc:  # report, don't lose the other rows
                rows.append(MemoryRow(lib, op, None, None, None, f"failed: {exc}"))
                continue
            target = 0.05 * r["output_mib"] + 4.0 * env.threads if lib == "numbaconv" else None
            note = "compiled during the measured call" if r.get("recompiled") else ""
            rows.append(MemoryRow(lib, op, r["extra_mib"], r["output_mib"], target, note))
    return rows, size


@dataclass
class StartupRow:
    op: str
    import_s: Optional[float]
    cold_s: Optional[float]
    warm_s: Optional[float]
    steady_ms: Optional[float]
    target_s: Optional[float] = STARTUP_TARGET_S
    note: str = ""

    @property
    def met(self) -> Optional[bool]:
        if self.warm_s is None or self.target_s is None:
            return None
        return self.warm_s <= self.target_s


def run_startup(env: Env, log: Callable[[str], None]) -> List[StartupRow]:
    from numbaconv import _config
    if not _config.CACHE:
        env.notes.append("startup: NUMBACONV_CACHE is off, so the warm-cache column "
                         "measures a second compilation")
    rows = []
    for op in STARTUP_OPS + (NUMBA_ALONE,):
        log(f"  startup {op} (cold, then warm cache) ...")
        target = None if op == NUMBA_ALONE else STARTUP_TARGET_S
        cache = tempfile.mkdtemp(prefix="numbaconv-bench-cache-")
        try:
            child_env = _child_env(NUMBA_CACHE_DIR=cache)
            sources = source_fingerprint()
            cold = _run_child(["startup", op], child_env)
            warm = _run_child(["startup", op], child_env)
            changed = changed_sources(sources, source_fingerprint())
            note = ("numbaconv's sources changed between the two processes (" +
                    ", ".join(changed) + "), so the warm one compiled again: rerun"
                    ) if changed else ""
            rows.append(StartupRow(op, warm["import_s"], cold["first_s"], warm["first_s"],
                                   warm["second_s"] * 1e3, target, note=note))
        except Exception as exc:
            rows.append(StartupRow(op, None, None, None, None, target, note=f"failed: {exc}"))
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    return rows


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------

def _fmt(value: Optional[float], spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def _yes(flag: Optional[bool]) -> str:
    return "-" if flag is None else ("yes" if flag else "NO")


SPEED_HEADER = ("case", "peer", "ours (ms)", "peer (ms)", "ratio", "target", "met?",
                "GFLOP/s", "of BLAS", "max diff")


def speed_cells(r: Row) -> Tuple[str, ...]:
    return (r.case, r.peer, _fmt(r.ours_ms, ".1f"), _fmt(r.peer_ms, ".1f"),
            _fmt(r.ratio, ".2f") + ("x" if r.ratio is not None else ""),
            (">= " + _fmt(r.target, "g") + "x") if r.target is not None else "-",
            _yes(r.met), _fmt(r.gflops, ".1f"),
            _fmt(None if r.blas_frac is None else 100 * r.blas_frac, ".0f") +
            ("%" if r.blas_frac is not None else ""), _fmt(r.error, ".1e"))


MEMORY_HEADER = ("op", "library", "extra (MiB)", "output (MiB)", "extra / output",
                 "target (MiB)", "met?")


def memory_cells(r: MemoryRow) -> Tuple[str, ...]:
    ratio = (None if r.extra_mib is None or not r.output_mib
             else r.extra_mib / r.output_mib)
    return (r.op, r.lib, _fmt(r.extra_mib, ".1f"), _fmt(r.output_mib, ".2f"),
            _fmt(ratio, ".2f") + ("x" if ratio is not None else ""),
            ("<= " + _fmt(r.target_mib, ".1f")) if r.target_mib is not None else "-",
            _yes(r.met) if r.lib == "numbaconv" else "-")


STARTUP_HEADER = ("op", "cold first call (s)", "warm-cache first call (s)",
                  "steady call (ms)", "import (s)", "target", "met?")


def startup_cells(r: StartupRow) -> Tuple[str, ...]:
    return (r.op, _fmt(r.cold_s, ".2f"), _fmt(r.warm_s, ".3f"), _fmt(r.steady_ms, ".1f"),
            _fmt(r.import_s, ".2f"),
            "-" if r.target_s is None else f"<= {r.target_s:g} s", _yes(r.met))


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(out)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions(env: Env) -> List[Tuple[str, str]]:
    import llvmlite
    import numba

    import numbaconv
    out = [("numbaconv", numbaconv.__version__), ("python", platform.python_version()),
           ("numpy", np.__version__), ("numba", numba.__version__),
           ("llvmlite", llvmlite.__version__)]
    out.append(("torch", env.torch.__version__ if env.torch is not None else "not installed"))
    try:
        import scipy
        out.append(("scipy", scipy.__version__))
    except ImportError:
        out.append(("scipy", "not installed"))
    return out


def machine(env: Env) -> List[Tuple[str, str]]:
    import numba
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        available = os.cpu_count() or 1
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = str(numba.config.THREADING_LAYER)
    threads = f"{env.threads} (numbaconv/Numba, PyTorch)"
    return [("CPU", cpu_model()),
            ("cores", f"{os.cpu_count()} logical, {available} available to the process"),
            ("threads", threads + "; scipy.ndimage is single-threaded by design; "
                                  "NumPy's BLAS uses its own default"),
            ("Numba threading layer", layer),
            ("instruction set", instruction_set(env)),
            ("OS", f"{platform.system()} {platform.machine()}")]


def instruction_set(env: Env) -> str:
    """What numbaconv is compiled for and what PyTorch runs (``--isa``)."""
    from numbaconv.cpu._target import TARGET
    ours = (f"numbaconv: {TARGET.cpu}, {TARGET.registers} x {TARGET.vector_bits}-bit "
            f"vectors, {'FMA' if TARGET.fma else 'no FMA'}")
    if env.torch is not None:
        ours += f"; PyTorch: {env.torch.backends.cpu.get_cpu_capability()}"
        if os.environ.get("ONEDNN_MAX_CPU_ISA"):
            ours += f", oneDNN at most {os.environ['ONEDNN_MAX_CPU_ISA']}"
    return ours


def plot_ratios(rows: Sequence[Row], path: str, quick: bool) -> Optional[str]:
    """Horizontal bars of the ratios on a log axis, each target marked.
    Returns a note when the chart could not be drawn."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart: matplotlib is not installed, ratios.png not written"
    rows = [r for r in rows if r.ratio is not None]
    if not rows:
        return "chart: no ratios to draw"
    ratios = [r.ratio for r in rows]
    targets = [r.target for r in rows]
    values = ratios + [t for t in targets if t] + [1.0]
    lo, hi = min(values) / 2.0, max(values) * 2.0
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.6))
    y = np.arange(len(rows))[::-1]
    colors = ["#2e8b57" if r.met else "#c0392b" for r in rows]
    ax.barh(y, [r - lo for r in ratios], left=lo, color=colors, height=0.6)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    for yi, t in zip(y, targets):
        if t:
            ax.plot([t, t], [yi - 0.42, yi + 0.42], color="black", lw=2.5)
    for yi, r in zip(y, ratios):
        ax.text(r * 1.06, yi, f"{r:.2f}x", va="center", fontsize=8,
                bbox=dict(facecolor="white", edgecolor="none", pad=1, alpha=0.8))
    ax.axvline(1.0, color="grey", ls="--", lw=1)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r.case} vs {r.peer}" for r in rows], fontsize=8)
    ax.set_xlabel("ratio = peer time / numbaconv time (log scale; higher is better)")
    title = "numbaconv vs peers (black tick: target; green: met, red: missed)"
    if quick:
        title += "\n--quick run: reduced shapes, not comparable with the targets"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write_results(path: str, command: str, env: Env, quick: bool, repeats: int,
                  rows: Sequence[Row], memory: Optional[Tuple[List[MemoryRow], int]],
                  startup: Optional[List[StartupRow]], chart: bool) -> None:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = ["# numbaconv benchmark results\n",
             f"Command: `{command}`  \nDate: {now}  \n"
             f"Method: one process, {env.threads} threads for every library that "
             f"threads, one untimed (checked) call each, then the median of "
             f"{repeats} interleaved timed calls, each after {SETTLE:g} s idle "
             f"and one untimed call.  "
             f"ratio = peer time / numbaconv time (higher is better).  See "
             f"`README.md` for the columns.\n"]
    if quick:
        parts.append("**--quick run: reduced shapes and repeats; the ratios are a smoke "
                     "test, not comparable with the targets.**\n")
    parts.append("## Machine\n")
    parts.append(md_table(("", ""), machine(env)) + "\n")
    parts.append(md_table(("package", "version"), versions(env)) + "\n")
    if rows:
        parts.append("## Speed\n")
        parts.append(md_table(SPEED_HEADER, [speed_cells(r) for r in rows]) + "\n")
        titles = {}
        for r in rows:
            titles.setdefault(r.case, r.title)
        parts.append("Cases:\n\n" + "\n".join(f"- `{c}`: {t}" for c, t in titles.items())
                     + "\n")
        met = [r.met for r in rows if r.met is not None]
        parts.append(f"Speed targets met: {sum(met)} of {len(met)}.\n")
        if chart:
            parts.append("![ratios](ratios.png)\n")
    if memory is not None:
        mrows, size = memory
        parts.append("## Peak extra memory\n")
        parts.append(f"1x32x{size}^3 float64, 32 -> 32 channels, k3, zero padding 1.  "
                     "Extra = peak resident memory during the call minus the resident "
                     "memory before it, minus the output when the call allocates it "
                     "(operands and output are allocated and touched first; compilation "
                     "happens on tiny shapes before).  Target: 5% of the output + 4 MiB "
                     f"x {env.threads} threads.  One fresh process per row.\n")
        if mrows:
            parts.append(md_table(MEMORY_HEADER, [memory_cells(r) for r in mrows]) + "\n")
            for r in mrows:
                if r.note:
                    parts.append(f"- {r.op}, {r.lib}: {r.note}\n")
    if startup is not None:
        parts.append("## Start-up\n")
        parts.append("Per op, two fresh processes share an empty temporary "
                     "`NUMBA_CACHE_DIR`: the first compiles (cold first call), the second "
                     "loads the cache (warm-cache first call, the target).  float32, "
                     "conv3d 1x32->32 16^3 k3 p1 (with bias; backward: all three grads), "
                     "conv_transpose3d 1x32x8^3 -> 16 k4 s2 p1.  The import of numbaconv "
                     "(with NumPy; Numba is imported by the first call) is timed "
                     f"separately.  `{NUMBA_ALONE}` is Numba by itself: the first call of "
                     "a one-loop cached parallel kernel (`numbaconv/_startup_probe.py`), "
                     "Numba's import included, the floor under every op's first call.\n")
        parts.append(md_table(STARTUP_HEADER, [startup_cells(r) for r in startup]) + "\n")
        for r in startup:
            if r.note:
                parts.append(f"- {r.op}: {r.note}\n")
    if env.notes:
        parts.append("## Notes\n")
        parts.append("\n".join(f"- {n}" for n in env.notes) + "\n")
    with open(path, "w") as f:
        f.write("\n".join(parts))


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------

def _portable(argv: Sequence[str]) -> List[str]:
    """The arguments as they can be quoted in a report: an absolute ``--out``
    directory (which names one machine's file system) becomes ``DIR``."""
    out, after_out = [], False
    for arg in argv:
        if after_out and os.path.isabs(arg):
            arg = "DIR"
        elif arg.startswith("--out=") and os.path.isabs(arg[len("--out="):]):
            arg = "--out=DIR"
        after_out = arg == "--out"
        out.append(arg)
    return out


#: The environment that compiles numbaconv for an instruction set and caps
#: PyTorch (ATen's kernels and oneDNN's) at the same one.
ISA_ENV = {
    "native": {},
    "avx2": {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "",
             "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "generic": {"NUMBA_CPU_NAME": "generic", "NUMBA_CPU_FEATURES": "",
                "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}
#: Set in the process that runs under ``--isa``'s environment.
ISA_MARK = "NUMBACONV_BENCH_ISA"


def _isa_rerun(isa: str, argv: Sequence[str]) -> Optional[int]:
    """Runs the benchmark again in a fresh process with ``isa``'s
    environment (it must be set before Numba and PyTorch are imported), and
    returns its exit status; None when this process already has it."""
    if isa == "native" or os.environ.get(ISA_MARK) == isa:
        return None
    env = _child_env(**ISA_ENV[isa], **{ISA_MARK: isa})
    return subprocess.run([sys.executable, os.path.abspath(__file__), *argv],
                          env=env).returncode


def _parser() -> argparse.ArgumentParser:
    names = [c.name for c in CASES + MORE_CASES] + list(EXTRA_CASES)
    p = argparse.ArgumentParser(
        prog="python -m numbaconv bench",
        description="Side-by-side benchmarks of numbaconv against PyTorch and SciPy.",
        epilog="cases: " + ", ".join(names),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smaller shapes and fewer repeats (a smoke test)")
    p.add_argument("--repeats", type=int, default=None,
                   help=f"timed calls per contender, median reported "
                        f"(default {DEFAULT_REPEATS}, {QUICK_REPEATS} with --quick)")
    p.add_argument("--cases", default=None,
                   help="comma-separated subset of the cases (default: the first nine, "
                        "memory and startup)")
    p.add_argument("--all", action="store_true",
                   help="also the further shape classes (strided, dilated, grouped, ...)")
    # The current directory, never the repository's bench/: a user's run must
    # not overwrite the committed results (pass --out bench to update them).
    p.add_argument("--out", default=".", help="directory for RESULTS.md and "
                                              "ratios.png (default: the current "
                                              "directory)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory case")
    p.add_argument("--no-startup", action="store_true", help="skip the start-up case")
    p.add_argument("--isa", choices=sorted(ISA_ENV), default="native",
                   help="compile numbaconv for, and cap PyTorch at, this instruction set "
                        "(default: native); the run is done in a fresh process")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    names = [c.name for c in CASES + MORE_CASES] + list(EXTRA_CASES)
    if args.cases:
        wanted = [s.strip() for s in args.cases.split(",") if s.strip()]
        unknown = [s for s in wanted if s not in names]
        if unknown:
            print(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(names)}",
                  file=sys.stderr)
            return 2
    else:
        wanted = [c.name for c in CASES + (MORE_CASES if args.all else [])] + list(EXTRA_CASES)
    if args.no_memory and "memory" in wanted:
        wanted.remove("memory")
    if args.no_startup and "startup" in wanted:
        wanted.remove("startup")
    rerun = _isa_rerun(args.isa, argv)
    if rerun is not None:
        return rerun
    repeats = args.repeats if args.repeats is not None else (
        QUICK_REPEATS if args.quick else DEFAULT_REPEATS)
    if repeats < 1:
        print("--repeats must be at least 1", file=sys.stderr)
        return 2

    import numba

    def log(msg: str) -> None:
        print(msg, flush=True)

    env = Env(threads=numba.get_num_threads())
    speed_cases = [c for c in CASES + MORE_CASES if c.name in wanted]
    try:
        import torch
        torch.set_num_threads(env.threads)
        env.torch = torch
    except ImportError:
        env.notes.append("PyTorch is not installed: its comparisons are skipped")
    try:
        from scipy import ndimage
        env.ndimage = ndimage
    except ImportError:
        if any(c.name.startswith("single") for c in speed_cases):
            env.notes.append("SciPy is not installed: the scipy.ndimage comparisons "
                             "are skipped")
    if env.ndimage is not None and any(c.name.startswith("single") for c in speed_cases):
        env.notes.append("scipy.ndimage.correlate is single-threaded by design; it runs "
                         "on one core whatever the thread count")
    env.notes.append("'of BLAS' = our GFLOP/s / NumPy matmul GFLOP/s on the equivalent "
                     f"GEMM (M = output channels, K = input channels per group x taps, "
                     f"N = min(output positions, {GEMM_CHUNK}), same dtype, fastest of repeated "
                     "calls); for "
                     "transposed convolutions K counts the taps that reach one output "
                     "(C_in x prod(k) / prod(stride)); for single-channel volumes the "
                     "GEMM is a thin vector product, so the fraction can exceed 100%")

    command = " ".join(["python -m numbaconv bench"] + _portable(argv))
    log(f"numbaconv bench: {env.threads} threads, {repeats} repeats"
        + (", quick shapes" if args.quick else ""))
    sources = source_fingerprint()
    rows: List[Row] = []
    for case in speed_cases:
        log(f"  {case.name} ...")
        try:
            new = run_case(case, env, args.quick, repeats)
            rows.extend(new)
            for r in new:
                log(f"    {r.title}: ours {_fmt(r.ours_ms, '.1f')} ms, {r.peer} "
                    f"{_fmt(r.peer_ms, '.1f')} ms, ratio {_fmt(r.ratio, '.2f')}")
        except Mismatch as exc:
            print("\n" + "!" * 72 + f"\nMISMATCH, benchmark aborted: {exc}\n" + "!" * 72,
                  file=sys.stderr, flush=True)
            return 1
        gc.collect()
    memory = run_memory(env, args.quick, log) if "memory" in wanted else None
    startup = run_startup(env, log) if "startup" in wanted else None

    changed = changed_sources(sources, source_fingerprint())
    if changed:
        env.notes.append("numbaconv's sources changed during the run (" + ", ".join(changed)
                         + "): the subprocess cases may have run other code than the "
                         "speed cases; rerun on a quiet tree")
    print()
    if rows:
        print(text_table(SPEED_HEADER, [speed_cells(r) for r in rows]))
        print()
    if memory is not None and memory[0]:
        print(f"peak extra memory, 1x32x{memory[1]}^3 float64 k3:")
        print(text_table(MEMORY_HEADER, [memory_cells(r) for r in memory[0]]))
        for r in memory[0]:
            if r.note:
                print(f"  {r.op}, {r.lib}: {r.note}")
        print()
    if startup is not None:
        print("start-up (fresh processes, shared temporary cache):")
        print(text_table(STARTUP_HEADER, [startup_cells(r) for r in startup]))
        for r in startup:
            if r.note:
                print(f"  {r.op}: {r.note}")
        print()
    for note in env.notes:
        print("note: " + note)

    os.makedirs(args.out, exist_ok=True)
    chart_note = plot_ratios(rows, os.path.join(args.out, "ratios.png"), args.quick) \
        if rows else "chart: no speed case was run"
    if chart_note:
        env.notes.append(chart_note)
        print("note: " + chart_note)
    write_results(os.path.join(args.out, "RESULTS.md"), command, env, args.quick, repeats,
                  rows, memory, startup, chart=chart_note is None)
    print(f"wrote {os.path.join(args.out, 'RESULTS.md')}"
          + ("" if chart_note else f" and {os.path.join(args.out, 'ratios.png')}"))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
