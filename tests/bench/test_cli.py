"""`symgraph bench --quick`: every suite runs and writes well-formed JSON, chart and markdown."""

import json
import math
import subprocess
import sys

import pytest

from symgraph.bench import cli, report
from symgraph.bench.kernels import kernel_set, run_kernels
from symgraph.bench.roofline import Roofs
from symgraph.errors import SymgraphError


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    # numpy-only systems and backend keep this fast; peers and Numba run in the real bench
    argv = ["--quick", "--threads", "1", "--out", str(out), "--markdown", str(out / "b.md"),
            "--systems", "symgraph-numpy", "numpy-hand", "--backends", "numpy"]
    # its own process: the command pins thread pools through the environment, which must not
    # leak into the rest of the test session (Numba reads NUMBA_NUM_THREADS once, at import)
    subprocess.run([sys.executable, "-m", "symgraph.bench.cli", *argv], check=True,
                   capture_output=True)
    with open(out / "bench.json") as f:
        return out, json.load(f)


def _finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_json_has_environment_limits_and_every_suite(quick_run):
    _, doc = quick_run
    env = doc["environment"]
    assert env["threads"] == 1 and env["thread_env"]["OPENBLAS_NUM_THREADS"] == "1"
    assert "numpy" in env["versions"] and env["cpu"]
    assert _finite(doc["limits"]["roofs"]["gflops"]) and _finite(doc["limits"]["roofs"]["gbps"])
    assert set(doc["suites"]) == {"limits", "kernels", "train", "compile"}
    assert doc["command"].startswith("symgraph bench --quick --threads 1 --out ")


def test_kernel_rows_have_samples_rates_and_roof_fractions(quick_run):
    _, doc = quick_run
    rows = doc["kernels"]
    assert {r["system"] for r in rows} == {"numpy-unfused", "symgraph-numpy"}
    assert len(rows) == 2 * len(kernel_set(quick=True))
    for r in rows:
        assert "error" not in r, r
        assert len(r["samples_s"]) == 1 and r["min_s"] <= r["median_s"] <= r["max_s"]
        assert _finite(r["gbps"]) and _finite(r["fraction_of_roof"])
        assert r["bound"] in ("compute", "memory")


def test_train_rows_measure_throughput_first_steps_and_memory(quick_run):
    _, doc = quick_run
    rows = doc["train"]
    assert {(r["model"], r["system"]) for r in rows} == {
        (m, s) for m in ("M1", "M2") for s in ("symgraph-numpy", "numpy-hand")}
    for r in rows:
        assert "error" not in r, r
        assert _finite(r["median"]) and _finite(r["first_step_cold_s"])
        assert _finite(r["first_step_warm_s"]) and _finite(r["peak_rss_mb"])
        assert len(r["runs"]) == 2 and math.isfinite(r["runs"][0]["first_loss"])
    graph = [r for r in rows if r["system"] == "symgraph-numpy"]
    assert all(_finite(r["compile_cold_s"]) and _finite(r["compile_warm_s"]) for r in graph)


def test_compile_rows_grow_with_depth(quick_run):
    _, doc = quick_run
    rows = doc["compile"]["rows"]
    assert [r["depth"] for r in rows] == [1, 2]
    assert rows[0]["nodes_before"] < rows[1]["nodes_before"]
    assert all(_finite(r["compile_cold_s"]) and r["pass_seconds"] for r in rows)
    assert "results" in doc["compile"]["pass_scale"] or "error" in doc["compile"]["pass_scale"]


def test_chart_and_markdown_are_written_and_regenerate_from_json(quick_run, tmp_path):
    out, doc = quick_run
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "b.md").read_text()
    assert "symgraph bench" in page and "## Training steps" in page and "| M1 |" in page
    assert "torch-eager not measured" in page  # missing rows are said, not hidden
    assert "![symgraph bench chart](bench.png)" in page  # the chart beside the page is shown
    assert cli.main(["--from-json", str(out / "bench.json"), "--no-chart",
                     "--markdown", str(out / "again.md")]) == 0
    assert (out / "again.md").read_text() == page
    other = dict(doc, train=[], command="symgraph bench train")
    (tmp_path / "other.json").write_text(json.dumps(other))
    merged = cli.merge_runs([str(out / "bench.json"), str(tmp_path / "other.json")])
    assert merged["train"] == [] and merged["kernels"] == doc["kernels"]
    assert "symgraph bench train" in merged["command"]
    assert "Kernels" in report.terminal_report(doc)


