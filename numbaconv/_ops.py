"""The three primitives composed with the padding step, for any device.

These functions take a :class:`~numbaconv._shapes.ConvSpec`, a backend and
5-D arrays already on that backend's device; they are what the public layer
calls once arguments are checked and arrays placed.  Non-zero padding modes
go to the forward primitive, which folds them into its kernel or pads
first; elsewhere they are an explicit ``pad`` before the primitive, and
their gradient the adjoint ``pad_backward`` after it; zero padding stays
implicit in the kernels.
"""

from __future__ import annotations

from ._shapes import ConvSpec


def explicitly_padded(be, x5, pad_lo, out_size, taps, stride, dilation, mode, cval=0.0):
    """``x5`` padded by ``mode`` (``"constant"``: with ``cval``) so that every
    tap of every output of size ``out_size`` reads inside it: what a
    backend's ``forward`` runs on where its kernel does not fold the mode
    in (its padding then becomes zero)."""
    assert min(pad_lo) >= 0, "explicit padding takes no negative padding"
    hi = tuple(max(0, (o - 1) * s + d * (k - 1) + 1 - lo - size)
               for o, k, s, d, lo, size in zip(out_size, taps, stride, dilation, pad_lo,
                                               x5.shape[2:]))
    xp = be.empty(tuple(x5.shape[:2]) + tuple(size + lo + h for size, lo, h in
                                               zip(x5.shape[2:], pad_lo, hi)), x5.dtype)
    if mode == "constant":
        be.pad_constant(x5, tuple(pad_lo), hi, cval, xp)
    else:
        be.pad(x5, tuple(pad_lo), hi, mode, xp)
    return xp


def _padded_x(be, spec: ConvSpec, x5):
    """``x`` as the kernels must see it: explicitly padded for non-zero modes."""
    if spec.padding_mode == "zeros":
        return x5
    xp = be.empty(spec.padded_shape, x5.dtype)
    be.pad(x5, spec.pad_lo, spec.pad_hi, spec.padding_mode, xp)
    return xp


def conv_forward(be, spec: ConvSpec, x5, w5, b, y5) -> None:
    """y5 = conv(x5, w5) + b, with the spec's padding mode."""
    be.forward(x5, w5, b, spec.stride, spec.dilation, spec.pad_lo, spec.groups, y5,
               spec.padding_mode)


def conv_input(be, spec: ConvSpec, gy5, w5, gx5, b=None) -> None:
    """gx5 = adjoint of ``conv_forward`` in x applied to gy5, plus ``b`` per
    channel when given (the bias of a transposed convolution)."""
    if spec.padding_mode == "zeros":
        be.backward_data(gy5, w5, spec.stride, spec.dilation, spec.pad_lo,
                         spec.groups, gx5, b)
        return
    gp = be.empty(spec.padded_shape, gy5.dtype)
    be.backward_data(gy5, w5, spec.stride, spec.dilation, (0, 0, 0),
                     spec.groups, gp)
    be.pad_backward(gp, spec.pad_lo, spec.pad_hi, spec.padding_mode, gx5)
    if b is not None:
        be.add_bias(gx5, b)


def conv_weight(be, spec: ConvSpec, x5, gy5, gw5) -> None:
    """gw5 = gradient of ``conv_forward`` in w for output gradient gy5."""
    be.backward_weight(_padded_x(be, spec, x5), gy5, spec.stride,
                       spec.dilation, spec.kernel_pad_lo, spec.groups, gw5)
