"""Leaves, integer-label ops (one_hot, take, scatter_add), stop_gradient and counter-based random.

The random op is a stateless hash of (seed, step, flat element index): the same bits on every
backend, a new mask every step, reproducible from the seed (DESIGN.md decision 10). The hash is
two rounds of MurmurHash3's 32-bit finalizer, computed in uint64 and masked to 32 bits so that
NumPy, Numba and CUDA code give identical results.
"""

from __future__ import annotations

import numpy as np

from symgraph.errors import SymgraphError
from symgraph.graph import FLOAT_DTYPES, INT_DTYPES, TensorType, canonical_dtype, resolve_shape
from symgraph.ops import build as B
from symgraph.ops.table import INDEX, LEAF, RANDOM, OpDef, register

_LEAF_WHY = {"infer": "a leaf's type is given when it is created",
             "impl": "the runtime supplies a leaf's value (input, state or constant)",
             "template": "a leaf is loaded, not computed", "jvp": "a leaf has no inputs"}

register(OpDef("placeholder", LEAF, None, None, lambda n, g: [], None, None, _LEAF_WHY))
register(OpDef("variable", LEAF, None, None, lambda n, g: [], None, None, _LEAF_WHY))
register(OpDef("constant", LEAF, None, lambda attrs, dims: attrs["value"].array,
               lambda n, g: [], None, None, {k: v for k, v in _LEAF_WHY.items() if k != "impl"}))


def _require_int(t: TensorType, what: str) -> None:
    if t.dtype not in INT_DTYPES:
        raise SymgraphError(f"{what} needs integer indices, got {t.dtype}")


def _infer_one_hot(idx: TensorType, depth: int, dtype: str) -> TensorType:
    _require_int(idx, "one_hot")
    return TensorType(canonical_dtype(dtype), tuple(idx.shape) + (depth,))


def _impl_one_hot(attrs, dims, idx):
    depth = attrs["depth"]
    return (idx[..., None] == np.arange(depth)).astype(attrs["dtype"])


_INT_INPUT = {"jvp": "integer input: no tangent"}
register(OpDef("one_hot", INDEX, _infer_one_hot, _impl_one_hot, lambda n, g: [None], None,
               "(1.0 if {0} == {1} else 0.0)", _INT_INPUT))


def _infer_take(x: TensorType, idx: TensorType) -> TensorType:
    _require_int(idx, "take")
    if x.ndim == 0:
        raise SymgraphError("take picks rows along axis 0 of x, but x is a scalar")
    return TensorType(x.dtype, tuple(idx.shape) + tuple(x.shape[1:]))


def _infer_scatter_add(g: TensorType, idx: TensorType, size: int) -> TensorType:
    _require_int(idx, "scatter_add")
    return TensorType(g.dtype, (size,) + tuple(g.shape[idx.ndim:]))


def _impl_scatter_add(attrs, dims, g, idx):
    size = attrs["size"]  # a symbolic dim (the gradient of a gather from a batch) is bound
    out = np.zeros((dims[size] if isinstance(size, str) else size,) + g.shape[idx.ndim:],
                   dtype=g.dtype)
    np.add.at(out, idx.reshape(-1), g.reshape((-1,) + g.shape[idx.ndim:]))
    return out


register(OpDef("take", INDEX, _infer_take, lambda attrs, dims, x, idx: np.take(x, idx, axis=0),
               lambda n, g: [B.apply("scatter_add", (g, n.inputs[1]), size=n.inputs[0].shape[0]),
                             None],
               lambda n, ts: None if ts[0] is None else B.apply("take", (ts[0], n.inputs[1])),
               None, {"template": "gather: indexed load, rendered by hand"}))
register(OpDef("scatter_add", INDEX, _infer_scatter_add, _impl_scatter_add,
               lambda n, g: [B.apply("take", (g, n.inputs[1])), None],
               lambda n, ts: None if ts[0] is None else B.apply(
                   "scatter_add", (ts[0], n.inputs[1]), size=n.attr["size"]),
               None, {"template": "scatter with atomic adds, rendered by hand"}))

register(OpDef("stop_gradient", INDEX, lambda x: x, lambda attrs, dims, x: x,
               lambda n, g: [None], lambda n, ts: None, "{0}"))

# --- counter-based random -------------------------------------------------------------------

MASK32 = 0xFFFFFFFF
GOLDEN = 0x9E3779B1
STEP_SALT = 0x632BE5AB
FMIX_A = 0x85EBCA6B
FMIX_B = 0xC2B2AE35


def fmix32(h):
    """MurmurHash3's finalizer on uint64 arrays holding 32-bit values."""
    h = h ^ (h >> np.uint64(16))
    h = (h * np.uint64(FMIX_A)) & np.uint64(MASK32)
    h = h ^ (h >> np.uint64(13))
    h = (h * np.uint64(FMIX_B)) & np.uint64(MASK32)
    return h ^ (h >> np.uint64(16))


def random_key(seed: int, step) -> np.uint64:
    """The per-(seed, step) key every element's hash starts from."""
    s = fmix32(np.uint64((int(step) + STEP_SALT) & MASK32))
    return fmix32((np.uint64((seed * GOLDEN) & MASK32) ^ s) & np.uint64(MASK32))


def uniform_bits(seed: int, step, size: int) -> np.ndarray:
    """24 random bits per element as uint64: hash of (key, flat index)."""
    key = random_key(seed, step)
    x = fmix32(np.arange(size, dtype=np.uint64) ^ key)
    x = fmix32((x + key) & np.uint64(MASK32))
    return x >> np.uint64(8)


def _infer_random(step: TensorType, shape: tuple, seed: int, dtype: str) -> TensorType:
    if step.dtype not in INT_DTYPES or step.ndim != 0:
        raise SymgraphError(f"the random step counter must be an integer scalar, got {step}")
    if canonical_dtype(dtype) not in FLOAT_DTYPES:  # [0, 1) draws: an int is 0
        raise SymgraphError(f"uniform draws are float32 or float64, not {dtype}")
    if any(isinstance(d, int) and d < 0 for d in shape):
        raise SymgraphError(f"negative dim in shape {tuple(shape)}")
    return TensorType(canonical_dtype(dtype), tuple(shape))


def _impl_random(attrs, dims, step):
    shape = resolve_shape(attrs["shape"], dims)
    bits = uniform_bits(attrs["seed"], step, int(np.prod(shape, dtype=np.int64)))
    return (bits.astype(attrs["dtype"]) * np.asarray(2.0 ** -24, attrs["dtype"])).reshape(shape)


register(OpDef("random_uniform", RANDOM, _infer_random, _impl_random, lambda n, g: [None], None,
               None, {"jvp": "random draws have no tangent (the step input is an integer)",
                      "template": "a hash of the element index, rendered from fmix32 steps"}))


def _infer_dim_size(dims: tuple, dtype: str) -> TensorType:
    return TensorType(canonical_dtype(dtype), ())


def _impl_dim_size(attrs, dims):
    return np.asarray(np.prod(resolve_shape(attrs["dims"], dims), dtype=np.int64),
                      dtype=attrs["dtype"])


# The element count of some dims (symbolic ones bound at call time): mean over a batch of any size.
register(OpDef("dim_size", INDEX, _infer_dim_size, _impl_dim_size, lambda n, g: [], None, None,
               {"jvp": "a size has no inputs and no tangent",
                "template": "a runtime scalar argument, not an elementwise expression"}))
