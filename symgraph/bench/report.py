"""Results out: the terminal tables, the JSON file, the PNG chart and docs/benchmarks.md.

Every renderer reads the same JSON document (what `symgraph bench` writes), so the markdown can
be regenerated from a saved run: `write_markdown(json.load(open(path)), "docs/benchmarks.md")`.
"""

from __future__ import annotations

import json
import statistics

from symgraph.bench.train_worker import SYSTEMS
from symgraph.files import atomic_write, write_text


def _fmt_time(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _table(header: list[str], rows: list[list[str]]) -> list[list[str]]:
    return [header] + rows


def limits_table(doc: dict) -> list[list[str]]:
    lim = doc.get("limits") or {}
    rows = [[f"fp32 GEMM {'x'.join(map(str, g['shape']))}",
             f"{g['gflops']:.0f} GFLOP/s (best {g.get('gflops_best', 0):.0f})",
             f"{_fmt_time(g['median_s'])} (min {_fmt_time(g['min_s'])})"]
            for g in lim.get("gemm", [])]
    for key, label in (("stream", "STREAM"), ("stream_dram", "STREAM (DRAM size, reference)")):
        stream = lim.get(key) or {}
        for name in ("copy", "triad"):
            if name in stream:
                s = stream[name]
                how = f" [{s['how']}]" if "how" in s else ""
                rows.append([f"{label} {name}, {stream['elements']} fp32{how}",
                             f"{s['gbps']:.1f} GB/s (best {s.get('gbps_best', 0):.1f})",
                             f"{_fmt_time(s['median_s'])} (min {_fmt_time(s['min_s'])})"])
    end = (doc.get("limits_end") or {}).get("roofs")
    if end:
        rows.append(["roofs measured again at the end", f"{end['gflops']:.0f} GFLOP/s, "
                     f"{end['gbps']:.1f} GB/s", "-"])
    roofs = doc.get("roofs") or lim.get("roofs")
    if roofs:
        rows.append(["roofs used below (best samples)", f"{roofs['gflops']:.0f} GFLOP/s, "
                     f"{roofs['gbps']:.1f} GB/s", "-"])
    return _table(["roof", "median rate (best)", "median time (min)"], rows)


def kernels_table(doc: dict) -> list[list[str]]:
    rows = []
    for r in doc.get("kernels", []):
        params = " ".join(f"{k}={v}" for k, v in r["params"].items())
        if "error" in r:
            rows.append([r["kernel"], params, r["system"], "error: " + r["error"][:60], "-", "-",
                         "-", "-"])
            continue
        spread = f"{_fmt_time(r['median_s'])} ({_fmt_time(r['min_s'])}-{_fmt_time(r['max_s'])})"
        bound = r.get("bound", "")
        rows.append([r["kernel"], params, r["system"], spread, _fmt(r["gflops"], ".2f"),
                     _fmt(r["gbps"], ".2f"), f"{_pct(r.get('fraction_of_roof'))} {bound}".strip(),
                     _fmt(r.get("speedup_vs_numpy"), ".2f") + "x"
                     if r.get("speedup_vs_numpy") else "1.00x"])
    return _table(["kernel", "size", "system", "median (min-max)", "GFLOP/s", "GB/s",
                   "of roof", "vs NumPy"], rows)


def _train_row(doc: dict, model: str, system: str) -> dict | None:
    return next((r for r in doc.get("train", []) if r["model"] == model
                 and r["system"] == system and "median" in r), None)


def round_ratios(ours: dict, peer: dict) -> list[float]:
    """Per round, the median throughput of `ours` over the peer's: both ran minutes apart in
    the same round, so a slow phase of the shared machine hits both (rounds with no samples
    from either are skipped)."""
    out = []
    for a, b in zip(ours.get("runs", []), peer.get("runs", [])):
        sa, sb = a.get("samples_per_s"), b.get("samples_per_s")
        if sa and sb:
            out.append(statistics.median(sa) / statistics.median(sb))
    return out


def train_table(doc: dict) -> list[list[str]]:
    rows = []
    for r in doc.get("train", []):
        if "error" in r:
            rows.append([r["model"], r["system"], "error: " + r["error"][:70]] + ["-"] * 7)
            continue
        rate = f"{r['median']:,.0f} ({r['min']:,.0f}-{r['max']:,.0f})" if "median" in r else "-"
        base = _train_row(doc, r["model"], "numpy-hand")
        ratio = f"{r['median'] / base['median']:.2f}x" if base and "median" in r else "-"
        rows.append([r["model"], r["system"], rate, ratio, _pct(r.get("fraction_of_roof")),
                     _fmt_time(r.get("first_step_cold_s")), _fmt_time(r.get("first_step_warm_s")),
                     _fmt_time(r.get("compile_cold_s")), _fmt_time(r.get("compile_warm_s")),
                     _fmt(r.get("peak_rss_mb"), ".0f")])
    return _table(["model", "system", "samples/s median (min-max)", "vs numpy-hand",
                   "of GEMM roof", "first step cold", "first step warm", "compile cold",
                   "compile warm", "peak RSS MiB"], rows)


def _per_round(ratios: list[float]) -> str:
    if not ratios:
        return ""
    return (f"; per round {', '.join(f'{x:.2f}' for x in ratios)}, "
            f"median {statistics.median(ratios):.2f}x")


def targets_table(doc: dict) -> list[list[str]]:
    """Issue 4's targets for symgraph-numba, checked against this run (ratios in one run)."""
    ours = {m: _train_row(doc, m, "symgraph-numba") for m in ("M1", "M2")}
    rows = []

    quick = bool(doc.get("quick"))  # tiny models and batches: the targets do not apply

    def check(name, value, target, ok, show):
        status = ("-" if value is None else "not judged (--quick sizes)" if quick
                  else "met" if ok(value) else "missed")
        rows.append([name, show(value) if value is not None else "not measured", target,
                     status])

    def rate(v):
        return f"{v:,.0f} samples/s"

    def ratio(v):
        return f"{v:.2f}x"

    for model, floor, peer, factor in (("M1", 15000, "jax-jit", 1.3),
                                       ("M2", 70000, "torch-eager", 1.3)):
        r = ours[model]
        check(f"{model} throughput", r and r["median"], f">= {floor:,} samples/s",
              lambda v, f=floor: v >= f,
              lambda v, r=r: f"{rate(v)} (best sample {r['max']:,.0f})")
        p = _train_row(doc, model, peer)
        check(f"{model} vs {peer}", r and p and r["median"] / p["median"], f">= {factor}x",
              lambda v, f=factor: v >= f,
              lambda v, r=r, p=p: f"{ratio(v)} (best samples {r['max'] / p['max']:.2f}x"
                                  f"{_per_round(round_ratios(r, p))})")
        check(f"{model} cold compile (first step)", r and r.get("first_step_cold_s"), "<= 2 s",
              lambda v: v <= 2.0, _fmt_time)
        check(f"{model} warm compile (first step)", r and r.get("first_step_warm_s"),
              "<= 0.2 s", lambda v: v <= 0.2, _fmt_time)
        t = _train_row(doc, model, "torch-eager")
        check(f"{model} peak RSS vs PyTorch", r and t and r["peak_rss_mb"] / t["peak_rss_mb"],
              "< 1.00x", lambda v: v < 1.0, ratio)
    tiny = next((r for r in doc.get("kernels", [])
                 if r.get("kernel") == "tiny call" and r.get("system") == "symgraph-numba"
                 and "median_s" in r), None)
    check("tiny-call overhead (whole `Function` call)", tiny and tiny["median_s"], "<= 20 us",
          lambda v: v <= 20e-6, _fmt_time)
    return _table(["target (issue 4)", "this run", "target", "status"], rows)


def compile_table(doc: dict) -> list[list[str]]:
    rows = []
    for r in (doc.get("compile") or {}).get("rows", []):
        passes = sorted(r.get("pass_seconds", {}).items(), key=lambda kv: -kv[1])[:3]
        top = ", ".join(f"{k} {_fmt_time(v)}" for k, v in passes)
        rows.append([r["system"], str(r["depth"]), f"{r.get('nodes_before')}->"
                     f"{r.get('nodes_after')}", _fmt_time(r.get("compile_cold_s")),
                     _fmt_time(r.get("compile_warm_s")), _fmt_time(r.get("first_step_cold_s")),
                     _fmt_time(r.get("first_step_warm_s")),
                     ("error: " + r["error"][:50]) if "error" in r else top])
    return _table(["system", "depth", "nodes", "compile cold", "compile warm", "first step cold",
                   "first step warm", "slowest passes (cold)"], rows)


def pass_scale_table(doc: dict) -> list[list[str]]:
    scale = (doc.get("compile") or {}).get("pass_scale") or {}
    rows = [[str(r["nodes"]), str(r.get("nodes_after")), _fmt_time(r.get("optimize_seconds")),
             _fmt(r.get("growth_vs_linear"), ".2f")] for r in scale.get("results", [])]
    return _table(["nodes", "after", "O2 passes", "time/node vs smallest"], rows)


def _profile_table(doc: dict) -> list[list[str]]:
    from symgraph.bench.profile import profile_table

    return profile_table(doc)


TABLES = (("Machine limits", limits_table), ("Targets", targets_table),
          ("Training steps", train_table), ("Where the Numba step's time goes", _profile_table),
          ("Kernels", kernels_table), ("Compile time", compile_table),
          ("Pass scaling", pass_scale_table))


def text_table(table: list[list[str]]) -> str:
    """Fixed-width columns for the terminal."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in table[1:]]
    return "\n".join(lines)


def terminal_report(doc: dict) -> str:
    """Every non-empty table of the run, then the extra suites, for the terminal."""
    parts = []
    for title, make in TABLES:
        table = make(doc)
        if len(table) > 1 and not (title == "Targets" and not doc.get("train")):
            parts.append(f"== {title} ==\n{text_table(table)}")
    extras = "\n".join(_extra_sections(doc)).replace("```text\n", "").replace("\n```", "")
    parts += [f"== {p.strip()}" for p in extras.split("## ") if p.strip()]
    return "\n\n".join(parts)


def apply_roofs(doc: dict) -> None:
    """Set the roofs to the best of the start and end measurements; recompute every fraction."""
    from symgraph.bench.roofline import Cost, Roofs

    runs = [doc[k]["roofs"] for k in ("limits", "limits_end") if doc.get(k)]
    roofs = Roofs(max(r["gflops"] for r in runs), max(r["gbps"] for r in runs))
    doc["roofs"] = {"gflops": roofs.gflops, "gbps": roofs.gbps,
                    "from": "best of the limits measured at the start and at the end"}
    for r in doc.get("kernels", []):
        if "median_s" in r:
            cost = Cost(r["flops"], r["bytes"])
            r["bound"] = roofs.bound(cost)
            r["fraction_of_roof"] = roofs.fraction(cost, r["median_s"])
    for r in doc.get("train", []):
        if "achieved_gflops" in r:
            flops = r["matmul_gflops_per_step"] * 1e9
            r["matmul_bound_samples_per_s"] = r["batch"] * roofs.gflops * 1e9 / flops
            r["fraction_of_roof"] = r["achieved_gflops"] / roofs.gflops


def write_json(doc: dict, path: str) -> None:
    from symgraph.bench.timing import to_jsonable

    write_text(path, json.dumps(to_jsonable(doc), indent=1))


def write_chart(doc: dict, path: str) -> None:
    """A PNG: training samples/s per system, kernels as a fraction of their roof, compile times."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))
    _train_panel(axes[0], doc.get("train", []))
    _kernel_panel(axes[1], doc.get("kernels", []))
    _compile_panel(axes[2], (doc.get("compile") or {}).get("rows", []))
    fig.suptitle(f"symgraph bench - {doc.get('environment', {}).get('cpu', '')}, "
                 f"{doc.get('environment', {}).get('threads')} threads", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=90, format="png"))
    plt.close(fig)


