"""Uncertainty for accuracy numbers and paired comparisons of two programs.

A few hundred questions give accuracy intervals several points wide, so every number
the project reports should carry a confidence interval, and every "B beats A" claim
a paired test. All functions are pure and seeded: same inputs, same output.

Inputs are per-question correctness flags. ``None`` means the program abstained
(no parseable answer) and counts as wrong, as it does in the accuracy itself.

Bootstrap note: resampling n 0/1 values with replacement and taking the mean has
exactly the distribution Binomial(n, p_hat)/n (and paired diffs in {-1, 0, 1} are
Multinomial), so we draw those directly: the same percentile bootstrap, without an
n_boot x n index matrix.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import stats as _st

Correct = Sequence[bool | None] | np.ndarray


@dataclass(frozen=True)
class CI:
    """A point estimate with a two-sided interval at `level`, from `n` questions.
    Accuracies are proportions in [0, 1]; `pts` formats them as percentage points."""

    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95

    def pts(self, signed: bool = False) -> str:
        """E.g. ``"71.3 (95% CI 68.8 to 73.7)"``."""
        m = f"{100 * self.mean:+.1f}" if signed else f"{100 * self.mean:.1f}"
        return f"{m} ({_lvl(self.level)}% CI {100 * self.low:.1f} to {100 * self.high:.1f})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DiffCI(CI):
    """CI of mean(b - a) over paired questions, with the bootstrap p-value for 'no difference'."""

    p_value: float = 1.0


@dataclass(frozen=True)
class WinTieLoss:
    """Paired outcome counts from B's side: wins = B right where A was wrong."""

    wins: int
    ties: int
    losses: int
    both_correct: int
    both_wrong: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def as_correct(values: Correct) -> np.ndarray:
    """Per-question flags as a bool array; None (abstention) -> False. Anything but
    bools, 0/1 and None is rejected, so a list of predicted letters cannot slip in."""
    arr = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D sequence of correctness flags, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.copy()
    out = np.zeros(len(arr), dtype=bool)
    for i, v in enumerate(arr.tolist()):
        if v is None:
            continue
        if isinstance(v, (bool, int, float)) and v in (0, 1):
            out[i] = bool(v)
        else:
            raise ValueError(f"correctness flag #{i} must be True/False/None (or 0/1), got {v!r}")
    return out


def _nonempty(x: np.ndarray, what: str) -> int:
    if len(x) == 0:
        raise ValueError(f"{what}: no questions")
    return len(x)


def _check(level: float, n_boot: int | None = None) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot is not None and n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")


def _lvl(level: float) -> str:
    return f"{100 * level:g}"


def accuracy(correct: Correct) -> float:
    """Fraction correct; abstentions (None) are wrong."""
    x = as_correct(correct)
    return float(x.mean()) if _nonempty(x, "accuracy") else 0.0


def accuracy_ci(correct: Correct, *, n_boot: int = 10000, seed: int = 0, level: float = 0.95) -> CI:
    """Accuracy with a percentile-bootstrap interval (see the module note)."""
    _check(level, n_boot)
    x = as_correct(correct)
    n = _nonempty(x, "accuracy_ci")
    p = float(x.mean())
    boot = np.random.default_rng(seed).binomial(n, p, size=n_boot) / n
    low, high = np.quantile(boot, [(1 - level) / 2, 1 - (1 - level) / 2])
    return CI(p, float(low), float(high), n, level)


def wilson_ci(correct: Correct, *, level: float = 0.95) -> CI:
    """Accuracy with the Wilson score interval: closed form, sensible near 0 and 1."""
    _check(level)
    x = as_correct(correct)
    n = _nonempty(x, "wilson_ci")
    p = float(x.mean())
    z = float(_st.norm.ppf(1 - (1 - level) / 2))
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Clamp: rounding can put centre - half a hair above p when p is 0 (or 1).
    return CI(p, min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)), n, level)


