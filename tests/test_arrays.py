"""Array ownership (symgraph/arrays.py): aligned arrays and the `shared` test."""

import numpy as np

from symgraph.arrays import aligned_empty, shared


def test_aligned_arrays_start_on_64_bytes_and_are_not_shared():
    for shape, dtype in (((3, 5), np.float32), ((0, 4), np.float64), ((), np.int64)):
        a = aligned_empty(shape, dtype)
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
        assert a.flags.writeable and (a.size == 0 or a.ctypes.data % 64 == 0)
        assert not shared(a)


def test_shared_sees_every_other_holder_of_the_memory():
    a = aligned_empty(8, np.float32)
    view = a[2:]  # the caller's view holds the buffer
    assert shared(a) and shared(view)
    del view
    assert not shared(a)
    owner = np.zeros(4)
    assert not shared(owner)  # owns its memory
    assert shared(owner[1:])  # `owner` still holds it