def _train_panel(ax, rows):
    rows = [r for r in rows if "median" in r]
    models = sorted({r["model"] for r in rows})
    systems = [s for s in SYSTEMS if any(r["system"] == s for r in rows)]
    width = 0.8 / max(len(systems), 1)
    for j, system in enumerate(systems):
        for i, model in enumerate(models):
            r = next((r for r in rows if r["model"] == model and r["system"] == system), None)
            if r is None:
                continue
            err = [[r["median"] - r["min"]], [r["max"] - r["median"]]]
            ax.bar(i + j * width, r["median"], width, yerr=err, color=f"C{j}",
                   label=system if i == 0 else None)
    ax.set_xticks([i + width * (len(systems) - 1) / 2 for i in range(len(models))], models)
    ax.set_ylabel("training samples/s (median, min-max)")
    ax.set_title("Training steps")
    if systems:
        ax.legend(fontsize=8)


def _kernel_panel(ax, rows):
    rows = [r for r in rows if r.get("fraction_of_roof") is not None]
    kernels = list(dict.fromkeys(f"{r['kernel']}" for r in rows))
    systems = list(dict.fromkeys(r["system"] for r in rows))
    height = 0.8 / max(len(systems), 1)
    for j, system in enumerate(systems):
        for i, kernel in enumerate(kernels):
            r = next((r for r in rows if r["kernel"] == kernel and r["system"] == system), None)
            if r is not None:
                ax.barh(i + j * height, 100 * r["fraction_of_roof"], height, color=f"C{j}",
                        label=system if i == 0 else None)
    ax.set_yticks([i + height * (len(systems) - 1) / 2 for i in range(len(kernels))], kernels,
                  fontsize=8)
    ax.set_xlabel("% of the kernel's roof (GEMM GFLOP/s or STREAM GB/s)")
    ax.set_title("Kernels")
    if systems:
        ax.legend(fontsize=8)


