"""The public API on the GPU: every op and gradient with ``device="cuda"``
and with GPU arrays, compared with the CPU results.

Run on an NVIDIA GPU, or without one under Numba's CUDA simulator:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_cuda_api.py

(the variable must be set before Numba is imported).  The GPU tests live in
classes marked ``cuda`` that skip when ``numbaconv.cuda.cuda_status()`` says
CUDA is unusable.  The simulator runs every CUDA thread as a Python thread,
so the shapes are tiny and each case exercises several features at once.

Each case runs in three ways, and each way is compared with the CPU result:

* ``cuda``: NumPy operands with ``device="cuda"``; the results must be NumPy
  (not for ``conv*d_input`` / ``conv*d_weight``, which keep the signature of
  ``torch.nn.grad`` and have no ``device=``);
* ``numba``: every operand a Numba device array (``numba.cuda.to_device``);
  the results must be device arrays;
* ``mixed``: only the call's main input on the GPU (the small operands stay
  NumPy and are moved by the call); the results must be device arrays.

``test_without_simulator`` is not a GPU test: it runs in the normal suite and
checks, in a fresh interpreter without the simulator, that the package and
its command line need no GPU and that ``device="cuda"`` fails clearly where
CUDA is unusable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import numbaconv
import numbaconv.cuda as nc_cuda
from conftest import assert_close

_OK, _REASON = nc_cuda.cuda_status()
SIMULATOR = _OK and nc_cuda._simulator_enabled()
GPU = [pytest.mark.cuda,
       pytest.mark.skipif(not _OK, reason=f"CUDA backend not usable: {_REASON}")]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTALL = 'pip install "numbaconv[cuda]"'


@pytest.fixture(scope="module", autouse=True)
def _small_simulator_launches():
    """In the simulator: 32-thread blocks and prompt barriers.

    Every simulated CUDA thread is a Python thread, so tiny problems are
    cheapest with small blocks; the syncthreads of the reductions poll under
    the GIL, and a short switch interval lets blocked threads resume soon.
    """
    if not SIMULATOR:
        yield
        return
    from numbaconv import _config
    block, interval = _config.CUDA_BLOCK, sys.getswitchinterval()
    _config.CUDA_BLOCK = 32
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        _config.CUDA_BLOCK = block
        sys.setswitchinterval(interval)


def to_gpu(a):
    from numba import cuda
    return cuda.to_device(a)


def on_gpu(a) -> bool:
    from numbaconv.cuda import arrays
    return arrays.is_cuda_array(a)


def host(a):
    if a is None or isinstance(a, np.ndarray):
        return a
    from numbaconv.cuda import arrays
    return arrays.to_host(arrays.as_device_array(a))


# ---------------------------------------------------------------------------
# the matrix: every case in every way, against the CPU
# ---------------------------------------------------------------------------

F = numbaconv


def _rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _forward_cases():
    f32, f64 = np.float32, np.float64
    return [
        # name, op, array shapes (None: no bias), kwargs, dtype
        ("conv1d-stride-pad-bias", F.conv1d, [(2, 2, 7), (2, 2, 3), (2,)],
         dict(stride=2, padding=1), f32),
        ("conv1d-groups-dilation-circular", F.conv1d, [(1, 2, 6), (4, 1, 2), None],
         dict(groups=2, dilation=2, padding=2, padding_mode="circular"), f64),
        ("conv1d-unbatched-same-stride-symmetric", F.conv1d, [(2, 7), (2, 2, 3), (2,)],
         dict(stride=2, padding="same", padding_mode="symmetric"), f64),
        ("conv2d-groups-same-reflect-bias", F.conv2d, [(1, 2, 4, 5), (2, 1, 2, 3), (2,)],
         dict(groups=2, padding="same", padding_mode="reflect"), f64),
        ("conv2d-stride-dilation-pairs", F.conv2d, [(2, 1, 5, 4), (2, 1, 3, 2), None],
         dict(stride=(2, 1), dilation=(1, 2), padding=((1, 0), (2, 1))), f32),
        ("conv2d-unbatched-replicate", F.conv2d, [(2, 3, 4), (1, 2, 2, 2), None],
         dict(padding=1, padding_mode="replicate"), f32),
        ("conv3d-replicate-bias", F.conv3d, [(1, 2, 3, 4, 3), (2, 2, 2, 2, 2), (2,)],
         dict(padding=1, padding_mode="replicate"), f32),
        ("conv3d-groups-stride-symmetric", F.conv3d,
         [(1, 2, 3, 3, 4), (2, 1, 1, 2, 2), None],
         dict(groups=2, stride=(1, 2, 2), padding=(0, 1, 2), padding_mode="symmetric"),
         f64),
        ("conv3d-valid-dilation", F.conv3d, [(1, 1, 3, 4, 4), (1, 1, 2, 2, 2), (1,)],
         dict(dilation=(1, 2, 1), padding="valid"), f64),
        # transposed convolutions (weight: C_in, C_out / groups, k...)
        ("convT1d-stride-output_padding-bias", F.conv_transpose1d,
         [(2, 2, 4), (2, 3, 3), (3,)], dict(stride=2, padding=1, output_padding=1),
         f32),
        ("convT1d-groups-dilation-output_size", F.conv_transpose1d,
         [(1, 4, 3), (4, 1, 2), None], dict(groups=2, dilation=2, stride=2,
                                            output_size=(8,)), f64),
        ("convT1d-unbatched-symmetric-bias", F.conv_transpose1d,
         [(2, 5), (2, 1, 3), (1,)], dict(padding=1, padding_mode="symmetric"),
         f64),
        ("convT2d-output_size-all-dims-bias", F.conv_transpose2d,
         [(1, 2, 3, 3), (2, 2, 2, 2), (2,)], dict(stride=2, output_size=(1, 2, 7, 6)),
         f64),
        ("convT2d-groups-reflect", F.conv_transpose2d,
         [(2, 2, 3, 3), (2, 1, 2, 2), None], dict(groups=2, padding=1,
                                                  padding_mode="reflect"), f32),
        ("convT2d-unbatched-circular-bias", F.conv_transpose2d,
         [(1, 3, 4), (1, 2, 2, 3), (2,)], dict(padding=(1, 1), padding_mode="circular"),
         f32),
        ("convT3d-stride-dilation-bias", F.conv_transpose3d,
         [(1, 2, 2, 2, 3), (2, 2, 2, 1, 2), (2,)], dict(stride=(1, 2, 1),
                                                        dilation=(1, 1, 2)),
         f32),
        ("convT3d-replicate", F.conv_transpose3d,
         [(1, 2, 2, 3, 2), (2, 1, 2, 2, 2), None], dict(padding=1,
                                                        padding_mode="replicate"),
         f64),
    ]


FORWARD = _forward_cases()


def _arrays(rng, shapes, dtype):
    return [None if s is None else _rand(rng, s, dtype) for s in shapes]


def _convert(args, way, main):
    if way == "cuda":
        return args
    if way == "numba":
        return [to_gpu(a) if isinstance(a, np.ndarray) else a for a in args]
    return [to_gpu(a) if i == main else a for i, a in enumerate(args)]


def _check(result, want, dtype, way):
    """``result`` (one array or a tuple) matches the CPU ``want``."""
    if isinstance(want, tuple):
        assert isinstance(result, tuple) and len(result) == len(want)
        for r, w in zip(result, want):
            _check(r, w, dtype, way)
        return
    if want is None:
        assert result is None
        return
    if way == "cuda":
        assert isinstance(result, np.ndarray), type(result)
    else:
        assert on_gpu(result) and not isinstance(result, np.ndarray), type(result)
    got = host(result)
    assert got.dtype == dtype and got.shape == want.shape
    assert_close(got, want, dtype=dtype)


def _run(op, args, kw, dtype, way, main=0):
    want = op(*args, **kw)
    gpu_args = _convert(args, way, main)
    extra = dict(device="cuda") if way == "cuda" else {}
    result = op(*gpu_args, **kw, **extra)
    _check(result, want, dtype, way)
    for a, g in zip(args, gpu_args):  # inputs are never modified
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(host(g), a)
    return result


WAYS = ["cuda", "numba", "mixed"]


def _ways(cases, has_device):
    """pytest params: each case in each way that its op supports."""
    return [pytest.param(case, way, id=f"{case[0]}-{way}") for case in cases
            for way in WAYS if way != "cuda" or has_device(case)]


@pytest.mark.parametrize("case, way", _ways(FORWARD, lambda case: True))
class TestForward:
    pytestmark = GPU

    def test_matches_cpu(self, case, way):
        name, op, shapes, kw, dtype = case
        rng = np.random.default_rng(len(name))
        _run(op, _arrays(rng, shapes, dtype), kw, dtype, way)


def _grad_cases():
    """(name, kind, nd, input shape, weight shape, kwargs, dtype)."""
    f32, f64 = np.float32, np.float64
    return [
        # conv*_input(input_size, weight, grad_output, ...): main = grad_output
        ("conv1d_input-stride-pad", "input", 1, (2, 2, 7), (2, 2, 3),
         dict(stride=2, padding=1), f32),
        ("conv2d_input-groups-reflect", "input", 2, (1, 2, 4, 5), (2, 1, 2, 3),
         dict(groups=2, padding=1, padding_mode="reflect"), f64),
        ("conv3d_input-unbatched-dilation", "input", 3, (1, 3, 3, 3), (1, 1, 2, 2, 1),
         dict(dilation=(1, 2, 1), padding="same"), f32),
        # conv*_weight(input, weight_size, grad_output, ...): main = input
        ("conv1d_weight-groups-circular", "weight", 1, (2, 2, 6), (2, 1, 2),
         dict(groups=2, dilation=2, padding=1, padding_mode="circular"), f64),
        ("conv2d_weight-stride", "weight", 2, (1, 1, 4, 4), (2, 1, 2, 2),
         dict(stride=2), f32),
        ("conv3d_weight-symmetric", "weight", 3, (1, 1, 3, 3, 2), (1, 1, 2, 2, 1),
         dict(padding=1, padding_mode="symmetric"), f64),
        # conv*_backward(grad_output, input, weight, ...): main = input
        ("conv1d_backward-all", "backward", 1, (2, 2, 5), (2, 2, 2),
         dict(stride=2, padding=1), f32),
        ("conv2d_backward-mask-TFT-replicate", "backward", 2, (1, 2, 3, 4), (2, 2, 2, 2),
         dict(padding=1, padding_mode="replicate", output_mask=(True, False, True)),
         f64),
        ("conv3d_backward-mask-FTF-groups", "backward", 3, (1, 2, 2, 3, 2), (2, 1, 1, 2, 1),
         dict(groups=2, output_mask=(False, True, False)), f32),
        ("conv2d_backward-unbatched-same-reflect", "backward", 2, (1, 3, 4), (1, 1, 2, 2),
         dict(padding="same", padding_mode="reflect"), f64),
        # conv_transpose*_backward(grad_output, input, weight, ...): main = input
        ("convT1d_backward-all-output_padding", "tbackward", 1, (2, 2, 3), (2, 1, 2),
         dict(stride=2, output_padding=1), f64),
        ("convT2d_backward-mask-TTF-groups-reflect", "tbackward", 2, (1, 2, 3, 3),
         (2, 1, 2, 2), dict(groups=2, padding=1, padding_mode="reflect",
                            output_mask=(True, True, False)), f32),
        ("convT3d_backward-mask-FFT", "tbackward", 3, (1, 2, 2, 2, 2), (2, 1, 2, 1, 2),
         dict(stride=(2, 1, 1), output_mask=(False, False, True)), f64),
        ("convT1d_backward-unbatched-circular", "tbackward", 1, (2, 4), (2, 1, 3),
         dict(padding=1, padding_mode="circular", output_mask=(True, True, True)),
         f32),
    ]


GRADS = _grad_cases()


def _grad_call(kind, nd, x_shape, w_shape, kw, dtype, rng):
    """(op, args, kwargs, main) of a gradient call with random operands."""
    x = _rand(rng, x_shape, dtype)
    w = _rand(rng, w_shape, dtype)
    fkw = {k: v for k, v in kw.items() if k != "output_mask"}
    if kind == "tbackward":
        y = getattr(F, f"conv_transpose{nd}d")(x, w, **fkw)
    else:
        y = getattr(F, f"conv{nd}d")(x, w, **fkw)
    gy = _rand(rng, y.shape, dtype)
    if kind == "input":
        return getattr(F, f"conv{nd}d_input"), [x.shape, w, gy], fkw, 2
    if kind == "weight":
        return getattr(F, f"conv{nd}d_weight"), [x, w.shape, gy], fkw, 0
    if kind == "backward":
        return getattr(F, f"conv{nd}d_backward"), [gy, x, w], kw, 1
    return getattr(F, f"conv_transpose{nd}d_backward"), [gy, x, w], kw, 1


# conv*_input / conv*_weight keep torch.nn.grad's signature: no device=.
@pytest.mark.parametrize("case, way", _ways(
    GRADS, lambda case: case[1] in ("backward", "tbackward")))
class TestGradients:
    pytestmark = GPU

    def test_matches_cpu(self, case, way):
        name, kind, nd, x_shape, w_shape, kw, dtype = case
        rng = np.random.default_rng(len(name))
        op, args, kw, main = _grad_call(kind, nd, x_shape, w_shape, kw, dtype, rng)
        _run(op, args, kw, dtype, way, main)


# ---------------------------------------------------------------------------
# placement, out=, empty batches
# ---------------------------------------------------------------------------

class TestPlacement:
    pytestmark = GPU

    def test_main_input_decides_the_result_kind(self):
        rng = np.random.default_rng(1)
        x = _rand(rng, (1, 2, 6), np.float64)
        w = _rand(rng, (2, 2, 3), np.float64)
        want = F.conv1d(x, w)
        # A GPU weight alone puts the call on the GPU; the host input gets a
        # host result.
        y = F.conv1d(x, to_gpu(w))
        assert isinstance(y, np.ndarray)
        assert_close(y, want)
        y = F.conv1d(to_gpu(x), w, device="cuda")
        assert on_gpu(y)
        assert_close(host(y), want)

    def test_out_on_the_gpu(self):
        rng = np.random.default_rng(2)
        x = _rand(rng, (2, 2, 5), np.float32)
        w = _rand(rng, (2, 2, 3), np.float32)
        b = _rand(rng, (3,), np.float32)
        want = F.conv1d(x, w, padding=1)
        out = to_gpu(np.full(want.shape, np.nan, np.float32))
        got = F.conv1d(to_gpu(x), w, padding=1, out=out)
        assert got is out
        assert_close(host(out), want)
        # A strided out (every other column of a wider array).
        wide = to_gpu(np.full(want.shape[:2] + (2 * want.shape[2],), 7.0, np.float32))
        strided = wide[:, :, ::2]
        assert not strided.is_c_contiguous()
        assert F.conv1d(to_gpu(x), to_gpu(w), padding=1, out=strided) is strided
        both = host(wide)
        assert_close(both[:, :, ::2], want)
        np.testing.assert_array_equal(both[:, :, 1::2], 7.0)
        # Transposed convolution with bias into out.
        wt = _rand(rng, (2, 3, 2), np.float32)
        want = F.conv_transpose1d(x, wt, b, stride=2)
        out = to_gpu(np.zeros(want.shape, np.float32))
        assert F.conv_transpose1d(to_gpu(x), wt, b, stride=2, out=out) is out
        assert_close(host(out), want)

    def test_host_out_with_device_cuda(self):
        rng = np.random.default_rng(3)
        x = _rand(rng, (1, 2, 4, 4), np.float64)
        w = _rand(rng, (2, 2, 2, 2), np.float64)
        want = F.conv2d(x, w, padding=1, padding_mode="replicate")
        out = np.full(want.shape, np.nan)
        got = F.conv2d(x, w, padding=1, padding_mode="replicate", device="cuda", out=out)
        assert got is out
        assert_close(out, want)
        wide = np.full(want.shape[:3] + (2 * want.shape[3],), 5.0)
        got = F.conv2d(x, w, padding=1, padding_mode="replicate", device="cuda",
                       out=wide[..., 1::2])
        assert_close(wide[..., 1::2], want)
        np.testing.assert_array_equal(wide[..., ::2], 5.0)

    @pytest.mark.parametrize("way", ["cuda", "numba"])
    def test_empty_batch(self, way):
        x = np.zeros((0, 2, 5), np.float32)
        w = np.ones((2, 2, 2), np.float32)
        b = np.ones(2, np.float32)
        kw = dict(device="cuda") if way == "cuda" else {}
        conv = lambda a: to_gpu(a) if way == "numba" else a  # noqa: E731
        y = F.conv1d(conv(x), conv(w), conv(b), **kw)
        assert host(y).shape == (0, 2, 4) and (way == "cuda") == isinstance(y, np.ndarray)
        y = F.conv_transpose1d(conv(x), conv(w), conv(b), **kw)
        assert host(y).shape == (0, 2, 6)
        gy = np.zeros((0, 2, 4), np.float32)
        gi, gw, gb = F.conv1d_backward(conv(gy), conv(x), conv(w), **kw)
        assert host(gi).shape == (0, 2, 5)
        np.testing.assert_array_equal(host(gw), np.zeros((2, 2, 2)))
        np.testing.assert_array_equal(host(gb), np.zeros(2))

    def test_reductions_are_deterministic(self):
        rng = np.random.default_rng(4)
        x = to_gpu(_rand(rng, (2, 1, 9), np.float32))
        gy = to_gpu(_rand(rng, (2, 2, 8), np.float32))
        a = host(F.conv1d_weight(x, (2, 1, 2), gy))
        b = host(F.conv1d_weight(x, (2, 1, 2), gy))
        np.testing.assert_array_equal(a, b)

    def test_foreign_cuda_array_interface(self):
        """A GPU array of another library (here: a bare CAI object) goes in
        and out zero-copy; results are Numba device arrays."""
        if not SIMULATOR:
            pytest.skip("fakes a CAI producer over host memory")
        rng = np.random.default_rng(5)
        x = _rand(rng, (1, 2, 5), np.float64)
        w = _rand(rng, (2, 2, 2), np.float64)
        want = F.conv1d(x, w)
        y = F.conv1d(_CAI(x), _CAI(w))
        assert on_gpu(y)
        assert_close(host(y), want)
        buf = np.zeros(want.shape)
        assert F.conv1d(_CAI(x), w, out=_CAI(buf)).__class__ is _CAI
        assert_close(buf, want)
        readonly = _CAI(np.zeros(want.shape), readonly=True)
        with pytest.raises(ValueError, match="out is read-only"):
            F.conv1d(_CAI(x), w, out=readonly)

    def test_dlpack_producer(self):
        """A DLPack producer that reports a CUDA device is a GPU input."""
        if not SIMULATOR:
            pytest.skip("fakes a CUDA DLPack producer over host memory")
        rng = np.random.default_rng(10)
        x = _rand(rng, (1, 2, 6), np.float32)
        w = _rand(rng, (1, 2, 3), np.float32)

        class Producer:
            def __dlpack__(self, stream=None):
                return x.__dlpack__()

            def __dlpack_device__(self):
                return (2, 0)  # kDLCUDA, device 0

        y = F.conv1d(Producer(), w, padding=1)
        assert on_gpu(y)
        assert_close(host(y), F.conv1d(x, w, padding=1))

    def test_layer_to_cuda(self):
        from numbaconv import nn
        x = np.random.default_rng(6).standard_normal((1, 2, 5)).astype(np.float32)
        cpu = nn.Conv1d(2, 2, 2, rng=0)
        gpu = nn.Conv1d(2, 2, 2, rng=0).to("cuda")
        assert on_gpu(gpu.weight)
        y = gpu(x)
        assert isinstance(y, np.ndarray)
        assert_close(y, cpu(x))
        gi = gpu.backward(np.ones_like(y))
        assert_close(host(gi), cpu.backward(np.ones_like(y)))
        assert_close(host(gpu.weight_grad), cpu.weight_grad)
        yd = gpu(to_gpu(x))
        assert on_gpu(yd)
        assert_close(host(yd), cpu(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
class TestAddBias:
    """The ``add_bias`` primitive (the bias of transposed convolutions)."""

    pytestmark = GPU

    def test_against_numpy(self, dtype):
        from numbaconv.cuda import get_backend
        rng = np.random.default_rng(11)
        y = _rand(rng, (2, 3, 2, 1, 5), dtype)
        b = _rand(rng, (3,), dtype)
        d = to_gpu(y)
        get_backend().add_bias(d, to_gpu(b))
        np.testing.assert_array_equal(host(d), y + b[None, :, None, None, None])

    def test_capped_grid(self, dtype, monkeypatch):
        """A grid smaller than the array: the grid-stride loop covers the rest."""
        from numbaconv.cuda import backward_data, get_backend
        monkeypatch.setattr(backward_data, "elementwise_launch",
                            lambda total: (1, 32))
        y = np.zeros((1, 2, 3, 4, 5), dtype)
        d = to_gpu(y)
        get_backend().add_bias(d, to_gpu(np.array([1, 2], dtype)))
        np.testing.assert_array_equal(host(d)[:, 0], 1)
        np.testing.assert_array_equal(host(d)[:, 1], 2)


class _CAI:
    """A minimal foreign GPU array: only ``__cuda_array_interface__``.

    In the simulator device memory is host memory, so a NumPy buffer can
    stand in for it.
    """

    def __init__(self, a, readonly=False):
        self._a = a
        self.__cuda_array_interface__ = {
            "shape": a.shape, "strides": None if a.flags.c_contiguous else a.strides,
            "typestr": a.dtype.str, "data": (a.ctypes.data, readonly),
            "version": 3, "stream": None}


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------

class TestErrors:
    pytestmark = GPU

    def setup_method(self):
        self.x = np.ones((1, 2, 5), np.float32)
        self.w = np.ones((3, 2, 2), np.float32)

    def test_device_cpu_with_gpu_arrays(self):
        with pytest.raises(ValueError, match=r"device='cpu' but input lives on GPU 0"):
            F.conv1d(to_gpu(self.x), self.w, device="cpu")
        with pytest.raises(ValueError, match=r"weight lives on GPU 0"):
            F.conv1d_backward(np.ones((1, 3, 4), np.float32), self.x,
                              to_gpu(self.w), device="cpu")

    def test_gpu_out_for_a_cpu_call(self):
        with pytest.raises(ValueError, match=r"out is a GPU array \(on GPU 0\) but "
                                             r"this call runs on the CPU"):
            F.conv1d(self.x, self.w, out=to_gpu(np.empty((1, 3, 4), np.float32)))

    def test_gpu_out_for_a_host_result(self):
        with pytest.raises(ValueError, match=r"out is a GPU array \(on GPU 0\) but "
                                             r"the result of this call is a host"):
            F.conv1d(self.x, self.w, device="cuda",
                     out=to_gpu(np.empty((1, 3, 4), np.float32)))

    def test_host_out_for_a_gpu_call(self):
        with pytest.raises(ValueError, match=r"out is a host array but this call "
                                             r"runs on GPU 0"):
            F.conv1d(to_gpu(self.x), self.w, out=np.empty((1, 3, 4), np.float32))
        with pytest.raises(TypeError, match="out must be a GPU array"):
            F.conv1d(to_gpu(self.x), self.w, out=[0.0])

    def test_gpu_out_checks(self):
        d = to_gpu(self.x)
        with pytest.raises(ValueError, match=r"out has shape \(1, 3, 5\), expected"):
            F.conv1d(d, self.w, out=to_gpu(np.empty((1, 3, 5), np.float32)))
        with pytest.raises(ValueError, match="out has dtype float64"):
            F.conv1d(d, self.w, out=to_gpu(np.empty((1, 3, 4))))
        # out sharing memory with an input
        w1 = to_gpu(np.ones((2, 2, 1), np.float32))
        with pytest.raises(ValueError, match="out overlaps input"):
            F.conv1d(d, w1, out=d)
        with pytest.raises(TypeError, match="weight has dtype float64"):
            F.conv1d(d, to_gpu(self.w.astype(np.float64)))

    def test_arrays_on_different_gpus(self, monkeypatch):
        from numbaconv.cuda import arrays
        x, w = to_gpu(self.x), to_gpu(self.w)
        ids = {id(x): 0, id(w): 1}
        real = arrays.device_id
        monkeypatch.setattr(arrays, "device_id",
                            lambda a: ids.get(id(a), real(a)))
        with pytest.raises(ValueError, match=r"different GPUs: input on GPU 0, "
                                             r"weight on GPU 1"):
            F.conv1d(x, w)
        out = to_gpu(np.empty((1, 3, 4), np.float32))
        ids[id(out)] = 1
        with pytest.raises(ValueError, match="out lives on GPU 1 but the inputs "
                                             "live on GPU 0"):
            F.conv1d(x, self.w, out=out)

    @pytest.mark.parametrize("reason", [
        "numba-cuda is not installed; install the CUDA extra with: " + INSTALL,
        nc_cuda._NO_DRIVER.format(error="CUDA driver library cannot be found"),
        nc_cuda._NO_DEVICE,
    ], ids=["no-numba-cuda", "no-driver", "no-device"])
    def test_no_usable_gpu(self, monkeypatch, reason):
        monkeypatch.setattr(nc_cuda, "cuda_status", lambda: (False, reason))
        with pytest.raises(RuntimeError) as info:
            F.conv1d(self.x, self.w, device="cuda")
        msg = str(info.value)
        assert msg.startswith("device='cuda' was requested, but CUDA is not "
                              "usable here: ")
        assert reason in msg
        with pytest.raises(RuntimeError, match="input is a GPU array, but CUDA"):
            F.conv1d(to_gpu(self.x), self.w)

    def test_missing_numba_cuda_reason(self, monkeypatch):
        import importlib.util
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: None if name == "numba_cuda"
                            else real(name, *a))
        ok, reason = nc_cuda._probe.__wrapped__()
        assert not ok and "numba-cuda is not installed" in reason and INSTALL in reason


# ---------------------------------------------------------------------------
# CuPy and PyTorch (real GPUs only)
# ---------------------------------------------------------------------------

def _torch_cuda():
    if SIMULATOR:
        pytest.skip("needs a CUDA device")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs PyTorch with CUDA")
    return torch


class TestDeviceIndex:
    """``device="cuda:N"``: GPU N by index (the simulator has one GPU, 0)."""

    pytestmark = GPU

    def setup_method(self):
        rng = np.random.default_rng(5)
        self.x = rng.standard_normal((1, 2, 6)).astype(np.float32)
        self.w = rng.standard_normal((3, 2, 2)).astype(np.float32)

    def test_cuda_0_runs_on_gpu_0(self):
        want = F.conv1d(self.x, self.w, padding=1)
        for device in ("cuda:0", "cuda"):
            got = F.conv1d(self.x, self.w, padding=1, device=device)
            assert isinstance(got, np.ndarray)
            assert_close(got, want)
        got = F.conv1d(to_gpu(self.x), self.w, padding=1, device="cuda:0")
        assert on_gpu(got)
        gi, gw, gb = F.conv1d_backward(np.ones_like(want), self.x, self.w, padding=1,
                                       device="cuda:0")
        assert_close(gw, F.conv1d_weight(self.x, self.w.shape, np.ones_like(want),
                                         padding=1))

    def test_torch_device_object(self):
        torch = pytest.importorskip("torch")
        got = F.conv1d(torch.from_numpy(self.x), self.w, device=torch.device("cuda:0"))
        assert isinstance(got, torch.Tensor) and got.device.type == "cpu"
        assert_close(got.numpy(), F.conv1d(self.x, self.w))

    def test_missing_index_is_a_clear_error(self):
        from numba import cuda
        count = len(cuda.gpus)
        for operand in (self.x, to_gpu(self.x)):
            with pytest.raises(ValueError) as info:
                F.conv1d(operand, self.w, device=f"cuda:{count}")
            msg = str(info.value)
            assert msg.startswith(f"device='cuda:{count}' but this machine has "
                                  f"{count} CUDA device(s)")
            assert "device='cuda:0'" in msg

    def test_operands_on_another_gpu(self, monkeypatch):
        from numbaconv.cuda import arrays
        d = to_gpu(self.x)
        monkeypatch.setattr(arrays, "device_id", lambda a: 1)
        with pytest.raises(ValueError, match=r"device='cuda:0' but input lives on "
                                             r"GPU 1; move the arrays to GPU 0 or "
                                             r"pass device='cuda:1'"):
            F.conv1d(d, self.w, device="cuda:0")


class TestInterop:
    pytestmark = GPU

    def test_cupy_in_cupy_out(self):
        if SIMULATOR:
            pytest.skip("needs a CUDA device")
        cupy = pytest.importorskip("cupy")
        rng = np.random.default_rng(7)
        x = _rand(rng, (2, 3, 8, 8), np.float32)
        w = _rand(rng, (4, 3, 3, 3), np.float32)
        b = _rand(rng, (4,), np.float32)
        want = F.conv2d(x, w, b, padding=1)
        y = F.conv2d(cupy.asarray(x), w, cupy.asarray(b), padding=1)
        assert isinstance(y, cupy.ndarray)
        assert_close(cupy.asnumpy(y), want)
        gy = cupy.ones_like(y)
        gi, gw, gb = F.conv2d_backward(gy, cupy.asarray(x), cupy.asarray(w), padding=1)
        assert all(isinstance(g, cupy.ndarray) for g in (gi, gw, gb))
        ref = F.conv2d_backward(np.ones(want.shape, np.float32), x, w, padding=1)
        for g, r in zip((gi, gw, gb), ref):
            assert_close(cupy.asnumpy(g), r)
        # a non-default CuPy stream: results are ordered for it
        with cupy.cuda.Stream(non_blocking=True):
            y2 = F.conv2d(cupy.asarray(x), w, b, padding=1)
            assert_close(cupy.asnumpy(y2), want)

    def test_torch_cuda_in_torch_cuda_out(self):
        torch = _torch_cuda()
        rng = np.random.default_rng(8)
        x = _rand(rng, (2, 3, 6, 6, 6), np.float64)
        w = _rand(rng, (2, 3, 2, 2, 2), np.float64)
        tx = torch.from_numpy(x).cuda().requires_grad_(True)
        tw = torch.from_numpy(w).cuda()
        y = F.conv3d(tx, tw, stride=2)
        assert isinstance(y, torch.Tensor) and y.device == tx.device
        assert_close(y.cpu().numpy(), F.conv3d(x, w, stride=2))
        ref = torch.nn.functional.conv3d(tx, tw, stride=2)
        ref.backward(torch.ones_like(ref))
        gi, gw, gb = F.conv3d_backward(torch.ones_like(y), tx, tw, stride=2)
        assert_close(gi.cpu().numpy(), tx.grad.cpu().numpy())
        assert gb.shape == (2,)
        # a side stream: our kernels wait for it, the caller's stream waits
        # for our result
        side = torch.cuda.Stream()
        with torch.cuda.stream(side):
            z = torch.from_numpy(x).cuda() * 2
            y2 = F.conv3d(z, tw, stride=2)
            total = float(y2.sum())
        assert np.isclose(total, 2 * F.conv3d(x, w, stride=2).sum())

    def test_torch_mixed_with_numpy_weight(self):
        torch = _torch_cuda()
        x = np.random.default_rng(9).standard_normal((1, 2, 7)).astype(np.float32)
        w = np.ones((2, 2, 3), np.float32)
        y = F.conv1d(torch.from_numpy(x).cuda(), w)
        assert isinstance(y, torch.Tensor) and y.is_cuda
        assert_close(y.cpu().numpy(), F.conv1d(x, w))


# ---------------------------------------------------------------------------
# without the simulator (runs in the normal suite, no GPU needed)
# ---------------------------------------------------------------------------

class _FakeDriver:
    """Stands in for numba-cuda's driver object in ``_probe``."""

    def __init__(self, error=None, count=1):
        self.is_available = error is None
        self.initialization_error = error
        self._count = count

    def get_device_count(self):
        return self._count

    def get_device(self, index):
        import types
        return types.SimpleNamespace(name=b"Fake GPU", compute_capability=(8, 0))


