"""Argument rules and the spec object: pure Python, no Numba.

Every public operation is described by one :class:`ConvSpec`, the *canonical
forward convolution* behind it, lifted to three spatial axes:

* ``conv*d``: the spec's ``x`` is the call's input and ``y`` its output;
* ``conv_transpose*d``: the call computes the adjoint of a convolution, so the
  spec's ``y`` is the call's input and ``x`` its output (``transposed=True``).

1-D and 2-D problems are lifted by prepending size-1 axes with kernel 1,
stride 1, dilation 1 and padding 0, so the kernels only know 3-D.

Kernels never validate: everything that can be wrong with shapes and
hyper-parameters is caught here, with a message that names the argument and
shows the bad value.

>>> spec = conv_spec(2, (1, 3, 32, 32), (8, 3, 3, 3), None, stride=2,
...                  padding="same", dilation=1, groups=1, padding_mode="zeros")
>>> spec.output_shape
(1, 8, 16, 16)
>>> spec.pad_lo, spec.pad_hi
((0, 0, 0), (0, 1, 1))
"""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

Int3 = Tuple[int, int, int]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular", "symmetric")
#: Hyper-parameters beyond this cannot describe an array that fits in memory,
#: and would overflow the kernels' 64-bit index arithmetic.
MAX_PARAM = 2 ** 48
_AXIS_NAMES = {1: ("width",), 2: ("height", "width"),
               3: ("depth", "height", "width")}


@dataclass(frozen=True)
class ConvSpec:
    """One convolution problem, lifted to 3-D (see the module docstring).

    Attributes
    ----------
    nd : int
        Spatial dimensions of the public call (1, 2 or 3).
    batched : bool
        False when the caller's arrays have no batch axis.
    transposed : bool
        True for ``conv_transpose*d``: the call maps ``y`` to ``x``.
    N, C, K, groups : int
        Batch, channels of ``x``, channels of ``y``, groups.
    x_size, y_size, kernel : Int3
        Spatial sizes of ``x`` and ``y`` and the kernel size.
    stride, dilation, pad_lo, pad_hi : Int3
        Hyper-parameters; ``pad_lo``/``pad_hi`` are the padding of ``x``.
    padding_mode : str
        One of ``PADDING_MODES``.
    output_padding : Int3
        Extra size of ``x`` beyond the minimum (transposed calls only).
    """

    nd: int
    batched: bool
    transposed: bool
    N: int
    C: int
    K: int
    groups: int
    x_size: Int3
    y_size: Int3
    kernel: Int3
    stride: Int3
    dilation: Int3
    pad_lo: Int3
    pad_hi: Int3
    padding_mode: str
    output_padding: Int3 = (0, 0, 0)

    # -- 5-D shapes of the canonical problem --------------------------------
    @property
    def x_shape(self) -> tuple:
        return (self.N, self.C) + self.x_size

    @property
    def y_shape(self) -> tuple:
        return (self.N, self.K) + self.y_size

    @property
    def w_shape(self) -> tuple:
        return (self.K, self.C // self.groups) + self.kernel

    @property
    def padded_shape(self) -> tuple:
        """Shape of ``x`` after an explicit ``pad`` step (non-zero modes)."""
        return (self.N, self.C) + tuple(
            s + lo + hi for s, lo, hi in zip(self.x_size, self.pad_lo, self.pad_hi))

    @property
    def kernel_pad_lo(self) -> Int3:
        """Implicit zero padding seen by the kernels.

        Zero padding is never materialised; the other modes pad explicitly
        first, after which the kernels see no padding at all.
        """
        return self.pad_lo if self.padding_mode == "zeros" else (0, 0, 0)

    # -- shapes as the caller sees them -------------------------------------
    def public_shape(self, shape5: tuple) -> tuple:
        """Drop the lifted axes (and the batch axis when unbatched)."""
        shape = shape5[:2] + shape5[5 - self.nd:]
        return shape if self.batched else shape[1:]

    @property
    def input_shape(self) -> tuple:
        return self.public_shape(self.y_shape if self.transposed else self.x_shape)

    @property
    def output_shape(self) -> tuple:
        return self.public_shape(self.x_shape if self.transposed else self.y_shape)

    @property
    def weight_shape(self) -> tuple:
        """The public weight shape: ``(C_out, C_in/g, k...)`` for a convolution,
        ``(C_in, C_out/g, k...)`` for a transposed one (the same array)."""
        return self.w_shape[:2] + self.kernel[3 - self.nd:]

    def lift(self, shape: tuple) -> tuple:
        """5-D view shape of a public data shape (inverse of public_shape)."""
        if not self.batched:
            shape = (1,) + tuple(shape)
        return tuple(shape[:2]) + (1,) * (3 - self.nd) + tuple(shape[2:])

    def lift_weight(self, shape: tuple) -> tuple:
        return tuple(shape[:2]) + (1,) * (3 - self.nd) + tuple(shape[2:])


# ---------------------------------------------------------------------------
# scalar and tuple arguments
# ---------------------------------------------------------------------------

def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def int_tuple(value, nd: int, name: str, minimum: int) -> tuple:
    """``value`` as an ``nd``-tuple of ints, each ``>= minimum``.

    >>> int_tuple(2, 3, "stride", 1)
    (2, 2, 2)
    >>> int_tuple((1, 2), 3, "stride", 1)
    Traceback (most recent call last):
    ...
    ValueError: stride must be an int or a tuple of 3 ints, got (1, 2)
    """
    if _is_int(value):
        values = (int(value),) * nd
    else:
        try:
            values = tuple(value)
        except TypeError:
            raise TypeError(f"{name} must be an int or a tuple of {nd} ints, "
                            f"got {value!r}") from None
        if len(values) != nd or not all(_is_int(v) for v in values):
            raise ValueError(f"{name} must be an int or a tuple of {nd} ints, "
                             f"got {value!r}")
        values = tuple(int(v) for v in values)
    if any(v < minimum for v in values):
        what = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    _check_not_huge(values, name, value)
    return values


def _check_not_huge(values, name, shown) -> None:
    if any(v > MAX_PARAM for v in values):
        raise ValueError(f"{name} is too large: {shown!r} (at most {MAX_PARAM})")


def _lift3(values: tuple, fill: int) -> Int3:
    return (fill,) * (3 - len(values)) + tuple(values)


def check_groups(groups) -> int:
    if not _is_int(groups) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    _check_not_huge([groups], "groups", groups)
    return int(groups)


def check_padding_mode(padding_mode) -> str:
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, "
                         f"got {padding_mode!r}")
    return padding_mode


