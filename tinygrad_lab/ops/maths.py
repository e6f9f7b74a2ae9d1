"""Elementwise maths beyond the arithmetic of elementwise.py: trigonometric, hyperbolic,
logarithmic and rounding functions, erf, the remainders, rounded division and the triangular
masks (tril / triu). One class per op, forward and backward side by side, as elsewhere.

Rounding ops (floor, ceil, round, trunc, sign, rounded division) are piecewise constant: their
gradient is zero everywhere, as PyTorch's, so they stay on the tape and send zeros back.
"""

from __future__ import annotations

import math

from tinygrad_lab.backends import Array, array_module, reference_function
from tinygrad_lab.flops import Shape, numel
from tinygrad_lab.function import Function

LN2 = math.log(2.0)
TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


# --- erf: W. J. Cody's rational approximations (CALERF, Math. Comp. 1969), float64-accurate ----
# |x| <= 0.46875: erf(x) = x P(x^2) / Q(x^2)
_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
          3.20937758913846947e03, 1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
          2.84423683343917062e03)
# 0.46875 < |x| <= 4: erfc(y) = exp(-y^2) P(y) / Q(y)
_ERF_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
          2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
          2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_ERF_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
          1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
          3.43936767414372164e03, 1.23033935480374942e03)
# |x| > 4: erfc(y) = exp(-y^2) / y (1/sqrt(pi) + P(1/y^2) / (y^2 Q(1/y^2)))
_ERF_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
          1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_ERF_Q = (2.56852019228982242e00, 1.87295284992346725e00, 5.27905102951428412e-1,
          6.05183413124413191e-2, 2.33520497626869185e-3)
_INV_SQRT_PI = 5.6418958354775628695e-1
_ERF_SMALL, _ERF_MID, _ERF_BIG = 0.46875, 4.0, 27.0  # erfc(27) underflows float64 to 0


def _erfc_tail(y: Array) -> Array:
    """erfc(y) for y in [0.46875, 27], Cody's two outer ranges; exp(-y^2) is split as
    exp(-ysq^2) exp(-(y - ysq)(y + ysq)) with ysq = y rounded down to 1/16, to keep its
    relative error at the rounding of y."""
    xp = array_module(y)
    mid = xp.minimum(y, _ERF_MID)
    num, den = _ERF_C[8] * mid, mid
    for c, d in zip(_ERF_C[:7], _ERF_D[:7]):
        num, den = (num + c) * mid, (den + d) * mid
    mid_ratio = (num + _ERF_C[7]) / (den + _ERF_D[7])
    big = xp.maximum(y, _ERF_MID)
    inv2 = 1.0 / (big * big)
    num, den = _ERF_P[5] * inv2, inv2
    for p, q in zip(_ERF_P[:4], _ERF_Q[:4]):
        num, den = (num + p) * inv2, (den + q) * inv2
    big_ratio = (_INV_SQRT_PI - inv2 * (num + _ERF_P[4]) / (den + _ERF_Q[4])) / big
    ratio = xp.where(y <= _ERF_MID, mid_ratio, big_ratio)
    ysq = xp.trunc(y * 16.0) / 16.0
    return xp.exp(-ysq * ysq) * xp.exp(-(y - ysq) * (y + ysq)) * ratio


@reference_function("erf")
def erf(x: Array) -> Array:
    """erf(x), elementwise, in x's dtype, written with the array module's own operations (no
    SciPy, nothing on the host): relative error ~1e-16 in float64 (checked against math.erf)."""
    xp = array_module(x)
    small = xp.clip(x, -_ERF_SMALL, _ERF_SMALL)
    sq = small * small
    num, den = _ERF_A[4] * sq, sq
    for a, b in zip(_ERF_A[:3], _ERF_B[:3]):
        num, den = (num + a) * sq, (den + b) * sq
    near = small * (num + _ERF_A[3]) / (den + _ERF_B[3])
    y = xp.clip(xp.abs(x), _ERF_SMALL, _ERF_BIG)  # NaN stays NaN; +-inf gives +-1
    far = 1.0 - _erfc_tail(y)
    out = xp.where(xp.abs(x) <= _ERF_SMALL, near, xp.where(x < 0, -far, far))
    return out.astype(x.dtype, copy=False)


# --- unary: trigonometric and hyperbolic ---------------------------------------------------
class Sin(Function):
    """z = sin(a);  dz/da = cos(a)."""

    flops_per_element = (1, 2)

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.xp.sin(a)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (g * self.xp.cos(a),)


class Cos(Function):
    """z = cos(a);  dz/da = -sin(a)."""

    flops_per_element = (1, 3)

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.xp.cos(a)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (-(g * self.xp.sin(a)),)