def test_unknown_suite_is_a_clear_error():
    with pytest.raises(SymgraphError, match="unknown suite 'trian'"):
        cli.main(["trian", "--quick"])


def test_a_failing_backend_becomes_an_error_row(monkeypatch):
    import symgraph.bench.kernels as K

    monkeypatch.setattr(K, "kernel_set", lambda quick: kernel_set(True)[:1])
    monkeypatch.setattr(K, "available_backends", lambda requested=None: ["nosuch"])
    rows = run_kernels(1, quick=True, roofs=Roofs(100.0, 10.0))
    assert rows[0]["system"] == "numpy-unfused" and "error" not in rows[0]
    assert rows[1]["system"] == "symgraph-nosuch" and "unknown backend" in rows[1]["error"]


def test_targets_are_checked_from_the_numbers_of_the_run():
    def row(model, system, median, cold=1.0, warm=0.1, rss=100.0):
        return {"model": model, "system": system, "median": median, "max": 2 * median,
                "first_step_cold_s": cold,
                "first_step_warm_s": warm, "peak_rss_mb": rss}

    doc = {"train": [row("M1", "symgraph-numba", 16000), row("M1", "jax-jit", 13000),
                     row("M1", "torch-eager", 9000, rss=300.0),
                     row("M2", "symgraph-numba", 60000, cold=3.0, rss=400.0),
                     row("M2", "torch-eager", 50000, rss=300.0)]}
    status = {r[0]: (r[1], r[3]) for r in report.targets_table(doc)[1:]}
    assert status["M1 throughput"] == ("16,000 samples/s (best sample 32,000)", "met")
    assert status["M1 vs jax-jit"] == ("1.23x (best samples 1.23x)", "missed")  # 16000 / 13000
    assert status["M2 throughput"][1] == "missed" and status["M2 vs torch-eager"][1] == "missed"
    assert status["M2 cold compile (first step)"] == ("3.00 s", "missed")
    assert status["M1 peak RSS vs PyTorch"] == ("0.33x", "met")
    assert status["M2 peak RSS vs PyTorch"][1] == "missed"


def test_extra_suites_render_in_their_modules_words_or_say_why_missing():
    doc = {"gpu": {"error": "no GPU benchmark on this machine (exit code 2)"},
           "parallel": {"workloads": "not the format parallel.py expects"}}
    page = report.markdown(doc)
    assert "## GPU" in page and "Not measured: no GPU" in page
    assert "## Parallel CPU schedule" in page and "formatting the result" in page
    assert "== GPU" in report.terminal_report(doc)


def test_roofs_are_the_best_of_start_and_end_and_fractions_follow():
    doc = {"limits": {"roofs": {"gflops": 100.0, "gbps": 10.0}},
           "limits_end": {"roofs": {"gflops": 200.0, "gbps": 5.0}},
           "kernels": [{"flops": 2e9, "bytes": 1e6, "median_s": 0.1}],  # compute-bound
           "train": [{"achieved_gflops": 50.0, "matmul_gflops_per_step": 1.0, "batch": 100}]}
    report.apply_roofs(doc)
    assert doc["roofs"]["gflops"] == 200.0 and doc["roofs"]["gbps"] == 10.0
    assert doc["kernels"][0]["bound"] == "compute"
    assert doc["kernels"][0]["fraction_of_roof"] == pytest.approx(20.0 / 200.0)
    assert doc["train"][0]["fraction_of_roof"] == pytest.approx(0.25)
    assert doc["train"][0]["matmul_bound_samples_per_s"] == pytest.approx(100 * 200.0)


