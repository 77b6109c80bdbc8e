"""Keras's convolution and pooling layers over channels_last inputs: Conv1D, Conv2D,
MaxPooling1D/2D, AveragePooling1D/2D, GlobalMaxPooling1D/2D, GlobalAveragePooling1D/2D.

They call the graph layer's sg.conv2d / sg.max_pool2d / sg.avg_pool2d (symgraph/convolution.py);
the 1-D layers run them on a (batch, 1, steps, channels) view of their input.
"""

from __future__ import annotations

import symgraph as sg
from symgraph.convolution import output_size, padding_mode, pair, same_pads
from symgraph.errors import SymgraphError
from symgraph.nn.layers import KernelLayer, Layer
from symgraph.nn.symbolic import shape_text
from symgraph.ops.shapes import is_int


def _one(value, what: str, op: str) -> int:
    """A 1-D layer's positive int (Keras also takes a 1-tuple)."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if not is_int(value) or value <= 0:
        raise SymgraphError(f"{op}: {what} must be a positive int (or a 1-tuple), got "
                            f"{value!r}")
    return int(value)


def _check_data_format(data_format, op: str) -> None:
    if data_format not in (None, "channels_last"):
        raise SymgraphError(f"{op}: only data_format='channels_last' is supported, got "
                            f"{data_format!r}")


def _check_rank(layer, rank: int, input_shape) -> None:
    """Refuse inputs that are not (batch, *rank spatial axes, channels)."""
    if len(input_shape) != rank + 1:
        what = "(batch, steps, channels)" if rank == 1 else "(batch, height, width, channels)"
        raise SymgraphError(f"{type(layer).__name__} {layer.name!r} needs inputs of shape "
                            f"{what}, got {shape_text(input_shape)}")


class _Spatial:
    """The sizes of a windowed layer along its spatial axes, shared by build and call."""

    def __init__(self, layer, rank: int, window, strides, dilation, padding):
        self.layer, self.rank = layer, rank
        self.window, self.strides, self.dilation, self.padding = (window, strides, dilation,
                                                                  padding)

    def pads(self, sizes) -> tuple:
        out = []
        for n, k, s, d in zip(sizes, self.window, self.strides, self.dilation):
            if self.padding == "same":
                out.append(same_pads(n, k, s, d))
            elif self.padding == "causal":
                out.append(((k - 1) * d, 0))
            else:
                out.append((0, 0))
        return tuple(out)

    def output_sizes(self, input_shape) -> tuple:
        sizes = tuple(input_shape[:-1])
        out = tuple(output_size(n, k, s, d, p) for n, k, s, d, p in
                    zip(sizes, self.window, self.strides, self.dilation, self.pads(sizes)))
        if min(out) < 1:
            raise SymgraphError(f"{type(self.layer).__name__} {self.layer.name!r}: the window "
                                f"{self.window} (strides {self.strides}, dilation_rate "
                                f"{self.dilation}) is larger than the input "
                                f"{shape_text(input_shape)} with padding {self.padding!r}: the "
                                "output would be empty")
        return out

    def as_2d(self, x):
        """A 1-D layer's (batch, steps, channels) input as (batch, 1, steps, channels)."""
        return x if self.rank == 2 else x.reshape((x.shape[0], 1) + tuple(x.shape[1:]))

    def from_2d(self, y):
        return y if self.rank == 2 else y.reshape((y.shape[0],) + tuple(y.shape[2:]))

    def args_2d(self):
        """(window, strides, dilation, padding) for the 2-D ops; "causal" as explicit pads."""
        lift = (lambda t: t) if self.rank == 2 else (lambda t: (1,) + tuple(t))
        padding = self.padding
        if padding == "causal":
            padding = ((0, 0), ((self.window[0] - 1) * self.dilation[0], 0))
        return lift(self.window), lift(self.strides), lift(self.dilation), padding


