"""Property-based tests: random configurations against the float64 reference.

Hypothesis draws valid configurations of all six ops (conv1d/2d/3d,
conv_transpose1d/2d/3d) and of their gradients: dimensions, batch and channel
counts, groups, kernel sizes, strides, dilations, paddings in every accepted
form (int, per-axis tuple, ``(low, high)`` pairs, ``'same'``, ``'valid'``),
all padding modes, ``output_padding`` or ``output_size``, float32/float64,
with or without bias, batched or unbatched.  Results are compared with
``tests/naive.py``; gradients also satisfy the adjoint identity.

A second family draws configurations from a wider space that includes
invalid ones (wrong ranks, channel counts, groups, tuple lengths, negative or
zero values, kernels too large, padding-mode limits, output_padding out of
range, mixed or integer dtypes).  An independent statement of the rules
below decides which are valid: valid ones must compute the reference result,
invalid ones must raise ``ValueError`` or ``TypeError`` and nothing else.

Shapes stay tiny so the Python references are fast.  The number of examples
comes from the hypothesis profile (``tests/_hypothesis_profiles.py``; set
``NUMBACONV_HYPOTHESIS_PROFILE=thorough`` for a long run).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import naive
import numbaconv
from _hypothesis_profiles import examples
from conftest import assert_close

MODES = ["zeros", "reflect", "replicate", "circular", "symmetric"]
KMAX = {1: 4, 2: 3, 3: 3}
EXTRA = {1: 5, 2: 3, 3: 2}


def fn(name, nd):
    return getattr(numbaconv, name.format(nd=nd))


def _axis(v, nd):
    return tuple(v) if isinstance(v, tuple) else (v,) * nd


def _crop(a, shape):
    return a[tuple(slice(0, s) for s in shape)]


def _mode_ok(mode, L, lo, hi):
    p = max(lo, hi)
    if mode == "zeros" or p == 0:
        return True
    if mode == "reflect":
        return p < L
    if mode in ("circular", "symmetric"):
        return p <= L
    return L > 0                     # replicate


def _same_pads(L, k, s, d):
    out = -(-L // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - L, 0)
    return total // 2, total - total // 2


# ---------------------------------------------------------------------------
# strategies for valid configurations
# ---------------------------------------------------------------------------

def _padding_arg(draw, style, lo, hi, nd):
    """The padding argument in the drawn style for per-axis (lo, hi)."""
    if style == "valid":
        return "valid"
    if style == "int":
        return lo[0]
    if style == "tuple":
        return tuple(lo)
    return tuple((a, b) for a, b in zip(lo, hi))


def _maybe_np_int(draw, v):
    return np.int64(v) if draw(st.integers(0, 9)) == 0 else v


def _hyper(draw, values, nd):
    """An int or an nd-tuple, sometimes NumPy ints."""
    if draw(st.booleans()):
        return _maybe_np_int(draw, values[0]), (values[0],) * nd
    return tuple(_maybe_np_int(draw, v) for v in values), tuple(values)


@st.composite
def conv_cases(draw):
    nd = draw(st.sampled_from([1, 2, 3]))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, kg = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    case = dict(nd=nd, groups=groups, C=cg * groups, K=kg * groups,
                N=draw(st.integers(1, 2)), batched=draw(st.booleans()),
                dtype=draw(st.sampled_from(["float64", "float32"])),
                mode=draw(st.sampled_from(MODES)), bias=draw(st.booleans()))
    k = tuple(draw(st.integers(1, KMAX[nd])) for _ in range(nd))
    s_raw = [draw(st.integers(1, 3)) for _ in range(nd)]
    d_raw = [draw(st.integers(1, 2)) for _ in range(nd)]
    stride, s = _hyper(draw, s_raw, nd)
    dilation, d = _hyper(draw, d_raw, nd)
    style = draw(st.sampled_from(["int", "tuple", "pairs", "same", "valid"]))
    mode = case["mode"]
    sizes, lo, hi = [], [], []
    if style == "same":
        padding = "same"
        for kk, ss, dd in zip(k, s, d):
            span = dd * (kk - 1) + 1
            lmin = 1 if mode == "zeros" else span
            L = draw(st.integers(lmin, lmin + EXTRA[nd]))
            a, b = _same_pads(L, kk, ss, dd)
            sizes.append(L), lo.append(a), hi.append(b)
    else:
        if style == "valid":
            lo = hi = [0] * nd
        elif style == "int":
            lo = hi = [draw(st.integers(0, 2))] * nd
        elif style == "tuple":
            lo = [draw(st.integers(0, 2)) for _ in range(nd)]
            hi = lo
        else:
            lo = [draw(st.integers(0, 2)) for _ in range(nd)]
            hi = [draw(st.integers(0, 2)) for _ in range(nd)]
        padding = _padding_arg(draw, style, lo, hi, nd)
        for kk, dd, a, b in zip(k, d, lo, hi):
            span = dd * (kk - 1) + 1
            lmin = max(1, span - a - b)
            p = max(a, b)
            if mode == "reflect" and p:
                lmin = max(lmin, p + 1)
            elif mode in ("circular", "symmetric"):
                lmin = max(lmin, p)
            L = draw(st.integers(lmin, lmin + EXTRA[nd]))
            sizes.append(L)
    case.update(k=k, stride=stride, dilation=dilation, padding=padding,
                sizes=tuple(sizes), lo=tuple(lo), hi=tuple(hi), s=s, d=d)
    return case


@st.composite
def transpose_cases(draw):
    nd = draw(st.sampled_from([1, 2, 3]))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg_in, kg_out = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    case = dict(nd=nd, groups=groups, C=cg_in * groups, Cout=kg_out * groups,
                N=draw(st.integers(1, 2)), batched=draw(st.booleans()),
                dtype=draw(st.sampled_from(["float64", "float32"])),
                mode=draw(st.sampled_from(MODES)), bias=draw(st.booleans()))
    mode = case["mode"]
    k = tuple(draw(st.integers(1, KMAX[nd])) for _ in range(nd))
    stride, s = _hyper(draw, [draw(st.integers(1, 3)) for _ in range(nd)], nd)
    dilation, d = _hyper(draw, [draw(st.integers(1, 2)) for _ in range(nd)], nd)
    style = draw(st.sampled_from(["int", "tuple", "pairs", "same", "valid"]))
    sizes, lo, hi, op, outs = [], [], [], [], []
    if style == "same":
        padding = "same"
        for kk, ss, dd in zip(k, s, d):
            span = dd * (kk - 1) + 1
            total = max(span - ss, 0)
            a, b = total // 2, total - total // 2
            lmin = 1 if mode == "zeros" else -(-(max(a, b) + 1) // ss)
            L = draw(st.integers(lmin, lmin + EXTRA[nd] - 1))
            sizes.append(L), lo.append(a), hi.append(b), outs.append(L * ss)
            op.append(L * ss - ((L - 1) * ss - a - b + span))
    else:
        if style == "valid":
            lo = hi = [0] * nd
        elif style == "int":
            lo = hi = [draw(st.integers(0, 2))] * nd
        elif style == "tuple":
            lo = [draw(st.integers(0, 2)) for _ in range(nd)]
            hi = lo
        else:
            lo = [draw(st.integers(0, 2)) for _ in range(nd)]
            hi = [draw(st.integers(0, 2)) for _ in range(nd)]
        padding = _padding_arg(draw, style, lo, hi, nd)
        for kk, ss, dd, a, b in zip(k, s, d, lo, hi):
            o = draw(st.integers(0, max(ss, dd) - 1))
            span = dd * (kk - 1) + 1
            L = 1
            while True:
                out = (L - 1) * ss - a - b + span + o
                if out >= 1 and _mode_ok(mode, out, a, b):
                    break
                L += 1
            L = draw(st.integers(L, L + EXTRA[nd] - 1))
            sizes.append(L), op.append(o)
            outs.append((L - 1) * ss - a - b + span + o)
    how = "same" if style == "same" else draw(
        st.sampled_from(["output_padding", "output_padding", "output_size",
                         "output_size_full"]))
    case.update(k=k, stride=stride, dilation=dilation, padding=padding,
                sizes=tuple(sizes), lo=tuple(lo), hi=tuple(hi), op=tuple(op),
                out=tuple(outs), s=s, d=d, how=how)
    return case


# ---------------------------------------------------------------------------
# building arrays and references
# ---------------------------------------------------------------------------

def _arrays(case, transposed, seed):
    r = np.random.default_rng(seed)
    dt = np.dtype(case["dtype"])
    nd = case["nd"]
    lead = (case["N"], case["C"]) if case["batched"] else (case["C"],)
    x = r.standard_normal(lead + case["sizes"]).astype(dt)
    if transposed:
        w = r.standard_normal((case["C"], case["Cout"] // case["groups"]) + case["k"])
        nb = case["Cout"]
    else:
        w = r.standard_normal((case["K"], case["C"] // case["groups"]) + case["k"])
        nb = case["K"]
    w = w.astype(dt)
    b = r.standard_normal(nb).astype(dt) if case["bias"] else None
    assert x.ndim == nd + (2 if case["batched"] else 1)
    return x, w, b


def _pairs(case):
    return tuple(zip(case["lo"], case["hi"]))


def _abs(a):
    return None if a is None else np.abs(np.asarray(a, dtype=np.float64))


def ref_conv(case, x, w, b):
    return naive.conv(x, w, b, case["s"], _pairs(case), case["d"], case["groups"],
                      case["mode"])


def ref_transpose(case, x, w, b):
    """Transposed convolution: scatter form for zeros, and the adjoint of the
    padded convolution (``conv_input``) for every mode."""
    out_lead = x.shape[:-case["nd"]][:-1] + (case["Cout"],)
    if case["mode"] == "zeros":
        y = naive.conv_transpose(x, w, b, case["s"], _pairs(case), case["op"],
                                 case["groups"], case["d"])
        assert y.shape == out_lead + case["out"]
        return y
    y = naive.conv_input(out_lead + case["out"], w, x, case["s"], _pairs(case),
                         case["d"], case["groups"], case["mode"])
    if b is not None:
        y = y + np.asarray(b, np.float64).reshape((-1,) + (1,) * case["nd"])
    return y


def ref_conv_grads(case, x, w, gy):
    kw = dict(stride=case["s"], padding=_pairs(case), dilation=case["d"],
              groups=case["groups"], padding_mode=case["mode"])
    return (naive.conv_input(x.shape, w, gy, **kw),
            naive.conv_weight(x, w.shape, gy, **kw),
            naive.conv_bias(gy, case["nd"]))


def ref_transpose_grads(case, x, w, g):
    kw = dict(stride=case["s"], padding=_pairs(case), dilation=case["d"],
              groups=case["groups"], padding_mode=case["mode"])
    gi = _crop(naive.conv(g, w, None, **kw), x.shape)
    gw = naive.conv_weight(g, w.shape, x, **kw)
    return gi, gw, naive.conv_bias(g, case["nd"])


def transpose_kwargs(case):
    kw = dict(stride=case["stride"], padding=case["padding"],
              dilation=case["dilation"], groups=case["groups"],
              padding_mode=case["mode"])
    how = case["how"]
    if how == "output_padding":
        kw["output_padding"] = case["op"] if len(set(case["op"])) > 1 else case["op"][0]
    elif how == "output_size":
        kw["output_size"] = case["out"]
    elif how == "output_size_full":
        lead = (case["N"], case["Cout"]) if case["batched"] else (case["Cout"],)
        kw["output_size"] = lead + case["out"]
    return kw


def conv_kwargs(case):
    return dict(stride=case["stride"], padding=case["padding"],
                dilation=case["dilation"], groups=case["groups"],
                padding_mode=case["mode"])


def check(got, want, magnitude, dtype, what):
    assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype}"
    assert_close(got, want, dtype=dtype, magnitude=magnitude, err_msg=what)


# ---------------------------------------------------------------------------
# valid configurations: values
# ---------------------------------------------------------------------------

@examples(150)
@given(case=conv_cases(), seed=st.integers(0, 2 ** 16))
def test_conv_matches_reference(case, seed):
    note(case)
    x, w, b = _arrays(case, False, seed)
    before = [a.copy() for a in (x, w, b) if a is not None]
    y = fn("conv{nd}d", case["nd"])(x, w, b, **conv_kwargs(case))
    want = ref_conv(case, x, w, b)
    check(y, want, ref_conv(case, _abs(x), _abs(w), _abs(b)), case["dtype"], "conv")
    for a, c in zip([a for a in (x, w, b) if a is not None], before):
        np.testing.assert_array_equal(a, c)


@examples(150)
@given(case=transpose_cases(), seed=st.integers(0, 2 ** 16))
def test_conv_transpose_matches_reference(case, seed):
    note(case)
    x, w, b = _arrays(case, True, seed)
    y = fn("conv_transpose{nd}d", case["nd"])(x, w, b, **transpose_kwargs(case))
    want = ref_transpose(case, x, w, b)
    check(y, want, ref_transpose(case, _abs(x), _abs(w), _abs(b)), case["dtype"],
          "conv_transpose")
    if case["mode"] == "zeros" and case["how"] != "same":
        # the scatter form and the adjoint form agree (reference self-check)
        out_lead = x.shape[:-case["nd"]][:-1] + (case["Cout"],)
        gather = naive.conv_input(out_lead + case["out"], w, x, case["s"],
                                  _pairs(case), case["d"], case["groups"])
        if b is not None:
            gather = gather + np.asarray(b, np.float64).reshape(
                (-1,) + (1,) * case["nd"])
        np.testing.assert_allclose(gather, want, rtol=1e-9, atol=1e-9)


@examples(80)
@given(case=conv_cases(), seed=st.integers(0, 2 ** 16))
def test_conv_gradients_match_reference(case, seed):
    note(case)
    nd, dt = case["nd"], case["dtype"]
    x, w, _ = _arrays(case, False, seed)
    kw = conv_kwargs(case)
    y_shape = ref_conv(case, x, w, None).shape
    gy = np.random.default_rng(seed + 1).standard_normal(y_shape).astype(dt)
    want = ref_conv_grads(case, x, w, gy)
    mags = ref_conv_grads(case, _abs(x), _abs(w), _abs(gy))
    gi, gw, gb = fn("conv{nd}d_backward", nd)(gy, x, w, **kw)
    for got, ref, mag, name in zip((gi, gw, gb), want, mags, ("input", "weight", "bias")):
        check(got, ref, mag, dt, f"conv_backward grad_{name}")
    gi2 = fn("conv{nd}d_input", nd)(x.shape, w, gy, **kw)
    gw2 = fn("conv{nd}d_weight", nd)(x, w.shape, gy, **kw)
    np.testing.assert_array_equal(gi2, gi)
    np.testing.assert_array_equal(gw2, gw)
    mask = (case["bias"], not case["bias"], True)   # some partial masks
    parts = fn("conv{nd}d_backward", nd)(gy, x, w, output_mask=mask, **kw)
    for m, part, full in zip(mask, parts, (gi, gw, gb)):
        if m:
            np.testing.assert_array_equal(part, full)
        else:
            assert part is None


@examples(80)
@given(case=transpose_cases(), seed=st.integers(0, 2 ** 16))
def test_conv_transpose_gradients_match_reference(case, seed):
    note(case)
    nd, dt = case["nd"], case["dtype"]
    x, w, _ = _arrays(case, True, seed)
    kw = transpose_kwargs(case)
    if "output_size" in kw:     # the backward takes output_padding only
        kw.pop("output_size")
        kw["output_padding"] = case["op"]
    out_shape = ref_transpose(case, x, w, None).shape
    g = np.random.default_rng(seed + 1).standard_normal(out_shape).astype(dt)
    want = ref_transpose_grads(case, x, w, g)
    mags = ref_transpose_grads(case, _abs(x), _abs(w), _abs(g))
    got = fn("conv_transpose{nd}d_backward", nd)(g, x, w, **kw)
    for gt, ref, mag, name in zip(got, want, mags, ("input", "weight", "bias")):
        check(gt, ref, mag, dt, f"conv_transpose_backward grad_{name}")


def _dot(a, b):
    return float(np.dot(np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)))


@examples(50)
@given(case=conv_cases(), seed=st.integers(0, 2 ** 16))
def test_adjoint_identities(case, seed):
    """<conv(x, w), g> = <x, conv_input(g, w)> = <w, conv_weight(x, g)>, and
    conv_transpose is conv_input (float64, the library alone)."""
    case = dict(case, dtype="float64")
    nd = case["nd"]
    x, w, _ = _arrays(case, False, seed)
    kw = conv_kwargs(case)
    y = fn("conv{nd}d", nd)(x, w, **kw)
    g = np.random.default_rng(seed + 2).standard_normal(y.shape)
    gi, gw, _ = fn("conv{nd}d_backward", nd)(g, x, w, **kw)
    lhs = _dot(y, g)
    scale = _dot(np.abs(fn("conv{nd}d", nd)(np.abs(x), np.abs(w), **kw)), np.abs(g)) + 1e-300
    assert abs(lhs - _dot(x, gi)) <= 1e-12 * scale
    assert abs(lhs - _dot(w, gw)) <= 1e-12 * scale
    # conv_transpose with the same arguments is conv_input, when x's size
    # lies in the transposed call's output range (picked with output_size)
    if _transposable(case, x, g):
        t = fn("conv_transpose{nd}d", nd)(
            g, w, stride=kw["stride"], padding=_pairs(case), dilation=kw["dilation"],
            groups=kw["groups"], padding_mode=kw["padding_mode"],
            output_size=x.shape[-nd:])
        np.testing.assert_allclose(t, gi, rtol=1e-12, atol=1e-12 * scale)


def _transposable(case, x, g):
    """Whether conv_transpose(g) can produce x's size (output_padding range)."""
    for L, o, s, d, k, a, b in zip(x.shape[-case["nd"]:], g.shape[-case["nd"]:],
                                   case["s"], case["d"], case["k"], case["lo"],
                                   case["hi"]):
        base = (o - 1) * s - a - b + d * (k - 1) + 1
        if not 0 <= L - base < max(s, d):
            return False
        if not _mode_ok(case["mode"], L, a, b):
            return False
    return True


