"""`symgraph train` smoke run with tiny settings: progress, test error, and its three files."""

import argparse
import json
import os

import pytest

from symgraph.nn.train_cli import MODELS, add_train_parser


def _main(argv):
    """`symgraph ...` through cli.main, or through the train parser alone while cli.py's other
    commands (bench, viz: other modules) cannot be imported yet."""
    from symgraph.cli import main

    try:
        return main(argv)
    except ModuleNotFoundError as exc:
        if exc.name not in ("symgraph.viz_cli", "symgraph.bench.cli"):
            raise
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.run(args)


def test_train_cli_writes_weights_plot_and_report(tmp_path, capsys):
    out = tmp_path / "run"
    rc = _main(["train", "--model", "mlp-small", "--epochs", "1", "--limit", "512",
                "--backend", "numpy", "--out", str(out), "--verbose", "2", "--augment", "1"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Epoch 1/1" in text and "test error:" in text
    assert sorted(os.listdir(out)) == ["curves.png", "report.json", "weights.npz"]
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == "mlp-small" and report["epochs"] == 1
    assert report["backend"] == "numpy" and 0 <= report["test_error_percent"] <= 100
    assert len(report["history"]["val_accuracy"]) == 1
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_parser_defaults(tmp_path):
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "--out", str(tmp_path), "--full"])
    assert args.model == "mlp-dropout" and args.full and args.run is not None
    assert {"mlp-dropout", "mlp-dropout-relu", "mlp-2x800"} <= set(MODELS)


def test_train_cli_full_schedule_decays_learning_rate(tmp_path, capsys):
    out = tmp_path / "full"
    rc = _main(["train", "--model", "mlp-small", "--full", "--epochs", "2", "--limit", "256",
                "--backend", "numpy", "--out", str(out), "--verbose", "0"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["full"] and report["settings"]["momentum"] is None
    assert report["history"]["learning_rate"] == pytest.approx([0.05, 0.05 * 0.99])