def _compile_panel(ax, rows):
    for j, system in enumerate(dict.fromkeys(r["system"] for r in rows)):
        mine = [r for r in rows if r["system"] == system and r.get("nodes_before")]
        for key, style in (("compile_cold_s", "-o"), ("compile_warm_s", "--x")):
            pts = [(r["nodes_before"], r[key]) for r in mine if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, color=f"C{j}",
                        label=f"{system} {key.split('_')[1]}")
    ax.set_xlabel("graph nodes (training step)")
    ax.set_ylabel("compile seconds")
    ax.set_title("Compile time")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def missing_rows(doc: dict) -> list[str]:
    """What this run could not measure, and why, in words."""
    notes = []
    train = doc.get("train", [])
    if train:
        present = {r["system"] for r in train}
        why_not = doc.get("train_not_run") or {}  # absent in runs saved before it existed
        for system in SYSTEMS:
            if system not in present:
                why = why_not.get(system, "not importable, not chosen with --systems, or not "
                                  "applicable on this machine")
                notes.append(f"train: {system} not measured ({why})")
    for r in train:
        if "error" in r:
            notes.append(f"train {r['model']} {r['system']}: {r['error'][:200]}")
    for r in doc.get("kernels", []):
        if "error" in r:
            notes.append(f"kernels {r['kernel']} {r['system']}: {r['error'][:200]}")
    if doc.get("kernels") and not any(r["system"] == "symgraph-numba" for r in doc["kernels"]):
        notes.append("kernels: symgraph-numba not measured (backend not importable)")
    profile = doc.get("profile") or {}
    if isinstance(profile.get("error"), str):
        notes.append(f"profile: {profile['error'][:200]}")
    for model, p in profile.items():
        if isinstance(p, dict) and "error" in p:
            notes.append(f"profile {model}: {p['error'][:200]}")
    scale = (doc.get("compile") or {}).get("pass_scale") or {}
    if "error" in scale:
        notes.append(f"pass scaling: {scale['error']}")
    return notes