# ---------------------------------------------------------------------------
# the wider space: valid or not, decided by an independent statement of the rules
# ---------------------------------------------------------------------------

def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _tuple_rule(v, nd, minimum):
    """Per-axis ints, or None when ``v`` is not a valid int-or-tuple."""
    if _is_int(v):
        return (int(v),) * nd if v >= minimum else None
    if isinstance(v, tuple) and len(v) == nd and all(_is_int(e) and e >= minimum
                                                    for e in v):
        return tuple(int(e) for e in v)
    return None


def _padding_rule(p, nd):
    if isinstance(p, str):
        return {"same": "same", "valid": ((0, 0),) * nd}.get(p)
    if _is_int(p):
        return ((int(p), int(p)),) * nd if p >= 0 else None
    if not isinstance(p, tuple) or len(p) != nd:
        return None
    pairs = []
    for e in p:
        if _is_int(e):
            pairs.append((int(e), int(e)))
        elif isinstance(e, tuple) and len(e) == 2 and all(_is_int(v) for v in e):
            pairs.append((int(e[0]), int(e[1])))
        else:
            return None
    if any(v < 0 for pr in pairs for v in pr):
        return None
    return tuple(pairs)


def expected(case):
    """(valid, output_shape or None): the rules, restated independently."""
    nd, transposed = case["nd"], case["transposed"]
    x, w, b = case["x"], case["w"], case["b"]
    dts = {a.dtype for a in (x, w, b) if a is not None}
    if len(dts) != 1 or next(iter(dts)) not in (np.float32, np.float64):
        return False, None
    if x.ndim not in (nd + 1, nd + 2) or w.ndim != nd + 2:
        return False, None
    batched = x.ndim == nd + 2
    xs = x.shape if batched else (1,) + x.shape
    N, C, L = xs[0], xs[1], xs[2:]
    k = w.shape[2:]
    g = case["groups"]
    if not _is_int(g) or g < 1 or min(k) < 1:
        return False, None
    if case["mode"] not in MODES:
        return False, None
    s = _tuple_rule(case["stride"], nd, 1)
    d = _tuple_rule(case["dilation"], nd, 1)
    pads = _padding_rule(case["padding"], nd)
    if s is None or d is None or pads is None:
        return False, None
    mode = case["mode"]
    if not transposed:
        K = w.shape[0]
        if K % g or w.shape[1] * g != C:
            return False, None
        if b is not None and b.shape != (K,):
            return False, None
        if pads == "same":
            pads = tuple(_same_pads(*a) for a in zip(L, k, s, d))
        out = []
        for Li, ki, si, di, (a, bb) in zip(L, k, s, d, pads):
            if not _mode_ok(mode, Li, a, bb):
                return False, None
            span = di * (ki - 1) + 1
            if Li + a + bb < span:
                return False, None
            out.append((Li + a + bb - span) // si + 1)
        lead = (N, K) if batched else (K,)
        return True, lead + tuple(out)
    # transposed
    op = _tuple_rule(case["output_padding"], nd, 0)
    if op is None:
        return False, None
    if w.shape[0] != C or C % g:
        return False, None
    Cout = w.shape[1] * g
    if b is not None and b.shape != (Cout,):
        return False, None
    if pads == "same":
        if any(op):
            return False, None
        out = tuple(Li * si for Li, si in zip(L, s))
        pads = []
        for ki, si, di in zip(k, s, d):
            total = max(di * (ki - 1) + 1 - si, 0)
            pads.append((total // 2, total - total // 2))
    else:
        if any(o >= max(si, di) for o, si, di in zip(op, s, d)):
            return False, None
        out = tuple((Li - 1) * si - a - bb + di * (ki - 1) + o + 1
                    for Li, si, (a, bb), di, ki, o in zip(L, s, pads, d, k, op))
    if min(out) < 1:
        return False, None
    for Lo, (a, bb) in zip(out, pads):
        if not _mode_ok(mode, Lo, a, bb):
            return False, None
    lead = (N, Cout) if batched else (Cout,)
    return True, lead + out


def _mutate(draw, case):
    """One random change that may (or may not) make a valid case invalid."""
    nd = case["nd"]
    x, w = case["x"], case["w"]
    what = draw(st.sampled_from([
        "rank", "channels", "weight_channels", "weight_rank", "kernel", "groups",
        "stride", "dilation", "padding", "mode", "bias", "dtype",
        "output_padding", "size0", "batch0"]))
    case = dict(case)
    if what == "rank":
        case["x"] = (x[None] if draw(st.booleans()) or 0 in x.shape
                     else x[(0,) * (x.ndim - nd)])
    elif what == "channels":
        axis = x.ndim - nd - 1
        case["x"] = np.concatenate([x, x.take([0], axis=axis)], axis=axis)
    elif what == "weight_channels":
        case["w"] = np.concatenate([w, w[:, :1]], axis=1)
    elif what == "weight_rank":
        case["w"] = w[..., None] if draw(st.booleans()) else w[0]
    elif what == "kernel":
        axis = 2 + draw(st.integers(0, nd - 1))
        size = draw(st.sampled_from([0, w.shape[axis] + 4, w.shape[axis] + 7]))
        shape = list(w.shape)
        shape[axis] = size
        case["w"] = np.ones(shape, w.dtype)
    elif what == "groups":
        case["groups"] = draw(st.sampled_from([0, -1, 2, 3, 4, 1.0, None, True]))
    elif what == "stride":
        case["stride"] = draw(st.sampled_from(
            [0, -1, (1,) * (nd + 1), (), 1.5, "1", None, 4, (2,) * nd, np.int32(2)]))
    elif what == "dilation":
        case["dilation"] = draw(st.sampled_from(
            [0, -1, (1,) * (nd - 1), 2.0, 3, (2,) * nd]))
    elif what == "padding":
        case["padding"] = draw(st.sampled_from(
            [-1, "full", (0,) * (nd + 1), ((1, 2, 3),) * nd, 1.5, None, 3, 5,
             ((0, 4),) * nd, "same", "valid", ((2, -1),) * nd]))
    elif what == "mode":
        case["mode"] = draw(st.sampled_from(["mirror", None, "Zeros", "reflect",
                                             "circular", "replicate", "symmetric"]))
    elif what == "bias":
        n = (w.shape[1] * case["groups"] if case["transposed"] else w.shape[0]) \
            if isinstance(case["groups"], int) else 1
        case["b"] = draw(st.sampled_from([
            np.zeros(n + 1, x.dtype), np.zeros((n, 1), x.dtype), np.zeros(0, x.dtype),
            np.zeros(n, np.float32 if x.dtype == np.float64 else np.float64)]))
    elif what == "dtype":
        dt = draw(st.sampled_from(["float32", "float64", "int32", "float16",
                                   "complex128", "bool"]))
        key = draw(st.sampled_from(["x", "w"]))
        case[key] = case[key].astype(dt)
    elif what == "output_padding":
        case["output_padding"] = draw(st.sampled_from(
            [-1, 1, 2, 3, (1,) * (nd + 1), 0.5, (0,) * nd]))
    elif what == "size0":
        shape = list(x.shape)
        shape[-1 - draw(st.integers(0, nd - 1))] = 0
        case["x"] = np.zeros(shape, x.dtype)
    elif what == "batch0" and x.ndim == nd + 2:
        case["x"] = x[:0]
    return case


@st.composite
def any_cases(draw):
    """A valid configuration with 0, 1 or 2 random changes."""
    transposed = draw(st.booleans())
    base = draw(transpose_cases() if transposed else conv_cases())
    x, w, b = _arrays(base, transposed, draw(st.integers(0, 2 ** 16)))
    op = 0
    if transposed and base["how"] != "same":
        op = base["op"]
    case = dict(nd=base["nd"], transposed=transposed, x=x, w=w, b=b,
                stride=base["stride"], dilation=base["dilation"],
                padding=base["padding"], groups=base["groups"], mode=base["mode"],
                output_padding=op)
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 1, 2, 2]))):
        case = _mutate(draw, case)
    return case


