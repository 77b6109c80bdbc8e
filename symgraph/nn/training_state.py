"""The whole training state in one .npz, so that training can stop and resume exactly.

Beside the weights (the keys `save_weights` writes, so `load_weights` reads such a file too),
the state holds, under `_state/`: the model's step counter (the dropout masks' step), the
optimizer's kind, learning rate (unless a schedule), iteration count, scalar state (Nadam's
u_product) and slots (momenta, accumulators, EMA averages), and what `BackupAndRestore` adds
(the next epoch, the shuffling generator's state as JSON). Written atomically, read without
pickle, and restored only when every array fits: a mismatch raises a SymgraphError and changes
nothing.
"""

from __future__ import annotations

import numpy as np

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn.weights_io import load_arrays, named_weights, save_arrays
from symgraph.runtime import deferred_interrupt

STATE = "_state/"  # the prefix of every key that is not a weight


def is_state_key(key: str) -> bool:
    """A training-state key: `_state/<part>/<name>`. Weight keys are `<layer>/<weight>` with
    one slash (layer names cannot hold one), so a layer named `_state` is still a weight."""
    return key.startswith(STATE) and key.count("/") >= 2


def _counters(model) -> dict:
    """{key without the prefix: variable} for the dropout step and the optimizer's scalars."""
    out = {"model/step": model.step_counter}
    opt = model.optimizer
    if opt is not None:
        if opt._lr is not None:  # a schedule has no rate variable
            out["optimizer/learning_rate"] = opt._lr
        out["optimizer/iterations"] = opt.iterations
    return out


def _slots(model) -> tuple[dict, dict]:
    """({key without the prefix: (weight, slot kind, slot)} for every slot a training step has
    or would create for any weight that can train, a frozen layer's too (its layer may be
    frozen or unfrozen between saving and loading, and the set must not depend on it), {key:
    scalar variable} for the optimizer's scalar state: its own variables where they exist,
    else new ones holding the initial values. The optimizer's update rules run on zero
    gradients with copies of its slot tables (the graph they build is dropped; the optimizer
    is left as it was)."""
    opt, weights = model.optimizer, model.weights
    trainable = [v for v in weights if v.trainable]  # not layer.trainable_weights: see above
    kept, kept_scalars, built = opt._slots, opt._scalars, opt.built
    opt._slots = {vid: dict(kinds) for vid, kinds in kept.items()}
    opt._scalars = dict(kept_scalars)
    try:
        opt.updates([(sg.constant(np.zeros(v.shape, v.dtype)), v) for v in trainable])
        would, scalars = opt._slots, opt._scalars
    finally:
        opt._slots, opt._scalars, opt.built = kept, kept_scalars, built
    slots = {f"optimizer/{i}/{kind}": (var, kind, slot)  # by position, as weights are matched
             for i, var in enumerate(weights)
             for kind, slot in sorted(would.get(var.id, {}).items())}
    return slots, {f"optimizer/{kind}": var for kind, var in sorted(scalars.items())}


def save_training_state(model, path: str, extra: dict | None = None) -> None:
    """Write the weights, the model's and optimizer's state and `extra` ({key: array})."""
    if not model.built:
        raise SymgraphError(f"model {model.name!r} is not built yet: it has no weights")
    save_arrays(path, state_arrays(model, extra))


def state_arrays(model, extra: dict | None = None) -> list:
    """[(key, array)]: the weights, then the model's and optimizer's state and `extra`."""
    named = named_weights(model)
    if model.optimizer is not None:
        named.append((STATE + "optimizer/kind", np.array(type(model.optimizer).__name__)))
    named += [(STATE + key, var.value) for key, var in _counters(model).items()]
    if model.optimizer is not None:
        slots, scalars = _slots(model)
        named += [(STATE + key, var.value) for key, var in scalars.items()]
        named += [(STATE + key, slot.value) for key, (_, _, slot) in slots.items()]
    named += [(STATE + key, np.asarray(a)) for key, a in (extra or {}).items()]
    return named


def load_training_state(model, path: str, read_extra=None):
    """Restore what save_training_state wrote into `model` (built, and compiled with the same
    kind of optimizer). `read_extra({key: array})` turns the extra arrays into what it returns
    (raising ValueError, TypeError or KeyError on bad ones) before anything is assigned; every
    check passes or nothing changes."""
    if not model.built:
        raise SymgraphError(f"model {model.name!r} is not built yet: build or compile it with "
                            "its input shape before loading a training state")
    opt = model.optimizer
    if opt is None:
        raise SymgraphError(f"model {model.name!r} is not compiled: a training state restores "
                            "its optimizer too (compile it first, or use load_weights)")
    return restore_training_state(model, load_arrays(path), path, read_extra)


def restore_training_state(model, items: list, path: str, read_extra=None):
    """load_training_state from the [(key, array)] a file holds; `path` names it in errors."""
    opt = model.optimizer
    state = {k[len(STATE):]: a for k, a in items if is_state_key(k)}
    if "model/step" not in state:
        raise SymgraphError(f"{path} holds weights only (save_weights), not a training state; "
                            "nothing was loaded")
    kind = str(state.pop("optimizer/kind", "none"))
    if kind != type(opt).__name__:
        raise SymgraphError(f"{path} holds the state of a {kind} optimizer but model "
                            f"{model.name!r} is compiled with {type(opt).__name__}; nothing "
                            "was loaded")
    plan = model._weights_plan([(k, a) for k, a in items if not is_state_key(k)], path)
    wanted = _counters(model)
    slots, scalars = _slots(model)
    wanted.update(scalars)
    wanted.update({key: weight for key, (weight, _, _) in slots.items()})  # a slot is its weight's
    for key, like in wanted.items():  # shape and dtype
        if key not in state:
            raise SymgraphError(f"{path} lacks {key!r} of model {model.name!r}'s training state; "
                                "nothing was loaded")
        array = state[key]
        if tuple(array.shape) != tuple(like.shape) or not np.can_cast(array.dtype, like.dtype,
                                                                      casting="same_kind"):
            raise SymgraphError(f"{path}: {key!r} is {array.dtype}{list(array.shape)} but the "
                                f"model's is {like.dtype}{list(like.shape)}; nothing was loaded")
    unknown = sorted(k for k in state if k not in wanted and not k.startswith("fit/"))
    if unknown:
        raise SymgraphError(f"{path} holds state that model {model.name!r} and its "
                            f"{type(opt).__name__} do not have: {unknown[:4]}; nothing was loaded")
    extra = {k: a for k, a in state.items() if k.startswith("fit/")}
    try:
        extra = read_extra(extra) if read_extra is not None else extra
    except (ValueError, TypeError, KeyError) as exc:
        raise SymgraphError(f"{path}: damaged fit state ({type(exc).__name__}: {exc}); "
                            "nothing was loaded") from None
    # every check passed: now create the slots the step has not made yet, and assign
    for key, (weight, slot_kind, _) in slots.items():
        plan.append((opt.slot(weight, slot_kind), state[key]))
    opt._scalars.update({key[len("optimizer/"):]: var for key, var in scalars.items()})
    plan += [(var, state[key]) for key, var in wanted.items() if key not in slots]
    with deferred_interrupt():  # a Ctrl-C meanwhile would leave the state half restored
        for var, array in plan:
            var.value = array
        opt.built = True  # it holds a training state now: model.save writes it on
    return extra
