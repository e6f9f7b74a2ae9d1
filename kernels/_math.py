"""exp and tanh for kernels, written so that LLVM vectorizes them in float32.

Numba lowers np.exp / np.tanh to scalar libm calls (8-30 ns per element; it vectorizes them only
with an SVML-patched LLVM, which PyPI's llvmlite is not), while NumPy's own float32 exp and tanh
are SIMD loops (~1 ns). A fused kernel that calls libm per element can lose to the unfused NumPy
reference, so for float32 these two are computed in float64 arithmetic that vectorizes:

- `exp`: Cody-Waite range reduction x = k ln2 + r, a degree-13 Taylor polynomial for exp(r), and
  2**k built from its bits. Correctly rounded in float32 (max error measured 0.50 ulp; NumPy's
  float32 exp: 2.4 ulp), inf/0/NaN as np.exp. About 3x faster than libm's expf.
- `tanh`: a rational minimax fit (Eigen's float32 tanh coefficients): within 2.7 ulp
  (NumPy's: 1.4 ulp), about 15x faster than libm's tanhf.

float64 goes to libm: it is the gradient-check dtype, where accuracy is what counts. Call these
as `exp(v)` / `tanh(v)` inside @njit code only; each picks its implementation by the argument's
type at compile time.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

LN2_HI = 6.93147180369123816490e-01  # ln 2 split in two: k * LN2_HI is exact for |k| < 2**20
LN2_LO = 1.90821492927058770002e-10
LOG2E = 1.44269504088896338700e00


@intrinsic
def _float64_from_bits(typingctx, bits):  # type: ignore[no-untyped-def]
    """Reinterpret an int64 as the float64 with those bits (one LLVM bitcast, vectorizes)."""
    if bits != types.int64:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@njit(cache=True, error_model="numpy")
def _exp_float64_arith(x):
    # x clamped so that k stays in [-1077, 1025]; comparisons keep NaN as NaN
    x = -746.0 if x < -746.0 else x
    x = 710.0 if x > 710.0 else x
    k = np.floor(x * LOG2E + 0.5)
    k = 0.0 if k != k else k  # NaN: r below is NaN anyway; keep the int conversion defined
    r = (x - k * LN2_HI) - k * LN2_LO  # |r| <= ln2 / 2
    p = 1.0 / 6227020800.0  # Taylor coefficients 1/13! ... 1/0!, Horner
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    n = np.int64(k)
    half = n >> 1  # 2**k as two normal factors, so subnormal and overflowing results round right
    return p * _float64_from_bits((half + 1023) << 52) * _float64_from_bits((n - half + 1023) << 52)


def exp(v):
    """exp inside kernels (see the module docstring)."""
    return np.exp(v)


@overload(exp)
def _exp_for_type(v):  # no annotations: Numba compares them with the implementation's
    if v == types.float32:
        return lambda v: np.float32(_exp_float64_arith(np.float64(v)))
    return lambda v: np.exp(v)


def _tanh_float32(v):
    x = np.float64(v)
    x = -9.0 if x < -9.0 else x  # float32 tanh is +-1 beyond |x| = 9.01
    x = 9.0 if x > 9.0 else x
    x2 = x * x
    p = -2.76076847742355e-16
    p = p * x2 + 2.00018790482477e-13
    p = p * x2 - 8.60467152213735e-11
    p = p * x2 + 5.12229709037114e-08
    p = p * x2 + 1.48572235717979e-05
    p = p * x2 + 6.37261928875436e-04
    p = p * x2 + 4.89352455891786e-03
    q = 1.19825839466702e-06
    q = q * x2 + 1.18534705686654e-04
    q = q * x2 + 2.26843463243900e-03
    q = q * x2 + 4.89352518554385e-03
    return np.float32(x * p / q)


def tanh(v):
    """tanh inside kernels (see the module docstring)."""
    return np.tanh(v)


@overload(tanh)
def _tanh_for_type(v):  # no annotations: Numba compares them with the implementation's
    if v == types.float32:
        return _tanh_float32
    return lambda v: np.tanh(v)
