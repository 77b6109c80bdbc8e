"""sg.conv2d, sg.max_pool2d, sg.avg_pool2d (symgraph/convolution.py) against NumPy references
written here with direct loops over output positions, Keras 3 / TF padding computed by hand;
gradients and tangents against finite differences; the Numba backend against the NumPy one."""

import math

import numpy as np
import pytest

import symgraph as sg
from symgraph.testing import verify_grad

RNG = np.random.default_rng(3)


def ref_pads(size, kernel, stride, dilation, padding):
    """TF's rule: "same" gives ceil(size / stride) outputs, the extra cell at the end."""
    if padding == "valid":
        return 0, 0
    span = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def ref_windows(x, window, strides, padding, dilation, fill):
    """Yield (i, j, taps of shape (n, kh, kw, c)) for each output position, loop by loop."""
    (kh, kw), (sh, sw), (dh, dw) = window, strides, dilation
    top, bottom = ref_pads(x.shape[1], kh, sh, dh, padding)
    left, right = ref_pads(x.shape[2], kw, sw, dw, padding)
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)
    oh = (xp.shape[1] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[2] - (kw - 1) * dw - 1) // sw + 1
    for i in range(oh):
        for j in range(ow):
            rows = [i * sh + a * dh for a in range(kh)]
            cols = [j * sw + b * dw for b in range(kw)]
            yield i, j, oh, ow, xp[:, rows][:, :, cols]


def ref_conv(x, kernel, strides=(1, 1), padding="valid", dilation=(1, 1)):
    out = None
    for i, j, oh, ow, taps in ref_windows(x, kernel.shape[:2], strides, padding, dilation, 0.0):
        if out is None:
            out = np.zeros((x.shape[0], oh, ow, kernel.shape[3]))
        for a in range(kernel.shape[0]):
            for b in range(kernel.shape[1]):
                out[:, i, j] += taps[:, a, b] @ kernel[a, b]
    return out


def ref_pool(x, window, strides, padding, reduce):
    out = None
    for i, j, oh, ow, taps in ref_windows(x, window, strides, padding, (1, 1), np.nan):
        if out is None:
            out = np.zeros((x.shape[0], oh, ow, x.shape[3]))
        out[:, i, j] = reduce(taps, axis=(1, 2))  # nanmax / nanmean skip the padding
    return out


CONV_CASES = [  # x shape, kernel shape, strides, padding, dilation
    ((2, 5, 5, 3), (3, 3, 3, 4), (1, 1), "valid", (1, 1)),
    ((2, 6, 6, 2), (3, 3, 2, 3), (2, 2), "same", (1, 1)),     # even size, odd kernel
    ((2, 7, 7, 2), (3, 3, 2, 3), (2, 2), "same", (1, 1)),     # odd size
    ((1, 8, 6, 2), (2, 4, 2, 3), (2, 1), "same", (1, 1)),     # even kernel, non-square
    ((2, 7, 9, 1), (3, 2, 1, 2), (1, 1), "valid", (2, 3)),    # dilation
    ((2, 5, 6, 3), (3, 3, 3, 2), (1, 1), "same", (2, 2)),     # dilation with same padding
    ((2, 4, 5, 3), (1, 1, 3, 5), (1, 1), "valid", (1, 1)),    # 1x1 kernel
    ((2, 5, 5, 2), (1, 1, 2, 3), (2, 2), "same", (1, 1)),
    ((1, 7, 7, 1), (2, 2, 1, 1), (3, 3), "valid", (1, 1)),    # stride larger than the kernel
    ((1, 3, 2, 2), (5, 4, 2, 1), (1, 1), "same", (1, 1)),     # kernel larger than the input
    ((2, 6, 7, 2), (4, 3, 2, 2), (3, 2), "VALID", (1, 1)),    # Keras lower-cases padding
]


@pytest.mark.parametrize("xs, ks, strides, padding, dilation", CONV_CASES)
def test_conv2d_matches_the_loop_reference(xs, ks, strides, padding, dilation):
    x, k = RNG.standard_normal(xs), RNG.standard_normal(ks)
    px = sg.placeholder(("batch",) + xs[1:], "float64", name="x")
    pk = sg.placeholder(ks, "float64", name="k")
    out = sg.conv2d(px, pk, strides, padding, dilation)
    want = ref_conv(x, k, strides, padding.lower(), dilation)
    assert out.shape[1:] == want.shape[1:]
    np.testing.assert_allclose(sg.function([px, pk], out)(x, k), want, rtol=1e-12, atol=1e-12)


