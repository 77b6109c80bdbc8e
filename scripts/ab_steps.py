"""A/B of the Numba backend's training step: two configurations in alternating processes.

On a shared, noisy machine a single run cannot tell a 5-10% change: the same step moved from
4.1 to 7.0 ms within minutes on this project's machines. This script runs configuration A,
then B, then A, ... each in a fresh process (same cache rules, its own cache directory), and
reports the median of the per-pair ratios B/A, which drift affects least.

    python scripts/ab_steps.py M2 --rounds 8 --b-env SYMGRAPH_BLAS=mkl
    python scripts/ab_steps.py M1 --a-tree /tmp/old --rounds 8     # an older checkout as A

A process prints its median and its fastest group's step time (`--steps` steps in 10 groups
after 20 warm-up steps). On a machine whose neighbours come and go, the fastest groups are the
steadier measure (bursts of load only slow groups down): the script reports the median ratio
of both and the ratio of the fastest groups seen over all rounds.

`--in-process` compiles both in ONE process, A with --a-env set while it builds, B with
--b-env, and alternates blocks of `--steps` steps (A B, B A, ...) `--rounds` times: both then
meet the same neighbours within a fraction of a second. Its resolution, measured with two
identical builds of M2 (20-40 blocks of 30 steps): median ratios 0.97-1.03, from where each
function's arrays landed in memory; smaller differences are not resolved. Only for settings
read while a function is built (codegen, the translator), not for those fixed when the
backend is imported.

    python scripts/ab_steps.py M2 --in-process --rounds 40 --steps 50 --b-env NAME=1
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

STEP = """
import sys, time
import symgraph as sg
from symgraph.bench import workloads as W
g = W.build_m2() if sys.argv[1] == "M2" else W.build_m1()
fn = sg.function(*g, backend="numba")
x, y = W.make_batch(128, 784, 10)
for _ in range(20):
    fn(x, y)
n = max(1, int(sys.argv[2]) // 10)
times = []
for _ in range(10):
    start = time.perf_counter()
    for _ in range(n):
        fn(x, y)
    times.append((time.perf_counter() - start) / n)
times.sort()
print((times[4] + times[5]) / 2, times[0])
"""


INPROCESS = """
import os, statistics, sys, time
import symgraph as sg
from symgraph.bench import workloads as W
model, steps, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fns = []
for pairs in sys.argv[4:6]:
    saved = dict(os.environ)
    os.environ.update(dict(p.split("=", 1) for p in pairs.split()))
    g = W.build_m2() if model == "M2" else W.build_m1()
    fns.append(sg.function(*g, backend="numba"))
    os.environ.clear()
    os.environ.update(saved)
x, y = W.make_batch(128, 784, 10)
for f in fns:
    for _ in range(20):
        f(x, y)
for r in range(rounds):
    times = [0.0, 0.0]
    for which in ((0, 1) if r % 2 == 0 else (1, 0)):
        start = time.perf_counter()
        for _ in range(steps):
            fns[which](x, y)
        times[which] = (time.perf_counter() - start) / steps
    print(times[0], times[1], flush=True)
"""


def in_process(args) -> None:
    """Both configurations built in one process, blocks of steps alternated (see above)."""
    steps = args.steps or 50
    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run([sys.executable, "-c", INPROCESS, args.model, str(steps),
                              str(args.rounds), " ".join(args.a_env), " ".join(args.b_env)],
                             env={**os.environ, "SYMGRAPH_CACHE_DIR": cache},
                             capture_output=True, text=True, timeout=1800, check=True,
                             cwd=tempfile.gettempdir())
    pairs = [tuple(map(float, line.split())) for line in out.stdout.strip().splitlines()]
    ratios = [b / a for a, b in pairs]
    q = statistics.quantiles(ratios, n=4)
    print(f"A median {statistics.median(a for a, _ in pairs) * 1e3:.3f} ms, B median "
          f"{statistics.median(b for _, b in pairs) * 1e3:.3f} ms; median B/A "
          f"{statistics.median(ratios):.3f} (quartiles {q[0]:.3f}-{q[2]:.3f}, "
          f"{len(ratios)} blocks of {steps} steps each)")


def step_seconds(model: str, steps: int, tree: str | None, env: dict,
                 cache: str) -> tuple[float, float]:
    """(median, fastest) group's seconds per step in a fresh process."""
    full = {**os.environ, **env, "SYMGRAPH_CACHE_DIR": cache}
    if tree:
        full["PYTHONPATH"] = tree
    out = subprocess.run([sys.executable, "-c", STEP, model, str(steps)], env=full,
                         capture_output=True, text=True, timeout=900, check=True,
                         cwd=tempfile.gettempdir())
    median, fastest = out.stdout.strip().splitlines()[-1].split()
    return float(median), float(fastest)


def _env(pairs: list[str]) -> dict:
    return dict(p.split("=", 1) for p in pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", choices=["M1", "M2"])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, help="steps per process (default M1 60, M2 300)")
    ap.add_argument("--a-env", nargs="*", default=[], metavar="NAME=VALUE")
    ap.add_argument("--b-env", nargs="*", default=[], metavar="NAME=VALUE")
    ap.add_argument("--a-tree", help="checkout to import symgraph from for A")
    ap.add_argument("--b-tree", help="checkout to import symgraph from for B")
    ap.add_argument("--in-process", action="store_true",
                    help="both built in one process, blocks of steps alternated")
    args = ap.parse_args()
    if args.in_process:
        if args.a_tree or args.b_tree:
            ap.error("--in-process compares settings of one checkout, not two trees")
        in_process(args)
        return
    steps = args.steps or (60 if args.model == "M1" else 300)
    ratios, fast_ratios, best = [], [], [float("inf"), float("inf")]
    with tempfile.TemporaryDirectory() as root:
        for k in range(args.rounds):
            a, a_fast = step_seconds(args.model, steps, args.a_tree, _env(args.a_env),
                                     os.path.join(root, "a"))
            b, b_fast = step_seconds(args.model, steps, args.b_tree, _env(args.b_env),
                                     os.path.join(root, "b"))
            ratios.append(b / a)
            fast_ratios.append(b_fast / a_fast)
            best = [min(best[0], a_fast), min(best[1], b_fast)]
            print(f"round {k + 1}: A {a * 1e3:.3f} ms (fastest {a_fast * 1e3:.3f})  B "
                  f"{b * 1e3:.3f} ms (fastest {b_fast * 1e3:.3f})  B/A {b / a:.3f} "
                  f"(fastest {b_fast / a_fast:.3f})", flush=True)
    print(f"median B/A {statistics.median(ratios):.3f} (min {min(ratios):.3f}, "
          f"max {max(ratios):.3f}, {len(ratios)} pairs); of the fastest groups "
          f"{statistics.median(fast_ratios):.3f}; best B / best A {best[1] / best[0]:.3f} "
          f"({best[1] * 1e3:.3f} / {best[0] * 1e3:.3f} ms)")

if __name__ == "__main__":
    main()
