"""Milliseconds per training step of `symgraph train`'s network (784-1024x3-10, dropout,
max-norm, SGD momentum; batch 128) on the NumPy and Numba backends, measured interleaved.

Run: python examples/step_time.py [--repeats 5] [--steps 20] [--threads 1]
"""

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from symgraph.nn import optimizers, set_random_seed
from symgraph.nn.train_cli import MODELS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads")
    parser.add_argument("--backends", default="numpy,numba")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.random((128, 784), dtype=np.float32)
    y = rng.integers(0, 10, 128)
    models = {}
    for backend in args.backends.split(","):
        set_random_seed(0)
        model = MODELS["mlp-dropout"][2]()
        model.compile(optimizer=optimizers.SGD(0.05, momentum=0.9),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                      backend=backend)
        model.train_on_batch(x, y)  # compile and warm up
        models[backend] = model
    times = {b: [] for b in models}
    with threadpool_limits(args.threads, "blas"):
        for _ in range(args.repeats):
            for backend, model in models.items():  # interleaved: load changes hit both
                start = time.perf_counter()
                for _ in range(args.steps):
                    model.train_on_batch(x, y)
                times[backend].append((time.perf_counter() - start) / args.steps * 1e3)
    for backend, ms in times.items():
        med = float(np.median(ms))
        print(f"{backend}: median {med:.1f} ms/step ({128 / med * 1e3:.0f} samples/s); "
              f"repeats {[round(t, 1) for t in ms]}")


if __name__ == "__main__":
    main()
