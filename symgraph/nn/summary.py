"""Keras-style `model.summary()` text."""

from __future__ import annotations

import numpy as np


def _itemsize(dtype) -> int:
    """A float's size; an integer counter (the optimizer's iterations) counts 4 bytes, as
    Keras's int32 "int" on JAX and torch."""
    dtype = np.dtype(dtype)
    return dtype.itemsize if dtype.kind == "f" else 4


def _bytes(variables) -> str:
    """Their memory as Keras's weight_memory_size counts it: each one's size x its dtype's
    (a float64 layer's weights 8 bytes each)."""
    size = float(sum(int(np.prod(v.shape)) * _itemsize(v.dtype) for v in variables))
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} GB"


def _shape_text(shape) -> str:
    return "(None, " + ", ".join(map(str, shape)) + ")"


def _count(variables) -> int:
    return int(sum(int(np.prod(v.shape)) for v in variables))


def format_summary(model, connected: list | None = None) -> str:
    """Keras's table; `connected` (one text per layer) adds its "Connected to" column, which
    Keras shows for functional models whose layers do not form a chain."""
    rows = []
    for layer in model.layers:
        shape = layer.output_shape
        if shape is None:
            shown = "?"
        elif isinstance(shape, list):  # several outputs, as Keras lists them
            shown = "[" + ", ".join(_shape_text(s) for s in shape) + "]"
        else:
            shown = _shape_text(shape)
        rows.append((f"{layer.name} ({type(layer).__name__})", shown,
                     f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"))
    head = ("Layer (type)", "Output Shape", "Param #")
    widths = [max(31, *(len(r[0]) for r in rows)) if rows else 31,
              max(22, *(len(r[1]) for r in rows)) if rows else 22, 13]
    aligns = "<<>"
    if connected is not None:
        rows = [r + (text,) for r, text in zip(rows, connected)]
        head += ("Connected to",)
        widths.append(max(20, *(len(text) for text in connected)))
        aligns += "<"

    def line(left, mid, right, fill):
        return left + mid.join(fill * (w + 2) for w in widths) + right

    def row(cells, sep):
        shown = [f"{c:{a}{w}}" for c, a, w in zip(cells, aligns, widths)]
        return f"{sep} " + f" {sep} ".join(shown) + f" {sep}"

    out = [f'Model: "{model.name}"', line("┏", "┳", "┓", "━"), row(head, "┃"),
           line("┡", "╇", "┩", "━")]
    for i, r in enumerate(rows):
        out.append(row(r, "│"))
        if i < len(rows) - 1:
            out.append(line("├", "┼", "┤", "─"))
    out.append(line("└", "┴", "┘", "─"))
    trainable = _count(model.trainable_weights)
    frozen = _count(model.non_trainable_weights)
    opt = getattr(model, "optimizer", None)
    opt_vars = opt.variables if opt is not None and opt.built else None
    n_opt = _count(opt_vars) if opt_vars is not None else None
    total = trainable + frozen + (n_opt or 0)  # Keras counts the optimizer's in the total
    every = list(model.trainable_weights) + list(model.non_trainable_weights) + (opt_vars or [])
    out.append(f" Total params: {total:,} ({_bytes(every)})")
    out.append(f" Trainable params: {trainable:,} ({_bytes(model.trainable_weights)})")
    out.append(f" Non-trainable params: {frozen:,} ({_bytes(model.non_trainable_weights)})")
    if n_opt is not None:
        out.append(f" Optimizer params: {n_opt:,} ({_bytes(opt_vars)})")
    return "\n".join(out)
