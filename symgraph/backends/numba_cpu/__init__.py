"""The Numba CPU backend (`backend="numba"`): lowered Program -> generated njit module -> run.

`compile(inputs, results, check_nan)` lowers the graph (symgraph/lower.py) and renders one
Python module (codegen.py). By default that source is translated straight to LLVM IR
(native.py) and compiled and cached as object code (llvmjit.py); with `SYMGRAPH_NATIVE=numba`,
or for a construct the translator does not handle, the module is written into the cache
directory under a hash of its source and imported (cache.py), so Numba compiles it and its own
disk cache makes a second process skip compilation. The module's
`entry` function runs every kernel in order (one dispatch per call); the driver allocates the
result arrays as plain NumPy arrays and passes them in, so the runtime adopts new state without
copying, and passes a variable's own array where inplace.py planned its update in place.
With `workers=k` each kernel is its own nogil function and a thread pool runs the kernel DAG.
Symbolic dims are plain int arguments, so a new batch size never recompiles.

Errors: anything the backend cannot generate raises SymgraphError at compile time. At run
time, an out-of-range label (IndexError inside a kernel) or a NaN with `check_nan=True` makes
the driver re-run the NumPy reference on the same inputs, whose error names the exact node.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
import time
from typing import Sequence

import numpy as np

from symgraph import envvars, inplace
from symgraph.arrays import LIST_ONLY, aligned_empty, held_only_by_attribute, shared
from symgraph.backends.numba_cpu import (
    blas,
    llvmjit,
    native,
)
from symgraph.backends.numba_cpu.cache import load_module, reload_module
from symgraph.backends.numba_cpu.codegen import CpuScalarRenderer, computed_results, generate
from symgraph.backends.numba_cpu.shared_kernels import SHARED
from symgraph.errors import SymgraphError
from symgraph.graph import Node, resolve_shape
from symgraph.lower import Program, lower


def _prepare_numba() -> None:
    """Once per process, with the backend's import: Numba's lowering registries.

    Numba installs them on the first compile or disk-cache load of the process (0.2 s here),
    and every generated module imports blas.py (SciPy's BLAS, 0.3 s). Doing both when the
    backend is imported keeps this fixed per-process cost out of each `sg.function`'s compile
    time; a process that imports the backend is about to compile with it.
    """
    from numba.core.registry import cpu_target

    cpu_target.target_context.refresh()


_prepare_numba()


def _debug(message: str) -> None:
    if envvars.flag("SYMGRAPH_DEBUG"):
        print(f"[symgraph numba] {message}", file=sys.stderr)


class CompiledProgram:
    """The driver around one generated module: binds arguments, calls `entry`, shapes results."""

    def __init__(self, program: Program, module, gen, check_nan: bool, workers: int = 1,
                 native_functions: dict | None = None):
        arg_buffers, symbols = gen.args, gen.symbols
        self.program = program
        self.module = module
        self.native = native_functions is not None  # name -> NativeEntry (entry or kernels)
        self.native_functions = native_functions or {}
        self.entry = self.native_functions.get("entry") if self.native else module.entry
        self.check_nan = check_nan
        self.symbols = [name for name, _ in symbols]
        self.workers = workers
        self.driver = workers > 1 or envvars.flag("SYMGRAPH_NUMBA_DRIVER")
        if self.driver:
            self._setup_driver(gen)
        inputs = {n.id: i for i, n in enumerate(program.inputs)}
        # The entry's arguments: constants filled in once (`template`); per call, `fill` puts
        # (position, kind, ref) in place: 0 an input (its position), 1 a variable (the node),
        # 3 a fresh result array (its slot), 4 a temporary (its index in the workspace).
        # Native entries read only each array's data pointer, so they take 2-D arrays as they
        # are; Numba's signature wants flat ones.
        self.template, self.fill = [], []
        # Result slots: one per computed result buffer, then one per variable whose buffer an
        # update overwrites (inplace.py). An in-place slot gets the variable's own array when
        # nobody else holds it (see _result_arrays), else a fresh one (holding a copy of the
        # variable where the program reads it from that same buffer).
        slots = computed_results(program)
        slots += [b for b in program.buffers if b.kind == "variable"
                  and any(v is b.node for v in program.inplace.values())]
        slot = {b.id: i for i, b in enumerate(slots)}
        self.result_shapes = [(b.shape, np.dtype(b.dtype), tuple(b.shape)
                               if all(isinstance(d, int) for d in b.shape) else None)
                              for b in slots]  # per slot: (shape, dtype, static shape or None)
        self.inplace = []  # (slot, variable, whether a fresh array needs the variable's value)
        for bid, var in program.inplace.items():
            read = var.id in program.buffer_of
            self.inplace.append((slot[program.buffer_of[var.id] if read else bid], var, read))
        self.temp_shapes = []  # per temporary: (shape, dtype)
        for b in arg_buffers:
            n = b.node
            if b.id in slot:
                self.fill.append((len(self.template), 3, slot[b.id]))
            elif b.kind in ("temp", "output"):
                self.temp_shapes.append((b.shape, np.dtype(b.dtype)))
                self.fill.append((len(self.template), 4, len(self.temp_shapes) - 1))
            elif b.kind == "input":
                self.fill.append((len(self.template), 0, inputs[n.id]))
            elif b.kind == "variable":
                self.fill.append((len(self.template), 1, n))
            else:
                # a writable copy: a read-only array is another Numba type than the eagerly
                # compiled signature's (the first call compiled the entry a second time)
                self.template.append(np.array(n.attr["value"].array, order="C").reshape(-1))
                continue
            self.template.append(None)
        self.flatten = not (self.native and llvmjit.BY_OBJECT)
        self.result_plan = []
        for r in program.results:
            buf = program.storage(r)
            if buf.id in slot:
                self.result_plan.append((3, slot[buf.id], tuple(r.shape)))
            else:
                src = buf.node
                kind = 0 if src.op == "placeholder" else 1 if src.op == "variable" else 2
                ref = inputs.get(src.id) if kind == 0 else src
                self.result_plan.append((kind, ref, tuple(r.shape)))
        self.pool: list[list[np.ndarray]] = [[] for _ in slots]  # see _result_array
        self.pool_lock = threading.Lock()
        self.workspaces: dict = {}  # dims -> free workspaces (see _workspace)
        if not self.native:
            self._compile_eagerly(gen)

    def _compile_eagerly(self, gen) -> None:
        """Compile `entry` (or every kernel) now, for the exact argument types the driver
        passes, so generation bugs surface as SymgraphError inside `sg.function` and the first
        call is fast. Numba's disk cache is consulted first (a warm start compiles nothing)."""
        from numba import from_dtype, types
        from numba.core.errors import NumbaError

        def array(dtype):
            return types.Array(from_dtype(np.dtype(dtype)), 1, "C")

        start = time.perf_counter()
        try:
            try:
                stats = self._compile_all(gen, array, types)
            except NumbaError:
                raise
            except (EOFError, OSError, AttributeError, ModuleNotFoundError, pickle.PickleError,
                    ValueError) as exc:
                # A cache entry that passed the file checks but still fails to load: rebuild.
                _debug(f"{self.module.__name__}: cache load failed ({exc!r}); recompiling")
                self._reload()
                try:
                    stats = self._compile_all(gen, array, types)
                except OSError as exc:  # Numba cannot write its cache (a full disk): compile
                    _debug(f"{self.module.__name__}: Numba's cache not written ({exc!r})")
                    self._without_disk_cache()
                    stats = self._compile_all(gen, array, types)
        except NumbaError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise SymgraphError(f"numba backend: generated code for {len(self.program.kernels)} "
                                f"kernels failed to compile ({first}); module "
                                f"{self.module.__file__}") from None
        hits = sum(sum(s.cache_hits.values()) for s in stats)
        misses = sum(sum(s.cache_misses.values()) for s in stats)
        how = "loaded from Numba's disk cache" if hits and not misses else "compiled"
        _debug(f"{self.module.__name__}: {how} in {(time.perf_counter() - start) * 1e3:.1f} ms "
               f"(cache hits {hits}, misses {misses})")

    def _without_disk_cache(self) -> None:
        from numba.core.caching import NullCache

        shared = [f for name, f in vars(self.module).items() if name.startswith(SHARED)]
        for fn in self.kernel_fns if self.driver else [self.entry, *shared]:
            fn._cache = NullCache()

    def _reload(self) -> None:
        self.module = reload_module(self.module)
        self.entry = self.module.entry
        if self.driver:
            self.kernel_fns = [getattr(self.module, name) for name in self.kernel_names]

    def _compile_all(self, gen, array, types) -> list:
        """Compile for the driver's argument types; returns the dispatchers' stats."""
        if self.driver:
            types_of = {f"b{b.id}": array(b.dtype) for b in self.program.buffers}
            types_of.update({v: types.int64 for _, v in gen.symbols})
            for fn, names in zip(self.kernel_fns, self.kernel_args):
                fn.compile(tuple(types_of[n] for n in names))
            return [fn.stats for fn in self.kernel_fns]
        sig = tuple(array(b.dtype) for b in gen.args) + (types.int64,) * len(gen.symbols)
        self.entry.compile(sig)
        return [self.entry.stats]

    def __call__(self, arrays: Sequence[np.ndarray], dims: dict) -> list:
        """One run (runtime.Function holds the updated variables' locks around it)."""
        args = list(self.template)
        outs = self._result_arrays(dims)
        key = temps = None
        try:
            key, temps = self._workspace(dims)
            flatten = self.flatten
            for pos, kind, ref in self.fill:
                if kind == 3:
                    a = outs[ref]
                elif kind == 4:
                    a = temps[ref]
                else:
                    a = arrays[ref] if kind == 0 else ref._value
                    flags = a.flags
                    if not (flags.c_contiguous and flags.writeable):
                        a = np.array(a, order="C")  # the compiled code reads writable C arrays
                args[pos] = a.reshape(-1) if flatten and a.ndim != 1 else a
            for s in self.symbols:
                args.append(dims[s])
            self._call(args, arrays, dims)
        finally:
            with self.pool_lock:  # calls in other threads may have evicted these dims meanwhile
                free = self.workspaces.get(key)
                if free is not None and temps is not None:
                    free.append(temps)
        results = []
        returned: set[int] = set()
        for kind, ref, shape in self.result_plan:
            if kind == 3:
                a = outs[ref]
                if ref in returned:  # one buffer for two results: never share an array
                    a = a.copy()
                returned.add(ref)
            elif kind == 0:
                a = arrays[ref]
            elif kind == 1:
                a = ref._value
            else:
                a = ref.attr["value"].array
            if a.shape != shape:  # `shape` is static, else resolved per call
                want = resolve_shape(shape, dims)
                if a.shape != want:
                    a = a.reshape(want)
            results.append(a)
        if self.check_nan:
            self._check_finite(results, arrays, dims)
        return results

    def _result_arrays(self, dims) -> list:
        """One array per result slot, in their shapes.

        An in-place slot (inplace.py) gets its variable's array when nothing but the variable
        holds it (a user's reference, a view, an undo list keep it out of reach), else a
        fresh array, which gets a copy of the variable where the program reads the variable
        from it. Every other slot gets a fresh array (see _result_array)."""
        with self.pool_lock:  # two threads calling one function never pick the same array
            own = self._variable_arrays() if self.inplace else {}
            outs = [own[i] if i in own else self._result_array(i, plan, dims)
                    for i, plan in enumerate(self.result_shapes)]
        for i, var, copy in self.inplace:
            if copy and i not in own:
                np.copyto(outs[i], var._value)
        return outs

    def _variable_arrays(self) -> dict:
        """Slot -> the array of the variable it updates, for the slots whose array may be
        written over in this call (a variable's shape is static: no dims to resolve)."""
        own = {}
        for i, var, _ in self.inplace:
            a = var._host
            if type(a) is not np.ndarray:
                continue
            _, dtype, want = self.result_shapes[i]
            # the pool may still hold it from a call that did not write in place
            pooled = any(p is a for p in self.pool[i])
            if (held_only_by_attribute(a, extra=pooled) and not shared(a) and a.dtype == dtype
                    and a.shape == want and a.flags.c_contiguous and a.flags.writeable):
                own[i] = a  # (asked before a.flags: the flags object holds the array)
        return own

    def _workspace(self, dims) -> tuple:
        """(dims key, the temporaries' arrays) for one call: a free workspace for these dims,
        else new arrays. The caller gives it back after the call; a call in another thread
        meanwhile gets its own. Workspaces are kept for the two batch sizes used last (a
        training epoch's full and short last batch), so memory stays bounded."""
        key = tuple(dims[s] for s in self.symbols)
        with self.pool_lock:
            free = self.workspaces.pop(key, None)
            if free is None:
                free = []
                while len(self.workspaces) >= 2:
                    del self.workspaces[next(iter(self.workspaces))]  # least recently used
            self.workspaces[key] = free  # now the most recently used
            if free:
                return key, free.pop()
        return key, [aligned_empty(resolve_shape(shape, dims), dtype).reshape(-1)
                     for shape, dtype in self.temp_shapes]

    def _result_array(self, slot: int, plan, dims) -> np.ndarray:
        """A fresh array for result `slot`, recycled from an earlier call when nobody else
        holds it any more.

        Results become the new state (weights, optimizer slots) or the caller's outputs, so
        they are never written in place; but the state array of two steps ago is dropped by the
        runtime once the step after it succeeded. Reusing it saves the page faults of a fresh
        multi-MiB allocation per step (M1: 25 MiB of new state per step). Only arrays whose
        reference count shows the pool as their sole owner are reused: one held by a user, a
        view or a Variable is never touched.
        """
        shape, dtype, static = plan
        want = static if static is not None else resolve_shape(shape, dims)
        pool = self.pool[slot]  # the caller holds pool_lock
        for i in range(len(pool)):
            # held by the pool list alone (a view someone took of it would hold its buffer)
            if (sys.getrefcount(pool[i]) <= LIST_ONLY and not shared(pool[i])
                    and pool[i].shape == want):
                a = pool.pop(i)
                pool.append(a)
                return a
        a = aligned_empty(want, dtype)
        pool.append(a)
        if len(pool) > 2:  # the current state and its successor are all a step needs
            del pool[0]
        return a

    def _setup_driver(self, gen) -> None:
        """Python driver: kernels as separate nogil njit calls, run on a thread pool."""
        from symgraph.backends.parallel import DagRunner

        p = self.program
        self.entry_params = [f"b{b.id}" for b in gen.args] + [v for _, v in gen.symbols]
        source = self.native_functions if self.native else vars(self.module)
        self.kernel_names = gen.kernel_names  # a shared body's function serves several
        self.kernel_fns = [source[name] for name in gen.kernel_names]
        self.kernel_args = gen.kernel_args
        self.dim_vars = dict(gen.symbols)
        self.runner = DagRunner({k.id: p.deps[k.id] for k in p.kernels}, self.workers,
                                schedule=p.schedule(self.workers))

    def _drive(self, args):
        env = dict(zip(self.entry_params, args))  # temporaries included (the workspace)
        fns, kargs = self.kernel_fns, self.kernel_args

        def execute(kid):
            fns[kid](*[env[a] for a in kargs[kid]])

        try:
            self.runner.run(execute)
        finally:  # a pool thread may still hold `execute` a moment after the run: never the
            env.clear()  # arrays, whose reference count decides if state is written in place
        return 0

    def _call(self, args, arrays, dims):
        try:
            if self.driver:
                return self._drive(args)
            return self.entry(*args)
        except (IndexError, ZeroDivisionError) as exc:
            self._reference(arrays, dims)  # raises a SymgraphError naming the node
            raise SymgraphError(f"numba backend: a kernel failed ({exc}) where the NumPy "
                                "reference did not") from None

    def _check_finite(self, results, arrays, dims) -> None:
        for a in results:
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                self._reference(arrays, dims, check_nan=True)
                return

    def _reference(self, arrays, dims, check_nan: bool = False) -> list:
        from symgraph.backends.numpy_ref import Evaluation

        plan = Evaluation(self.program.inputs, self.program.results)
        return plan.run(arrays, dims, check_nan=check_nan)


def _native_mode() -> str:
    """`SYMGRAPH_NATIVE`: `auto` (default) translates the entry to LLVM IR directly (native.py)
    and compiles with Numba only what the translator does not handle; `numba` always compiles
    with Numba; `native` never does (what it cannot translate is a SymgraphError)."""
    value = os.environ.get("SYMGRAPH_NATIVE", "auto").lower()
    if value not in ("auto", "numba", "native"):
        raise SymgraphError(f"SYMGRAPH_NATIVE={value!r}: expected 'auto', 'numba' or 'native'")
    return value


def _native_functions(gen, program: Program, driver: bool, workers: int) -> tuple:
    """({name: NativeEntry}, how it was obtained): `entry`, or with the driver every kernel
    `k<id>`, compiled by native.py + llvmjit.py. Parallel loops only where one thread calls
    (the driver's pool would otherwise fork an OpenMP team from each of its threads)."""
    scalar = CpuScalarRenderer(dict(gen.symbols))
    kinds = {f"b{b.id}": native.Buf(b.dtype) for b in program.buffers}
    kinds.update({var: "int64" for _, var in gen.symbols})
    sizes = {f"b{b.id}": scalar.size_expr(b.shape) for b in program.buffers}
    if driver:  # a shared function (shared_kernels.py) typed by its first kernel's args
        signatures = {}
        for name, args in zip(gen.kernel_names, gen.kernel_args):
            signatures.setdefault(name, args)
    else:
        signatures = {"entry": [f"b{b.id}" for b in gen.args] + [v for _, v in gen.symbols]}
    functions = {}
    for name, args in signatures.items():
        # a shared function's buffer parameters are p0, p1, ... (its dims keep their names)
        params = [f"p{i}" if name.startswith(SHARED) and isinstance(kinds[a], native.Buf)
                  else a for i, a in enumerate(args)]
        functions[name] = ({p: kinds[a] for p, a in zip(params, args)},
                           {p: sizes[a] for p, a in zip(params, args) if a in sizes})
    parallel = llvmjit.PARALLEL and workers == 1
    # the own GEMM kernels its products call (the operands' dtype: native_calls.gemm's)
    own = sorted({n.dtype for k in program.kernels if k.kind == "matmul"
                  for n in (k.root, *k.root.inputs)
                  if n.dtype in ("float32", "float64")}) if blas.OWN_GEMM else []
    # The code depends on the argument types and buffer sizes as much as on the source (the
    # source of `-x` reads the same for float32 and float64): all of them key the cache.
    typed = ";".join(
        f"{name}(" + ",".join(f"{a}:{getattr(kinds[a], 'dtype', kinds[a])}[{sizes.get(a, '')}]"
                              for a in args) + ")" for name, args in signatures.items())
    addresses, how = llvmjit.load(
        gen.source, lambda name: native.translate(gen.source, name, functions,
                                                  llvmjit.BY_OBJECT, parallel),
        list(functions), options=f"parallel={parallel};{typed}", gemm_dtypes=own)
    entries = {}
    for name, args in signatures.items():
        n_buffers = sum(isinstance(kinds[a], native.Buf) for a in args)
        entries[name] = llvmjit.NativeEntry(addresses[name], n_buffers, len(args) - n_buffers)
    return entries, how


def _check_supported(program: Program) -> None:
    for k in program.kernels:
        for n in (*k.reads, *k.nodes):  # a uint32 input read by a cast is one too
            if n.dtype not in ("bool", "int32", "int64", "float32", "float64"):
                raise SymgraphError(f"numba backend: dtype {n.dtype} of {n.describe()} is not "
                                    "supported")


class NumbaBackend:
    """Backend protocol: `compile(inputs, results, check_nan) -> run(arrays, dims) -> arrays`."""

    name = "numba"
    writes_in_place = True  # compile takes `updates` (the runtime passes them)

    def compile(self, inputs: Sequence[Node], results: Sequence[Node], check_nan: bool = False,
                workers: int = 1, updates: Sequence[Node] = ()):
        """Lower, generate, import. workers=1: the whole program is one njit call; workers=k:
        one nogil njit function per kernel, independent ones run on k threads. `updates`: the
        variables whose new values are the last results; those inplace.py proves safe are
        written over the variable's array (not with `check_nan`, whose re-run needs the old
        state; `SYMGRAPH_INPLACE=0` turns it off)."""
        start = time.perf_counter()
        program = lower(inputs, results)
        _check_supported(program)
        if updates and not check_nan and envvars.flag("SYMGRAPH_INPLACE", True):
            program = inplace.plan_inplace(program, updates)
            for line in inplace.describe(program):
                _debug(f"in place: {line}")
        driver = workers > 1 or envvars.flag("SYMGRAPH_NUMBA_DRIVER")
        gen = generate(program, single_entry=not driver)
        compiled = None
        mode = _native_mode()
        if mode != "numba":
            try:
                functions, reason = _native_functions(gen, program, driver, workers)
            except native.Unsupported as exc:
                if mode == "native":
                    raise SymgraphError(f"SYMGRAPH_NATIVE=native: {exc}") from None
                _debug(f"native path not taken ({exc}); compiling with Numba")
            else:
                compiled = CompiledProgram(program, None, gen, check_nan, workers, functions)
                what = "kernels for the driver" if driver else "entry"
                _debug(f"native {what}: {len(program.kernels)} kernels, {reason} in "
                       f"{(time.perf_counter() - start) * 1e3:.1f} ms")
        if compiled is None:
            module, reason = load_module(gen.source)
            compiled = CompiledProgram(program, module, gen, check_nan, workers)
            _debug(f"{module.__name__}: {len(program.kernels)} kernels, {reason}, generated "
                   f"and imported in {(time.perf_counter() - start) * 1e3:.1f} ms")

        def run(arrays, dims):
            return compiled(arrays, dims)

        run.program = program
        run.compiled = compiled
        run.source = gen.source
        run.native = compiled.native
        return run
