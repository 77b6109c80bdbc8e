"""Whole models: `model.save("m.keras")` and `load_model`, `to_json` and `model_from_json`.

A `.keras` file is a zip (Keras 3's layout) of
  metadata.json      {"symgraph_version", "format_version", "date_saved"}
  config.json        the model's entry: {"module", "class_name", "config" (get_config()),
                     "registered_name", "compile_config" (None when not compiled)}
  model.weights.npz  the weights (the keys save_weights writes) and, once the model has
                     trained, the optimizer's and model's state (training_state.py)
written atomically and read back with json and np.load(allow_pickle=False): no pickle. A
damaged or foreign file, a newer format, an unknown custom object or a mismatched array raise a
SymgraphError before the model is returned, so nothing is ever half loaded.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import zipfile

import symgraph
from symgraph.errors import SymgraphError
from symgraph.files import atomic_write
from symgraph.nn.backend import choose_backend
from symgraph.nn.serialization import custom_object_scope, deserialize, serialize
from symgraph.nn.training_state import is_state_key, restore_training_state, state_arrays
from symgraph.nn.weights_io import named_weights, read_arrays, write_arrays

FORMAT_VERSION = 1  # raise it when a file this code writes could not be read by older code
METADATA, CONFIG, WEIGHTS = "metadata.json", "config.json", "model.weights.npz"


def model_to_dict(model) -> dict:
    """The model's entry (serialization.serialize) with its compile config added."""
    entry = serialize(model)
    build_config = getattr(model, "get_build_config", lambda: None)()
    if build_config is not None:  # a subclassed model: the shapes that build it (Keras's key)
        entry["build_config"] = build_config
    entry["compile_config"] = model.get_compile_config()
    return entry


def model_from_dict(entry: dict, compile: bool = True, backend: str | None = None):
    """The model an entry describes (new weights), compiled as recorded when `compile`."""
    from symgraph.nn.models import BaseModel

    try:
        model = deserialize({k: v for k, v in entry.items()
                             if k not in ("compile_config", "build_config")})
        if not isinstance(model, BaseModel):
            raise SymgraphError(f"the config describes a {type(model).__name__} object, not a "
                                "model (Sequential or Model)")
        if entry.get("build_config") is not None and not model.built:
            model.build_from_config(entry["build_config"])
        compile_config = entry.get("compile_config")
        if compile and compile_config is not None:
            if backend is not None:
                compile_config = {**compile_config, "backend": backend}
            model.compile_from_config(compile_config)
        elif backend is not None:  # uncompiled, it still predicts: on the backend asked for
            model.backend, model._functions = choose_backend(backend), {}
            model._auto_backend = backend == "auto"
    except SymgraphError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise SymgraphError(f"a damaged model config ({type(exc).__name__}: {exc})") from None
    return model


def model_from_json(json_string: str, custom_objects: dict | None = None):
    """The model `model.to_json()` describes, with new weights (Keras: compiled when the JSON
    holds a compile config); custom classes and functions come from `custom_objects` or the
    registry."""
    try:
        entry = json.loads(json_string)
    except (TypeError, ValueError) as exc:
        raise SymgraphError(f"model_from_json: not a model's JSON ({exc})") from None
    if not isinstance(entry, dict):
        raise SymgraphError(f"model_from_json: not a model's JSON (a {type(entry).__name__})")
    with custom_object_scope(custom_objects):
        return model_from_dict(entry)


def _trained(model) -> bool:
    """Whether the optimizer has state to save: it built a training step."""
    return model.optimizer is not None and model.compiled and model.optimizer.built


