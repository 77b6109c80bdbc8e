"""Weight initializers with Keras's names and formulas, drawing from a seeded NumPy RNG.

Unseeded initializers draw from one process-wide generator (reseed it with
`symgraph.nn.set_random_seed`), so a script builds the same weights on every run.
"""

from __future__ import annotations

import numpy as np

from symgraph.errors import SymgraphError
from symgraph.nn.serialization import Serializable

_global = {"rng": np.random.default_rng(1337)}


def set_random_seed(seed: int) -> None:
    """Reseed the generator behind unseeded initializers, shuffling and augmentation."""
    _global["rng"] = np.random.default_rng(int(seed))


def global_rng() -> np.random.Generator:
    return _global["rng"]


def _fans(shape: tuple) -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer(Serializable):
    """`init(shape, dtype) -> np.ndarray`; `seed` makes one initializer reproducible alone."""

    def __init__(self, seed: int | None = None):
        self.seed = seed

    def get_config(self) -> dict:
        return {"seed": self.seed}

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed) if self.seed is not None else global_rng()

    def __call__(self, shape, dtype="float32") -> np.ndarray:
        raise NotImplementedError


class Zeros(Initializer):
    def __call__(self, shape, dtype="float32"):
        return np.zeros(shape, dtype)


class Ones(Initializer):
    def __call__(self, shape, dtype="float32"):
        return np.ones(shape, dtype)


class Constant(Initializer):
    def __init__(self, value: float = 0.0):
        super().__init__()
        self.value = value

    def get_config(self):
        return {"value": self.value}

    def __call__(self, shape, dtype="float32"):
        return np.full(shape, self.value, dtype)


class RandomUniform(Initializer):
    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None):
        super().__init__(seed)
        self.minval, self.maxval = minval, maxval

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}

    def __call__(self, shape, dtype="float32"):
        return self._rng().uniform(self.minval, self.maxval, shape).astype(dtype)


class RandomNormal(Initializer):
    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None):
        super().__init__(seed)
        self.mean, self.stddev = mean, stddev

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}

    def __call__(self, shape, dtype="float32"):
        return self._rng().normal(self.mean, self.stddev, shape).astype(dtype)


def _truncated_normal(rng, stddev, shape):
    """Normal draws redrawn until within two standard deviations (Keras's truncated normal)."""
    out = rng.normal(0.0, stddev, shape)
    bad = np.abs(out) > 2 * stddev
    while bad.any():
        out[bad] = rng.normal(0.0, stddev, int(bad.sum()))
        bad = np.abs(out) > 2 * stddev
    return out


class VarianceScaling(Initializer):
    """Keras's VarianceScaling: scale / fan, uniform or truncated normal."""

    def __init__(self, scale: float = 1.0, mode: str = "fan_in",
                 distribution: str = "truncated_normal", seed: int | None = None):
        super().__init__(seed)
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise SymgraphError(f"VarianceScaling: invalid mode {mode!r}")
        if distribution not in ("uniform", "truncated_normal", "untruncated_normal"):
            raise SymgraphError(f"VarianceScaling: invalid distribution {distribution!r}")
        self.scale, self.mode, self.distribution = scale, mode, distribution

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": self.seed}

    def __call__(self, shape, dtype="float32"):
        fan_in, fan_out = _fans(tuple(shape))
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, fan)
        rng = self._rng()
        if self.distribution == "uniform":
            limit = np.sqrt(3.0 * variance)
            return rng.uniform(-limit, limit, shape).astype(dtype)
        if self.distribution == "untruncated_normal":
            return rng.normal(0.0, np.sqrt(variance), shape).astype(dtype)
        # 0.879... is the stddev of a unit normal truncated at +-2
        stddev = np.sqrt(variance) / 0.87962566103423978
        return _truncated_normal(rng, stddev, shape).astype(dtype)


def GlorotUniform(seed=None):  # noqa: N802  (Keras's class names)
    return VarianceScaling(1.0, "fan_avg", "uniform", seed)


def GlorotNormal(seed=None):  # noqa: N802
    return VarianceScaling(1.0, "fan_avg", "truncated_normal", seed)


def HeUniform(seed=None):  # noqa: N802
    return VarianceScaling(2.0, "fan_in", "uniform", seed)


def HeNormal(seed=None):  # noqa: N802
    return VarianceScaling(2.0, "fan_in", "truncated_normal", seed)


def LecunUniform(seed=None):  # noqa: N802
    return VarianceScaling(1.0, "fan_in", "uniform", seed)


def LecunNormal(seed=None):  # noqa: N802
    return VarianceScaling(1.0, "fan_in", "truncated_normal", seed)


class Orthogonal(Initializer):
    """Keras's Orthogonal: the Q of a QR decomposition of a standard normal matrix, its columns'
    signs fixed by R's diagonal (so Q is uniformly distributed), transposed for a wide shape,
    times `gain`. A shape of rank > 2 is drawn as (product of all but the last dim, last dim)."""

    def __init__(self, gain: float = 1.0, seed: int | None = None):
        super().__init__(seed)
        self.gain = gain

    def get_config(self):
        return {"gain": self.gain, "seed": self.seed}

    def __call__(self, shape, dtype="float32"):
        shape = tuple(shape)
        if len(shape) < 2:
            raise SymgraphError(f"Orthogonal: the tensor to initialize must be at least "
                                f"two-dimensional, got shape={shape} of rank {len(shape)}")
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        a = self._rng().normal(0.0, 1.0, (max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q.reshape(shape)).astype(dtype)


_BY_NAME = {"zeros": Zeros, "ones": Ones, "constant": Constant, "random_uniform": RandomUniform,
            "random_normal": RandomNormal, "glorot_uniform": GlorotUniform,
            "glorot_normal": GlorotNormal, "he_uniform": HeUniform, "he_normal": HeNormal,
            "lecun_uniform": LecunUniform, "lecun_normal": LecunNormal, "orthogonal": Orthogonal,
            "uniform": RandomUniform, "normal": RandomNormal}  # Keras's aliases


def get(identifier) -> Initializer:
    """An initializer from a Keras name ("glorot_uniform"), an instance or a callable."""
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in _BY_NAME:
            raise SymgraphError(f"unknown initializer {identifier!r}; known: "
                                f"{', '.join(sorted(_BY_NAME))}")
        return _BY_NAME[key]()
    if callable(identifier):
        return identifier
    raise SymgraphError(f"cannot use {identifier!r} as an initializer")