def _load_line(env: dict) -> list[str]:
    load = env.get("loadavg")
    if not load:
        return []
    start, end = load["start"], load["end"]
    cores = env.get("cores") or 1
    busy = max(start[0], end[0]) > cores
    what = ("above the core count: other processes were competing for the CPU and absolute "
            "numbers are low." if busy else "at or below the core count, though the benchmark's "
            "own processes count too; the machine is shared, so absolute numbers still vary.")
    return [f"Load average (1 min) on the shared machine: {start[0]:.1f} at the start, "
            f"{end[0]:.1f} at the end, on {env.get('cores')} cores: {what}", ""]


def markdown(doc: dict, chart_link: str | None = None) -> str:
    """docs/benchmarks.md from a run's JSON document (`chart_link`: the PNG, relative)."""
    env = doc.get("environment", {})
    versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())
    lines = ["# symgraph benchmarks", "",
             "Generated by `symgraph.bench.report.write_markdown` from the JSON of one run of:", "",
             f"    {doc.get('command', 'symgraph bench')}", "",
             f"Machine: {env.get('cpu')}, {env.get('cores')} cores; run at "
             f"{env.get('time_utc')} UTC. Versions: {versions}.", "",
             *_load_line(env),
             f"Threads: every system pinned to {env.get('threads')} thread(s) "
             "(OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS in each process, threadpoolctl for BLAS, "
             "torch.set_num_threads for PyTorch; XLA sizes its pool to the CPUs the process may "
             "use, which CPU affinity limits when the thread count is below the core count). "
             "The machine is shared and noisy: compare "
             "ratios within this run, not absolute numbers across runs. Times are medians of "
             "repeats after warm-up, with min-max.", "",
             "Peers are used when importable and are never project dependencies; to measure "
             "them, `pip install torch==2.13.0 jax jaxlib` into the environment first. Rows of "
             "systems that were not installed or failed are listed at the end.", ""]
    explain = {
        "Where the Numba step's time goes": "The Numba backend's step compiled per kernel for "
        "the Python driver (SYMGRAPH_NUMBA_DRIVER=1: native kernels, parallel loops included, "
        "unless SYMGRAPH_NATIVE=numba) and each kernel timed in program order "
        "(symgraph/bench/profile.py): kernel times are real, the remainder is per-kernel "
        "dispatch, input validation and state swaps. Top kernels are listed with their fused ops.",
        "Targets": "Issue 4's goals for the Numba backend, judged on medians. Cold and warm "
        "compile are judged by the time to the first finished step in a fresh process, which "
        "includes every compilation symgraph does (passes, code generation, Numba). On a "
        "loaded machine the best sample (the max of the min-max range) is the closest to an "
        "uncontended run, so it is shown beside the median.",
        "Training steps": "Samples/s of a full training step (forward, backward, update) at "
        + _train_shape(doc) + ", fp32; 'of GEMM roof' is the step's matmul FLOPs per second "
        "over the machine's measured fp32 GEMM peak (1.0 = a step doing nothing but GEMMs at "
        "peak). "
        "'First step' is the wall time from building the model to the end of its first step "
        "in a fresh process (imports excluded): cold with empty caches, warm (median of the "
        "later rounds) with the caches the cold run left. 'Compile' is symgraph's "
        "`Function.compile_seconds` (passes + backend). Systems run in fresh processes, "
        "interleaved in rounds. 'gemm-only' does nothing but the step's GEMMs through NumPy's "
        "OpenBLAS, 'gemm-only-mkl' the same through MKL: what the BLAS alone takes for the "
        "step's products. 'symgraph-numba' uses what the backend picks: MKL on Intel CPUs; "
        "elsewhere large GEMMs split across the thread team, each block computed by "
        "symgraph's own kernel (native_gemm.py); 'symgraph-numba-blas' computes those blocks "
        "with OpenBLAS's C interface instead (SYMGRAPH_GEMM=blas); "
        "'symgraph-numba-mkl' forces MKL where it is not the pick; 'symgraph-numba-openblas' "
        "forces SciPy's OpenBLAS through Numba's helper (threaded calls). 'symgraph-numba' "
        "compiles its generated step straight to LLVM IR (native.py); 'symgraph-numba-jit' "
        "runs the same source through Numba's compiler. Peak RSS is the whole process "
        "(interpreter, libraries, 64 random batches of data).",
        "Kernels": "Each kernel is a graph through the O2 passes and a backend, against the "
        "NumPy a user would write (one op per call). 'Of roof' is GFLOP/s over the GEMM peak "
        "for compute-bound kernels and GB/s over the STREAM peak for memory-bound ones, with the "
        "minimum bytes a fused kernel must move (symgraph/bench/roofline.py).",
    }
    for title, make in TABLES:
        table = make(doc)
        if len(table) > 1 and not (title == "Targets" and not doc.get("train")):
            lines += [f"## {title}", ""]
            if title in explain:
                lines += [explain[title], ""]
            lines += [markdown_table(table), ""]
    lines += _extra_sections(doc)
    notes = missing_rows(doc)
    lines += ["## Missing or failed rows", ""]
    lines += [f"- {n}" for n in notes] if notes else ["- none"]
    lines.append("")
    if chart_link:
        lines += ["## Chart", "", f"![symgraph bench chart]({chart_link})", ""]
    elif doc.get("chart"):
        lines += [f"Chart of this run: `{doc['chart']}`.", ""]
    return "\n".join(lines)


