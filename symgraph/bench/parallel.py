"""Parallel gain: the same compiled program on 1 worker and on 2 workers, in one run.

Two workloads with independent branches:

- `matmul_chains`: two independent chains of square GEMMs (x1 @ A1 @ A2 ..., x2 @ B1 @ ...),
  the textbook case: the two chains share nothing, so two workers can each take one;
- `mlp_step`: one SGD training step of a 784-1024-1024-10 ReLU MLP (batch 128). In the backward
  pass each layer's weight-gradient matmul (h^T @ delta) is independent of the matmul that
  propagates delta to the layer below (delta @ W^T), and the parameter updates are independent
  of each other.

Each workload is compiled once per worker count with the NumPy backend (`workers=k`, the lowered
program run by symgraph/backends/parallel.py) and timed alternately (1, 2, 1, 2, ...) so drift on
the shared machine hits both alike; we report medians. BLAS is pinned to 1 thread per worker with
threadpoolctl, so the only parallelism is ours. For context we also time the reference
interpreter with BLAS on 1 and on 2 threads (parallelism inside each GEMM instead of between).

    python -m symgraph.bench.parallel [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import symgraph as sg
from symgraph.backends.numpy_ref import NumpyBackend
from symgraph.backends.parallel import compile_program, overlap
from symgraph.lower import lower
from symgraph.memplan import plan_program
from symgraph.passes.pipeline import optimize
from symgraph.schedule import schedule_program


def matmul_chains(n: int = 512, depth: int = 4, seed: int = 0):
    """Two independent GEMM chains: (inputs, outputs, feed arrays, FLOPs per call)."""
    rng = np.random.default_rng(seed)
    scale = np.float32(1.0 / np.sqrt(n))
    xs = [sg.placeholder((n, n), name=f"x{c}") for c in range(2)]
    outs = []
    for c, x in enumerate(xs):
        h = x
        for i in range(depth):
            w = sg.variable((rng.standard_normal((n, n)) * scale).astype(np.float32),
                            name=f"W{c}_{i}")
            h = h @ w
        outs.append(h)
    feed = [rng.standard_normal((n, n)).astype(np.float32) for _ in xs]
    return xs, outs, None, feed, 2.0 * 2 * depth * n ** 3


def mlp_step(batch: int = 128, sizes=(784, 1024, 1024, 10), seed: int = 0):
    """One SGD step of a ReLU MLP: (inputs, loss, updates, feed arrays, FLOPs per call)."""
    rng = np.random.default_rng(seed)
    x = sg.placeholder(("batch", sizes[0]), name="x")
    y = sg.placeholder(("batch",), dtype="int32", name="y")
    params, h = [], x
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        w = sg.variable(rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32),
                        name=f"W{i}")
        b = sg.variable(np.zeros(fan_out, np.float32), name=f"b{i}")
        params += [w, b]
        h = h @ w + b
        if i < len(sizes) - 2:
            h = sg.relu(h)
    loss = sg.mean(sg.sparse_softmax_cross_entropy(h, y))
    grads = sg.grad(loss, params)
    updates = {p: p - 0.01 * g for p, g in zip(params, grads, strict=True)}
    feed = [rng.standard_normal((batch, sizes[0])).astype(np.float32),
            rng.integers(0, sizes[-1], batch).astype(np.int32)]
    mm = sum(a * b for a, b in zip(sizes, sizes[1:], strict=False))
    flops = 2.0 * batch * mm * 3 - 2.0 * batch * sizes[0] * sizes[1]  # no grad for the input
    return [x, y], [loss], updates, feed, flops


WORKLOADS = {"matmul_chains": matmul_chains, "mlp_step": mlp_step}


def _interleaved(fns: dict, repeats: int, inner: int) -> dict[str, list[float]]:
    """Seconds per call for each fn, sampled in round-robin so noise hits all of them alike."""
    samples = {name: [] for name in fns}
    for fn in fns.values():  # warm-up: first-call costs (bindings, schedules, BLAS buffers)
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[name].append((time.perf_counter() - start) / inner)
    return samples


def hand_threaded_chains(n: int, depth: int) -> dict:
    """Hand-written NumPy, no symgraph: the two chains serially, and on two Python threads.

    Timed beside our runs, this is what the machine gives to thread-level parallelism right
    then: the ceiling for the runner's ratio.
    """
    rng = np.random.default_rng(1)
    mats = [rng.standard_normal((n, n)).astype(np.float32) / np.float32(np.sqrt(n))
            for _ in range(2 * depth + 2)]

    def chain(c):
        h = mats[c]
        for i in range(depth):
            h = h @ mats[2 + c * depth + i]
        return h

    pool = ThreadPoolExecutor(1)

    def threaded():
        other = pool.submit(chain, 1)
        chain(0)
        other.result()

    return {"numpy_serial": lambda: (chain(0), chain(1)), "numpy_threads_2": threaded}


def _gemm_seconds(n: int, count: int = 20) -> float:
    """Seconds for `count` n^3 GEMMs on one BLAS thread (run inside a worker process)."""
    with threadpool_limits(limits=1, user_api="blas"):
        a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
        start = time.perf_counter()
        for _ in range(count):
            a @ a
        return time.perf_counter() - start


def process_capacity(n: int = 512, rounds: int = 3) -> float:
    """How many cores' worth of GEMM the machine gives us now: 2 processes vs 1 (no GIL at all).

    2.0 means two idle cores; about 1.0 means other load leaves room for one stream of work,
    and then no threading, ours or anyone's, can gain.
    """
    import multiprocessing

    ratios = []
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_gemm_seconds, [n, n])  # warm-up: import, BLAS buffers
        for _ in range(rounds):
            one = pool.apply(_gemm_seconds, (n,))
            two = max(pool.map(_gemm_seconds, [n, n]))
            ratios.append(2 * one / two)
    return statistics.median(ratios)


def _blas_info() -> list[dict]:
    return [{"api": p.get("user_api"), "library": p.get("internal_api"),
             "threads": p.get("num_threads"), "version": p.get("version")}
            for p in threadpool_info()]


def _depth(node) -> int:
    """Matmuls along a chain ending at `node`."""
    depth = 0
    while node.op == "matmul":
        depth, node = depth + 1, node.inputs[0]
    return depth


def _bind(inputs, feed) -> dict:
    """The symbolic dims the feed arrays bind (what the runtime does per call)."""
    dims = {}
    for node, array in zip(inputs, feed, strict=True):
        for want, got in zip(node.shape, array.shape, strict=True):
            if isinstance(want, str):
                dims[want] = got
    return dims


def run_workload(name: str, repeats: int = 15, inner: int = 3, quick: bool = False) -> dict:
    """Median seconds per call on 1 and 2 workers (and the reference), with the ratio."""
    if quick:
        inputs, outputs, updates, feed, flops = (
            matmul_chains(n=256, depth=3) if name == "matmul_chains" else mlp_step(batch=64))
    else:
        inputs, outputs, updates, feed, flops = WORKLOADS[name]()
    # Update expressions become plain outputs, so every call computes the same step on the same
    # state; all three runs share one optimized graph.
    results, _ = optimize(list(outputs) + list((updates or {}).values()), 2)
    dims = _bind(inputs, feed)
    reference = NumpyBackend().compile(inputs, results)
    # "workers_1" is the parallel runner on one worker: the same kernels with no threads, so the
    # 1-vs-2 ratio isolates scheduling from the cost of evaluating kernel by kernel.
    one = compile_program(inputs, results, workers=1)
    two = compile_program(inputs, results, workers=2)
    fns = {"reference": lambda: reference(feed, dims), "workers_1": lambda: one(feed, dims),
           "workers_2": lambda: two(feed, dims)}
    schedule = two.runner.binding(dims).schedule
    if name == "matmul_chains":
        fns.update(hand_threaded_chains(inputs[0].shape[0], _depth(results[0])))
    with threadpool_limits(limits=1, user_api="blas"):
        one = _interleaved(fns, repeats, inner)
        overlaps = []
        for _ in range(5):  # achieved concurrency: kernel-busy time over wall time
            trace: list = []
            two.runner.run(feed, dims, trace)
            overlaps.append(overlap(trace))
        blas = _blas_info()
    with threadpool_limits(limits=2, user_api="blas"):
        ref2 = _interleaved({"reference_blas2": fns["reference"]}, repeats, inner)
    med = {k: statistics.median(v) for k, v in {**one, **ref2}.items()}
    best = {k: min(v) for k, v in {**one, **ref2}.items()}
    return {"median_s": med, "samples_s": {**one, **ref2},
            "ratio_1_over_2_workers": med["workers_1"] / med["workers_2"],
            # Best samples: the runs least disturbed by other processes on a shared machine.
            "ratio_of_best_samples": best["workers_1"] / best["workers_2"],
            "ratio_hand_threads": (med["numpy_serial"] / med["numpy_threads_2"]
                                   if "numpy_serial" in med else None),
            "estimated_speedup": schedule.estimated_speedup,
            "kernels": len(schedule.order), "schedule_depth": schedule.depth,
            "schedule_width": schedule.width,
            "gflops_per_s": {k: flops / v / 1e9 for k, v in med.items()},
            "overlap_2_workers": statistics.median(overlaps),
            "blas_during_1_thread_runs": blas}


def memory_report(batch: int = 128) -> dict:
    """The MLP step's memory plan at `batch`: naive vs serial vs parallel-safe, in bytes."""
    inputs, outputs, updates, _, _ = mlp_step(batch=batch)
    results, _ = optimize(list(outputs) + list(updates.values()), 2)
    program = lower(inputs, results)
    dims = {"batch": batch}
    temps = sum(b.nbytes(dims) for b in program.buffers if b.kind == "temp")
    out = {"binding": dims, "kernels": len(program.kernels), "buffers": len(program.buffers),
           "naive": {"temps_bytes": temps}}
    for label, workers, timed in (("serial", 1, True), ("parallel_2", 2, True),
                                  ("parallel_2_dag_only", 2, False)):
        plan = plan_program(program, dims, schedule_program(program, workers, dims), timed=timed)
        out[label] = {"temps_bytes": plan.arena_bytes, "peak_bytes": plan.peak_bytes,
                      "live_peak_bytes": plan.live_peak_bytes, "inplace": len(plan.inplace),
                      "slots": len(plan.slot_bytes), "extra_deps": len(plan.extra_deps)}
        out["naive"]["peak_bytes"] = plan.naive_bytes
    return out


