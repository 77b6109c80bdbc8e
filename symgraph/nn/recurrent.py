"""Keras 3's recurrent layers SimpleRNN, LSTM and GRU: Keras's arguments, defaults, weight
layouts and gate orders (LSTM: input, forget, cell, output; GRU: update, reset, candidate).
The wrappers Bidirectional and TimeDistributed are in rnn_wrappers.py.

symgraph has no loop construct, so the time loop is unrolled into the graph, one cell step
per timestep, as Theano's scan compiles: the number of timesteps is fixed by the model's input
shape, Input((timesteps, features)), and the graph (so compile time) grows linearly with it.
`unroll` is accepted and ignored (the loop is always unrolled); `stateful=True` is refused.
"""

from __future__ import annotations

import numbers

import numpy as np

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn import activations, constraints, initializers, regularizers
from symgraph.nn.layers import Layer, call_seed, draw_seed
from symgraph.nn.serialization import serialize
from symgraph.nn.symbolic import shape_text
from symgraph.ops.shapes import is_int


def _rate(value, name: str, kind: str) -> float:
    """A dropout rate in [0, 1): Keras clamps other values silently (and ignores a rate of
    1), which hides a mistake, so they are refused here."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise SymgraphError(f"{kind}: `{name}` must be a float in [0, 1) (the fraction of units "
                            f"to drop), got {name}={value!r}")
    return float(value)


def _check_use_cudnn(value, layer) -> None:
    """Keras's check of an argument that means nothing here (no cuDNN kernels)."""
    if value not in ("auto", True, False):
        raise SymgraphError(f"{type(layer).__name__}: Invalid value received for argument "
                            f"`use_cudnn`. Expected one of {{'auto', True, False}}. Received: "
                            f"use_cudnn={value!r}")


