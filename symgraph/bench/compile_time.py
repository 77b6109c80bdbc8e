"""Suite `compile`: cold and warm compile times and pass times for growing training graphs.

The graph is an M1-style training step (dropout MLP, softmax cross-entropy, SGD momentum) made
deeper layer by layer, compiled in a fresh process per measurement (train_worker.py): the first
process starts from an empty cache (cold), the second from the cache the first left (warm).
Then symgraph.bench.pass_scale (the optimizer passes alone on 1k..100k-node graphs) when present.
"""

from __future__ import annotations

import json
import os
import tempfile

from symgraph.bench.kernels import available_backends
from symgraph.bench.timing import pin_threads_env
from symgraph.bench.train import _worker


def _pass_seconds(report: dict | None) -> dict:
    """Seconds per pass name (passes that run several times, like CSE, summed)."""
    out: dict[str, float] = {}
    for p in (report or {}).get("passes", []) or []:
        if isinstance(p, dict) and "name" in p:
            out[p["name"]] = out.get(p["name"], 0.0) + float(p.get("seconds") or 0.0)
    return out


def run_compile(threads: int, quick: bool = False, backends=None, log=print) -> dict:
    """Compile times per backend and depth, plus the pass-scaling benchmark."""
    depths = (1, 2) if quick else (1, 2, 4, 8)
    width = 16 if quick else 64
    rows = []
    with tempfile.TemporaryDirectory(prefix="symgraph-compile-") as root:
        for backend in available_backends(backends):
            for depth in depths:
                sizes = (width,) * (depth + 1) + (10,)
                cache = os.path.join(root, f"{backend}-{depth}")
                env = dict(os.environ, **pin_threads_env(threads), SYMGRAPH_CACHE_DIR=cache,
                           NUMBA_CACHE_DIR=os.path.join(cache, "numba"))
                args = ["--system", f"symgraph-{backend}", "--model", "M1", "--sizes",
                        json.dumps(sizes), "--batch", "8", "--threads", str(threads),
                        "--first-step-only"]
                log(f"  compile {backend} depth {depth}")
                cold = _worker(args, env, 600.0)
                warm = _worker(args, env, 600.0) if "error" not in cold else {}
                report = cold.get("pass_report") or {}
                row = {"suite": "compile", "system": f"symgraph-{backend}", "depth": depth,
                       "nodes_before": report.get("nodes_before"),
                       "nodes_after": report.get("nodes_after"), "kernels": report.get("kernels"),
                       "compile_cold_s": cold.get("compile_s"),
                       "compile_warm_s": warm.get("compile_s"),
                       "first_step_cold_s": cold.get("first_step_s"),
                       "first_step_warm_s": warm.get("first_step_s"),
                       "pass_seconds": _pass_seconds(report)}
                if "error" in cold:
                    row["error"] = cold["error"]
                rows.append(row)
    return {"rows": rows, "pass_scale": _pass_scale(quick)}


def _pass_scale(quick: bool):
    """symgraph.bench.pass_scale's own result, or why it is missing."""
    try:
        from symgraph.bench import pass_scale
    except ImportError as exc:
        return {"error": f"symgraph.bench.pass_scale not available: {exc}"}
    try:
        if quick:
            return pass_scale.run(sizes=(300, 1000), quick=True)
        return pass_scale.run()
    except Exception as exc:  # its failure must not lose the rest of the run
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
