"""Thread safety: concurrent calls give the serial results, on every layer.

Numba runs ``parallel=True`` kernels on a *threading layer*: ``tbb``,
``omp`` or ``workqueue``.  Users call numbaconv from many Python threads at
once (dask's threaded scheduler, a ``ThreadPoolExecutor``), and the kernels
release the GIL, so launches really overlap.  ``tbb`` and ``omp`` are
thread-safe; ``workqueue`` aborts the whole process on concurrent access
unless the library serialises its launches (``numbaconv._threading``).

The layer is chosen once per process, so each layer runs in its own
subprocess with ``NUMBA_THREADING_LAYER`` set; layers that cannot be loaded
on this machine are skipped.  The child process (this file run as a script)
computes a mixed list of calls serially, then again from 8 threads with every
call repeated, and checks the concurrent results are bit-identical to the
serial ones and the serial ones agree with the float64 reference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
WORKERS = 8
REPEATS = 4
UNAVAILABLE = 3  # child exit status: the requested layer cannot be loaded


# ---------------------------------------------------------------------------
# the workload (used by the child process)
# ---------------------------------------------------------------------------

def make_tasks():
    """A deterministic list of (label, thunk, reference_thunk) calls: all six
    ops and their gradients, float32 and float64, several option mixes."""
    import naive
    import numbaconv

    rng = np.random.default_rng(7)
    tasks = []
    sizes = {1: (13,), 2: (9, 8), 3: (5, 6, 5)}
    for nd in (1, 2, 3):
        for dtype in (np.float32, np.float64):
            sp = sizes[nd]
            x = rng.standard_normal((2, 4) + sp).astype(dtype)
            w = rng.standard_normal((6, 2) + (3,) * nd).astype(dtype)
            b = rng.standard_normal(6).astype(dtype)
            kw = dict(stride=2 if nd != 2 else (1, 2), padding=1, groups=2)
            conv = getattr(numbaconv, f"conv{nd}d")
            convt = getattr(numbaconv, f"conv_transpose{nd}d")
            y = conv(x, w, b, **kw)
            gy = rng.standard_normal(y.shape).astype(dtype)
            tw = rng.standard_normal((4, 3) + (2,) * nd).astype(dtype)
            tb = rng.standard_normal(6).astype(dtype)
            tkw = dict(stride=2, padding=1, output_padding=1, groups=2)
            ty = convt(x, tw, tb, **tkw)
            tgy = rng.standard_normal(ty.shape).astype(dtype)
            mode = "reflect" if nd != 1 else "circular"
            tag = f"{nd}d-{np.dtype(dtype).name}"

            def add(label, fn, ref):
                tasks.append((f"{label}-{tag}", fn, ref))

            add("conv", lambda c=conv, x=x, w=w, b=b, kw=kw: c(x, w, b, **kw),
                lambda x=x, w=w, b=b, kw=kw: naive.conv(x, w, b, **kw))
            add("conv-mode",
                lambda c=conv, x=x, w=w, m=mode: c(x, w, padding=1, groups=2,
                                                   padding_mode=m),
                lambda x=x, w=w, m=mode: naive.conv(x, w, padding=1, groups=2,
                                                    padding_mode=m))
            add("conv_transpose",
                lambda c=convt, x=x, w=tw, b=tb, kw=tkw: c(x, w, b, **kw),
                lambda x=x, w=tw, b=tb, kw=tkw: naive.conv_transpose(x, w, b, **kw))
            add("conv_backward",
                lambda n=nd, gy=gy, x=x, w=w, kw=kw: getattr(
                    numbaconv, f"conv{n}d_backward")(gy, x, w, **kw),
                lambda n=nd, gy=gy, x=x, w=w, kw=kw: (
                    naive.conv_input(x.shape, w, gy, **kw),
                    naive.conv_weight(x, w.shape, gy, **kw),
                    naive.conv_bias(gy, n)))
            add("conv_input",
                lambda n=nd, gy=gy, x=x, w=w, kw=kw: getattr(
                    numbaconv, f"conv{n}d_input")(x.shape, w, gy, **kw),
                lambda gy=gy, x=x, w=w, kw=kw: naive.conv_input(x.shape, w, gy, **kw))
            add("conv_weight",
                lambda n=nd, gy=gy, x=x, w=w, kw=kw: getattr(
                    numbaconv, f"conv{n}d_weight")(x, w.shape, gy, **kw),
                lambda gy=gy, x=x, w=w, kw=kw: naive.conv_weight(x, w.shape, gy, **kw))
            ckw = dict(stride=2, padding=1, groups=2)   # tkw less output_padding
            add("conv_transpose_backward",
                lambda n=nd, g=tgy, x=x, w=tw, kw=tkw: getattr(
                    numbaconv, f"conv_transpose{n}d_backward")(g, x, w, **kw),
                lambda n=nd, g=tgy, x=x, w=tw, kw=ckw: (
                    naive.conv(g, w, **kw),
                    naive.conv_weight(g, w.shape, x, **kw),
                    naive.conv_bias(g, n)))
    return tasks


def _as_tuple(result):
    return tuple(result) if isinstance(result, tuple) else (result,)


def child_main() -> int:
    """Run the workload in this process; print a JSON verdict on stdout."""
    sys.path.insert(0, HERE)
    import random
    from concurrent.futures import ThreadPoolExecutor

    import numba
    import numbaconv
    try:
        numbaconv.conv1d(np.ones((1, 1, 4)), np.ones((1, 1, 2)))
    except ValueError as exc:        # "No threading layer could be loaded"
        print(json.dumps({"unavailable": str(exc)}))
        return UNAVAILABLE
    layer = numba.threading_layer()

    tasks = make_tasks()
    serial = [_as_tuple(fn()) for _, fn, _ in tasks]
    problems = []
    for (label, _, ref), got in zip(tasks, serial):
        if ref is None:
            continue
        for g, r in zip(got, _as_tuple(ref())):
            tol = 1e-4 if g.dtype == np.float32 else 1e-10
            if not np.allclose(g, r, rtol=tol, atol=tol):
                problems.append(f"{label}: serial result differs from the reference")

    order = [i for i in range(len(tasks)) for _ in range(REPEATS)]
    random.Random(0).shuffle(order)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = [(i, pool.submit(tasks[i][1])) for i in order]
        for i, fut in futures:
            got = _as_tuple(fut.result())
            for g, s in zip(got, serial[i]):
                if g.dtype != s.dtype or g.shape != s.shape or not np.array_equal(
                        g, s, equal_nan=True) or g.tobytes() != s.tobytes():
                    problems.append(f"{tasks[i][0]}: concurrent result differs "
                                    f"from the serial one")
                    break
    print(json.dumps({"layer": layer, "tasks": len(tasks), "calls": len(order),
                      "problems": sorted(set(problems))}))
    return 0


def layer_child_main() -> int:
    """One layer shared by several threads, each running forward then
    backward with its own input; print a JSON verdict on stdout.

    A barrier holds every thread between its forward and its backward, so
    all forwards happen before any backward: each backward must still use
    its own thread's input, and the accumulated parameter gradients must be
    the sum of the per-thread ones (up to the order of the additions).
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import numba
    import numbaconv
    from numbaconv import nn
    try:
        numbaconv.conv1d(np.ones((1, 1, 4)), np.ones((1, 1, 2)))
    except ValueError as exc:
        print(json.dumps({"unavailable": str(exc)}))
        return UNAVAILABLE
    rng = np.random.default_rng(3)
    problems = []
    cases = [(nn.Conv3d, (2, 4, 3), dict(padding=1), (1, 2, 6, 5, 6)),
             (nn.ConvTranspose2d, (3, 2, 3), dict(stride=2, padding=1), (2, 3, 5, 4))]
    for cls, args, kw, shape in cases:
        shared = cls(*args, rng=0, dtype=np.float64, **kw)
        serial = cls(*args, rng=0, dtype=np.float64, **kw)
        xs = [rng.standard_normal(shape) for _ in range(WORKERS)]
        gs = [rng.standard_normal(serial.output_shape(shape)) for _ in range(WORKERS)]
        ys, gis = [], []
        for x, g in zip(xs, gs):
            ys.append(serial(x))
            gis.append(serial.backward(g))
        for rep in range(REPEATS):
            shared.zero_grad()
            barrier = threading.Barrier(WORKERS, timeout=300)

            def work(i):
                y = shared(xs[i])
                barrier.wait()
                return y, shared.backward(gs[i])

            with ThreadPoolExecutor(max_workers=WORKERS) as pool:
                results = list(pool.map(work, range(WORKERS)))
            name = f"{cls.__name__} repeat {rep}"
            for i, (y, gi) in enumerate(results):
                if not np.array_equal(y, ys[i]):
                    problems.append(f"{name}: thread {i}'s output differs")
                if not np.array_equal(gi, gis[i]):
                    problems.append(f"{name}: thread {i}'s input gradient differs")
            for grad in ("weight_grad", "bias_grad"):
                got, want = getattr(shared, grad), getattr(serial, grad)
                if not np.allclose(got, want, rtol=1e-12, atol=1e-12):
                    err = float(np.abs(got - want).max() / np.abs(want).max())
                    problems.append(f"{name}: {grad} differs from the serial sum "
                                    f"by {err:.1e} (relative)")
    print(json.dumps({"layer": numba.threading_layer(), "cases": len(cases),
                      "problems": problems}))
    return 0


