#!/usr/bin/env python3
"""Do the CPU kernels' hot loops keep their accumulators in registers on a given CPU?

Compiles numbaconv's parallel CPU kernels for one CPU, x86-64 or AArch64,
on whatever machine this runs on, and counts the vector loads and stores to
the stack in every innermost loop of the machine code that does vector
multiply-adds (a "hot" loop).  A register block that does not fit the
register file shows up there: each step reloads and stores accumulators.

For an AArch64 CPU the whole of Numba's pipeline is pointed at AArch64
(llvmlite's process triple is replaced before Numba is imported) and the
compiled code is never run.  Which kernels are compiled, and for which
argument types, is learnt by running a few small public calls with each
kernel replaced by a recorder that only notes its argument types.

Usage::

    python tools/spill_check.py --cpu haswell              # AVX2 + FMA
    python tools/spill_check.py --cpu apple-m1 --fail-over 0
    python tools/spill_check.py --cpu neoverse-n1 --asm-out /tmp/n1.s

Exits 1 when a hot loop stores more than ``--fail-over`` vectors to the
stack per iteration (a spilled accumulator); vectors it only reads from
the stack (a loop-invariant value used as a memory operand) are reported.
"""

import argparse
import os
import re
import sys
import tempfile

AARCH64_CPUS = ("apple-", "neoverse-", "cortex-", "a64fx", "thunderx", "cyclone", "generic-arm")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cpu", default="haswell", help="LLVM CPU name (haswell, apple-m1, ...)")
    p.add_argument("--features", default="", help="LLVM feature string (default: the CPU's)")
    p.add_argument("--arch", choices=["x86_64", "aarch64"],
                   help="default: aarch64 for known AArch64 CPU names, else x86_64")
    p.add_argument("--fail-over", type=int, metavar="N",
                   help="exit 1 when a hot loop stores more than N vectors to the stack")
    p.add_argument("--asm-out", help="write the assembly of every kernel here")
    p.add_argument("--all", action="store_true", help="list every hot loop, not only spills")
    p.add_argument("--kernels", help="comma-separated kernel names (default: all)")
    p.add_argument("--dtypes", default="float32,float64", help="comma-separated float types")
    args = p.parse_args(argv)
    if args.arch is None:
        args.arch = "aarch64" if args.cpu.startswith(AARCH64_CPUS) else "x86_64"
    return args


ARGS = parse_args()
TRIPLE = {"aarch64": "aarch64-unknown-linux-gnu", "x86_64": "x86_64-unknown-linux-gnu"}[ARGS.arch]
CROSS = ARGS.arch == "aarch64"

# Before Numba is imported: the CPU, a cache of its own (nothing is read from
# or written to another cache), and for AArch64 the triple.
os.environ["NUMBA_CPU_NAME"] = ARGS.cpu
os.environ["NUMBA_CPU_FEATURES"] = ARGS.features
os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="spill_check")
os.environ["NUMBACONV_CACHE"] = "0"

import llvmlite.binding as ll  # noqa: E402

if CROSS:
    ll.initialize_all_targets()
    ll.initialize_all_asmprinters()
    ll.get_process_triple = lambda: TRIPLE

import numba  # noqa: E402
from numba.core import codegen as _codegen  # noqa: E402
from numba.core.registry import CPUDispatcher  # noqa: E402

if CROSS:
    _options = _codegen.JITCPUCodegen._customize_tm_options

    def _aarch64_options(self, options):
        # An x86 host asks for its static relocation model; an AArch64 host
        # would use the default one.
        _options(self, options)
        options["reloc"] = "default"
    _codegen.JITCPUCodegen._customize_tm_options = _aarch64_options

import numpy as np  # noqa: E402

import numbaconv  # noqa: E402
from numbaconv.cpu import _target  # noqa: E402

KERNEL_MODULES = ("forward", "broadcast", "broadcast_grad", "panel", "panel_grad", "subpixel",
                  "backward_data", "backward_weight")


