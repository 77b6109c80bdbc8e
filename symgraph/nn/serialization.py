"""Objects as JSON-ready configs and back (Keras 3's serialize_keras_object and
deserialize_keras_object, without importing modules a file names).

An object with `get_config` (a layer, initializer, regularizer, constraint, optimizer, learning
rate schedule, loss, a model) becomes `{"module", "class_name", "config", "registered_name"}`;
a function (an activation, a metric) becomes `{"class_name": "function", "config": its name,
...}`; strings, numbers, None, lists and dicts stay as they are. Reading one back looks the
name up, in order, in the `custom_objects` of the load in progress, among classes and functions
registered with `register_serializable`, and among symgraph's own built-ins (only for an entry
whose module is symgraph's); an unknown name raises a SymgraphError that says to pass
custom_objects.
"""

from __future__ import annotations

import contextlib
import inspect

import numpy as np

from symgraph.errors import SymgraphError

_REGISTERED: dict[str, object] = {}  # "package>name" -> class or function
_NAMES: dict[object, str] = {}       # class or function -> "package>name"
_SCOPES: list[dict] = []             # the custom_objects of the loads in progress


def register_serializable(package: str = "Custom", name: str | None = None):
    """Keras's `register_keras_serializable`: a decorator that saves a custom layer, activation,
    loss, metric... class or function as "package>name" (name defaults to its own), so that
    load_model finds it without custom_objects. Registering the name again replaces it."""
    if not isinstance(package, str) or ">" in package or not package:
        raise SymgraphError(f"register_serializable: package must be a non-empty string without "
                            f"'>', got {package!r}")

    def register(obj):
        if inspect.isclass(obj) and not hasattr(obj, "get_config"):
            raise SymgraphError(f"register_serializable: class {obj.__name__} has no get_config()"
                                " method, so it cannot be saved")
        if not callable(obj):
            raise SymgraphError(f"register_serializable: {obj!r} is neither a class nor a "
                                "function")
        registered = f"{package}>{name or obj.__name__}"
        _REGISTERED[registered] = obj
        _NAMES[obj] = registered
        return obj

    return register


def registered_name(obj) -> str | None:
    """The "package>name" `obj` was registered under, or None."""
    try:
        return _NAMES.get(obj)
    except TypeError:  # unhashable
        return None


@contextlib.contextmanager
def custom_object_scope(custom_objects: dict | None):
    """Look names up in `custom_objects` ({name: class or function}) while the block runs."""
    if custom_objects is not None and not isinstance(custom_objects, dict):
        raise SymgraphError(f"custom_objects must be a dict {{name: class or function}}, got "
                            f"{type(custom_objects).__name__} {custom_objects!r}")
    _SCOPES.append(dict(custom_objects or {}))
    try:
        yield
    finally:
        _SCOPES.pop()


def _builtin_classes() -> dict:
    """{class name: class} of every object symgraph saves: the public subclasses, defined in
    symgraph.nn, of its layer, initializer, regularizer, constraint, optimizer, loss, metric and
    schedule bases (imported here: these modules import this one; importing symgraph.nn imports
    them all)."""
    import symgraph.nn  # noqa: F401  (every layer module, so that every subclass exists)
    from symgraph.nn import (
        constraints,
        functional,
        initializers,
        layers,
        losses,
        metrics,
        models,
        optimizers,
        regularizers,
        schedules,
        subclassed,
    )

    found = {}
    bases = [layers.Layer, initializers.Initializer, regularizers.Regularizer,
             constraints.Constraint, optimizers.Optimizer, losses.Loss, metrics.Metric,
             schedules.LearningRateSchedule]
    while bases:
        for cls in bases.pop().__subclasses__():
            bases.append(cls)
            if cls.__module__.startswith("symgraph.nn.") and not cls.__name__.startswith("_"):
                found[cls.__name__] = cls
    # Keras 3 names a functional model "Functional"; older symgraph files name it "Model"
    found.update(Sequential=models.Sequential, Model=subclassed.Model,
                 Functional=functional.Functional)
    return found


def _builtin_functions() -> dict:
    """{name: function} of the activations, metrics and loss functions symgraph knows by
    name (`compile(loss=sg.binary_crossentropy)` takes a function as a loss)."""
    import symgraph as sg
    from symgraph.nn import activations, metrics

    loss_functions = {"binary_crossentropy": sg.binary_crossentropy,
                      "categorical_crossentropy": sg.categorical_crossentropy,
                      "sparse_categorical_crossentropy": sg.sparse_categorical_crossentropy}
    return {**metrics._BY_NAME, **activations._BY_NAME, **loss_functions}


def _is_symgraphs(module) -> bool:
    """Whether `module` (a name) is symgraph or one of its modules."""
    return module == "symgraph" or str(module or "").startswith("symgraph.")


def _function_name(fn) -> str:
    """A built-in function's symgraph name, else its own."""
    for name, known in _builtin_functions().items():
        if known is fn:
            return name
    return getattr(fn, "__name__", type(fn).__name__)


def _owner(cls, attribute: str):
    """The class of `cls`'s MRO that defines `attribute` (None if none does)."""
    return next((c for c in cls.__mro__ if attribute in vars(c)), None)


