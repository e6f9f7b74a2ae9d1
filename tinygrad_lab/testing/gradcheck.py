"""Numerical gradient checking: autograd gradients against float64 central differences.

`gradcheck(fn, *inputs)` compares, for every floating-point input, what `Tensor.backward`
computes with what finite differences of `fn` give:

- analytic side: the full Jacobian, one backward per output element, when the output has at
  most `max_full_jacobian` elements; otherwise the gradient of `(fn(*x) * w).sum()` for a fixed
  random weight `w` (one backward);
- numeric side: one central difference per input element, when the input has at most
  `max_elementwise` elements; above that, Chainer's check along random directions `d`: the
  directional derivative `(f(x + eps d) - f(x - eps d)) / (2 eps)` against `grad . d`.

Everything runs in float64: float16/float32 inputs are cast up before the check, because central
differences in single precision are dominated by rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinygrad_lab.backends import DEFAULT_DEVICE
from tinygrad_lab.function import no_grad
from tinygrad_lab.tensor import Tensor

__all__ = ["ForwardCheckError", "GradcheckError", "check_forward", "gradcheck"]

DEFAULT_MAX_FULL_JACOBIAN = 64
"""Outputs with at most this many elements get their Jacobian built row by row."""

DEFAULT_MAX_ELEMENTWISE = 512
"""Inputs with at most this many elements are perturbed one element at a time."""

_SHOW = 24  # array elements printed per array in a failure message


class GradcheckError(AssertionError):
    """The analytic gradient of some input disagrees with the numerical one."""


class ForwardCheckError(AssertionError):
    """An op's forward result disagrees with its reference."""


@dataclass
class _Checked:
    """One input under check: its position in `inputs`, float64 values, and device."""

    position: int
    values: np.ndarray
    device: str


@dataclass
class _Worst:
    """The worst-agreeing entry of one input (ratio > 1 means out of tolerance)."""

    ratio: float
    checked: _Checked
    where: str  # "element (i, j)" or "along random direction t"
    row: int  # the output element (full Jacobian) or 0 (weighted sum)
    analytic: float
    numeric: float
    analytic_row: np.ndarray | None
    numeric_row: np.ndarray | None


def _is_float_array(x: Any) -> bool:
    return isinstance(x, (np.ndarray, np.generic)) and np.asarray(x).dtype.kind == "f"


def _prepare(inputs: Sequence[Any]) -> list[_Checked]:
    checked = []
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor) and x.dtype.kind == "f":
            checked.append(_Checked(i, x.numpy().astype(np.float64), x.device))
        elif _is_float_array(x):
            checked.append(_Checked(i, np.array(x, dtype=np.float64), DEFAULT_DEVICE))
    if not checked:
        raise ValueError("gradcheck: no floating-point input (NumPy array or Tensor) to check")
    return checked


def _run(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any],
    checked: Sequence[_Checked],
    values: Sequence[np.ndarray],
) -> tuple[Tensor, list[Tensor]]:
    """Call fn with fresh float64 leaves (copies, so fn cannot alter our values)."""
    args = list(inputs)
    leaves = []
    for c, v in zip(checked, values):
        leaf = Tensor(v.copy(), requires_grad=True, device=c.device)
        args[c.position] = leaf
        leaves.append(leaf)
    out = fn(*args)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    if out.dtype != np.float64:
        raise TypeError(
            f"gradcheck: fn returned a {out.dtype} tensor from float64 inputs; the check runs in "
            "float64, so fn must not cast its result down"
        )
    return out, leaves


def _analytic(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any],
    checked: Sequence[_Checked],
    seeds: np.ndarray,
    out_shape: tuple[int, ...],
) -> list[np.ndarray]:
    """Rows seeds[r] @ J_i for every checked input i: one (rows, size_i) matrix per input."""
    rows = [np.zeros((len(seeds), c.values.size)) for c in checked]
    for r, seed in enumerate(seeds):
        out, leaves = _run(fn, inputs, checked, [c.values for c in checked])
        if not out.requires_grad:
            continue  # fn built no graph: every analytic gradient is zero
        out.backward(Tensor(seed.reshape(out_shape), device=out.device))
        for i, (c, leaf) in enumerate(zip(checked, leaves)):
            if leaf.grad is None:
                continue
            if leaf.grad.shape != c.values.shape or leaf.grad.dtype != np.float64:
                raise GradcheckError(
                    f"gradcheck: the gradient of input {c.position} has shape {leaf.grad.shape} "
                    f"and dtype {leaf.grad.dtype}; expected {c.values.shape} and float64"
                )
            rows[i][r] = leaf.grad.numpy().ravel()
    return rows


def _numeric(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any],
    checked: Sequence[_Checked],
    which: int,
    direction: np.ndarray,
    eps: float,
) -> np.ndarray:
    """(f(x + eps d) - f(x - eps d)) / (2 eps), moving input `which` only, flattened."""
    base = [c.values for c in checked]
    sides = []
    for sign in (1.0, -1.0):
        values = list(base)
        values[which] = base[which] + sign * eps * direction
        with no_grad():
            out, _ = _run(fn, inputs, checked, values)
        sides.append(out.numpy())
    # differencing the outputs before any weighting keeps untouched elements exactly zero
    return ((sides[0] - sides[1]) / (2 * eps)).ravel()


