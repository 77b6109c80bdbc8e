"""`symgraph train`: the main job. Trains the dropout MLP of Srivastava et al. (2014), Table 2
(784-1024-1024-1024-10 ReLU, dropout 0.2 on the input and 0.5 on hidden units, max-norm
weights) on the bundled MNIST, shows progress, prints the test error and writes weights (.npz),
a plot of the curves (PNG) and a JSON report into an output folder.

Defaults (3 epochs, SGD with momentum) finish in a few minutes on 2 cores; `--full` runs the
long schedule (momentum 0.95, learning-rate decay, many epochs) that the paper's figures need.
After each epoch the training state goes to `<out>/backup/` (BackupAndRestore): the same
command with the same `--out` continues an interrupted run after its last finished epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from symgraph.errors import SymgraphError
from symgraph.files import atomic_write

PAPER = "Srivastava et al. 2014, JMLR 15, Table 2"


def dropout_mlp(hidden, activation, dropout_in, dropout_hidden, max_norm):
    """The MNIST MLP of the dropout paper's table: 784-hidden-10 with optional dropout/max-norm."""
    from symgraph.nn import Dense, Dropout, Input, Sequential
    from symgraph.nn.constraints import MaxNorm

    layers = [Input((784,))]
    if dropout_in:
        layers.append(Dropout(dropout_in))
    for units in hidden:
        layers.append(Dense(units, activation=activation,
                            kernel_constraint=MaxNorm(max_norm) if max_norm else None))
        if dropout_hidden:
            layers.append(Dropout(dropout_hidden))
    layers.append(Dense(10, activation="softmax"))
    return Sequential(layers)


def _mlp_bn():
    from symgraph.nn import Activation, BatchNormalization, Dense, Input, Sequential

    return Sequential([Input((784,)), Dense(512), BatchNormalization(), Activation("relu"),
                       Dense(512), BatchNormalization(), Activation("relu"),
                       Dense(10, activation="softmax")])


def _cnn():
    """Keras's mnist_convnet example (Adam, batch 128, 15 epochs: about 99% test accuracy
    there), reading the flat 784 pixels the other models read."""
    from symgraph.nn import (
        Conv2D,
        Dense,
        Dropout,
        Flatten,
        Input,
        MaxPooling2D,
        Reshape,
        Sequential,
    )

    return Sequential([Input((784,)), Reshape((28, 28, 1)),
                       Conv2D(32, 3, activation="relu"), MaxPooling2D(2),
                       Conv2D(64, 3, activation="relu"), MaxPooling2D(2),
                       Flatten(), Dropout(0.5), Dense(10, activation="softmax")])


# name -> (description, the paper's test error % or None, builder)
MODELS = {
    "mlp-dropout": ("3x1024 ReLU, dropout 0.2/0.5, max-norm 3", 1.06,
                    lambda: dropout_mlp((1024,) * 3, "relu", 0.2, 0.5, 3.0)),
    "mlp-dropout-relu": ("3x1024 ReLU, dropout 0.2/0.5, no max-norm", 1.25,
                         lambda: dropout_mlp((1024,) * 3, "relu", 0.2, 0.5, None)),
    "mlp-2x800": ("2x800 logistic (sigmoid), no dropout", 1.60,
                  lambda: dropout_mlp((800, 800), "sigmoid", 0.0, 0.0, None)),
    "mlp-small": ("784-128-10 ReLU (quick checks)", None,
                  lambda: dropout_mlp((128,), "relu", 0.0, 0.0, None)),
    "mlp-bn": ("784-512-512-10, BatchNorm before each ReLU", None, _mlp_bn),
    "cnn": ("Keras's mnist_convnet: 3x3 conv 32 and 64, 2x2 max-pool, dropout 0.5", None, _cnn),
}
OPTIMIZERS = ("sgd", "adam", "adamw", "nadam", "adamax", "lion", "rmsprop", "adagrad",
              "adadelta")


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Register `symgraph train` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "train", help="train the dropout MLP on MNIST (the main job)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(MODELS), default="mlp-dropout",
                   help="network (default: mlp-dropout, the paper's 1.06%% row)")
    p.add_argument("--epochs", type=_positive, default=None, help="default 3, or 300 with --full")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    p.add_argument("--lr", type=_non_negative_float, default=None,
                   help="learning rate (sgd default 0.05; others: Keras defaults)")
    p.add_argument("--momentum", type=_non_negative_float, default=None,
                   help="SGD momentum (default 0.9, 0.95 with --full)")
    p.add_argument("--batch-size", type=_positive, default=128)
    p.add_argument("--backend", default="auto", choices=("auto", "numpy", "numba", "cuda"),
                   help="auto: the fastest available (numba when it works, else numpy)")
    p.add_argument("--out", default=None, help="output folder (default ./runs/<timestamp>)")
    p.add_argument("--full", action="store_true",
                   help="full-length reproduction: 300 epochs, momentum 0.95, lr decay")
    p.add_argument("--limit", type=_positive, default=None,
                   help="train on the first N training images only (smoke tests)")
    p.add_argument("--augment", type=_shift, default=0, metavar="PIXELS",
                   help="random shifts of up to PIXELS on training batches (default 0)")
    p.add_argument("--threads", type=_positive, default=None,
                   help="BLAS threads (default: the library's own; 1 on a busy machine)")
    p.add_argument("--seed", type=_non_negative, default=1337)
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1)
    p.set_defaults(run=run_train)
    return p


