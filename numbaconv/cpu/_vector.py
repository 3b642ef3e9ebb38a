"""Per-kernel vector width, and register blocks of explicit vectors, for the target's vectors.

LLVM compiles for the host CPU, and on CPUs with AVX-512 its tuning for most
of them (``prefer-256-bit``) makes the loop vectoriser stop at 256-bit
vectors, to spare the clock-speed drop that wide vectors cost on older
parts.  For a convolution's multiply-add loops that halves the peak.  The
process-wide way around it (``NUMBA_CPU_FEATURES``) would change every other
Numba function in the process too, so instead the hot kernels call
``wide_vectors()``, which marks the LLVM function being compiled with the
``"prefer-vector-width"="512"`` attribute: LLVM's per-function subtarget
reads it, and nothing else changes.  The width asked for is the target's
widest (``_target.TARGET``), so on other CPUs the attribute changes nothing.

Call it as the first statement of a ``prange`` body: Numba compiles that
body into a function of its own, and the attribute belongs to the function
whose code calls it (``inline="always"`` helpers become part of it).

The module also holds the kernels' register blocks: ``vector_block`` with
``block_zero``, ``block_update``, ``block_update_at``, ``block_spiller``
and ``block_adder``, a block of explicit vectors (the broadcast forward's
channels x three vectors, the pitched forward's one, two or four rows, the
weight gradient's taps x two vectors) that LLVM keeps in registers (see
the note above ``vector_block``), and ``store_every_other``, the stride-2
store of the sub-pixel path.  Every vector is one register of the target (``_target``),
and every block's shape comes from there.

Multiply-adds are ``llvm.fmuladd``: one fused instruction where the target
has FMA, a multiply and an add where it has not (``llvm.fma`` would become
a call to the C library's exact ``fma`` there).
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._target import BLOCK_SLOTS, TARGET, VECTOR_BYTES

#: The LLVM function attribute written by ``wide_vectors``.
ATTRIBUTE = '"prefer-vector-width"="%d"' % TARGET.vector_bits


@intrinsic
def wide_vectors(typingctx):
    """Mark the enclosing compiled function for the target's widest vectors
    (no-op value)."""
    def codegen(context, builder, signature, args):
        # llvmlite's attribute set validates names against a list of flag
        # attributes; a key="value" string attribute is written verbatim
        # into the IR, which is what LLVM expects for this one.
        set.add(builder.function.attributes, ATTRIBUTE)
        return context.get_dummy_value()
    return types.none(), codegen


@intrinsic
def vector_lanes(typingctx, like):
    """Values of ``like.dtype`` per vector register, as a compile-time constant
    (an array's ``itemsize`` is read at run time, and a loop bound derived
    from it would not unroll)."""
    lanes = VECTOR_BYTES * 8 // like.dtype.bitwidth

    def codegen(context, builder, signature, args):
        return context.get_constant(types.intp, lanes)
    return types.intp(like), codegen


# ---------------------------------------------------------------------------
# Register blocks written as explicit vectors.
#
# A block of accumulators kept in a plain stack buffer reaches registers only
# once LLVM has fully unrolled every loop over it and then promoted the
# buffer (scalar replacement).  For a block of eight rows x three vectors
# (the broadcast forward) that takes two rounds of LLVM's optimisation
# pipeline.  Numba runs one round on a ``prange`` body before the process
# that compiled it calls it, and two on the copy it writes to the on-disk
# cache, so the same source ran several times slower in the process that
# compiled it than in every later one.  These intrinsics emit the vector
# operations themselves, on a buffer of vectors indexed only by constants,
# which the first round promotes.  A buffer has room for ``BLOCK_SLOTS``
# vectors, the largest block any kernel uses; a kernel's block shape is
# fixed when its update intrinsic is made.
# ---------------------------------------------------------------------------


def _vector_type(context, dtype):
    element = context.get_value_type(dtype)
    return ir.VectorType(element, VECTOR_BYTES * 8 // dtype.bitwidth)


def _mangled(vtype):
    """How an LLVM intrinsic's name spells a float vector type (``v16f32``)."""
    return "v%d%s" % (vtype.count, "f32" if isinstance(vtype.element, ir.FloatType) else "f64")


