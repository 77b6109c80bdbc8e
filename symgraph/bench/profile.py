"""Suite `profile`: where a Numba training step spends its time, kernel by kernel.

The step is compiled with the Numba backend's Python driver (SYMGRAPH_NUMBA_DRIVER=1: one njit
function per kernel instead of one entry for the whole program) and its kernels are run one
after another in program order with a timer around each. Per-kernel times are therefore real
kernel times; the driver's own per-kernel dispatch (a few microseconds each) shows up as the
gap between the step time and the sum of kernel times. Kernels are grouped by kind (matmul,
elementwise, reduce, index, movement) with their FLOPs and bytes at the bound batch size.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict

import numpy as np

import symgraph as sg
from symgraph.bench import workloads as W


class TimedRunner:
    """Stands in for the driver's DagRunner: runs kernels in program order, timing each."""

    def __init__(self, program):
        self.order = [k.id for k in program.kernels]
        self.seconds: dict[int, float] = defaultdict(float)

    def run(self, execute) -> None:
        clock = time.perf_counter
        for kid in self.order:
            start = clock()
            execute(kid)
            self.seconds[kid] += clock() - start


def _buffer_bytes(program, kernel, dims) -> int:
    buffers = {}
    for node in tuple(kernel.reads) + tuple(kernel.writes):
        buf = program.buffer(node)
        buffers[buf.id] = buf
    return sum(buf.nbytes(dims) for buf in buffers.values())


def profile_step(model: str = "M1", sizes=None, batch: int = W.BATCH, steps: int = 20,
                 warmup: int = 3, top: int = 12) -> dict:
    """Per-kernel time of one model's Numba training step (seconds per step)."""
    from symgraph.program import kernel_flops

    build = W.build_m1 if model == "M1" else W.build_m2
    sizes = tuple(sizes or (W.M1_SIZES if model == "M1" else W.M2_SIZES))
    graph = build(sizes=sizes)
    before = os.environ.get("SYMGRAPH_NUMBA_DRIVER")
    os.environ["SYMGRAPH_NUMBA_DRIVER"] = "1"
    try:
        fn = sg.function(*graph, backend="numba")
    finally:
        if before is None:
            os.environ.pop("SYMGRAPH_NUMBA_DRIVER", None)
        else:
            os.environ["SYMGRAPH_NUMBA_DRIVER"] = before
    compiled, program = fn._run.compiled, fn._run.program
    timer = TimedRunner(program)
    compiled.runner = timer
    x, y = W.make_batch(batch, sizes[0], sizes[-1])
    for _ in range(warmup):
        fn(x, y)
    timer.seconds.clear()
    start = time.perf_counter()
    for _ in range(steps):
        fn(x, y)
    step_s = (time.perf_counter() - start) / steps
    dims = {"batch": batch}
    kernels, by_kind = [], defaultdict(lambda: {"seconds": 0.0, "kernels": 0, "flops": 0.0})
    for k in program.kernels:
        seconds = timer.seconds[k.id] / steps
        flops = float(kernel_flops(k, dims))
        kernels.append({"kernel": k.id, "kind": k.kind, "ops": k.ops()[:120],
                        "seconds": seconds, "flops": flops,
                        "bytes": _buffer_bytes(program, k, dims)})
        group = by_kind[k.kind]
        group["seconds"] += seconds
        group["kernels"] += 1
        group["flops"] += flops
    kernel_s = sum(k["seconds"] for k in kernels)
    kernels.sort(key=lambda k: -k["seconds"])
    return {"model": model, "batch": batch, "steps": steps, "step_s": step_s,
            "kernels_s": kernel_s, "dispatch_and_driver_s": step_s - kernel_s,
            "n_kernels": len(kernels), "by_kind": dict(by_kind), "top": kernels[:top],
            "samples_per_s_driver": batch / step_s,
            "entry_mode": entry_split(graph, x, y, steps, warmup)}


