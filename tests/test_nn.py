"""The layer API (numbaconv.nn) against PyTorch modules and the functional API."""

from __future__ import annotations

import doctest
import math
import os

import numpy as np
import pytest

from conftest import assert_close

numbaconv = pytest.importorskip("numbaconv")
nn = pytest.importorskip("numbaconv.nn")

CONV = ["Conv1d", "Conv2d", "Conv3d"]
TRANSPOSE = ["ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]
TORCH_MODES = ["zeros", "reflect", "replicate", "circular"]


def nd_of(name: str) -> int:
    return int(name[-2])


# ---------------------------------------------------------------------------
# references built from torch
# ---------------------------------------------------------------------------

def torch_module(torch, layer, name=None, **extra):
    """The torch module with ``layer``'s arguments and (copied) parameters, float64."""
    name = name or type(layer).__name__
    kw = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
              groups=layer.groups, bias=layer.bias is not None,
              padding_mode=layer.padding_mode, dtype=torch.float64)
    if layer.transposed:
        kw["output_padding"] = layer.output_padding
    kw.update(extra)
    module = getattr(torch.nn, name)(layer.in_channels, layer.out_channels,
                                     layer.kernel_size, **kw)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.asarray(layer.weight, np.float64)))
        if layer.bias is not None:
            module.bias.copy_(torch.from_numpy(np.asarray(layer.bias, np.float64)))
    return module


def torch_pad(torch, u, lo, hi, mode):
    """Pad the spatial axes of batched ``u`` with any of our padding modes
    ('symmetric' is a gather with NumPy's symmetric indices)."""
    import torch.nn.functional as F
    nd = len(lo)
    if mode == "symmetric":
        for ax in range(nd):
            dim = 2 + ax
            idx = np.pad(np.arange(u.shape[dim]), (lo[ax], hi[ax]), mode="symmetric")
            u = u.index_select(dim, torch.from_numpy(idx))
        return u
    pads = []
    for a, b in zip(reversed(lo), reversed(hi)):
        pads += [a, b]
    return F.pad(u, pads, mode="constant" if mode == "zeros" else mode)


def torch_conv(torch, nd, u, w, layer, lo, hi):
    import torch.nn.functional as F
    conv = getattr(F, f"conv{nd}d")
    padded = torch_pad(torch, u, lo, hi, layer.padding_mode)
    return conv(padded, w, None, layer.stride, 0, layer.dilation, layer.groups)


def pads_of(layer):
    """(lo, hi) per axis of a layer whose padding is a tuple of ints or pairs."""
    pairs = [p if isinstance(p, tuple) else (p, p) for p in layer.padding]
    return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)


def reference(torch, layer, x, g, out_shape=None):
    """Output and (input, weight, bias) gradients by torch autograd, for any
    padding mode: a convolution is pad + conv; a transposed convolution is
    the vector-Jacobian product of that convolution (its exact adjoint),
    differentiated once more.  ``x`` and ``g`` are batched."""
    nd = layer._nd
    lo, hi = pads_of(layer)
    xt = torch.from_numpy(np.asarray(x, np.float64)).requires_grad_(True)
    wt = torch.from_numpy(np.asarray(layer.weight, np.float64)).requires_grad_(True)
    if not layer.transposed:
        y = torch_conv(torch, nd, xt, wt, layer, lo, hi)
    else:
        u = torch.zeros(out_shape, dtype=torch.float64, requires_grad=True)
        fwd = torch_conv(torch, nd, u, wt, layer, lo, hi)
        (y,) = torch.autograd.grad(fwd, u, grad_outputs=xt, create_graph=True)
    if layer.bias is not None:
        y = y + torch.from_numpy(np.asarray(layer.bias, np.float64)).view(
            (1, -1) + (1,) * nd)
    y.backward(torch.from_numpy(np.asarray(g, np.float64)))
    gb = g.sum(axis=(0,) + tuple(range(2, 2 + nd))) if layer.bias is not None else None
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), gb


def run_layer(layer, x, g_batched, batched, **kw):
    """Forward + backward of ``layer``; ``x``/``g_batched`` are batched arrays."""
    xi = x if batched else x[0]
    y = layer(xi, **kw)
    g = g_batched if batched else g_batched[0]
    gx = layer.backward(g)
    if not batched:
        assert y.ndim == x.ndim - 1 and gx.shape == xi.shape
        y, gx = y[None], gx[None]
    return y, gx


def check_grads(layer, y, gx, ref):
    ry, rgx, rgw, rgb = ref
    assert_close(y, ry, err_msg="forward")
    assert_close(gx, rgx, err_msg="grad_input")
    assert_close(layer.weight_grad, rgw, err_msg="grad_weight")
    if layer.bias is None:
        assert layer.bias_grad is None
    else:
        assert_close(layer.bias_grad, rgb, err_msg="grad_bias")


# ---------------------------------------------------------------------------
# forward and backward against torch modules
# ---------------------------------------------------------------------------