def _splat(builder, value, vtype):
    """A vector of type ``vtype`` with ``value`` in every lane."""
    i32 = ir.IntType(32)
    undef = ir.Constant(vtype, ir.Undefined)
    return builder.shuffle_vector(builder.insert_element(undef, value, ir.Constant(i32, 0)),
                                  undef, ir.Constant(ir.VectorType(i32, vtype.count),
                                                     [0] * vtype.count))


def _block_vector(builder, block, vtype, i):
    """Pointer to vector ``i`` of a block (its rows lie one after another)."""
    return builder.gep(builder.bitcast(block, vtype.as_pointer()),
                       [ir.Constant(ir.IntType(64), i)])


@intrinsic
def vector_block(typingctx, like):
    """A pointer to a stack buffer of ``BLOCK_SLOTS`` vectors of
    ``like.dtype``: the accumulators of a block of ``block_update`` ..."""
    dtype = like.dtype

    def codegen(context, builder, signature, args):
        vtype = _vector_type(context, dtype)
        block = cgutils.alloca_once(builder, ir.ArrayType(vtype, BLOCK_SLOTS))
        return builder.bitcast(block, context.get_value_type(dtype).as_pointer())
    return types.CPointer(dtype)(like), codegen


@intrinsic
def block_zero(typingctx, block):
    """Sets every accumulator of a ``vector_block`` to zero."""
    def codegen(context, builder, signature, args):
        vtype = _vector_type(context, block.dtype)
        for i in range(BLOCK_SLOTS):
            builder.store(ir.Constant(vtype, None), _block_vector(builder, args[0], vtype, i))
        return context.get_dummy_value()
    return types.none(block), codegen


def _rank1_codegen(first, rows, vectors, gathered):
    """The code of ``block_update`` (``gathered`` False: row ``j`` takes
    ``a[ao + j]``) and of ``block_update_at`` (True: ``a[at[a0 + j] + ao]``)."""

    def codegen(context, builder, signature, args):
        blockp, xv, xov, av, aov = args[:5]
        dtype = signature.args[0].dtype
        vtype = _vector_type(context, dtype)
        i64 = ir.IntType(64)
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vtype, [vtype] * 3),
            "llvm.fmuladd." + _mangled(vtype))
        xdata = context.make_array(signature.args[1])(context, builder, xv).data
        adata = context.make_array(signature.args[3])(context, builder, av).data
        xp = builder.bitcast(builder.gep(xdata, [xov]), vtype.as_pointer())
        xs = []
        for v in range(vectors):
            load = builder.load(builder.gep(xp, [ir.Constant(i64, v)]))
            load.align = 1          # the runs start anywhere
            xs.append(load)
        if gathered:
            atdata = context.make_array(signature.args[5])(context, builder, args[5]).data
            a0 = args[6]
        for j in range(rows):
            if gathered:
                at = builder.load(builder.gep(atdata, [builder.add(a0, ir.Constant(a0.type, j))]))
                at = builder.add(at, aov)
            else:
                at = builder.add(aov, ir.Constant(aov.type, j))
            aj = builder.load(builder.gep(adata, [at]))
            aj = _splat(builder, aj, vtype)
            for v in range(vectors):
                ptr = _block_vector(builder, blockp, vtype, (first + j) * vectors + v)
                builder.store(builder.call(fma, [aj, xs[v], builder.load(ptr)]), ptr)
        return context.get_dummy_value()
    return codegen


