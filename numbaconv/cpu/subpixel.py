"""CPU ``backward_data`` at stride > 1 for many channels: every phase in one convolution.

This is the transposed convolution's main path (and the input gradient of a
strided convolution).  Along an axis with stride ``s``, dilation 1 and a
kernel of ``T = s*n`` taps, write tap ``t = s*j + m``.  The adjoint sends
output ``o`` under tap ``t`` to input ``i = s*o + t - p = s*(o + j) + m - p``,
so with ``u = o + j``:

    gx[s*u + m - p] = sum over j < n of gy[u - j] * w[s*j + m]

For each *phase* ``m`` this is a correlation of ``gy`` over the window
``gy[u-n+1 .. u]`` with ``n`` taps, and the window is the same for all ``s``
phases.  So the phases become ``s`` times more output channels ("sub-pixel"
channels) of one stride-1 convolution of ``gy`` (zero-padded by ``n - 1``:
every window), run by the broadcast forward kernel (``broadcast.py``), which
writes each sub-pixel channel straight to its place in the strided grid of
``gx``.  Compared with running each phase as a convolution of its own,
``gy`` is tiled once instead of once per phase, there is no per-phase
buffer and no scatter, and each tile feeds ``s_d*s_h*s_w`` times more
multiply-adds.

Axes with stride 1 have one phase and keep their dilation.  Every element of
``gx`` in ``[0, s*U - p)`` (``U`` windows per axis) has exactly one ``(u, m)``
and is written once; the rest, past the last window, no tap reaches: they
are set to zero.  Each sum runs over the taps in a fixed order, so results
do not depend on the thread count.
"""

import functools

import numpy as np
from numba import get_num_threads

from .broadcast import BROADCAST_MIN_CHANNELS, blocking, broadcast_weight, forward_broadcast


#: Fewest reduction terms per width tap of a sub-pixel output
#: (``Kg * n_d * n_h``) for this path: below it, storing a register block
#: costs more than its sums.
MIN_REDUCTION = 16