@pytest.mark.parametrize("fake, libdevice, nvvm_ok, want", [
    (_FakeDriver(error="CUDA_ERROR_NO_DEVICE"), "x.bc", True, "found no CUDA device"),
    (_FakeDriver(error="libcuda.so not found"), "x.bc", True,
     "no usable NVIDIA CUDA driver (libcuda.so not found)"),
    (_FakeDriver(count=0), "x.bc", True, "found no CUDA device"),
    (_FakeDriver(), "x.bc", False, "compiler libraries were not found (NVVM)"),
    (_FakeDriver(), OSError('Failure finding "libnvrtc.so.12"'), True,
     'compiler libraries were not found (Failure finding "libnvrtc.so.12")'),
    (_FakeDriver(), "x.bc", True, "usable"),
], ids=["no-device-error", "no-driver", "zero-devices", "no-nvvm", "no-nvrtc", "ok"])
def test_status_reasons(monkeypatch, fake, libdevice, nvvm_ok, want):
    """Each way CUDA can be missing gives its own reason (driver faked)."""
    if nc_cuda._simulator_enabled():
        pytest.skip("probes numba-cuda's real driver module")
    pytest.importorskip("numba_cuda")
    from numba.cuda.cudadrv import driver as drv, libs, nvvm

    def get_libdevice():
        if isinstance(libdevice, Exception):
            raise libdevice
        return libdevice

    monkeypatch.setattr(drv, "driver", fake)
    monkeypatch.setattr(nvvm, "is_available", lambda: nvvm_ok)
    monkeypatch.setattr(libs, "get_libdevice", get_libdevice)
    ok, reason = nc_cuda._probe.__wrapped__()
    if want == "usable":
        assert ok and reason == ("1 CUDA device(s); device 0 is Fake GPU "
                                 "(compute capability 8.0)")
        return
    assert not ok and want in reason, reason
    if want.startswith("no usable NVIDIA CUDA driver"):
        # numba-cuda is installed: the driver is what is missing, not the extra.
        assert "install the NVIDIA driver" in reason and "pip install" not in reason
    else:
        assert "pip install" in reason

