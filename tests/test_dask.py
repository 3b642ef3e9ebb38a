"""Dask arrays in, lazy dask arrays out, equal to the in-memory results.

Random chunkings (hypothesis) of the batch, channel and spatial axes,
irregular and smaller than the halo, against the in-memory call for every
padding mode, stride, dilation, transposed convolution and every gradient;
``correlate_ndimage`` against ``scipy.ndimage`` itself for every mode;
laziness, ``to_zarr``, a two-process ``LocalCluster``, Numba's thread count
inside dask's threads and under the workqueue layer, and the peak resident
memory of filtering a zarr volume several times the bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
from hypothesis import given, strategies as st  # noqa: E402

import numbaconv  # noqa: E402
import numbaconv.dask as nd_dask  # noqa: E402
from _hypothesis_profiles import examples  # noqa: E402
from conftest import assert_close  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ("zeros", "reflect", "replicate", "circular", "symmetric")
SCIPY_MODES = ("reflect", "constant", "nearest", "mirror", "wrap",
               "grid-mirror", "grid-constant", "grid-wrap")


@pytest.fixture(autouse=True)
def _sync_scheduler():
    with dask.config.set(scheduler="sync"):
        yield


@st.composite
def chunking(draw, size):
    """Random chunk sizes summing to ``size`` (irregular, down to 1)."""
    if size <= 1:
        return (size,)
    cuts = draw(st.lists(st.integers(1, size - 1), max_size=4, unique=True))
    edges = [0] + sorted(cuts) + [size]
    return tuple(b - a for a, b in zip(edges, edges[1:]))


def chunked(draw, arr):
    return da.from_array(arr, chunks=tuple(draw(chunking(s)) for s in arr.shape))


def _close(got, want):
    assert_close(got, want, magnitude=np.max(np.abs(want)) if want.size else 0.0)


# ---------------------------------------------------------------------------
# PyTorch dialect
# ---------------------------------------------------------------------------

@st.composite
def conv_case(draw, transposed=False):
    nd = draw(st.sampled_from((1, 2, 3)))
    mode = draw(st.sampled_from(MODES))
    groups = draw(st.sampled_from((1, 2)))
    size = tuple(draw(st.integers(3, 9)) for _ in range(nd))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2)))
                    for _ in range(nd))
    return dict(nd=nd, mode=mode, groups=groups, size=size, kernel=kernel,
                stride=stride, dilation=dilation, padding=padding,
                batched=draw(st.booleans()), bias=draw(st.booleans()))


def _arrays(case, rng, transposed=False):
    g = case["groups"]
    c_in, c_out = 2 * g, 3 * g if not transposed else 2 * g
    lead = (2, c_in) if case["batched"] else (c_in,)
    x = rng.standard_normal(lead + case["size"])
    if transposed:
        w = rng.standard_normal((c_in, c_out // g) + case["kernel"])
    else:
        w = rng.standard_normal((c_out, c_in // g) + case["kernel"])
    b = rng.standard_normal(c_out) if case["bias"] else None
    return x, w, b


def _kw(case):
    return dict(stride=case["stride"], padding=case["padding"],
                dilation=case["dilation"], groups=case["groups"],
                padding_mode=case["mode"])


@given(case=conv_case(), data=st.data())
@examples(40)
def test_conv_any_chunking_equals_in_memory(case, data):
    rng = np.random.default_rng(0)
    x, w, b = _arrays(case, rng)
    conv = getattr(numbaconv, f"conv{case['nd']}d")
    try:
        want = conv(x, w, b, **_kw(case))
    except ValueError as exc:          # the same error, at call time
        with pytest.raises(ValueError, match=str(exc)[:30].replace("(", r"\(")):
            conv(chunked(data.draw, x), w, b, **_kw(case))
        return
    got = conv(chunked(data.draw, x), w, b, **_kw(case))
    assert isinstance(got, da.Array)
    _close(got.compute(), want)
    # regular output chunks (to_zarr needs no rechunk)
    for c in got.chunks:
        assert all(s == c[0] for s in c[:-1]) and c[-1] <= c[0]


@given(case=conv_case(), data=st.data())
@examples(30)
def test_conv_gradients_any_chunking(case, data):
    rng = np.random.default_rng(1)
    x, w, _ = _arrays(case, rng)
    nd = case["nd"]
    conv = getattr(numbaconv, f"conv{nd}d")
    try:
        y = conv(x, w, **_kw(case))
    except ValueError:
        return
    gy = rng.standard_normal(y.shape)
    dx, dgy = chunked(data.draw, x), chunked(data.draw, gy)
    want = getattr(numbaconv, f"conv{nd}d_backward")(gy, x, w, **_kw(case))
    got = getattr(numbaconv, f"conv{nd}d_backward")(dgy, dx, w, **_kw(case))
    for g, r in zip(got, want):
        _close(g.compute(), r)
    gi = getattr(numbaconv, f"conv{nd}d_input")(x.shape, w, dgy, **_kw(case))
    _close(gi.compute(), want[0])
    gw = getattr(numbaconv, f"conv{nd}d_weight")(dx, w.shape, gy, **_kw(case))
    _close(gw.compute(), want[1])


@given(case=conv_case(), data=st.data(), opad=st.booleans())
@examples(40)
def test_conv_transpose_and_gradients_any_chunking(case, data, opad):
    rng = np.random.default_rng(2)
    x, w, b = _arrays(case, rng, transposed=True)
    nd = case["nd"]
    kw = _kw(case)
    kw["output_padding"] = tuple(
        int(opad) if max(s, d) > 1 else 0
        for s, d in zip(case["stride"], case["dilation"]))
    convt = getattr(numbaconv, f"conv_transpose{nd}d")
    try:
        want = convt(x, w, b, **kw)
    except ValueError:
        return
    dx = chunked(data.draw, x)
    got = convt(dx, w, b, **kw)
    _close(got.compute(), want)
    gy = rng.standard_normal(want.shape)
    back = getattr(numbaconv, f"conv_transpose{nd}d_backward")
    ref = back(gy, x, w, **kw)
    res = back(chunked(data.draw, gy), dx, w, **kw)
    for g, r in zip(res, ref):
        _close(g.compute(), r)


def test_strided_output_chunks_line_up_with_input_chunks(rng):
    x = rng.standard_normal((1, 2, 32, 24))
    w = rng.standard_normal((3, 2, 3, 3))
    y = numbaconv.conv2d(da.from_array(x, chunks=(1, 2, 8, 8)), w, stride=2,
                         padding="same", padding_mode="reflect")
    assert y.chunks[2:] == ((4,) * 4, (4,) * 3)
    t = numbaconv.conv_transpose2d(da.from_array(x, chunks=(1, 1, 8, 8)),
                                   rng.standard_normal((2, 3, 4, 4)), stride=2,
                                   padding=1)
    assert t.chunks[2:] == ((16,) * 4, (16,) * 3)
    _close(y.compute(), numbaconv.conv2d(x, w, stride=2, padding="same",
                                         padding_mode="reflect"))


def test_float32_and_3d_volume(rng):
    x = rng.standard_normal((1, 3, 20, 18, 17)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    got = numbaconv.conv3d(da.from_array(x, chunks=(1, 2, 7, 5, 9)), w, b,
                           padding="same", padding_mode="circular")
    assert got.dtype == np.float32
    assert_close(got.compute(), numbaconv.conv3d(x, w, b, padding="same",
                                                 padding_mode="circular"))


def test_weight_gradient_is_deterministic(rng):
    x = rng.standard_normal((2, 2, 30, 30)).astype(np.float32)
    gy = rng.standard_normal((2, 3, 30, 30)).astype(np.float32)
    gw = numbaconv.conv2d_weight(da.from_array(x, chunks=(1, 2, 7, 9)),
                                 (3, 2, 3, 3), da.from_array(gy, chunks=(1, 3, 7, 9)),
                                 padding=1)
    first = gw.compute(scheduler="sync")
    for _ in range(2):
        again = gw.compute(scheduler="threads", num_workers=2)
        assert np.array_equal(first, again)
    assert_close(first, numbaconv.conv2d_weight(x, (3, 2, 3, 3), gy, padding=1))


# ---------------------------------------------------------------------------
# SciPy dialect
# ---------------------------------------------------------------------------

@st.composite
def scipy_case(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(1, 9)) for _ in range(ndim))
    naxes = draw(st.integers(1, min(3, ndim)))
    axes = tuple(draw(st.permutations(range(ndim)))[:naxes])
    kernel = tuple(draw(st.integers(1, 6)) for _ in axes)
    origin = tuple(draw(st.integers(-(k // 2), (k - 1) // 2)) for k in kernel)
    return dict(shape=shape, axes=axes, kernel=kernel, origin=origin,
                mode=draw(st.sampled_from(SCIPY_MODES)),
                cval=draw(st.sampled_from((0.0, -1.5))),
                convolve=draw(st.booleans()),
                dtype=draw(st.sampled_from((np.float64, np.float32))))


@given(case=scipy_case(), data=st.data())
@examples(60)
def test_correlate_ndimage_equals_scipy(case, data):
    ndi = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(3)
    v = rng.standard_normal(case["shape"]).astype(case["dtype"])
    k = rng.standard_normal(case["kernel"])
    fn = ndi.convolve if case["convolve"] else ndi.correlate
    args = (case["mode"], case["cval"], case["origin"], case["axes"])
    try:
        want = fn(v, k, mode=args[0], cval=args[1], origin=args[2], axes=args[3])
    except ValueError:      # SciPy maps origins to axes its own way: so do we
        with pytest.raises(ValueError, match="origin"):
            nd_dask.correlate_ndimage(chunked(data.draw, v), k, *args,
                                      convolve=case["convolve"])
        return
    got = nd_dask.correlate_ndimage(chunked(data.draw, v), k, *args,
                                    convolve=case["convolve"])
    assert got.dtype == want.dtype and got.shape == want.shape
    assert_close(got.compute(), want,
                 magnitude=(np.abs(k).sum() * max(np.abs(v).max(), 1.5)))


@pytest.mark.parametrize("mode", SCIPY_MODES)
def test_correlate_ndimage_kernel_larger_than_input(mode, rng):
    ndi = pytest.importorskip("scipy.ndimage")
    v = rng.standard_normal((3, 4))
    k = rng.standard_normal((8, 9))
    got = nd_dask.correlate_ndimage(da.from_array(v, chunks=(1, 3)), k, mode, 0.5)
    _close(got.compute(), ndi.correlate(v, k, mode=mode, cval=0.5))


def test_correlate_ndimage_integer_input(rng):
    ndi = pytest.importorskip("scipy.ndimage")
    v = rng.integers(-50, 50, (12, 13)).astype(np.int32)
    k = rng.standard_normal((3, 3))
    got = nd_dask.correlate_ndimage(da.from_array(v, chunks=5), k, "nearest")
    want = ndi.correlate(v, k, mode="nearest")
    assert got.dtype == want.dtype
    assert np.abs(got.compute().astype(int) - want).max() <= 1


@pytest.mark.parametrize("kind", ["correlate1d", "convolve1d"])
@pytest.mark.parametrize("mode", SCIPY_MODES)
def test_ndimage_call_1d_along_any_axis(kind, mode, rng):
    ndi = pytest.importorskip("scipy.ndimage")
    v = rng.standard_normal((7, 8, 9))
    k = rng.standard_normal(4)
    for axis in (0, 1, -1):
        want = getattr(ndi, kind)(v, k, axis=axis, mode=mode, cval=2.0, origin=1)
        got = nd_dask.ndimage_call(kind, da.from_array(v, chunks=(3, 5, 2)), k,
                                   axis=axis, mode=mode, cval=2.0, origin=1,
                                   output=np.float32)
        assert got.dtype == np.float32
        assert_close(got.compute(), want.astype(np.float32))


@pytest.mark.parametrize("name", ["correlate", "convolve", "correlate1d", "convolve1d"])
def test_numbaconv_ndimage_routes_dask_arrays(name, rng):
    ndi = pytest.importorskip("scipy.ndimage")
    from numbaconv import ndimage
    v = rng.standard_normal((8, 9, 10))
    k = rng.standard_normal(4 if name.endswith("1d") else (3, 3, 4))
    kw = dict(axis=1) if name.endswith("1d") else {}
    got = getattr(ndimage, name)(da.from_array(v, chunks=(3, 4, 5)), k,
                                 mode="wrap", origin=1, **kw)
    assert isinstance(got, da.Array)
    _close(got.compute(), getattr(ndi, name)(v, k, mode="wrap", origin=1, **kw))
    # the same error as in memory, at call time
    with pytest.raises(ValueError) as lazy:
        getattr(ndimage, name)(da.from_array(v, chunks=3), k, mode="edge", **kw)
    with pytest.raises(ValueError) as eager:
        getattr(ndimage, name)(v, k, mode="edge", **kw)
    assert str(lazy.value) == str(eager.value)


def test_numbaconv_ndimage_keeps_a_dask_dataarray_lazy(rng):
    xr = pytest.importorskip("xarray")
    ndi = pytest.importorskip("scipy.ndimage")
    from numbaconv import ndimage
    v = rng.standard_normal((6, 7, 8))
    arr = xr.DataArray(da.from_array(v, chunks=3), dims=("c", "y", "x"),
                       attrs={"units": "counts"}, name="stack")
    got = ndimage.correlate(arr, np.ones((3, 3)), mode="nearest", axes=(1, 2))
    assert isinstance(got, xr.DataArray) and isinstance(got.data, da.Array)
    assert got.dims == arr.dims and got.attrs == arr.attrs and got.name == "stack"
    _close(got.values, ndi.correlate(v, np.ones((3, 3)), mode="nearest", axes=(1, 2)))


def test_correlate_ndimage_bad_input():
    v = da.zeros((5, 5), chunks=2)
    with pytest.raises(ValueError, match="mode must be one of"):
        nd_dask.correlate_ndimage(v, np.ones((3, 3)), mode="edge")
    with pytest.raises(ValueError, match="origin"):
        nd_dask.correlate_ndimage(v, np.ones((3, 3)), origin=2)
    with pytest.raises(ValueError, match="len\\(axes\\)"):
        nd_dask.correlate_ndimage(v, np.ones(3))
    with pytest.raises(ValueError, match="unique"):
        nd_dask.correlate_ndimage(v, np.ones((3, 3)), axes=(0, 0))
    with pytest.raises(TypeError, match="complex"):
        nd_dask.correlate_ndimage(v, np.ones((3, 3)) * 1j)


# ---------------------------------------------------------------------------
# laziness, errors, zarr
# ---------------------------------------------------------------------------

def test_calls_are_lazy_and_errors_come_at_call_time(rng):
    computed = []

    def make(block, block_info=None):
        computed.append(block_info[None]["chunk-location"])
        return block

    x = da.zeros((2, 2, 12, 12), chunks=(1, 1, 4, 4)).map_blocks(make, meta=np.empty((0,) * 4))
    w = rng.standard_normal((3, 2, 3, 3))
    y = numbaconv.conv2d(x, w, padding=1, padding_mode="reflect")
    t = numbaconv.conv_transpose2d(x, rng.standard_normal((2, 2, 3, 3)), stride=2)
    grads = numbaconv.conv2d_backward(y, x, w, padding=1)
    corr = nd_dask.correlate_ndimage(x, np.ones((1, 1, 3, 3)))
    assert computed == []
    assert all(isinstance(a, da.Array) for a in (y, t, corr) + tuple(grads))
    # a halo the mode cannot produce: the in-memory error, before any block
    with pytest.raises(ValueError, match="padding_mode='reflect' needs padding < input size"):
        numbaconv.conv2d(x, w, padding=12, padding_mode="reflect")
    with pytest.raises(TypeError, match="out= is not supported"):
        numbaconv.conv2d(x, w, out=np.empty(1))
    with pytest.raises(TypeError, match="weight has dtype float32"):
        numbaconv.conv2d(x, w.astype(np.float32))
    assert computed == []


def test_dask_weight_is_computed_once(rng):
    x = rng.standard_normal((1, 2, 10, 10))
    w = rng.standard_normal((3, 2, 3, 3))
    calls = []
    dw = da.from_array(w, chunks=2).map_blocks(lambda b: calls.append(1) or b)
    y = numbaconv.conv2d(da.from_array(x, chunks=4), dw, padding=1)
    n = len(calls)
    assert n > 0
    _close(y.compute(), numbaconv.conv2d(x, w, padding=1))
    assert len(calls) == n


def test_graph_holds_the_weight_once_and_grows_linearly(rng):
    w = rng.standard_normal((4, 3, 3, 3, 3))
    sizes = []
    for n in (16, 32):
        x = da.zeros((1, 3, n, n, n), chunks=(1, 3, 8, 8, 8))
        y = numbaconv.conv3d(x, w, padding=1)
        graph = dict(y.__dask_graph__())
        holders = [k for k, v in graph.items() if isinstance(v, np.ndarray)
                   and v.shape == (4, 3, 3, 3, 3)]
        assert len(holders) == 1
        own = [k for k in graph if isinstance(k, tuple) and k[0] == y.name]
        sizes.append(len(own))
    assert sizes == [8, 64]


def test_to_zarr_round_trip(tmp_path, rng):
    zarr = pytest.importorskip("zarr")
    x = rng.standard_normal((1, 1, 30, 21, 17)).astype(np.float32)
    w = rng.standard_normal((2, 1, 3, 3, 3)).astype(np.float32)
    src = str(tmp_path / "in.zarr")
    da.to_zarr(da.from_array(x, chunks=(1, 1, 8, 8, 8)), src)
    y = numbaconv.conv3d(da.from_zarr(src), w, stride=(1, 2, 1), padding="same",
                         padding_mode="symmetric")
    dst = str(tmp_path / "out.zarr")
    da.to_zarr(y, dst)     # raises on irregular chunks: no rechunk needed
    back = np.asarray(zarr.open(dst, mode="r")[...])
    assert_close(back, numbaconv.conv3d(x, w, stride=(1, 2, 1), padding="same",
                                        padding_mode="symmetric"))


# ---------------------------------------------------------------------------
# threads and processes
# ---------------------------------------------------------------------------

def test_numba_threads_times_dask_threads_within_cores():
    import numba
    cores = numba.config.NUMBA_NUM_THREADS
    seen = []

    def probe(block):
        with nd_dask._threads():
            seen.append((numba.get_num_threads(), threading.get_ident()))
        return block

    for workers in (1, 2, 4):
        seen.clear()
        da.zeros(8, chunks=1).map_blocks(probe, meta=np.empty(0)).compute(
            scheduler="threads", num_workers=workers)
        assert seen and all(n == max(1, cores // workers) for n, _ in seen)
    seen.clear()
    da.zeros(3, chunks=1).map_blocks(probe, meta=np.empty(0)).compute(scheduler="sync")
    assert seen and all(n == cores for n, _ in seen)
    with dask.config.set({"numbaconv.task-threads": 1}):
        assert nd_dask.task_threads() == 1
    # the caller's own thread count is restored after a task
    assert numba.get_num_threads() == cores


_WORKQUEUE = """
import numpy as np, dask, dask.array as da, numbaconv
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 2, 24, 24, 24))
w = rng.standard_normal((3, 2, 3, 3, 3))
want = numbaconv.conv3d(x, w, padding=1)
got = numbaconv.conv3d(da.from_array(x, chunks=(1, 2, 8, 8, 8)), w, padding=1)
for _ in range(2):
    out = got.compute(scheduler="threads", num_workers=4)
    assert np.allclose(out, want, rtol=1e-12, atol=1e-12)