def check_padding(padding, nd: int):
    """Validate ``padding``; return 'same', or per-axis (lo, hi) pairs."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding == "same":
            return "same"
        raise ValueError(f"padding must be 'same', 'valid', an int or a tuple, "
                         f"got {padding!r}")
    if _is_int(padding):
        if padding < 0:
            raise ValueError(f"padding must be non-negative, got {padding!r}")
        _check_not_huge([padding], "padding", padding)
        return ((int(padding), int(padding)),) * nd
    try:
        items = tuple(padding)
    except TypeError:
        raise TypeError(f"padding must be 'same', 'valid', an int or a tuple, "
                        f"got {padding!r}") from None
    bad = ValueError(f"padding must be an int, 'same', 'valid', a tuple of {nd} "
                     f"ints or a tuple of {nd} (low, high) pairs, got {padding!r}")
    if len(items) != nd:
        raise bad
    pairs = []
    for item in items:
        if _is_int(item):
            pairs.append((int(item), int(item)))
        elif (isinstance(item, (tuple, list)) and len(item) == 2
              and all(_is_int(v) for v in item)):
            pairs.append((int(item[0]), int(item[1])))
        else:
            raise bad
    if any(v < 0 for pair in pairs for v in pair):
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    _check_not_huge([v for pair in pairs for v in pair], "padding", padding)
    return tuple(pairs)


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple:
    """(lo, hi) of 'same' padding for one axis: output = ceil(size / stride).

    At stride 1 this is PyTorch's rule (total d*(k-1), the odd element at the
    end); at larger strides it is JAX's rule.

    >>> same_padding(10, 4, 1, 1)
    (1, 2)
    >>> same_padding(10, 3, 2, 1)
    (0, 1)
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


# ---------------------------------------------------------------------------
# shape checks shared by both specs
# ---------------------------------------------------------------------------

