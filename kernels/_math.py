"""exp, tanh and log1p for kernels, written so that LLVM vectorizes them in float32.

Numba lowers np.exp / np.tanh to scalar libm calls (8-30 ns per element; it vectorizes them only
with an SVML-patched LLVM, which PyPI's llvmlite is not), while NumPy's own float32 exp and tanh
are SIMD loops (~0.4 ns). A fused kernel that calls libm per element can lose to the unfused NumPy
reference, so for float32 these two are computed in float32 arithmetic that vectorizes (8 lanes
with AVX2, twice the lanes of float64 arithmetic):

- `exp`: Cephes' expf: Cody-Waite range reduction x = k ln2 + r (ln2 in two parts), a degree-5
  polynomial for exp(r), and 2**k built from its bits as two normal factors, so that subnormal
  results round once. Within 0.97 ulp over a dense sample of every float32 (NumPy's float32 exp:
  2.4 ulp), inf/0/NaN as np.exp; 0.47 ns per element on one thread, as fast as NumPy's and 2.8x
  a float64-arithmetic version (softmax, log-softmax, cross-entropy and sigmoid kernels: 1.7-2.6x
  faster with it).
- `tanh`: Cephes' tanhf: an odd polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above
  (both computed, one selected, so the body has no branch): within 1.3 ulp (the Eigen rational
  fit it replaces: 2.7 ulp), at the same speed.

- `log1p`: u = 1 + x, log(u) from u's exponent bits and Cephes' logf polynomial on
  [sqrt(1/2), sqrt(2)), plus the correction (x - (u - 1)) / u for the rounding of u: within
  1.44 ulp, 0.74 ns per element (NumPy's SIMD log1p: 0.46), against ~10 ns for the scalar libm
  call Numba makes of np.log1p (the softplus kernel: 79 -> 8.8 ms for 4M float32, 2 threads).

Every constant is an np.float32 module global: a Python float literal would make Numba promote
the arithmetic to float64. tests/test_kernel_math.py holds them to 2 ulp.
float64 goes to libm: it is the gradient-check dtype, where accuracy is what counts. Call these
as `exp(v)` / `tanh(v)` / `log1p(v)` inside @njit code only; each picks its implementation by
the argument's type at compile time.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload


@intrinsic
def _float32_from_bits(typingctx, bits):  # type: ignore[no-untyped-def]
    """The float32 whose bits are the low 32 of an integer (Numba widens int32 arithmetic to
    int64): one LLVM truncation and bitcast, which vectorize."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        low = args[0] if bits.bitwidth == 32 else builder.trunc(args[0], ir.IntType(32))
        return builder.bitcast(low, ir.FloatType())

    return types.float32(bits), codegen


# Cephes' expf, every constant a float32 global so that Numba keeps the arithmetic in float32
# (a Python float literal would promote it to float64)
_F32_EXP_MAX = np.float32(89.0)  # above: inf (exp(88.73) overflows float32)
_F32_EXP_MIN = np.float32(-104.0)  # below: 0 (exp(-103.98) rounds to 0, half the least subnormal)
_F32_LOG2E = np.float32(1.44269504088896341)
_F32_HALF = np.float32(0.5)
_F32_ONE = np.float32(1.0)
_F32_ZERO = np.float32(0.0)
_F32_LN2_HI = np.float32(0.693359375)  # 9 bits: k * LN2_HI is exact for |k| <= 150
_F32_LN2_LO = np.float32(-2.12194440e-4)
_F32_P0 = np.float32(1.9875691500e-4)
_F32_P1 = np.float32(1.3981999507e-3)
_F32_P2 = np.float32(8.3334519073e-3)
_F32_P3 = np.float32(4.1665795894e-2)
_F32_P4 = np.float32(1.6666665459e-1)
_F32_P5 = np.float32(5.0000001201e-1)


@njit(cache=True, error_model="numpy")
def _exp_float32_arith(x):
    # Below _F32_EXP_MIN (and -inf) the answer is 0: such a lane computes exp(0) and is then
    # replaced, because the scaling below would make a subnormal on its way to 0, and a subnormal
    # result costs ~2.5x a normal one (a softmax over -inf-masked scores ran at 2.5 ns a lane).
    # x is clamped above so that k stays <= 128; comparisons keep NaN as NaN.
    under = x < _F32_EXP_MIN
    x = _F32_ZERO if under else x
    x = _F32_EXP_MAX if x > _F32_EXP_MAX else x
    k = np.floor(x * _F32_LOG2E + _F32_HALF)
    k = _F32_ZERO if k != k else k  # NaN: r below is NaN anyway; keep the int conversion defined
    r = (x - k * _F32_LN2_HI) - k * _F32_LN2_LO  # |r| <= ln2 / 2
    p = _F32_P0 * r + _F32_P1
    p = p * r + _F32_P2
    p = p * r + _F32_P3
    p = p * r + _F32_P4
    p = p * r + _F32_P5
    p = p * (r * r) + r + _F32_ONE
    n = np.int32(k)
    half = n >> 1  # 2**k as two normal factors: subnormal results round once, right
    scale_a = _float32_from_bits((half + 127) << 23)
    scale_b = _float32_from_bits((n - half + 127) << 23)
    return _F32_ZERO if under else p * scale_a * scale_b