# ---------------------------------------------------------------------------
# the tests (parent process)
# ---------------------------------------------------------------------------

def _run_child(layer: str, mode: str = "--child"):
    env = dict(os.environ, NUMBA_THREADING_LAYER=layer)
    env.pop("NUMBA_NUM_THREADS", None)
    args = [sys.executable, os.path.abspath(__file__), mode]
    proc = subprocess.run(args, env=env, capture_output=True, text=True,
                          timeout=600, cwd=HERE)
    if proc.returncode == UNAVAILABLE:
        pytest.skip(f"threading layer {layer!r} cannot be loaded here")
    assert proc.returncode == 0, (
        f"{layer} layer: the process ended with status {proc.returncode}\n"
        f"--- stderr ---\n{proc.stderr[-3000:]}")
    verdict = json.loads(proc.stdout.strip().splitlines()[-1])
    assert verdict["layer"] == layer
    if mode != "--child":
        return verdict
    assert verdict["tasks"] == 42
    assert verdict["calls"] == REPEATS * verdict["tasks"]
    assert verdict["problems"] == []
    return verdict


@pytest.mark.parametrize("layer", ["omp", "tbb", "workqueue"])
def test_concurrent_calls_match_serial(layer):
    """The public API called from 8 threads at once, on each layer."""
    _run_child(layer)