def _shape(shape, name: str) -> tuple:
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"{name} must be a shape (tuple of ints), got {shape!r}") from None
    if any(s < 0 for s in shape):
        raise ValueError(f"{name} must not have negative sizes, got {shape}")
    return shape


def _data_shape(shape, nd: int, op: str, name: str = "input") -> Tuple[tuple, bool]:
    shape = _shape(shape, f"{name} shape")
    if len(shape) == nd + 2:
        return shape, True
    if len(shape) == nd + 1:
        return (1,) + shape, False
    raise ValueError(f"Expected {nd + 1}D (unbatched) or {nd + 2}D (batched) "
                     f"{name} to {op}, but got {name} of size: {shape}")


def _weight_shape(shape, nd: int, op: str) -> tuple:
    shape = _shape(shape, "weight shape")
    if len(shape) != nd + 2:
        raise ValueError(f"Expected {nd + 2}D weight to {op}, but got weight of "
                         f"size: {shape}")
    if any(k < 1 for k in shape[2:]):
        raise ValueError(f"weight must have a positive kernel size, got weight "
                         f"of size {shape}")
    return shape


def _check_bias(bias_shape, channels: int) -> None:
    if bias_shape is None:
        return
    bias_shape = _shape(bias_shape, "bias shape")
    if bias_shape != (channels,):
        raise ValueError(f"bias must have shape ({channels},), got {bias_shape}")


def _check_mode_sizes(mode: str, size: tuple, lo: tuple, hi: tuple, nd: int) -> None:
    """The sizes each non-zero padding mode can pad from."""
    if mode == "zeros":
        return
    for ax, (s, a, b) in enumerate(zip(size, lo, hi)):
        p = max(a, b)
        if p == 0:
            continue
        axis = _AXIS_NAMES[nd][ax]
        if mode == "reflect" and p >= s:
            raise ValueError(f"padding_mode='reflect' needs padding < input size: "
                             f"padding ({a}, {b}) on the {axis} axis of size {s}")
        if mode in ("circular", "symmetric") and p > s:
            raise ValueError(f"padding_mode={mode!r} needs padding <= input size: "
                             f"padding ({a}, {b}) on the {axis} axis of size {s}")
        if mode == "replicate" and s == 0:
            raise ValueError(f"padding_mode='replicate' cannot pad an empty "
                             f"{axis} axis")


# ---------------------------------------------------------------------------
# the two specs
# ---------------------------------------------------------------------------

#: Specs kept per spec function (see ``_remembered``).
SPEC_CACHE = 256


_PLAIN_TYPES = (int, str, type(None))


def _plain(values: tuple) -> bool:
    """True when every value is an int (not a bool), a str, None, or a tuple
    of these or of tuples of ints (padding pairs): the values for which
    equal arguments are sure to validate alike.  ``True == 1`` and
    ``2.0 == 2``, but ``stride=True`` and ``stride=2.0`` are errors."""
    for value in values:
        if type(value) in _PLAIN_TYPES:
            continue
        if type(value) is not tuple:
            return False
        for item in value:
            if type(item) in _PLAIN_TYPES:
                continue
            if type(item) is not tuple or any(type(v) is not int for v in item):
                return False
    return True


def _remembered(spec_fn):
    """``spec_fn``, remembering the specs of the last ``SPEC_CACHE`` distinct
    calls whose arguments are all ``_plain``.

    Working out a spec costs more than a small convolution, and a loop calls
    the same op with the same arguments over and over.  A spec is immutable
    and depends on nothing but the arguments, so equal plain arguments may
    share one.  Other arguments (NumPy integers, lists) are worked out afresh
    every time, and errors are never remembered: what a call raises never
    depends on the calls before it.
    """
    remembered = functools.lru_cache(maxsize=SPEC_CACHE)(spec_fn)

    @functools.wraps(spec_fn)
    def spec(*args, **kwargs):
        if _plain(args) and _plain(tuple(kwargs.values())):
            return remembered(*args, **kwargs)
        return spec_fn(*args, **kwargs)

    spec.cache_info = remembered.cache_info
    spec.cache_clear = remembered.cache_clear
    return spec


