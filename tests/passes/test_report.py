"""CompileReport: readable table, dict/JSON, later-stage fields printed only once set."""

import json

import symgraph as sg
from symgraph.passes.report import CompileReport, PassStats


def test_table_lists_each_pass_and_only_set_fields():
    report = CompileReport(level=2, passes=[PassStats("cse", 10, 8, 0.001, {"merges": 2}),
                                            PassStats("dce", 8, 7, 0.002, {"identities": 0})])
    text = str(report)
    assert "O2" in text and "merges=2" in text and "identities" not in text
    assert "kernels" not in text and "peak" not in text
    report.kernels, report.peak_bytes = 3, 4096
    report.backend["registers"] = {"k0": 32}
    text = str(report)
    assert "kernels: 3" in text and "peak bytes: 4,096" in text and "registers" in text
    assert "schedule depth" not in text
    assert report.nodes_before == 10 and report.nodes_after == 7 and report.total("merges") == 2


def test_dict_and_json_round_trip():
    x = sg.placeholder((3,), "float64")
    _, report = sg.optimize([x * 1.0 + x * 1.0], level=2)
    data = json.loads(report.to_json())
    assert data["level"] == 2 and data["kernels"] is None and data["backend"] == {}
    assert [p["name"] for p in data["passes"]][:2] == ["cse", "fold"]
    assert data["nodes_before"] == report.nodes_before == 6
    assert data["nodes_after"] == 2  # x*1 is x: only x + x is left
    assert data == report.to_dict() | {"passes": data["passes"]}


def test_function_exposes_report():
    x = sg.placeholder((3,), "float64")
    f = sg.function([x], sg.exp(x) + sg.exp(x))
    assert f.report.total("merges") == 1
    assert "cse" in str(f.report)