class Recorder:
    """Stands in for a kernel: notes the argument types of each call."""

    def __init__(self, kernel):
        self.kernel, self.signatures = kernel, []

    def __call__(self, *args):
        sig = tuple(numba.typeof(a) for a in args)
        if sig not in self.signatures:
            self.signatures.append(sig)


def install_recorders():
    """Replaces every parallel kernel of the CPU backend, in every module
    that names it, by a ``Recorder``; returns them."""
    import importlib
    modules = [importlib.import_module("numbaconv.cpu." + m) for m in KERNEL_MODULES]
    recorders = {}
    for module in modules:
        for name, value in list(vars(module).items()):
            if isinstance(value, CPUDispatcher) and value.targetoptions.get("parallel"):
                recorders.setdefault(id(value), Recorder(value))
    for module in modules:
        for name, value in list(vars(module).items()):
            if id(value) in recorders:
                setattr(module, name, recorders[id(value)])
    return list(recorders.values())


def workload():
    """Small calls that reach every kernel family, in both float types."""
    for dtype in ARGS.dtypes.split(","):
        def a(*shape):
            return np.ones(shape, dtype)
        numbaconv.conv3d(a(1, 16, 6, 6, 6), a(16, 16, 3, 3, 3), padding=1)     # broadcast
        numbaconv.conv3d(a(1, 8, 6, 6, 6), a(4, 8, 3, 3, 3), padding=1)       # panels
        numbaconv.conv3d(a(1, 1, 8, 8, 40), a(1, 1, 3, 3, 3), padding=1)     # pitched, pairs
        numbaconv.conv3d(a(1, 1, 8, 8, 40), a(1, 1, 5, 5, 5), padding=2)     # pitched, fours
        numbaconv.conv3d(a(1, 1, 8, 8, 9), a(1, 1, 3, 3, 3), stride=2)       # rows
        numbaconv.conv_transpose3d(a(1, 16, 4, 4, 4), a(16, 16, 4, 4, 4), stride=2, padding=1)
        numbaconv.conv3d_weight(a(1, 16, 6, 6, 6), (16, 16, 3, 3, 3), a(1, 16, 6, 6, 6),
                                padding=1)                                    # broadcast grad
        numbaconv.conv3d_weight(a(1, 4, 6, 6, 6), (4, 4, 3, 3, 3), a(1, 4, 6, 6, 6), padding=1)
        numbaconv.conv3d_input((1, 16, 6, 6, 6), a(16, 16, 3, 3, 3), a(1, 16, 6, 6, 6),
                               padding=1)


# --- the machine code --------------------------------------------------------

if CROSS:
    BRANCH = re.compile(r"^\s+(?:b(?:\.\w+)?|cbn?z|tbn?z)\s+(?:[^,]+,\s*)*(\.?\w+)\s*$")
    STACK = re.compile(r"\b[qdsv]\d+.*\[(sp|x29)\b")
    STORE = re.compile(r"^\s+(st[rp1]|stur)\w*\s")
    MULTIPLY_ADD = re.compile(r"^\s+(fmla|fmls|fmadd)\s+v")
else:
    BRANCH = re.compile(r"^\s+j\w+\s+(\.?\w+)\s*$")
    STACK = re.compile(r"[xyz]mm\d+.*\((%rsp|%rbp)\)|\((%rsp|%rbp)\).*[xyz]mm\d+")
    STORE = re.compile(r"%[xyz]mm\d+,\s*-?\w*\((%rsp|%rbp)\)\s*$")
    # Vector multiply-adds, or multiplies where the CPU has no FMA.
    MULTIPLY_ADD = re.compile(r"^\s+(vfn?madd\w+|v?mulp[sd])\s+.*[xyz]mm")
LABEL = re.compile(r"^(\.?[\w$.]+):")


