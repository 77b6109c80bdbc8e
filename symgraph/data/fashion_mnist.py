"""Fashion-MNIST (Zalando's clothing images) from its standard IDX files on this system.

Debian and Ubuntu ship them in the package `dataset-fashion-mnist`, which installs the four
files under /usr/share/datasets/fashion-mnist; `SYMGRAPH_FASHION_MNIST` or `path=` point
elsewhere.
"""

from __future__ import annotations

import os

from symgraph.data.idx import load_idx_dataset
from symgraph.errors import SymgraphError

DEFAULT_FOLDERS = ("/usr/share/datasets/fashion-mnist", "/usr/share/datasets/fashion_mnist")
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")


def find_folder(path: str | None = None) -> str:
    """The folder holding the Fashion-MNIST files, or a SymgraphError saying how to get them."""
    candidates = [path] if path else [os.environ.get("SYMGRAPH_FASHION_MNIST"), *DEFAULT_FOLDERS]
    for folder in candidates:
        if folder and os.path.exists(os.path.join(folder, "train-images-idx3-ubyte.gz")) \
                or folder and os.path.exists(os.path.join(folder, "train-images-idx3-ubyte")):
            return folder
    looked = ", ".join(c for c in candidates if c)
    raise SymgraphError(
        f"Fashion-MNIST not found (looked in {looked}). Install it with "
        "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or download the four "
        "IDX .gz files from https://github.com/zalandoresearch/fashion-mnist and pass "
        "load_data(path=FOLDER) or set SYMGRAPH_FASHION_MNIST=FOLDER.")


def load_data(path: str | None = None) -> tuple:
    """((x_train, y_train), (x_test, y_test)) uint8 arrays as `keras.datasets.fashion_mnist`."""
    return load_idx_dataset(find_folder(path))