def test_conv2d_same_with_stride_1_keeps_the_size_and_pads_more_at_the_end():
    # a 2x2 kernel pads one row/column, at the bottom/right (TF): output[-1] sees only x[-1]
    x = np.arange(9.0).reshape(1, 3, 3, 1)
    k = np.ones((2, 2, 1, 1))
    got = sg.function([], sg.conv2d(sg.constant(x), sg.constant(k), padding="same"))()
    np.testing.assert_array_equal(got[0, :, :, 0], [[8, 12, 7], [20, 24, 13], [13, 15, 8]])


POOL_CASES = [  # x shape, pool, strides, padding
    ((2, 6, 6, 3), (2, 2), None, "valid"),
    ((2, 7, 7, 2), (2, 2), None, "valid"),      # the odd last row is dropped
    ((2, 7, 7, 2), (2, 2), None, "same"),       # ... or padded
    ((2, 6, 5, 2), (3, 3), (2, 2), "same"),     # overlapping windows
    ((1, 5, 8, 1), (2, 3), (1, 2), "same"),     # non-square, stride 1 on one axis
    ((1, 5, 8, 1), (3, 1), (2, 1), "valid"),
    ((2, 4, 4, 3), (1, 1), (2, 2), "valid"),    # 1x1 pool: a strided subsample
]


@pytest.mark.parametrize("xs, pool, strides, padding", POOL_CASES)
def test_pooling_matches_the_loop_reference(xs, pool, strides, padding):
    x = RNG.standard_normal(xs)
    px = sg.placeholder(("batch",) + xs[1:], "float64", name="x")
    fn = sg.function([px], [sg.max_pool2d(px, pool, strides, padding),
                            sg.avg_pool2d(px, pool, strides, padding)])
    got_max, got_avg = fn(x)
    stride = pool if strides is None else strides
    np.testing.assert_allclose(got_max, ref_pool(x, pool, stride, padding, np.nanmax))
    np.testing.assert_allclose(got_avg, ref_pool(x, pool, stride, padding, np.nanmean),
                               rtol=1e-12)


def test_avg_pool_same_divides_by_the_real_cells_only():
    x = np.ones((1, 3, 3, 1))
    got = sg.function([], sg.avg_pool2d(sg.constant(x), 2, 2, "same"))()
    np.testing.assert_array_equal(got, np.ones((1, 2, 2, 1)))  # not 1/2 and 1/4 at the edge


def test_max_pool_same_never_picks_the_padding():
    x = -np.ones((1, 3, 3, 1)) * np.arange(1, 10).reshape(1, 3, 3, 1)
    got = sg.function([], sg.max_pool2d(sg.constant(x), 2, 2, "same"))()
    np.testing.assert_array_equal(got[0, :, :, 0], [[-1, -3], [-7, -9]])


GRAD_CASES = [CONV_CASES[i] for i in (0, 2, 3, 4, 5, 7, 9)]


@pytest.mark.parametrize("xs, ks, strides, padding, dilation", GRAD_CASES)
def test_conv2d_gradients_and_tangents_match_finite_differences(xs, ks, strides, padding,
                                                                 dilation):
    x, k = RNG.standard_normal((1,) + xs[1:]), RNG.standard_normal(ks)
    verify_grad(lambda a, b: sg.conv2d(a, b, strides, padding, dilation), [x, k])


@pytest.mark.parametrize("xs, pool, strides, padding", [POOL_CASES[i] for i in (1, 2, 3, 4)])
def test_pooling_gradients_and_tangents_match_finite_differences(xs, pool, strides, padding):
    x = RNG.permutation(np.arange(np.prod(xs[1:]), dtype=np.float64)).reshape((1,) + xs[1:])
    x = x * 0.1  # distinct values: no ties inside a window, where max has no derivative
    verify_grad(lambda a: sg.max_pool2d(a, pool, strides, padding), [x])
    verify_grad(lambda a: sg.avg_pool2d(a, pool, strides, padding), [x])


def _cnn_outputs(x, k):
    """Forward and gradients of conv -> relu -> max pool -> avg pool (same) -> sum."""
    h = sg.relu(sg.conv2d(x, k, (1, 1), "same"))
    out = sg.avg_pool2d(sg.max_pool2d(h, 2), 3, 2, "same")
    loss = sg.sum(out * out)
    return [out] + sg.grad(loss, [x, k])


