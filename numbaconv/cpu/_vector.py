"""Per-kernel vector width: let LLVM use 512-bit vectors where the CPU has them.

LLVM compiles for the host CPU, and on CPUs with AVX-512 its tuning for most
of them (``prefer-256-bit``) makes the loop vectoriser stop at 256-bit
vectors, to spare the clock-speed drop that wide vectors cost on older
parts.  For a convolution's multiply-add loops that halves the peak.  The
process-wide way around it (``NUMBA_CPU_FEATURES``) would change every other
Numba function in the process too, so instead the hot kernels call
``wide_vectors()``, which marks the LLVM function being compiled with the
``"prefer-vector-width"="512"`` attribute: LLVM's per-function subtarget
reads it, and nothing else changes.  On a CPU without AVX-512 the attribute
asks for a width the CPU does not have, and LLVM keeps the widest it has.

Call it as the first statement of a ``prange`` body: Numba compiles that
body into a function of its own, and the attribute belongs to the function
whose code calls it (``inline="always"`` helpers become part of it).
"""

from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._config import NJIT_SERIAL

#: The LLVM function attribute written by ``wide_vectors``.
ATTRIBUTE = '"prefer-vector-width"="512"'


@intrinsic
def wide_vectors(typingctx):
    """Mark the enclosing compiled function for 512-bit vectors (no-op value)."""
    def codegen(context, builder, signature, args):
        # llvmlite's attribute set validates names against a list of flag
        # attributes; a key="value" string attribute is written verbatim
        # into the IR, which is what LLVM expects for this one.
        set.add(builder.function.attributes, ATTRIBUTE)
        return context.get_dummy_value()
    return types.none(), codegen


#: Bytes of one register block of accumulators (``register_block``): sixteen
#: 512-bit vectors, half of the 32 vector registers of AVX-512.
BLOCK_BYTES = 1024


@intrinsic
def register_block(typingctx, like):
    """A pointer to ``BLOCK_BYTES`` of stack memory for ``like.dtype`` values;
    wrap it with ``numba.carray`` to get the accumulator block of a kernel.

    The buffer is an ``alloca`` in the entry block of the compiled function,
    which LLVM's scalar replacement turns into registers when every access
    has a constant index (loops over the block fully unrolled).  A NumPy
    array would be heap memory, whose loads and stores stay in the loop.
    The buffer lives as long as the function: one per ``prange`` body.
    """
    dtype = like.dtype

    def codegen(context, builder, signature, args):
        ltype = context.get_value_type(dtype)
        count = BLOCK_BYTES // context.get_abi_sizeof(ltype)
        return cgutils.alloca_once(builder, ltype, size=count)
    return types.CPointer(dtype)(like), codegen


#: Bytes of one vector register (AVX-512).
VECTOR_BYTES = 64


@intrinsic
def vector_lanes(typingctx, like):
    """Values of ``like.dtype`` per 512-bit vector, as a compile-time constant
    (an array's ``itemsize`` is read at run time, and a loop bound derived
    from it would not unroll)."""
    lanes = VECTOR_BYTES * 8 // like.dtype.bitwidth

    def codegen(context, builder, signature, args):
        return context.get_constant(types.intp, lanes)
    return types.intp(like), codegen


@njit(inline="always", **NJIT_SERIAL)
def rank1_update(acc, i, v, a0, a1, a2, a3, a4, a5, a6, a7):
    """acc[j, i] += a_j * v for the eight rows of a register block: one
    value broadcast against eight (the inner step of the broadcast kernels)."""
    acc[0, i] += a0 * v
    acc[1, i] += a1 * v
    acc[2, i] += a2 * v
    acc[3, i] += a3 * v
    acc[4, i] += a4 * v
    acc[5, i] += a5 * v
    acc[6, i] += a6 * v
    acc[7, i] += a7 * v
