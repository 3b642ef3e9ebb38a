"""The contract every device backend implements.

The public layer (``functional``, ``grad``, ``nn``) reduces every operation to
the canonical 3-D problem and calls the methods below; a backend only moves
numbers.  Everything a method receives has already been validated:

* data arrays are 5-D ``(N, C, D, H, W)``, weights ``(K, C // groups, KD, KH, KW)``,
  bias ``(K,)``; all C-contiguous, all of one floating dtype (float32 or float64),
  all on the backend's device;
* ``stride``, ``dilation``, ``pad_lo``, ``lo`` and ``hi`` are tuples of three
  non-negative Python ints (``stride`` and ``dilation`` positive);
* ``out`` / ``gx`` / ``gw`` / ``gb`` are fully overwritten (they may hold garbage
  on entry) and never alias an input.

Let ``G = groups``, ``Cg = C // G``, ``Kg = K // G``; output channel ``k`` belongs
to group ``g = k // Kg`` and reads input channels ``g*Cg .. g*Cg + Cg - 1``.
For a spatial output index ``o`` and kernel tap ``t`` (per axis) the input
index read is ``i = o*stride + t*dilation - pad_lo``; reads outside
``[0, size)`` are zeros (implicit zero padding; the high-side padding is
implied by the output shape).

``forward(x, w, b, stride, dilation, pad_lo, groups, out, mode="zeros", cval=0.0)``
    ``out[n, k, o] = b[k] + sum_{c', t} w[k, c', t] * x[n, g*Cg + c', i(o, t)]``
    with ``b`` = None meaning no bias.  ``mode`` says what a read outside
    ``[0, size)`` gives: ``"zeros"`` zero, ``"constant"`` ``cval``, a
    ``MODES`` name ``x`` at the mode's index map (``padding_index``).  A
    backend may fold the mode into its kernel or pad explicitly first
    (``_ops.explicitly_padded``); the result is the same.

``backward_data(gy, w, stride, dilation, pad_lo, groups, gx, b=None)``
    The adjoint of ``forward`` in ``x`` (gather form: every ``gx`` element is
    written by exactly one thread):
    ``gx[n, c, i] = sum over k in c's group, taps t and outputs o with
    i(o, t) == i and 0 <= o < gy.shape[2:] of w[k, c - g*Cg, t] * gy[n, k, o]``,
    plus ``b[c]`` when ``b`` is given (the bias of a transposed convolution,
    added to each sum as it is stored where the kernel can).

``backward_weight(x, gy, stride, dilation, pad_lo, groups, gw)``
    ``gw[k, c', t] = sum_{n, o} gy[n, k, o] * x[n, g*Cg + c', i(o, t)]``.

``bias_grad(gy, gb)``
    ``gb[k] = sum_{n, o} gy[n, k, o]``.

``add_bias(y, b)``
    ``y[n, k, o] += b[k]`` in place (the bias of a transposed convolution).

``pad(x, lo, hi, mode, out)``
    ``out`` has spatial size ``size + lo + hi`` per axis;
    ``out[n, c, p] = x[n, c, src(p - lo)]`` with ``src`` the index map of
    ``mode`` in ``MODES`` (see ``padding_index``).

``pad_constant(x, lo, hi, value, out)``
    As ``pad``, with every padded position outside ``x`` set to ``value``.

``pad_backward(gp, lo, hi, mode, gx)``
    The adjoint of ``pad``: ``gx[n, c, i] = sum_{p : src(p - lo) == i} gp[n, c, p]``.

Reductions (``backward_weight``, ``bias_grad``, ``pad_backward``) must sum in
an order that does not depend on the number of threads or on the GPU
schedule, so results are bit-identical run to run.

Array management: ``empty(shape, dtype)`` allocates on the device.
"""

from __future__ import annotations

from typing import Any, Protocol, Tuple

Int3 = Tuple[int, int, int]

#: Non-zero padding modes and the integer codes the kernels use.
MODES = {"reflect": 1, "replicate": 2, "circular": 3, "symmetric": 4}
#: What ``forward``'s ``mode`` becomes in the kernels that fold it in: zeros,
#: the index maps of ``MODES``, and a constant value.
EDGE_CODES = {"zeros": 0, **MODES, "constant": 5}


def edge_mode(mode: str, cval: float) -> str:
    """``forward``'s ``mode`` with a constant of zero named ``'zeros'``: the
    kernels then skip the padding's taps instead of reading the constant.

    >>> edge_mode("constant", 0.0), edge_mode("constant", 2.0), edge_mode("reflect", 0.0)
    ('zeros', 'constant', 'reflect')
    """
    return "zeros" if mode == "constant" and cval == 0.0 else mode


def padding_index(j: int, size: int, mode: int) -> int:
    """Source index of the padded position ``j`` (may be < 0 or >= size).

    A pure-Python statement of the index maps that the kernels implement;
    the kernels carry their own compiled copy of it.

    >>> [padding_index(j, 3, MODES["reflect"]) for j in range(-2, 5)]
    [2, 1, 0, 1, 2, 1, 0]
    >>> [padding_index(j, 3, MODES["symmetric"]) for j in range(-2, 5)]
    [1, 0, 0, 1, 2, 2, 1]
    """
    if 0 <= j < size:
        return j
    if mode == 2:  # replicate
        return 0 if j < 0 else size - 1
    if mode == 3:  # circular
        return j % size
    if mode == 1:  # reflect (edge not repeated), period 2*(size-1)
        if size == 1:
            return 0
        period = 2 * (size - 1)
        j = j % period
        return j if j < size else period - j
    # symmetric (edge repeated), period 2*size
    period = 2 * size
    j = j % period
    return j if j < size else period - 1 - j


class Backend(Protocol):
    """What ``functional`` needs from a device (see the module docstring)."""

    name: str

    def empty(self, shape: tuple, dtype: Any) -> Any: ...

    def forward(self, x, w, b, stride: Int3, dilation: Int3, pad_lo: Int3,
                groups: int, out, mode: str = "zeros", cval: float = 0.0) -> None: ...

    def backward_data(self, gy, w, stride: Int3, dilation: Int3, pad_lo: Int3,
                      groups: int, gx, b=None) -> None: ...

    def backward_weight(self, x, gy, stride: Int3, dilation: Int3,
                        pad_lo: Int3, groups: int, gw) -> None: ...

    def bias_grad(self, gy, gb) -> None: ...

    def add_bias(self, y, b) -> None: ...

    def pad(self, x, lo: Int3, hi: Int3, mode: str, out) -> None: ...

    def pad_constant(self, x, lo: Int3, hi: Int3, value: float, out) -> None: ...

    def pad_backward(self, gp, lo: Int3, hi: Int3, mode: str, gx) -> None: ...