def block_update(first, rows, vectors):
    """An intrinsic ``update(block, x, xo, a, ao)``: rank-1 updates of rows
    ``first`` to ``first + rows - 1`` of a ``vector_block`` whose rows are
    ``vectors`` vectors long, ``block[first + j, p] += a[ao + j] * x[xo + p]``
    for ``j < rows`` and the ``vectors * V`` values ``p`` (``x``, ``a``:
    1-d C arrays; offsets unsigned, unchecked).  Each update is one
    ``llvm.fmuladd``, as ``contract`` makes of ``acc += a * x`` elsewhere.  The
    shape is fixed when the intrinsic is made, so every index is a constant."""
    assert (first + rows) * vectors <= BLOCK_SLOTS
    codegen = _rank1_codegen(first, rows, vectors, gathered=False)

    @intrinsic
    def update(typingctx, block, x, xo, a, ao):
        return types.none(block, x, xo, a, ao), codegen
    return update


def block_update_at(rows, vectors):
    """An intrinsic ``update(block, x, xo, a, ao, at, a0)`` like
    ``block_update`` (from row 0), but row ``j`` broadcasts
    ``a[at[a0 + j] + ao]``: the broadcast values may lie anywhere (the
    weight gradient's taps read their own places of its tile).  ``at`` is a
    1-d C array of uint64 offsets, ``a0`` unsigned; unchecked."""
    assert rows * vectors <= BLOCK_SLOTS
    codegen = _rank1_codegen(0, rows, vectors, gathered=True)

    @intrinsic
    def update(typingctx, block, x, xo, a, ao, at, a0):
        if not (isinstance(at, types.Array) and at.dtype == types.uint64
                and ao == types.uint64 and a0 == types.uint64):
            raise TypeError("block_update_at: uint64 offsets ao, a0 and table at")
        return types.none(block, x, xo, a, ao, at, a0), codegen
    return update


def block_spiller(count):
    """An intrinsic ``spill(block, out)``: the first ``count`` vectors of a
    ``vector_block``, in order, into the start of the 1-d C array ``out``
    (unchecked)."""
    assert count <= BLOCK_SLOTS

    def codegen(context, builder, signature, args):
        vtype = _vector_type(context, signature.args[0].dtype)
        data = context.make_array(signature.args[1])(context, builder, args[1]).data
        outp = builder.bitcast(data, vtype.as_pointer())
        for i in range(count):
            store = builder.store(builder.load(_block_vector(builder, args[0], vtype, i)),
                                  builder.gep(outp, [ir.Constant(ir.IntType(64), i)]))
            store.align = 1
        return context.get_dummy_value()

    @intrinsic
    def spill(typingctx, block, out):
        return types.none(block, out), codegen
    return spill


def block_adder(rows, vectors):
    """An intrinsic ``add(block, total, t0, stride, count)``: the first
    ``count`` (at most ``rows``) rows of a ``vector_block`` whose rows are
    ``vectors`` vectors long, widened to float64 and added in place to
    ``total[t0 + j*stride:][:vectors*V]`` for row ``j`` (``total``: 1-d C
    float64 array; offsets unsigned, unchecked).

    The weight gradient's flush.  Written as a plain loop, LLVM unrolled it
    and then left it scalar, one widening add at a time: it cannot prove that
    ``total`` and the spilled block do not overlap."""
    assert rows * vectors <= BLOCK_SLOTS

    def codegen(context, builder, signature, args):
        blockp, totalv = args[0], args[1]
        # The offsets and the count as int64, whatever integer type they came in.
        t0, stride, count = (context.cast(builder, v, t, types.int64)
                             for v, t in zip(args[2:], signature.args[2:]))
        dtype = signature.args[0].dtype
        vtype = _vector_type(context, dtype)
        lanes = vtype.count
        f64 = ir.DoubleType()
        wide = ir.VectorType(f64, lanes)
        data = context.make_array(signature.args[1])(context, builder, totalv).data
        i64 = ir.IntType(64)
        for j in range(rows):
            with builder.if_then(builder.icmp_signed(">", count, ir.Constant(i64, j)),
                                 likely=True):
                row = builder.add(t0, builder.mul(stride, ir.Constant(stride.type, j)))
                for v in range(vectors):
                    value = builder.load(_block_vector(builder, blockp, vtype, j * vectors + v))
                    if dtype.bitwidth != 64:
                        value = builder.fpext(value, wide)
                    at = builder.add(row, ir.Constant(row.type, v * lanes))
                    ptr = builder.bitcast(builder.gep(data, [at]), wide.as_pointer())
                    old = builder.load(ptr)
                    old.align = 8
                    store = builder.store(builder.fadd(old, value), ptr)
                    store.align = 8
        return context.get_dummy_value()

    @intrinsic
    def add(typingctx, block, total, t0, stride, count):
        if total.dtype != types.float64 or not all(
                isinstance(t, types.Integer) for t in (t0, stride, count)):
            raise TypeError("block_adder: float64 sums and integer offsets and count")
        return types.none(block, total, t0, stride, count), codegen
    return add


