"""Rows of the MNIST table of Srivastava et al., "Dropout: a simple way to prevent neural
networks from overfitting" (JMLR 15, 2014), Table 2:

    standard neural net, 2x800 logistic units      1.60% test error
    dropout NN, 3x1024 ReLU                         1.25%
    dropout NN + max-norm, 3x1024 ReLU              1.06%

The paper trains for a very long time (hundreds of epochs and more, SGD with momentum rising
to 0.95 and a decaying learning rate). This script runs any row for as many epochs as you give
it; docs/results.md records what it reached here and how long it took.

Run: python examples/mnist_dropout.py --row maxnorm --epochs 3
"""

import argparse
import time

import numpy as np

from symgraph.data import mnist
from symgraph.nn import Sequential, callbacks, optimizers
from symgraph.nn.train_cli import dropout_mlp

ROWS = {  # name: (hidden layers, activation, input dropout, hidden dropout, max-norm, paper %)
    "logistic": ((800, 800), "sigmoid", 0.0, 0.0, None, 1.60),
    "dropout": ((1024, 1024, 1024), "relu", 0.2, 0.5, None, 1.25),
    "maxnorm": ((1024, 1024, 1024), "relu", 0.2, 0.5, 3.0, 1.06),
}


def build(row: str) -> Sequential:
    hidden, activation, p_in, p_hidden, max_norm, _ = ROWS[row]
    return dropout_mlp(hidden, activation, p_in, p_hidden, max_norm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--row", choices=sorted(ROWS), default="maxnorm")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()

    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    x_train = x_train.reshape(-1, 784).astype(np.float32) / 255.0
    x_test = x_test.reshape(-1, 784).astype(np.float32) / 255.0

    model = build(args.row)
    # logistic units learn slowly with small steps: the plain net gets a larger rate
    lr = args.lr or (0.1 if args.row == "logistic" else 0.05)
    model.compile(optimizer=optimizers.SGD(lr, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  backend=args.backend)
    decay = callbacks.LearningRateScheduler(lambda epoch, _: lr * 0.98 ** epoch)
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
              validation_data=(x_test, y_test), callbacks=[decay], verbose=2)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, batch_size=1000, verbose=0)
    paper = ROWS[args.row][-1]
    print(f"{args.row}: test error {100 * (1 - accuracy):.2f}% after {args.epochs} epochs "
          f"({seconds:.0f} s, backend {model.backend}); paper: {paper:.2f}%")


if __name__ == "__main__":
    main()
