"""Compiling native.py's LLVM modules with llvmlite, caching their object code, calling them.

One MCJIT engine per process (created on first use) holds every compiled program. The object
code of a program is cached in `<cache dir>/native/<key>.o`, the key a hash of the generated
source, this translator's version, LLVM's version, the host CPU and the BLAS; a warm start
reads the file and links it, compiling nothing. A cache file carries a header with the SHA-256
of its payload: a truncated or corrupted one is removed and compiled again, never loaded.

The entry is called through ctypes (which releases the GIL for the call, as `nogil` does):
`entry(bufs, dims)` with the addresses of the buffers and the values of the dims in arrays.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import sys
import threading

import llvmlite.binding as llvm

from symgraph import envvars
from symgraph.backends.numba_cpu import blas, llvm_passes, native, native_gemm
from symgraph.backends.numba_cpu.cache import cache_dir
from symgraph.files import atomic_write

VERSION = "12"  # bump when native.py changes the code it emits for the same source
MAGIC = b"symgraph-native-object 2\n"  # then the key, the payload's SHA-256, the payload
PAIR = b"symgraph-object-pair\n"  # a payload of two objects (compile_object)
# Programs of at least this many IR instructions are compiled in two processes at once
# (SYMGRAPH_COMPILE_PROCESSES=1: never)
PARALLEL_COMPILE_INSTRUCTIONS = 6000
COMPILE_PROCESSES = min(2, envvars.integer("SYMGRAPH_COMPILE_PROCESSES", 2),
                        os.cpu_count() or 1)

_lock = threading.Lock()
_state: dict = {}
# this process's object-cache traffic: programs, and the own GEMM kernels (link_gemm_kernels)
STATS = {"compiled": 0, "loaded": 0, "kernels compiled": 0, "kernels loaded": 0}


def _engine():
    """(target machine, MCJIT engine) of this process."""
    with _lock:
        if not _state:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            cpu, features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
            tm = llvm_passes.target_machine(cpu, features)
            empty = llvm.parse_assembly("")
            empty.triple = llvm.get_process_triple()
            engine = llvm.create_mcjit_compiler(empty, tm)
            _state.update(tm=tm, engine=engine, cpu=f"{cpu} {features}")
        return _state["tm"], _state["engine"]


def cache_key(source: str) -> str:
    _engine()
    parts = [VERSION, ".".join(map(str, llvm.llvm_version_info)), _state["cpu"], blas.BLAS,
             f"own_gemm={blas.OWN_GEMM}", str(BY_OBJECT), source]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def _cache_path(key: str, prefix: str = "") -> str:
    folder = os.path.join(os.path.dirname(cache_dir()), "native")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f"{prefix}{key}.o")


def _read_cached(path: str, key: str) -> tuple:
    """(object code at `path` or None, why not): a damaged file, or one made for another key
    (another program's file copied or renamed over it), is removed."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None, "object cache miss"
    head, _, rest = data.partition(b"\n")
    owner, _, rest = rest.partition(b"\n")
    digest, _, payload = rest.partition(b"\n")
    if (head + b"\n" != MAGIC or owner != key.encode()
            or hashlib.sha256(payload).hexdigest().encode() != digest):
        try:
            os.unlink(path)
        except OSError:
            pass
        return None, "damaged cache file removed"
    return payload, ""


def _write_cached(path: str, payload: bytes, key: str) -> None:
    header = MAGIC + key.encode() + b"\n" + hashlib.sha256(payload).hexdigest().encode() + b"\n"
    atomic_write(path, lambda f: f.write(header + payload))


optimize = llvm_passes.optimize


def compile_object(ir_module, speed: int = 3) -> bytes:
    """Object code for the IR module, optimized for this CPU (`speed`: optimize's). A large
    module is compiled in two halves at once, one in a helper process (llvm_passes.py;
    llvmlite serializes LLVM calls within a process): the payload then holds both objects."""
    tm, _ = _engine()
    ir_module.triple = llvm.get_process_triple()
    ir_module.data_layout = str(tm.target_data)
    halves = _halves(ir_module) if speed > 1 and COMPILE_PROCESSES > 1 else None
    if halves is None:
        return llvm_passes.compile_text(str(ir_module), tm, speed)
    mine, theirs = halves
    cpu, features = _state["cpu"].split(" ", 1)
    result = {}

    def helper():
        try:
            proc = subprocess.run([sys.executable, llvm_passes.__file__, cpu, features,
                                   str(speed)], input=theirs.encode(), capture_output=True,
                                  timeout=600)
            if proc.returncode == 0 and proc.stdout:
                result["object"] = proc.stdout
        except (OSError, subprocess.SubprocessError):
            pass
    thread = threading.Thread(target=helper)
    thread.start()
    first = llvm_passes.compile_text(mine, tm, speed)
    thread.join()
    second = result.get("object") or llvm_passes.compile_text(theirs, tm, speed)
    return PAIR + len(first).to_bytes(8, "little") + first + second


def _objects(payload: bytes) -> list[bytes]:
    """The object files in a payload (compile_object's pair, or one)."""
    if not payload.startswith(PAIR):
        return [payload]
    body = payload[len(PAIR):]
    n = int.from_bytes(body[:8], "little")
    return [body[8:8 + n], body[8 + n:]]


def _halves(ir_module) -> tuple[str, str] | None:
    """The module's IR as two modules of about equal size, each defining half of the
    functions and declaring the others (all made external: names are unique per program),
    or None for a module below PARALLEL_COMPILE_INSTRUCTIONS. The entry stays in the first
    half; a parallel loop's body and its OpenMP task stay together."""
    defined = [f for f in ir_module.functions if f.blocks]
    size = {f.name: sum(len(b.instructions) for b in f.blocks) for f in defined}
    if sum(size.values()) < PARALLEL_COMPILE_INSTRUCTIONS:
        return None
    units: dict = {}
    for f in defined:
        units.setdefault(f.name.removesuffix(".task"), []).append(f)
    groups, weights = ([], []), [0, 0]
    for unit in sorted(units.values(), key=lambda u: -sum(size[f.name] for f in u)):
        side = 0 if any(f.name.endswith(("_entry", "_entry.body")) for f in unit) else \
            weights.index(min(weights))
        groups[side].extend(unit)
        weights[side] += sum(size[f.name] for f in unit)
    if not groups[1]:
        return None
    for f in defined:
        f.linkage = ""  # each half calls functions of the other
    texts = []
    for group in groups:
        keep = {f.name for f in group}
        saved = {f.name: f.blocks for f in defined if f.name not in keep}
        for f in defined:
            if f.name in saved:
                f.blocks = []
        try:
            texts.append(str(ir_module))
        finally:
            for f in defined:
                if f.name in saved:
                    f.blocks = saved[f.name]
    return texts[0], texts[1]


def load(source: str, build, functions: list, options: str = "", speed: int = 3,
         gemm_dtypes=(), kernel: bool = False) -> tuple:
    """({function: address}, how they were obtained) for the generated `source`.

    `build(name)` returns the IR module (native.translate) whose functions are
    `<name>_<function>`; it is only called on a cache miss. `options` (what else changes the
    code) joins the cache key; `speed` is optimize's. `gemm_dtypes`: the own GEMM kernels
    the code calls (native_gemm.py), linked first; `kernel`: this is one of them (its file
    is `gemm-<key>.o`, its traffic counted apart). Raises native.Unsupported when the
    source cannot be translated.
    """
    link_gemm_kernels(gemm_dtypes)
    key = cache_key(options + "\0" + ",".join(functions) + "\0" + source)
    name = f"sg_native_{key}"
    path = _cache_path(key, "gemm-" if kernel else "")
    counts = ("kernels compiled", "kernels loaded") if kernel else ("compiled", "loaded")
    _, engine = _engine()
    with _lock:
        if name in _state:
            return _state[name], "already loaded"
    payload, why = _read_cached(path, key)
    how = "object cache hit"
    if payload is None:
        how = f"compiled ({why})"
        payload = compile_object(build(name), speed)
        STATS[counts[0]] += 1
        try:
            _write_cached(path, payload, key)
        except OSError as exc:  # a full disk, a folder gone: the code is compiled all the same
            how += f"; not cached ({type(exc).__name__}: {exc})"
    else:
        STATS[counts[1]] += 1
    with _lock:
        if name not in _state:
            for obj in _objects(payload):
                engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
            engine.finalize_object()
            _state[name] = {f: engine.get_function_address(f"{name}_{f}") for f in functions}
        if not all(_state[name].values()):
            raise native.Unsupported(f"{name}: a function is missing after linking")
        return _state[name], how


def link_gemm_kernels(dtypes) -> None:
    """symgraph's own GEMM kernels (native_gemm.py) for `dtypes`, compiled once per CPU into
    the object cache (at -O1: its loops are written by hand, and -O3 took 0.20 s against
    0.06 s for kernels as fast: 102 vs 92 GFLOP/s on M1's forward block, noise) or read
    from it, then made resolvable for the programs linked after them."""
    _engine()
    for dtype in dtypes:
        symbol = native_gemm.name_of(dtype)
        with _lock:
            if symbol in _state:
                continue
        features = _state["cpu"].split(" ", 1)[1]
        # keyed by the kernel's IR itself: a changed kernel never meets an old object
        text = str(native_gemm.module("kernel", dtype, features))
        addresses, _ = load(text, lambda name: native_gemm.module(name, dtype, features),
                            ["gemm"], speed=1, kernel=True)
        llvm.add_symbol(symbol, addresses["gemm"])
        with _lock:
            _state[symbol] = addresses["gemm"]


def standalone_gemm(dtype: str, features: str | None = None, speed: int = 1):
    """The own GEMM kernel as a ctypes function, in an engine of its own (for tests and
    scripts/gemm_blocks.py): `f(ta, tb, m, n, k, a, lda, b, ldb, c, ldc, accumulate)` with
    addresses for a, b, c and ints for the rest. `features` defaults to this CPU's (pass
    "-avx512f" in it for the AVX2 tile)."""
    from llvmlite import ir

    _engine()
    cpu, host_features = _state["cpu"].split(" ", 1)
    features = features or host_features
    tm = llvm_passes.target_machine(cpu, host_features)  # an engine owns (frees) its machine
    mod = native_gemm.module("standalone", dtype, features)
    i64 = ir.IntType(64)
    wrap = ir.Function(mod, ir.FunctionType(ir.VoidType(), [i64] * 5 +
                                            [ir.PointerType(), i64] * 3 + [i64]), "run")
    b = ir.IRBuilder(wrap.append_basic_block())
    args = list(wrap.args)

    def flag(v):  # ctypes has no i1
        return b.icmp_signed("!=", v, ir.Constant(i64, 0))
    b.call(mod.globals["standalone_gemm"],
           [flag(args[0]), flag(args[1])] + args[2:11] + [flag(args[11])])
    b.ret_void()
    mod.triple = llvm.get_process_triple()
    mod.data_layout = str(tm.target_data)
    empty = llvm.parse_assembly("")
    empty.triple = mod.triple
    engine = llvm.create_mcjit_compiler(empty, tm)
    engine.add_object_file(llvm.ObjectFileRef.from_data(
        llvm_passes.compile_text(str(mod), tm, speed)))
    engine.finalize_object()
    fn = ctypes.CFUNCTYPE(None, *[ctypes.c_int64] * 5, *([ctypes.c_void_p, ctypes.c_int64] * 3),
                          ctypes.c_int64)(engine.get_function_address("run"))
    fn.engine = engine  # the code lives as long as the function
    return fn


def _object_layout_ok() -> bool:
    """Whether this process's list and ndarray structs have the field offsets native.py reads
    (CPython's PyListObject.ob_item, NumPy's PyArrayObject data): checked, never assumed."""
    import numpy as np

    a = np.arange(3.0)
    items = [a]
    try:
        item_array = ctypes.c_void_p.from_address(id(items) + native.LIST_ITEMS).value
        first = ctypes.c_void_p.from_address(item_array).value
        data = ctypes.c_void_p.from_address(id(a) + native.ARRAY_DATA).value
    except (ValueError, TypeError):
        return False
    return first == id(a) and data == a.ctypes.data


BY_OBJECT = _object_layout_ok()  # entries take the list of arrays itself (no per-array work)
# prange loops fork MKL's OpenMP team (native.parallel_loop); SYMGRAPH_PARALLEL_LOOPS=0: never
PARALLEL = blas.OPENMP and envvars.flag("SYMGRAPH_PARALLEL_LOOPS", True)


class NativeEntry:
    """Calls a compiled entry like the Numba one: `entry(*arrays, *dims)` -> 0, raising
    IndexError for an out-of-range index and MemoryError when an allocation failed."""

    def __init__(self, address: int, n_buffers: int, n_dims: int):
        first = ctypes.py_object if BY_OBJECT else ctypes.c_void_p
        self.fn = ctypes.CFUNCTYPE(ctypes.c_int32, first, ctypes.c_void_p)(address)
        self.n_buffers = n_buffers
        self.bufs_type = ctypes.c_void_p * max(n_buffers, 1)
        self.dims_type = ctypes.c_int64 * max(n_dims, 1)

    def __call__(self, *args) -> int:
        n = self.n_buffers
        if BY_OBJECT:
            bufs = list(args[:n])
        else:
            bufs = self.bufs_type(*[a.ctypes.data for a in args[:n]])
        dims = self.dims_type(*args[n:])
        code = self.fn(bufs, dims)
        if code == native.ERR_INDEX:
            raise IndexError("index out of range")
        if code == native.ERR_MEMORY:
            raise MemoryError("a native kernel could not allocate its temporaries")
        return code
