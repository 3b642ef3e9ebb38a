"""Reference implementations of convolution, written for clarity, not speed.

Everything here works in float64 on NumPy arrays of layout ``(N, C, *spatial)``
with one, two or three spatial axes; weights are ``(K, C // groups, *kernel)``
for a convolution and ``(C_in, C_out // groups, *kernel)`` for a transposed
convolution.  The loops run over kernel taps; for one tap the contribution to
every output position is a strided slice of the (padded) input, so the batch,
channel and output-position axes are handled by NumPy.

Two layers:

* canonical primitives, with explicit per-axis tuples and zero padding given
  as ``pad_lo`` / ``pad_hi``: :func:`conv_forward`, :func:`conv_backward_data`,
  :func:`conv_backward_weight`, :func:`pad` and :func:`pad_backward`;
* public-level helpers with the argument conventions of ``numbaconv``
  (ints or tuples, ``'same'`` / ``'valid'``, ``(lo, hi)`` pairs, padding
  modes, unbatched input): :func:`conv`, :func:`conv_transpose`,
  :func:`conv_input`, :func:`conv_weight` and :func:`conv_bias`.

Index convention (per spatial axis): output position ``o`` and kernel tap ``t``
read the input at ``i = o * stride + t * dilation - pad_lo``; reads outside the
input are zeros.  That is cross-correlation, as in PyTorch.

The transposed convolution (:func:`conv_transpose`) is written in scatter form
and the data gradient (:func:`conv_backward_data`) in gather form, so that the
two are independent statements of the same adjoint.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

#: numbaconv padding mode -> ``np.pad`` mode.
NP_PAD_MODES = {
    "reflect": "reflect",
    "replicate": "edge",
    "circular": "wrap",
    "symmetric": "symmetric",
}

#: numbaconv padding mode -> ``scipy.ndimage`` mode.
SCIPY_MODES = {
    "zeros": "constant",
    "reflect": "mirror",
    "replicate": "nearest",
    "circular": "wrap",
    "symmetric": "reflect",
}

#: numbaconv padding mode -> ``torch.nn.functional.pad`` mode (no symmetric).
TORCH_PAD_MODES = {
    "reflect": "reflect",
    "replicate": "replicate",
    "circular": "circular",
}


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------

def _tup(value, nd, name="argument"):
    """Expand an int to an ``nd``-tuple; check a tuple's length."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * nd
    value = tuple(int(v) for v in value)
    if len(value) != nd:
        raise ValueError(f"{name} must have {nd} entries, got {value}")
    return value


def conv_output_shape(size, k, stride, dilation, pad_lo, pad_hi):
    """Spatial output size of a convolution, per axis (PyTorch's formula)."""
    return tuple(
        (L + lo + hi - d * (kk - 1) - 1) // s + 1
        for L, kk, s, d, lo, hi in zip(size, k, stride, dilation, pad_lo, pad_hi)
    )


def transpose_output_shape(size, k, stride, dilation, pad_lo, pad_hi,
                           output_padding):
    """Spatial output size of a transposed convolution, per axis."""
    return tuple(
        (L - 1) * s - lo - hi + d * (kk - 1) + op + 1
        for L, kk, s, d, lo, hi, op in zip(size, k, stride, dilation, pad_lo,
                                           pad_hi, output_padding)
    )


