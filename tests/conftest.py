"""Shared fixtures and helpers for the numbaconv test suite."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

# ``import naive`` works whether or not ``tests`` is a package.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

#: Relative tolerance per dtype (see :func:`assert_close`).
RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}


@pytest.fixture
def rng():
    """A seeded generator, fresh for every test."""
    return np.random.default_rng(20240601)


@pytest.fixture
def torch():
    """The torch module (CPU, float64 default untouched), or skip."""
    return pytest.importorskip("torch")


@pytest.fixture
def F(torch):
    """``torch.nn.functional``, or skip when torch is absent."""
    import torch.nn.functional as functional
    return functional


def importorskip_torch():
    """For use outside fixtures (e.g. inside helper functions)."""
    return pytest.importorskip("torch")


def random_array(rng, shape, dtype=np.float64):
    """Standard-normal array of ``dtype`` (values exactly representable)."""
    return rng.standard_normal(shape).astype(dtype)


def tolerance(dtype):
    return RTOL[np.dtype(dtype)]


def assert_close(actual, desired, dtype=None, magnitude=None, err_msg=""):
    """Compare a result with a float64 reference.

    The check is ``|actual - desired| <= rtol * (|desired| + magnitude)``
    elementwise, where ``rtol`` is 1e-12 for float64 and 1e-5 for float32
    (``dtype`` defaults to ``actual.dtype``) and ``magnitude`` bounds the size
    of the terms that were summed: pass the same computation applied to
    absolute values (``sum |terms|``, elementwise or a scalar); without it
    ``max |desired|`` is used.  Shapes must match exactly.
    """
    actual = np.asarray(actual)
    desired = np.asarray(desired, dtype=np.float64)
    assert actual.shape == desired.shape, (
        f"shape mismatch: got {actual.shape}, expected {desired.shape}. {err_msg}")
    rtol = tolerance(dtype if dtype is not None else actual.dtype)
    if magnitude is None:
        magnitude = np.max(np.abs(desired)) if desired.size else 0.0
    magnitude = np.asarray(magnitude, dtype=np.float64)
    bound = rtol * (np.abs(desired) + magnitude) + np.finfo(np.float64).tiny
    err = np.abs(actual.astype(np.float64) - desired)
    bad = ~(err <= bound)  # NaN counts as bad
    if bad.any():
        idx = np.argwhere(bad)[0]
        worst = np.nanmax(np.where(bad, err / bound, 0.0))
        raise AssertionError(
            f"{int(bad.sum())} of {bad.size} elements differ beyond tolerance "
            f"(rtol={rtol:g}); first at {tuple(idx)}: got {actual[tuple(idx)]!r}, "
            f"expected {desired[tuple(idx)]!r}, bound {bound[tuple(idx)]!r}; "
            f"worst err/bound {worst:.3g}. {err_msg}")


def to_torch(torch, a):
    """NumPy -> torch tensor (copy, same dtype)."""
    return torch.from_numpy(np.ascontiguousarray(a).copy())


def pairwise_cases(factors, seed, extra=0, candidates=40, valid=None):
    """A seeded covering array: every pair of values of two factors appears.

    ``factors`` maps a name to a list of values.  Cases are built greedily:
    among ``candidates`` random draws (rejecting those ``valid`` says no to)
    keep the one covering the most not-yet-seen pairs, until every pair that
    can occur is seen; ``extra`` random valid cases are then added.  Returns
    a list of dicts, the same list for the same arguments.
    """
    import itertools
    names = list(factors)
    r = np.random.default_rng(seed)

    def draw():
        while True:
            case = {n: factors[n][r.integers(len(factors[n]))] for n in names}
            if valid is None or valid(case):
                return case

    def pairs(case):
        return {(a, repr(case[a]), b, repr(case[b]))
                for a, b in itertools.combinations(names, 2)}

    # the pairs that some valid case can cover (estimated by sampling)
    reachable = set()
    for _ in range(4000):
        reachable |= pairs(draw())
    uncovered = set(reachable)
    cases = []
    while uncovered:
        best = max((draw() for _ in range(candidates)),
                   key=lambda c: len(pairs(c) & uncovered))
        gain = pairs(best) & uncovered
        if not gain:
            # pick a case built around one uncovered pair
            a, va, b, vb = sorted(uncovered)[0]
            for _ in range(2000):
                c = draw()
                if repr(c[a]) == va and repr(c[b]) == vb:
                    best = c
                    break
            else:
                uncovered.discard((a, va, b, vb))
                continue
            gain = pairs(best) & uncovered
        uncovered -= gain
        cases.append(best)
    cases += [draw() for _ in range(extra)]
    return cases


def case_id(case):
    """A short readable pytest id for a dict case."""
    parts = []
    for k, v in case.items():
        if isinstance(v, type) or hasattr(v, "__name__"):
            v = getattr(v, "__name__", v)
        parts.append(f"{k}={v}")
    return "-".join(str(p) for p in parts).replace(" ", "")


def case_seed(case):
    """A stable per-case seed (``hash`` of a str is salted per process)."""
    import zlib
    return zlib.crc32(case_id(case).encode())