def _train_shape(doc: dict) -> str:
    """'batch 128' (a full run), or the batch and layer sizes a --quick run used."""
    rows = [r for r in doc.get("train") or [] if isinstance(r, dict) and r.get("batch")]
    batches = sorted({r["batch"] for r in rows}) or [128]
    text = "batch " + "/".join(map(str, batches))
    if doc.get("quick"):
        sizes = "; ".join(sorted({f"{r.get('model')} {'-'.join(map(str, r.get('sizes', [])))}"
                                  for r in rows}))
        text += f" (--quick: tiny layers {sizes})" if sizes else " (--quick: tiny layers)"
    return text


def _extra_sections(doc: dict) -> list[str]:
    """The `parallel` and `gpu` suites, in their own modules' words."""
    lines = []
    for key, title, module in (("parallel", "Parallel CPU schedule", "parallel"),
                               ("gpu", "GPU", "gpu")):
        result = doc.get(key)
        if not result:
            continue
        lines += [f"## {title}", ""]
        if "error" in result:
            lines += [f"Not measured: {result['error']}", ""]
            continue
        try:
            import importlib

            mod = importlib.import_module(f"symgraph.bench.{module}")
            text = (mod.format_summary if key == "parallel" else mod.format_result)(result)
        except Exception as exc:  # their formatter changed: still show the raw numbers
            text = f"({type(exc).__name__} formatting the result) {json.dumps(result)[:2000]}"
        lines += ["```text", text, "```", ""]
    return lines


def write_markdown(doc: dict, path: str) -> None:
    """Regenerate the benchmarks page from a run's JSON document.

    A chart saved next to the page (same folder or below) is embedded as an image.
    """
    import os

    link = None
    if doc.get("chart") and os.path.exists(doc["chart"]):
        rel = os.path.relpath(doc["chart"], os.path.dirname(os.path.abspath(path)))
        link = rel if not rel.startswith("..") else None
    write_text(path, markdown(doc, link))
