"""The command line, ``python -m numbaconv``: help text and bench options."""

from __future__ import annotations

import os

import pytest

from numbaconv import __main__ as cli
from numbaconv import _bench


def test_help_is_plain_text(capsys):
    """--help prints no reStructuredText markup (double backticks)."""
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "info" in text and "demo" in text and "bench" in text
    assert "``" not in text and "`" not in text


def test_bench_writes_to_the_current_directory_by_default():
    """A user's run never targets the repository's committed bench/ results."""
    args = _bench._parser().parse_args([])
    assert args.out == "."
    assert os.path.abspath(args.out) == os.getcwd()
    assert _bench._parser().parse_args(["--out", "bench"]).out == "bench"
