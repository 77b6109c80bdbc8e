"""`symgraph bench`: run the benchmark suites and write the table, JSON, chart and markdown.

    symgraph bench                       # every suite: limits, kernels, train, compile
    symgraph bench train --threads 2     # one suite (limits always run first: they are the roofs)
    symgraph bench --quick               # tiny sizes, one repeat (what the tests run)
    symgraph bench profile parallel gpu  # extras: Numba step profile; 1 vs 2 workers; GPU
    symgraph bench --markdown docs/benchmarks.md
    symgraph bench --from-json runs/bench/bench.json --markdown docs/benchmarks.md  # no measuring
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

SUITES = ("limits", "kernels", "train", "compile")
# run only when named: where the Numba step's time goes, and other engineers' benchmarks
EXTRA_SUITES = ("profile", "parallel", "gpu")


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `bench` subcommand on the `symgraph` command's subparsers."""
    parser = subparsers.add_parser(
        "bench", help="compiled-kernel and training benchmarks against NumPy, PyTorch and JAX",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # no `choices` here: argparse rejects an empty list against them (python/cpython#53584)
    parser.add_argument("suites", nargs="*", default=[],
                        help=f"suites to run: {', '.join(SUITES)} or all (default: all); "
                        f"extras run only when named: {', '.join(EXTRA_SUITES)}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat")
    parser.add_argument("--threads", type=_positive, default=None,
                        help="threads for every system and BLAS (default: all cores)")
    parser.add_argument("--out", default=os.path.join("runs", "bench"),
                        help="directory for bench.json and bench.png (default runs/bench)")
    parser.add_argument("--json", default=None, help="JSON path (default OUT/bench.json)")
    parser.add_argument("--chart", default=None, help="PNG path (default OUT/bench.png)")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    parser.add_argument("--markdown", default=None, help="also write this markdown page")
    parser.add_argument("--systems", nargs="+", default=None,
                        help="train suite: only these systems (e.g. symgraph-numba jax-jit)")
    parser.add_argument("--backends", nargs="+", default=None,
                        help="kernels/compile suites: only these symgraph backends")
    parser.add_argument("--models", nargs="+", default=["M1", "M2"], choices=["M1", "M2"])
    parser.add_argument("--rounds", type=_positive, default=None,
                        help="train suite: interleaved rounds, the first cold (default 5; 2 quick)")
    parser.add_argument("--from-json", nargs="+", default=None,
                        help="render saved runs (table, chart, markdown) without measuring; "
                        "several files are merged suite by suite, later files winning "
                        "(--json writes the merged document)")
    parser.set_defaults(run=run_bench)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure_all(args, command: str) -> dict:
    """Run the chosen suites; returns the JSON document."""
    from symgraph.bench import timing
    from symgraph.bench.train_worker import SYSTEMS
    from symgraph.errors import SymgraphError

    unknown = sorted(set(args.systems or ()) - set(SYSTEMS))
    if unknown:  # before minutes of measuring, not an empty table after them
        raise SymgraphError(f"--systems: unknown {', '.join(unknown)}; choose from "
                            f"{', '.join(SYSTEMS)}")
    unknown = sorted(set(args.backends or ()) - {"numpy", "numba"})
    if unknown:
        raise SymgraphError(f"--backends: unknown {', '.join(unknown)}; choose from numpy, numba")
    threads = max(1, min(args.threads or os.cpu_count() or 1, os.cpu_count() or 1))
    timing.apply_thread_env(threads)  # before Numba (or a peer) is imported in this process
    suites = set(args.suites or SUITES)
    if "all" in suites:
        suites = (suites - {"all"}) | set(SUITES)
    doc = {"command": command, "quick": args.quick, "suites": sorted(suites),
           "loadavg_start": os.getloadavg()}
    start = time.perf_counter()
    from symgraph.bench.limits import roofs_of, run_limits

    _log("limits: measuring the machine's GEMM and memory roofs")
    doc["limits"] = run_limits(threads, quick=args.quick)
    roofs = roofs_of(doc["limits"])
    if "kernels" in suites:
        from symgraph.bench.kernels import run_kernels

        _log("kernels")
        doc["kernels"] = run_kernels(threads, quick=args.quick, roofs=roofs,
                                     backends=args.backends)
    if "train" in suites:
        from symgraph.bench.train import run_train, system_status

        _log("train (a fresh process per system and model)")
        doc["train_not_run"] = {s: why for s, why in system_status(args.systems).items()
                                if why is not None}
        doc["train"] = run_train(threads, quick=args.quick, roof_gflops=roofs.gflops,
                                 systems=args.systems, models=tuple(args.models),
                                 rounds=args.rounds, log=_log)
    if "compile" in suites:
        from symgraph.bench.compile_time import run_compile

        _log("compile")
        doc["compile"] = run_compile(threads, quick=args.quick, backends=args.backends,
                                     log=_log)
    if "profile" in suites:
        from symgraph.bench.profile import run_profile

        _log("profile (the Numba step kernel by kernel)")
        doc["profile"] = run_profile(quick=args.quick, models=tuple(args.models), log=_log)
    if "parallel" in suites:
        from symgraph.bench import parallel

        _log("parallel (symgraph.bench.parallel)")
        doc["parallel"] = parallel.run(quick=args.quick, repeats=3 if args.quick else 15)
    if "gpu" in suites:
        _log("gpu (symgraph.bench.gpu)")
        doc["gpu"] = _gpu_suite(args.quick)
    if not args.quick and suites & {"kernels", "train"}:
        # load on the shared machine can depress the first measurement: measure the roofs again
        # and judge every result against the better of the two
        _log("limits: measuring the roofs again at the end")
        doc["limits_end"] = run_limits(threads)
        from symgraph.bench.report import apply_roofs

        apply_roofs(doc)
    doc["environment"] = timing.environment(threads)  # after the suites: pools are loaded now
    doc["environment"]["loadavg"] = {"start": doc.pop("loadavg_start"), "end": os.getloadavg()}
    doc["seconds"] = time.perf_counter() - start
    return doc


def _gpu_suite(quick: bool) -> dict:
    """symgraph.bench.gpu's result, or why there is none (no GPU, no CUDA packages)."""
    import tempfile

    try:
        from symgraph.bench import gpu
    except Exception as exc:  # the CUDA extra is optional
        return {"error": f"symgraph.bench.gpu unavailable: {type(exc).__name__}: {exc}"[:300]}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "gpu.json")
        code = gpu.main(["--json", path] + (["--quick"] if quick else []))
        if code != 0 or not os.path.exists(path):
            return {"error": f"no GPU benchmark on this machine (exit code {code})"}
        with open(path) as f:
            return json.load(f)