def _check_config(obj, config: dict) -> None:
    """Refuse a config that cannot rebuild `obj` as it is: an __init__ argument it does not
    return (a required one; or any one when get_config is inherited from a class above the
    one defining __init__, a custom class that did not override it: it would load with the
    argument's default), or a key __init__ does not take (for a class that `cls(**config)`
    rebuilds)."""
    cls = type(obj)
    try:
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        return
    named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    init_owner, config_owner = _owner(cls, "__init__"), _owner(cls, "get_config")
    inherited = init_owner is not config_owner and issubclass(init_owner, config_owner)
    missing = [p.name for p in named if p.name not in config
               and (inherited or p.default is p.empty)]
    where = (f"the get_config() it inherits from {config_owner.__name__}" if inherited
             else "its get_config()")
    if missing:
        raise SymgraphError(f"cannot save {cls.__name__} {getattr(obj, 'name', '')!r}: its "
                            f"__init__ takes {', '.join(missing)}, which {where} does not "
                            "return; override get_config() to return every __init__ "
                            "argument")
    if _owner(cls, "from_config") in (Serializable, None) and not any(
            p.kind is p.VAR_KEYWORD for p in params):
        extra = sorted(set(config) - {p.name for p in named})
        if extra:
            raise SymgraphError(f"cannot save {cls.__name__} {getattr(obj, 'name', '')!r}: "
                                f"{where} returns {', '.join(extra)}, which its __init__ does "
                                "not take, so it could not be rebuilt; override get_config() "
                                "to return exactly its __init__ arguments")


def serialize(obj):
    """`obj` as a JSON-ready value (see the module docstring)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (list, tuple)):
        return [serialize(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): serialize(v) for k, v in obj.items()}
    if hasattr(obj, "get_config") and not inspect.isclass(obj):
        config = obj.get_config()
        _check_config(obj, config)
        return {"module": type(obj).__module__, "class_name": type(obj).__name__,
                "config": serialize(config), "registered_name": registered_name(type(obj))}
    if callable(obj) and not inspect.isclass(obj):
        name = _function_name(obj)
        if name == "<lambda>":
            raise SymgraphError(f"cannot save the lambda {obj!r}: define it with def (and "
                                "register it with @symgraph.nn.register_serializable())")
        module = getattr(obj, "__module__", None)
        if (_is_symgraphs(module) and registered_name(obj) is None
                and name not in _builtin_functions()):
            raise SymgraphError(f"cannot save the function {module}.{name}: a saved model names "
                                "symgraph's activations, metrics and loss functions only "
                                f"({', '.join(sorted(_builtin_functions()))}); wrap it in a "
                                "function of your own decorated with "
                                "@symgraph.nn.register_serializable()")
        return {"module": getattr(obj, "__module__", None), "class_name": "function",
                "config": name, "registered_name": registered_name(obj)}
    raise SymgraphError(f"cannot save {type(obj).__name__} {obj!r}: it is not a number, string, "
                        "list, dict, function or object with get_config()")


def is_object(value) -> bool:
    """A serialized object or function (a dict with class_name and config)."""
    return isinstance(value, dict) and "class_name" in value and "config" in value


def _find(entry: dict):
    """The class or function a serialized entry names (see the module docstring)."""
    class_name, registered = entry["class_name"], entry.get("registered_name")
    is_function = class_name == "function"
    name = entry["config"] if is_function else class_name
    if not isinstance(name, str) or not (registered is None or isinstance(registered, str)):
        raise SymgraphError(f"a damaged entry in the saved config: {str(entry)[:120]}")
    for scope in reversed(_SCOPES):
        for key in (registered, name):
            if key is not None and key in scope:
                return scope[key]
    if registered is not None and registered in _REGISTERED:
        return _REGISTERED[registered]
    if registered is None and _is_symgraphs(entry.get("module")):
        table = _builtin_functions() if is_function else _builtin_classes()
        if name in table:
            return table[name]
    shown = registered or name
    what = "function" if is_function else "class"
    raise SymgraphError(f"the saved config names the {what} {shown!r}, which is not a symgraph "
                        f"built-in nor registered: pass it to the loader, e.g. "
                        f"custom_objects={{{shown!r}: {name.split('>')[-1]}}}, or decorate it "
                        "with @symgraph.nn.register_serializable()")


def deserialize(value):
    """The objects a serialized value holds, rebuilt: an object entry becomes its class's
    `from_config(config)`, a function entry the function; lists and dicts are walked."""
    if isinstance(value, list):
        return [deserialize(v) for v in value]
    if not isinstance(value, dict):
        return value
    if not is_object(value):
        return {k: deserialize(v) for k, v in value.items()}
    found = _find(value)
    if value["class_name"] == "function":
        return found
    config = value["config"]
    if not isinstance(config, dict):
        raise SymgraphError(f"a damaged entry in the saved config: the config of "
                            f"{value['class_name']} is {type(config).__name__}, not a dict")
    if hasattr(found, "from_config"):
        return found.from_config(config)
    return found(**deserialize(config))


class Serializable:
    """get_config / from_config for a plain object rebuilt by `cls(**config)` (initializers,
    regularizers, constraints, optimizers, losses)."""

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**deserialize(config))
