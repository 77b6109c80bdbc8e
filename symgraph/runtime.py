"""`sg.function`: compile a graph for a backend, validate inputs per call, run, apply updates.

A call validates every input (rank, dims, dtype; each symbolic dim bound to one value), runs the
backend, and only when every output and update has been computed swaps the new values into the
variables: a failing call leaves all state as it was.
"""

from __future__ import annotations

import _signal  # getsignal without signal.getsignal's enum wrapping (2 us -> 15 ns a call)
import contextlib
import signal
import sys
import threading
import time
import weakref
from typing import Sequence

import numpy as np

from symgraph import envvars
from symgraph.arrays import first_nonfinite, int_range_error, shared
from symgraph.errors import SymgraphError, describe_trace
from symgraph.graph import Node, Variable, dump, topo_order
from symgraph.tensor import as_node, cast


def _flatten_outputs(outputs):
    """(flat list of leaves, a function rebuilding the structure from their values): nodes
    nested in lists, tuples and dicts, as deep as the caller likes ([loss, sg.grad(...)])."""
    if isinstance(outputs, np.ndarray) or not isinstance(outputs, (list, tuple, dict)):
        if isinstance(outputs, (str, bytes, set, frozenset)) or outputs is None:
            raise SymgraphError(f"outputs must be nodes in a list, tuple or dict (nested as "
                                f"you like), got {type(outputs).__name__}")
        return [outputs], lambda vals: vals[0]
    keys = list(outputs) if isinstance(outputs, dict) else None
    items = [outputs[k] for k in keys] if keys is not None else list(outputs)
    if not any(isinstance(i, (list, tuple, dict)) for i in items):  # flat: the common case
        for item in items:
            _flatten_outputs(item)  # the checks on each leaf
        if keys is not None:
            return items, lambda vals: dict(zip(keys, vals))
        kind = type(outputs)
        return items, lambda vals: kind(vals)
    parts = [_flatten_outputs(i) for i in items]
    sizes = [len(flat) for flat, _ in parts]
    kind = type(outputs)

    def rebuild(vals):
        items, start = [], 0
        for (_, inner), size in zip(parts, sizes):
            items.append(inner(vals[start:start + size]))
            start += size
        if keys is not None:
            return dict(zip(keys, items))
        return kind(items)
    return [leaf for flat, _ in parts for leaf in flat], rebuild


def _normalize_updates(updates) -> list[tuple[Variable, Node]]:
    if updates is None:
        return []
    try:
        if isinstance(updates, Node):  # a node is iterable (it has __getitem__): not pairs
            raise TypeError
        pairs = list(updates.items()) if isinstance(updates, dict) else list(updates)
    except TypeError:
        raise SymgraphError(f"updates must be a dict {{variable: new value}} or a list of "
                            f"(variable, new value) pairs, got {_shown(updates)}") from None
    out, seen = [], set()
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise SymgraphError(f"updates must be a dict {{variable: new value}} or a list of "
                                f"(variable, new value) pairs; got an entry {_shown(pair)}")
        var, expr = pair
        if not isinstance(var, Variable):
            raise SymgraphError(f"updates: keys must be sg.variable nodes, got {_shown(var)}")
        if var.id in seen:
            raise SymgraphError(f"updates: {var.describe()} is updated twice")
        seen.add(var.id)
        expr = as_node(expr, like=var)
        if expr.dtype != var.dtype:
            if expr.dtype.startswith("float") and var.dtype.startswith("float"):
                expr = cast(expr, var.dtype)
            else:
                raise SymgraphError(f"updates: {var.describe()} gets a {expr.dtype} value "
                                    f"({expr.describe()})")
        if tuple(expr.shape) != tuple(var.shape):
            raise SymgraphError(f"updates: {var.describe()} has shape {tuple(var.shape)} but its "
                                f"update {expr.describe()} has shape {tuple(expr.shape)}")
        out.append((var, expr))
    return out


