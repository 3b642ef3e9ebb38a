"""The runnable scripts under examples/ run and do what they say."""

from __future__ import annotations

import importlib.util
import os

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples")


def load_example(name: str):
    """Import ``examples/<name>.py`` as a module (examples/ is not a package)."""
    path = os.path.join(EXAMPLES, f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recover_blur_kernel(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    example = load_example("recover_blur_kernel")
    out = tmp_path / "kernel.png"
    result = example.main(["--steps", "30", "--size", "12", "--volumes", "2",
                           "--log-every", "10", "--out", str(out)])
    losses = result["losses"]
    assert len(losses) == 30
    assert losses[-1] < 0.5 * losses[0]
    assert all(b < a for a, b in zip(losses[::10], losses[10::10]))
    assert result["relative_error"] == result["relative_error"]  # not NaN
    assert result["out"] == str(out)
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "step    10" in printed and "relative error" in printed