# (constructor args, kwargs, batched input shape): stride, dilation and groups vary
CONV_CASES = {
    1: ((4, 6, 3), dict(stride=2, padding=2, dilation=2, groups=2), (2, 4, 11)),
    2: ((4, 4, (3, 2)), dict(stride=(1, 2), padding=(1, 1), groups=4), (2, 4, 5, 7)),
    3: ((2, 4, 3), dict(stride=(1, 2, 1), padding=1), (2, 2, 4, 6, 5)),
}
TRANSPOSE_CASES = {
    1: ((4, 6, 3), dict(stride=2, padding=1, output_padding=1, groups=2), (2, 4, 7)),
    2: ((4, 2, (3, 2)), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
        (2, 4, 4, 5)),
    3: ((2, 3, 3), dict(stride=2, padding=1), (2, 2, 3, 4, 3)),
}


def make_layer(name, case, bias, padding_mode="zeros", seed=0, **over):
    args, kw, xshape = case
    kw = dict(kw, bias=bias, padding_mode=padding_mode, dtype=np.float64, rng=seed)
    kw.update(over)
    return getattr(nn, name)(*args, **kw), xshape


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("mode", TORCH_MODES)
@pytest.mark.parametrize("name", CONV)
def test_conv_matches_torch_module(torch, name, mode, bias, batched):
    layer, xshape = make_layer(name, CONV_CASES[nd_of(name)], bias, mode)
    module = torch_module(torch, layer)
    r = np.random.default_rng(1)
    x = r.standard_normal(xshape)
    g = r.standard_normal(layer.output_shape(xshape))

    y, gx = run_layer(layer, x, g, batched)

    xt = torch.from_numpy(x if batched else x[0]).requires_grad_(True)
    yt = module(xt)
    yt.backward(torch.from_numpy(g if batched else g[0]))
    ry, rgx = yt.detach().numpy(), xt.grad.numpy()
    if not batched:
        ry, rgx = ry[None], rgx[None]
    rgb = None if not bias else module.bias.grad.numpy()
    check_grads(layer, y, gx, (ry, rgx, module.weight.grad.numpy(), rgb))


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("name", TRANSPOSE)
def test_transpose_matches_torch_module(torch, name, bias, batched):
    layer, xshape = make_layer(name, TRANSPOSE_CASES[nd_of(name)], bias)
    module = torch_module(torch, layer)
    r = np.random.default_rng(2)
    x = r.standard_normal(xshape)
    g = r.standard_normal(layer.output_shape(xshape))

    y, gx = run_layer(layer, x, g, batched)

    xt = torch.from_numpy(x if batched else x[0]).requires_grad_(True)
    yt = module(xt)
    yt.backward(torch.from_numpy(g if batched else g[0]))
    ry, rgx = yt.detach().numpy(), xt.grad.numpy()
    if not batched:
        ry, rgx = ry[None], rgx[None]
    rgb = None if not bias else module.bias.grad.numpy()
    check_grads(layer, y, gx, (ry, rgx, module.weight.grad.numpy(), rgb))


@pytest.mark.parametrize("name", TRANSPOSE)
def test_transpose_output_size_matches_torch(torch, name):
    """output_size picks the output_padding, which backward must reuse."""
    layer, xshape = make_layer(name, TRANSPOSE_CASES[nd_of(name)], True,
                               output_padding=0)
    module = torch_module(torch, layer)
    nd = nd_of(name)
    base = layer.output_shape(xshape)[2:]
    size = tuple(b + s - 1 for b, s in zip(base, layer.stride))  # largest allowed
    assert layer.output_shape(xshape, output_size=size)[2:] == size
    r = np.random.default_rng(3)
    x = r.standard_normal(xshape)
    g = r.standard_normal(xshape[:1] + (layer.out_channels,) + size)

    y, gx = run_layer(layer, x, g, True, output_size=size)
    assert y.shape[2:] == size

    xt = torch.from_numpy(x).requires_grad_(True)
    yt = module(xt, output_size=list(size))
    yt.backward(torch.from_numpy(g))
    check_grads(layer, y, gx, (yt.detach().numpy(), xt.grad.numpy(),
                               module.weight.grad.numpy(), module.bias.grad.numpy()))
    assert size != base and nd == len(size)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("mode", TORCH_MODES)
def test_conv_same_padding_matches_torch(torch, mode):
    layer = nn.Conv2d(2, 3, (4, 3), padding="same", dilation=(1, 2),
                      padding_mode=mode, dtype=np.float64, rng=4)
    module = torch_module(torch, layer)
    r = np.random.default_rng(4)
    x = r.standard_normal((2, 2, 7, 8))
    assert layer.output_shape(x.shape) == (2, 3, 7, 8)
    g = r.standard_normal((2, 3, 7, 8))
    y, gx = run_layer(layer, x, g, True)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = module(xt)
    yt.backward(torch.from_numpy(g))
    check_grads(layer, y, gx, (yt.detach().numpy(), xt.grad.numpy(),
                               module.weight.grad.numpy(), module.bias.grad.numpy()))


# ---------------------------------------------------------------------------
# every padding mode (symmetric, and the transposed layers' modes, which
# torch modules lack) against torch autograd through an explicit pad
# ---------------------------------------------------------------------------

