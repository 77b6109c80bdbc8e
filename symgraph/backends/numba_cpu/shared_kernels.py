"""Kernels whose bodies are the same up to their buffers (an unrolled RNN's timesteps, the
layers of one width) compile once: codegen renders every kernel, then `shared_kernels` keys each
body by its text with buffers and locals renamed in order, plus each buffer's dtype and size,
and makes one function of every body met twice or more (docs/numba-backend.md).
"""

from __future__ import annotations

import re

from symgraph.backends.render import ScalarRenderer
from symgraph.lower import Program


def words_in(text: str) -> set[str]:
    """The identifiers in a piece of generated source."""
    return set(re.findall(r"[A-Za-z_]\w*", text))



SHARED = "shared"  # prefix of the functions that several kernels call (shared_kernels)
_RENUMBERED = re.compile(r"\b(b|v|key)(\d+)\b")  # buffers, node locals, random keys
_COMMENT = re.compile(r"^\s*#.*\n|\s*#.*$", re.MULTILINE)


def _canonical(body: str) -> tuple[str, list[str]]:
    """A kernel body with its buffers renamed p0, p1, ... and its node locals and random keys
    v0, key0, ... in order of first appearance, and the buffer names in that order."""
    names: dict = {}
    counts = {"b": 0, "v": 0, "key": 0}

    def rename(m):
        if m.group(0) not in names:
            kind = m.group(1)
            names[m.group(0)] = f"{'p' if kind == 'b' else kind}{counts[kind]}"
            counts[kind] += 1
        return names[m.group(0)]
    body = _RENUMBERED.sub(rename, body)
    return body, [n for n in names if n.startswith("b")]


def shared_kernels(program: Program, rendered: list, scalar: ScalarRenderer) -> dict:
    """Kernels whose bodies are the same up to their buffers (an unrolled RNN's timesteps, the
    layers of one width): kernel id -> (function name, call arguments, the function's source
    for the first kernel of each body, else ""). Each such body becomes one function with
    its buffers as parameters (p0, p1, ...) and the dims it uses, so LLVM compiles it once
    instead of once per kernel. The key is the body without comments plus each parameter's
    dtype and element count (the native translator needs both, and the same text reads
    float32 and float64 buffers alike). A body met once stays as it was (pasted into `entry`,
    or its kernel's own function for the thread-pool driver)."""
    buffers = {f"b{b.id}": b for b in program.buffers}
    dims = set(scalar.symbols.values())
    found: dict = {}  # key -> (`# kind: ops`, body, signature, [(kernel id, buffer names)])
    order = []
    for k, text in zip(program.kernels, rendered):
        _, _, what, code = text.split("\n", 3)  # decorator, def, `# kind: ops`, the code
        # comments dropped: a node's name there would only keep equal bodies apart
        body, names = _canonical(_COMMENT.sub("", code))
        signature = tuple((buffers[n].dtype, scalar.size_expr(buffers[n].shape)) for n in names)
        key = (body, signature)
        if key not in found:
            found[key] = (what, body, signature, [])
            order.append(key)
        found[key][3].append((k.id, names))
    out = {}
    count = 0
    for key in order:
        what, body, signature, users = found[key]
        if len(users) < 2:
            continue
        name = f"{SHARED}{count}"
        count += 1
        used = words_in(body) | words_in(" ".join(size for _, size in signature))
        dim_args = sorted(d for d in dims if d in used)
        params = [f"p{i}" for i in range(len(signature))] + dim_args
        sizes = ", ".join(f"p{i}: {dt}[{size}]" for i, (dt, size) in enumerate(signature))
        definition = (f"@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model='numpy')\n"
                      f"def {name}({', '.join(params)}):\n"
                      f"{what}; shared by {len(users)} kernels\n    # {sizes}\n{body}\n")
        for i, (kid, names) in enumerate(users):
            out[kid] = (name, names + dim_args, definition if i == 0 else "")
    return out
