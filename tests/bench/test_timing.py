"""Measurement plumbing: repeats and warm-up, thread environment, peak RSS of a worker."""

import json
import subprocess
import sys

import numpy as np

from symgraph.bench import timing


def test_measure_counts_warmup_and_repeats_and_orders_stats():
    calls = []
    t = timing.measure(lambda: calls.append(1), repeats=4, inner=3, warmup=2)
    assert len(calls) == 2 + 4 * 3 and len(t.samples) == 4
    assert t.min <= t.median <= t.max
    assert set(t.as_dict()) == {"samples_s", "median_s", "min_s", "max_s"}


def test_measure_with_budget_grows_inner_loops_for_tiny_calls():
    calls = []
    timing.measure(lambda: calls.append(1), repeats=2, warmup=0, budget_s=0.02)
    assert len(calls) > 100  # one call per sample would be timer noise


def test_thread_env_pins_every_pool_and_json_has_no_nan():
    env = timing.pin_threads_env(3)
    assert env["OPENBLAS_NUM_THREADS"] == "3" and env["NUMBA_NUM_THREADS"] == "3"
    doc = timing.to_jsonable({"a": (np.float32(1.5), float("nan")), 2: np.int64(4)})
    assert json.loads(json.dumps(doc)) == {"a": [1.5, None], "2": 4}


def test_peak_rss_of_a_worker_does_not_include_its_parent():
    big = np.ones(20_000_000)  # 160 MB in this process
    code = "from symgraph.bench.timing import peak_rss_mb; print(peak_rss_mb())"
    # the kernel carries the parent's high-water mark into ru_maxrss of the child across exec
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert float(out) < big.nbytes / 2**20 / 2
