"""A small MNIST subset trains past 90% test accuracy (full 10k test set) within the budget."""

import numpy as np

from symgraph.data import mnist
from symgraph.nn import Dense, Dropout, Sequential, optimizers, set_random_seed
from symgraph.nn.constraints import MaxNorm


def test_mnist_subset_reaches_90_percent():
    set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    x_train = x_train[:8000].reshape(-1, 784).astype(np.float32) / 255
    x_test = x_test.reshape(-1, 784).astype(np.float32) / 255
    model = Sequential([Dense(128, activation="relu", kernel_constraint=MaxNorm(3),
                              input_shape=(784,)),
                        Dropout(0.2), Dense(10, activation="softmax")])
    model.compile(optimizer=optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend="numpy")
    hist = model.fit(x_train, y_train[:8000], batch_size=32, epochs=3, verbose=0, seed=0)
    loss, acc = model.evaluate(x_test, y_test, batch_size=1000, verbose=0)
    assert acc > 0.90, (acc, hist.history)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
