"""Registers, spills, shared memory and occupancy of every CUDA kernel variant.

No GPU is needed: each variant is compiled to PTX by numba-cuda's NVVM
(``numba.cuda.compile_ptx`` for compute capability 8.0, with the argument
types a real call gives it) and assembled by ``ptxas -v`` for sm_80 (A100)
and sm_90 (H100).  For each variant the table gives registers per thread,
spill bytes, stack frame, the dynamic shared memory the plan gives a typical
call of that variant, and the resident blocks and occupancy (warps per
multiprocessor) that registers and shared memory allow.

The exit status is non-zero when any variant spills registers or could not
launch at all (too many registers or too much shared memory for one block),
when a representative call does not reach the variant it stands for, or
when a tool is missing.  By default the tiled forward variants are compiled at
their widest register block (8 output channels, 4 for the single-channel
kernel, bias and guard on): narrower blocks are subsets of them.  ``--all``
compiles every block width, bias and guard combination too.

Usage::

    PYTHONPATH=. python bench/gpu_resources.py [--all] [--ptxas PATH]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time


#: Per-multiprocessor limits: registers, threads, blocks, shared memory
#: (bytes, what one multiprocessor can give its blocks).
LIMITS = {
    "sm_80": dict(regs=65536, threads=2048, blocks=32, smem=164 * 1024),
    "sm_90": dict(regs=65536, threads=2048, blocks=32, smem=228 * 1024),
}
#: Registers are allocated per warp in units of this many.
REG_UNIT = 256
#: Shared memory the CUDA runtime reserves per block (sm_80 and later).
SMEM_RESERVED = 1024


def find_ptxas(explicit=None):
    """The ``ptxas`` to use: ``explicit``, the one in the ``nvidia-cuda-nvcc``
    wheel beside NVVM (its PTX version matches), else the one on PATH."""
    if explicit:
        return explicit
    try:
        import nvidia
        for root in nvidia.__path__:
            hits = sorted(glob.glob(os.path.join(root, "*", "bin", "ptxas")))
            if hits:
                return hits[-1]
    except ImportError:
        pass
    return shutil.which("ptxas")


def assemble(ptxas, ptx, arch):
    """``ptxas -v`` on one PTX text: (registers, spill bytes, stack bytes)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.ptx")
        with open(path, "w") as fh:
            fh.write(ptx)
        res = subprocess.run([ptxas, "-v", f"-arch={arch}", path, "-o",
                              os.path.join(tmp, "k.cubin")],
                             capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"ptxas failed for {arch}: {res.stderr.strip()}")
    regs = max(int(m) for m in re.findall(r"Used (\d+) registers", res.stderr))
    spill = sum(int(a) + int(b) for a, b in re.findall(
        r"(\d+) bytes spill stores, (\d+) bytes spill loads", res.stderr))
    stack = max([int(m) for m in re.findall(r"(\d+) bytes stack frame",
                                             res.stderr)] or [0])
    return regs, spill, stack


