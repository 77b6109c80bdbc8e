"""Running a rendered CUDA program: device-resident state, planned buffers, streams and events.

Stage: backend runtime (called by runtime.Function through `run(arrays, dims)`).

- State: each Variable's device copy lives in `_STATE`, keyed by the variable's id, with the host
  array it mirrors as the version token: `variable.value = ...` (or any other writer) replaces
  the host object, and the next call re-uploads. A step returns its updates as host arrays, as
  the runtime's protocol wants; each returned array is remembered with the device array it came
  from, so when the runtime swaps it into a variable, the next call adopts that device array as
  the variable's copy instead of uploading it again. Only batches move to the device.
- Buffers: temporaries share slots of the memory plan (memplan.py, parallel-safe mode, one plan
  per binding of the symbolic dims); inputs and outputs have their own arrays per binding.
- Streams: the critical-path list schedule (schedule.py) maps its workers to CUDA streams; a
  kernel that reads a result made on another stream first waits on that kernel's event.
- Bounds: a GPU does not bounds-check a load. Labels read straight from an input are checked on
  the host before launch; labels a kernel computed set a flag pair in a small device buffer
  (kernels.py), read back with the results (the call synchronizes there anyway) and raised as
  a SymgraphError. Kernels write no state (updates are outputs the runtime swaps in after a
  call returns), so a failed call changes nothing.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import weakref

import numpy as np

from symgraph import envvars
from symgraph.backends.cuda.kernels import GPU, SIM, CudaModule, render_program
from symgraph.cachedir import cache_folder
from symgraph.errors import SymgraphError
from symgraph.graph import resolve_shape
from symgraph.lower import kernel_flops, lower
from symgraph.memplan import BufferUse, plan_memory
from symgraph.program import may_reduce_nothing, reduced_dims
from symgraph.schedule import CostModel, costs_from_counts, critical_path_schedule

_STATE: dict[int, tuple] = {}  # id(variable) -> (value token it mirrors, device nd array)
_FREE: dict[tuple, list] = {}  # (shape, dtype) -> device arrays no one uses any more
STATS = {"state_uploads": 0, "state_adopted": 0}  # how often state crossed to the device

# A GPU-ish roofline for ordering kernels (only the relative sizes matter to the scheduler).
GPU_COSTS = CostModel(flops_per_second=40e12, bytes_per_second=2e12, overhead_seconds=4e-6)


def cache_dir() -> str:
    """Where generated kernel modules are written (numba's kernel cache sits beside them)."""
    return cache_folder("cuda")


def import_module(module: CudaModule):
    """Write the source as a real file named by its hash and import it (DESIGN.md decision 9)."""
    name = f"sg_cuda_{module.target.name}_{module.digest}"
    if name in sys.modules:
        return sys.modules[name]
    path = os.path.join(cache_dir(), name + ".py")
    if not os.path.exists(path):
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(module.source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _prod(dims, binding) -> int:
    return int(np.prod(resolve_shape(tuple(dims), binding), dtype=np.int64))


class DeviceValue:
    """A result left on the GPU. The runtime keeps updates like this in the variable (weights
    stay device-resident across steps) and copies back only when the host reads the value."""

    __slots__ = ("device", "stream", "shape", "__weakref__")

    def __init__(self, device, stream, shape):
        self.device, self.stream, self.shape = device, stream, shape

    def to_host(self) -> np.ndarray:
        self.stream.synchronize()
        return self.device.copy_to_host().reshape(self.shape)


def _rows(node, dims) -> int:
    """The size of the axis a take's (or scatter_add's) labels index, bound to `dims`."""
    rows = node.inputs[0].shape[0] if node.op == "take" else node.shape[0]
    return resolve_shape((rows,), dims)[0]


def _out_of_bounds(node, bad, n: int):
    raise SymgraphError(f"evaluating {node.describe()} failed: index {bad} is out of bounds "
                        f"for axis 0 with size {n}")


def _take_free(cuda, shape, dtype):
    pool = _FREE.get((shape, dtype))
    return pool.pop() if pool else cuda.device_array(shape, dtype)


def _release(array) -> None:
    """Recycle a device array once no variable uses it any more."""
    if any(entry[1] is array for entry in _STATE.values()):
        return
    _FREE.setdefault((tuple(array.shape), array.dtype.name), []).append(array)


def _event(cuda):
    try:
        return cuda.event(timing=False)
    except TypeError:  # the simulator's Event takes no arguments (and records nothing)
        return cuda.event()


def _flat(array):
    """The 1-D kernel argument of a buffer (`array` itself reshaped; an empty buffer, which no
    kernel touches, is handed as an empty 1-D array: a size-0 array has no size-1 view)."""
    return array.reshape(int(np.prod(array.shape, dtype=np.int64)))


class _Arena:
    """The device arrays of one binding of the symbolic dims."""

    def __init__(self):
        self.flat: dict[int, object] = {}  # buffer id -> flat device array (kernel argument)
        self.nd: dict[int, object] = {}  # buffer id -> nd device array (inputs, outputs)


class CudaProgram:
    """A compiled graph on the device: `run(arrays, dims)` as backends/numpy_ref.py defines."""

    def __init__(self, cuda, inputs, results, check_nan: bool = False,
                 simulate: bool = False, streams: int = 2):
        self.cuda = cuda
        self.inputs = list(inputs)
        self.results = list(results)
        self.check_nan = check_nan
        self.program = lower(self.inputs, self.results)
        self._empty_able = [n for k in self.program.kernels for n in k.nodes
                            if may_reduce_nothing(n)]
        # Indices read straight from an input: a GPU does not bounds-check a load, so an
        # out-of-range one is refused on the host before anything runs (as the reference does).
        position = {node.id: k for k, node in enumerate(self.inputs)}
        self._indexed = []
        for k in self.program.kernels:
            for n in k.nodes:
                if n.op in ("take", "scatter_add") and n.inputs[1].id in position:
                    self._indexed.append((n, position[n.inputs[1].id]))
        self.module = render_program(self.program, SIM if simulate else GPU)
        self._checked = self.module.checked  # labels computed on the device: a flag pair each
        checked_ids = {n.id for n in self._checked}
        self._checked_in = {k.id for k in self.program.kernels
                            if any(n.id in checked_ids for n in k.nodes)}
        self._bounds = self._bounds_host = None
        self._bounds_dirty = False
        if self._checked:
            self._bounds = cuda.to_device(np.zeros(2 * len(self._checked), np.int64))
            self._bounds_host = cuda.pinned_array(2 * len(self._checked), np.int64)
        mod = import_module(self.module)
        if envvars.flag("SYMGRAPH_DEBUG"):
            n = sum(len(v) for v in self.module.launches.values())
            print(f"[symgraph] cuda: {len(self.program.kernels)} kernels, {n} launches "
                  f"({self.module.target.name}), source {mod.__file__}")
        self.functions = {}
        for launches in self.module.launches.values():
            for launch in launches:
                fn = getattr(mod, launch.func)
                self.functions[launch.func] = (cuda.jit(fn) if simulate
                                               else cuda.jit(fn, cache=True))
        kernels = self.program.kernels
        flops = {k.id: kernel_flops(k) for k in kernels}
        moved = {k.id: float(sum(self.program.buffer(n).nbytes() for n in k.reads + k.writes
                                 if n.id in self.program.buffer_of)) for k in kernels}
        deps = {k.id: self.program.deps[k.id] for k in kernels}
        workers = 1 if check_nan else max(1, streams)
        self.schedule = critical_path_schedule(deps, costs_from_counts(flops, moved, GPU_COSTS),
                                               workers)
        self.lane = {s.kernel: s.worker for s in self.schedule.placement().values()}
        self.deps = deps
        self.cross = {k: any(self.lane[k] != self.lane[s] for s in deps if k in deps[s])
                      for k in deps}
        self.streams = [cuda.stream() for _ in range(workers)]
        self.events = {k: _event(cuda) for k in deps}
        self._arenas: dict[tuple, _Arena] = {}
        self._constants: dict[int, object] = {}
        # (arena, buffer id, weakref to the DeviceValue) handed out last call: a value someone
        # still holds (a variable's pending update) must not be overwritten by the next call
        self._handed: list[tuple] = []

    # --- memory -----------------------------------------------------------------------------

    def _arena(self, dims: dict) -> _Arena:
        key = tuple(sorted(dims.items()))
        arena = self._arenas.get(key)
        if arena is not None:
            return arena
        arena = self._arenas[key] = _Arena()
        prog = self.program
        writer = {n.id: k.id for k in prog.kernels for n in k.writes}
        readers: dict[int, list] = {}
        for k in prog.kernels:
            for n in k.reads:
                readers.setdefault(n.id, []).append(k.id)
        uses = []
        for buf in prog.buffers:
            if buf.kind == "temp":
                uses.append(BufferUse(buf.id, buf.nbytes(dims), writer.get(buf.node.id),
                                      tuple(readers.get(buf.node.id, ())), pinned=False))
        plan = plan_memory(uses, self.schedule.order, self.deps, binding=dims)
        slots = [self.cuda.device_array(max(n, 64), np.uint8) for n in plan.slot_bytes]
        self.memory_plan = plan
        for buf in prog.buffers:
            shape = resolve_shape(buf.shape, dims)
            if buf.kind == "temp":
                size = max(1, int(np.prod(shape, dtype=np.int64)))
                nbytes = size * np.dtype(buf.dtype).itemsize
                arena.flat[buf.id] = slots[plan.slot_of[buf.id]][:nbytes].view(buf.dtype)
            elif buf.kind in ("input", "output"):
                arena.nd[buf.id] = self.cuda.device_array(shape, buf.dtype)
                arena.flat[buf.id] = _flat(arena.nd[buf.id])
        return arena

    def _variable(self, var, stream):
        entry = _STATE.get(id(var))
        pending = var._pending
        token = pending if pending is not None else var._host
        if entry is not None and entry[0] is token:
            return entry[1]
        if isinstance(pending, DeviceValue):
            device = pending.device  # the update we returned last step: adopt, no upload
            STATS["state_adopted"] += 1
        else:
            host = var._value
            device = _take_free(self.cuda, tuple(host.shape), host.dtype.name)
            device.copy_to_device(np.ascontiguousarray(host), stream=stream)
            STATS["state_uploads"] += 1
        if entry is None:
            weakref.finalize(var, _STATE.pop, id(var), None)
        _STATE[id(var)] = (token, device)
        if entry is not None:
            _release(entry[1])
        return device

    # --- running ----------------------------------------------------------------------------

    def _geometry(self, launch, dims):
        t = self.module.target
        if launch.shape == "matmul":
            m, n = _prod(launch.work[0], dims), _prod(launch.work[1], dims)
            batch = _prod(launch.work[2], dims)
            if m * n * batch == 0:
                return None
            return (_cdiv(n, t.bn), _cdiv(m, t.bm), batch), launch.threads
        work = _prod(launch.work[0], dims)
        if work == 0:
            return None
        per_block = 1 if launch.shape == "rows" else launch.threads
        return min(_cdiv(work, per_block), t.max_blocks), launch.threads

    def _args(self, launch, arena, state, dims):
        args = []
        for arg in launch.args:
            if arg[0] == "int":
                args.append(int(np.prod([dims[s] for s in arg[1]], dtype=np.int64)))
            elif arg[0] == "bounds":
                args.append(self._bounds)
            else:
                bid = arg[1]
                args.append(arena.flat[bid] if bid in arena.flat else state[bid])
        return args

    def run(self, arrays, dims: dict) -> list:
        prog, cuda = self.program, self.cuda
        for node in self._empty_able:  # before anything runs: the call changes no state
            if 0 in resolve_shape(reduced_dims(node), dims):
                shape = resolve_shape(node.inputs[0].shape, dims)
                raise SymgraphError(f"evaluating {node.describe()} failed: a {node.op} over an "
                                    f"empty axis (input shape {shape}) has no value")
        for node, pos in self._indexed:
            labels, n = np.asarray(arrays[pos]), _rows(node, dims)
            if labels.size and (labels.min() < -n or labels.max() >= n):
                _out_of_bounds(node, labels[(labels < -n) | (labels >= n)].reshape(-1)[0], n)
        s0 = self.streams[0]
        if self._bounds_dirty:  # relaunch ran kernels on stale data: forget its flags
            self._bounds.copy_to_device(np.zeros(2 * len(self._checked), np.int64), stream=s0)
            self._bounds_dirty = False
        state: dict[int, object] = {}
        for buf in prog.buffers:
            if buf.kind == "variable":
                state[buf.id] = _flat(self._variable(buf.node, s0))
            elif buf.kind == "constant":
                if buf.id not in self._constants:
                    self._constants[buf.id] = cuda.to_device(
                        np.ascontiguousarray(buf.node.attr["value"].array).reshape(-1))
                state[buf.id] = self._constants[buf.id]
        for old_arena, bid, ref in self._handed:
            if ref() is not None and old_arena.nd[bid] is ref().device:  # still held: keep it
                shape, dtype = tuple(old_arena.nd[bid].shape), old_arena.nd[bid].dtype.name
                old_arena.nd[bid] = _take_free(cuda, shape, dtype)
                old_arena.flat[bid] = _flat(old_arena.nd[bid])
        self._handed = []
        arena = self._arena(dims)
        owned = {id(entry[1]) for entry in _STATE.values()}
        for buf in prog.buffers:
            if buf.kind == "output" and id(arena.nd[buf.id]) in owned:
                shape = resolve_shape(buf.shape, dims)
                arena.nd[buf.id] = _take_free(cuda, shape, buf.dtype)
                arena.flat[buf.id] = _flat(arena.nd[buf.id])
        for node, array in zip(self.inputs, arrays):
            if node.id in prog.buffer_of:
                arena.nd[prog.buffer_of[node.id]].copy_to_device(
                    np.ascontiguousarray(array), stream=s0)
        start = _event(cuda)
        start.record(s0)
        for s in self.streams[1:]:
            start.wait(s)
        for kid in self.schedule.order:
            stream = self.streams[self.lane[kid]]
            for p in self.deps[kid]:
                if self.lane[p] != self.lane[kid]:
                    self.events[p].wait(stream)
            for launch in self.module.launches[kid]:
                geometry = self._geometry(launch, dims)
                if geometry is not None:
                    fn = self.functions[launch.func]
                    fn[geometry[0], geometry[1], stream](*self._args(launch, arena, state, dims))
            if self.cross[kid]:
                self.events[kid].record(stream)
            if self.check_nan:
                self._check(prog.kernels[kid], arena, stream, dims)
        for s in self.streams[1:]:
            done = _event(cuda)
            done.record(s)
            done.wait(s0)
        self._last = (arena, state, dict(dims))
        if self._checked:  # copied with the results: _download's synchronize covers it
            self._bounds.copy_to_host(self._bounds_host, stream=s0)
        out = self._download(arena, state, dims, s0)
        if self._checked:
            self._raise_out_of_bounds(dims, s0)
        return out

    def relaunch(self, kid: int, stream) -> None:
        """Launch kernel `kid` again on the previous call's buffers (per-kernel benchmarks).

        Kernels never write state or inputs, so this changes nothing a caller can see; a
        kernel's inputs may hold other data by then (planned slots are shared), which costs the
        same time.
        """
        arena, state, dims = self._last
        self._bounds_dirty = self._bounds_dirty or kid in self._checked_in
        for launch in self.module.launches[kid]:
            geometry = self._geometry(launch, dims)
            if geometry is not None:
                fn = self.functions[launch.func]
                fn[geometry[0], geometry[1], stream](*self._args(launch, arena, state, dims))

    def _download(self, arena, state, dims, stream) -> list:
        prog = self.program
        out, handed = [], set()
        for node in self.results:
            buf = prog.buffer(node)
            if buf.kind == "output":  # stays on the device until the runtime or user reads it
                device = arena.nd[buf.id]
                if buf.id in handed:  # the same node again (two variables updated with it):
                    # a device copy of its own, as variables never share an array
                    device = _take_free(self.cuda, tuple(device.shape), device.dtype.name)
                    device.copy_to_device(arena.nd[buf.id], stream=stream)
                value = DeviceValue(device, stream, resolve_shape(node.shape, dims))
                if buf.id not in handed:
                    handed.add(buf.id)
                    self._handed.append((arena, buf.id, weakref.ref(value)))
                out.append(value)
                continue
            host = np.empty(resolve_shape(node.shape, dims), node.dtype)
            flat = arena.flat[buf.id] if buf.id in arena.flat else state[buf.id]
            flat.copy_to_host(host.reshape(-1), stream=stream)
            out.append(host)
        stream.synchronize()
        return out

    def _raise_out_of_bounds(self, dims, stream) -> None:
        """The first checked node (in program order) whose kernel met a label outside its
        axis, as the other backends word it; the flags are cleared for the next call."""
        flags = self._bounds_host
        hit = np.flatnonzero(flags[0::2])
        if not hit.size:
            return
        slot = int(hit[0])
        node, bad = self._checked[slot], int(flags[2 * slot + 1])
        self._bounds.copy_to_device(np.zeros_like(flags), stream=stream)
        stream.synchronize()
        _out_of_bounds(node, bad, _rows(node, dims))

    def _check(self, kernel, arena, stream, dims) -> None:
        stream.synchronize()
        if kernel.id in self._checked_in:  # a bad label before its NaN, as the reference
            self._bounds.copy_to_host(self._bounds_host, stream=stream)
            stream.synchronize()
            self._raise_out_of_bounds(dims, stream)
        for node in kernel.writes:
            bid = self.program.buffer_of[node.id]
            if not node.dtype.startswith("float") or bid not in arena.flat:
                continue
            values = arena.flat[bid].copy_to_host()
            if not np.isfinite(values).all():
                bad = "NaN" if np.isnan(values).any() else "inf"
                raise SymgraphError(f"{bad} first produced by {node.describe()} (CUDA kernel "
                                    f"k{kernel.id}: {kernel.ops()})")