def _ratio(a: np.ndarray, n: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        ratio = np.abs(a - n) / (atol + rtol * np.abs(n))
    return np.where(np.isfinite(a) & np.isfinite(n), ratio, np.inf)


def _fmt(x: np.ndarray) -> str:
    return np.array2string(x, precision=6, threshold=_SHOW, edgeitems=3, separator=", ")


def _index(flat: int, shape: tuple[int, ...]) -> str:
    return str(tuple(int(i) for i in np.unravel_index(flat, shape))) if shape else "()"


def _report(
    worst: _Worst,
    inputs: Sequence[Any],
    output_name: Callable[[int], str],
    out_shape: tuple[int, ...],
    mode: str,
    atol: float,
    rtol: float,
) -> str:
    c = worst.checked
    err = abs(worst.analytic - worst.numeric)
    rel = err / abs(worst.numeric) if worst.numeric != 0 else float("inf")
    shapes = [tuple(np.shape(x.numpy() if isinstance(x, Tensor) else x)) for x in inputs]
    lines = [
        f"gradcheck failed for input {c.position} (shape {c.values.shape}), {worst.where}, "
        f"{output_name(worst.row)}:",
        f"  analytic {worst.analytic!r}, numeric {worst.numeric!r}, abs error {err:.3g}, "
        f"rel error {rel:.3g} (atol {atol:g}, rtol {rtol:g})",
        f"input shapes {shapes}, output shape {out_shape}; checked: {mode}",
    ]
    if worst.analytic_row is not None:
        lines.append(f"analytic gradient of input {c.position}:\n{_fmt(worst.analytic_row)}")
    if worst.numeric_row is not None:
        lines.append(f"numeric gradient of input {c.position}:\n{_fmt(worst.numeric_row)}")
    lines.append(f"input {c.position} (as float64):\n{_fmt(c.values)}")
    return "\n".join(lines)


def gradcheck(
    fn: Callable[..., Tensor],
    *inputs: Any,
    eps: float = 1e-6,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    raise_exception: bool = True,
    max_full_jacobian: int = DEFAULT_MAX_FULL_JACOBIAN,
    max_elementwise: int = DEFAULT_MAX_ELEMENTWISE,
    n_directions: int = 2,
    seed: int = 0,
) -> bool:
    """Check the autograd gradients of `fn` against float64 central differences.

    fn: maps the inputs (floating ones as Tensors) to one Tensor; it must be deterministic.
    inputs: NumPy arrays, NumPy scalars or Tensors. Floating-point ones are checked, always in
        float64: each becomes a float64 Tensor with requires_grad=True on its original device.
        Anything else (integer labels, boolean masks, Python numbers) is passed through
        unchanged and not checked.
    eps: the central-difference step. atol, rtol: an entry passes when
        |analytic - numeric| <= atol + rtol * |numeric|.
    max_full_jacobian: outputs with at most this many elements are checked through their full
        Jacobian (one backward per output element); larger outputs through the gradient of
        `(fn(*x) * w).sum()` for a random weight `w`.
    max_elementwise: inputs with at most this many elements get one central difference per
        element; larger inputs are checked along `n_directions` random unit directions.
    seed: seeds `w` and the directions, so a failure reproduces.

    Returns True when every entry agrees. Otherwise raises GradcheckError naming the worst entry
    (input, element, output element, analytic and numeric values, errors), the input shapes, both
    gradients and the input, or returns False when raise_exception=False.

    >>> gradcheck(lambda a, b: (a * b).tanh(), np.random.randn(3, 4), np.random.randn(4))
    True
    """
    if n_directions < 1:
        raise ValueError(f"gradcheck: n_directions must be >= 1, got {n_directions}")
    checked = _prepare(inputs)
    rng = np.random.default_rng(seed)
    out, _ = _run(fn, inputs, checked, [c.values for c in checked])
    full = out.size <= max_full_jacobian
    if full:
        seeds = np.eye(out.size)  # row k of the Jacobian = backward from the k-th unit vector
        mode = f"full Jacobian ({out.size} output elements)"
    else:
        seeds = rng.standard_normal((1, out.size))
        mode = "gradient of (fn(*x) * w).sum() for a random weight w"
    analytic = _analytic(fn, inputs, checked, seeds, out.shape)

    def output_name(row: int) -> str:
        return f"output element {_index(row, out.shape)}" if full else "output (fn(*x) * w).sum()"

    worst: _Worst | None = None
    for i, c in enumerate(checked):
        if c.values.size <= max_elementwise:
            found = _per_element(fn, inputs, checked, i, analytic[i], seeds, eps, atol, rtol)
        else:
            directions = [rng.standard_normal(c.values.shape) for _ in range(n_directions)]
            found = _along_directions(
                fn, inputs, checked, i, analytic[i], seeds, directions, eps, atol, rtol
            )
        if found is not None and (worst is None or found.ratio > worst.ratio):
            worst = found
    if worst is None or worst.ratio <= 1.0:
        return True
    if raise_exception:
        raise GradcheckError(_report(worst, inputs, output_name, out.shape, mode, atol, rtol))
    return False


def _per_element(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any],
    checked: Sequence[_Checked],
    i: int,
    analytic: np.ndarray,
    seeds: np.ndarray,
    eps: float,
    atol: float,
    rtol: float,
) -> _Worst | None:
    """One central difference per element of input i; the worst (row, element) entry."""
    c = checked[i]
    numeric = np.zeros_like(analytic)
    for j in range(c.values.size):
        unit = np.zeros(c.values.shape)
        unit.flat[j] = 1.0
        numeric[:, j] = seeds @ _numeric(fn, inputs, checked, i, unit, eps)
    ratio = _ratio(analytic, numeric, atol, rtol)
    if ratio.size == 0:
        return None
    r, j = (int(k) for k in np.unravel_index(int(np.argmax(ratio)), ratio.shape))
    return _Worst(
        ratio=float(ratio[r, j]),
        checked=c,
        where=f"element {_index(j, c.values.shape)}",
        row=r,
        analytic=float(analytic[r, j]),
        numeric=float(numeric[r, j]),
        analytic_row=analytic[r].reshape(c.values.shape),
        numeric_row=numeric[r].reshape(c.values.shape),
    )


