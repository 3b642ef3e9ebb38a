"""The CPU backend imports each kernel module when one of its methods is
first used (``numbaconv.cpu._Kernel``): a forward convolution in a fresh
process does not pay for the gradient modules."""

import json
import subprocess
import sys
import textwrap

import numpy as np

import numbaconv
from numbaconv import cpu


def loaded_after(statement):
    """The ``numbaconv.cpu`` submodules a fresh process holds after running
    ``statement`` (with ``cpu`` imported; nothing is compiled)."""
    code = textwrap.dedent(f"""
        import json, sys
        import numbaconv.cpu as cpu
        {statement}
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("numbaconv.cpu."))))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_importing_the_backend_imports_no_kernel_module():
    loaded = loaded_after("pass")
    assert not loaded & {"numbaconv.cpu.forward", "numbaconv.cpu.backward_data",
                         "numbaconv.cpu.backward_weight", "numbaconv.cpu.padding"}


def test_the_forward_method_imports_only_what_the_forward_needs():
    loaded = loaded_after("cpu.BACKEND.forward")
    assert "numbaconv.cpu.forward" in loaded
    assert "numbaconv.cpu.backward_weight" not in loaded
    assert "numbaconv.cpu.backward_data" not in loaded


def test_a_method_is_resolved_once_and_then_is_the_kernel_itself():
    from numbaconv.cpu.backward_weight import bias_grad_cpu
    first = cpu.BACKEND.bias_grad
    assert first is cpu.BACKEND.bias_grad is cpu.CPUBackend.bias_grad
    assert first.__wrapped__ is bias_grad_cpu
    assert not isinstance(vars(cpu.CPUBackend)["bias_grad"], cpu._Kernel)
    # The resolved method computes: the bias gradient is the sum of gy over
    # every axis but the channels.
    gy = np.arange(24, dtype=np.float64).reshape(2, 3, 1, 1, 4)
    gb = np.empty(3)
    first(gy, gb)
    np.testing.assert_allclose(gb, gy.sum(axis=(0, 2, 3, 4)))


def test_every_backend_method_resolves_to_its_kernel():
    from numbaconv.cpu import backward_data, backward_weight, forward, padding
    kernels = {"forward": forward.forward_cpu, "backward_data": backward_data.backward_data_cpu,
               "backward_weight": backward_weight.backward_weight_cpu,
               "bias_grad": backward_weight.bias_grad_cpu, "add_bias": backward_data.add_bias_cpu,
               "pad": padding.pad_cpu, "pad_backward": padding.pad_backward_cpu}
    for name, kernel in kernels.items():
        assert getattr(numbaconv.cpu.BACKEND, name).__wrapped__ is kernel, name


def test_a_subclass_keeps_its_own_methods():
    """A subclass that overrides a method and calls the backend's through
    ``super()`` keeps its override: the kernel is put on the backend's class,
    not on the subclass the first access came through."""
    calls = []

    class Backend:      # a fresh class: CPUBackend's methods may be resolved already
        add_bias = cpu._Kernel(".backward_data", "add_bias_cpu")

    class Counting(Backend):
        def add_bias(self, out, b):
            calls.append(1)
            return super().add_bias(out, b)

    backend = Counting()
    out = np.zeros((1, 2, 1, 1, 3))
    for _ in range(3):
        backend.add_bias(out, np.array([1.0, 2.0]))
    assert len(calls) == 3
    np.testing.assert_array_equal(out[0, :, 0, 0], [[3.0] * 3, [6.0] * 3])
    assert "add_bias" in vars(Counting) and not isinstance(vars(Counting)["add_bias"],
                                                            staticmethod)


def _array_work_outside_prange(function):
    """The statements of a ``parallel=True`` kernel, outside its ``prange``
    loops, that Numba turns into parallel loops of their own: NumPy calls
    that fill an array and slice assignments."""
    import ast
    makes_no_loop = {"np.empty", "np.empty_like", "np.int64", "np.uint64", "np.intp",
                     "np.float32", "np.float64"}
    found = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.For) and ast.unparse(child.iter).startswith("prange("):
                continue
            if isinstance(child, ast.Call):
                name = ast.unparse(child.func)
                if name.startswith("np.") and name not in makes_no_loop:
                    found.append(ast.unparse(child))
            if isinstance(child, (ast.Assign, ast.AugAssign)):
                targets = child.targets if isinstance(child, ast.Assign) else [child.target]
                if any(isinstance(t, ast.Subscript) and isinstance(t.slice, (ast.Slice, ast.Tuple))
                       and ":" in ast.unparse(t.slice) for t in targets):
                    found.append(ast.unparse(child))
            visit(child)
    visit(function)
    return found


def test_parallel_kernels_launch_one_parallel_loop():
    """In a ``parallel=True`` kernel, ``np.zeros`` or ``a[:] = b`` outside the
    ``prange`` loop is a parallel loop of its own, launched on every call
    (1-4 us each): the kernels make such arrays in serial helpers
    (``_index.task_counter``, ``_index.bias_like``)."""
    import ast
    import pathlib
    checked = 0
    for path in sorted(pathlib.Path(cpu.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and any(
                    "NJIT_PARALLEL" in ast.unparse(d) for d in node.decorator_list):
                checked += 1
                assert _array_work_outside_prange(node) == [], f"{path.name}: {node.name}"
    assert checked >= 10