def run(quick: bool = False, repeats: int = 15) -> dict:
    """Every workload; returns (and is printed as) one dict."""
    result = {"cpu_count": os.cpu_count(), "loadavg_before": os.getloadavg(),
              "process_capacity_before": process_capacity(),
              "numpy": np.__version__, "blas_threads_per_worker": 1, "repeats": repeats,
              "quick": quick, "workloads": {}}
    for name in WORKLOADS:
        result["workloads"][name] = run_workload(name, repeats=repeats, quick=quick)
    result["memory"] = memory_report(batch=64 if quick else 128)
    result["loadavg_after"] = os.getloadavg()
    result["process_capacity_after"] = process_capacity()
    return result


def format_summary(result: dict) -> str:
    lines = [f"parallel gain (BLAS pinned to 1 thread per worker; {result['cpu_count']} CPUs; "
             f"load {result['loadavg_before'][0]:.2f} -> {result['loadavg_after'][0]:.2f}; "
             f"capacity for 2 GEMM processes x{result['process_capacity_before']:.2f} -> "
             f"x{result['process_capacity_after']:.2f})"]
    for name, w in result["workloads"].items():
        m = w["median_s"]
        lines.append(f"  {name}: 1 worker {m['workers_1'] * 1e3:.2f} ms, 2 workers "
                     f"{m['workers_2'] * 1e3:.2f} ms -> x{w['ratio_1_over_2_workers']:.2f} "
                     f"(best samples x{w['ratio_of_best_samples']:.2f}; kernels overlapped "
                     f"x{w['overlap_2_workers']:.2f}) "
                     f"(schedule estimate x{w['estimated_speedup']:.2f}; {w['kernels']} kernels, "
                     f"depth {w['schedule_depth']}, width {w['schedule_width']}); reference "
                     f"interpreter {m['reference'] * 1e3:.2f} ms on 1 BLAS thread, "
                     f"{m['reference_blas2'] * 1e3:.2f} ms on 2")
        if "numpy_serial" in m:
            lines.append(f"    hand-written NumPy, same chains: serial "
                         f"{m['numpy_serial'] * 1e3:.2f} "
                         f"ms, 2 threads {m['numpy_threads_2'] * 1e3:.2f} ms -> "
                         f"x{m['numpy_serial'] / m['numpy_threads_2']:.2f} (the machine's ceiling "
                         "at that moment)")
    mem = result["memory"]
    mib = 1 << 20
    lines.append(f"  memory, MLP step at {mem['binding']} (temporaries / whole step): naive "
                 f"{mem['naive']['temps_bytes'] / mib:.2f} / {mem['naive']['peak_bytes'] / mib:.2f}"
                 f" MiB, serial plan {mem['serial']['temps_bytes'] / mib:.2f} / "
                 f"{mem['serial']['peak_bytes'] / mib:.2f} MiB, parallel-safe plan "
                 f"{mem['parallel_2']['temps_bytes'] / mib:.2f} / "
                 f"{mem['parallel_2']['peak_bytes'] / mib:.2f} MiB ("
                 f"{mem['parallel_2']['extra_deps']} extra waits; DAG edges only: "
                 f"{mem['parallel_2_dag_only']['temps_bytes'] / mib:.2f} / "
                 f"{mem['parallel_2_dag_only']['peak_bytes'] / mib:.2f} MiB)")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, a few seconds")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print the full dict as JSON")
    args = parser.parse_args(argv)
    result = run(quick=args.quick, repeats=args.repeats)
    print(format_summary(result))
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main()
