"""Statistics over seeds: mean with a t 95% CI, paired differences against medcompile.

Seeds are the unit of replication (each seed is a fresh world: new latent difficulty,
topic and bias per question), so CIs are over seeds; test-sample noise is already
averaged out inside each row (expected accuracy over replicates).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

# two-sided 95% t quantiles, df 1..30 (beyond: normal)
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t975(df: int) -> float:
    return _T975[df - 1] if 1 <= df <= len(_T975) else 1.96


@dataclass(frozen=True)
class MeanCI:
    n: int
    mean: float
    low: float
    high: float

    def fmt(self, scale: float = 100.0, signed: bool = False) -> str:
        if self.n == 0:
            return "-"
        s = "+" if signed else ""
        if self.n == 1:
            return f"{self.mean * scale:{s}.1f} (n=1)"
        return f"{self.mean * scale:{s}.1f} [{self.low * scale:{s}.1f}, {self.high * scale:{s}.1f}] n={self.n}"


def mean_ci(xs: Sequence[float]) -> MeanCI:
    xs = [float(x) for x in xs]
    n = len(xs)
    if n == 0:
        return MeanCI(0, float("nan"), float("nan"), float("nan"))
    m = sum(xs) / n
    if n == 1:
        return MeanCI(1, m, float("nan"), float("nan"))
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    h = t975(n - 1) * sd / math.sqrt(n)
    return MeanCI(n, m, m - h, m + h)


def verdict(diff: MeanCI, who: str = "medcompile") -> str:
    """diff = other regret - medcompile regret: > 0 means medcompile chose better."""
    if diff.n < 2 or math.isnan(diff.low):
        return "not resolved (n < 2)"
    if diff.low > 0:
        return f"{who} better"
    if diff.high < 0:
        return f"{who} worse"
    return "not resolved"