@pytest.mark.parametrize("layer", ["omp", "tbb", "workqueue"])
def test_layer_shared_between_threads(layer):
    """One nn layer used by 8 threads at once (forward, then backward), on
    each threading layer: every thread's gradients are its own, and the
    accumulated parameter gradients equal the serial sum."""
    verdict = _run_child(layer, "--layer-child")
    assert verdict["cases"] == 2
    assert verdict["problems"] == []


def test_cpu_backend_launches_are_guarded():
    """Every kernel-launching method of the CPU backend goes through the
    workqueue guard of ``numbaconv._threading``."""
    from numbaconv.cpu import CPUBackend
    for name in ("forward", "backward_data", "backward_weight", "bias_grad",
                 "add_bias", "pad", "pad_backward"):
        method = getattr(CPUBackend, name)
        assert getattr(method, "__wrapped__", None) is not None, name
        assert method.__code__ is _serialized_code(), name


def _serialized_code():
    from numbaconv._threading import serialized
    return serialized(lambda: None).__code__


def test_guard_is_free_on_threadsafe_layers():
    from numbaconv import _threading
    import numbaconv
    numbaconv.conv1d(np.ones((1, 1, 4)), np.ones((1, 1, 2)))
    import numba
    assert _threading.needs_serialization() == (numba.threading_layer() == "workqueue")
    with _threading.kernel_launch():
        with _threading.kernel_launch():   # re-entrant
            pass


def test_guard_serialises_under_workqueue(monkeypatch):
    """With the workqueue layer requested, a guarded call holds the lock, so
    a second thread cannot enter until it returns."""
    import threading

    import numba
    from numbaconv import _threading
    monkeypatch.setattr(_threading, "_serialize", None)
    monkeypatch.setattr(numba.config, "THREADING_LAYER", "workqueue")
    assert _threading.needs_serialization()
    seen = []

    @_threading.serialized
    def launch():
        t = threading.Thread(target=lambda: seen.append(
            _threading.LOCK.acquire(blocking=False)))
        t.start()
        t.join()
        return "done"

    assert launch() == "done"
    assert seen == [False]
    assert _threading.LOCK.acquire(blocking=False)   # released afterwards
    _threading.LOCK.release()


if __name__ == "__main__" and "--child" in sys.argv:
    sys.exit(child_main())
if __name__ == "__main__" and "--layer-child" in sys.argv:
    sys.exit(layer_child_main())
