"""IDX parsing: headers, dtypes, gzip, and the errors for malformed files."""

import gzip
import struct

import numpy as np
import pytest

from symgraph.data import fashion_mnist, idx
from symgraph.errors import SymgraphError


def _idx_bytes(array: np.ndarray, code: int) -> bytes:
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_parse_uint8_and_int32_and_float():
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(idx.parse_idx(_idx_bytes(a, 0x08)), a)
    b = np.array([-5, 70000], np.int32)
    got = idx.parse_idx(_idx_bytes(b, 0x0C))
    np.testing.assert_array_equal(got, b)
    assert got.dtype.byteorder in ("=", "|", "<")
    c = np.array([1.5, -2.25], np.float32)
    np.testing.assert_array_equal(idx.parse_idx(_idx_bytes(c, 0x0D)), c)


def test_malformed_files_raise():
    with pytest.raises(SymgraphError, match="not an IDX file"):
        idx.parse_idx(b"\x1f\x8b\x08\x00abc")
    a = np.zeros((2, 2), np.uint8)
    with pytest.raises(SymgraphError, match="shape"):
        idx.parse_idx(_idx_bytes(a, 0x08)[:-1])


def _write_dataset(folder, n_train=6, n_test=3):
    rng = np.random.default_rng(0)
    parts = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
             "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
             "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
             "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test)}
    for name, arr in parts.items():
        with gzip.open(folder / (name + ".gz"), "wb") as f:
            f.write(_idx_bytes(arr.astype(np.uint8), 0x08))
    return parts


def test_fashion_mnist_reads_standard_folder(tmp_path):
    parts = _write_dataset(tmp_path)
    (xtr, ytr), (xte, yte) = fashion_mnist.load_data(path=str(tmp_path))
    np.testing.assert_array_equal(xtr, parts["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(yte, parts["t10k-labels-idx1-ubyte"])
    assert xte.shape == (3, 28, 28) and ytr.dtype == np.uint8


def test_fashion_mnist_missing_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEFAULT_FOLDERS", (str(tmp_path / "nowhere"),))
    monkeypatch.delenv("SYMGRAPH_FASHION_MNIST", raising=False)
    with pytest.raises(SymgraphError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist.load_data()


def test_damaged_gzip_and_forged_headers_raise_naming_the_file(tmp_path):
    parts = _write_dataset(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    good = path.read_bytes()
    for damaged in (good[: len(good) // 2], b"not gzip at all", good[:-6] + b"\0" * 6):
        path.write_bytes(damaged)  # truncated, not gzip, bad CRC: were raw EOFError/BadGzipFile
        with pytest.raises(SymgraphError, match="t10k-images-idx3-ubyte.gz"):
            idx.load_idx_dataset(str(tmp_path))
    forged = struct.pack(">BBBB", 0, 0, 0x08, 4) + struct.pack(">I", 2**31) * 4
    with pytest.raises(SymgraphError, match="header says shape"):  # int64 product wrapped to 0
        idx.parse_idx(forged)
    assert len(parts) == 4


def test_swapped_or_wrong_kind_files_are_refused(tmp_path):
    _write_dataset(tmp_path)
    images, labels = tmp_path / "t10k-images-idx3-ubyte.gz", tmp_path / "t10k-labels-idx1-ubyte.gz"
    a, b = images.read_bytes(), labels.read_bytes()
    images.write_bytes(b)
    labels.write_bytes(a)  # loaded silently: x_test 1-D, y_test images
    with pytest.raises(SymgraphError, match="should hold images .*2051"):
        idx.load_idx_dataset(str(tmp_path))
    images.write_bytes(a)
    with gzip.open(labels, "wb") as f:
        f.write(_idx_bytes(np.zeros(3, np.float32), 0x0D))
    with pytest.raises(SymgraphError, match="should hold labels .*float32"):
        idx.load_idx_dataset(str(tmp_path))