def resolve_padding(padding, size, k, stride, dilation):
    """Per-axis ``(lo, hi)`` zero-padding amounts of a convolution.

    ``padding`` is an int (same on both sides of every axis), a tuple of ints
    (one per axis, both sides), a tuple of ``(lo, hi)`` pairs, ``'valid'``
    (no padding) or ``'same'``.  ``'same'`` follows JAX: the output has
    ``ceil(L / stride)`` positions and the padding needed for that,
    ``max((out - 1) * stride + dilation * (k - 1) + 1 - L, 0)``, is split with
    the extra element at the end.  At stride 1 that is PyTorch's rule,
    ``total = dilation * (k - 1)``.
    """
    nd = len(size)
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * nd, (0,) * nd
        if padding == "same":
            lo, hi = [], []
            for L, kk, s, d in zip(size, k, stride, dilation):
                out = -(-L // s)
                total = max((out - 1) * s + d * (kk - 1) + 1 - L, 0)
                lo.append(total // 2)
                hi.append(total - total // 2)
            return tuple(lo), tuple(hi)
        raise ValueError(f"unknown padding {padding!r}")
    if isinstance(padding, (int, np.integer)):
        return (int(padding),) * nd, (int(padding),) * nd
    padding = tuple(padding)
    if len(padding) != nd:
        raise ValueError(f"padding must have {nd} entries, got {padding}")
    lo, hi = [], []
    for p in padding:
        if isinstance(p, (int, np.integer)):
            lo.append(int(p))
            hi.append(int(p))
        else:
            a, b = p
            lo.append(int(a))
            hi.append(int(b))
    return tuple(lo), tuple(hi)


def _tap_slices(tap, out_shape, stride, dilation):
    """For one kernel tap, the slices of the padded input read by all outputs."""
    return tuple(
        slice(t * d, t * d + s * (o - 1) + 1, s)
        for t, o, s, d in zip(tap, out_shape, stride, dilation)
    )


# --------------------------------------------------------------------------
# canonical primitives
# --------------------------------------------------------------------------

def conv_forward(x, w, b, stride, dilation, pad_lo, pad_hi, groups):
    """Cross-correlation with stride, dilation, groups and zero padding.

    Parameters
    ----------
    x : array (N, C, *spatial)
    w : array (K, C // groups, *kernel)
    b : array (K,) or None
    stride, dilation, pad_lo, pad_hi : tuples, one int per spatial axis
    groups : int

    Returns
    -------
    y : float64 array (N, K, *out) with
        ``y[n, k, o] = b[k] + sum_{c', t} w[k, c', t] * xpad[n, g*Cg + c', o*s + t*d]``
        where ``g = k // (K // groups)``, ``Cg = C // groups`` and ``xpad`` is
        ``x`` padded with ``pad_lo`` / ``pad_hi`` zeros per axis.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    N, C = x.shape[:2]
    K, Cg = w.shape[:2]
    ksize = w.shape[2:]
    nd = len(ksize)
    assert C == Cg * groups and K % groups == 0
    Kg = K // groups
    widths = [(0, 0), (0, 0)] + list(zip(pad_lo, pad_hi))
    xp = np.pad(x, widths, mode="constant")
    out = conv_output_shape(x.shape[2:], ksize, stride, dilation, pad_lo, pad_hi)
    y = np.zeros((N, K) + out)
    for g in range(groups):
        xg = xp[:, g * Cg:(g + 1) * Cg]            # (N, Cg, *padded)
        wg = w[g * Kg:(g + 1) * Kg]                # (Kg, Cg, *kernel)
        for tap in itertools.product(*(range(kk) for kk in ksize)):
            window = xg[(slice(None), slice(None)) + _tap_slices(tap, out, stride, dilation)]
            wt = wg[(slice(None), slice(None)) + tap]   # (Kg, Cg)
            # y[n, k, o] += sum_c w[k, c, t] * x[n, c, o*s + t*d]
            y[:, g * Kg:(g + 1) * Kg] += np.tensordot(window, wt, axes=([1], [1])).transpose(
                (0, nd + 1) + tuple(range(1, nd + 1)))
    if b is not None:
        y += np.asarray(b, dtype=np.float64).reshape((1, K) + (1,) * nd)
    return y


def conv_backward_data(gy, w, x_shape, stride, dilation, pad_lo, groups):
    """Gradient of :func:`conv_forward` with respect to ``x`` (gather form).

    Every input position ``i`` collects, for each tap ``t``, the output
    ``o = (i + pad_lo - t*d) / s`` when that is an integer inside the output:
    ``gx[n, c, i] = sum_{k in group(c), t} w[k, c - g*Cg, t] * gy[n, k, o(i, t)]``.
    The high-side padding is implied by ``gy``'s shape.
    """
    gy = np.asarray(gy, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    N, K = gy.shape[:2]
    out = gy.shape[2:]
    Kg, Cg = K // groups, w.shape[1]
    ksize = w.shape[2:]
    size = tuple(x_shape[2:])
    gx = np.zeros((N, Cg * groups) + size)
    for tap in itertools.product(*(range(kk) for kk in ksize)):
        # per axis: the input positions this tap reaches and the outputs they came from
        rows_i, rows_o = [], []
        for i_size, o_size, t, s, d, lo in zip(size, out, tap, stride, dilation, pad_lo):
            i = np.arange(i_size)
            num = i + lo - t * d
            ok = (num % s == 0) & (num >= 0) & (num // s < o_size)
            rows_i.append(i[ok])
            rows_o.append(num[ok] // s)
        if any(len(r) == 0 for r in rows_i):
            continue
        ix_i = np.ix_(*rows_i)
        ix_o = np.ix_(*rows_o)
        for g in range(groups):
            gyg = gy[:, g * Kg:(g + 1) * Kg][(slice(None), slice(None)) + ix_o]   # (N, Kg, *sel)
            wt = w[g * Kg:(g + 1) * Kg][(slice(None), slice(None)) + tap]       # (Kg, Cg)
            contrib = np.tensordot(gyg, wt, axes=([1], [0]))                    # (N, *sel, Cg)
            contrib = np.moveaxis(contrib, -1, 1)
            view = gx[:, g * Cg:(g + 1) * Cg]
            view[(slice(None), slice(None)) + ix_i] += contrib
    return gx


def conv_backward_weight(x, gy, w_shape, stride, dilation, pad_lo, groups):
    """Gradient of :func:`conv_forward` with respect to ``w``.

    ``gw[k, c', t] = sum_{n, o} gy[n, k, o] * xpad[n, g*Cg + c', o*s + t*d]``;
    the high-side padding is whatever the window reaches (zeros).
    """
    x = np.asarray(x, dtype=np.float64)
    gy = np.asarray(gy, dtype=np.float64)
    K, Cg = w_shape[:2]
    ksize = tuple(w_shape[2:])
    nd = len(ksize)
    Kg = K // groups
    out = gy.shape[2:]
    # pad enough zeros on the high side for every window
    hi = tuple(max((o - 1) * s + d * (kk - 1) + 1 - (L + lo), 0)
               for o, s, d, kk, L, lo in zip(out, stride, dilation, ksize, x.shape[2:], pad_lo))
    xp = np.pad(x, [(0, 0), (0, 0)] + list(zip(pad_lo, hi)))
    gw = np.zeros((K, Cg) + ksize)
    sp_axes = list(range(2, 2 + nd))
    for g in range(groups):
        xg = xp[:, g * Cg:(g + 1) * Cg]
        gyg = gy[:, g * Kg:(g + 1) * Kg]
        for tap in itertools.product(*(range(kk) for kk in ksize)):
            window = xg[(slice(None), slice(None)) + _tap_slices(tap, out, stride, dilation)]
            # sum over n and every output position
            gw[(slice(g * Kg, (g + 1) * Kg), slice(None)) + tap] = np.tensordot(
                gyg, window, axes=([0] + sp_axes, [0] + sp_axes))
    return gw


def pad(x, lo, hi, mode):
    """Pad the spatial axes of ``x`` (``(N, C, *spatial)``) by ``lo``/``hi``.

    ``mode`` is a numbaconv name ('zeros', 'reflect', 'replicate', 'circular',
    'symmetric'), mapped to ``np.pad``'s 'constant', 'reflect', 'edge', 'wrap'
    and 'symmetric'.  Works for any dtype (integer index arrays included).
    """
    x = np.asarray(x)
    nsp = len(lo)
    widths = [(0, 0)] * (x.ndim - nsp) + list(zip(lo, hi))
    if mode == "zeros":
        return np.pad(x, widths, mode="constant")
    return np.pad(x, widths, mode=NP_PAD_MODES[mode])


def pad_backward(gp, lo, hi, mode, x_shape):
    """Adjoint of :func:`pad`: fold the halo's gradient back into the interior.

    Built independently of any index formula: pad an array holding each
    element's own flat index, then scatter-add ``gp`` to the indices it holds.
    For 'zeros' the halo is dropped.
    """
    gp = np.asarray(gp, dtype=np.float64)
    x_shape = tuple(x_shape)
    nsp = len(lo)
    lead, size = x_shape[:-nsp], x_shape[-nsp:]
    n_in = math.prod(size)
    index = np.arange(n_in).reshape(size)
    if mode == "zeros":
        index = np.pad(index, list(zip(lo, hi)), mode="constant", constant_values=-1)
    else:
        index = np.pad(index, list(zip(lo, hi)), mode=NP_PAD_MODES[mode])
    index = index.ravel()
    keep = index >= 0
    gp_flat = gp.reshape(lead + (-1,))
    gp_flat = np.moveaxis(gp_flat, -1, 0)[keep]              # (P, *lead)
    gx = np.zeros((n_in,) + lead)
    np.add.at(gx, index[keep], gp_flat)
    return np.moveaxis(gx, 0, -1).reshape(x_shape)


# --------------------------------------------------------------------------
# public-level helpers (numbaconv argument conventions)
# --------------------------------------------------------------------------

def _batched(x, nd):
    """Add the batch axis to an unbatched input; return (x, was_unbatched)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == nd + 1:
        return x[None], True
    assert x.ndim == nd + 2, (x.shape, nd)
    return x, False


def conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1,
         padding_mode="zeros"):
    """``numbaconv.conv{nd}d`` in float64, ``nd = w.ndim - 2``.

    Non-zero padding modes pad explicitly (:func:`pad`) and then convolve
    without padding; 'zeros' passes the padding to :func:`conv_forward`.
    """
    w = np.asarray(w, dtype=np.float64)
    nd = w.ndim - 2
    x, unbatched = _batched(x, nd)
    stride = _tup(stride, nd, "stride")
    dilation = _tup(dilation, nd, "dilation")
    lo, hi = resolve_padding(padding, x.shape[2:], w.shape[2:], stride, dilation)
    if padding_mode == "zeros":
        y = conv_forward(x, w, b, stride, dilation, lo, hi, groups)
    else:
        xp = pad(x, lo, hi, padding_mode)
        y = conv_forward(xp, w, b, stride, dilation, (0,) * nd, (0,) * nd, groups)
    return y[0] if unbatched else y


def conv_input(x_shape, w, gy, stride=1, padding=0, dilation=1, groups=1,
               padding_mode="zeros"):
    """Gradient of :func:`conv` with respect to its input of shape ``x_shape``.

    For non-zero modes: the data gradient of the unpadded convolution of the
    padded input, folded back by :func:`pad_backward`.
    """
    w = np.asarray(w, dtype=np.float64)
    nd = w.ndim - 2
    x_shape = tuple(x_shape)
    gy, unbatched = _batched(gy, nd)
    if unbatched:
        x_shape = (1,) + x_shape
    stride = _tup(stride, nd, "stride")
    dilation = _tup(dilation, nd, "dilation")
    lo, hi = resolve_padding(padding, x_shape[2:], w.shape[2:], stride, dilation)
    if padding_mode == "zeros":
        gx = conv_backward_data(gy, w, x_shape, stride, dilation, lo, groups)
    else:
        padded = x_shape[:2] + tuple(L + a + c for L, a, c in zip(x_shape[2:], lo, hi))
        gp = conv_backward_data(gy, w, padded, stride, dilation, (0,) * nd, groups)
        gx = pad_backward(gp, lo, hi, padding_mode, x_shape)
    return gx[0] if unbatched else gx


def conv_weight(x, w_shape, gy, stride=1, padding=0, dilation=1, groups=1,
                padding_mode="zeros"):
    """Gradient of :func:`conv` with respect to its weight of shape ``w_shape``."""
    nd = len(w_shape) - 2
    x, unbatched = _batched(x, nd)
    gy, _ = _batched(gy, nd)
    stride = _tup(stride, nd, "stride")
    dilation = _tup(dilation, nd, "dilation")
    lo, hi = resolve_padding(padding, x.shape[2:], w_shape[2:], stride, dilation)
    if padding_mode == "zeros":
        return conv_backward_weight(x, gy, tuple(w_shape), stride, dilation, lo, groups)
    xp = pad(x, lo, hi, padding_mode)
    return conv_backward_weight(xp, gy, tuple(w_shape), stride, dilation, (0,) * nd, groups)


def conv_bias(gy, nd):
    """Gradient of a convolution with respect to its bias: sum over all but C."""
    gy, _ = _batched(gy, nd)
    return gy.sum(axis=(0,) + tuple(range(2, gy.ndim)))


def transpose_padding(padding, size, k, stride, dilation):
    """Per-axis ``(lo, hi)`` cropping and output_padding of a transposed conv.

    Ints, tuples and ``(lo, hi)`` pairs as in :func:`resolve_padding`.
    ``'same'`` means output = input * stride: the transposed convolution is the
    adjoint of the ``'same'`` convolution of an input of size ``L * stride``,
    so it crops the same ``(lo, hi)`` as that convolution pads, and the
    remainder up to ``L * stride`` is output_padding.  Returns
    ``(lo, hi, output_padding)`` (output_padding None unless 'same').
    """
    nd = len(size)
    if padding == "same":
        big = tuple(L * s for L, s in zip(size, stride))
        lo, hi = resolve_padding("same", big, k, stride, dilation)
        full = transpose_output_shape(size, k, stride, dilation, lo, hi, (0,) * nd)
        op = tuple(B - f for B, f in zip(big, full))
        return lo, hi, op
    lo, hi = resolve_padding(padding, size, k, stride, dilation)
    return lo, hi, None


def conv_transpose(x, w, b=None, stride=1, padding=0, output_padding=0,
                   groups=1, dilation=1):
    """``numbaconv.conv_transpose{nd}d`` (zero padding) in float64, scatter form.

    ``w`` has shape ``(C_in, C_out // groups, *kernel)``.  Every input element
    ``x[n, c, i]`` is spread over the full output at ``i*s + t*d`` with
    weight ``w[c, k', t]``; the full output (plus ``output_padding`` zeros
    at the end) is then cropped by ``lo`` at the start, to the size
    ``(L-1)*s - lo - hi + d*(k-1) + output_padding + 1``.
    """
    w = np.asarray(w, dtype=np.float64)
    nd = w.ndim - 2
    x, unbatched = _batched(x, nd)
    N, C = x.shape[:2]
    Cw, Kg = w.shape[:2]
    ksize = w.shape[2:]
    assert C == Cw and C % groups == 0
    Cg = C // groups
    K = Kg * groups
    stride = _tup(stride, nd, "stride")
    dilation = _tup(dilation, nd, "dilation")
    size = x.shape[2:]
    lo, hi, op_same = transpose_padding(padding, size, ksize, stride, dilation)
    op = op_same if op_same is not None else _tup(output_padding, nd, "output_padding")
    full = tuple((L - 1) * s + d * (kk - 1) + 1 + p
                 for L, s, d, kk, p in zip(size, stride, dilation, ksize, op))
    buf = np.zeros((N, K) + full)
    for g in range(groups):
        xg = x[:, g * Cg:(g + 1) * Cg]                        # (N, Cg, *size)
        wg = w[g * Cg:(g + 1) * Cg]                           # (Cg, Kg, *kernel)
        for tap in itertools.product(*(range(kk) for kk in ksize)):
            wt = wg[(slice(None), slice(None)) + tap]        # (Cg, Kg)
            contrib = np.moveaxis(np.tensordot(xg, wt, axes=([1], [0])), -1, 1)
            dst = _tap_slices(tap, size, stride, dilation)
            buf[(slice(None), slice(g * Kg, (g + 1) * Kg)) + dst] += contrib
    out = transpose_output_shape(size, ksize, stride, dilation, lo, hi, op)
    y = buf[(slice(None), slice(None)) + tuple(slice(a, a + o) for a, o in zip(lo, out))]
    y = np.ascontiguousarray(y)
    if b is not None:
        y += np.asarray(b, dtype=np.float64).reshape((1, K) + (1,) * nd)
    return y[0] if unbatched else y
