"""float32 exp, log and tanh that LLVM can vectorize, for the Numba backend's kernels.

Numba lowers `math.exp` on a float32 to a call of libm's `expf` per element: the loop stays
scalar (4.7-4.9 ns per element here, 8x NumPy's SIMD `np.exp`). SVML, which would vectorize
it, is not compiled into the llvmlite wheels. These functions are the Cephes single-precision
algorithms written in plain arithmetic (range reduction, a polynomial, the exponent set by
integer bit operations), so a kernel's loop that calls them vectorizes: per 2^20 elements exp
0.6 ms against 4.9 ms for `math.exp`, log 0.95 against 4.5, tanh 0.9 against 15.5
(docs/numba-backend.md).

Accuracy, measured against float64 over every float32 range they accept
(tests/backends/test_numba_vecmath.py): exp and log within 1 ulp (measured 0.70 and 0.76;
NumPy's own: 2.0 and 3.0), tanh within 2 (1.3; NumPy 1.4); inf, -inf, NaN, 0, -0, negative
arguments of log and subnormal results behave as NumPy's do. float64 keeps libm (`math.*`):
its gradients are checked to 1e-7.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

F = np.float32
I32 = np.int32


@intrinsic
def _f32_from_bits(typingctx, bits):
    """The float32 whose IEEE bit pattern is the int32 `bits` (an LLVM bitcast)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@intrinsic
def _bits_of_f32(typingctx, x):
    """The IEEE bit pattern of the float32 `x` as an int32 (an LLVM bitcast)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


_FLAGS = dict(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")

_LOG2E = F(1.44269504088896341)
_LN2_HI, _LN2_LO = F(0.693359375), F(-2.12194440e-4)  # ln 2 in two parts (Cody-Waite)
_E0, _E1, _E2, _E3, _E4, _E5 = (F(1.9875691500e-4), F(1.3981999507e-3), F(8.3334519073e-3),
                                F(4.1665795894e-2), F(1.6666665459e-1), F(5.0000001201e-1))
_EXP_HI = F(88.72283935546875)  # above: inf
_EXP_LO = F(-103.97208404541016)  # below: 0


@njit(**_FLAGS)
def exp32(x):
    """e**x for a float32: x = k ln2 + r with |r| <= ln2 / 2, e**r by a polynomial, 2**k by
    building the exponent bits (in two factors, so results down to the subnormals come out)."""
    xc = min(max(x, _EXP_LO), _EXP_HI)
    k = np.floor(xc * _LOG2E + F(0.5))
    r = xc - k * _LN2_HI
    r = r - k * _LN2_LO
    p = ((((_E0 * r + _E1) * r + _E2) * r + _E3) * r + _E4) * r + _E5
    y = p * (r * r) + r + F(1.0)
    ki = I32(k)
    h = ki >> I32(1)
    y = y * _f32_from_bits((h + I32(127)) << I32(23))
    y = y * _f32_from_bits((ki - h + I32(127)) << I32(23))
    y = F(np.inf) if x > _EXP_HI else y
    y = F(0.0) if x < _EXP_LO else y
    return x if x != x else y  # NaN stays NaN


_SQRTH = F(0.70710678118654752440)
_L = (F(7.0376836292e-2), F(-1.1514610310e-1), F(1.1676998740e-1), F(-1.2420140846e-1),
      F(1.4249322787e-1), F(-1.6668057665e-1), F(2.0000714765e-1), F(-2.4999993993e-1),
      F(3.3333331174e-1))
_TINY = F(1.17549435e-38)  # the smallest normal float32
_TWO23 = F(8388608.0)


@njit(**_FLAGS)
def log32(x):
    """Natural log of a float32: x = m 2**e with m in [sqrt(1/2), sqrt(2)), log(m) by a
    polynomial in m - 1; subnormals are scaled by 2**23 first."""
    sub = x < _TINY
    xs = x * _TWO23 if sub else x
    bits = _bits_of_f32(xs)
    e = ((bits >> I32(23)) & I32(255)) - I32(126)
    m = _f32_from_bits((bits & I32(-2139095041)) | I32(1056964608))  # mantissa in [0.5, 1)
    e = e - I32(23) if sub else e
    small = m < _SQRTH
    e = e - I32(1) if small else e
    m = (m + m - F(1.0)) if small else (m - F(1.0))
    z = m * m
    p = ((((((((_L[0] * m + _L[1]) * m + _L[2]) * m + _L[3]) * m + _L[4]) * m + _L[5]) * m
             + _L[6]) * m + _L[7]) * m + _L[8])
    fe = F(e)
    y = m * z * p + fe * _LN2_LO - F(0.5) * z
    y = m + y + fe * _LN2_HI
    y = F(-np.inf) if x == F(0.0) else y
    y = F(np.nan) if x < F(0.0) else y
    return x if (x != x or x == F(np.inf)) else y


_T = (F(-5.70498872745e-3), F(2.06390887954e-2), F(-5.37397155531e-2), F(1.33314422036e-1),
      F(-3.33332819422e-1))


@njit(**_FLAGS)
def tanh32(x):
    """tanh of a float32: an odd polynomial below |x| = 0.625, 1 - 2 / (e**2|x| + 1) above."""
    z = abs(x)
    s = exp32(min(z + z, F(88.0)))
    big = F(1.0) - F(2.0) / (s + F(1.0))
    big = -big if x < F(0.0) else big
    q = x * x
    small = ((((_T[0] * q + _T[1]) * q + _T[2]) * q + _T[3]) * q + _T[4]) * q * x + x
    return small if z <= F(0.625) else big  # NaN: z <= 0.625 is false, big is NaN


def _float_intrinsic(name: str):
    """A two-argument LLVM float intrinsic (`llvm.maximum`, ...) callable from njit code."""
    @intrinsic
    def call(typingctx, a, b):
        if a != b or not isinstance(a, types.Float):
            return None

        def codegen(context, builder, signature, args):
            t = args[0].type
            fn = builder.module.declare_intrinsic(name, [t], ir.FunctionType(t, [t, t]))
            return builder.call(fn, args)

        return a(a, b), codegen

    return call


# NaN-propagating maximum and minimum, as NumPy's: one select LLVM vectorizes, also as a
# reduction (a row max 8x faster than the short-circuit `a if (a > b or a != a) else b`).
fmaximum = _float_intrinsic("llvm.maximum")
fminimum = _float_intrinsic("llvm.minimum")

# What the Numba CPU generator renders with these (codegen.CpuScalarRenderer).
FLOAT_TEMPLATES = {"maximum": "fmaximum({0}, {1})", "minimum": "fminimum({0}, {1})"}
FLOAT32_CALLS = {"math.exp(": "exp32(", "math.log(": "log32(", "math.tanh(": "tanh32("}

IMPORT = ("from symgraph.backends.numba_cpu.vecmath import exp32, fmaximum, fminimum, log32, "
          "tanh32")
