"""Suite `train`: M1 and M2 training throughput, compile times and peak RSS, system by system.

Every (system, model) pair runs twice in fresh processes (train_worker.py) with the same new
cache directories: the first run is cold (nothing cached) and measures throughput too; the
second only times the first step, which is then the warm (cached) compile. Thread pools are
pinned to the same count for every system through the environment.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile

from symgraph.bench.timing import pin_threads_env
from symgraph.bench.train_worker import RESULT_MARK, SYSTEMS
from symgraph.bench.workloads import BATCH, M1_SIZES, M2_SIZES, matmul_flops

QUICK_SIZES = {"M1": (32, 48, 48, 48, 10), "M2": (32, 24, 24, 10)}
FULL_SIZES = {"M1": M1_SIZES, "M2": M2_SIZES}


def available_systems(requested=None) -> list[str]:
    """Systems that can run here: peers and the Numba backend only when importable."""
    found = []
    for system in SYSTEMS:
        module = {"symgraph-numba": "symgraph.backends.numba_cpu", "torch-eager": "torch",
                  "jax-jit": "jax"}.get(system)
        try:
            ok = module is None or importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            ok = False
        if ok and (requested is None or system in requested):
            found.append(system)
    return found


def _worker(args: list[str], env: dict, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "symgraph.bench.train_worker", *args]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    tail = (proc.stderr or proc.stdout)[-400:]
    return {"error": f"worker exited {proc.returncode} without a result: {tail}"}


def _summary(cold: dict, warm: dict, model: str, sizes, batch: int,
             roof_gflops: float | None) -> dict:
    row = {"suite": "train", "model": model, "system": cold.get("system"), "sizes": list(sizes),
           "batch": batch, "cold": cold, "warm": warm}
    if "error" in cold:
        row["error"] = cold["error"]
        return row
    samples = cold.get("samples_per_s", [])
    row.update({"first_step_cold_s": cold.get("first_step_s"),
                "first_step_warm_s": warm.get("first_step_s"),
                "compile_cold_s": cold.get("compile_s"), "compile_warm_s": warm.get("compile_s"),
                "peak_rss_mb": cold.get("peak_rss_mb"), "import_s": cold.get("import_s"),
                "version": cold.get("version")})
    if samples:
        median = statistics.median(samples)
        row.update({"samples_per_s": samples, "median": median, "min": min(samples),
                    "max": max(samples)})
        flops = matmul_flops(sizes, batch)
        row["matmul_gflops_per_step"] = flops / 1e9
        row["achieved_gflops"] = flops * median / batch / 1e9
        if roof_gflops:
            # the step's GEMMs at the machine's GEMM peak: no step can beat this rate
            row["matmul_bound_samples_per_s"] = batch * roof_gflops * 1e9 / flops
            row["fraction_of_roof"] = row["achieved_gflops"] / roof_gflops
    return row


def run_train(threads: int, quick: bool = False, roof_gflops: float | None = None,
              systems=None, models=("M1", "M2"), log=print) -> list[dict]:
    """Run every available system on each model; one row per (model, system)."""
    sizes_of = QUICK_SIZES if quick else FULL_SIZES
    batch = 16 if quick else BATCH
    counts = ["--steps", "2", "--repeats", "1", "--warmup", "1"] if quick else \
        ["--steps", "20", "--repeats", "7", "--warmup", "5"]
    timeout = 300.0 if quick else 900.0
    rows = []
    with tempfile.TemporaryDirectory(prefix="symgraph-bench-") as root:
        for model in models:
            sizes = sizes_of[model]
            for system in available_systems(systems):
                cache = os.path.join(root, f"{system}-{model}")
                env = dict(os.environ, **pin_threads_env(threads), SYMGRAPH_CACHE_DIR=cache,
                           NUMBA_CACHE_DIR=os.path.join(cache, "numba"))
                common = ["--system", system, "--model", model, "--sizes", json.dumps(sizes),
                          "--batch", str(batch), "--threads", str(threads),
                          "--jax-cache", os.path.join(cache, "jax")]
                log(f"  train {model} {system}: cold run")
                cold = _worker(common + counts, env, timeout)
                log(f"  train {model} {system}: warm start")
                warm = _worker(common + ["--first-step-only"], env, timeout) \
                    if "error" not in cold else {}
                rows.append(_summary(cold, warm, model, sizes, batch, roof_gflops))
    return rows