def _shown(value) -> str:
    return value.describe() if isinstance(value, Node) else f"{type(value).__name__} {value!r}"


def _add_default_updates(pairs, roots):
    """Variables with a default update (random step counters) get it unless updates name them."""
    named = {v.id for v, _ in pairs}
    pending = list(roots) + [e for _, e in pairs]
    seen: set[int] = set()
    while pending:
        for node in topo_order(pending):
            if node.id in seen:
                continue
            seen.add(node.id)
            if isinstance(node, Variable) and node.default_update is not None \
                    and node.id not in named:
                named.add(node.id)
                pairs.append((node, node.default_update))
                pending.append(node.default_update)
        pending = [p for p in pending if p.id not in seen]
    return pairs


def _backend(name: str):
    from symgraph.backends import get_backend

    return get_backend(name)


_MISSING = object()  # an input not given in a keyword call
_VARIABLE_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_VARIABLE_LOCKS_LOCK = threading.Lock()


def variable_lock(var: Variable) -> threading.Lock:
    """The lock every call updating `var` holds (Function.__call__)."""
    with _VARIABLE_LOCKS_LOCK:
        lock = _VARIABLE_LOCKS.get(var)
        if lock is None:
            lock = _VARIABLE_LOCKS[var] = threading.Lock()
        return lock


_MAIN_THREAD = threading.main_thread().ident
_SIGINT = int(signal.SIGINT)
_held_interrupts: list = []  # frames of the SIGINTs held back meanwhile
_holding = 0  # how many hold_interrupts() are on (main thread only)
_wrapped_handler = None  # the SIGINT handler _forward_interrupt forwards to


def _forward_interrupt(signum, frame):
    if _holding:
        _held_interrupts.append(frame)
    else:
        _wrapped_handler(signum, frame)


def hold_interrupts() -> bool:
    """Start holding back Ctrl-C (SIGINT) in the main thread; True if it does (then call
    release_interrupts). State changed in several steps (variables written in place kernel by
    kernel, then the rest swapped in; weights assigned one by one) is thus never left
    half-changed. Cheap (a call of a few microseconds takes it): the first use wraps the
    SIGINT handler in one that forwards to it while nothing is held; a handler installed
    later is wrapped again on the next use; other threads and non-Python handlers: no-op."""
    global _holding, _wrapped_handler
    if threading.get_ident() != _MAIN_THREAD:
        return False
    current = _signal.getsignal(_SIGINT)
    if current is not _forward_interrupt:
        if not callable(current):
            return False
        _wrapped_handler = current
        signal.signal(signal.SIGINT, _forward_interrupt)
    _holding += 1
    return True


def release_interrupts() -> None:
    """End a hold_interrupts(); a Ctrl-C held back meanwhile is raised now."""
    global _holding
    _holding -= 1
    if _held_interrupts and not _holding:
        frame = _held_interrupts[0]
        _held_interrupts.clear()
        _wrapped_handler(signal.SIGINT, frame)


@contextlib.contextmanager
def deferred_interrupt():
    """`with deferred_interrupt():` hold_interrupts() ... release_interrupts()."""
    on = hold_interrupts()
    try:
        yield
    finally:
        if on:
            release_interrupts()