@_remembered
def conv_spec(nd: int, input_shape: Sequence[int], weight_shape: Sequence[int],
              bias_shape: Optional[Sequence[int]], stride, padding, dilation,
              groups, padding_mode: str = "zeros") -> ConvSpec:
    """Validate a ``conv{nd}d`` call and describe it.

    >>> conv_spec(1, (2, 4, 10), (6, 2, 3), (6,), 1, 1, 1, 2).output_shape
    (2, 6, 10)
    """
    op = f"conv{nd}d"
    shape, batched = _data_shape(input_shape, nd, op)
    wshape = _weight_shape(weight_shape, nd, op)
    groups = check_groups(groups)
    padding_mode = check_padding_mode(padding_mode)
    stride = int_tuple(stride, nd, "stride", 1)
    dilation = int_tuple(dilation, nd, "dilation", 1)
    pads = check_padding(padding, nd)

    N, C = shape[:2]
    K, Cg = wshape[:2]
    kernel = wshape[2:]
    if K % groups != 0:
        raise ValueError(f"Given groups={groups}, expected weight to be divisible "
                         f"by {groups} at dimension 0, but got weight of size "
                         f"{wshape} instead")
    if Cg * groups != C:
        raise ValueError(f"Given groups={groups}, weight of size {wshape}, "
                         f"expected input {tuple(input_shape)} to have "
                         f"{Cg * groups} channels, but got {C} channels instead")
    _check_bias(bias_shape, K)

    size = shape[2:]
    if pads == "same":
        pads = tuple(same_padding(L, k, s, d)
                     for L, k, s, d in zip(size, kernel, stride, dilation))
    lo = tuple(p[0] for p in pads)
    hi = tuple(p[1] for p in pads)
    _check_mode_sizes(padding_mode, size, lo, hi, nd)

    out = []
    for L, k, s, d, a, b in zip(size, kernel, stride, dilation, lo, hi):
        span = d * (k - 1) + 1
        if L + a + b < span:
            padded = tuple(L_ + a_ + b_ for L_, a_, b_ in zip(size, lo, hi))
            dilated = tuple(d_ * (k_ - 1) + 1
                            for k_, d_ in zip(kernel, dilation))
            raise ValueError(f"Calculated padded input size per channel: {padded}. "
                             f"Kernel size (dilated): {dilated}. Kernel size can't "
                             f"be greater than actual input size")
        out.append((L + a + b - span) // s + 1)

    return ConvSpec(nd=nd, batched=batched, transposed=False, N=N, C=C, K=K,
                    groups=groups, x_size=_lift3(size, 1),
                    y_size=_lift3(tuple(out), 1), kernel=_lift3(kernel, 1),
                    stride=_lift3(stride, 1), dilation=_lift3(dilation, 1),
                    pad_lo=_lift3(lo, 0), pad_hi=_lift3(hi, 0),
                    padding_mode=padding_mode)


@_remembered
def transpose_spec(nd: int, input_shape: Sequence[int], weight_shape: Sequence[int],
                   bias_shape: Optional[Sequence[int]], stride, padding,
                   output_padding, groups, dilation, output_size=None,
                   padding_mode: str = "zeros") -> ConvSpec:
    """Validate a ``conv_transpose{nd}d`` call and describe it.

    The output size per axis is
    ``(L - 1)*stride - lo - hi + dilation*(k - 1) + output_padding + 1``;
    ``output_size`` picks ``output_padding`` instead, and ``padding='same'``
    makes the output ``L * stride``.

    >>> transpose_spec(2, (1, 4, 8, 8), (4, 2, 4, 4), None, 2, 1, 0, 1, 1).output_shape
    (1, 2, 16, 16)
    """
    op = f"conv_transpose{nd}d"
    shape, batched = _data_shape(input_shape, nd, op)
    wshape = _weight_shape(weight_shape, nd, op)
    groups = check_groups(groups)
    padding_mode = check_padding_mode(padding_mode)
    stride = int_tuple(stride, nd, "stride", 1)
    dilation = int_tuple(dilation, nd, "dilation", 1)
    opad = int_tuple(output_padding, nd, "output_padding", 0)
    pads = check_padding(padding, nd)

    N, Cin = shape[:2]
    K, Cg = wshape[:2]          # weight is (C_in, C_out/groups, k...)
    kernel = wshape[2:]
    if K != Cin:
        raise ValueError(f"Given transposed=1, weight of size {wshape}, expected "
                         f"input {tuple(input_shape)} to have {K} channels, but "
                         f"got {Cin} channels instead")
    if K % groups != 0:
        raise ValueError(f"Given groups={groups}, expected weight to be divisible "
                         f"by {groups} at dimension 0, but got weight of size "
                         f"{wshape} instead")
    Cout = Cg * groups
    _check_bias(bias_shape, Cout)
    size_in = shape[2:]

    if pads == "same":
        if any(opad) or output_size is not None:
            raise ValueError("padding='same' fixes the output size to input size "
                             "x stride; do not combine it with output_padding or "
                             "output_size")
        lo, hi, opad = [], [], []
        for k, s, d in zip(kernel, stride, dilation):
            total = max(d * (k - 1) + 1 - s, 0)
            lo.append(total // 2)
            hi.append(total - total // 2)
            opad.append(s + total - d * (k - 1) - 1)
        lo, hi, opad = tuple(lo), tuple(hi), tuple(opad)
    else:
        lo = tuple(p[0] for p in pads)
        hi = tuple(p[1] for p in pads)

    base = tuple((L - 1) * s - a - b + d * (k - 1) + 1
                 for L, s, a, b, d, k in zip(size_in, stride, lo, hi, dilation, kernel))
    limit = tuple(max(s, d) for s, d in zip(stride, dilation))

    if output_size is not None:
        opad = _output_padding_from_size(output_size, nd, batched, N, Cout,
                                         base, limit)
    elif any(p >= m for p, m in zip(opad, limit)):
        raise ValueError(f"output_padding={output_padding!r} must be smaller than "
                         f"max(stride, dilation)={limit} on every axis")

    size_out = tuple(b + p for b, p in zip(base, opad))
    if any(L < 1 for L in size_out):
        raise ValueError(f"{op}: the output size {size_out} is not positive for "
                         f"input of size {tuple(input_shape)}, weight of size "
                         f"{wshape}, stride={stride}, padding={padding!r}, "
                         f"dilation={dilation}")
    _check_mode_sizes(padding_mode, size_out, lo, hi, nd)

    return ConvSpec(nd=nd, batched=batched, transposed=True, N=N, C=Cout, K=K,
                    groups=groups, x_size=_lift3(size_out, 1),
                    y_size=_lift3(size_in, 1), kernel=_lift3(kernel, 1),
                    stride=_lift3(stride, 1), dilation=_lift3(dilation, 1),
                    pad_lo=_lift3(lo, 0), pad_hi=_lift3(hi, 0),
                    padding_mode=padding_mode, output_padding=_lift3(opad, 0))


def _output_padding_from_size(output_size, nd, batched, N, Cout, base, limit):
    try:
        sizes = tuple(output_size)
        if not all(_is_int(s) for s in sizes):
            raise TypeError
    except TypeError:
        raise TypeError(f"output_size must be a tuple of ints, got "
                        f"{output_size!r}") from None
    full = nd + 2 if batched else nd + 1
    if len(sizes) == full:
        lead = (N, Cout) if batched else (Cout,)
        if tuple(sizes[:len(lead)]) != lead:
            raise ValueError(f"output_size={tuple(sizes)} names batch/channel "
                             f"sizes {tuple(sizes[:len(lead)])}, expected {lead}")
        sizes = sizes[len(lead):]
    elif len(sizes) != nd:
        raise ValueError(f"output_size must have {nd} (spatial) or {full} "
                         f"elements, got {tuple(output_size)}")
    opad = []
    for ax, (s, b, m) in enumerate(zip(sizes, base, limit)):
        if not b <= s < b + m:
            raise ValueError(
                f"output_size={tuple(output_size)} is out of range on the "
                f"{_AXIS_NAMES[nd][ax]} axis: requested {s}, valid sizes are "
                f"{b} to {b + m - 1}")
        opad.append(s - b)
    return tuple(opad)


def check_grad_output(spec: ConvSpec, shape, name: str = "grad_output") -> None:
    """``grad_output`` must have the shape of the call's output."""
    if tuple(shape) != spec.output_shape:
        raise ValueError(f"{name} has shape {tuple(shape)}, expected "
                         f"{spec.output_shape} (the output shape of this call)")
