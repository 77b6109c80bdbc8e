"""Time the compiled training step of a `symgraph train` model (what `fit` calls per batch).

The bench suite measures M1 and M2, graphs built by hand; this times the step the Keras-style
layer builds for the main job's models, max-norm constraint and accuracy metric included, on
random MNIST-shaped data. Each run prints the median and fastest of 5 groups of steps.

    python scripts/train_step_time.py                      # mlp-dropout, SGD momentum, numba
    python scripts/train_step_time.py --model mlp-bn --optimizer adam --steps 200
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    from symgraph.nn import optimizers
    from symgraph.nn.steps import TargetSpec, build_train_step
    from symgraph.nn.train_cli import MODELS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="mlp-dropout")
    ap.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    ap.add_argument("--backend", default="numba")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=50, help="steps per group (5 groups)")
    args = ap.parse_args()
    model = MODELS[args.model][2]()
    optimizer = (optimizers.SGD(0.05, momentum=0.9) if args.optimizer == "sgd"
                 else optimizers.Adam())
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend=args.backend)
    start = time.perf_counter()
    # with fit's NaN guard, as fit builds it
    step = build_train_step(model, TargetSpec((), "int32"), args.backend, nan_guard=True)
    compile_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, 784), dtype=np.float32)
    y = rng.integers(0, 10, args.batch).astype(np.int32)
    for _ in range(10):
        step(x, y)
    groups = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(args.steps):
            step(x, y)
        groups.append((time.perf_counter() - start) / args.steps)
    groups.sort()
    print(f"{args.model} ({args.optimizer}, {args.backend}, batch {args.batch}): "
          f"{groups[2] * 1e3:.2f} ms per step (fastest group {groups[0] * 1e3:.2f} ms), "
          f"{args.batch / groups[2]:,.0f} samples/s; step built and compiled in "
          f"{compile_s:.2f} s")


if __name__ == "__main__":
    main()
