"""The command line, ``python -m numbaconv``: help text and bench options."""

from __future__ import annotations

import os

import pytest

from numbaconv import __main__ as cli


def test_help_is_plain_text(capsys):
    """--help prints no reStructuredText markup (double backticks)."""
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "info" in text and "demo" in text and "bench" in text
    assert "``" not in text and "`" not in text


def test_info_without_a_driver_asks_for_the_driver_not_the_extra():
    """With numba-cuda installed and no NVIDIA driver, ``info`` says the
    driver is missing instead of telling the user to install the CUDA extra."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    done = subprocess.run([sys.executable, "-m", "numbaconv", "info"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    line = next(r for r in done.stdout.splitlines() if r.startswith("cuda "))
    if "no usable NVIDIA CUDA driver" not in line:
        pytest.skip(f"this machine is not the no-driver case: {line}")
    assert "numba-cuda is installed" in line and "install the NVIDIA driver" in line
    assert "pip install" not in line and "numbaconv[cuda]" not in line