_F32_TWO = np.float32(2.0)
_F32_TANH_SMALL = np.float32(0.625)  # below: the odd polynomial; above: 1 - 2 / (exp(2x) + 1)
_F32_T0 = np.float32(-5.70498872745e-3)  # Cephes tanhf, x + x**3 P(x**2) on |x| < 0.625
_F32_T1 = np.float32(2.06390887954e-2)
_F32_T2 = np.float32(-5.37397155531e-2)
_F32_T3 = np.float32(1.33314422036e-1)
_F32_T4 = np.float32(-3.33332819422e-1)


@njit(cache=True, error_model="numpy")
def _tanh_float32_arith(x):
    # both branches computed, one selected: a branch-free body vectorizes
    z = x * x
    p = _F32_T0 * z + _F32_T1
    p = p * z + _F32_T2
    p = p * z + _F32_T3
    p = p * z + _F32_T4
    small = p * z * x + x
    small = small if x != _F32_ZERO else x  # -0.0 stays -0.0 (the sum above gives +0.0)
    a = abs(x)
    big = _F32_ONE - _F32_TWO / (_exp_float32_arith(a + a) + _F32_ONE)  # 1 beyond |x| ~ 9
    big = big if x > _F32_ZERO else -big  # NaN: big is NaN already
    return small if a < _F32_TANH_SMALL else big


@intrinsic
def _float32_bits(typingctx, x):  # type: ignore[no-untyped-def]
    """The bits of a float32 as an int32: one LLVM bitcast, which vectorizes."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(x), codegen


# Cephes' logf on [sqrt(1/2), sqrt(2)), the log of 1 + f as f - f**2 / 2 + f**3 P(f)
_F32_SQRT_HALF = np.float32(0.707106781186547524)
_F32_L0 = np.float32(7.0376836292e-2)
_F32_L1 = np.float32(-1.1514610310e-1)
_F32_L2 = np.float32(1.1676998740e-1)
_F32_L3 = np.float32(-1.2420140846e-1)
_F32_L4 = np.float32(1.4249322787e-1)
_F32_L5 = np.float32(-1.6668057665e-1)
_F32_L6 = np.float32(2.0000714765e-1)
_F32_L7 = np.float32(-2.4999993993e-1)
_F32_L8 = np.float32(3.3333331174e-1)
_F32_INF = np.float32(np.inf)
_F32_NAN = np.float32(np.nan)
_MANTISSA = np.int32(0x007FFFFF)
_HALF_EXPONENT = np.int32(0x3F000000)  # the bits of 0.5: a mantissa put in [0.5, 1)


@njit(cache=True, error_model="numpy")
def _log1p_float32_arith(x):
    # u = 1 + x rounds; log(u) + (x - (u - 1)) / u puts the rounding back (the correction is
    # the first term of log(1 + d / u), d = x - (u - 1) exact); when u == 1 the answer is x.
    # log(u): u = m 2**e, m in [sqrt(1/2), sqrt(2)) taken from its bits (u is never
    # subnormal: the least u > 0 is 2**-24), Cephes' polynomial for log(m). Every branch is
    # computed and one selected, so the body vectorizes.
    u = _F32_ONE + x
    bits = _float32_bits(u)
    e = np.int32((bits >> 23) & 0xFF) - np.int32(126)
    m = _float32_from_bits((bits & _MANTISSA) | _HALF_EXPONENT)  # [0.5, 1)
    low = m < _F32_SQRT_HALF
    e = e - np.int32(1) if low else e
    f = (m + m - _F32_ONE) if low else (m - _F32_ONE)  # m in [sqrt(1/2), sqrt(2)) minus 1
    z = f * f
    p = _F32_L0 * f + _F32_L1
    p = p * f + _F32_L2
    p = p * f + _F32_L3
    p = p * f + _F32_L4
    p = p * f + _F32_L5
    p = p * f + _F32_L6
    p = p * f + _F32_L7
    p = p * f + _F32_L8
    k = np.float32(e)
    y = p * f * z + k * _F32_LN2_LO - _F32_HALF * z
    log_u = f + y + k * _F32_LN2_HI
    corrected = log_u + (x - (u - _F32_ONE)) / u  # log(u) + log(1 + (x - (u - 1)) / u)
    out = x if u == _F32_ONE else corrected  # x tiny (and +-0: its sign kept)
    out = _F32_INF if u == _F32_INF else out  # x = +inf (x / (u - 1) would be NaN)
    out = -_F32_INF if u == _F32_ZERO else out  # x = -1
    return _F32_NAN if u < _F32_ZERO else out  # x < -1; NaN stays NaN through every select


def _float32_or_numpy(numpy_fn, float32_fn, name):  # type: ignore[no-untyped-def]
    """`name` for kernels: float32 arguments take float32_fn, others NumPy's own function
    (libm), picked by the argument's Numba type when a kernel compiles."""

    def kernel_fn(v):  # type: ignore[no-untyped-def]
        return numpy_fn(v)

    kernel_fn.__name__ = kernel_fn.__qualname__ = name
    kernel_fn.__doc__ = f"{name} inside kernels (see the module docstring)."

    @overload(kernel_fn)
    def _for_type(v):  # type: ignore[no-untyped-def]  # no annotations: Numba compares them
        if v == types.float32:
            return lambda v: float32_fn(v)
        return lambda v: numpy_fn(v)

    return kernel_fn


exp = _float32_or_numpy(np.exp, _exp_float32_arith, "exp")
tanh = _float32_or_numpy(np.tanh, _tanh_float32_arith, "tanh")
log1p = _float32_or_numpy(np.log1p, _log1p_float32_arith, "log1p")
