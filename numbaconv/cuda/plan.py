"""Which CUDA kernel a call takes, with which tile, and why.

Pure Python (no ``numba`` import): the launchers in this package call these
functions to decide, and tests call them to check that a case reaches the
kernel it is meant to test.  Every choice depends on the shapes and the
dtype only, never on the GPU in use, so a reduction sums in the same order on
every device.

The kernel families
-------------------
``tiled`` (``forward.make_tiled_kernel``)
    A block computes ``KB`` output channels x an ``RD x TY x TX`` spatial
    tile.  It stages ``CB`` input channels of the input tile with its halo
    and their weight slice in shared memory; each thread accumulates
    ``RD x KB`` outputs in registers.  Kernel sizes in ``SPECIALISED`` are
    compile-time constants (their loops unroll); other sizes run the same
    code with the sizes read at run time.
``single_channel``
    The same staging, for one input channel per group and at most
    ``SINGLE_MAX_K`` outputs (a volume filtered by a few kernels, depthwise
    layers): each thread slides along depth over ``RD = 8`` outputs, so each
    staged input element is read once per (height, width) tap and serves
    every depth tap.  Needs a specialised kernel size and unit stride and
    dilation along depth.
``direct``
    One thread per output element, no shared memory: kept for tiles whose
    halo would not fit in shared memory (huge dilations or kernels).
``phases`` (data gradient, transposed convolution)
    The adjoint of a stride-``s`` convolution splits into ``s`` phases per
    axis; each phase is a unit-stride ``tiled`` forward of ``gy`` with the
    flipped, channel-swapped sub-kernel, written straight into its strided
    place of ``gx``.  ``gather`` (one thread per ``gx`` element) serves an
    axis with both stride and dilation above 1, and any call whose weight
    holds NaN or inf (decided on the device, see ``backward_data``).
``chunked`` (weight gradient)
    An implicit matrix product ``gw[k, (c, t)] = sum_p gy[k, p] x[c, p + t]``
    over the positions ``p`` of (batch x space), split into ``chunks``; a
    block stages a spatial tile of ``gy`` and of ``x`` with its halo, each
    thread owns ``RK x RC`` entries of ``gw``; a second pass sums the chunks'
    partials in chunk order.  ``direct`` (one block per weight element) is
    the fallback when even the smallest tile does not fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Tuple

Int3 = Tuple[int, int, int]

#: Threads per block of the tiled kernels.
THREADS = 128
#: Shared memory a tiled block aims at (several blocks per multiprocessor).
SMEM_TARGET = 16 * 1024
#: Shared memory one block may use without an opt-in launch attribute.
SMEM_LIMIT = 48 * 1024
#: Kernel sizes compiled with constant loop bounds (after the 2-D lift,
#: see ``forward_plan``: a 2-D k3 convolution has taps (3, 1, 3)).
SPECIALISED = frozenset({(1, 1, 1), (3, 3, 3), (3, 1, 3), (1, 1, 3),
                         (5, 5, 5), (7, 7, 7)})
#: Output channels per block of the tiled forward (register block width),
#: float32; float64 takes half as many.
MAX_KB = 8
#: At most this many outputs per group take the single-channel kernel.
SINGLE_MAX_K = 4
#: Depth outputs per thread of the single-channel kernel.
SINGLE_RD = 8
#: Weight gradient: output channels and (channel, tap) columns per thread.
WG_RK, WG_RC = 4, 4
#: Weight gradient: threads along k (each ``WG_RK`` channels) and columns.
WG_KQ = 2
WG_CQ = THREADS // WG_KQ
#: Weight gradient spatial tiles, largest first (depth, height, width).
WG_TILES = ((4, 4, 16), (2, 4, 16), (1, 4, 16), (1, 2, 16), (1, 1, 16),
            (1, 1, 8))
#: Weight gradient: aim for at least this many blocks in the first pass,
#: and at most this many partial sums in all.
WG_TARGET_BLOCKS = 1024
WG_MAX_PARTIALS = 1 << 25
#: Bias gradient: first-pass block size and target block count.
BG_THREADS = 256
BG_TARGET_BLOCKS = 512


@dataclass(frozen=True)
class ForwardPlan:
    """How one forward correlation runs (see the module docstring)."""

    kernel: str            # "tiled", "single_channel" or "direct"
    reason: str
    swap: bool = False     # depth and height exchanged (the 2-D lift)
    taps: Int3 = (0, 0, 0)  # compile-time kernel size, or zeros (run time)
    rd: int = 1            # depth outputs per thread
    kb: int = 1            # output channels per block
    ty: int = 1            # threads along height (THREADS // ty along width)
    cb: int = 1            # input channels staged per shared-memory pass
    smem: int = 0          # dynamic shared memory per block, bytes
    blocks: int = 0        # tiles in the grid (before the grid cap)

    @property
    def tx(self) -> int:
        return THREADS // self.ty


@dataclass(frozen=True)
class BackwardDataPlan:
    """How the data gradient runs: ``gather`` or one forward per phase."""

    kernel: str            # "phases" or "gather"
    reason: str
    phases: tuple = field(default=())  # ((axis phases...), ForwardPlan|None)


@dataclass(frozen=True)
class WeightPlan:
    """How the weight gradient runs (``chunked`` or ``direct``)."""

    kernel: str
    reason: str
    swap: bool = False
    tile: Int3 = (1, 1, 1)
    channels: int = 0      # input channels staged per block
    col_blocks: int = 0
    k_blocks: int = 0
    chunks: int = 1
    smem: int = 0


def _pow2_at_least(n: int, cap: int) -> int:
    p = 1
    while p < n and p < cap:
        p *= 2
    return p


def _extent(tile: int, taps: int, stride: int, dilation: int) -> int:
    """Input elements one tile of ``tile`` outputs reads along an axis."""
    return max((tile - 1) * stride + (taps - 1) * dilation + 1, 1)


def can_swap(x_shape, w_shape, out_shape, pad_lo) -> bool:
    """Whether depth is a unit axis that height can take the place of.

    A 2-D problem lifted to 3-D has depth 1 everywhere; exchanging depth and
    height puts the register block of the tiled kernels along the height.
    """
    return (x_shape[2] == 1 and w_shape[2] == 1 and out_shape[2] == 1
            and pad_lo[0] == 0 and out_shape[3] > 1)


def swapped(t):
    """A shape (5 entries) or a per-axis triple with depth and height exchanged."""
    t = tuple(t)
    if len(t) == 3:
        return (t[1], t[0], t[2])
    return t[:2] + (t[3], t[2]) + t[4:]


def forward_plan(x_shape, w_shape, out_shape, stride: Int3, dilation: Int3,
                 pad_lo: Int3, groups: int, itemsize: int,
                 out_extent=None) -> ForwardPlan:
    """Choose the forward kernel and its tile.

    Parameters
    ----------
    x_shape, w_shape, out_shape : tuple of 5 int
        ``(N, C, D, H, W)``, ``(K, C // groups, KD, KH, KW)`` and the output.
    stride, dilation, pad_lo : tuple of 3 int
    groups : int
    itemsize : int
        4 (float32) or 8 (float64).
    out_extent : tuple of 3 int, optional
        The outputs computed per axis when they are a strided part of
        ``out`` (a phase of the data gradient); ``out_shape[2:]`` otherwise.

    Returns
    -------
    ForwardPlan

    Examples
    --------
    >>> p = forward_plan((2, 4, 8, 8, 8), (8, 4, 3, 3, 3), (2, 8, 8, 8, 8),
    ...                  (1, 1, 1), (1, 1, 1), (1, 1, 1), 1, 4)
    >>> p.kernel, p.taps, p.rd, p.kb
    ('tiled', (3, 3, 3), 4, 8)
    """
    extent = tuple(out_extent) if out_extent is not None else tuple(out_shape[2:])
    full = tuple(out_shape[:2]) + extent
    swap = can_swap(x_shape, w_shape, full, pad_lo) and out_shape[2] == 1
    if swap:
        x_shape, w_shape, full = swapped(x_shape), swapped(w_shape), swapped(full)
        stride, dilation = swapped(stride), swapped(dilation)
    N, C = x_shape[:2]
    K, Cg = w_shape[:2]
    taps = tuple(w_shape[2:])
    OD, OH, OW = full[2:]
    Kg = K // groups
    key = taps if taps in SPECIALISED else (0, 0, 0)
    ty = 4 if OH > 1 else 1
    tx = THREADS // ty
    single = (Cg == 1 and Kg <= SINGLE_MAX_K and key != (0, 0, 0)
              and stride[0] == 1 and dilation[0] == 1 and OD > 1)
    if single:
        kernel, rd, kb = "single_channel", SINGLE_RD, _pow2_at_least(Kg, 4)
        why = (f"one input channel per group and {Kg} output(s): depth "
               f"slides over {rd} outputs per thread")
    else:
        # float64 accumulators take two registers each: half the channels.
        kernel, rd = "tiled", (4 if OD > 1 else 1)
        kb = _pow2_at_least(Kg, MAX_KB if itemsize <= 4 else MAX_KB // 2)
        why = f"{kb} output channels x {rd}x{ty}x{tx} outputs per block"
    T = taps[0] * taps[1] * taps[2]
    per_channel = (_extent(rd, taps[0], stride[0], dilation[0])
                   * _extent(ty, taps[1], stride[1], dilation[1])
                   * _extent(tx, taps[2], stride[2], dilation[2])
                   + T * kb) * itemsize
    if per_channel > SMEM_LIMIT:
        return ForwardPlan("direct", f"one input channel's tile with its halo "
                           f"and weights needs {per_channel} bytes of shared "
                           f"memory (> {SMEM_LIMIT})", swap=False)
    cb = max(1, min(Cg, SMEM_TARGET // per_channel))
    tiles = (N * groups * -(-Kg // kb) * -(-OD // rd) * -(-OH // ty)
             * -(-OW // tx))
    spec = "compile-time" if key != (0, 0, 0) else "run-time"
    return ForwardPlan(kernel, f"{why}; {spec} kernel size {taps}"
                       + ("; depth and height exchanged (2-D)" if swap else ""),
                       swap=swap, taps=key, rd=rd, kb=kb, ty=ty, cb=cb,
                       smem=cb * per_channel, blocks=tiles)


def axis_phases(size: int, taps: int, stride: int, dilation: int, pad: int):
    """The stride phases of one axis of the data gradient.

    Returns a list of ``(r, first, n, padding, count)``: the inputs
    ``i = stride*q + r`` (``count`` of them) are reached by the taps
    ``first, first + stride, ...`` (``n`` of them), and form a unit-stride
    correlation of ``gy`` with those taps flipped, under low padding
    ``padding``.

    Examples
    --------
    >>> axis_phases(5, 2, 2, 1, 0)
    [(0, 0, 1, 0, 3), (1, 1, 1, 0, 2)]
    """
    phases = []
    for r in range(stride):
        count = -(-(size - r) // stride)
        if count <= 0:
            continue
        first = (r + pad) % stride
        n = len(range(first, taps, stride))
        e = (r + pad - first) // stride
        phases.append((r, first, n, dilation * (n - 1) - e, count))
    return phases


def backward_data_plan(gy_shape, w_shape, gx_shape, stride: Int3,
                       dilation: Int3, pad_lo: Int3, groups: int,
                       itemsize: int) -> BackwardDataPlan:
    """Choose how the data gradient runs.

    Examples
    --------
    >>> p = backward_data_plan((1, 2, 4, 4, 4), (2, 3, 2, 2, 2),
    ...                        (1, 3, 8, 8, 8), (2, 2, 2), (1, 1, 1),
    ...                        (0, 0, 0), 1, 4)
    >>> p.kernel, len(p.phases)
    ('phases', 8)
    """
    if any(s > 1 and d > 1 for s, d in zip(stride, dilation)):
        return BackwardDataPlan("gather", "an axis has both stride and "
                                "dilation above 1: no unit-stride phases")
    K, Cg = w_shape[:2]
    C = gx_shape[1]
    Kg = K // groups
    axes = [axis_phases(L, T, s, d, p) for L, T, s, d, p
            in zip(gx_shape[2:], w_shape[2:], stride, dilation, pad_lo)]
    phases = []
    for pd_ in axes[0]:
        for ph_ in axes[1]:
            for pw_ in axes[2]:
                ph = (pd_, ph_, pw_)
                if any(p[2] == 0 for p in ph):
                    phases.append((ph, None))   # no tap reaches it: zeros
                    continue
                fp = forward_plan(gy_shape, (C, Kg) + tuple(p[2] for p in ph),
                                  gx_shape, (1, 1, 1), dilation,
                                  tuple(p[3] for p in ph), groups, itemsize,
                                  out_extent=tuple(p[4] for p in ph))
                if fp.kernel == "direct":
                    return BackwardDataPlan("gather", "a phase's tile does not "
                                            "fit in shared memory: " + fp.reason)
                phases.append((ph, fp))
    return BackwardDataPlan("phases", f"{len(phases)} unit-stride phase(s) on "
                            "the tiled forward with the flipped weight",
                            tuple(phases))


def weight_plan(x_shape, w_shape, gy_shape, stride: Int3, dilation: Int3,
                pad_lo: Int3, groups: int, itemsize: int) -> WeightPlan:
    """Choose the weight-gradient kernel, its tile and its chunks.

    Examples
    --------
    >>> p = weight_plan((2, 4, 8, 8, 8), (8, 4, 3, 3, 3), (2, 8, 8, 8, 8),
    ...                 (1, 1, 1), (1, 1, 1), (1, 1, 1), 1, 4)
    >>> p.kernel, p.tile
    ('chunked', (4, 4, 8))
    """
    swap = can_swap(x_shape, w_shape, gy_shape, pad_lo)
    if swap:
        x_shape, w_shape, gy_shape = (swapped(x_shape), swapped(w_shape),
                                      swapped(gy_shape))
        stride, dilation = swapped(stride), swapped(dilation)
    N = x_shape[0]
    K, Cg = w_shape[:2]
    taps = w_shape[2:]
    T = taps[0] * taps[1] * taps[2]
    Kg = K // groups
    ncols = WG_CQ * WG_RC
    channels = min(Cg, (ncols + T - 1) // T + 1)
    kbw = WG_KQ * WG_RK
    OD, OH, OW = gy_shape[2:]
    for tile in WG_TILES:
        # A unit height (1-D, or 2-D after the exchange) widens the tile.
        tile = (min(tile[0], max(OD, 1)), min(tile[1], max(OH, 1)),
                min(tile[2] if OH > 1 else 4 * tile[2], max(OW, 1)))
        ext = 1
        for a in range(3):
            ext *= _extent(tile[a], taps[a], stride[a], dilation[a])
        P = tile[0] * tile[1] * tile[2]
        smem = (channels * ext + kbw * P) * itemsize
        if smem <= SMEM_LIMIT * 5 // 6:
            break
    else:
        return WeightPlan("direct", "even the smallest tile with its halo "
                          "does not fit in shared memory: one block per "
                          "weight element")
    col_blocks = -(-(Cg * T) // ncols)
    k_blocks = -(-Kg // kbw)
    per_chunk = groups * col_blocks * k_blocks
    tiles = N * -(-OD // tile[0]) * -(-OH // tile[1]) * -(-OW // tile[2])
    chunks = max(1, min(tiles, -(-WG_TARGET_BLOCKS // per_chunk),
                        WG_MAX_PARTIALS // max(1, K * Cg * T)))
    return WeightPlan("chunked", f"implicit GEMM: {kbw} channels x {ncols} "
                      f"(channel, tap) columns per block, {tile} tiles in "
                      f"{chunks} chunk(s) summed in a second pass"
                      + ("; depth and height exchanged (2-D)" if swap else ""),
                      swap=swap, tile=tile, channels=channels,
                      col_blocks=col_blocks, k_blocks=k_blocks, chunks=chunks,
                      smem=smem)


def bias_chunks(gy_shape) -> int:
    """Chunks of the first pass of the bias gradient (one block each per channel).

    Examples
    --------
    >>> bias_chunks((4, 8, 16, 16, 16))   # 16384 terms per channel
    8
    """
    N, K = gy_shape[:2]
    terms = N * gy_shape[2] * gy_shape[3] * gy_shape[4]
    by_work = max(1, terms // (BG_THREADS * 8))
    return max(1, min(by_work, -(-BG_TARGET_BLOCKS // max(K, 1))))


def explain(op: str, *args) -> str:
    """One line: the kernel a call takes and why.

    Parameters
    ----------
    op : {"forward", "backward_data", "backward_weight"}
    *args
        The arguments of ``forward_plan``, ``backward_data_plan`` or
        ``weight_plan``.

    Examples
    --------
    >>> explain("forward", (1, 1, 32, 32, 32), (1, 1, 3, 3, 3),
    ...         (1, 1, 30, 30, 30), (1, 1, 1), (1, 1, 1), (0, 0, 0), 1, 4)
    'forward: single_channel (one input channel per group and 1 output(s): depth slides over 8 outputs per thread; compile-time kernel size (3, 3, 3))'
    """
    fn = {"forward": forward_plan, "backward_data": backward_data_plan,
          "backward_weight": weight_plan}[op]
    p = fn(*args)
    return f"{op}: {p.kernel} ({p.reason})"
