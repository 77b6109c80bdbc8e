"""Sequential, and the model API it shares with the functional Model (functional.py):
weights, weights files, training state, summary. Training lives in training.py."""

from __future__ import annotations

import json

import numpy as np

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.graph import Node
from symgraph.nn.calling import CallContext, active, flat, run_call
from symgraph.nn.layer_base import penalties_of, penalty_values
from symgraph.nn.layers import InputLayer, Layer, unique_name
from symgraph.nn.serialization import custom_object_scope, deserialize, serialize
from symgraph.nn.symbolic import SymbolicTensor
from symgraph.nn.training import Trainer
from symgraph.nn.training_state import is_state_key, load_training_state, save_training_state
from symgraph.nn.weights_io import load_arrays, named_weights, save_arrays
from symgraph.runtime import deferred_interrupt


class BaseModel(Trainer):
    """What every model shares: `layers` (each once, in weight order), the step counter that
    drives dropout masks, weights, weights files, training state and summary. A subclass
    defines `run_layers`, which says how the layers connect."""

    def __init__(self, name: str):
        self.name = name
        self.layers: list[Layer] = []
        self.input_shape = None
        self.built = False
        self.compiled = False
        self.stop_training = False
        # drives dropout masks: one new mask per training step, reproducible from the seeds
        self.step_counter = sg.variable(np.int64(0), name=f"{self.name}/step", trainable=False)

    def run_layers(self, x, call):
        """The output node for input node `x` (for a multi-input model, a list of nodes, one
        per Input), where `call(layer, input)` runs one layer."""
        raise NotImplementedError

    @property
    def multi_inputs(self) -> list:
        """The Inputs of a model fed several arrays, in the order x lists them; empty for a
        model fed one array x (a Sequential, a functional Model with one input)."""
        return []

    @property
    def multi_outputs(self) -> list:
        """The outputs of a model with several (functional.py), in the order y lists them;
        empty for a model with one output."""
        return []

    outputs_as_dict = False  # a functional Model whose outputs were given as a dict
    is_model = True  # a layer or model refuses one as an attribute (calling.py)

    @property
    def output_layer(self) -> Layer:
        """The layer that computes the model's output (error messages name it)."""
        return self.layers[-1]

    def __call__(self, x, training: bool = False):
        """On input node(s): the model's output node (a symbolic forward pass). On arrays (a
        batch, or a list or dict of them as predict takes): the outputs computed now, as
        Keras's `model(x)`: in inference mode as `predict_on_batch`, unless training=True
        (dropout on, batch statistics, whose updates of the moving statistics are applied)."""
        if isinstance(x, SymbolicTensor):
            raise SymgraphError(f"model {self.name!r} was called on a symbolic tensor: using a "
                                "model as a layer of a functional model is not supported (call "
                                "its layers instead)")
        if not all(isinstance(leaf, Node) for leaf in flat(x)):
            return self.predict_on_batch(x) if not training else self._train_mode_call(x)
        if not self.built:
            self.build(tuple(x.shape[1:]))
        ctx = CallContext(training=training, step=self.step_counter)
        with active(ctx):
            return self.run_layers(x, lambda layer, h: run_call(layer, h, ctx))

    # --- weights --------------------------------------------------------------------------

    def layer_weights(self) -> list:
        """[(layer, weight name, variable)]: every weight once, in the layers' order; a weight
        two layers hold (a layer shared by two attributes: weight tying) is listed with the
        first (Keras de-duplicates the weights by variable)."""
        out, seen = [], set()
        for layer in self.layers:
            for wname, var in layer._weights:
                if var.id not in seen:
                    seen.add(var.id)
                    out.append((layer, wname, var))
        return out

    @property
    def weights(self) -> list:
        return [var for _, _, var in self.layer_weights()]

    @property
    def trainable_weights(self) -> list:
        return list({v.id: v for layer in self.layers for v in layer.trainable_weights}.values())

    @property
    def non_trainable_weights(self) -> list:
        trainable = {v.id for v in self.trainable_weights}
        return [v for v in self.weights if v.id not in trainable]

    def weight_rules(self) -> dict:
        """{variable id: (regularizer, constraint)} of every layer's weights (Layer's)."""
        return {k: rule for layer in self.layers for k, rule in layer.weight_rules().items()}

    def penalties(self) -> list:
        """The regularization terms of the trainable weights, each weight once."""
        return penalties_of(self.trainable_weights, self.weight_rules())

    @property
    def losses(self) -> list:
        """Keras's `model.losses`: the add_loss terms of the model's last traced call (its own,
        then its layers'), then the penalties of its trainable weights (arrays, or graph
        nodes inside a call)."""
        layers, terms = [], list(self.__dict__.get("_losses", []))
        for layer in self.layers:
            for each in [layer] + layer.flatten_layers():
                if not any(each is seen for seen in layers):
                    layers.append(each)
                    terms += each._losses
        return terms + penalty_values(self.penalties())

    def add_weight(self, *args, **kwargs):
        """Keras's Model.add_weight: refused, a model's weights are its layers'."""
        raise SymgraphError(f"model {self.name!r}: add_weight on a model is not supported (its "
                            "weights are its layers'); create the weight in a custom Layer's "
                            "build() and assign that layer as an attribute of the model")

    def get_weights(self) -> list:
        return [v.value for v in self.weights]

    def set_weights(self, arrays) -> None:
        """Set every weight in order; all shapes are checked before anything changes."""
        arrays = list(arrays)
        named = self.layer_weights()
        if len(arrays) != len(named):
            raise SymgraphError(f"model {self.name!r} has {len(named)} weights, got "
                                f"{len(arrays)} arrays")
        checked = []
        for (layer, wname, var), a in zip(named, arrays):
            a = np.asarray(a)
            if tuple(a.shape) != tuple(var.shape):
                raise SymgraphError(f"layer {layer.name!r} weight {wname!r} has shape "
                                    f"{tuple(var.shape)}, got an array of shape {a.shape}")
            if not np.can_cast(a.dtype, var.dtype, casting="same_kind"):
                raise SymgraphError(f"layer {layer.name!r} weight {wname!r} is {var.dtype}, got "
                                    f"an array of dtype {a.dtype}; nothing was set")
            checked.append((var, a))
        with deferred_interrupt():  # a Ctrl-C meanwhile would leave some weights set
            for var, a in checked:  # every check passed: now assign (cannot fail any more)
                var.value = a

    def save_weights(self, filepath: str) -> None:
        """Write every weight to `filepath` (.npz) atomically (temp file, then rename)."""
        if not self.built:
            raise SymgraphError(f"model {self.name!r} is not built yet: it has no weights")
        save_arrays(filepath, named_weights(self))

    def load_weights(self, filepath: str, skip_mismatch: bool = False) -> None:
        """Read weights saved by `save_weights` (or a training state's), matched in order; a
        count or shape mismatch raises and changes nothing (`skip_mismatch=True` skips
        mismatched weights instead)."""
        items = [(k, a) for k, a in load_arrays(filepath) if not is_state_key(k)]
        self._assign_weights(items, filepath, skip_mismatch)

    def _assign_weights(self, items, filepath: str, skip_mismatch: bool = False) -> None:
        """Set the weights to saved `items` [(key, array)], all checked first."""
        plan = self._weights_plan(items, filepath, skip_mismatch)
        with deferred_interrupt():  # a Ctrl-C meanwhile would leave some weights loaded
            for var, array in plan:
                var.value = array  # every check passed: now assign (cannot fail any more)

    def _weights_plan(self, items, filepath: str, skip_mismatch: bool = False) -> list:
        """[(variable, array)] for saved weights `items`, every count, shape and dtype checked."""
        if not self.built:
            raise SymgraphError(f"model {self.name!r} is not built yet, so it has no weights to "
                                f"load {filepath} into: build it first (model.build((None, "
                                "features)), or call it on data); nothing was loaded")
        named = [(f"{layer.name}/{wname}", var) for layer, wname, var in self.layer_weights()]
        if len(items) != len(named) and not skip_mismatch:
            raise SymgraphError(f"{filepath} holds {len(items)} weights but model {self.name!r} "
                                f"has {len(named)}; nothing was loaded")
        plan = []
        for (key, array), (name, var) in zip(items, named):
            if tuple(array.shape) != tuple(var.shape):
                if skip_mismatch:
                    continue
                raise SymgraphError(f"{filepath}: weight {key!r} has shape {array.shape} but "
                                    f"{name!r} in the model has shape {tuple(var.shape)}; "
                                    "nothing was loaded")
            if not np.can_cast(array.dtype, var.dtype, casting="same_kind"):
                if skip_mismatch:
                    continue
                raise SymgraphError(f"{filepath}: weight {key!r} has dtype {array.dtype}, which "
                                    f"{name!r} ({var.dtype}) cannot hold; nothing was loaded")
            plan.append((var, array))
        return plan

    def save_training_state(self, filepath: str) -> None:
        """Write the weights and the optimizer's and model's state (.npz, atomically): what
        `load_training_state` needs to continue training exactly where it stopped."""
        save_training_state(self, filepath)

    def load_training_state(self, filepath: str) -> None:
        """Restore a `save_training_state` file into this model, compiled with the same kind
        of optimizer; any mismatch raises and changes nothing."""
        load_training_state(self, filepath)

    def count_params(self) -> int:
        return int(sum(int(np.prod(v.shape)) for v in self.weights))

    # --- configs and whole-model files (saving.py) ----------------------------------------

    def get_config(self) -> dict:
        """The layers and how they connect, JSON-ready, without weights (Keras's keys)."""
        raise NotImplementedError

    def get_compile_config(self) -> dict | None:
        """compile's arguments (optimizer with its settings now), JSON-ready; None before
        compile."""
        return serialize(self._compile_args) if self.compiled else None

    def compile_from_config(self, config: dict) -> None:
        """compile with the arguments `get_compile_config` gave."""
        self.compile(**deserialize(config))

    def to_json(self, **kwargs) -> str:
        """The model's config and compile config as JSON (`json.dumps` takes `kwargs`);
        `symgraph.nn.model_from_json` rebuilds the model from it, without weights."""
        from symgraph.nn.saving import model_to_dict

        return json.dumps(model_to_dict(self), **kwargs)

    def save(self, filepath: str) -> None:
        """The whole model in one `.keras` zip, written atomically: config, compile config,
        weights and, once trained, the optimizer's state (`symgraph.nn.load_model` reads it)."""
        from symgraph.nn.saving import save_model

        save_model(self, filepath)

    # --- summary --------------------------------------------------------------------------

    def summary(self, print_fn=None) -> None:
        """Keras's table: Layer (type) | Output Shape | Param #, then parameter totals."""
        from symgraph.nn.summary import format_summary

        text = format_summary(self, self._connections())
        (print_fn or print)(text)

    def _connections(self) -> list | None:
        """Per layer, what its calls take (summary's "Connected to"); None for a chain."""
        return None


