"""The CPU the kernels are compiled for, and the register-block shapes that follow from it.

Numba compiles every kernel for one target: the host CPU, or the CPU named
by ``NUMBA_CPU_NAME`` with the features of ``NUMBA_CPU_FEATURES`` (features
left empty mean the named CPU's own).  ``TARGET`` reads that target once,
the way Numba's code generator does, and says what the kernels' register
blocks must fit:

* ``vector_bits``: the widest vector register the kernels use (512 where the
  CPU has AVX-512, 256 with AVX, 128 on baseline x86-64 and AArch64 NEON);
* ``registers``: how many of them there are (32 with AVX-512 and on
  AArch64, 16 on other x86-64);
* ``fma``: whether a multiply-add is one instruction;
* ``masked``: whether a vector load or store can skip lanes (AVX and
  AVX-512 can; SSE and NEON cannot, and LLVM would spread a masked
  operation into one branch per lane there).

The vector width and FMA are not read from feature names but asked of LLVM
itself: a small function of multiply-adds is compiled for the target and its
assembly read.  A CPU name implies features (``haswell`` has AVX2 and FMA)
that only LLVM knows, and ``-avx512f`` in the features takes them away
again.

The block shapes (``BROADCAST_ROWS`` ...) are derived here, from these four
facts, so that each kernel's accumulators plus the registers its update step
needs besides them fit in the register file: an accumulator block that does
not fit is kept on the stack, and every multiply-add then loads and stores.
"""

import re
from typing import NamedTuple

import llvmlite.binding as ll
from numba.core import config


class Target(NamedTuple):
    """What the kernels' register blocks are shaped for (see the module)."""

    triple: str
    cpu: str
    features: str
    vector_bits: int
    registers: int
    fma: bool
    masked: bool


def cpu_name() -> str:
    """The CPU Numba compiles for: ``NUMBA_CPU_NAME``, else the host's."""
    return config.CPU_NAME if config.CPU_NAME is not None else ll.get_host_cpu_name()


def cpu_features() -> str:
    """The feature string Numba compiles with: ``NUMBA_CPU_FEATURES`` (empty:
    the CPU's own), else the host's (what Numba's code generator passes)."""
    if config.CPU_FEATURES is not None:
        return config.CPU_FEATURES
    from numba.core.codegen import get_host_cpu_features
    return get_host_cpu_features()


# A function of multiply-adds on the widest vectors any target has, marked as
# the kernels mark theirs (``_vector.wide_vectors``): the registers LLVM
# splits them into are the widest the kernels get.
_PROBE = """
define void @probe(ptr %p) #0 {
  %a = load <16 x float>, ptr %p, align 64
  %b = call <16 x float> @llvm.fmuladd.v16f32(<16 x float> %a, <16 x float> %a, <16 x float> %a)
  store <16 x float> %b, ptr %p, align 64
  ret void
}
declare <16 x float> @llvm.fmuladd.v16f32(<16 x float>, <16 x float>, <16 x float>)
attributes #0 = { "prefer-vector-width"="512" }
"""


def _assembly(triple, cpu, features):
    try:
        target = ll.Target.from_triple(triple)
    except RuntimeError:
        ll.initialize_all_targets()
        ll.initialize_all_asmprinters()
        target = ll.Target.from_triple(triple)
    machine = target.create_target_machine(cpu=cpu, features=features, opt=2)
    module = ll.parse_assembly(_PROBE)
    module.triple = triple
    module.verify()
    return machine.emit_assembly(module)


def read_target(triple=None, cpu=None, features=None) -> Target:
    """The ``Target`` of a triple, CPU and feature string (by default, the
    ones Numba compiles for in this process)."""
    triple = ll.get_process_triple() if triple is None else triple
    cpu = cpu_name() if cpu is None else cpu
    features = cpu_features() if features is None else features
    asm = _assembly(triple, cpu, features)
    if triple.startswith(("x86_64", "i386", "i686")):
        bits = 512 if "zmm" in asm else 256 if "ymm" in asm else 128
        return Target(triple, cpu, features, bits, 32 if bits == 512 else 16,
                      "vfmadd" in asm, bits >= 256)
    if triple.startswith(("aarch64", "arm64")):
        # NEON; SVE's wider vectors are not used.
        return Target(triple, cpu, features, 128, 32, bool(re.search(r"\bfml?a", asm)),
                      False)
    # Anything else: the fewest registers of any SIMD unit the kernels know.
    return Target(triple, cpu, features, 128, 16, bool(re.search(r"\bv?fm?(la|madd)", asm)),
                  False)


#: The target of this process.
TARGET = read_target()

#: Bytes of one vector register.
VECTOR_BYTES = TARGET.vector_bits // 8
#: Whether kernels may use masked vector loads and stores (a plain bool, so
#: that a compiled branch on it is decided at compile time).
MASKED = bool(TARGET.masked)
#: Registers an update step needs besides its accumulators and the vectors
#: it loads: the broadcast value, and without FMA the product before it is
#: added.
_SPARE = 1 if TARGET.fma else 2


def _rows(vectors, most):
    """Rows of a block ``rows x vectors`` of accumulators that fit the
    register file with the ``vectors`` loaded operands and ``_SPARE``
    (at most ``most``)."""
    return max(1, min(most, (TARGET.registers - _SPARE - vectors) // vectors))


#: The broadcast forward's block (``broadcast.py``): vectors of outputs per
#: row, rows = output channels (8 x 3 of the 32 AVX-512 or NEON registers).
BROADCAST_VECTORS = 3
BROADCAST_ROWS = _rows(BROADCAST_VECTORS, 8)
#: The broadcast weight gradient's block (``broadcast_grad.py``): vectors of
#: output channels per row, rows = weight taps.
GRAD_VECTORS = 2
GRAD_ROWS = _rows(GRAD_VECTORS, 8)
#: Whether a vector multiply-add can read one operand from memory (x86), or
#: every vector loaded needs a register of its own until it is used (AArch64
#: and others: LLVM issues a step's loads before its multiply-adds).
LOAD_OPERANDS = TARGET.triple.startswith(("x86_64", "i386", "i686"))
#: Vectors of outputs of the pitched forward's block (``forward.py``), a
#: multiple of four (it is also four rows of a quarter each): half the
#: registers where multiply-adds read the inputs from memory, else as many
#: as fit beside as many loaded inputs and ``_SPARE``.
PITCHED_VECTORS = (TARGET.registers // 2 if LOAD_OPERANDS
                   else 4 * ((TARGET.registers - _SPARE) // 2 // 4))
#: The most accumulators any block above holds (a ``_vector.vector_block``).
BLOCK_SLOTS = max(BROADCAST_ROWS * BROADCAST_VECTORS, GRAD_ROWS * GRAD_VECTORS, PITCHED_VECTORS)