# the JSON type of each suite's result in a saved run
SUITE_TYPES = {"limits": dict, "kernels": list, "train": list, "compile": dict,
               "profile": dict, "parallel": dict, "gpu": dict}


def _read_run(path: str) -> dict:
    """One saved run (`symgraph bench`'s JSON), or a SymgraphError naming what is wrong."""
    from symgraph.errors import SymgraphError

    try:
        with open(path, encoding="utf-8") as f:
            run = json.load(f)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise SymgraphError(f"--from-json {path}: not a symgraph bench JSON file "
                            f"({type(exc).__name__}: {exc})") from None
    if not isinstance(run, dict):
        raise SymgraphError(f"--from-json {path}: not a symgraph bench JSON file (a "
                            f"{type(run).__name__} at the top, not an object)")
    for key, kind in SUITE_TYPES.items():
        if key in run and not isinstance(run[key], kind):
            raise SymgraphError(f"--from-json {path}: suite {key!r} is a "
                                f"{type(run[key]).__name__}, not a {kind.__name__}")
    return run


def merge_runs(paths: list[str]) -> dict:
    """Several saved runs as one document: each suite from the last file that has it."""
    doc: dict = {}
    commands = []
    for path in paths:
        run = _read_run(path)
        commands.append(run.get("command", "symgraph bench"))
        for key, value in run.items():
            if key in SUITES + EXTRA_SUITES or key not in doc:
                doc[key] = value
        if "train" in run:  # why systems are missing goes with the train rows it explains
            doc.pop("train_not_run", None)
            if "train_not_run" in run:
                doc["train_not_run"] = run["train_not_run"]
    doc["suites"] = sorted(k for k in SUITES if k in doc)
    doc["command"] = "\n    ".join(dict.fromkeys(commands))
    return doc