import numba
print(numba.threading_layer())
"""


def test_threaded_scheduler_under_workqueue_layer():
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", _WORKQUEUE], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("workqueue")


def _task_threads(_):
    return nd_dask.task_threads()


def test_local_cluster_with_two_worker_processes(rng, monkeypatch):
    distributed = pytest.importorskip("distributed")
    x = rng.standard_normal((2, 3, 16, 16, 12))
    w = rng.standard_normal((4, 3, 3, 3, 3))
    b = rng.standard_normal(4)
    # worker processes import numbaconv from this tree
    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                  processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        dx = da.from_array(x, chunks=(1, 3, 8, 8, 6))
        y = numbaconv.conv3d(dx, w, b, padding="same", padding_mode="replicate")
        gw = numbaconv.conv3d_weight(dx, w.shape, y, padding="same",
                                     padding_mode="replicate")
        got_y, got_gw = client.compute([y, gw], sync=True)
        where = client.run(lambda: os.getpid())
        assert len(set(where.values())) == 2
        # inside a task: the nanny's OMP_NUM_THREADS=1, one core per task
        threads = client.gather(client.map(_task_threads, range(4), pure=False))
        assert threads == [1] * 4
    want = numbaconv.conv3d(x, w, b, padding="same", padding_mode="replicate")
    assert_close(got_y, want)
    assert_close(got_gw, numbaconv.conv3d_weight(x, w.shape, want, padding="same",
                                                 padding_mode="replicate"))


# ---------------------------------------------------------------------------
# bounded memory
# ---------------------------------------------------------------------------

def test_peak_memory_is_bounded_by_the_chunks_not_the_volume(tmp_path):
    """A 343 MiB zarr volume in 1 MiB chunks, filtered zarr to zarr by the
    example script in a subprocess: the resident memory grows by less than
    80 MiB (a few chunk working sets per thread, plus the thread pool and
    zarr's buffers), a quarter of the volume."""
    zarr = pytest.importorskip("zarr")
    bound_mib, size = 80, 448
    env = dict(os.environ,
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    script = os.path.join(ROOT, "examples", "filter_large_volume.py")
    done = subprocess.run(
        [sys.executable, script, "--size", str(size), "--chunk", "64",
         "--threads", "2", "--quiet", "--workdir", str(tmp_path)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["volume_mib"] >= 4 * bound_mib
    growth = result["rss_peak_mib"] - result["rss_before_mib"]
    assert growth < bound_mib, result
    # the result is right, spot-checked on a corner and an inner block
    vol = zarr.open(os.path.join(str(tmp_path), "input.zarr"), mode="r")
    out = zarr.open(result["output"], mode="r")
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    try:
        from filter_large_volume import gaussian_kernel
    finally:
        sys.path.pop(0)
    k = gaussian_kernel()
    for sl in ((slice(0, 40),) * 3,
               (slice(120, 180), slice(60, 100), slice(size - 70, size))):
        lo = [max(0, s.start - 2) for s in sl]
        hi = [min(size, s.stop + 2) for s in sl]
        block = np.asarray(vol[(0,) + tuple(slice(a, b) for a, b in zip(lo, hi))])
        pad = [(2 - (s.start - a), 2 - (b - s.stop)) for s, a, b in zip(sl, lo, hi)]
        ref = numbaconv.conv3d(np.pad(block, pad, mode="symmetric")[None, None], k)
        assert_close(np.asarray(out[(slice(None),) + sl]), ref[0])


# ---------------------------------------------------------------------------
# module hygiene
# ---------------------------------------------------------------------------

def test_importing_numbaconv_does_not_import_dask():
    code = ("import sys, numpy, numbaconv\n"
            "numbaconv.conv1d(numpy.ones((1, 1, 5)), numpy.ones((1, 1, 3)))\n"
            "print(any(m == 'dask' or m.startswith('dask.') for m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.stdout.strip() == "False", done.stderr[-2000:]


@pytest.mark.parametrize("name", ["numbaconv.dask", "numbaconv._halo",
                                  "numbaconv._dask_graph", "numbaconv._dask_tasks"])
def test_docstring_examples(name):
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(name),
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