class Tan(Function):
    """z = tan(a);  dz/da = 1 + z**2, so only the output is saved."""

    flops_per_element = (1, 3)

    def forward(self, a: Array) -> Array:
        z = self.xp.tan(a)
        self.save(z)
        return z

    def backward(self, g: Array) -> tuple[Array]:
        (z,) = self.saved
        return (g * (1 + z * z),)


class Asin(Function):
    """z = asin(a);  dz/da = 1 / sqrt(1 - a**2) (a in (-1, 1))."""

    flops_per_element = (1, 4)

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.xp.arcsin(a)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (g / self.xp.sqrt(1 - a * a),)


class Acos(Function):
    """z = acos(a);  dz/da = -1 / sqrt(1 - a**2) (a in (-1, 1))."""

    flops_per_element = (1, 5)

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.xp.arccos(a)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (-(g / self.xp.sqrt(1 - a * a)),)


class Atan(Function):
    """z = atan(a);  dz/da = 1 / (1 + a**2)."""

    flops_per_element = (1, 3)

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.xp.arctan(a)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (g / (1 + a * a),)


class Sinh(Function):
    """z = sinh(a);  dz/da = cosh(a)."""

    flops_per_element = (1, 2)

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.xp.sinh(a)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (g * self.xp.cosh(a),)


class Cosh(Function):
    """z = cosh(a);  dz/da = sinh(a)."""

    flops_per_element = (1, 2)

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.xp.cosh(a)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (g * self.xp.sinh(a),)


# --- unary: powers, logarithms, exponentials, erf ---------------------------------------------
class Reciprocal(Function):
    """z = 1 / a;  dz/da = -z**2, so only the output is saved."""

    flops_per_element = (1, 3)

    def forward(self, a: Array) -> Array:
        z = 1 / a
        self.save(z)
        return z

    def backward(self, g: Array) -> tuple[Array]:
        (z,) = self.saved
        return (-(g * z * z),)


class Rsqrt(Function):
    """z = 1 / sqrt(a);  dz/da = -z**3 / 2, so only the output is saved."""

    flops_per_element = (2, 4)

    def forward(self, a: Array) -> Array:
        z = 1 / self.xp.sqrt(a)
        self.save(z)
        return z

    def backward(self, g: Array) -> tuple[Array]:
        (z,) = self.saved
        return (g * (-0.5 * z * z * z),)


class Log2(Function):
    """z = log2(a);  dz/da = 1 / (a ln 2)."""

    flops_per_element = (1, 2)

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.xp.log2(a)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (g / (a * LN2),)


class Log1p(Function):
    """z = log(1 + a), exact for small a;  dz/da = 1 / (1 + a)."""

    flops_per_element = (1, 2)

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.xp.log1p(a)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (g / (1 + a),)


class Exp2(Function):
    """z = 2**a;  dz/da = z ln 2, so only the output is saved."""

    flops_per_element = (1, 2)

    def forward(self, a: Array) -> Array:
        z = self.xp.exp2(a)
        self.save(z)
        return z

    def backward(self, g: Array) -> tuple[Array]:
        (z,) = self.saved
        return (g * (z * LN2),)


class Expm1(Function):
    """z = exp(a) - 1, exact for small a;  dz/da = z + 1, so only the output is saved."""

    flops_per_element = (1, 2)

    def forward(self, a: Array) -> Array:
        z = self.xp.expm1(a)
        self.save(z)
        return z

    def backward(self, g: Array) -> tuple[Array]:
        (z,) = self.saved
        return (g * (z + 1),)


class Erf(Function):
    """z = erf(a);  dz/da = 2 / sqrt(pi) exp(-a**2)."""

    flops_per_element = (1, 5)

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.call("erf", a)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (g * (TWO_OVER_SQRT_PI * self.xp.exp(-(a * a))),)


# --- unary: piecewise constant (zero gradient) -------------------------------------------------
ROUNDING = ("floor", "ceil", "round", "trunc", "sign")


class Rounding(Function):
    """z = floor / ceil / round (half to even) / trunc / sign of a: one class, because the
    gradient of each is zero wherever it exists (PyTorch's convention, also at the jumps)."""

    flops_per_element = (1, 0)

    fn: str
    decimals: int

    def forward(self, a: Array) -> Array:
        if self.fn == "round":
            return self.xp.round(a, self.decimals)
        return getattr(self.xp, self.fn)(a)

    def backward(self, g: Array) -> tuple[Array]:
        return (self.xp.zeros_like(g),)


# --- binary ------------------------------------------------------------------------------------
def _check_integer_divisor(a: Array, b: Array, op: str) -> bool:
    """True for integer operands (which divide exactly in integers); raise ZeroDivisionError,
    as PyTorch does, where an integer divisor holds a zero (NumPy would give 0 and a warning)."""
    if a.dtype.kind not in "iub" or b.dtype.kind not in "iub":
        return False
    if bool((b == 0).any()):
        raise ZeroDivisionError(f"{op}: integer division by zero")
    return True