def innermost_loops(lines):
    """``(first, last)`` line ranges of the innermost loops of a function's
    assembly: each backward branch closes a loop from its target label; a
    loop is innermost when it holds no other."""
    labels = {}
    for i, line in enumerate(lines):
        m = LABEL.match(line)
        if m:
            labels[m.group(1)] = i
    loops = []
    for i, line in enumerate(lines):
        m = BRANCH.match(line)
        if m and m.group(1) in labels and labels[m.group(1)] < i:
            loops.append((labels[m.group(1)], i))
    return [(a, b) for a, b in loops
            if not any((c, d) != (a, b) and a <= c and d <= b for c, d in loops)]


def hot_loops(asm):
    """``(function, instructions, multiply-adds, stack accesses, stack
    stores)`` per innermost loop with vector multiply-adds; only the stack
    accesses of vector registers count (a spilled loop bound or pointer is
    not an accumulator).  An accumulator kept on the stack is stored there
    in every iteration; a value the loop only reads (a broadcast weight) may
    be read from the stack as an operand, which costs a load, not a spill."""
    found, name, lines = [], None, []
    for line in asm.splitlines() + [".Lfunc_end"]:
        m = re.match(r"^\s+\.type\s+([^,]+),@function", line)
        if m or line.startswith(".Lfunc_end"):
            if name is not None:
                for a, b in innermost_loops(lines):
                    body = [l for l in lines[a:b + 1] if l.startswith(("\t", " "))
                            and not l.strip().startswith((".", "#", "//"))]
                    fmas = sum(1 for l in body if MULTIPLY_ADD.match(l))
                    if fmas:
                        stack = [l for l in body if STACK.search(l)]
                        found.append((name, len(body), fmas, len(stack),
                                      sum(1 for l in stack if STORE.search(l))))
            name, lines = (m.group(1) if m else None), []
        elif name is not None:
            lines.append(line)
    return found


def main():
    print("target:", _target.TARGET._replace(features=_target.TARGET.features[:40]))
    print("blocks: broadcast %d x %d, gradient %d x %d, pitched %d vectors"
          % (_target.BROADCAST_ROWS, _target.BROADCAST_VECTORS, _target.GRAD_ROWS,
             _target.GRAD_VECTORS, _target.PITCHED_VECTORS))
    recorders = install_recorders()
    with np.errstate(all="ignore"):     # the kernels do not run: outputs are garbage
        workload()
    worst, chunks = 0, []
    wanted = ARGS.kernels.split(",") if ARGS.kernels else None
    for rec in recorders:
        if wanted and rec.kernel.__name__ not in wanted:
            continue
        for sig in rec.signatures:
            rec.kernel.compile(sig)
            asm = rec.kernel.inspect_asm(sig)
            chunks.append("// ==== %s %s\n%s" % (rec.kernel.__name__, sig, asm))
            loops = hot_loops(asm)
            stores = max((st for *_, st in loops), default=0)
            reads = max((n - st for *_, n, st in loops), default=0)
            worst = max(worst, stores)
            kinds = ",".join(str(t.dtype) for t in sig if isinstance(t, numba.types.Array))[:7]
            print("%-24s %-8s %3d hot loops, most vector stack stores / reads in one: %d / %d"
                  % (rec.kernel.__name__, kinds, len(loops), stores, reads))
            for fn, n, fmas, acc, st in loops:
                if acc or ARGS.all:
                    print("    %5d insns %4d multiply-adds %4d stack stores %4d reads  %s"
                          % (n, fmas, st, acc - st, fn[-40:]))
    if ARGS.asm_out:
        with open(ARGS.asm_out, "w") as f:
            f.write("\n".join(chunks))
    print("most vector stack stores (spilled accumulators) in a hot loop: %d" % worst)
    if ARGS.fail_over is not None and worst > ARGS.fail_over:
        print("FAIL: over", ARGS.fail_over)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