class _Conv(KernelLayer):
    rank = 2

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups: int = 1, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, activity_regularizer,
                         kernel_constraint, bias_constraint, **kwargs)
        op = type(self).__name__
        if not isinstance(filters, int) or isinstance(filters, bool) or filters <= 0:
            raise SymgraphError(f"{op}: Invalid value for argument `filters`. Expected a "
                                f"strictly positive value. Received filters={filters!r}")
        if groups != 1:
            raise SymgraphError(f"{op}: groups={groups!r} is not supported (only groups=1)")
        _check_data_format(data_format, op)
        tup = _one if self.rank == 1 else pair
        window = tup(kernel_size, "kernel_size", op)
        strides = tup(strides, "strides", op)
        dilation = tup(dilation_rate, "dilation_rate", op)
        window, strides, dilation = ((window,), (strides,), (dilation,)) if self.rank == 1 \
            else (window, strides, dilation)
        if max(strides) > 1 and max(dilation) > 1:
            raise SymgraphError(f"{op}: `strides > 1` not supported in conjunction with "
                                f"`dilation_rate > 1`. Received: strides={strides} and "
                                f"dilation_rate={dilation}")
        allowed = ("valid", "same", "causal") if self.rank == 1 else ("valid", "same")
        mode = padding_mode(padding, op, allowed)
        self.filters = filters
        self.kernel_size, self.strides, self.dilation_rate, self.padding = (window, strides,
                                                                            dilation, mode)
        self._spatial = _Spatial(self, self.rank, window, strides, dilation, mode)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding, "data_format": "channels_last",
                "dilation_rate": list(self.dilation_rate), "groups": 1, **self.kernel_config()}

    def build(self, input_shape):
        _check_rank(self, self.rank, input_shape)
        self._spatial.output_sizes(input_shape)  # refuses before any weight exists
        self.build_kernel(self.kernel_size + (input_shape[-1], self.filters), self.filters)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return self._spatial.output_sizes(input_shape) + (self.filters,)

    def call(self, x, ctx):
        window, strides, dilation, padding = self._spatial.args_2d()
        kernel = self.kernel.reshape(window + tuple(self.kernel.shape[-2:]))
        y = sg.conv2d(self._spatial.as_2d(x), kernel, strides, padding, dilation)
        return self.finish(self._spatial.from_2d(y), ctx)


class Conv2D(_Conv):
    """2-D convolution over (batch, height, width, channels); kernel (kh, kw, in, filters)."""

    rank = 2


class Conv1D(_Conv):
    """1-D convolution over (batch, steps, channels); kernel (k, in, filters); padding also
    "causal" (left padding only: output t sees inputs up to t)."""

    rank = 1


class _Pooling(Layer):
    rank = 2
    reduce = None  # sg.max_pool2d or sg.avg_pool2d

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        op = type(self).__name__
        _check_data_format(data_format, op)
        tup = _one if self.rank == 1 else pair
        window = tup(pool_size, "pool_size", op)
        strides = window if strides is None else tup(strides, "strides", op)
        window, strides = ((window,), (strides,)) if self.rank == 1 else (window, strides)
        self.pool_size, self.strides = window, strides
        self.padding = padding_mode(padding, op)
        self._spatial = _Spatial(self, self.rank, window, strides, (1,) * self.rank,
                                 self.padding)

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": self.padding,
                "data_format": "channels_last"}

    def build(self, input_shape):
        _check_rank(self, self.rank, input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return self._spatial.output_sizes(input_shape) + (input_shape[-1],)

    def call(self, x, ctx):
        window, strides, _, padding = self._spatial.args_2d()
        y = type(self).reduce(self._spatial.as_2d(x), window, strides, padding)
        return self._spatial.from_2d(y)


class MaxPooling2D(_Pooling):
    """Max over pool_size windows (strides default to pool_size)."""

    reduce = staticmethod(sg.max_pool2d)


class AveragePooling2D(_Pooling):
    """Mean over pool_size windows; with "same" padding over the real cells only (TF)."""

    reduce = staticmethod(sg.avg_pool2d)


class MaxPooling1D(_Pooling):
    rank = 1
    reduce = staticmethod(sg.max_pool2d)


class AveragePooling1D(_Pooling):
    rank = 1
    reduce = staticmethod(sg.avg_pool2d)


class _GlobalPooling(Layer):
    rank = 2
    reduce = None  # sg.max or sg.mean

    def __init__(self, data_format=None, keepdims: bool = False, **kwargs):
        super().__init__(**kwargs)
        _check_data_format(data_format, type(self).__name__)
        self.keepdims = bool(keepdims)

    def get_config(self):
        return {**super().get_config(), "data_format": "channels_last", "keepdims": self.keepdims}

    def build(self, input_shape):
        _check_rank(self, self.rank, input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return (1,) * self.rank + (input_shape[-1],) if self.keepdims else (input_shape[-1],)

    def call(self, x, ctx):
        return type(self).reduce(x, axis=tuple(range(1, self.rank + 1)), keepdims=self.keepdims)


class GlobalAveragePooling2D(_GlobalPooling):
    reduce = staticmethod(sg.mean)


class GlobalMaxPooling2D(_GlobalPooling):
    reduce = staticmethod(sg.max)


class GlobalAveragePooling1D(_GlobalPooling):
    rank = 1
    reduce = staticmethod(sg.mean)


class GlobalMaxPooling1D(_GlobalPooling):
    rank = 1
    reduce = staticmethod(sg.max)