def test_round_ratios_pair_systems_round_by_round():
    from symgraph.bench.report import round_ratios

    ours = {"runs": [{"samples_per_s": [10.0, 12.0, 14.0]}, {"error": "x"},
                     {"samples_per_s": [30.0]}]}
    peer = {"runs": [{"samples_per_s": [6.0]}, {"samples_per_s": [5.0]},
                     {"samples_per_s": [20.0, 40.0]}]}
    assert round_ratios(ours, peer) == [2.0, 1.0]  # the round ours failed is skipped
    assert round_ratios(ours, {"runs": []}) == []


@pytest.mark.parametrize("argv, says", [
    (["--rounds", "-1"], "--rounds"), (["--rounds", "0"], "--rounds"),
    (["--threads", "0"], "--threads"),
    (["--systems", "symgraph-nunpy"], "symgraph-numpy"),  # the error lists the known names
    (["--backends", "numbaa"], "numba"),
])
def test_bad_options_fail_in_one_line_before_measuring(tmp_path, argv, says):
    r = subprocess.run([sys.executable, "-m", "symgraph.cli", "bench", "train", "--quick",
                        "--no-chart", "--out", str(tmp_path), *argv],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert says in r.stderr and not (tmp_path / "bench.json").exists()


@pytest.mark.parametrize("content, says", [("{not json", "not a symgraph bench JSON"),
                                           ("[1, 2]", "a list at the top"),
                                           ('{"train": {"a": 1}}', "suite 'train' is a dict")])
def test_from_json_of_a_bad_file_is_one_line_naming_it(tmp_path, content, says):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    r = subprocess.run([sys.executable, "-m", "symgraph.cli", "bench", "--from-json", str(bad),
                        "--no-chart", "--markdown", str(tmp_path / "b.md")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert says in r.stderr and str(bad) in r.stderr


@pytest.mark.parametrize("option", ["--json", "--markdown", "--chart"])
def test_unwritable_outputs_are_refused_before_measuring(tmp_path, option):
    blocker = tmp_path / "afile"
    blocker.write_text("a file, not a folder")
    argv = ["bench", "limits", "--quick", "--out", str(tmp_path / "out"),
            option, str(blocker / "x.out")]
    r = subprocess.run([sys.executable, "-m", "symgraph.cli", *argv], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert option in r.stderr and "measuring" not in r.stdout.lower()
    assert not (tmp_path / "out" / "bench.json").exists()


def test_missing_train_systems_are_listed_with_their_real_reason():
    from symgraph.bench.train import system_status

    status = system_status(["symgraph-numpy"])
    assert status["symgraph-numpy"] is None
    assert status["numpy-hand"] == "not chosen with --systems"
    doc = {"train": [{"model": "M1", "system": "symgraph-numpy", "median": 1.0}],
           "train_not_run": {s: why for s, why in status.items() if why is not None}}
    notes = report.missing_rows(doc)
    assert "train: numpy-hand not measured (not chosen with --systems)" in notes


def test_a_quick_run_is_not_judged_against_the_targets_and_says_its_sizes():
    rows = [{"model": "M1", "system": "symgraph-numba", "median": 16000, "max": 20000,
             "first_step_cold_s": 1.0, "first_step_warm_s": 0.1, "peak_rss_mb": 100.0,
             "batch": 16, "sizes": [32, 16, 4]}]
    status = {r[0]: r[3] for r in report.targets_table({"train": rows, "quick": True})[1:]}
    assert status["M1 throughput"] == "not judged (--quick sizes)"
    assert report.targets_table({"train": rows})[1][3] == "met"
    assert "batch 16 (--quick: tiny layers M1 32-16-4)" in report._train_shape(
        {"train": rows, "quick": True})


def test_from_json_with_json_writes_the_merged_runs(quick_run, tmp_path):
    out, doc = quick_run
    merged = tmp_path / "merged.json"
    assert cli.main(["--from-json", str(out / "bench.json"), "--no-chart", "--json",
                     str(merged)]) == 0
    with open(merged) as f:
        again = json.load(f)
    assert again["kernels"] == doc["kernels"] and again["train"] == doc["train"]
