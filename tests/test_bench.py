"""Smoke test of ``python -m numbaconv bench`` (``bench/harness.py``).

One small case (a single-channel 48^3 volume, k3 float32, against
scipy.ndimage and PyTorch), one timed repeat, no subprocess cases: the
harness must check the results, time them, and write a report with ratios.
"""

from __future__ import annotations

import math
import re

import pytest

import importlib.util
import os
import sys

HARNESS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "bench", "harness.py")
_spec = importlib.util.spec_from_file_location("bench_harness", HARNESS)
_bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _bench
_spec.loader.exec_module(_bench)

def test_bench_writes_to_the_current_directory_by_default():
    """A user's run never targets the repository's committed bench/ results."""
    args = _bench._parser().parse_args([])
    assert args.out == "."
    assert os.path.abspath(args.out) == os.getcwd()
    assert _bench._parser().parse_args(["--out", "bench"]).out == "bench"


pytest.importorskip("torch")


def test_quick_bench_writes_results(tmp_path, capsys):
    rc = _bench.main(["--quick", "--no-memory", "--no-startup", "--repeats", "1",
                      "--cases", "single_k3_f32", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    results = (tmp_path / "RESULTS.md").read_text()
    assert "single_k3_f32" in results
    assert re.search(r"\| \d+\.\d\dx \|", results), results   # a ratio cell
    assert "PyTorch" in results and "--quick" in results
    assert str(tmp_path) not in results                       # no machine paths
    assert "ratio" in printed


def test_unknown_case_is_rejected(capsys):
    assert _bench.main(["--cases", "no_such_case"]) == 2
    assert "no_such_case" in capsys.readouterr().err


def test_check_close_rejects_a_wrong_result():
    import numpy as np
    a = np.ones((2, 3), np.float32)
    assert _bench.check_close("c", "peer", (a,), (a.copy(),), ("output",)) == 0.0
    b = a.copy()
    b[1, 2] = 1.01
    with pytest.raises(_bench.Mismatch, match="output differs from peer"):
        _bench.check_close("c", "peer", (a,), (b,), ("output",))


def test_portable_command_hides_absolute_out(tmp_path):
    assert _bench._portable(["--out", str(tmp_path), "--quick"]) == ["--out", "DIR", "--quick"]
    assert _bench._portable(["--out", "bench"]) == ["--out", "bench"]


def test_mismatch_aborts_before_timing(tmp_path, monkeypatch, capsys):
    import numpy as np
    ones = np.ones((1, 1, 4, 4, 4))

    def build(env, quick):
        wrong = _bench.PeerRun("peer", lambda: ones * 2, 1.0)
        return _bench.Prepared(lambda: ones, [wrong], ("output",), 1.0, (1, 1), 64,
                               np.float64, "a broken case")

    monkeypatch.setattr(_bench, "CASES", [_bench.Case("broken", build)])
    rc = _bench.main(["--cases", "broken", "--no-memory", "--no-startup",
                      "--out", str(tmp_path)])
    assert rc == 1
    assert "MISMATCH" in capsys.readouterr().err
    assert not (tmp_path / "RESULTS.md").exists()


def test_numba_alone_startup_row_has_no_target():
    """The start-up table's reference row: Numba by itself, timed like the
    ops (its first call includes importing the probe), never a target."""
    result = _bench._startup_worker(_bench.NUMBA_ALONE, 0.25)
    assert result["import_s"] == 0.25
    # Both calls are timed, but their order is not asserted: under load a
    # second call can take longer than the first (timings belong to the bench).
    assert set(result) == {"import_s", "first_s", "second_s"}
    assert all(math.isfinite(result[k]) and result[k] >= 0.0
               for k in ("first_s", "second_s"))
    row = _bench.StartupRow(_bench.NUMBA_ALONE, 0.1, 2.0, 0.6, 0.01, None)
    cells = _bench.startup_cells(row)
    assert row.met is None and cells[-2:] == ("-", "-")
    op = _bench.StartupRow("conv3d", 0.1, 2.0, 0.6, 0.01)
    assert op.met is False and _bench.startup_cells(op)[-2:] == ("<= 0.5 s", "NO")