def test_numba_backend_equals_numpy_backend():
    x = sg.placeholder(("batch", 9, 8, 2), name="x")
    k = sg.variable(RNG.standard_normal((3, 3, 2, 4)).astype(np.float32), name="k")
    arrays = [RNG.standard_normal((5, 9, 8, 2)).astype(np.float32)]
    outs = _cnn_outputs(x, k)
    want = sg.function([x], outs, backend="numpy")(*arrays)
    got = sg.function([x], outs, backend="numba")(*arrays)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.cudasim
def test_cuda_backend_equals_numpy_backend_in_the_simulator():
    x = sg.placeholder(("batch", 5, 4, 2), name="x")
    k = sg.variable(RNG.standard_normal((2, 2, 2, 3)).astype(np.float32), name="k")
    arrays = [RNG.standard_normal((2, 5, 4, 2)).astype(np.float32)]
    outs = _cnn_outputs(x, k)
    want = sg.function([x], outs, backend="numpy")(*arrays)
    got = sg.function([x], outs, backend="cuda")(*arrays)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_optimized_graph_gives_the_same_values_at_every_level():
    x = sg.placeholder(("batch", 6, 6, 2), "float64", name="x")
    k = sg.placeholder((3, 3, 2, 2), "float64", name="k")
    outs = _cnn_outputs(x, k)
    arrays = [RNG.standard_normal((3, 6, 6, 2)), RNG.standard_normal((3, 3, 2, 2))]
    want = sg.function([x, k], outs, backend="numpy", optimize=0)(*arrays)
    got = sg.function([x, k], outs, backend="numpy", optimize=3)(*arrays)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


# --- refusals ------------------------------------------------------------------------------

X = sg.placeholder(("batch", 5, 5, 3), name="x")
K = sg.placeholder((3, 3, 3, 4), name="k")


@pytest.mark.parametrize("build, message", [
    (lambda: sg.conv2d(sg.placeholder(("batch", 5, 3)), K), "rank 4 .* got rank 3"),
    (lambda: sg.conv2d(X, sg.placeholder((3, 3, 3))), "kernel of rank 4 .* got rank 3"),
    (lambda: sg.conv2d(X, sg.placeholder((3, 3, 2, 4))), "kernel's 2 input channels differ "
                                                         "from the input's 3"),
    (lambda: sg.conv2d(X, sg.placeholder((6, 3, 3, 4))), "window \\(6\\) is larger than the "
                                                         "input's height 5"),
    (lambda: sg.conv2d(X, K, dilation_rate=3), "window \\(3 dilated by 3 spans 7\\) is "
                                                "larger than the input's height 5"),
    (lambda: sg.conv2d(X, K, padding="full"), 'padding must be "valid" or "same", got \'full\''),
    (lambda: sg.conv2d(X, K, padding=None), "padding must be"),
    (lambda: sg.conv2d(X, K, strides=0), "strides must be a positive int"),
    (lambda: sg.conv2d(X, K, strides=(1, 2, 1)), "strides must be"),
    (lambda: sg.conv2d(X, K, strides=2, dilation_rate=2), "strides > 1 together with"),
    (lambda: sg.conv2d(sg.placeholder(("batch", "h", 5, 3)), K), "must be known ints"),
    (lambda: sg.conv2d(sg.placeholder((2, 5, 5, 3), "int32"), K), "needs a float tensor"),
    (lambda: sg.max_pool2d(X, 6), "window \\(6\\) is larger than the input's height 5"),
    (lambda: sg.max_pool2d(sg.placeholder(("batch", 4)), 2), "rank 4"),
    (lambda: sg.avg_pool2d(X, 2, padding="causal"), "padding must be"),
    (lambda: sg.avg_pool2d(X, (2, 0)), "pool_size must be a positive int"),
    (lambda: sg.avg_pool2d(X, 2, 2, ((2, 0), (0, 0))), 'padding must be "valid" or "same"'),
    (lambda: sg.max_pool2d(X, 2, 2, ((2, 0), (0, 0))), 'padding must be "valid" or "same"'),
])
def test_bad_arguments_raise_clear_errors(build, message):
    with pytest.raises(sg.SymgraphError, match=message) as info:
        build()
    assert "test_conv.py" in str(info.value)  # the user's line that made the call