MODES = TORCH_MODES + ["symmetric"]


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", CONV + TRANSPOSE)
def test_every_padding_mode_against_torch_autograd(torch, name, mode, batched):
    nd = nd_of(name)
    cases = TRANSPOSE_CASES if name.startswith("ConvT") else CONV_CASES
    bias = (nd + MODES.index(mode)) % 2 == 0
    layer, xshape = make_layer(name, cases[nd], bias, mode, seed=nd)
    if not batched:
        xshape = (1,) + xshape[1:]  # the reference runs on a batch of one
    out = layer.output_shape(xshape)
    r = np.random.default_rng(5)
    x = r.standard_normal(xshape)
    g = r.standard_normal(out)
    y, gx = run_layer(layer, x, g, batched)
    check_grads(layer, y, gx, reference(torch, layer, x, g, out))


def test_symmetric_weight_grad_by_finite_differences():
    """Without torch: the weight gradient of a symmetric-padded layer is the
    derivative of <layer(x), g>, which is linear in the weight."""
    layer = nn.Conv1d(2, 3, 4, padding=(2,), dilation=2, padding_mode="symmetric",
                      dtype=np.float64, rng=6)
    r = np.random.default_rng(6)
    x = r.standard_normal((2, 2, 9))
    g = r.standard_normal(layer.output_shape(x.shape))
    layer(x)
    gx = layer.backward(g)
    w0 = layer.weight.copy()
    fd = np.zeros_like(w0)
    for idx in np.ndindex(w0.shape):
        e = np.zeros_like(w0)
        e[idx] = 1.0
        lp = numbaconv.conv1d(x, w0 + e, layer.bias, 1, 2, 2, padding_mode="symmetric")
        lm = numbaconv.conv1d(x, w0 - e, layer.bias, 1, 2, 2, padding_mode="symmetric")
        fd[idx] = np.vdot(lp - lm, g) / 2
    assert_close(layer.weight_grad, fd)
    assert_close(layer.bias_grad, g.sum(axis=(0, 2)))
    # and the input gradient is the functional one
    expected = numbaconv.conv1d_input(x.shape, w0, g, 1, 2, 2, padding_mode="symmetric")
    assert_close(gx, expected)


# ---------------------------------------------------------------------------
# initialisation
# ---------------------------------------------------------------------------

INIT_CASES = [
    ("Conv1d", (4, 6, 5), dict(groups=2)),
    ("Conv2d", (3, 8, (3, 2)), {}),
    ("Conv3d", (2, 4, 3), dict(dtype=np.float64)),
    ("ConvTranspose1d", (6, 4, 5), dict(groups=2)),
    ("ConvTranspose2d", (3, 8, (3, 2)), {}),
    ("ConvTranspose3d", (4, 2, 3), dict(groups=2, dtype=np.float64)),
]


def expected_bound(name, args, kw):
    cin, cout, k = args
    k = (k,) * nd_of(name) if isinstance(k, int) else k
    g = kw.get("groups", 1)
    per_group = cout // g if name.startswith("ConvT") else cin // g
    return 1.0 / math.sqrt(per_group * math.prod(k))