def _run_any(case):
    nd = case["nd"]
    kw = dict(stride=case["stride"], padding=case["padding"],
              dilation=case["dilation"], groups=case["groups"],
              padding_mode=case["mode"])
    if case["transposed"]:
        return fn("conv_transpose{nd}d", nd)(case["x"], case["w"], case["b"],
                                             output_padding=case["output_padding"],
                                             **kw)
    return fn("conv{nd}d", nd)(case["x"], case["w"], case["b"], **kw)


def _ref_any(case, shape):
    """Reference values for a valid wide-space case (float64)."""
    nd = case["nd"]
    if 0 in shape:
        return np.zeros(shape)
    x, w, b = case["x"], case["w"], case["b"]
    s = _tuple_rule(case["stride"], nd, 1)
    d = _tuple_rule(case["dilation"], nd, 1)
    g = case["groups"]
    if not case["transposed"]:
        return naive.conv(x, w, b, s, case["padding"], d, g, case["mode"])
    if case["mode"] == "zeros":     # the scatter form
        op = _tuple_rule(case["output_padding"], nd, 0)
        return naive.conv_transpose(x, w, b, s, case["padding"], op, g, d)
    lo, hi, _ = naive.transpose_padding(
        case["padding"], x.shape[-nd:], w.shape[2:], s, d)
    pairs = tuple(zip(lo, hi))
    y = naive.conv_input(shape, w, x, s, pairs, d, g, case["mode"])
    if b is not None:
        y = y + b.astype(np.float64).reshape((-1,) + (1,) * nd)
    return y