def save_model(model, filepath) -> None:
    """Write `model` to the `.keras` file `filepath` atomically (see the module docstring)."""
    if not isinstance(filepath, (str, os.PathLike)) or not str(filepath).endswith(".keras"):
        raise SymgraphError(f"model files end in .keras (use save_weights for a .npz of the "
                            f"weights alone); got filepath={filepath!r}")
    if not model.built:
        raise SymgraphError(f"model {model.name!r} is not built yet: it has no weights to save "
                            "(give the first layer an input shape, or fit / build it first)")
    # everything is made before the file is opened: an object that cannot be saved raises here
    config = json.dumps(model_to_dict(model))
    metadata = json.dumps({"symgraph_version": symgraph.__version__,
                           "format_version": FORMAT_VERSION,
                           "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")})
    weights = io.BytesIO()
    write_arrays(weights, state_arrays(model) if _trained(model) else named_weights(model))

    def write(f):
        with zipfile.ZipFile(f, "w") as archive:
            archive.writestr(METADATA, metadata, zipfile.ZIP_DEFLATED)
            archive.writestr(CONFIG, config, zipfile.ZIP_DEFLATED)
            archive.writestr(WEIGHTS, weights.getvalue(), zipfile.ZIP_STORED)

    atomic_write(str(filepath), write)


def _read(filepath: str) -> tuple[dict, dict, list]:
    """(metadata, config entry, weight items) of a .keras file, every part parsed."""
    try:
        with zipfile.ZipFile(filepath) as archive:
            names = set(archive.namelist())
            if CONFIG not in names or METADATA not in names:
                raise SymgraphError(f"{filepath} is not a symgraph model file: it holds no "
                                    f"{CONFIG if CONFIG not in names else METADATA} (a weights "
                                    ".npz is read by model.load_weights; whole models are "
                                    "written by model.save)")
            if WEIGHTS not in names:
                raise SymgraphError(f"{filepath} holds no {WEIGHTS}; nothing was loaded")
            metadata = json.loads(archive.read(METADATA))
            entry = json.loads(archive.read(CONFIG))
            weights = archive.read(WEIGHTS)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        if isinstance(exc, SymgraphError):
            raise
        # a truncated or damaged zip, a bad CRC, a file that is no zip at all, broken JSON
        raise SymgraphError(f"cannot read model file {filepath}: {type(exc).__name__}: {exc}; "
                            "nothing was loaded") from None
    if not isinstance(metadata, dict) or not isinstance(entry, dict):
        raise SymgraphError(f"{filepath}: damaged {METADATA} or {CONFIG} (not JSON objects); "
                            "nothing was loaded")
    items = read_arrays(io.BytesIO(weights), f"{WEIGHTS} in {filepath}")
    return metadata, entry, items


def _check_version(metadata: dict, filepath: str) -> None:
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise SymgraphError(
            f"{filepath} was written by symgraph {metadata.get('symgraph_version', '?')} in "
            f"saving format {version!r}; this symgraph ({symgraph.__version__}) reads format "
            f"{FORMAT_VERSION}: load it with the symgraph that wrote it and save the weights, or "
            "upgrade symgraph; nothing was loaded")


def load_model(filepath, custom_objects: dict | None = None, compile: bool = True,
               backend: str | None = None):
    """The model `model.save` wrote to `filepath`, with its weights; compiled as it was (and
    with the optimizer's state, so fit continues where it stopped) unless `compile=False`.
    Custom classes and functions come from `custom_objects` ({name: object}) or the registry;
    `backend` overrides the one the model was compiled for (uncompiled, the one it predicts
    on)."""
    if not isinstance(filepath, (str, os.PathLike)):
        raise SymgraphError(f"load_model: filepath must be a str or path, got "
                            f"{type(filepath).__name__} {filepath!r}")
    filepath = str(filepath)
    if not os.path.exists(filepath):
        raise SymgraphError(f"model file {filepath} does not exist")
    metadata, entry, items = _read(filepath)
    _check_version(metadata, filepath)
    with custom_object_scope(custom_objects):
        model = model_from_dict(entry, compile, backend)
    where = f"{filepath} ({WEIGHTS})"
    if model.compiled and any(is_state_key(k) for k, _ in items):
        restore_training_state(model, items, where)
    else:
        model._assign_weights([(k, a) for k, a in items if not is_state_key(k)], where)
    return model