@pytest.mark.parametrize("name,args,kw", INIT_CASES, ids=[c[0] for c in INIT_CASES])
def test_init_shapes_bounds_and_spread(name, args, kw):
    layer = getattr(nn, name)(*args, rng=0, **kw)
    cin, cout, _ = args
    g = kw.get("groups", 1)
    lead = (cin, cout // g) if name.startswith("ConvT") else (cout, cin // g)
    assert layer.weight.shape == lead + layer.kernel_size
    assert layer.bias.shape == (cout,)
    dtype = np.dtype(kw.get("dtype", np.float32))
    assert layer.weight.dtype == dtype and layer.bias.dtype == dtype
    b = expected_bound(name, args, kw)
    for p in (layer.weight, layer.bias):
        assert np.abs(p).max() <= b * (1 + 1e-6)
    # uniform on [-b, b]: the extremes come close to the bound
    assert np.abs(layer.weight).max() > 0.7 * b
    assert layer.weight.min() < 0 < layer.weight.max()
    assert not layer.weight_grad.any() and not layer.bias_grad.any()


def test_init_matches_torch_bounds(torch):
    """Our bound is the one torch's default initialisation uses."""
    torch.manual_seed(0)
    for name, args, kw in INIT_CASES:
        kw = {k: v for k, v in kw.items() if k != "dtype"}
        module = getattr(torch.nn, name)(*args, **kw)
        b = expected_bound(name, args, kw)
        assert module.weight.detach().abs().max().item() <= b
        assert module.weight.detach().abs().max().item() > 0.7 * b


def test_init_is_reproducible():
    a = nn.Conv3d(2, 4, 3, rng=7)
    b = nn.Conv3d(2, 4, 3, rng=7)
    assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
    c = nn.ConvTranspose2d(3, 2, 3, rng=np.random.default_rng(11))
    d = nn.ConvTranspose2d(3, 2, 3, rng=np.random.default_rng(11))
    assert np.array_equal(c.weight, d.weight) and np.array_equal(c.bias, d.bias)
    e = nn.Conv3d(2, 4, 3, rng=8)
    assert not np.array_equal(a.weight, e.weight)
    f, h = nn.Conv1d(2, 4, 3), nn.Conv1d(2, 4, 3)  # fresh generators
    assert not np.array_equal(f.weight, h.weight)


def test_reset_parameters():
    layer = nn.Conv2d(2, 4, 3, rng=3)
    first_w, first_b = layer.weight.copy(), layer.bias.copy()
    layer.weight_grad[...] = 1.0
    layer.reset_parameters()
    assert not np.array_equal(layer.weight, first_w)
    assert not np.array_equal(layer.bias, first_b)
    assert np.abs(layer.weight).max() <= 1 / math.sqrt(18) * (1 + 1e-6)
    assert layer.weight.shape == first_w.shape and layer.weight.dtype == np.float32
    assert (layer.weight_grad == 1.0).all()  # gradients are left alone
    layer.reset_parameters(rng=3)
    assert np.array_equal(layer.weight, first_w) and np.array_equal(layer.bias, first_b)
    # the constructor's generator continues: two layers stay in step
    a, b = nn.ConvTranspose1d(2, 2, 3, rng=9), nn.ConvTranspose1d(2, 2, 3, rng=9)
    a.reset_parameters()
    b.reset_parameters()
    assert np.array_equal(a.weight, b.weight)
    nobias = nn.Conv1d(2, 2, 3, bias=False, rng=1)
    nobias.reset_parameters(rng=np.random.default_rng(0))
    assert nobias.bias is None


# ---------------------------------------------------------------------------
# shapes
# ---------------------------------------------------------------------------

SHAPE_CASES = [
    ("Conv1d", (2, 4, 5), dict(stride=3, padding=2, dilation=2), (3, 2, 17)),
    ("Conv1d", (2, 4, 4), dict(padding="same"), (2, 10)),
    ("Conv2d", (4, 2, (3, 5)), dict(stride=(2, 1), groups=2, padding="valid"),
     (1, 4, 9, 8)),
    ("Conv3d", (1, 2, 3), dict(stride=2, padding=1), (1, 7, 8, 9)),
    ("ConvTranspose1d", (2, 4, 5), dict(stride=3, padding=2, output_padding=1),
     (2, 2, 6)),
    ("ConvTranspose2d", (4, 2, (3, 2)), dict(stride=2, dilation=(2, 1), groups=2),
     (4, 5, 3)),
    ("ConvTranspose3d", (2, 1, 4), dict(stride=2, padding=1), (1, 2, 3, 4, 2)),
]


@pytest.mark.parametrize("name,args,kw,shape", SHAPE_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(SHAPE_CASES)])
def test_output_shape_matches_torch(torch, name, args, kw, shape):
    layer = getattr(nn, name)(*args, rng=0, **kw)
    module = getattr(torch.nn, name)(*args, **kw)
    with torch.no_grad():
        expected = tuple(module(torch.zeros(shape)).shape)
    assert layer.output_shape(shape) == expected
    assert layer(np.zeros(shape, np.float32)).shape == expected


def test_output_shape_errors_like_forward():
    layer = nn.Conv2d(4, 2, 3)
    with pytest.raises(ValueError, match="channels"):
        layer.output_shape((1, 3, 8, 8))
    with pytest.raises(ValueError, match="Kernel size"):
        layer.output_shape((1, 4, 2, 8))
    t = nn.ConvTranspose1d(2, 2, 3, stride=2)
    with pytest.raises(ValueError, match="output_size"):
        t.output_shape((1, 2, 5), output_size=(20,))


# ---------------------------------------------------------------------------
# gradient bookkeeping
# ---------------------------------------------------------------------------

def test_gradients_accumulate_and_zero_grad():
    layer = nn.Conv2d(2, 3, 3, padding=1, stride=2, dtype=np.float64, rng=0)
    r = np.random.default_rng(0)
    x1, x2 = r.standard_normal((2, 2, 6, 5)), r.standard_normal((1, 2, 4, 4))
    g1 = r.standard_normal(layer.output_shape(x1.shape))
    g2 = r.standard_normal(layer.output_shape(x1.shape))
    g3 = r.standard_normal(layer.output_shape(x2.shape))

    def grads(x, g):
        return numbaconv.conv2d_backward(g, x, layer.weight, 2, 1)

    layer(x1)
    gx1 = layer.backward(g1)
    gw_ref, gb_ref = grads(x1, g1)[1:]
    assert_close(gx1, grads(x1, g1)[0])
    assert_close(layer.weight_grad, gw_ref)
    held = layer.weight_grad  # accumulation happens in place
    layer.backward(g2)        # a second backward on the same forward adds up
    gw_ref, gb_ref = gw_ref + grads(x1, g2)[1], gb_ref + grads(x1, g2)[2]
    layer(x2)                 # a new forward: backward uses the new input
    layer.backward(g3)
    gw_ref, gb_ref = gw_ref + grads(x2, g3)[1], gb_ref + grads(x2, g3)[2]
    assert_close(layer.weight_grad, gw_ref)
    assert_close(layer.bias_grad, gb_ref)
    assert layer.weight_grad is held
    layer.zero_grad()
    assert not layer.weight_grad.any() and not layer.bias_grad.any()
    layer.backward(g3)
    assert_close(layer.weight_grad, grads(x2, g3)[1])


