"""Every ```python block of the README runs, in order, in one namespace."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(python_blocks()) >= 3


def test_readme_examples_run(capsys):
    namespace = {}
    for block in python_blocks():
        if "import cupy" in block or "import torch" in block or "cuda" in block:
            continue  # GPU interop examples need a GPU and its libraries
        exec(compile(block, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "expected input (1, 8, 5, 5, 5) to have 6 channels" in printed
