"""One system training one model, in its own process: `python -m symgraph.bench.train_worker`.

A fresh process per measurement is what makes cold and warm compile times honest (nothing is
cached in memory) and gives each system its own peak RSS. The parent (train.py) pins the thread
pools through the environment before this process imports anything, chooses the cache
directories, and reads back one JSON line starting with RESULT_MARK.

Timeline: imports (timed apart), then build + compile + first step (the time to first step,
cold or warm depending on the cache), then warm-up steps, then `repeats` samples of `steps`
steps each (samples/s = batch * steps / seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

RESULT_MARK = "@@RESULT "
SYSTEMS = ("symgraph-numba", "symgraph-numba-blas", "symgraph-numba-jit", "symgraph-numba-mkl",
           "symgraph-numba-openblas", "symgraph-numpy", "numpy-hand", "torch-eager", "jax-jit",
           "gemm-only", "gemm-only-mkl")
# symgraph-numba uses the BLAS the backend picks (MKL on Intel CPUs, else GEMMs split across the
# thread team, each block computed by symgraph's own kernel, native_gemm.py); -blas computes
# those blocks with OpenBLAS's C interface instead (SYMGRAPH_GEMM=blas, listed where the own
# kernel is the pick); -mkl forces MKL (listed where it is not the pick);
# -openblas forces SciPy's OpenBLAS through Numba's helper (threaded calls, no split).
# symgraph-numba compiles natively (native.py -> LLVM); -jit forces Numba's compiler.
# gemm-only: the step's GEMMs through NumPy's OpenBLAS; gemm-only-mkl: through MKL.


def import_system(system: str) -> str:
    """Import what `system` needs (timed apart from compiling); returns its version."""
    if system.startswith("torch"):
        import torch

        return torch.__version__
    if system.startswith("jax"):
        import jax

        return jax.__version__
    if system.startswith("symgraph-numba") or system == "gemm-only-mkl":
        import os

        import numba

        if system == "symgraph-numba-openblas":
            os.environ["SYMGRAPH_BLAS"] = "scipy"
        if system == "symgraph-numba-blas":
            os.environ["SYMGRAPH_GEMM"] = "blas"
        if system in ("symgraph-numba-mkl", "gemm-only-mkl"):
            os.environ["SYMGRAPH_BLAS"] = "mkl"
        if system == "symgraph-numba-jit":
            os.environ["SYMGRAPH_NATIVE"] = "numba"

        import symgraph.backends.numba_cpu  # noqa: F401

        return numba.__version__
    import numpy

    return numpy.__version__


def make_step(system: str, model: str, sizes, threads: int, jax_cache: str | None,
              batch: int):
    """Build the step for `system`; returns (step(x, y), sync(out) -> float, info dict)."""
    from symgraph.bench import peers
    from symgraph.bench import workloads as W

    build = W.build_m1 if model == "M1" else W.build_m2
    graph = build(sizes=tuple(sizes))
    state = W.state_arrays(graph)
    if system.startswith("symgraph-"):
        import symgraph as sg

        backend = "numba" if system.startswith("symgraph-numba") else "numpy"
        fn = sg.function(*graph, backend=backend)
        info = {"compile_s": fn.compile_seconds, "report": fn.report}
        if backend == "numba":
            from symgraph.backends.numba_cpu import blas

            info["blas"] = blas.BLAS
        return fn, float, info
    if system == "numpy-hand":
        step = W.NumpyM1(state) if model == "M1" else W.NumpyM2(state)
        return step, float, {}
    if system in ("gemm-only", "gemm-only-mkl"):
        return W.GemmOnly(sizes, batch, blas="mkl" if system.endswith("mkl") else "numpy"), \
            float, {}
    if system == "torch-eager":
        if model == "M1":
            return (*peers.torch_m1(state, threads), {})
        return (*peers.torch_m2(state, threads), {})
    if system == "jax-jit":
        peers.configure_jax(jax_cache)
        step, sync = peers.jax_m1(state) if model == "M1" else peers.jax_m2(state)
        return step, sync, {}
    raise ValueError(f"unknown system {system!r}; choose one of {', '.join(SYSTEMS)}")


def run(args) -> dict:
    """Measure one (system, model) pair; returns the JSON result."""
    from symgraph.bench.timing import peak_rss_mb, thread_pools
    from symgraph.bench.workloads import make_batch

    start = time.perf_counter()
    version = import_system(args.system)
    import_s = time.perf_counter() - start
    # Enough distinct random batches that no system memorizes them during the run: a loss
    # driven to ~0 gives denormal gradients, which slow every system by different amounts.
    n_batches = max(4, min(64, args.warmup + args.repeats * args.steps))
    batches = [make_batch(args.batch, args.sizes[0], args.sizes[-1], seed=k)
               for k in range(n_batches)]
    start = time.perf_counter()
    step, sync, info = make_step(args.system, args.model, args.sizes, args.threads,
                                 args.jax_cache, args.batch)
    loss = sync(step(*batches[0]))
    first_step_s = time.perf_counter() - start
    info = {**getattr(step, "info", {}), **info}
    result = {"system": args.system, "model": args.model, "version": version,
              "import_s": import_s, "first_step_s": first_step_s, "first_loss": loss,
              "batch": args.batch, "sizes": list(args.sizes), "threads": args.threads}
    result.update({k: v for k, v in info.items() if k != "report"})
    report = info.get("report")
    if report is not None:  # a CompileReport (or a plain dict from an older pipeline)
        result["pass_report"] = report.to_dict() if hasattr(report, "to_dict") else report
    if not args.first_step_only:
        for k in range(args.warmup):
            sync(step(*batches[k % len(batches)]))
        samples, done = [], args.warmup
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                out = step(*batches[done % len(batches)])
                done += 1
            loss = sync(out)
            samples.append(args.batch * args.steps / (time.perf_counter() - t0))
        result.update({"samples_per_s": samples, "last_loss": loss})
    result["peak_rss_mb"] = peak_rss_mb()
    result["thread_pools"] = thread_pools()
    return result


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", required=True, choices=SYSTEMS)
    parser.add_argument("--model", required=True, choices=("M1", "M2"))
    parser.add_argument("--sizes", type=json.loads, required=True, help="layer widths, JSON")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed sample")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jax-cache", default=None)
    parser.add_argument("--first-step-only", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    from symgraph.bench.timing import to_jsonable

    args = parse(argv)
    try:
        result = run(args)
    except Exception as exc:  # reported to the parent as a row with an error
        result = {"system": args.system, "model": args.model,
                  "error": f"{type(exc).__name__}: {exc}"[:500]}
    print(RESULT_MARK + json.dumps(to_jsonable(result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