def _number(text: str, kind):
    """`text` as an int or float, or argparse's one-line error saying what was expected."""
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}"
                                         f", got {text!r}") from None


def _positive(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _shift(text: str) -> int:
    value = _non_negative(text)
    if value >= 28:
        raise argparse.ArgumentTypeError(f"must be below the 28-pixel image size, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = _number(text, float)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _writable_folder(path: str) -> None:
    """Create `path` and prove a file can be written there, or raise a SymgraphError."""
    try:
        os.makedirs(path, exist_ok=True)
        atomic_write(os.path.join(path, ".write-test"), lambda f: f.write(b"ok"))
        os.remove(os.path.join(path, ".write-test"))
    except OSError as exc:
        raise SymgraphError(f"--out {path!r} is not a folder symgraph can write to "
                            f"({type(exc).__name__}: {exc})") from None


def _json_safe(value):
    """report.json stays strict JSON: a NaN or inf (a diverged run) becomes null."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# what decides a run's trajectory: a backup is continued only by a command that agrees on all of
# them (--epochs may grow or shrink, --backend/--threads/--verbose change no result's meaning)
RESUME_KEYS = ("model", "optimizer", "learning_rate", "momentum", "batch_size", "full",
               "train_images", "augment", "seed")


def _resume_settings(args, optimizer, train_images: int) -> dict:
    return {"model": args.model, "optimizer": args.optimizer,
            "learning_rate": float(f"{optimizer.learning_rate:.7g}"),  # float32's digits
            "momentum": float(getattr(optimizer, "momentum", 0.0) or 0.0)
            if args.optimizer == "sgd" else None,
            "batch_size": args.batch_size, "full": args.full, "train_images": train_images,
            "augment": args.augment, "seed": args.seed}


def _check_resume(backup_dir: str, settings: dict) -> None:
    """Refuse to continue a backup made by a command with other settings (a silent mix of two
    runs); record this run's settings beside the backup otherwise."""
    state = os.path.join(backup_dir, "training_state.npz")
    path = os.path.join(backup_dir, "run.json")
    if os.path.exists(state):
        try:
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
            if not isinstance(saved, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError:
            saved = None  # a backup written before run.json existed: nothing to compare
        except (OSError, ValueError) as exc:
            raise SymgraphError(f"cannot read {path} ({type(exc).__name__}: {exc}): delete "
                                f"{backup_dir} to start afresh") from None
        if saved is not None:
            diff = [f"{k} {saved.get(k)!r} there, {v!r} here" for k, v in settings.items()
                    if saved.get(k) != v]
            if diff:
                raise SymgraphError(
                    f"{state} holds an interrupted run with other settings ({'; '.join(diff)}): "
                    "rerun the same command to continue it, or use another --out (or delete "
                    f"{backup_dir}) to start afresh")
    os.makedirs(backup_dir, exist_ok=True)
    text = json.dumps(settings)
    atomic_write(path, lambda f: f.write(text.encode()))


def _remove_backup(backup_dir: str) -> None:
    """After the results are on disk: the backup and its settings go, then the folder."""
    for name in ("training_state.npz", "run.json"):
        try:
            os.remove(os.path.join(backup_dir, name))
        except FileNotFoundError:
            pass
    _remove_empty_folder(backup_dir)


def _remove_empty_folder(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:  # not empty (the user's files) or already gone
        pass


def _optimizer(args):
    from symgraph.nn import optimizers

    if args.optimizer == "sgd":
        momentum = args.momentum if args.momentum is not None else (0.95 if args.full else 0.9)
        return optimizers.SGD(0.05 if args.lr is None else args.lr, momentum=momentum)
    cls = {"adam": optimizers.Adam, "adamw": optimizers.AdamW, "nadam": optimizers.Nadam,
           "adamax": optimizers.Adamax, "lion": optimizers.Lion, "rmsprop": optimizers.RMSprop,
           "adagrad": optimizers.Adagrad, "adadelta": optimizers.Adadelta}[args.optimizer]
    return cls() if args.lr is None else cls(args.lr)


def _plot(history: dict, path: str, epochs=None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    # 1-based numbers of the epochs the history holds (a resumed run starts after 1)
    epochs = (np.asarray(epochs) + 1 if epochs is not None
              else np.arange(1, len(history.get("loss", [])) + 1))
    for key, style in (("loss", "-"), ("val_loss", "--")):
        if key in history:
            ax1.plot(epochs, history[key], style, marker="o", label=key)
    for key, style in (("accuracy", "-"), ("val_accuracy", "--")):
        if key in history:
            ax2.plot(epochs, history[key], style, marker="o", label=key)
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax1, ax2):
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        else:  # stopped (NaN loss) before the first epoch ended
            ax.text(0.5, 0.5, "no finished epoch", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=100, format="png"))
    plt.close(fig)


def run_train(args) -> int:
    """Train, evaluate, and write weights.npz, curves.png and report.json to the out folder."""
    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=args.threads, user_api="blas"):
            return _train(args)
    return _train(args)


def _train(args) -> int:
    from symgraph.data import RandomShift, mnist
    from symgraph.nn import callbacks, set_random_seed
    set_random_seed(args.seed)
    epochs = args.epochs if args.epochs is not None else (300 if args.full else 3)
    if args.momentum is not None and args.optimizer != "sgd":
        raise SymgraphError(f"--momentum is SGD's; --optimizer {args.optimizer} has none")
    out = args.out or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
    new_out = not os.path.exists(out)
    _writable_folder(out)  # before minutes of training, not after
    args.out = out  # the folder a rerun must name to continue (the default is a new timestamp)
    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    x_train = x_train.reshape(len(x_train), 784).astype(np.float32) / 255.0
    x_test = x_test.reshape(len(x_test), 784).astype(np.float32) / 255.0
    if args.limit is not None:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    description, paper_error, build = MODELS[args.model]
    model = build()
    optimizer = _optimizer(args)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend=args.backend)
    print(f"symgraph train: {args.model} ({description}) on MNIST, {len(x_train)} training "
          f"images, {epochs} epochs, {args.optimizer}, batch {args.batch_size}, "
          f"backend {model.backend}, into {out}")
    if args.verbose:
        model.summary()
    cbs = []
    if args.full and args.optimizer == "sgd":
        base = optimizer.learning_rate
        cbs.append(callbacks.LearningRateScheduler(lambda e, lr: base * 0.99 ** e))
    backup_dir = os.path.join(out, "backup")
    _check_resume(backup_dir, _resume_settings(args, optimizer, len(x_train)))
    # kept until weights and report are written: a kill after training loses nothing
    backup = callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False)
    if os.path.exists(backup.path):  # a run into this --out was interrupted: continue it
        print(f"found {backup.path}: continuing the interrupted run after its last epoch")
    cbs.append(backup)
    augment = RandomShift(args.augment, (28, 28)) if args.augment else None
    start = time.perf_counter()
    try:
        history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=epochs,
                            verbose=args.verbose, validation_data=(x_test, y_test),
                            callbacks=cbs, augment=augment, seed=args.seed)
    except BaseException:
        if not os.path.exists(backup.path):  # no epoch ended: nothing to continue, no folders
            _remove_backup(backup_dir)
            if new_out:
                _remove_empty_folder(out)
        raise
    train_seconds = time.perf_counter() - start
    test_loss, test_acc = model.evaluate(x_test, y_test, batch_size=1000, verbose=0)
    test_error = 100.0 * (1.0 - test_acc)
    paper = f" (paper: {paper_error:.2f}% after full training)" if paper_error else ""
    print(f"test error: {test_error:.2f}%{paper}; test loss {test_loss:.4f}; "
          f"trained {len(history.epoch)} epochs in {train_seconds:.1f} s")
    model.save_weights(os.path.join(out, "weights.npz"))
    _plot(history.history, os.path.join(out, "curves.png"), history.epoch)
    report = {
        "model": args.model, "description": description, "paper": PAPER,
        "paper_test_error_percent": paper_error, "test_error_percent": test_error,
        "test_accuracy": test_acc, "test_loss": test_loss, "epochs": len(history.epoch),
        "first_epoch": history.epoch[0] + 1 if history.epoch else None,  # > 1: resumed
        "optimizer": args.optimizer, "learning_rate": optimizer.learning_rate,
        "batch_size": args.batch_size, "backend": model.backend, "train_images": len(x_train),
        "augment_pixels": args.augment, "seed": args.seed, "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / max(len(history.epoch), 1),
        "history": history.history, "nan_report": history.nan_report,
        "params": model.count_params(), "python": platform.python_version(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("run", "command")},
        "full": args.full,
    }
    text = json.dumps(_json_safe(report), indent=2, allow_nan=False)
    atomic_write(os.path.join(out, "report.json"), lambda f: f.write(text.encode()))
    _remove_backup(backup_dir)
    print(f"wrote {out}/weights.npz, {out}/curves.png, {out}/report.json")
    return 0 if history.nan_report is None else 1