def _check_outputs(args) -> None:
    """Every file this run will write can be written: found before minutes of measuring, not
    after them (a SymgraphError naming the option otherwise)."""
    from symgraph.errors import SymgraphError
    from symgraph.files import atomic_write

    targets = []
    if args.json or not args.from_json:
        targets.append(("--json", args.json or os.path.join(args.out, "bench.json")))
    if not args.no_chart and (args.chart or not args.from_json):
        targets.append(("--chart", args.chart or os.path.join(args.out, "bench.png")))
    if args.markdown:
        targets.append(("--markdown", args.markdown))
    for option, path in targets:
        if path.endswith(("/", os.sep)) or os.path.isdir(path):
            raise SymgraphError(f"{option} {path!r} is a folder, not a file path")
        folder = os.path.dirname(os.path.abspath(path))
        probe = os.path.join(folder, ".symgraph-write-test")
        try:
            os.makedirs(folder, exist_ok=True)
            atomic_write(probe, lambda f: f.write(b"ok"))
            os.remove(probe)
        except (OSError, SymgraphError) as exc:
            raise SymgraphError(f"{option} {path!r}: cannot write into {folder!r} "
                                f"({type(exc).__name__}: {exc})") from None


def run_bench(args) -> int:
    """The `symgraph bench` command."""
    from symgraph.bench import report
    from symgraph.errors import SymgraphError

    unknown = [s for s in args.suites if s not in SUITES + EXTRA_SUITES + ("all",)]
    if unknown:
        raise SymgraphError(f"symgraph bench: unknown suite {unknown[0]!r}; choose from "
                            f"{', '.join(SUITES + EXTRA_SUITES)} or all")
    argv = getattr(args, "argv", None)
    if argv is None:
        argv = sys.argv[2:] if sys.argv[1:2] == ["bench"] else []
    command = " ".join(["symgraph bench", *(shlex.quote(a) for a in argv)])
    _check_outputs(args)
    if args.from_json:
        doc = merge_runs(args.from_json)
        if args.json:  # the merged runs as one document
            report.write_json(doc, args.json)
            _log(f"wrote {args.json}")
    else:
        doc = measure_all(args, command)
        json_path = args.json or os.path.join(args.out, "bench.json")
        os.makedirs(os.path.dirname(json_path) or ".", exist_ok=True)
        if not args.no_chart:
            doc["chart"] = args.chart or os.path.join(args.out, "bench.png")
        report.write_json(doc, json_path)
        _log(f"wrote {json_path}")
    if not args.no_chart and (args.chart or not args.from_json):
        path = args.chart or doc.get("chart") or os.path.join(args.out, "bench.png")
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        report.write_chart(doc, path)
        doc["chart"] = path
        _log(f"wrote {path}")
    if args.markdown:
        report.write_markdown(doc, args.markdown)
        _log(f"wrote {args.markdown}")
    print(report.terminal_report(doc))
    return 0


def main(argv=None) -> int:
    """`python -m symgraph.bench.cli`: the same command without the `symgraph` wrapper."""
    parser = argparse.ArgumentParser(prog="symgraph")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(["bench", *argv])
    args.argv = argv  # recorded in the JSON and the markdown as the command that made them
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
