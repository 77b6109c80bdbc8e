"""The whole training state in one .npz, so that training can stop and resume exactly.

Beside the weights (the keys `save_weights` writes, so `load_weights` reads such a file too),
the state holds, under `_state/`: the model's step counter (the dropout masks' step), the
optimizer's kind, learning rate, iteration count and slots (momenta, accumulators), and what
`BackupAndRestore` adds (the next epoch, the shuffling generator's state as JSON). Written
atomically, read without pickle, and restored only when every array fits: a mismatch raises
a SymgraphError and changes nothing.
"""

from __future__ import annotations

import numpy as np

from symgraph.errors import SymgraphError
from symgraph.nn.weights_io import load_arrays, save_arrays

STATE = "_state/"  # the prefix of every key that is not a weight


def _state_variables(model) -> dict:
    """{key without the prefix: variable} for the model's and its optimizer's state."""
    out = {"model/step": model.step_counter}
    opt = model.optimizer
    if opt is None:
        return out
    out["optimizer/learning_rate"] = opt._lr
    out["optimizer/iterations"] = opt.iterations
    for i, var in enumerate(model.weights):  # by position, as weights are matched
        for kind, slot in sorted(opt._slots.get(var.id, {}).items()):
            out[f"optimizer/{i}/{kind}"] = slot
    return out


def save_training_state(model, path: str, extra: dict | None = None) -> None:
    """Write the weights, the model's and optimizer's state and `extra` ({key: array})."""
    if not model.built:
        raise SymgraphError(f"model {model.name!r} is not built yet: it has no weights")
    named = [(f"{layer.name}/{w}", var.value) for layer in model.layers
             for w, var in layer._weights]
    if model.optimizer is not None:
        named.append((STATE + "optimizer/kind", np.array(type(model.optimizer).__name__)))
    named += [(STATE + key, var.value) for key, var in _state_variables(model).items()]
    named += [(STATE + key, np.asarray(a)) for key, a in (extra or {}).items()]
    save_arrays(path, named)


def load_training_state(model, path: str) -> dict:
    """Restore what save_training_state wrote into `model` (compiled with the same kind of
    optimizer); returns the extra arrays ({key: array})."""
    items = load_arrays(path)
    state = {k[len(STATE):]: a for k, a in items if k.startswith(STATE)}
    if "model/step" not in state:
        raise SymgraphError(f"{path} holds weights only (save_weights), not a training state; "
                            "nothing was loaded")
    opt = model.optimizer
    kind = str(state.pop("optimizer/kind", "none"))
    if kind != (type(opt).__name__ if opt is not None else "none"):
        raise SymgraphError(f"{path} holds the state of a {kind} optimizer but model "
                            f"{model.name!r} is compiled with {type(opt).__name__}; nothing "
                            "was loaded")
    if opt is not None:  # slots the step has not created yet (no fit so far): create them
        weights = model.weights
        for key in state:
            parts = key.split("/")
            if len(parts) == 3 and parts[0] == "optimizer" and parts[1].isdigit() and \
                    int(parts[1]) < len(weights):
                opt.slot(weights[int(parts[1])], parts[2])
    plan = model._weights_plan([(k, a) for k, a in items if not k.startswith(STATE)], path)
    variables = _state_variables(model)
    for key, var in variables.items():
        if key not in state:
            raise SymgraphError(f"{path} lacks {key!r} of model {model.name!r}'s training state; "
                                "nothing was loaded")
        array = state[key]
        if tuple(array.shape) != tuple(var.shape) or not np.can_cast(array.dtype, var.dtype,
                                                                     casting="same_kind"):
            raise SymgraphError(f"{path}: {key!r} is {array.dtype}{list(array.shape)} but the "
                                f"model's is {var.dtype}{list(var.shape)}; nothing was loaded")
        plan.append((var, array))
    unknown = sorted(k for k in state if k not in variables and not k.startswith("fit/"))
    if unknown:
        raise SymgraphError(f"{path} holds state model {model.name!r} does not have: "
                            f"{unknown[:4]}; nothing was loaded")
    for var, array in plan:  # every check passed: now assign
        var.value = array
    return {k: a for k, a in state.items() if k.startswith("fit/")}