@intrinsic
def store_every_other(typingctx, out, at, src, frm, count, bias):
    """``out[at + 2*j] = src[frm + j] + bias`` for ``j < count``, where
    ``count`` is at most one vector's lanes (more counts as that many),
    leaving the odd places in between untouched (1-d C arrays; offsets
    unsigned, unchecked).

    The stores of a stride-2 phase of a transposed convolution: the values
    are read by a masked load (nothing past ``src[frm + count - 1]`` is
    touched), spread over two vectors' width by a shuffle and written by
    two masked stores, which write only their enabled lanes, so the other
    phase's values in between (written by the same task, before or after)
    are neither read nor overwritten (element by element, each would be a
    scalar store)."""
    if not (isinstance(count, types.Integer) and out.dtype == src.dtype == bias):
        raise TypeError("store_every_other: one float dtype for out, src and bias, "
                        "and an integer count")

    def codegen(context, builder, signature, args):
        outv, atv, srcv, frmv, countv, biasv = args
        dtype = signature.args[0].dtype
        vtype = _vector_type(context, dtype)
        vptr = vtype.as_pointer()
        lanes = vtype.count
        i1, i32, i64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
        mtype = ir.VectorType(i1, lanes)
        itype = ir.VectorType(i64, lanes)
        suffix = "." + _mangled(vtype) + ".p0"
        load = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vtype, [vptr, i32, mtype, vtype]),
            "llvm.masked.load" + suffix)
        store = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [vtype, vptr, i32, mtype]),
            "llvm.masked.store" + suffix)
        n = context.cast(builder, countv, signature.args[4], types.int64)
        n_v = _splat(builder, n, itype)
        undef = ir.Constant(vtype, ir.Undefined)
        sdata = context.make_array(signature.args[2])(context, builder, srcv).data
        first = builder.icmp_signed("<", ir.Constant(itype, list(range(lanes))), n_v)
        value = builder.call(load, [builder.bitcast(builder.gep(sdata, [frmv]), vptr),
                                    ir.Constant(i32, 1), first, undef])
        value = builder.fadd(value, _splat(builder, biasv, vtype))
        odata = context.make_array(signature.args[0])(context, builder, outv).data
        base = builder.bitcast(builder.gep(odata, [atv]), vptr)
        for half in range(2):
            # Lane l of this half is place half*lanes + l: source value
            # (half*lanes + l) // 2 at even places; odd places are never
            # enabled, whatever the count.
            source = [(half * lanes + l) // 2 for l in range(lanes)]
            spread = builder.shuffle_vector(value, undef,
                                            ir.Constant(ir.VectorType(i32, lanes), source))
            even = ir.Constant(mtype, [l % 2 == 0 for l in range(lanes)])
            mask = builder.and_(even, builder.icmp_signed("<", ir.Constant(itype, source), n_v))
            builder.call(store, [spread, builder.gep(base, [ir.Constant(i64, half)]),
                                 ir.Constant(i32, 1), mask])
        return context.get_dummy_value()
    return types.none(out, at, src, frm, count, bias), codegen