class Atan2(Function):
    """z = atan2(a, b), the angle of the point (b, a);  with r = a**2 + b**2,
    dz/da = b / r,  dz/db = -a / r."""

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return numel(out_shape)

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        need_a, need_b = self.needs_input_grad  # r: 3; a: g b / r, 2; b: -(g a / r), 3
        return numel(out_shape) * (3 + 2 * need_a + 3 * need_b)

    def forward(self, a: Array, b: Array) -> Array:
        self.save(a, b)
        return self.xp.arctan2(a, b)

    def backward(self, g: Array) -> tuple[Array | None, Array | None]:
        a, b = self.saved
        need_a, need_b = self.needs_input_grad
        g_over_r = g / (a * a + b * b)
        return (g_over_r * b if need_a else None), (-(g_over_r * a) if need_b else None)


class Fmod(Function):
    """z = fmod(a, b) = a - trunc(a / b) b, the sign of a (C's fmod);
    dz/da = 1, dz/db = -trunc(a / b) (PyTorch's)."""

    flops_per_element = (1, (0, 4))

    def forward(self, a: Array, b: Array) -> Array:
        _check_integer_divisor(a, b, "fmod")
        self.save(a if self.needs_input_grad[1] else None, b if self.needs_input_grad[1] else None)
        return self.xp.fmod(a, b)

    def backward(self, g: Array) -> tuple[Array | None, Array | None]:
        a, b = self.saved
        return g, (-(g * self.xp.trunc(a / b)) if a is not None else None)


class Remainder(Function):
    """z = a - floor(a / b) b, the sign of b (Python's %, torch.remainder);
    dz/da = 1, dz/db = -floor(a / b)."""

    flops_per_element = (1, (0, 4))

    def forward(self, a: Array, b: Array) -> Array:
        _check_integer_divisor(a, b, "remainder")
        self.save(a if self.needs_input_grad[1] else None, b if self.needs_input_grad[1] else None)
        return self.xp.remainder(a, b)

    def backward(self, g: Array) -> tuple[Array | None, Array | None]:
        a, b = self.saved
        return g, (-(g * self.xp.floor(a / b)) if a is not None else None)


def _rounded_div(xp: object, a: Array, b: Array, mode: str) -> Array:
    """a / b rounded toward zero ("trunc") or down ("floor"); integers divide exactly in
    integers (NumPy's floor_divide), a zero integer divisor raises as in PyTorch."""
    if _check_integer_divisor(a, b, "div"):
        q = xp.floor_divide(a, b)  # type: ignore[attr-defined]
        if mode == "trunc":  # floor went one below where the quotient is negative and inexact
            q = q + ((q < 0) & (q * b != a))
        return q
    return (xp.floor if mode == "floor" else xp.trunc)(a / b)  # type: ignore[attr-defined]


class FloorDivide(Function):
    """z = floor(a / b) (torch.floor_divide, div(rounding_mode="floor"), //). Piecewise
    constant: zero gradient to both inputs, as PyTorch's."""

    flops_per_element = (2, (0, 0))  # divide, floor

    def forward(self, a: Array, b: Array) -> Array:
        return _rounded_div(self.xp, a, b, "floor")

    def backward(self, g: Array) -> tuple[Array, Array]:
        zero = self.xp.zeros_like(g)
        return zero, zero


class TruncDivide(Function):
    """z = trunc(a / b) (div(rounding_mode="trunc"), C's integer division). Piecewise
    constant: zero gradient to both inputs, as PyTorch's."""

    flops_per_element = (2, (0, 0))  # divide, trunc

    def forward(self, a: Array, b: Array) -> Array:
        return _rounded_div(self.xp, a, b, "trunc")

    def backward(self, g: Array) -> tuple[Array, Array]:
        zero = self.xp.zeros_like(g)
        return zero, zero


# --- triangular parts --------------------------------------------------------------------------
class Triangle(Function):
    """z = the lower (tril) or upper (triu) triangle of the last two axes, from the diagonal
    `diagonal` on (0 the main one, > 0 above it, < 0 below); zeros elsewhere. The gradient is
    the same triangle of g."""

    flops_per_element = (1, 1)  # one select each way

    upper: bool
    diagonal: int

    def _part(self, x: Array) -> Array:
        return (self.xp.triu if self.upper else self.xp.tril)(x, self.diagonal)

    def forward(self, a: Array) -> Array:
        return self._part(a)

    def backward(self, g: Array) -> tuple[Array]:
        return (self._part(g),)