@examples(400)
@given(case=any_cases())
def test_random_configurations_valid_or_clear_error(case):
    note({k: (v.shape, v.dtype) if isinstance(v, np.ndarray) else v
          for k, v in case.items()})
    valid, shape = expected(case)
    before = [a.copy() for a in (case["x"], case["w"], case["b"]) if a is not None]
    if not valid:
        with pytest.raises((ValueError, TypeError)):
            _run_any(case)
    else:
        y = _run_any(case)
        assert y.shape == shape
        assert y.dtype == case["x"].dtype
        want = _ref_any(case, shape)
        mag = np.max(np.abs(want)) if want.size else 0.0
        tol = 1e-10 if y.dtype == np.float64 else 1e-4
        np.testing.assert_allclose(y, want, rtol=tol, atol=tol * (1 + mag))
    after = [a for a in (case["x"], case["w"], case["b"]) if a is not None]
    for a, c in zip(after, before):
        np.testing.assert_array_equal(a, c)


# ---------------------------------------------------------------------------
# gradient calls with random (possibly wrong) shapes and masks
# ---------------------------------------------------------------------------

@examples(100)
@given(case=conv_cases(), seed=st.integers(0, 2 ** 16),
       perturb=st.sampled_from([None, None, "grad_output", "input_size", "weight_size",
                                "grad_rank", "mask"]),
       transposed=st.booleans())
