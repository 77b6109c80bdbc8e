"""Fashion-MNIST with a BatchNorm + dropout MLP and random-shift augmentation.

Needs the dataset's IDX files: `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu,
installs /usr/share/datasets/fashion-mnist), or pass --path to a folder holding the four
standard .gz files.

Run: python examples/fashion_mnist.py --epochs 5
"""

import argparse
import time

import numpy as np

from symgraph.data import RandomShift, fashion_mnist
from symgraph.errors import SymgraphError
from symgraph.nn import (
    Activation,
    BatchNormalization,
    Dense,
    Dropout,
    Input,
    Sequential,
    callbacks,
    optimizers,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--path", default=None)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--shift", type=int, default=2, help="augmentation: max shift in pixels")
    args = parser.parse_args()
    try:
        (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data(args.path)
    except SymgraphError as exc:
        raise SystemExit(str(exc)) from None
    x_train = x_train.reshape(-1, 784).astype(np.float32) / 255.0
    x_test = x_test.reshape(-1, 784).astype(np.float32) / 255.0

    model = Sequential([Input((784,)),
                        Dense(512), BatchNormalization(), Activation("relu"), Dropout(0.3),
                        Dense(256), BatchNormalization(), Activation("relu"), Dropout(0.3),
                        Dense(10, activation="softmax")])
    model.compile(optimizer=optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend=args.backend)
    model.summary()
    stop = callbacks.EarlyStopping(monitor="val_accuracy", patience=3,
                                   restore_best_weights=True)
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=128, epochs=args.epochs, validation_split=0.1,
              callbacks=[stop], augment=RandomShift(args.shift, (28, 28)) if args.shift else None)
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, batch_size=1000, verbose=0)
    print(f"Fashion-MNIST test accuracy {accuracy:.4f} (loss {loss:.4f}) after "
          f"{len(model.history.epoch)} epochs, {seconds:.0f} s, backend {model.backend}")


if __name__ == "__main__":
    main()