def test_transpose_gradients_accumulate():
    layer = nn.ConvTranspose1d(2, 2, 3, stride=2, bias=False, dtype=np.float64, rng=0)
    r = np.random.default_rng(1)
    x = r.standard_normal((1, 2, 5))
    g = r.standard_normal(layer.output_shape(x.shape, output_size=(12,)))
    layer(x, output_size=(12,))
    layer.backward(g)
    layer.backward(g)
    _, gw, _ = numbaconv.conv_transpose1d_backward(g, x, layer.weight, 2, 0, 1)
    assert_close(layer.weight_grad, 2 * gw)
    assert layer.bias_grad is None


@pytest.mark.parametrize("name", ["Conv1d", "ConvTranspose3d"])
def test_backward_before_forward_is_an_error(name):
    layer = getattr(nn, name)(2, 2, 3)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.zeros((1, 2) + (5,) * nd_of(name), np.float32))


def test_backward_checks_grad_output_shape():
    layer = nn.Conv1d(2, 2, 3)
    layer(np.zeros((1, 2, 8), np.float32))
    with pytest.raises(ValueError, match="grad_output"):
        layer.backward(np.zeros((1, 2, 8), np.float32))


def test_input_dtype_must_match_layer():
    layer = nn.Conv1d(2, 2, 3)  # float32
    with pytest.raises(TypeError, match="dtype"):
        layer(np.zeros((1, 2, 8)))


def test_parameters_are_the_arrays():
    layer = nn.Conv2d(2, 2, 3, rng=0)
    w, b = layer.parameters()
    assert w is layer.weight and b is layer.bias
    w -= 1.0  # in-place updates reach the layer
    assert (layer.weight == w).all()
    assert len(nn.ConvTranspose2d(2, 2, 3, bias=False).parameters()) == 1


# ---------------------------------------------------------------------------
# constructor validation
# ---------------------------------------------------------------------------

BAD = [
    ("Conv2d", (3, 4, 3), dict(groups=2), "in_channels"),
    ("Conv2d", (4, 3, 3), dict(groups=2), "out_channels"),
    ("ConvTranspose1d", (4, 3, 3), dict(groups=2), "out_channels"),
    ("Conv1d", (0, 3, 3), {}, "in_channels"),
    ("Conv1d", (2, 3, 3), dict(groups=0), "groups"),
    ("Conv2d", (2, 2, 0), {}, "kernel_size"),
    ("Conv2d", (2, 2, (3, -1)), {}, "kernel_size"),
    ("Conv3d", (2, 2, (3, 3)), {}, "kernel_size"),
    ("Conv1d", (2, 2, 3), dict(stride=0), "stride"),
    ("ConvTranspose2d", (2, 2, 3), dict(stride=(1, -2)), "stride"),
    ("Conv3d", (2, 2, 3), dict(dilation=0), "dilation"),
    ("Conv1d", (2, 2, 3), dict(padding=-1), "padding"),
    ("Conv2d", (2, 2, 3), dict(padding=(1, -1)), "padding"),
    ("Conv2d", (2, 2, 3), dict(padding="full"), "padding"),
    ("Conv2d", (2, 2, 3), dict(padding_mode="mirror"), "padding_mode"),
    ("ConvTranspose1d", (2, 2, 3), dict(padding_mode="wrap"), "padding_mode"),
    ("ConvTranspose1d", (2, 2, 3), dict(stride=2, output_padding=2), "output_padding"),
    ("ConvTranspose2d", (2, 2, 3), dict(output_padding=-1), "output_padding"),
    ("Conv1d", (2, 2, 3), dict(dtype=np.int32), "dtype"),
    ("Conv1d", (2, 2, 3), dict(device="tpu"), "device"),
]


@pytest.mark.parametrize("name,args,kw,arg", BAD,
                         ids=[f"{b[3]}-{i}" for i, b in enumerate(BAD)])
def test_constructor_rejects_bad_arguments(name, args, kw, arg):
    with pytest.raises(ValueError, match=arg):
        getattr(nn, name)(*args, **kw)


def test_rng_type_is_checked():
    with pytest.raises(TypeError, match="rng"):
        nn.Conv1d(2, 2, 3, rng="seed")


