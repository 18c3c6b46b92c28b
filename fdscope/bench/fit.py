"""Least-squares growth: how much the cost per event rises per 1,000 idle fds, and how well a
straight line describes it (so a flat line is not over-read and a curve not under-read)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Two-sided 95% critical values of Student's t for 1..30 degrees of freedom; 1.96 beyond.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
# A slope counts as growth only when the line rises across the measured range by at least this
# fraction of the cost at the smallest size (below it, the change is too small to matter).
MIN_RISE = 0.10


def t95(df: int) -> float:
    """Student's t for a two-sided 95% interval with `df` degrees of freedom (df >= 1)."""
    return _T95[df - 1] if df <= len(_T95) else 1.96


@dataclass(frozen=True)
class LinearFit:
    """y = intercept + slope * x by ordinary least squares."""

    slope: float
    intercept: float
    r2: float | None  # None when every y is equal (nothing to explain)
    slope_ci95: float | None  # half-width of the slope's 95% interval; None with 2 points
    residual_sd: float | None
    points: int


def least_squares(xs: Sequence[float], ys: Sequence[float]) -> LinearFit | None:
    """The least-squares line through (xs, ys); None for fewer than 2 distinct x."""
    n = len(xs)
    if n != len(ys) or n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    syy = sum((y - my) ** 2 for y in ys)
    slope = sxy / sxx
    intercept = my - slope * mx
    sse = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    r2 = None if syy == 0 else max(0.0, 1 - sse / syy)
    if n > 2:
        sd = math.sqrt(sse / (n - 2))
        ci = t95(n - 2) * sd / math.sqrt(sxx)
    else:
        sd = ci = None
    return LinearFit(slope, intercept, r2, ci, sd, n)


@dataclass(frozen=True)
class Growth:
    """A mechanism's cost growth per 1,000 idle fds, with the fit's quality and a verdict."""

    per_1000: float
    ci95_per_1000: float | None
    r2: float | None
    points: int
    verdict: str  # "grows", "flat" or "too few points"
    # Between adjacent sizes: (from, to, change of the cost in µs, that change per 1,000 fds).
    steps: tuple[tuple[int, int, float, float], ...]

    def to_json(self) -> dict[str, object]:
        return {
            "us_per_1000_idle": round(self.per_1000, 4),
            "ci95_us_per_1000_idle": None if self.ci95_per_1000 is None
            else round(self.ci95_per_1000, 4),
            "r2": None if self.r2 is None else round(self.r2, 4),
            "points": self.points,
            "verdict": self.verdict,
            "steps": [{"from": a, "to": b, "delta_us": round(d, 4),
                       "us_per_1000_idle": round(s, 4)} for a, b, d, s in self.steps],
        }


def growth(sizes: Sequence[int], costs: Sequence[float]) -> Growth | None:
    """Fit cost (µs) against size (fds); None when no line can be fitted.

    Verdict "grows": the slope's 95% interval excludes zero (or, with only two points, the slope
    is positive) and the line rises over the measured range by at least MIN_RISE of the cost at
    the smallest size. Otherwise "flat": whatever slope the noise produced is not growth."""
    pairs = sorted(zip(sizes, costs, strict=True))
    fit = least_squares([float(s) for s, _ in pairs], [c for _, c in pairs])
    if fit is None:
        return None
    lo, hi = pairs[0][0], pairs[-1][0]
    base = pairs[0][1]
    rise = fit.slope * (hi - lo)
    significant = fit.slope > 0 if fit.slope_ci95 is None else fit.slope - fit.slope_ci95 > 0
    verdict = "grows" if significant and rise >= MIN_RISE * abs(base) else "flat"
    steps = tuple((a, b, cb - ca, (cb - ca) / (b - a) * 1000)
                  for (a, ca), (b, cb) in zip(pairs, pairs[1:], strict=False) if b > a)
    return Growth(fit.slope * 1000, None if fit.slope_ci95 is None else fit.slope_ci95 * 1000,
                  fit.r2, fit.points, verdict, steps)