def _along_directions(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any],
    checked: Sequence[_Checked],
    i: int,
    analytic: np.ndarray,
    seeds: np.ndarray,
    directions: Sequence[np.ndarray],
    eps: float,
    atol: float,
    rtol: float,
) -> _Worst | None:
    """Chainer's check: directional derivatives along unit directions against grad . d."""
    c = checked[i]
    worst = None
    for t, d in enumerate(directions):
        d = d / np.linalg.norm(d)
        numeric = seeds @ _numeric(fn, inputs, checked, i, d, eps)
        projected = analytic @ d.ravel()
        ratio = _ratio(projected, numeric, atol, rtol)
        if ratio.size == 0:
            return None
        r = int(np.argmax(ratio))
        if worst is None or ratio[r] > worst.ratio:
            worst = _Worst(
                ratio=float(ratio[r]),
                checked=c,
                where=f"along random direction {t + 1} of {len(directions)}",
                row=r,
                analytic=float(projected[r]),
                numeric=float(numeric[r]),
                analytic_row=analytic[r].reshape(c.values.shape),
                numeric_row=None,
            )
    return worst


def check_forward(
    fn: Callable[..., Tensor],
    reference: Callable[..., Any],
    *inputs: Any,
    atol: float = 1e-8,
    rtol: float = 1e-7,
    check_dtype: bool = True,
) -> bool:
    """Check `fn` (on Tensors) against `reference` (the same maths on NumPy arrays).

    NumPy arrays and Tensors in `inputs` reach fn as Tensors (dtype kept) and reference as
    arrays; anything else is passed to both unchanged. The shapes must be equal (no
    broadcasting), the values close (`atol + rtol * |expected|`), and with check_dtype the dtypes
    equal. Returns True, or raises ForwardCheckError naming the worst element.
    """
    tensors = [Tensor(x) if isinstance(x, (np.ndarray, np.generic)) else x for x in inputs]
    arrays = [x.numpy() if isinstance(x, Tensor) else x for x in inputs]
    got_t = fn(*tensors)
    if not isinstance(got_t, Tensor):
        raise TypeError(f"check_forward: fn must return a Tensor, got {type(got_t).__name__}")
    got, want = got_t.numpy(), np.asarray(reference(*arrays))
    shapes = [tuple(np.shape(a)) for a in arrays]
    if got.shape != want.shape:
        raise ForwardCheckError(
            f"check_forward: output shape {got.shape}, reference shape {want.shape} "
            f"(input shapes {shapes})"
        )
    if check_dtype and got.dtype != want.dtype:
        raise ForwardCheckError(
            f"check_forward: output dtype {got.dtype}, reference dtype {want.dtype} "
            f"(input shapes {shapes})"
        )
    g64, w64 = got.astype(np.float64), want.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        ratio = np.abs(g64 - w64) / (atol + rtol * np.abs(w64))
    same = (g64 == w64) | (np.isnan(g64) & np.isnan(w64))
    ratio = np.where(same, 0.0, np.nan_to_num(ratio, nan=np.inf))
    if ratio.size and ratio.max() > 1.0:
        k = int(np.argmax(ratio))
        raise ForwardCheckError(
            f"check_forward: output element {_index(k, got.shape)} is {g64.ravel()[k]!r}, "
            f"reference {w64.ravel()[k]!r} (abs error {abs(g64.ravel()[k] - w64.ravel()[k]):.3g}, "
            f"atol {atol:g}, rtol {rtol:g}); input shapes {shapes}\n"
            f"output:\n{_fmt(got)}\nreference:\n{_fmt(want)}"
        )
    return True