def test_hyper_parameters_are_normalised():
    layer = nn.ConvTranspose2d(4, 2, 3, 2, 1, 1, 2, False, (2, 1))  # positional order
    assert layer.kernel_size == (3, 3) and layer.stride == (2, 2)
    assert layer.padding == (1, 1) and layer.output_padding == (1, 1)
    assert layer.groups == 2 and layer.bias is None and layer.dilation == (2, 1)
    conv = nn.Conv3d(2, 2, 3, 1, ((1, 2), 1, 0), 1, 1, True, "replicate")
    assert conv.padding == ((1, 2), (1, 1), (0, 0))
    assert conv.padding_mode == "replicate"
    assert conv.output_shape((1, 2, 5, 5, 5)) == (1, 2, 6, 5, 3)


# ---------------------------------------------------------------------------
# state
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name,args,kw", [
    ("Conv3d", (2, 4, 3), dict(padding=1)),
    ("Conv1d", (4, 2, 5), dict(groups=2, bias=False)),
    ("ConvTranspose2d", (4, 6, (3, 2)), dict(stride=2, groups=2)),
])
def test_state_dict_loads_from_torch(torch, name, args, kw):
    torch.manual_seed(0)
    module = getattr(torch.nn, name)(*args, **kw)
    layer = getattr(nn, name)(*args, rng=0, **kw)
    layer.load_state_dict(module.state_dict())
    assert set(layer.state_dict()) == set(module.state_dict())
    for key, value in module.state_dict().items():
        assert np.array_equal(layer.state_dict()[key], value.numpy())
    x = np.random.default_rng(0).standard_normal(
        (2, args[0]) + (6,) * nd_of(name)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    assert_close(layer(x), expected)
    # and back: our state dict loads into torch unchanged
    module2 = getattr(torch.nn, name)(*args, **kw)
    module2.load_state_dict({k: torch.from_numpy(v) for k, v in
                             layer.state_dict().items()})
    assert all(torch.equal(a, b) for a, b in
               zip(module.state_dict().values(), module2.state_dict().values()))


def test_state_dict_is_a_copy_and_round_trips():
    a, b = nn.Conv2d(2, 3, 3, rng=1), nn.Conv2d(2, 3, 3, rng=2)
    sd = a.state_dict()
    assert list(sd) == ["weight", "bias"]
    sd["weight"][...] = 0.0
    assert a.weight.any()
    b.load_state_dict(a.state_dict())
    assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
    assert b.weight is not a.weight
    assert list(nn.Conv2d(2, 3, 3, bias=False).state_dict()) == ["weight"]


@pytest.mark.parametrize("state,key", [
    (lambda w, b: {"weight": w}, "bias"),
    (lambda w, b: {"weight": w, "bias": b, "running_mean": b}, "running_mean"),
    (lambda w, b: {"weight": w[:1], "bias": b}, "weight"),
    (lambda w, b: {"weight": w, "bias": b[None]}, "bias"),
    (lambda w, b: {"weight": w.astype(np.float64), "bias": b}, "weight"),
], ids=["missing", "unexpected", "shape", "bias-shape", "dtype"])
def test_load_state_dict_errors_name_the_key(state, key):
    layer = nn.Conv2d(2, 3, 3, rng=1)
    w0, b0 = layer.weight.copy(), layer.bias.copy()
    with pytest.raises(ValueError, match=key):
        layer.load_state_dict(state(np.zeros_like(w0), np.zeros_like(b0)))
    # nothing was loaded
    assert np.array_equal(layer.weight, w0) and np.array_equal(layer.bias, b0)


def test_load_state_dict_without_bias_rejects_bias():
    layer = nn.Conv1d(2, 3, 3, bias=False)
    with pytest.raises(ValueError, match="'bias'"):
        layer.load_state_dict({"weight": np.zeros((3, 2, 3), np.float32),
                               "bias": np.zeros(3, np.float32)})


# ---------------------------------------------------------------------------
# repr
# ---------------------------------------------------------------------------

REPR_CASES = [
    ("Conv1d", (4, 8, 3), {}),
    ("Conv2d", (4, 8, (3, 5)), dict(stride=2, padding=(1, 2), dilation=2, groups=4,
                                    bias=False, padding_mode="reflect")),
    ("Conv2d", (4, 8, 3), dict(padding="same", padding_mode="circular")),
    ("Conv2d", (4, 8, 3), dict(padding="valid")),
    ("Conv3d", (4, 8, 3), dict(stride=2, padding=1, bias=False)),
    ("Conv3d", (1, 1, (1, 3, 5)), dict(padding=0, padding_mode="replicate")),
    ("ConvTranspose1d", (4, 8, 3), dict(dilation=2)),
    ("ConvTranspose2d", (4, 8, 3), dict(stride=2, padding=1, output_padding=1,
                                        groups=4)),
    ("ConvTranspose3d", (2, 2, (2, 3, 4)), dict(stride=(1, 2, 3), bias=False)),
]


@pytest.mark.parametrize("name,args,kw", REPR_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(REPR_CASES)])
def test_repr_matches_torch(torch, name, args, kw):
    layer = getattr(nn, name)(*args, rng=0, **kw)
    assert repr(layer) == repr(getattr(torch.nn, name)(*args, **kw))