_NO_SIM_SCRIPT = r"""
import json, sys
import numpy as np
import numbaconv
from numbaconv import _dispatch
report = {"numba.cuda after import": "numba.cuda" in sys.modules}
y = numbaconv.conv1d([[[1.0, 2.0, 3.0]]], np.ones((1, 1, 2)))
report["cpu result"] = y.tolist()
report["is_gpu(host)"] = [_dispatch._is_gpu(a) for a in
                          (np.zeros(2), [1.0], 3.0, None, np.float64(1))]
report["numba.cuda after cpu calls"] = "numba.cuda" in sys.modules
from numbaconv.cuda import cuda_status
report["status"] = cuda_status()
try:
    numbaconv.conv1d(np.ones((1, 1, 3)), np.ones((1, 1, 2)), device="cuda")
    report["device=cuda"] = ["ok", ""]
except Exception as exc:
    report["device=cuda"] = [type(exc).__name__, str(exc)]
print(json.dumps(report))
"""


@pytest.mark.cuda
def test_simulator_command_runs_the_gpu_tests():
    """``NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cuda`` (the README's
    command) fails, rather than skipping every test, when the simulator
    cannot run (numba-cuda missing from the test extra, say)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        pytest.skip("checks the simulator run only")
    assert _OK and SIMULATOR, (f"NUMBA_ENABLE_CUDASIM=1 is set but the CUDA tests "
                               f"cannot run: {_REASON}")


@pytest.mark.parametrize("device, parsed", [
    (None, (None, None)), ("cpu", ("cpu", None)), ("cuda", ("cuda", None)),
    ("cuda:0", ("cuda", 0)), ("cuda:12", ("cuda", 12)),
])
def test_device_strings_parse(device, parsed):
    from numbaconv import _dispatch
    assert _dispatch.parse_device(device) == parsed


@pytest.mark.parametrize("device", ["cuda:", "cuda:-1", "cuda:1.5", "cuda:x", "CUDA",
                                    "gpu", "cuda:٣", 0, 1.0, ("cuda", 0)])
def test_bad_device_is_a_value_error_before_any_work(device):
    x, w = np.ones((1, 1, 4)), np.ones((1, 1, 2))
    with pytest.raises(ValueError) as info:
        numbaconv.conv1d(x, w, device=device)
    assert str(info.value) == ("device must be None, 'cpu', 'cuda' or 'cuda:N' (N a "
                               f"GPU index such as 0), got {device!r}")


def test_device_index_where_cuda_is_unusable(monkeypatch):
    """Without a usable GPU, 'cuda:0' fails like 'cuda', naming what was asked."""
    monkeypatch.setattr(nc_cuda, "cuda_status", lambda: (False, "no GPU here"))
    with pytest.raises(RuntimeError, match=r"^device='cuda:0' was requested, but CUDA "
                                           r"is not usable here: no GPU here$"):
        numbaconv.conv1d(np.ones((1, 1, 4)), np.ones((1, 1, 2)), device="cuda:0")


def test_without_simulator():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    done = subprocess.run([sys.executable, "-c", _NO_SIM_SCRIPT], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["numba.cuda after import"] is False
    assert report["cpu result"] == [[[3.0, 5.0]]]
    assert report["is_gpu(host)"] == [False] * 5
    assert report["numba.cuda after cpu calls"] is False
    usable, reason = report["status"]
    kind, message = report["device=cuda"]
    if usable:
        assert kind == "ok", message
    else:
        assert kind == "RuntimeError", message
        assert message.startswith("device='cuda' was requested, but CUDA is "
                                  "not usable here: ")
        assert reason in message
        if "numba-cuda is installed" in reason:
            assert INSTALL not in message   # the extra is there already
    info = subprocess.run([sys.executable, "-m", "numbaconv", "info"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert info.returncode == 0, info.stderr
    rows = {line.split()[0]: line.split(None, 1)[1]
            for line in info.stdout.splitlines() if line.strip()}
    assert rows["numbaconv"] == numbaconv.__version__
    assert rows["cuda"].startswith("usable: " if usable else "not usable: ")
    assert rows["cuda"].endswith(reason)
