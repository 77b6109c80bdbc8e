"""A functional model's config, in Keras 3's layout (keras/src/models/functional.py), and the
model rebuilt from one.

    {"name": "functional",
     "layers": [{"module", "class_name", "config", "registered_name",   (the layer's entry)
                 "name": "dense",
                 "inbound_nodes": [{"args": [<tensor>], "kwargs": {}}, ...]},   (one per call)
                ...],
     "input_layers": [["input_a", 0, 0], ...],     (a dict by name for inputs given as a dict)
     "output_layers": [["dense_1", 0, 0], ...]}

A <tensor> is `{"class_name": "__keras_tensor__", "config": {"shape", "dtype",
"keras_history": [layer name, node index, tensor index]}}`: output `tensor index` (0 but for a
layer with several outputs) of that layer's call number `node index` among its calls in this
model. A merge layer's node has one argument, the list of its
input tensors. Layers are listed in `model.layers` order; a shared layer has several nodes.
"""

from __future__ import annotations

from symgraph.errors import SymgraphError
from symgraph.nn.layers import Input, InputLayer, Layer
from symgraph.nn.serialization import custom_object_scope, deserialize, serialize


def functional_config(model) -> dict:
    """The config of functional `model` (see the module docstring)."""
    history = {id(t): [t.layer.name, 0, 0] for t in model.inputs}
    nodes = {layer.name: [] for layer in model.layers}
    for h in model._calls:  # in call order, so a layer's nodes keep their order
        for s in h.siblings:  # a layer with several outputs: one tensor index each
            history[id(s)] = [h.layer.name, len(nodes[h.layer.name]), s.output_index]
        nodes[h.layer.name].append(h)

    def tensor(t) -> dict:
        return {"class_name": "__keras_tensor__",
                "config": {"shape": list(t.shape), "dtype": t.dtype,
                           "keras_history": history[id(t)]}}

    layers = []
    for layer in model.layers:
        entry = serialize(layer)
        entry["name"] = layer.name
        entry["inbound_nodes"] = [
            {"args": [[tensor(p) for p in h.inputs]] if layer.takes_list
             else [tensor(h.inputs[0])], "kwargs": {}} for h in nodes[layer.name]]
        layers.append(entry)

    def structure(tensors: list, keys: list | None):
        if keys is not None:  # as given: by name, in the dict's order
            by_name = {t.layer.name: history[id(t)] for t in tensors}
            return {key: by_name[key] for key in keys}
        found = [history[id(t)] for t in tensors]
        return found[0] if len(found) == 1 else found

    return {"name": model.name, "layers": layers,
            "input_layers": structure(model.inputs, model.input_keys),
            "output_layers": structure(model.outputs, model.output_keys)}


def _is_history(value) -> bool:
    """[layer name, node index, tensor index]."""
    return isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)


def _tensor_at(history, tensors: dict):
    """The rebuilt tensor a keras_history names, or None while its call is not made yet."""
    if not _is_history(history) or not isinstance(history[2], int):
        raise SymgraphError(f"a damaged functional config: {history!r} is not a [layer name, "
                            "node index, tensor index] reference")
    made = tensors.get((history[0], history[1]))
    outputs = made if isinstance(made, list) else [made]
    if made is not None and not 0 <= history[2] < len(outputs):
        raise SymgraphError(f"a damaged functional config: {history!r} names output "
                            f"{history[2]} of a call with {len(outputs)} outputs")
    return None if made is None else outputs[history[2]]


def _node_inputs(node: dict, tensors: dict):
    """The rebuilt tensors a node takes (a list for a merge layer), or None while one of them
    is not made yet."""
    (arg,) = node["args"]

    def one(entry):
        if not isinstance(entry, dict) or entry.get("class_name") != "__keras_tensor__":
            raise SymgraphError(f"a damaged functional config: a node argument is "
                                f"{str(entry)[:80]}, not a tensor")
        return _tensor_at(entry["config"]["keras_history"], tensors)

    found = [one(a) for a in arg] if isinstance(arg, list) else one(arg)
    missing = found is None or (isinstance(found, list) and any(t is None for t in found))
    return None if missing else found


def _structure(value, tensors: dict, what: str):
    """input_layers / output_layers as the model takes them: one tensor, a list or a dict."""
    def one(history):
        t = _tensor_at(history, tensors)
        if t is None:
            raise SymgraphError(f"a damaged functional config: the {what} {history!r} is not "
                                "made by any layer call in the config")
        return t

    if isinstance(value, dict):
        return {key: one(history) for key, history in value.items()}
    if _is_history(value):
        return one(value)
    if not isinstance(value, list):
        raise SymgraphError(f"a damaged functional config: {what} is {value!r}")
    return [one(history) for history in value]


def functional_from_config(cls, config: dict, custom_objects: dict | None = None):
    """The functional model `config` describes: its layers made anew and called as recorded,
    each call made once its inputs exist (a shared layer's calls may sit at several depths,
    so the config's order alone does not give a call order)."""
    with custom_object_scope(custom_objects):
        tensors, pending = {}, []
        for entry in config["layers"]:
            if entry["class_name"] == "InputLayer" and entry.get("registered_name") is None:
                c = entry["config"]
                t = Input(tuple(c["batch_shape"][1:]), name=c["name"],
                          dtype=c.get("dtype", "float32"))
                tensors[(t.layer.name, 0)] = t
                continue
            layer = deserialize(entry)
            if not isinstance(layer, Layer) or isinstance(layer, InputLayer):
                raise SymgraphError(f"a damaged functional config: the entry of "
                                    f"{entry.get('name')!r} makes {type(layer).__name__} "
                                    f"{layer!r}, not a layer")
            pending.append([layer, list(entry["inbound_nodes"]), 0])
        # the first layer (in config order) whose next call can be made, again and again:
        # this makes each layer's first call in the original order, so the weights keep it
        while any(nodes for _, nodes, _ in pending):
            for item in pending:
                layer, nodes, made = item
                args = _node_inputs(nodes[0], tensors) if nodes else None
                if args is not None:
                    tensors[(layer.name, made)] = layer(args)
                    nodes.pop(0)
                    item[2] += 1
                    break
            else:
                stuck = [layer.name for layer, nodes, _ in pending if nodes]
                raise SymgraphError(f"a damaged functional config: the calls of "
                                    f"{', '.join(stuck)} take tensors no layer call in the "
                                    "config makes")
        inputs = _structure(config["input_layers"], tensors, "input")
        outputs = _structure(config["output_layers"], tensors, "output")
        return cls(inputs, outputs, name=config["name"])
