"""Reduction kernels for codegen.py's KernelWriter: the prologue loop nest accumulating
into a float64 (sums of floats) or same-dtype (max) accumulator, then the epilogue loop over
the result shape computing the fused consumers."""

from __future__ import annotations

from symgraph.program import element_count, may_reduce_nothing, reduced_dims

REDUCE_CHUNKS = 4  # row ranges of a large reduction over axis 0, summed on the thread team
# ... when the dims known at compile time hold this many elements (a symbolic batch counts as
# 1): the chunks' code costs compile time (M2's 20 reductions over its batch took 0.5 s more,
# +46% of its native compile, for no measurable gain at batch 128), large ones pay it back
# (a sum over 128 x 1024: 114 vs 237 us).
CHUNKED_SIZE = 1 << 17


class ReduceWriter:
    """KernelWriter's reduce kernels (needs its loops, operands and invariants)."""

    def reduce(self) -> None:
        k, root = self.k, self.k.root
        x = root.inputs[0]
        axes = set(root.attr["axes"])
        keep = root.attr["keepdims"]
        self.invariants(1)
        self.invariant_results(1)
        inv_locals = set(self.local)
        self.random_keys(k.nodes, 1)
        self.pre_loop_loads = set(self.loads)
        out_shape = tuple(root.shape)
        is_sum = root.op == "sum"
        acc_dtype = "float64" if is_sum and root.dtype.startswith("float") else root.dtype
        if is_sum:
            init = self.scalar.literal(0, acc_dtype)
        elif root.dtype.startswith("float"):
            init = f"np.{acc_dtype}(-np.inf)"
        else:
            init = f"np.iinfo(np.{root.dtype}).min"
        # max-reduce: the renderer's maximum template, with named slots for `format` below
        combine = ("{a} + {b}" if is_sum else
                   self.scalar.template("maximum", root.dtype).format("{b}", "{a}"))
        self.empty_check(root)
        out_size = self.scalar.size_expr(out_shape)
        nd = len(k.domain)
        chunked = 0 in axes and element_count(k.domain) >= CHUNKED_SIZE
        if chunked:  # partial results of REDUCE_CHUNKS row ranges, on the thread team
            self.emit(1, f"cn = {REDUCE_CHUNKS} if {self.scalar.size_expr(k.domain)} >= "
                         f"{REDUCE_CHUNKS * 8192} else 1")
            self.emit(1, f"cl = ({self.dims(k.domain)[0]} + cn - 1) // cn")
        self.emit(1, f"acc = np.full({'cn * ' if chunked else ''}{out_size}, {init}, "
                     f"np.{acc_dtype})")
        suffix = nd  # the trailing run of reduced axes accumulates in a scalar `s`
        while suffix > 0 and (suffix - 1) in axes:
            suffix -= 1
        dims = self.dims(k.domain)
        idx = [f"i{a}" for a in range(nd)]
        if chunked:
            self.emit(1, "for ct in prange(cn):")
            dims[0] = f"ct * cl, min({dims[0]}, ct * cl + cl)"
        first = 1 + chunked  # the depth of axis 0's loop
        for a in range(nd):
            if a == suffix:
                self.emit(first + a, f"s = {init}")
            # rows of a reduction that keeps axis 0 are independent
            loop = "prange" if a == 0 and 0 not in axes else "range"
            self.emit(first + a, f"for i{a} in {loop}({dims[a]}):")
        depth = first + nd
        self.emit(depth, f"f = {self.flat_of(k.domain, idx)}")
        for n in k.nodes:
            if n is root or n in k.epilogue:
                continue
            self.compute(n, idx, depth, "f")
            self.store(n, "f", depth)
        val = self.value(x, idx, depth)
        if acc_dtype != root.dtype:
            val = f"np.{acc_dtype}({val})"

        def out_offset(upto):
            oi = ["0" if a in axes else idx[a] for a in range(nd) if a not in axes or keep]
            if upto < nd:
                oi = ["0" if (a in axes or a >= upto) else idx[a]
                      for a in range(nd) if a not in axes or keep]
            return self.flat_of(out_shape, oi)

        part = f"ct * {out_size} + " if chunked else ""
        if suffix < nd:
            self.emit(depth, "s = " + combine.format(a="s", b=val))
            o = part + out_offset(suffix)
            self.emit(first + suffix, f"acc[{o}] = " + combine.format(a=f"acc[{o}]", b="s"))
        else:
            o = part + out_offset(nd)
            self.emit(depth, f"acc[{o}] = " + combine.format(a=f"acc[{o}]", b=val))
        if chunked:  # the chunks' partial results, in order
            self.emit(1, "for ct in range(1, cn):")
            self.emit(2, f"for g in range({out_size}):")
            self.emit(3, "acc[g] = " + combine.format(a="acc[g]", b=f"acc[ct * {out_size} + g]"))
        # epilogue over the result shape
        self.local = inv_locals
        self.loads = {k: v for k, v in self.loads.items() if k in self.pre_loop_loads}
        oidx, depth = self.loops(out_shape, 1, prefix="o", parallel=True)
        self.emit(depth, f"g = {self.flat_of(out_shape, oidx)}")
        self.emit(depth, f"v{self.num[root.id]} = {self.scalar.dtype_ctor(root.dtype)}(acc[g])")
        self.local.add(root.id)
        self.store(root, "g", depth)
        for n in k.epilogue:
            self.compute(n, oidx, depth, "g")
            self.store(n, "g", depth)

    def empty_check(self, node) -> None:
        """A max or argmax over no elements has no value: raise (as NumPy does; the driver then
        names the node through the reference) instead of returning -inf or index 0."""
        if not may_reduce_nothing(node):
            return
        size = self.scalar.size_expr(reduced_dims(node))
        self.emit(1, f"if {size} == 0: raise IndexError('a reduction over an empty axis')")
