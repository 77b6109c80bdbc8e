"""Convolution and pooling over NHWC images (Keras 3's channels_last), built only from
primitives, so they get gradients, forward mode, CSE, fusion and every backend for free.

Each op gathers its windows with one `take` of a constant index array (im2col): the image is
laid out as rows (H*W, batch, channels), every (output position, kernel tap) picks one row, and
a tap in the padding picks one extra row filled with 0 (or -inf for max pooling). Convolution
is then one matmul with the kernel reshaped to (kh*kw*cin, cout); pooling a max or a sum over
the taps. The gradient of the gather is a scatter_add of the same index array.
"""

from __future__ import annotations

import numpy as np

from symgraph.errors import SymgraphError
from symgraph.graph import FLOAT_DTYPES, Node
from symgraph.ops.shapes import is_int
from symgraph.ops.table import checking_args
from symgraph.tensor import as_node, broadcast_to, concatenate, constant, take, transpose
from symgraph.tensor import max as sg_max
from symgraph.tensor import sum as sg_sum

PADDINGS = ("valid", "same")


def pair(value, what: str, op: str) -> tuple[int, int]:
    """A positive int or a pair of them (Keras's kernel_size, strides, ...) -> (int, int)."""
    if is_int(value):
        value = (value, value)
    if not (isinstance(value, (tuple, list)) and len(value) == 2
            and all(is_int(v) and v > 0 for v in value)):
        raise SymgraphError(f"{op}: {what} must be a positive int or a pair of positive ints, "
                            f"got {value!r}")
    return int(value[0]), int(value[1])


