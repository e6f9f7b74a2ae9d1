"""Least-squares fits of a sweep: pure NumPy functions of arrays, tested on synthetic data.

- `overhead_rate(flops, seconds)`: step time = overhead + FLOPs / rate, fitted on relative
  error (each step weighs the same whatever its size), so the small steps pin the overhead and
  the large ones the rate.
- `power_law(x, y)`: y = coefficient * x ** exponent on log-log axes.
- `through_origin(x, y)`: the slope of y = slope * x (bytes per parameter, per sample).
- `crossovers(x, ratio)`: where a ratio crosses 1, interpolated on log axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ArrayLike = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class OverheadRate:
    """step seconds = overhead_s + flops / rate_flops (rate in FLOP/s)."""

    overhead_s: float
    rate_flops: float
    points: int

    def seconds(self, flops: float | np.ndarray) -> float | np.ndarray:
        return self.overhead_s + np.asarray(flops, dtype=np.float64) / self.rate_flops

    def flops_where_overhead_is(self, share: float = 0.1) -> float:
        """The step FLOPs at which the fixed overhead is `share` of the step time:
        a / (a + F / r) = share  =>  F = a * r * (1 - share) / share."""
        if self.overhead_s <= 0:
            return 0.0
        return self.overhead_s * self.rate_flops * (1 - share) / share


@dataclass(frozen=True)
class PowerLaw:
    """y = coefficient * x ** exponent."""

    coefficient: float
    exponent: float
    points: int

    def __call__(self, x: float | np.ndarray) -> float | np.ndarray:
        return self.coefficient * np.asarray(x, dtype=np.float64) ** self.exponent

    def inverse(self, y: float) -> float:
        return float((y / self.coefficient) ** (1 / self.exponent))


def _clean(*columns: ArrayLike, positive: bool = True) -> list[np.ndarray]:
    arrays = [np.asarray(c, dtype=np.float64) for c in columns]
    if len({a.shape for a in arrays}) != 1:
        raise ValueError(f"fit: columns of different lengths {[a.shape for a in arrays]}")
    keep = np.all([np.isfinite(a) & ((a > 0) if positive else True) for a in arrays], axis=0)
    return [a[keep] for a in arrays]


def overhead_rate(flops: ArrayLike, seconds: ArrayLike) -> OverheadRate:
    """Fit seconds = a + flops / r by least squares on the relative error (rows weighted by
    1 / seconds). Needs two points with different FLOPs; the overhead may come out negative
    when the data do not support one (it is reported as fitted)."""
    f, t = _clean(flops, seconds)
    if f.size < 2 or np.ptp(f) == 0:
        raise ValueError("overhead_rate: need at least two steps with different FLOPs")
    design = np.stack([np.ones_like(f), f], axis=1) / t[:, None]  # (n, 2), each row / t
    (a, inv_rate), *_ = np.linalg.lstsq(design, np.ones_like(t), rcond=None)
    if inv_rate <= 0:
        raise ValueError("overhead_rate: step time does not grow with FLOPs")
    return OverheadRate(float(a), float(1 / inv_rate), int(f.size))


def power_law(x: ArrayLike, y: ArrayLike) -> PowerLaw:
    """Fit y = c * x ** k by least squares on log y against log x (positive values only)."""
    xs, ys = _clean(x, y)
    if xs.size < 2 or np.ptp(xs) == 0:
        raise ValueError("power_law: need at least two different x values")
    k, log_c = np.polyfit(np.log(xs), np.log(ys), 1)
    return PowerLaw(float(np.exp(log_c)), float(k), int(xs.size))


def through_origin(x: ArrayLike, y: ArrayLike) -> float:
    """The least-squares slope of y = slope * x."""
    xs, ys = _clean(x, y)
    if xs.size == 0:
        raise ValueError("through_origin: no positive points")
    return float(np.dot(xs, ys) / np.dot(xs, xs))


def linear(x: ArrayLike, y: ArrayLike) -> tuple[float, float]:
    """(intercept, slope) of y = intercept + slope * x by least squares."""
    xs, ys = _clean(x, y, positive=False)
    if xs.size < 2 or np.ptp(xs) == 0:
        raise ValueError("linear: need at least two different x values")
    slope, intercept = np.polyfit(xs, ys, 1)
    return float(intercept), float(slope)


def crossovers(x: ArrayLike, ratio: ArrayLike, band: float = 0.0) -> list[float]:
    """The x where `ratio` (ours / PyTorch) crosses 1, interpolating log ratio linearly in
    log x between neighbouring points (sorted by x); empty when one side wins throughout.
    Points within `band` of 1 (|log ratio| < log(1 + band): a tie) are left out, so a ratio
    wavering around 1.00 does not count as crossings."""
    xs, rs = _clean(x, ratio)
    keep = np.abs(np.log(rs)) >= np.log1p(band) if band > 0 else np.ones(xs.shape, bool)
    xs, rs = xs[keep], rs[keep]
    order = np.argsort(xs)
    lx, lr = np.log(xs[order]), np.log(rs[order])
    out = []
    for i in range(lx.size - 1):
        if lr[i] == 0:
            out.append(float(np.exp(lx[i])))
        elif lr[i] * lr[i + 1] < 0:
            w = lr[i] / (lr[i] - lr[i + 1])
            out.append(float(np.exp(lx[i] + w * (lx[i + 1] - lx[i]))))
    if lx.size and lr[-1] == 0:
        out.append(float(np.exp(lx[-1])))
    return out


__all__ = ["OverheadRate", "PowerLaw", "crossovers", "linear", "overhead_rate", "power_law",
           "through_origin"]