def occupancy(arch, regs, threads, smem):
    """Resident blocks per multiprocessor and the fraction of its warps."""
    lim = LIMITS[arch]
    warps = -(-threads // 32)
    per_warp = -(-regs * 32 // REG_UNIT) * REG_UNIT
    by_regs = lim["regs"] // (per_warp * warps)
    by_threads = lim["threads"] // threads
    by_smem = (lim["smem"] // (smem + SMEM_RESERVED)) if smem else lim["blocks"]
    blocks = min(by_regs, by_threads, by_smem, lim["blocks"])
    return blocks, blocks * warps / (lim["threads"] // 32)


def forward_cases(plan):
    """(single-channel?, compile-time taps, (rd, ty), input spatial shape,
    real kernel shape) for every tiled-forward variant a call can reach:
    3-D volumes (register block along depth), 2-D images (depth and height
    exchanged, so the kernel taps read (KH, 1, KW)) and 1-D signals."""
    cases = []
    general = (0, 0, 0)
    for taps in sorted(plan.SPECIALISED) + [general]:
        real3 = taps if taps != general else (2, 2, 2)
        cases.append((False, taps, (4, 4), (24, 24, 40), real3))
        cases.append((True, taps, (plan.SINGLE_RD, 4), (24, 24, 40), real3))
        if taps[1] == 1:
            real2 = (1, taps[0], taps[2]) if taps != general else (1, 2, 2)
            cases.append((False, taps, (4, 1), (1, 64, 64), real2))
            cases.append((True, taps, (plan.SINGLE_RD, 1), (1, 64, 64),
                          real2))
        if taps[:2] == (1, 1) or taps == general:
            real1 = (1, 1, taps[2]) if taps != general else (1, 1, 2)
            cases.append((False, taps, (1, 1), (1, 1, 256), real1))
    return [c for c in cases if not (c[0] and c[1] == general)]


def variants(full):
    """(name, kernel dispatcher, argument types, threads, dynamic shared
    memory, problem check) for every kernel variant."""
    from numba import types

    from numbaconv.cuda import backward_data as bd
    from numbaconv.cuda import backward_weight as bw
    from numbaconv.cuda import forward as fw
    from numbaconv.cuda import padding as pad
    from numbaconv.cuda import plan
    from numbaconv import _config
    from numbaconv.cuda._indexing import reduction_threads

    i64, u3 = types.int64, types.UniTuple(types.int64, 3)
    flag = types.int32[::1]
    out = []
    for dt, size in ((types.float32, 4), (types.float64, 8)):
        a1, a5 = dt[::1], types.Array(dt, 5, "C")
        ptup = types.UniTuple(i64, len(fw._PARAMS))
        for slide, taps, layout, xs_sp, real in forward_cases(plan):
            kbs = [1, 2, 4] if slide else [1, 2, 4, 8][:4 if size == 4 else 3]
            for kb in (kbs if full else kbs[-1:]):
                C = 1 if slide else 32
                xs = (1, C) + xs_sp
                ws = (kb, C) + real
                os_ = (1, kb) + tuple(L - k + 1 for L, k in zip(xs_sp, real))
                p = plan.forward_plan(xs, ws, os_, (1, 1, 1), (1, 1, 1),
                                      (0, 0, 0), 1, size)
                if p.kernel == "direct":
                    continue      # too large a halo for this dtype: unused
                want = ("single_channel" if slide else "tiled", taps) \
                    + layout + (kb,)
                got = (p.kernel, p.taps, p.rd, p.ty, p.kb)
                for guarded in ((False, True) if full else (True,)):
                    for bias in ((False, True) if full else (True,)):
                        k = fw.make_tiled_kernel(taps, layout[0], kb,
                                                 layout[1], slide, guarded)
                        sig = (a1, a1, a1 if bias else types.none, ptup,
                               flag if guarded else a1, a1)
                        name = (f"{'single' if slide else 'tiled'} "
                                f"taps={taps} rd={layout[0]} "
                                f"ty={layout[1]} kb={kb}"
                                f"{' bias' if bias else ''}"
                                f"{' guard' if guarded else ''} {dt}")
                        out.append((name, k, sig, plan.THREADS,
                                    p.smem, got == want))
        wp = plan.weight_plan((4, 32, 32, 32, 32), (32, 32, 3, 3, 3),
                              (4, 32, 32, 32, 32), (1, 1, 1), (1, 1, 1),
                              (1, 1, 1), 1, size)
        out.append((f"weight chunked {dt}", bw.chunked_weight_kernel,
                    (a1, a1, types.UniTuple(i64, 30), a1), plan.THREADS,
                    wp.smem, wp.kernel == "chunked"))
        out.append((f"weight sum chunks {dt}", bw.sum_chunks_kernel,
                    (a1, i64, a1), _config.CUDA_BLOCK, 0, True))
        out.append((f"bias partial {dt}", bw.bias_partial_kernel,
                    (a1, i64, i64, i64, i64, a1), plan.BG_THREADS,
                    plan.BG_THREADS * size, True))
        out.append((f"bias sum chunks {dt}",
                    bw.sum_chunks_kernel_strided, (a1, i64, a1),
                    _config.CUDA_BLOCK, 0, True))
        red = reduction_threads(1 << 40)    # the largest block it launches
        out.append((f"weight direct {dt}", bw.backward_weight_kernel,
                    (a5, a5, u3, u3, u3, i64, a5), red, red * size, True))
        out.append((f"finite flag {dt}", bd.finite_flag_kernel,
                    (a1, flag), bd.FLAG_THREADS, bd.FLAG_THREADS * 4, True))
        out.append((f"adjoint weight {dt}", bd.adjoint_weight_kernel,
                    (a5, i64, u3, u3, u3, a5), _config.CUDA_BLOCK, 0, True))
        out.append((f"fill phase {dt}", bd.fill_phase_kernel,
                    (a1, u3, u3, u3, flag, a5), _config.CUDA_BLOCK, 0, True))
        out.append((f"gather data gradient {dt}",
                    bd.backward_data_kernel,
                    (a5, a5, a1, u3, u3, u3, i64, flag, a5),
                    _config.CUDA_BLOCK, 0, True))
        out.append((f"direct forward {dt}", fw.forward_kernel,
                    (a5, a5, a1, u3, u3, u3, i64, a5), _config.CUDA_BLOCK, 0,
                    True))
        out.append((f"add bias {dt}", bd.add_bias_kernel, (a5, a1),
                    _config.CUDA_BLOCK, 0, True))
        out.append((f"pad {dt}", pad.pad_kernel, (a5, u3, i64, a5),
                    _config.CUDA_BLOCK, 0, True))
        out.append((f"pad constant {dt}", pad.pad_constant_kernel,
                    (a5, u3, dt, a5), _config.CUDA_BLOCK, 0, True))
        out.append((f"pad backward {dt}", pad.pad_backward_kernel,
                    (a5, u3, u3, i64, a5), _config.CUDA_BLOCK, 0, True))
    return out


class _TargetDevice:
    """What numba-cuda asks of "the current device" when it compiles a
    device function called by a kernel: only its compute capability."""

    compute_capability = (8, 0)


def _compile_device_functions_without_a_gpu():
    """Device functions (``@cuda.jit(device=True)``) are compiled for the
    current device's compute capability; with no GPU there is none, so the
    dispatcher is told the one ``compile_ptx`` targets.  Only this script
    does that, and the PTX is what it would be on an sm_80 device."""
    import numba.cuda.dispatcher as dispatcher
    dispatcher.get_current_device = _TargetDevice


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all", action="store_true",
                    help="every block width, bias and guard combination")
    ap.add_argument("--ptxas", help="path of the ptxas to run")
    ap.add_argument("--only", help="compile only variants whose name "
                    "contains this text")
    args = ap.parse_args(argv)
    ptxas = find_ptxas(args.ptxas)
    if ptxas is None:
        print("gpu_resources: no ptxas found (install the nvidia-cuda-nvcc "
              "wheel or a CUDA toolkit)", file=sys.stderr)
        return 2
    from numba import cuda
    _compile_device_functions_without_a_gpu()
    started = time.perf_counter()
    bad = []
    rows = []
    for name, fn, sig, threads, smem, reached in variants(args.all):
        if args.only and args.only not in name:
            continue
        ptx, _ = cuda.compile_ptx(fn.py_func, sig, cc=(8, 0),
                                  launch_bounds=fn.targetoptions.get(
                                      "launch_bounds"))
        cells = [name, str(threads), str(smem)]
        for arch in LIMITS:
            regs, spill, stack = assemble(ptxas, ptx, arch)
            blocks, occ = occupancy(arch, regs, threads, smem)
            cells += [str(regs), str(spill), str(stack), str(blocks),
                      f"{occ:.0%}"]
            if spill:
                bad.append(f"{name} spills {spill} bytes on {arch}")
            if blocks == 0:
                bad.append(f"{name} cannot launch on {arch}: {regs} "
                           f"registers x {threads} threads, {smem} B shared")
        if not reached:
            bad.append(f"{name}: its representative call takes another "
                       "kernel (plan changed?)")
        rows.append(cells)
        print(" | ".join(cells), flush=True)
    head = ["variant", "threads", "dyn smem B"] + [
        f"{a} {h}" for a in LIMITS for h in
        ("regs", "spill B", "stack B", "blocks/SM", "occupancy")]
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")
    print(f"\n{len(rows)} variants, ptxas {ptxas}, "
          f"{time.perf_counter() - started:.0f} s")
    for line in bad:
        print("FAIL:", line, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