def _paired(a_correct: Correct, b_correct: Correct, what: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_correct(a_correct), as_correct(b_correct)
    if len(a) != len(b):
        raise ValueError(f"{what}: paired inputs differ in length ({len(a)} vs {len(b)}); "
                         "score both programs on the same questions in the same order")
    _nonempty(a, what)
    return a, b


def paired_bootstrap(a_correct: Correct, b_correct: Correct, n_boot: int = 10000, seed: int = 0, *,
                     level: float = 0.95) -> DiffCI:
    """Percentile-bootstrap CI of mean(b - a), resampling questions (pairs).

    p-value by the shift method: centre the bootstrap distribution on 0 (the null of
    no difference) and count resampled diffs at least as far from 0 as the observed
    one, two-sided, with the +1 correction: p = (1 + #{|d* - d| >= |d|}) / (n_boot + 1).
    Identical inputs give p = 1; p is never exactly 0.
    """
    _check(level, n_boot)
    a, b = _paired(a_correct, b_correct, "paired_bootstrap")
    n = len(a)
    wins, losses = int(np.sum(b & ~a)), int(np.sum(a & ~b))
    counts = np.random.default_rng(seed).multinomial(n, [wins / n, losses / n, (n - wins - losses) / n],
                                                     size=n_boot)
    net = counts[:, 0] - counts[:, 1]  # n * d*, integers, so comparisons are exact
    observed = wins - losses
    boot = net / n
    low, high = np.quantile(boot, [(1 - level) / 2, 1 - (1 - level) / 2])
    extreme = int(np.sum(np.abs(net - observed) >= abs(observed)))
    p = (1 + extreme) / (n_boot + 1)
    return DiffCI(observed / n, float(low), float(high), n, level, min(1.0, p))


def mcnemar_exact(b: int, c: int, *, mid_p: bool = False) -> float:
    """Exact two-sided McNemar test on the discordant counts b (A right, B wrong) and
    c (A wrong, B right): binomial test of min(b, c) among b + c at 1/2, doubled and
    capped at 1. ``mid_p`` subtracts half the point probability (less conservative)."""
    for name, v in (("b", b), ("c", c)):
        if isinstance(v, bool) or int(v) != v or v < 0:
            raise ValueError(f"mcnemar_exact: {name} must be a non-negative integer, got {v!r}")
    b, c = int(b), int(c)
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = float(_st.binom.cdf(k, n, 0.5))
    if mid_p:
        tail -= 0.5 * float(_st.binom.pmf(k, n, 0.5))
    return min(1.0, 2.0 * tail)


def mcnemar_paired(a_correct: Correct, b_correct: Correct, *, mid_p: bool = False) -> float:
    """`mcnemar_exact` on two per-question correctness vectors."""
    w = win_tie_loss(a_correct, b_correct)
    return mcnemar_exact(w.losses, w.wins, mid_p=mid_p)


def win_tie_loss(a: Correct, b: Correct) -> WinTieLoss:
    """Per-question comparison of B against A."""
    x, y = _paired(a, b, "win_tie_loss")
    both_c, both_w = int(np.sum(x & y)), int(np.sum(~x & ~y))
    return WinTieLoss(int(np.sum(y & ~x)), both_c + both_w, int(np.sum(x & ~y)), both_c, both_w)


def format_p(p: float, alpha: float = 0.05) -> str:
    """Short p-value text that never rounds across `alpha` (0.0496 is not shown as 0.05)."""
    if p < 0.001:
        return "p<0.001"
    for digits in (2, 3, 4):
        s = f"{p:.{digits}g}"
        if (float(s) < alpha) == (p < alpha):
            return f"p={s}"
    return f"p={p:.6g}"


def verdict(name_a: str, name_b: str, diff_ci: CI, p: float, alpha: float = 0.05, *,
            test: str = "McNemar") -> str:
    """One sentence comparing B with A that carries its uncertainty. `diff_ci` is the CI
    of mean(b - a) (proportions); `p` comes from `test`.

    Significant (p < alpha) and the CI excludes 0: "B better than A by 4.3 points
    (95% CI 1.2 to 7.5), McNemar p=0.008, n=254". Significant but the CI touches 0:
    "weak evidence ...". Otherwise: "no significant difference ...".
    """
    d, lo, hi = 100 * diff_ci.mean, 100 * diff_ci.low, 100 * diff_ci.high
    lvl, ps, n = _lvl(diff_ci.level), format_p(p, alpha), diff_ci.n
    if p < alpha and d != 0:
        better = d > 0
        word = "better" if better else "worse"
        # Report the magnitude and its CI in the same direction as the sentence.
        m_lo, m_hi = (lo, hi) if better else (-hi, -lo)
        if m_lo > 0:
            return (f"{name_b} {word} than {name_a} by {abs(d):.1f} points ({lvl}% CI {m_lo:.1f} to {m_hi:.1f}), "
                    f"{test} {ps}, n={n}")
        return (f"weak evidence that {name_b} is {word} than {name_a}: diff {d:+.1f} points, but the {lvl}% CI "
                f"{lo:.1f} to {hi:.1f} includes 0 ({test} {ps}, n={n})")
    return (f"no significant difference between {name_a} and {name_b} ({name_b} - {name_a}: {d:+.1f} points, "
            f"{lvl}% CI {lo:.1f} to {hi:.1f}, {test} {ps}, n={n})")


@dataclass(frozen=True)
class Comparison:
    """Everything a report needs to compare two programs on the same questions."""

    name_a: str
    name_b: str
    acc_a: CI
    acc_b: CI
    diff: DiffCI
    mcnemar_p: float
    wtl: WinTieLoss
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(a_correct: Correct, b_correct: Correct, *, name_a: str = "A", name_b: str = "B",
            n_boot: int = 10000, seed: int = 0, level: float = 0.95, alpha: float = 0.05) -> Comparison:
    """Accuracy CIs for both, paired-bootstrap CI of the difference, exact McNemar p,
    win/tie/loss and the verdict (which uses the McNemar p)."""
    diff = paired_bootstrap(a_correct, b_correct, n_boot, seed, level=level)
    wtl = win_tie_loss(a_correct, b_correct)
    p = mcnemar_exact(wtl.losses, wtl.wins)
    return Comparison(name_a, name_b, accuracy_ci(a_correct, n_boot=n_boot, seed=seed, level=level),
                      accuracy_ci(b_correct, n_boot=n_boot, seed=seed, level=level), diff, p, wtl,
                      verdict(name_a, name_b, diff, p, alpha))


def percentiles(values: Iterable[float], ps: Sequence[float] = (50, 90, 99)) -> dict[float, float]:
    """Percentiles (linear interpolation) of e.g. latencies or token counts, keyed by p."""
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        raise ValueError("percentiles: no values")
    if np.isnan(arr).any():
        raise ValueError("percentiles: values contain NaN")
    for p in ps:
        if not 0 <= p <= 100:
            raise ValueError(f"percentiles: {p} is not in [0, 100]")
    return {p: float(np.percentile(arr, p)) for p in ps}