def entry_split(graph, x, y, steps: int, warmup: int) -> dict:
    """The default path (one compiled entry per step): the step's time, the entry's, and the
    Python around it (validation, result arrays, swapping in the new state): median of 5
    groups of `steps` steps."""
    fn = sg.function(*graph, backend="numba")
    compiled = fn._run.compiled
    inner, inside = compiled.entry, [0.0]

    def timed(*args):
        start = time.perf_counter()
        try:
            return inner(*args)
        finally:
            inside[0] += time.perf_counter() - start
    compiled.entry = timed
    for _ in range(warmup):
        fn(x, y)
    groups = []
    for _ in range(5):
        inside[0] = 0.0
        start = time.perf_counter()
        for _ in range(steps):
            fn(x, y)
        groups.append(((time.perf_counter() - start) / steps, inside[0] / steps))
    step_s, entry_s = sorted(groups)[2]
    return {"step_s": step_s, "entry_s": entry_s, "python_s": step_s - entry_s,
            "native": bool(compiled.native)}


def run_profile(quick: bool = False, models=("M1", "M2"), log=print) -> dict:
    """Profiles of each model (tiny layers in quick mode), or why there are none."""
    try:
        import symgraph.backends.numba_cpu  # noqa: F401
    except ImportError as exc:
        return {"error": f"the Numba backend is not importable: {exc}"}
    out = {}
    for model in models:
        log(f"  profile {model}")
        sizes = W.M1_SIZES if model == "M1" else W.M2_SIZES
        if quick:
            sizes = (32, 24, 24, 10)
        try:
            out[model] = profile_step(model, sizes, batch=16 if quick else W.BATCH,
                                      steps=2 if quick else 20, warmup=1 if quick else 3)
        except Exception as exc:  # a backend gap is a result, not a crash of the whole run
            out[model] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return out


def profile_table(doc: dict) -> list[list[str]]:
    """Rows: model, kernel kind (or a top kernel), time per step, share, GFLOP/s."""
    rows = []
    for model, p in (doc.get("profile") or {}).items():
        if not isinstance(p, dict) or "error" in p:
            continue
        step = p["step_s"]
        rows.append([model, f"whole step ({p['n_kernels']} kernels, driver mode)",
                     f"{step * 1e3:.2f} ms", "100%", "-"])
        for kind, g in sorted(p["by_kind"].items(), key=lambda kv: -kv[1]["seconds"]):
            rate = g["flops"] / g["seconds"] / 1e9 if g["seconds"] else float("nan")
            rows.append([model, f"{kind} ({g['kernels']} kernels)",
                         f"{g['seconds'] * 1e3:.2f} ms", f"{100 * g['seconds'] / step:.0f}%",
                         f"{rate:.1f}" if np.isfinite(rate) and g["flops"] else "-"])
        rows.append([model, "driver dispatch, validation, updates",
                     f"{p['dispatch_and_driver_s'] * 1e3:.2f} ms",
                     f"{100 * p['dispatch_and_driver_s'] / step:.0f}%", "-"])
        e = p.get("entry_mode")
        if e:
            rows.append([model, "whole step (one entry, the default)",
                         f"{e['step_s'] * 1e3:.2f} ms", "-", "-"])
            rows.append([model, "  Python around the entry (checks, result arrays, state)",
                         f"{e['python_s'] * 1e6:.0f} us",
                         f"{100 * e['python_s'] / e['step_s']:.0f}% of it", "-"])
        for k in p["top"][:5]:
            rate = k["flops"] / k["seconds"] / 1e9 if k["seconds"] and k["flops"] else None
            rows.append([model, f"  k{k['kernel']} {k['kind']}: {k['ops'][:60]}",
                         f"{k['seconds'] * 1e3:.2f} ms", f"{100 * k['seconds'] / step:.0f}%",
                         f"{rate:.1f}" if rate else "-"])
    return [["model", "where", "time per step", "share", "GFLOP/s"]] + rows
