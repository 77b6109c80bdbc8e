"""Datasets: MNIST (bundled) and Fashion-MNIST (system package) in Keras's format, plus
training-time augmentation.

    from symgraph.data import mnist
    (x_train, y_train), (x_test, y_test) = mnist.load_data()
"""

from symgraph.data import augment, fashion_mnist, idx, mnist
from symgraph.data.augment import RandomShift, random_shift

__all__ = ["RandomShift", "augment", "fashion_mnist", "idx", "mnist", "random_shift"]