def padding_mode(padding, op: str, allowed=PADDINGS) -> str:
    """Keras's padding string, case-insensitive."""
    mode = padding.lower() if isinstance(padding, str) else None
    if mode not in allowed:
        shown = " or ".join(f'"{p}"' for p in allowed)
        raise SymgraphError(f"{op}: padding must be {shown}, got {padding!r}")
    return mode


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF's "same": ceil(size / stride) outputs, the odd padding cell at the end."""
    total = max((-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def output_size(size: int, kernel: int, stride: int, dilation: int, pads: tuple) -> int:
    """Window positions along one axis of `size` cells padded by `pads` (0 if none fits)."""
    span = (kernel - 1) * dilation + 1
    return max((size + pads[0] + pads[1] - span) // stride + 1, 0)


def _window_index(hw, window, strides, dilation, pads):
    """(rows, inside, (oh, ow)): the row of the (H*W)-row layout that each tap of each output
    position reads, shape (oh*ow, kh*kw), H*W for a tap in the padding; inside marks the real
    cells."""
    axes = []
    for n, k, s, d, (before, after) in zip(hw, window, strides, dilation, pads):
        out = output_size(n, k, s, d, (before, after))
        axes.append(np.arange(out)[:, None] * s - before + np.arange(k)[None, :] * d)
    r = axes[0][:, None, :, None]
    c = axes[1][None, :, None, :]
    inside = (r >= 0) & (r < hw[0]) & (c >= 0) & (c < hw[1])
    rows = np.where(inside, r * hw[1] + c, hw[0] * hw[1])
    oh, ow = len(axes[0]), len(axes[1])
    return rows.reshape(oh * ow, -1).astype(np.int64), inside.reshape(oh * ow, -1), (oh, ow)


def _check_image(x: Node, op: str) -> None:
    if x.ndim != 4:
        raise SymgraphError(f"{op} needs an image batch of rank 4 (batch, height, width, "
                            f"channels), got rank {x.ndim} {x.describe()}")
    if x.dtype not in FLOAT_DTYPES:
        raise SymgraphError(f"{op} needs a float tensor, got {x.describe()}")
    if not all(isinstance(d, int) for d in x.shape[1:]):
        raise SymgraphError(f"{op}: height, width and channels must be known ints, got shape "
                            f"{tuple(x.shape)}")


def _explicit_pads(padding, op: str) -> tuple:
    ok = isinstance(padding, (tuple, list)) and len(padding) == 2 and all(
        isinstance(p, (tuple, list)) and len(p) == 2 and all(is_int(v) and v >= 0 for v in p)
        for p in padding)
    if not ok:
        raise SymgraphError(f'{op}: padding must be "valid", "same" or ((top, bottom), '
                            f"(left, right)) of non-negative ints, got {padding!r}")
    return tuple((int(a), int(b)) for a, b in padding)


def _pads(x: Node, window, strides, dilation, padding, op: str) -> tuple:
    """((top, bottom), (left, right)) for a padding mode or explicit pairs, checked so that at
    least one window fits."""
    hw = tuple(x.shape[1:3])
    if isinstance(padding, str) or not isinstance(padding, (tuple, list)):
        mode = padding_mode(padding, op)
        pads = tuple(same_pads(n, k, s, d) if mode == "same" else (0, 0)
                     for n, k, s, d in zip(hw, window, strides, dilation))
    else:  # explicit ((top, bottom), (left, right)), as causal Conv1D uses
        pads = _explicit_pads(padding, op)
    for n, k, s, d, p, axis in zip(hw, window, strides, dilation, pads, ("height", "width")):
        if output_size(n, k, s, d, p) < 1:
            span = f"{k}" if d == 1 else f"{k} dilated by {d} spans {(k - 1) * d + 1}"
            padded = f" padded to {n + sum(p)}" if sum(p) else ""
            raise SymgraphError(f"{op}: the window ({span}) is larger than the input's {axis} "
                                f"{n}{padded} (padding {padding!r}); input shape "
                                f"{tuple(x.shape)}")
    return pads


def _patches(x: Node, window, strides, dilation, pads, fill: float):
    """The taps of every window, (oh*ow, kh*kw, batch, channels); the `inside` mask; (oh, ow).

    The image becomes rows by a reshape then a transpose of three axes (not the other way
    round), so that the copy the gather needs indexes without dividing by the batch size."""
    n, h, w, c = x.shape
    rows, inside, out_hw = _window_index((h, w), window, strides, dilation, pads)
    flat = transpose(x.reshape((n, h * w, c)), (1, 0, 2))
    if not inside.all():
        fill_row = broadcast_to(constant(np.asarray(fill, x.dtype)), (1, n, c))
        flat = concatenate([flat, fill_row], axis=0)
    return take(flat, constant(rows)), inside, out_hw


def _to_image(y: Node, out_hw) -> Node:
    """(oh*ow, batch, channels) -> (batch, oh, ow, channels)."""
    return transpose(y, (1, 0, 2)).reshape((y.shape[1],) + tuple(out_hw) + (y.shape[2],))


def conv2d(x, kernel, strides=(1, 1), padding="valid", dilation_rate=(1, 1)) -> Node:
    """2-D convolution (cross-correlation, as Keras) of NHWC `x` with a (kh, kw, cin, cout)
    kernel; padding "valid", "same" (TF's: the odd cell at the bottom and right) or explicit
    ((top, bottom), (left, right))."""
    x, kernel = as_node(x), as_node(kernel)
    with checking_args("conv2d", (x, kernel)):
        _check_image(x, "conv2d")
        if kernel.ndim != 4:
            raise SymgraphError("conv2d needs a kernel of rank 4 (height, width, in channels, "
                                f"out channels), got rank {kernel.ndim} {kernel.describe()}")
        if kernel.shape[2] != x.shape[3]:
            raise SymgraphError(f"conv2d: the kernel's {kernel.shape[2]} input channels differ "
                                f"from the input's {x.shape[3]} channels")
        window = tuple(kernel.shape[:2])
        strides = pair(strides, "strides", "conv2d")
        dilation = pair(dilation_rate, "dilation_rate", "conv2d")
        if max(strides) > 1 and max(dilation) > 1:
            raise SymgraphError("conv2d: strides > 1 together with dilation_rate > 1 is not "
                                "supported (Keras refuses it too)")
        pads = _pads(x, window, strides, dilation, padding, "conv2d")
    patches, _, (oh, ow) = _patches(x, window, strides, dilation, pads, 0.0)
    positions, taps, n, c = patches.shape
    # (batch, positions, taps): one product per sample, so that the kernel's gradient is a sum
    # of `batch` products, not of batch * oh ones
    columns = transpose(patches, (2, 0, 1, 3)).reshape((n, positions, taps * c))
    y = columns @ kernel.reshape((taps * c, kernel.shape[3]))
    return y.reshape((n, oh, ow, kernel.shape[3]))


def _pool_args(x: Node, pool_size, strides, padding, op: str):
    _check_image(x, op)
    padding_mode(padding, op)  # no explicit pads: a window wholly in them is -inf / 0 / 0
    window = pair(pool_size, "pool_size", op)
    strides = window if strides is None else pair(strides, "strides", op)
    return window, strides, _pads(x, window, strides, (1, 1), padding, op)


def max_pool2d(x, pool_size=(2, 2), strides=None, padding="valid") -> Node:
    """Max over each window of NHWC `x` (strides default to pool_size); "same" padding cells
    never win (they hold -inf)."""
    x = as_node(x)
    with checking_args("max_pool2d", (x,)):
        window, strides, pads = _pool_args(x, pool_size, strides, padding, "max_pool2d")
    patches, _, out_hw = _patches(x, window, strides, (1, 1), pads, -np.inf)
    return _to_image(sg_max(patches, axis=1), out_hw)


def avg_pool2d(x, pool_size=(2, 2), strides=None, padding="valid") -> Node:
    """Mean over each window of NHWC `x`; with "same" padding a window divides by the count
    of its real (unpadded) cells, as TF does."""
    x = as_node(x)
    with checking_args("avg_pool2d", (x,)):
        window, strides, pads = _pool_args(x, pool_size, strides, padding, "avg_pool2d")
    patches, inside, out_hw = _patches(x, window, strides, (1, 1), pads, 0.0)
    total = sg_sum(patches, axis=1)  # (oh*ow, batch, channels)
    count = inside.sum(axis=-1)
    if (count == count[0]).all():
        return _to_image(total / constant(np.asarray(count[0], x.dtype)), out_hw)
    return _to_image(total / constant(count[:, None, None].astype(x.dtype)), out_hw)