class Function:
    """A compiled graph: call it with one array per input placeholder."""

    def __init__(self, inputs, outputs, updates=None, backend: str = "numpy", optimize: int = 2,
                 check_nan: bool = False, name: str | None = None, workers: int = 1):
        self.name = name or "function"
        self.inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        for i, p in enumerate(self.inputs):
            if not isinstance(p, Node) or p.op != "placeholder":
                what = p.describe() if isinstance(p, Node) else repr(p)
                raise SymgraphError(f"function: input {i} must be an sg.placeholder, got {what}")
        if len({p.id for p in self.inputs}) != len(self.inputs):
            raise SymgraphError("function: the same placeholder is listed twice in inputs")
        flat, self._restructure = _flatten_outputs(outputs)
        self.outputs = [as_node(o) for o in flat]
        pairs = _add_default_updates(_normalize_updates(updates), self.outputs)
        self.update_vars = [v for v, _ in pairs]
        self._update_dtypes = [np.dtype(v.dtype) for v in self.update_vars]  # per call: cheap
        self._check_leaves([e for _, e in pairs])
        self.backend_name = backend
        self.check_nan = check_nan
        start = time.perf_counter()
        results = self.outputs + [e for _, e in pairs]
        from symgraph.passes.pipeline import optimize as run_passes

        optimized, self.report = run_passes(results, level=optimize)
        self.graph = optimized
        options = {"workers": workers} if workers != 1 else {}  # kernel DAG on k threads
        target = _backend(backend)
        in_place_backend = getattr(target, "writes_in_place", False)
        if in_place_backend and self.update_vars:
            options["updates"] = self.update_vars  # the last results are their new values
        self._run = target.compile(self.inputs, optimized, check_nan=check_nan, **options)
        if getattr(self._run, "program", None) is not None:  # lowered: kernels, FLOPs, ...
            from symgraph.program import fill_report

            fill_report(self.report, self._run.program)
        self.compile_seconds = time.perf_counter() - start
        if envvars.flag("SYMGRAPH_DEBUG"):
            print(f"[symgraph] compiled {self.name} for {backend} in "
                  f"{self.compile_seconds * 1e3:.1f} ms ({len(topo_order(optimized))} nodes)",
                  file=sys.stderr)
        self._n_out = len(self.outputs)
        self._variables = [n for n in topo_order(optimized) if isinstance(n, Variable)]
        # every variable whose array a call may hand out or replace (read, updated or both)
        self._state_vars = list(dict.fromkeys(self._variables + self.update_vars))
        # A call updating variables holds their locks from computing to assigning, taken in
        # one global order (no deadlock): steps from several threads run one at a time per
        # variable and lose no update, on every backend (a numba step writing in place into
        # a fresh array, or a NumPy step, assigned after another step had read the old value).
        # A backend writing updates in place changes a variable's array while the step runs:
        # a call only reading it (another Function) must not run meanwhile (it would see some
        # elements new and some old), so on such a backend every call holds the locks of
        # every variable it reads as well.
        self._writes_in_place = bool(getattr(getattr(self._run, "program", None), "inplace",
                                             None))
        locked = self._state_vars if in_place_backend else self.update_vars
        self._locks = [variable_lock(v) for v in sorted(set(locked), key=lambda v: v.id)]
        self._signature = [(p, p.dtype, tuple(p.shape)) for p in self.inputs]
        # The fast path of _validate: (numpy dtype, rank, fixed (axis, size), symbolic
        # (axis, name)) per input; anything unusual takes the checking path below.
        self._fast = [(np.dtype(dtype), len(shape),
                       tuple((a, d) for a, d in enumerate(shape) if isinstance(d, int)),
                       tuple((a, d) for a, d in enumerate(shape) if not isinstance(d, int)))
                      for _, dtype, shape in self._signature]

    def _check_leaves(self, update_exprs) -> None:
        given = {p.id for p in self.inputs}
        bound = {d for p in self.inputs for d in p.shape if isinstance(d, str)}
        for node in topo_order(self.outputs + list(update_exprs)):
            if node.op == "placeholder" and node.id not in given:
                raise SymgraphError(f"function: the outputs need {node.describe()}, which is not "
                                    "among the inputs")
            for d in node.shape:
                if isinstance(d, str) and d not in bound:
                    raise SymgraphError(f"function: symbolic dim {d!r} of {node.describe()} is "
                                        "not bound by any input placeholder")

    def _validate(self, args) -> tuple[list, dict]:
        """The arrays to run on and the symbolic dims they bind; SymgraphError otherwise."""
        if len(args) == len(self._fast):  # fast path: arrays of the exact dtype and rank
            dims: dict = {}
            for (dtype, ndim, fixed, symbolic), a in zip(self._fast, args):
                if type(a) is not np.ndarray or a.dtype != dtype or a.ndim != ndim:
                    break
                shape = a.shape
                if any(shape[axis] != size for axis, size in fixed):
                    break
                if any(dims.setdefault(name, shape[axis]) != shape[axis]
                       for axis, name in symbolic):
                    break
            else:
                return list(args), dims
        return self._validate_slowly(args)

    def _validate_slowly(self, args) -> tuple[list, dict]:
        if len(args) != len(self.inputs):
            names = ", ".join(p.label() for p in self.inputs)
            raise SymgraphError(f"{self.name} takes {len(self.inputs)} inputs ({names}), "
                                f"got {len(args)}")
        arrays, dims, owner = [], {}, {}
        for (node, dtype, shape), arg in zip(self._signature, args):
            try:
                a = arg if isinstance(arg, np.ndarray) else np.asarray(arg)
            except (ValueError, TypeError) as exc:  # a ragged list, say
                raise SymgraphError(f"input {node.label()!r} is not an array ({exc}) "
                                    f"(placeholder {describe_trace(node.trace)})") from None
            if a.dtype != np.dtype(dtype):  # by value: a non-native byte order is converted
                if not np.can_cast(a.dtype, dtype, casting="same_kind"):
                    raise SymgraphError(f"input {node.label()!r} expects {dtype}, got {a.dtype} "
                                        f"(placeholder {describe_trace(node.trace)})")
                why = int_range_error(a, dtype)
                if why is not None:
                    raise SymgraphError(f"input {node.label()!r} expects {dtype}, got {a.dtype} "
                                        f"{why} (placeholder {describe_trace(node.trace)})")
                a = a.astype(dtype)
            if a.ndim != len(shape):
                raise SymgraphError(f"input {node.label()!r} expects rank {len(shape)} shape "
                                    f"{shape}, got shape {a.shape} "
                                    f"(placeholder {describe_trace(node.trace)})")
            for want, got in zip(shape, a.shape):
                if isinstance(want, int):
                    if want != got:
                        raise SymgraphError(f"input {node.label()!r} expects shape {shape}, got "
                                            f"{a.shape} (placeholder {describe_trace(node.trace)})")
                elif dims.setdefault(want, got) != got:
                    raise SymgraphError(
                        f"symbolic dim {want!r} is {dims[want]} for input {owner[want]!r} but "
                        f"{got} for input {node.label()!r} (shape {a.shape}; placeholder "
                        f"{describe_trace(node.trace)})")
                else:
                    owner.setdefault(want, node.label())
            arrays.append(a)
        return arrays, dims

    def _bind(self, args, named) -> tuple:
        """Positional arguments followed by keyword ones, matched to placeholders by name."""
        names = [p.name for p in self.inputs]
        listed = ", ".join(p.name if p.name else f"{p.label()} (unnamed: by position only)"
                           for p in self.inputs)
        bound = list(args) + [_MISSING] * (len(names) - len(args))
        for key, value in named.items():
            if names.count(key) != 1:
                why = "two inputs have" if names.count(key) else "no input has"
                raise SymgraphError(f"{self.name} got a keyword argument {key!r}, but {why} "
                                    f"that name; its inputs are ({listed})")
            i = names.index(key)
            if i < len(args):
                raise SymgraphError(f"{self.name} got input {key!r} both by position and by "
                                    "keyword")
            bound[i] = value
        missing = [p.label() for p, value in zip(self.inputs, bound) if value is _MISSING]
        if missing or len(bound) != len(names):
            raise SymgraphError(f"{self.name} takes {len(names)} inputs ({listed}), got "
                                f"{len(args)} by position and {', '.join(named)} by keyword"
                                + (f"; missing {', '.join(missing)}" if missing else ""))
        return tuple(bound)

    def _check_finite_inputs(self, arrays) -> None:
        """With NaN checks on, a NaN/inf fed in (or a NaN a variable holds) is named as such,
        not blamed on the first node that computes with it."""
        for node, a in zip(self.inputs, arrays):
            found = first_nonfinite(a)
            if found:
                raise SymgraphError(f"input {node.label()!r} holds {found[0]} (first at index "
                                    f"{found[1]} of shape {a.shape}; "
                                    f"placeholder {describe_trace(node.trace)})")
        for var in self._variables:  # NaN only: an inf may be a deliberate initial value
            a = var._value
            if a.dtype.kind == "f" and np.isnan(a).any():
                raise SymgraphError(f"{var.describe()} holds NaN before the call")

    def __call__(self, *args, **named):
        if named:
            args = self._bind(args, named)
        arrays, dims = self._validate(args)
        if self.check_nan:
            self._check_finite_inputs(arrays)
        if not self._locks:
            return self._call(arrays, dims)
        for lock in self._locks:
            lock.acquire()
        try:
            if self._writes_in_place and hold_interrupts():  # a Ctrl-C now would leave
                try:  # some variables written in place and the others not
                    return self._call(arrays, dims)
                finally:
                    release_interrupts()
            return self._call(arrays, dims)
        finally:
            for lock in reversed(self._locks):
                lock.release()

    def _held(self, arrays) -> set:
        """ids of arrays held elsewhere: every variable's (read or only updated), the inputs'."""
        held = {id(v._host) for v in self._state_vars}
        held.update(map(id, arrays))
        return held

    def _call(self, arrays, dims):
        """Run the backend, swap the updates in, hand out the outputs."""
        results = self._run(arrays, dims)
        outs = [o if type(o) is np.ndarray else o.to_host() if hasattr(o, "to_host") else o
                for o in results[:self._n_out]]
        news = results[self._n_out:]
        held = self._held(arrays)
        staged = []
        for var, dtype, value in zip(self.update_vars, self._update_dtypes, news):
            if type(value) is not np.ndarray and hasattr(value, "to_host"):
                staged.append((var, value))  # device-resident (CUDA): stays there until read
                continue
            if value is var._host:  # written in place (the backend proved it safe)
                continue
            if (shared(value) or not value.flags.writeable or id(value) in held
                    or value.dtype != dtype):  # never share an array between states
                value = np.array(value, dtype=dtype)
            held.add(id(value))  # a second variable given the same array gets a copy
            staged.append((var, value))
        for var, value in staged:  # every update computed: now swap state in
            if type(value) is np.ndarray or not hasattr(value, "to_host"):
                var._assign(value)
            else:
                var._assign_pending(value)
        if staged:  # the replaced arrays are nobody's now: they may be handed out
            held = self._held(arrays)
        # outputs are the caller's to mutate: never hand out state, a view into it, an input
        # array, or one array twice (the same node under two names)
        seen: set[int] = set()
        for i, o in enumerate(outs):
            if id(o) in held or id(o) in seen or shared(o) or not o.flags.writeable:
                outs[i] = o = o.copy()
            seen.add(id(o))
        return self._restructure(outs)

    def dump(self) -> str:
        """The optimized graph as text, one node per line."""
        return dump(self.graph)


def function(inputs: Sequence[Node], outputs, updates=None, backend: str = "numpy",
             optimize: int = 2, check_nan: bool = False, name: str | None = None,
             workers: int = 1) -> Function:
    """Compile `outputs` (a node, or nodes in lists, tuples and dicts, nested) of `inputs`
    for `backend`.

    `updates` maps variables to new-value expressions, applied after a successful call.
    `optimize` is the pass level O0..O3; `check_nan` raises on the first node producing NaN/inf.
    `workers` > 1 runs independent kernels concurrently on that many threads.
    """
    return Function(inputs, outputs, updates, backend, optimize, check_nan, name, workers)