def test_gradient_arguments_valid_or_clear_error(case, seed, perturb, transposed):
    nd = case["nd"]
    case = dict(case, dtype="float64")
    x, w, _ = _arrays(case, False, seed)
    kw = conv_kwargs(case)
    gy_shape = ref_conv(case, x, w, None).shape
    r = np.random.default_rng(seed)
    gy = r.standard_normal(gy_shape)
    axis = int(r.integers(0, gy.ndim))
    bump = lambda shape: tuple(v + (i == axis) for i, v in enumerate(shape))  # noqa
    mask = (True, True, True)
    in_size, w_size = x.shape, w.shape
    if perturb == "grad_output":
        gy = r.standard_normal(bump(gy_shape))
    elif perturb == "grad_rank":
        gy = gy[None]
    elif perturb == "input_size":
        in_size = x.shape[:1] if x.ndim > 2 else x.shape + (1, 1, 1)
    elif perturb == "weight_size":
        w_size = w.shape[:-1]
    elif perturb == "mask":
        mask = (True, False)
    calls = [lambda: fn("conv{nd}d_input", nd)(in_size, w, gy, **kw),
             lambda: fn("conv{nd}d_weight", nd)(x, w_size, gy, **kw),
             lambda: fn("conv{nd}d_backward", nd)(gy, x, w, output_mask=mask, **kw)]
    relevant = {None: (), "grad_output": (0, 1, 2), "grad_rank": (0, 1, 2),
                "input_size": (0,), "weight_size": (1,), "mask": (2,)}[perturb]
    for i, call in enumerate(calls):
        if i in relevant:
            with pytest.raises((ValueError, TypeError)):
                call()
        else:
            call()