class RNNBase(Layer):
    """What SimpleRNN, LSTM and GRU share: the kernel (features, gates * units), the
    recurrent_kernel (units, gates * units) and the bias, the unrolled time loop, dropout masks
    drawn once per call and kept for every timestep (Keras's DropoutRNNCell), and the
    return_sequences / return_state / go_backwards outputs. A subclass sets `gates` and
    `state_count` and defines `step`."""

    gates = 1        # blocks of `units` columns in the kernels
    state_count = 1  # states carried between timesteps (LSTM: h and c)
    takes_recurrent_activation = True  # not SimpleRNN

    def __init__(self, units, activation, recurrent_activation, use_bias, kernel_initializer,
                 recurrent_initializer, bias_initializer, kernel_regularizer,
                 recurrent_regularizer, bias_regularizer, activity_regularizer,
                 kernel_constraint, recurrent_constraint, bias_constraint, dropout,
                 recurrent_dropout, seed, return_sequences, return_state, go_backwards,
                 stateful, unroll, zero_output_for_mask, **kwargs):
        super().__init__(**kwargs)
        kind = type(self).__name__
        if not is_int(units) or units <= 0:
            raise SymgraphError(f"{kind}: Received an invalid value for argument `units`, "
                                f"expected a positive integer, got {units!r}")
        if stateful:
            raise SymgraphError(f"{kind}: stateful=True is not supported: a compiled step "
                                "carries no state from one batch to the next (pass the "
                                "context as part of each sequence instead)")
        if activity_regularizer is not None:
            raise SymgraphError(f"{kind}: activity_regularizer is not supported")
        activations.get(activation)  # fail at construction on an unknown name
        activations.get(recurrent_activation)
        self.units = int(units)
        self.activation, self.recurrent_activation = activation, recurrent_activation
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.recurrent_initializer = recurrent_initializer
        self.bias_initializer = bias_initializer
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.dropout = _rate(dropout, "dropout", kind)
        self.recurrent_dropout = _rate(recurrent_dropout, "recurrent_dropout", kind)
        self.seed = draw_seed(seed)
        self.return_sequences, self.return_state = bool(return_sequences), bool(return_state)
        self.go_backwards, self.stateful = bool(go_backwards), False
        self.unroll, self.zero_output_for_mask = bool(unroll), bool(zero_output_for_mask)
        self.kernel = self.recurrent_kernel = self.bias = None

    def get_config(self):
        """Keras 3's keys and order (the RNN base's, then the cell's)."""
        config = {**super().get_config(), "return_sequences": self.return_sequences,
                  "return_state": self.return_state, "go_backwards": self.go_backwards,
                  "stateful": self.stateful, "unroll": self.unroll,
                  "zero_output_for_mask": self.zero_output_for_mask, "units": self.units,
                  "activation": activations.serialize(self.activation)}
        if self.takes_recurrent_activation:
            config["recurrent_activation"] = activations.serialize(self.recurrent_activation)
        config.update({
            "use_bias": self.use_bias,
            "kernel_initializer": serialize(self.kernel_initializer),
            "recurrent_initializer": serialize(self.recurrent_initializer),
            "bias_initializer": serialize(self.bias_initializer),
            "kernel_regularizer": serialize(self.kernel_regularizer),
            "recurrent_regularizer": serialize(self.recurrent_regularizer),
            "bias_regularizer": serialize(self.bias_regularizer),
            "activity_regularizer": None,
            "kernel_constraint": serialize(self.kernel_constraint),
            "recurrent_constraint": serialize(self.recurrent_constraint),
            "bias_constraint": serialize(self.bias_constraint),
            "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed})
        return config

    # --- weights ----------------------------------------------------------------------------

    def bias_shape(self) -> tuple:
        return (self.gates * self.units,)

    def bias_initial(self):
        """The bias's initializer (LSTM's unit_forget_bias changes it)."""
        return self.bias_initializer

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise SymgraphError(f"{type(self).__name__} {self.name!r} takes inputs of shape "
                                f"(None, timesteps, features) (expected ndim=3), got "
                                f"{shape_text(input_shape)}; give a sequence as "
                                "Input((timesteps, features))")
        width = self.gates * self.units
        self.kernel = self.add_weight("kernel", (input_shape[1], width), self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.recurrent_kernel = self.add_weight("recurrent_kernel", (self.units, width),
                                                self.recurrent_initializer,
                                                regularizer=self.recurrent_regularizer,
                                                constraint=self.recurrent_constraint)
        if self.use_bias:
            self.bias = self.add_weight("bias", self.bias_shape(), self.bias_initial(),
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        out = (input_shape[0], self.units) if self.return_sequences else (self.units,)
        if self.return_state:  # Keras: [output, *states]
            return [out] + [(self.units,)] * self.state_count
        return out

    # --- the unrolled loop ------------------------------------------------------------------

    def call(self, x, ctx):
        in_masks, rec_masks = self._dropout_masks(x, ctx)
        zeros = sg.broadcast_to(sg.constant(np.zeros((1, self.units), x.dtype)),
                                (x.shape[0], self.units))
        states = [zeros] * self.state_count
        steps = range(x.shape[1])
        outputs = []
        for t in (reversed(steps) if self.go_backwards else steps):  # Keras: outputs reversed
            out, states = self.step(x[:, t, :], states, in_masks, rec_masks)
            outputs.append(out)
        if self.return_sequences:
            output = sg.concatenate([sg.expand_dims(o, 1) for o in outputs], axis=1)
        else:
            output = outputs[-1]
        return [output, *states] if self.return_state else output

    def step(self, x_t, states: list, in_masks, rec_masks) -> tuple:
        """One timestep: (output, new states) from the inputs at t and the states before."""
        raise NotImplementedError

    def _dropout_masks(self, x, ctx) -> tuple:
        """The (input, recurrent) dropout masks of this call: None, one (batch, size) mask, or
        one per gate stacked as (gates, batch, size) (Keras's cells draw one per gate when
        recurrent_dropout is set, their implementation 1). Kept units are scaled by
        1 / (1 - rate), and the same masks serve every timestep. Drawn only in training."""
        if not ctx.training or not (self.dropout or self.recurrent_dropout):
            return None, None
        count = self.gates if self.recurrent_dropout else 1
        features = x.shape[2]
        draws = sg.random.uniform((count, x.shape[0], features + self.units),
                                  call_seed(self, ctx), ctx.step, x.dtype)

        def masks(rate, columns):
            if not rate:
                return None
            scaled = sg.cast(draws[:, :, columns] >= rate, x.dtype) * (1.0 / (1.0 - rate))
            return scaled if count > 1 else scaled[0]

        return (masks(self.dropout, slice(0, features)),
                masks(self.recurrent_dropout, slice(features, features + self.units)))

    def project(self, inputs, weight, masks, count: int, bias=None) -> list:
        """(inputs @ weight[:, :count * units] + bias) as `count` gate blocks of `units`
        columns. One (batch, size) dropout mask multiplies the inputs once; masks stacked per
        gate, (gates, batch, size), give each gate its own masked inputs (Keras's
        implementation 1), projected by one batched matmul."""
        u = self.units
        if weight.shape[1] != count * u:
            weight = weight[:, :count * u]
        if masks is not None and masks.ndim == 3:
            per_gate = sg.transpose(weight.reshape((weight.shape[0], count, u)), (1, 0, 2))
            blocks = (inputs * masks[:count]) @ per_gate  # (count, batch, units)
            if bias is not None:
                blocks = blocks + bias[:count * u].reshape((count, 1, u))
            return [blocks[g] for g in range(count)]
        if masks is not None:
            inputs = inputs * masks
        z = inputs @ weight
        if bias is not None:
            z = z + bias
        return [z] if count == 1 else [z[:, g * u:(g + 1) * u] for g in range(count)]


class SimpleRNN(RNNBase):
    """h_t = activation(x_t @ kernel + bias + h_{t-1} @ recurrent_kernel)."""

    takes_recurrent_activation = False

    def __init__(self, units, activation="tanh", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, unroll=False, zero_output_for_mask=False,
                 **kwargs):
        super().__init__(units, activation, None, use_bias, kernel_initializer,
                         recurrent_initializer, bias_initializer, kernel_regularizer,
                         recurrent_regularizer, bias_regularizer, activity_regularizer,
                         kernel_constraint, recurrent_constraint, bias_constraint, dropout,
                         recurrent_dropout, seed, return_sequences, return_state, go_backwards,
                         stateful, unroll, zero_output_for_mask, **kwargs)

    def step(self, x_t, states, in_masks, rec_masks):
        (xk,) = self.project(x_t, self.kernel, in_masks, 1, self.bias)
        (hr,) = self.project(states[0], self.recurrent_kernel, rec_masks, 1)
        h = activations.get(self.activation)(xk + hr)
        return h, [h]


class LSTM(RNNBase):
    """Keras's LSTM: gates i, f, c, o in that order along the kernels' columns;
    c_t = f * c_{t-1} + i * activation(z_c), h_t = o * activation(c_t), where i, f, o are
    recurrent_activation of their blocks of x_t @ kernel + h_{t-1} @ recurrent_kernel + bias.
    unit_forget_bias starts the forget gate's bias at 1. return_state gives [output, h, c]."""

    gates = 4
    state_count = 2

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
                 dropout=0.0, recurrent_dropout=0.0, seed=None, return_sequences=False,
                 return_state=False, go_backwards=False, stateful=False, unroll=False,
                 zero_output_for_mask=False, use_cudnn="auto", **kwargs):
        super().__init__(units, activation, recurrent_activation, use_bias, kernel_initializer,
                         recurrent_initializer, bias_initializer, kernel_regularizer,
                         recurrent_regularizer, bias_regularizer, activity_regularizer,
                         kernel_constraint, recurrent_constraint, bias_constraint, dropout,
                         recurrent_dropout, seed, return_sequences, return_state, go_backwards,
                         stateful, unroll, zero_output_for_mask, **kwargs)
        _check_use_cudnn(use_cudnn, self)
        self.unit_forget_bias = bool(unit_forget_bias)

    def get_config(self):
        config = super().get_config()
        config["unit_forget_bias"] = self.unit_forget_bias
        return config

    def bias_initial(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        init, u = initializers.get(self.bias_initializer), self.units

        def forget_gate_ones(shape, dtype="float32"):  # Keras: init(u), ones(u), init(2u)
            return np.concatenate([init((u,), dtype), np.ones((u,), dtype), init((2 * u,), dtype)])

        return forget_gate_ones

    def step(self, x_t, states, in_masks, rec_masks):
        h, c = states
        act, rec_act = activations.get(self.activation), activations.get(self.recurrent_activation)
        z = [a + b for a, b in zip(self.project(x_t, self.kernel, in_masks, 4, self.bias),
                                   self.project(h, self.recurrent_kernel, rec_masks, 4))]
        i, f, o = rec_act(z[0]), rec_act(z[1]), rec_act(z[3])
        c = f * c + i * act(z[2])
        h = o * act(c)
        return h, [h, c]


class GRU(RNNBase):
    """Keras's GRU: gates z (update), r (reset), h (candidate) in that order;
    h_t = z * h_{t-1} + (1 - z) * hh. With reset_after=True (Keras 3's default) the bias is
    (2, 3 * units), input and recurrent biases, and hh = activation(x_h + r * (h_{t-1} @ R_h +
    b_rh)); with reset_after=False the bias is (3 * units,) and hh = activation(x_h +
    (r * h_{t-1}) @ R_h)."""

    gates = 3

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, unroll=False, reset_after=True,
                 use_cudnn="auto", zero_output_for_mask=False, **kwargs):
        super().__init__(units, activation, recurrent_activation, use_bias, kernel_initializer,
                         recurrent_initializer, bias_initializer, kernel_regularizer,
                         recurrent_regularizer, bias_regularizer, activity_regularizer,
                         kernel_constraint, recurrent_constraint, bias_constraint, dropout,
                         recurrent_dropout, seed, return_sequences, return_state, go_backwards,
                         stateful, unroll, zero_output_for_mask, **kwargs)
        _check_use_cudnn(use_cudnn, self)
        self.reset_after = bool(reset_after)

    def get_config(self):
        config = super().get_config()
        config["reset_after"] = self.reset_after
        return config

    def bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def step(self, x_t, states, in_masks, rec_masks):
        (h,) = states
        act, rec_act = activations.get(self.activation), activations.get(self.recurrent_activation)
        input_bias = recurrent_bias = None
        if self.use_bias:
            input_bias = self.bias[0] if self.reset_after else self.bias
            recurrent_bias = self.bias[1] if self.reset_after else None
        x_z, x_r, x_h = self.project(x_t, self.kernel, in_masks, 3, input_bias)
        recurrent = self.project(h, self.recurrent_kernel, rec_masks, 3 if self.reset_after else 2,
                                 recurrent_bias)
        z = rec_act(x_z + recurrent[0])
        r = rec_act(x_r + recurrent[1])
        if self.reset_after:
            hh = act(x_h + r * recurrent[2])
        else:
            h_h = h if rec_masks is None else h * rec_masks[2]  # per gate: masks stacked
            hh = act(x_h + (r * h_h) @ self.recurrent_kernel[:, 2 * self.units:])
        h = z * h + (1.0 - z) * hh
        return h, [h]
