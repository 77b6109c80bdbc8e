"""`symgraph train` smoke run with tiny settings: progress, test error, and its three files."""

import argparse
import contextlib
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


@pytest.mark.parametrize("flag,value", [("--epochs", "0"), ("--batch-size", "0"),
                                        ("--limit", "0"), ("--limit", "-5"), ("--lr", "-1"),
                                        ("--threads", "0"), ("--augment", "-1"),
                                        ("--augment", "28"), ("--seed", "-1")])
def test_train_cli_refuses_values_it_would_change(flag, value, tmp_path, capsys):
    """--epochs 0 trained 3 epochs, --limit 0 all 60000 images, --lr 0 used 0.05: every
    value is used as given or refused before anything runs."""
    with pytest.raises(SystemExit) as info:
        _main(["train", "--out", str(tmp_path / "x"), flag, value])
    assert info.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_train_cli_uses_a_zero_learning_rate_and_reports_strict_json(tmp_path, capsys):
    out = tmp_path / "lr0"
    rc = _main(["train", "--model", "mlp-small", "--epochs", "1", "--limit", "128", "--lr", "0",
                "--backend", "numpy", "--out", str(out), "--verbose", "0"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text(),
                        parse_constant=lambda c: pytest.fail(f"{c} in report.json"))
    assert report["learning_rate"] == 0.0 and report["train_images"] == 128
    # a diverged run: the loss is NaN, report.json holds null (strict JSON), the exit code 1
    out = tmp_path / "diverged"
    rc = _main(["train", "--model", "mlp-small", "--epochs", "1", "--limit", "128",
                "--lr", "1e38", "--batch-size", "16", "--backend", "numpy", "--out", str(out),
                "--verbose", "0"])
    report = json.loads((out / "report.json").read_text(),
                        parse_constant=lambda c: pytest.fail(f"{c} in report.json"))
    assert rc == 1 and report["nan_report"] and report["test_loss"] is None


def test_train_cli_checks_the_out_folder_before_training(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    rc = _main(["train", "--model", "mlp-small", "--epochs", "1", "--limit", "128",
                "--backend", "numpy", "--out", str(afile), "--verbose", "0"])
    captured = capsys.readouterr()
    assert rc == 2 and "is not a folder symgraph can write to" in captured.err
    assert "Traceback" not in captured.err and "symgraph train:" not in captured.out


def test_an_interrupted_train_continues_when_run_again_into_the_same_out(tmp_path, capsys,
                                                                        monkeypatch):
    """The backup after each epoch lets the same command finish an interrupted run: the
    second run trains the epochs left, from the first run's state, and tidies the backup."""
    from symgraph.nn import callbacks

    out = tmp_path / "run"
    argv = ["train", "--model", "mlp-small", "--epochs", "3", "--limit", "256",
            "--backend", "numpy", "--out", str(out), "--verbose", "0"]
    save = callbacks.BackupAndRestore.on_epoch_end

    def killed_after_epoch_2(self, epoch, logs=None):
        save(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.BackupAndRestore, "on_epoch_end", killed_after_epoch_2)
    assert _main(argv) == 130  # Ctrl-C: one line saying how to continue, no traceback
    assert "interrupted (the same command with --out" in capsys.readouterr().err
    assert os.path.exists(out / "backup" / "training_state.npz")
    monkeypatch.setattr(callbacks.BackupAndRestore, "on_epoch_end", save)
    assert _main(argv) == 0
    assert "continuing the interrupted run" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["first_epoch"] == 3 and report["epochs"] == 1
    assert sorted(os.listdir(out)) == ["curves.png", "report.json", "weights.npz"]


def _interrupted_run(tmp_path, monkeypatch, argv):
    """Run `argv` until the backup after epoch 1 is written, then stop it (as a kill would)."""
    from symgraph.nn import callbacks

    save = callbacks.BackupAndRestore.on_epoch_end

    def killed_after_epoch_1(self, epoch, logs=None):
        save(self, epoch, logs)
        raise OSError("killed")  # main answers one line and exit 2, like any OSError

    monkeypatch.setattr(callbacks.BackupAndRestore, "on_epoch_end", killed_after_epoch_1)
    assert _main(argv) == 2
    monkeypatch.setattr(callbacks.BackupAndRestore, "on_epoch_end", save)


@pytest.mark.parametrize("change", [["--lr", "0.001"], ["--batch-size", "64"], ["--seed", "5"],
                                    ["--limit", "128"], ["--augment", "1"]])
def test_a_rerun_with_other_settings_does_not_continue_the_backup(tmp_path, capsys,
                                                                  monkeypatch, change):
    out = tmp_path / "run"
    argv = ["train", "--model", "mlp-small", "--epochs", "2", "--limit", "256",
            "--backend", "numpy", "--out", str(out), "--verbose", "0"]
    _interrupted_run(tmp_path, monkeypatch, argv)
    state = (out / "backup" / "training_state.npz").read_bytes()
    capsys.readouterr()
    assert _main(argv + change) == 2
    err = capsys.readouterr().err
    assert "holds an interrupted run with other settings" in err and len(err.splitlines()) == 1
    assert (out / "backup" / "training_state.npz").read_bytes() == state  # nothing changed
    assert _main(argv) == 0  # the same command still continues it
    assert json.loads((out / "report.json").read_text())["first_epoch"] == 2


def test_a_kill_after_the_last_epoch_keeps_the_backup(tmp_path, monkeypatch, capsys):
    """Until weights and report are written the backup stays: a rerun trains nothing again."""
    from symgraph.nn import train_cli

    out = tmp_path / "run"
    argv = ["train", "--model", "mlp-small", "--epochs", "2", "--limit", "256",
            "--backend", "numpy", "--out", str(out), "--verbose", "0"]

    def killed(*args, **kwargs):
        raise OSError("killed while plotting")

    plot = train_cli._plot
    monkeypatch.setattr(train_cli, "_plot", killed)
    assert _main(argv) == 2
    assert os.path.exists(out / "backup" / "training_state.npz")
    monkeypatch.setattr(train_cli, "_plot", plot)
    capsys.readouterr()
    assert _main(argv) == 0
    assert "trained 0 epochs" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["curves.png", "report.json", "weights.npz"]


@pytest.mark.parametrize("argv, says", [
    (["--batch-size", "1.5"], "--batch-size: expected an integer, got '1.5'"),
    (["--momentum", "x"], "--momentum: expected a number, got 'x'"),
    (["--optimizer", "adam", "--momentum", "0.5"], "--momentum is SGD's"),
])
def test_train_cli_option_mistakes_are_one_line_and_create_no_folder(tmp_path, capsys, argv,
                                                                      says):
    with pytest.raises(SystemExit) if "expected" in says else contextlib.nullcontext():
        assert _main(["train", "--out", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and not (tmp_path / "x").exists()



@pytest.mark.parametrize("made_by_user", [False, True])
def test_a_run_failing_in_its_first_epoch_leaves_no_empty_folders(tmp_path, monkeypatch, capsys,
                                                                   made_by_user):
    """A first step that fails (backend='cuda' without a GPU, a Ctrl-C) leaves nothing to
    continue: the backup folder goes, and --out too when this command created it."""
    from symgraph import SymgraphError
    from symgraph.nn import callbacks

    out = tmp_path / "run"
    if made_by_user:
        out.mkdir()

    def no_device(self, batch, logs=None):
        raise SymgraphError("backend='cuda' found no usable NVIDIA GPU")

    monkeypatch.setattr(callbacks.BackupAndRestore, "on_train_batch_begin", no_device)
    assert _main(["train", "--model", "mlp-small", "--epochs", "1", "--limit", "128",
                  "--backend", "numpy", "--out", str(out), "--verbose", "0"]) == 2
    assert "found no usable NVIDIA GPU" in capsys.readouterr().err
    assert os.path.exists(out) == made_by_user
    if made_by_user:
        assert os.listdir(out) == []


def test_train_cli_trains_keras_mnist_convnet_with_the_newer_optimizers(tmp_path, capsys):
    out = tmp_path / "cnn"
    assert _main(["train", "--model", "cnn", "--optimizer", "nadam", "--epochs", "1",
                  "--limit", "256", "--backend", "numpy", "--out", str(out),
                  "--verbose", "0"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["params"] == 34_826  # Keras's mnist_convnet summary: Total params 34,826
    assert report["optimizer"] == "nadam" and report["test_loss"] < 2.3  # below chance's 2.30