def checked_input_shape(model, input_shape) -> tuple:
    """The input shape `build` was given, without the batch dim: given without it, or with it
    as None as Keras writes it (`build((None, 784))`)."""
    dims = list(input_shape) if isinstance(input_shape, (tuple, list)) else None
    if dims and dims[0] is None:
        dims = dims[1:]
    if dims is None or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                               and d > 0 for d in dims):
        raise SymgraphError(f"model {model.name!r}: build needs the input shape as positive "
                            f"integers, without the batch dim or with it as None (e.g. "
                            f"(784,) or (None, 784)); got {input_shape!r}")
    return tuple(int(d) for d in dims)


class Sequential(BaseModel):
    """`Sequential([Dense(...), ...])` or `model.add(layer)`; the first layer (or an Input)
    declares the input shape, else the first fit/predict builds the model from the data."""

    def __init__(self, layers=None, name: str | None = None):
        super().__init__(name or unique_name("sequential"))
        for layer in layers or []:
            self.add(layer)

    def add(self, layer: Layer) -> None:
        if isinstance(layer, SymbolicTensor) and isinstance(layer.layer, InputLayer):
            layer = layer.layer  # Sequential([Input(shape), ...]), as in Keras
        if not isinstance(layer, Layer):
            raise SymgraphError(f"Sequential.add needs a layer, got {type(layer).__name__}"
                                + (" (a symbolic tensor: build a functional Model(inputs, "
                                   "outputs) from it)" if isinstance(layer, SymbolicTensor)
                                   else ""))
        if layer.takes_list:
            raise SymgraphError(f"{type(layer).__name__} {layer.name!r} merges a list of inputs: "
                                "it belongs in a functional Model, not a Sequential")
        if isinstance(layer, InputLayer):
            if self.layers:
                raise SymgraphError("an Input can only be the first entry of a Sequential model")
            self.input_shape = layer.input_shape
            return
        if any(existing.name == layer.name for existing in self.layers):
            raise SymgraphError(f"a layer named {layer.name!r} is already in the model; "
                                "layer names must be unique")
        input_shape = self.input_shape
        if not self.layers and self.input_shape is None and layer.input_shape is not None:
            self.input_shape = layer.input_shape
        self.layers.append(layer)
        if self.input_shape is not None:
            try:
                self.build(self.input_shape)
            except Exception:
                self.layers.pop()  # a layer the model cannot take leaves it as it was
                self.input_shape = input_shape
                raise
        else:
            self.built = False
        self._functions = {}

    def pop(self) -> Layer:
        layer = self.layers.pop()
        self._functions = {}
        self.built = False
        if self.layers and self.input_shape is not None:
            self.build(self.input_shape)
        return layer

    def build(self, input_shape) -> None:
        """Create every layer's weights for inputs of `input_shape`: the batch dim excluded,
        or given as None as Keras writes it (`build((None, 784))`)."""
        if not self.layers:
            raise SymgraphError(f"model {self.name!r} has no layers")
        shape = input_shape = checked_input_shape(self, input_shape)
        for layer in self.layers:
            if not layer.built:
                layer.build_for(shape)
            elif tuple(layer.input_shape) != shape:
                raise SymgraphError(f"layer {layer.name!r} was built for inputs {layer.input_shape}"
                                    f" but receives {shape}")
            shape = layer.output_shape
            if isinstance(shape, list):
                raise SymgraphError(f"{type(layer).__name__} {layer.name!r} has "
                                    f"{len(shape)} outputs (return_state=True, or "
                                    "merge_mode=None): all layers in a Sequential model should "
                                    "have a single output tensor; use the functional API")
        self.input_shape = input_shape  # only now: a layer refusing the shape changes nothing
        self.output_shape = shape
        self.built = True

    def run_layers(self, x, call):
        h = x
        for layer in self.layers:
            h = call(layer, h)
        return h

    def get_config(self) -> dict:
        """Keras 3's Sequential config: the name and the layers, an InputLayer first when the
        input shape is known."""
        layers = [serialize(layer) for layer in self.layers]
        if self.input_shape is not None:
            layers.insert(0, serialize(InputLayer(shape=self.input_shape, name="input_layer")))
        return {"name": self.name, "layers": layers}

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None) -> Sequential:
        """The model `get_config` describes (new weights); names not built in are looked up in
        `custom_objects` and the registry."""
        with custom_object_scope(custom_objects):
            return cls([deserialize(entry) for entry in config["layers"]], name=config["name"])

    def __repr__(self) -> str:
        return f"<Sequential {self.name!r}: {len(self.layers)} layers>"