def test_repr_without_torch():
    layer = nn.Conv3d(4, 8, 3, stride=2, padding=1, bias=False)
    assert repr(layer) == ("Conv3d(4, 8, kernel_size=(3, 3, 3), stride=(2, 2, 2), "
                           "padding=(1, 1, 1), bias=False)")
    t = nn.ConvTranspose1d(2, 2, 3, padding=((1, 0),), padding_mode="symmetric")
    assert repr(t) == ("ConvTranspose1d(2, 2, kernel_size=(3,), stride=(1,), "
                       "padding=((1, 0),), padding_mode=symmetric)")


# ---------------------------------------------------------------------------
# devices
# ---------------------------------------------------------------------------

def _gpu_usable() -> bool:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return True
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:
        return False


def test_to_cpu_is_a_no_op():
    layer = nn.Conv1d(2, 2, 3, rng=0)
    w = layer.weight
    assert layer.to("cpu") is layer and layer.weight is w and layer.device == "cpu"
    with pytest.raises(ValueError, match="device"):
        layer.to("gpu")


@pytest.mark.skipif(_gpu_usable(), reason="a GPU (or the CUDA simulator) is usable")
def test_to_cuda_without_gpu_raises_runtime_error():
    layer = nn.Conv2d(2, 2, 3, rng=0)
    w = layer.weight
    with pytest.raises(RuntimeError):
        layer.to("cuda")
    assert layer.device == "cpu" and layer.weight is w
    with pytest.raises(RuntimeError):
        nn.Conv2d(2, 2, 3, device="cuda")


# ---------------------------------------------------------------------------
# documentation
# ---------------------------------------------------------------------------

def test_docstring_examples():
    result = doctest.testmod(nn, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 20 and result.failed == 0


def test_public_api_is_documented():
    for name in nn.__all__:
        cls = getattr(nn, name)
        assert "Examples" in cls.__doc__ and "Parameters" in cls.__doc__
        for meth in ("forward", "backward", "output_shape", "reset_parameters",
                     "parameters", "zero_grad", "state_dict", "load_state_dict", "to"):
            doc = getattr(cls, meth).__doc__
            assert doc and "Examples" in doc, f"{name}.{meth}"


# ---------------------------------------------------------------------------
# rough edges: dtype, state dicts both ways, checked assignment, namespace
# ---------------------------------------------------------------------------

def test_input_dtype_error_names_the_layer_dtype_and_the_fix():
    layer = nn.Conv3d(1, 2, 3, rng=0)              # float32
    x = np.ones((1, 1, 5, 5, 5))                    # float64
    with pytest.raises(TypeError) as info:
        layer(x)
    msg = str(info.value)
    assert "input has dtype float64" in msg and "Conv3d layer's dtype is float32" in msg
    assert "layer.to(numpy.float64)" in msg and "x.astype(numpy.float32)" in msg
    assert "weight has dtype" not in msg
    with pytest.raises(TypeError, match="ConvTranspose1d layer's dtype is float64"):
        nn.ConvTranspose1d(1, 1, 2, dtype=np.float64)(np.ones((1, 1, 4), np.float32))
    # the suggested fix works and gives the float64 result
    y = layer.to(np.float64)(x)
    assert y.dtype == np.float64 and layer.dtype == np.float64
    assert layer.weight.dtype == layer.weight_grad.dtype == layer.bias.dtype == np.float64


def test_to_dtype_converts_parameters_and_gradients():
    layer = nn.Conv2d(2, 3, 3, rng=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 6))
    layer.backward(np.ones(layer(x).shape))
    w, gw = layer.weight.copy(), layer.weight_grad.copy()
    assert layer.to("float32") is layer
    assert layer.weight.dtype == layer.weight_grad.dtype == np.float32
    assert np.array_equal(layer.weight, w.astype(np.float32))
    assert np.array_equal(layer.weight_grad, gw.astype(np.float32))
    with pytest.raises(RuntimeError, match="before forward"):   # saved input dropped
        layer.backward(np.ones((1, 3, 4, 4), np.float32))
    for bad in (None, np.int32, np.float16, "gpu", 3):
        with pytest.raises(ValueError, match="to\\(\\) takes a device"):
            layer.to(bad)
    assert layer.dtype == np.float32


def test_to_accepts_torch_dtypes(torch):
    layer = nn.Conv1d(1, 1, 3, rng=0).to(torch.float64)
    assert layer.weight.dtype == np.float64


@pytest.mark.parametrize("name, value, kind, match", [
    ("weight", np.zeros((3, 2, 3)), ValueError,
     r"weight must have shape \(3, 2, 3, 3\) for this Conv2d, got an array of "
     r"shape \(3, 2, 3\)"),
    ("weight", np.zeros((3, 2, 3, 3)), TypeError,
     r"weight has dtype float64 but the layer's dtype is float32.*layer.to"),
    ("weight", [[1.0]], TypeError, "weight must be an array"),
    ("bias", np.zeros(4, np.float32), ValueError, r"bias must have shape \(3,\)"),
], ids=["shape", "dtype", "list", "bias-shape"])
def test_assigning_a_wrong_parameter_fails_at_assignment(name, value, kind, match):
    layer = nn.Conv2d(2, 3, 3, rng=0)
    before = getattr(layer, name)
    with pytest.raises(kind, match=match):
        setattr(layer, name, value)
    assert getattr(layer, name) is before


