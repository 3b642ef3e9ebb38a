"""PyTorch CPU tensors: the caller's kind of array comes back on the CPU too.

A CPU tensor in gives a CPU tensor out that shares the result's memory,
``out=`` may be a tensor (written in place and returned), and tensors with
``requires_grad`` are read without autograd tracking, as on the GPU.  Each
result is compared with ``torch.nn.functional`` and with the NumPy call.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import numbaconv
from conftest import assert_close

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _operands(nd, dtype=torch.float64, requires_grad=False):
    g = torch.Generator().manual_seed(nd)
    x = torch.randn((2, 4) + (7,) * nd, generator=g, dtype=dtype)
    w = torch.randn((6, 2) + (3,) * nd, generator=g, dtype=dtype)
    b = torch.randn(6, generator=g, dtype=dtype)
    return x.requires_grad_(requires_grad), w.requires_grad_(requires_grad), b


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("requires_grad", [False, True], ids=["plain", "requires_grad"])
def test_tensor_in_tensor_out(nd, requires_grad):
    x, w, b = _operands(nd, requires_grad=requires_grad)
    y = getattr(numbaconv, f"conv{nd}d")(x, w, b, padding=1, groups=2)
    assert isinstance(y, torch.Tensor) and y.device.type == "cpu"
    assert y.dtype == torch.float64 and not y.requires_grad
    with torch.no_grad():
        ref = getattr(F, f"conv{nd}d")(x, w, b, padding=1, groups=2)
    assert_close(y.numpy(), ref.numpy())
    # the inputs were read, not tracked or changed
    assert x.grad is None and x.requires_grad == requires_grad
    plain = getattr(numbaconv, f"conv{nd}d")(x.detach().numpy(), w.detach().numpy(),
                                             b.numpy(), padding=1, groups=2)
    assert isinstance(plain, np.ndarray) and np.array_equal(plain, y.numpy())


def test_result_shares_memory_with_a_numpy_result():
    """The tensor wraps the computed array (``torch.from_numpy``), no copy."""
    x, w, _ = _operands(2, torch.float32)
    y = numbaconv.conv2d(x, w, groups=2)
    view = y.numpy()
    view[0, 0, 0, 0] = 123.0
    assert y[0, 0, 0, 0].item() == 123.0


def test_gradients_and_transpose_return_tensors():
    x, w, _ = _operands(2, requires_grad=True)
    y = numbaconv.conv2d(x, w, padding=1, groups=2)
    gy = torch.ones_like(y)
    gi, gw, gb = numbaconv.conv2d_backward(gy, x, w, padding=1, groups=2)
    assert all(isinstance(g, torch.Tensor) for g in (gi, gw, gb))
    ref = F.conv2d(x, w, padding=1, groups=2)
    rx, rw = torch.autograd.grad(ref, (x, w), gy)
    assert_close(gi.numpy(), rx.numpy())
    assert_close(gw.numpy(), rw.numpy())
    assert_close(gb.numpy(), gy.sum(dim=(0, 2, 3)).numpy())
    t = numbaconv.conv_transpose2d(gy, w, padding=1, groups=2)
    assert isinstance(t, torch.Tensor)
    assert_close(t.numpy(), F.conv_transpose2d(gy, w.detach(), padding=1,
                                               groups=2).numpy())


@pytest.mark.parametrize("contiguous", [True, False], ids=["contiguous", "strided"])
def test_out_tensor_is_written_and_returned(contiguous):
    x, w, b = _operands(3)
    shape = (2, 6, 5, 5, 5)
    out = torch.full(shape, float("nan"), dtype=torch.float64)
    if not contiguous:
        out = torch.full((2, 6, 5, 5, 10), float("nan"), dtype=torch.float64)[..., ::2]
    got = numbaconv.conv3d(x, w, b, groups=2, out=out)
    assert got is out
    assert_close(out.numpy(), F.conv3d(x, w, b, groups=2).numpy())
    # a NumPy input with a tensor out= works as well
    out2 = torch.empty(shape, dtype=torch.float64)
    assert numbaconv.conv3d(x.numpy(), w.numpy(), b.numpy(), groups=2, out=out2) is out2
    assert torch.equal(out2, out)


@pytest.mark.parametrize("case, kind, match", [
    (lambda x, w: numbaconv.conv1d(x, w, out=torch.empty(2, 6, 5, requires_grad=True,
                                                         dtype=torch.float64)),
     ValueError, "out is a tensor that requires grad"),
    (lambda x, w: numbaconv.conv1d(x, w, out=torch.empty(2, 6, 5)),
     ValueError, "out has dtype float32, expected float64"),
    (lambda x, w: numbaconv.conv1d(x, w, out=torch.empty(2, 6, 5, dtype=torch.int32)),
     ValueError, "out has dtype torch.int32"),
    (lambda x, w: numbaconv.conv1d(x, w, out=torch.empty(2, 6, 4, dtype=torch.float64)),
     ValueError, r"out has shape \(2, 6, 4\), expected \(2, 6, 5\)"),
    (lambda x, w: numbaconv.conv1d(x.bfloat16(), w),
     TypeError, "input has dtype torch.bfloat16.*input.float()"),
    (lambda x, w: numbaconv.conv1d(x, w.float()),
     TypeError, "weight has dtype float32 but input has dtype float64"),
    (lambda x, w: numbaconv.conv1d(x.long(), w),
     TypeError, "input has dtype int64.*cast"),
], ids=["out-requires-grad", "out-dtype", "out-int", "out-shape", "bfloat16",
        "mixed-dtypes", "integer"])
def test_bad_tensors_are_clear_errors(case, kind, match):
    x, w, _ = _operands(1)
    w = w[:, :, :].repeat(1, 2, 1)          # groups=1: 4 input channels
    x0, w0 = x.clone(), w.clone()
    with pytest.raises(kind, match=match):
        case(x, w)
    assert torch.equal(x, x0) and torch.equal(w, w0)


def test_out_overlapping_an_input_tensor_is_rejected():
    x = torch.zeros(1, 1, 8, dtype=torch.float64)
    w = torch.ones(1, 1, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="out overlaps input"):
        numbaconv.conv1d(x, w, out=x)


def test_layer_with_tensors():
    """A layer takes CPU tensors and returns them; its gradients stay NumPy."""
    from numbaconv import nn
    layer = nn.Conv2d(2, 3, 3, padding=1, rng=0, dtype=np.float64)
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    gx = layer.backward(torch.ones_like(y))
    assert isinstance(y, torch.Tensor) and isinstance(gx, torch.Tensor)
    assert isinstance(layer.weight_grad, np.ndarray)
    yn = layer(x.detach().numpy())
    assert np.array_equal(yn, y.numpy())


def test_torch_is_not_imported_for_numpy_calls():
    code = ("import sys, numpy as np, numbaconv\n"
            "numbaconv.conv1d(np.ones((1, 1, 4)), np.ones((1, 1, 2)))\n"
            "print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
