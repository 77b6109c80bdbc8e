"""Symbolic tensors for the functional API: what `Input()` returns and what calling a layer on
symbolic tensors returns (Keras's KerasTensor).

A symbolic tensor holds no value. It records its shape (batch dim None), its dtype, and which
call of which layer made it from which other symbolic tensors; `functional.Model` walks these
records back from the outputs to find the graph it runs.
"""

from __future__ import annotations

import itertools

from symgraph.errors import SymgraphError, user_frame

_created = itertools.count()


def shape_text(shape) -> str:
    """(None, 3, 4) for a shape without its batch dim (3, 4)."""
    return "(" + ", ".join(["None"] + [str(d) for d in shape]) + ")"


class SymbolicTensor:
    """The output of `Input()` or of one call of a layer on symbolic tensors; a layer with
    several outputs (an RNN with return_state=True) makes one per output, its `siblings`."""

    def __init__(self, shape: tuple, dtype: str, layer, call_index: int, inputs: tuple = (),
                 output_index: int = 0):
        self.shape = (None,) + tuple(shape)
        self.dtype = dtype
        self.layer = layer              # the layer whose call made it (an InputLayer: Input())
        self.call_index = call_index    # which call of that layer (Keras's node index)
        self.inputs = tuple(inputs)     # the symbolic tensors that call consumed
        self.output_index = output_index  # which of that call's outputs (Keras's tensor index)
        self.siblings = (self,)         # every output of that call, in order
        self.order = next(_created)     # creation order: a topological order of every graph
        self.trace = user_frame()       # the user's line that made it, for error messages

    @property
    def name(self) -> str:
        """Keras's summary notation: the layer, its call (node) index, the output index."""
        return f"{self.layer.name}[{self.call_index}][{self.output_index}]"

    def __repr__(self) -> str:
        return (f"<SymbolicTensor {self.name} shape={shape_text(self.shape[1:])} "
                f"dtype={self.dtype} ({type(self.layer).__name__}, made at {self.trace})>")


def _shown(value) -> str:
    """A value for an error message: an array by its shape, anything else by a short repr."""
    if hasattr(value, "shape") and not isinstance(value, SymbolicTensor):
        return f"{type(value).__name__} of shape {tuple(value.shape)}"
    text = " ".join(repr(value).split())
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def call_layer(layer, inputs):
    """Record `layer` called on symbolic tensors, building it from their shapes on first use;
    the output's symbolic tensor, or a list of them for a layer with several outputs (its
    `output_shape` a list). A call on shapes the layer was not built for raises, and a failing
    call records nothing."""
    where = user_frame()
    kind = f"{type(layer).__name__} {layer.name!r}"
    if layer.takes_list:
        if not isinstance(inputs, (list, tuple)) or not inputs:
            raise SymgraphError(f"{kind} is called on a list of symbolic tensors, e.g. "
                                f"{type(layer).__name__}()([a, b]); got {_shown(inputs)} "
                                f"(at {where})")
        handles = tuple(inputs)
    else:
        handles = (inputs,)
    for h in handles:
        if not isinstance(h, SymbolicTensor):
            raise SymgraphError(f"{kind} was called on {_shown(h)}: call layers on what Input() "
                                "returns or on another layer's output (functional API), or put "
                                f"them in a Sequential (at {where})")
    shapes = tuple(h.shape[1:] for h in handles)
    shape = shapes if layer.takes_list else shapes[0]
    # a merge layer's input_shape= / input_dim= argument declares no list of shapes: Keras
    # ignores it outside a Sequential, and so does the first call here
    declared = layer.input_shape if layer.built or not layer.takes_list else None
    if declared is not None and tuple(declared) != shape:
        what = "was built for" if layer.built else "declares"
        shown = (", ".join(map(shape_text, layer.input_shape)) if layer.takes_list
                 else shape_text(layer.input_shape))
        given = ", ".join(map(shape_text, shapes))
        raise SymgraphError(f"{kind} {what} inputs {shown} but is called on {given} (at {where});"
                            " a layer called again (a shared layer) needs inputs of the shape it "
                            "was built for")
    if not layer.built:
        layer.build_for(shape)  # may raise: nothing is recorded yet
    shapes = layer.output_shape if isinstance(layer.output_shape, list) else [layer.output_shape]
    outs = [SymbolicTensor(s, layer.dtype, layer, layer.calls, handles, i)
            for i, s in enumerate(shapes)]
    for out in outs:
        out.siblings = tuple(outs)
    layer.calls += 1
    return outs if isinstance(layer.output_shape, list) else outs[0]
