"""Statistics: exact McNemar against textbook values and scipy, bootstrap coverage on
simulated data, paired bootstrap power and calibration, and verdict wording."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from medcompile.evaluate import (CI, DiffCI, accuracy, accuracy_ci, as_correct, compare, format_p,
                                 mcnemar_exact, mcnemar_paired, paired_bootstrap, percentiles, verdict,
                                 wilson_ci, win_tie_loss)

# ----------------------------------------------------------------------------- McNemar


def test_mcnemar_exact_textbook_table() -> None:
    # b=1, c=9: two-sided exact p = 2 * P(X <= 1 | n=10, 1/2) = 2 * 11/1024.
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024, abs=1e-12)
    assert round(mcnemar_exact(1, 9), 5) == 0.02148
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    # mid-p: subtract half of P(X = 1) = 10/1024 on each side.
    assert mcnemar_exact(1, 9, mid_p=True) == pytest.approx(12 / 1024, abs=1e-12)


def test_mcnemar_edge_cases() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(5, 5, mid_p=True) == pytest.approx(1.0)
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError):
            mcnemar_exact(bad, 3)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 300), st.integers(0, 300))
def test_mcnemar_matches_scipy_binomtest(b: int, c: int) -> None:
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5, alternative="two-sided").pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert mcnemar_exact(b, c, mid_p=True) <= mcnemar_exact(b, c) + 1e-12


def test_mcnemar_paired_counts_discordant_pairs() -> None:
    a = [True] * 10 + [True] * 1 + [False] * 9 + [False] * 5
    b = [True] * 10 + [False] * 1 + [True] * 9 + [False] * 5
    assert mcnemar_paired(a, b) == pytest.approx(mcnemar_exact(1, 9))
    w = win_tie_loss(a, b)
    assert (w.wins, w.ties, w.losses, w.both_correct, w.both_wrong) == (9, 15, 1, 10, 5)


# ----------------------------------------------------------------------------- accuracy CIs


def test_abstentions_count_as_wrong() -> None:
    flags = [True, None, False, True]
    assert accuracy(flags) == 0.5
    assert accuracy_ci(flags).mean == 0.5 and wilson_ci(flags).mean == 0.5
    assert as_correct(np.array([1, 0, 1])).tolist() == [True, False, True]
    with pytest.raises(ValueError, match="correctness flag #1"):
        as_correct([True, "B"])
    with pytest.raises(ValueError, match="no questions"):
        accuracy_ci([])


def test_accuracy_ci_is_seeded() -> None:
    flags = [True] * 70 + [False] * 30
    a, b = accuracy_ci(flags, seed=3), accuracy_ci(flags, seed=3)
    assert a == b
    other = accuracy_ci(flags, seed=4)  # another seed: a different draw, but the same interval to ~1 point
    assert abs(other.low - a.low) <= 0.011 and abs(other.high - a.high) <= 0.011


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.booleans(), st.none()), min_size=1, max_size=400), st.integers(0, 2**32 - 1))
def test_intervals_contain_the_estimate_and_stay_in_0_1(flags: list[bool | None], seed: int) -> None:
    for ci in (accuracy_ci(flags, n_boot=500, seed=seed), wilson_ci(flags)):
        assert 0.0 <= ci.low <= ci.mean <= ci.high <= 1.0
        assert ci.n == len(flags)


def test_bootstrap_width_matches_normal_theory() -> None:
    # n=1000, p=0.7: the 95% interval half-width should be close to 1.96*sqrt(p(1-p)/n) = 0.0284.
    ci = accuracy_ci([True] * 700 + [False] * 300)
    assert (ci.high - ci.low) / 2 == pytest.approx(1.96 * math.sqrt(0.21 / 1000), rel=0.08)


@pytest.mark.parametrize("p, n", [(0.5, 100), (0.7, 254), (0.85, 400)])
def test_bootstrap_and_wilson_coverage_near_nominal(p: float, n: int) -> None:
    """Simulate 800 benchmark runs with known true accuracy p; a 95% interval should
    cover p in about 95% of them (binomial sd of the estimate ~0.8 points)."""
    rng = np.random.default_rng(20240601 + n)
    sims = 800
    hits_boot = hits_wilson = 0
    for i in range(sims):
        flags = rng.random(n) < p
        boot = accuracy_ci(flags, n_boot=2000, seed=i)
        wil = wilson_ci(flags)
        hits_boot += boot.low <= p <= boot.high
        hits_wilson += wil.low <= p <= wil.high
    assert 0.92 <= hits_boot / sims <= 0.975, hits_boot / sims
    assert 0.93 <= hits_wilson / sims <= 0.975, hits_wilson / sims


def test_lower_level_gives_narrower_interval() -> None:
    flags = [True] * 60 + [False] * 40
    wide, narrow = accuracy_ci(flags, level=0.99), accuracy_ci(flags, level=0.8)
    assert narrow.high - narrow.low < wide.high - wide.low


# ----------------------------------------------------------------------------- paired bootstrap


def test_paired_bootstrap_identical_inputs_show_no_difference() -> None:
    rng = np.random.default_rng(1)
    a = rng.random(300) < 0.6
    d = paired_bootstrap(a, a.copy(), 5000, 0)
    assert isinstance(d, DiffCI)
    assert d.mean == 0.0 and d.low == 0.0 and d.high == 0.0 and d.p_value == 1.0


def test_paired_bootstrap_detects_a_real_difference() -> None:
    rng = np.random.default_rng(2)
    n = 500
    a = rng.random(n) < 0.60
    b = a.copy()
    fixed = (~a) & (rng.random(n) < 0.35)  # B fixes ~14 points' worth of A's errors
    broken = a & (rng.random(n) < 0.03)
    b[fixed], b[broken] = True, False
    d = paired_bootstrap(a, b, 10000, 0)
    assert d.mean == pytest.approx(b.mean() - a.mean())
    assert d.low > 0 and d.p_value < 0.001
    assert d.low <= d.mean <= d.high
    # The same comparison seen from the other side.
    r = paired_bootstrap(b, a, 10000, 0)
    assert r.high < 0 and r.mean == pytest.approx(-d.mean)


def test_paired_bootstrap_p_value_is_two_sided_and_symmetric() -> None:
    # 30 wins, 15 losses out of 300: normal theory gives two-sided p ~0.025, exact McNemar 0.036.
    a = [True] * 15 + [False] * 30 + [True] * 150 + [False] * 105
    b = [False] * 15 + [True] * 30 + [True] * 150 + [False] * 105
    forward, backward = paired_bootstrap(a, b, 10000, 0), paired_bootstrap(b, a, 10000, 0)
    assert 0.02 <= forward.p_value <= 0.045 and 0.02 <= backward.p_value <= 0.045
    assert forward.p_value == pytest.approx(backward.p_value, abs=0.006)
    assert forward.mean == pytest.approx(0.05) and backward.mean == pytest.approx(-0.05)


def test_paired_bootstrap_false_positive_rate_under_the_null() -> None:
    """Two programs with the same accuracy and independent errors: p < 0.05 should
    happen in about 5% of simulated benchmarks, not much more."""
    rng = np.random.default_rng(3)
    sims, n, rejections = 300, 254, 0
    for i in range(sims):
        a, b = rng.random(n) < 0.65, rng.random(n) < 0.65
        rejections += paired_bootstrap(a, b, 2000, i).p_value < 0.05
    assert rejections / sims <= 0.09, rejections / sims


def test_paired_inputs_must_align() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap([True, False], [True], 100, 0)


# ----------------------------------------------------------------------------- verdicts, percentiles


def test_verdict_better_worse_and_no_difference() -> None:
    better = verdict("A", "B", DiffCI(0.043, 0.012, 0.075, 254), 0.008)
    assert better == "B better than A by 4.3 points (95% CI 1.2 to 7.5), McNemar p=0.008, n=254"
    worse = verdict("A", "B", DiffCI(-0.043, -0.075, -0.012, 254), 0.008)
    assert worse.startswith("B worse than A by 4.3 points (95% CI 1.2 to 7.5)")
    same = verdict("zero-shot", "cot", CI(0.012, -0.020, 0.044, 254), 0.47)
    assert same == ("no significant difference between zero-shot and cot (cot - zero-shot: +1.2 points, "
                    "95% CI -2.0 to 4.4, McNemar p=0.47, n=254)")
    weak = verdict("A", "B", CI(0.02, -0.001, 0.04, 254), 0.04)
    assert weak.startswith("weak evidence that B is better than A") and "includes 0" in weak


def test_format_p_never_rounds_across_alpha() -> None:
    assert format_p(0.0496) == "p=0.0496" and format_p(0.051) == "p=0.051"
    assert format_p(0.0004) == "p<0.001" and format_p(0.47) == "p=0.47"


def test_compare_bundles_everything() -> None:
    a = [True] * 50 + [False] * 50
    b = [True] * 50 + [True] * 20 + [False] * 30
    c = compare(a, b, name_a="base", name_b="new", n_boot=2000)
    assert c.wtl.wins == 20 and c.wtl.losses == 0
    assert c.mcnemar_p == pytest.approx(mcnemar_exact(0, 20))
    assert c.verdict.startswith("new better than base by 20.0 points")
    assert c.to_dict()["acc_b"]["mean"] == pytest.approx(0.7)


def test_percentiles() -> None:
    values = list(range(1, 101))
    assert percentiles(values) == {50: 50.5, 90: pytest.approx(90.1), 99: pytest.approx(99.01)}
    assert percentiles([3.0], [0, 100]) == {0: 3.0, 100: 3.0}
    with pytest.raises(ValueError):
        percentiles([])
    with pytest.raises(ValueError):
        percentiles([1.0], [101])