def test_assigning_parameters():
    layer = nn.Conv2d(2, 3, 3, rng=0)
    w = np.ones((3, 2, 3, 3), np.float32)
    layer.weight = w
    assert layer.weight is w and layer.parameters()[0] is w
    layer.bias = None                      # drops the bias, as in PyTorch
    assert layer.bias is None and layer.bias_grad is None
    assert list(layer.state_dict()) == ["weight"]
    y = layer(np.ones((1, 2, 4, 4), np.float32))
    assert np.allclose(y, 18.0)
    layer.bias = np.full(3, 0.5, np.float32)
    assert np.array_equal(layer.bias_grad, np.zeros(3, np.float32))
    assert np.allclose(layer(np.ones((1, 2, 4, 4), np.float32)), 18.5)


def test_load_state_dict_missing_keys_lists_found_keys_and_prefix():
    layer = nn.Conv3d(2, 3, 3, rng=0)
    state = {"0.weight": np.ones((3, 2, 3, 3, 3), np.float32),
             "0.bias": np.full(3, 2.0, np.float32),
             "2.weight": np.zeros((1, 3, 3, 3, 3), np.float32)}
    w0 = layer.weight.copy()
    with pytest.raises(ValueError) as info:
        layer.load_state_dict(state)
    msg = str(info.value)
    assert "missing key(s) in state_dict: 'weight', 'bias'" in msg
    assert "'0.weight', '0.bias', '2.weight'" in msg and "prefix='0.'" in msg
    assert np.array_equal(layer.weight, w0)
    layer.load_state_dict(state, prefix="0.")
    assert np.array_equal(layer.weight, state["0.weight"])
    assert np.array_equal(layer.bias, state["0.bias"])
    with pytest.raises(ValueError, match=r"state_dict\['2.weight'\] has shape"):
        nn.Conv3d(2, 3, 3, bias=False).load_state_dict(state, prefix="2.")
    with pytest.raises(ValueError, match="missing key.*'5.weight'"):
        layer.load_state_dict(state, prefix="5.")
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        layer.load_state_dict([("weight", w0)])
    extra = {**state, "0.running_mean": np.zeros(3, np.float32), 7: None}
    with pytest.raises(ValueError, match=r"unexpected key\(s\) in state_dict: "
                                         r"'0.running_mean' \(this layer has "
                                         r"'0.weight', '0.bias'\)"):
        layer.load_state_dict(extra, prefix="0.")
    with pytest.raises(ValueError, match=r"unexpected key\(s\) in state_dict: 7 "):
        layer.load_state_dict({"weight": w0, "bias": layer.bias, 7: None})


def test_state_dict_prefix_and_kind_errors():
    layer = nn.Conv1d(1, 2, 3, rng=0)
    assert list(layer.state_dict(prefix="conv.")) == ["conv.weight", "conv.bias"]
    with pytest.raises(ValueError, match="kind must be 'numpy' or 'torch', got 'jax'"):
        layer.state_dict(kind="jax")
    with pytest.raises(TypeError, match="prefix must be a str"):
        layer.state_dict(prefix=0)


def test_state_dicts_travel_both_ways_with_a_sequential(torch):
    """One call each way: a torch model's layer loads into ours with a
    prefix, and ours loads into torch with ``kind='torch'``."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv3d(4, 1, 3))
    first, last = nn.Conv3d(2, 4, 3, padding=1), nn.Conv3d(4, 1, 3)
    first.load_state_dict(model.state_dict(), prefix="0.")
    last.load_state_dict(model.state_dict(), prefix="2.")
    x = np.random.default_rng(0).standard_normal((1, 2, 8, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert_close(last(np.maximum(first(x), 0)), expected)
    # and back, into a fresh model, in one call per layer
    fresh = torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv3d(4, 1, 3))
    fresh[0].load_state_dict(first.state_dict(kind="torch"))
    fresh.load_state_dict({**first.state_dict(prefix="0.", kind="torch"),
                           **last.state_dict(prefix="2.", kind="torch")})
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)


def test_namespace_offers_only_the_layers():
    assert sorted(nn.__all__) == sorted(["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d",
                                         "ConvTranspose2d", "ConvTranspose3d"])
    public = [n for n in dir(nn) if not n.startswith("_")]
    assert sorted(public) == sorted(nn.__all__)
    assert nn.np is np            # still importable by name, only not advertised


def test_layer_copies_and_pickles():
    import copy
    import pickle
    layer = nn.Conv1d(1, 2, 3, rng=0)
    layer(np.ones((1, 1, 5), np.float32))
    for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert np.array_equal(clone.weight, layer.weight)
        with pytest.raises(RuntimeError, match="before forward"):
            clone.backward(np.ones((1, 2, 3), np.float32))
        y = clone(np.ones((1, 1, 5), np.float32))
        assert clone.backward(np.ones_like(y)).shape == (1, 1, 5)