def subpixel_taps(w_shape, stride, dilation, groups):
    """Taps per phase ``(n_d, n_h, n_w)`` when this path applies, else None.

    It needs a stride above 1 somewhere, and along each strided axis dilation
    1 and a kernel size divisible by the stride (so that every phase has the
    same taps and no zero taps are added: a zero tap would turn an inf in
    ``gy`` into NaN where the reference has no term).  Fewer sub-pixel
    channels than a register block holds, or a short reduction, stay on the
    per-phase path.
    """
    K, Cg = w_shape[:2]
    if all(s == 1 for s in stride):
        return None
    if any(s > 1 and (d != 1 or T % s) for s, d, T in zip(stride, dilation, w_shape[2:])):
        return None
    taps = tuple(T // s for s, T in zip(stride, w_shape[2:]))
    phases = stride[0] * stride[1] * stride[2]
    if (Cg * phases < BROADCAST_MIN_CHANNELS
            or (K // groups) * taps[0] * taps[1] < MIN_REDUCTION):
        return None
    return taps


def subpixel_weight(w, stride, pad_lo, groups):
    """``(w_sub, place)``: the stride-1 convolution weight of every phase, flipped
    and channel-swapped as the adjoint needs, ``(groups*phases*Cg, Kg, n_d,
    n_h, n_w)``, and where each of its output channels goes in ``gx`` (see
    ``broadcast.forward_broadcast``).

    Sub-pixel channel ``(g*phases + ph)*Cg + c`` is phase ``(m_d, m_h, m_w)``,
    ``ph = (m_d*s_h + m_h)*s_w + m_w``, of channel ``g*Cg + c``: window
    ``u`` goes to ``gx[..., s*u + m - p]`` per axis.
    """
    stride, pad_lo = tuple(stride), tuple(pad_lo)
    if w.size <= GATHER_MAX:
        # One gather by a cached index: NumPy's copy through nine transposed
        # axes costs more than the convolution of a small volume.
        w_sub = np.ravel(w)[gather_order(w.shape, stride, groups)]
    else:
        w_sub = phase_major(w, stride, groups)
    return w_sub, subpixel_place(w.shape[1], stride, pad_lo, groups)


def phase_major(a, stride, groups):
    """``a`` laid out as ``subpixel_weight``'s ``w_sub`` (a copy).  Tap
    ``t = s*j + m`` of each axis is ``(j, m)``: ``a`` indexed by
    ``(g, k, c, j_d, m_d, j_h, m_h, j_w, m_w)`` is ordered ``(g, phase, c, k,
    j)``, flipped in ``j``."""
    K, Cg, Td, Th, Tw = a.shape
    sd, sh, sw = stride
    nd, nh, nw = Td // sd, Th // sh, Tw // sw
    a9 = a.reshape(groups, K // groups, Cg, nd, sd, nh, sh, nw, sw)
    a9 = a9.transpose(0, 4, 6, 8, 2, 1, 3, 5, 7)[..., ::-1, ::-1, ::-1]
    return np.ascontiguousarray(a9).reshape((groups * sd * sh * sw * Cg, K // groups,
                                             nd, nh, nw))


#: Largest weight (elements) whose ``subpixel_weight`` is a gather by a cached
#: index (8 bytes an element, at most eight shapes kept); larger ones are
#: copied directly.
GATHER_MAX = 1 << 16


@functools.lru_cache(maxsize=8)
def gather_order(w_shape, stride, groups):
    """Where each element of ``w_sub`` comes from in ``w.ravel()`` (read-only)."""
    order = phase_major(np.arange(int(np.prod(w_shape))).reshape(w_shape), stride, groups)
    order.flags.writeable = False
    return order


@functools.lru_cache(maxsize=32)
def subpixel_place(Cg, stride, pad_lo, groups):
    """``place`` of ``subpixel_weight`` (read-only)."""
    sd, sh, sw = stride
    phases = sd * sh * sw
    m = np.stack(np.meshgrid(np.arange(sd), np.arange(sh), np.arange(sw), indexing="ij"),
                 axis=-1).reshape(phases, 3)
    place = np.empty((groups, phases, Cg, 4), dtype=np.int64)
    place[..., 0] = np.arange(groups)[:, None, None] * Cg + np.arange(Cg)
    place[..., 1:] = (m - np.asarray(pad_lo))[None, :, None, :]
    place = place.reshape(-1, 4)
    place.flags.writeable = False
    return place


def subpixel_cpu(gy, w, taps, stride, dilation, pad_lo, groups, gx, b=None):
    """Host entry of this path: runs the kernel, then zeroes what no tap
    reaches.  With ``b`` (one value per channel of ``gx``), each sum is stored
    plus its channel's bias, and what no tap reaches is the bias."""
    if gx.size == 0:
        return
    w_sub, place = subpixel_weight(w, stride, pad_lo, groups)
    has_bias = b is not None
    if has_bias:
        # Sub-pixel channel (g*phases + ph)*Cg + c is channel g*Cg + c.
        Cg = w.shape[1]
        phases = stride[0] * stride[1] * stride[2]
        b_sub = np.repeat(b.reshape(groups, 1, Cg), phases, axis=1).reshape(-1)
    else:
        b_sub = np.empty(0, gx.dtype)
    windows = tuple(o + d * (n - 1) for o, d, n in zip(gy.shape[2:], dilation, taps))
    lo = tuple(d * (n - 1) for d, n in zip(dilation, taps))
    unit = (1, 1, 1)
    threads = get_num_threads()
    rows, flat, depth = blocking(windows, taps, unit, dilation, gy.itemsize,
                                 w.shape[0] // groups, gy.shape[0] * groups, threads)
    forward_broadcast(np.ascontiguousarray(gy), broadcast_weight(w_sub, groups),
                      b_sub, has_bias, taps, unit, dilation, lo, groups, windows,
                      rows, flat, depth, place, stride, threads, gx)
    for axis in range(3):
        end = stride[axis] * windows[axis] - pad_lo[axis]
        if end < gx.shape[2 + axis]:
            index = [slice(None)] * 5
            index[2 + axis] = slice(max(end, 0), None)
            gx[tuple(index)] = b.reshape(1, -1, 1, 1, 1) if has_bias else 0
