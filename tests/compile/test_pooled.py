"""Pooled effect estimates (compile/pooled.py) and the `pool_effects` option."""
from __future__ import annotations

import pytest

from medcompile.compile.pooled import pooled_scores


def _scores(mean: float, n: int = 20) -> list[float]:
    """n right/wrong answers with the given mean (the first round(mean*n) right)."""
    k = round(mean * n)
    return [1.0] * k + [0.0] * (n - k)


def test_an_additive_model_ranks_the_best_combination_first_even_when_its_own_score_was_unlucky():
    rows = [(0, {"a": 0, "b": 0}, _scores(0.30)), (1, {"a": 1, "b": 0}, _scores(0.60)),
            (2, {"a": 0, "b": 1}, _scores(0.50)), (3, {"a": 1, "b": 1}, _scores(0.55))]
    own = {n: sum(s) / len(s) for n, _, s in rows}
    pooled = pooled_scores(rows)
    assert max(own, key=own.get) == 1
    assert max(pooled, key=pooled.get) == 3
    # balanced 2x2: fitted = grand mean + both main effects (0.4875 + 0.0875 + 0.0375)
    assert pooled[3] == pytest.approx(0.6125)
    assert pooled[1] == pytest.approx(0.5375)


def test_questions_pair_so_a_trial_cut_short_on_hard_questions_is_not_penalised():
    hard_first = [0.0] * 4 + [1.0] * 16  # every trial misses the first four questions
    rows = [(0, {"cot": False}, hard_first), (1, {"cot": True}, hard_first[:4]), (2, {"cot": False}, hard_first)]
    pooled = pooled_scores(rows)
    # trial 1 answered only the four hard questions, exactly like the others did: no effect of cot
    assert pooled[1] == pytest.approx(pooled[0])
    assert sum(hard_first[:4]) / 4 == 0.0  # its own mean would have ranked it last


def test_inactive_choices_are_a_value_of_their_own_and_small_inputs_fall_back_to_own_means():
    rows = [(0, {"k": 0}, _scores(0.4)), (1, {"k": 3, "strategy": "knn"}, _scores(0.6)),
            (2, {"k": 3, "strategy": "random"}, _scores(0.5))]
    pooled = pooled_scores(rows)
    assert pooled[1] > pooled[2] > pooled[0]
    assert pooled_scores([(7, {"k": 0}, [1.0, 0.0])]) == {7: 0.5}
    assert pooled_scores([]) == {}


def test_pool_effects_is_an_option_with_its_own_study(tmp_path):
    from medcompile import Predict, Program
    from medcompile.compile import optimize
    from medcompile.lm.registry import wrap_lm
    from tests.compile.test_optimizer import ALL, biased_lm

    kw = dict(budget=300, seed=0, max_trials=5, minibatch=4, n_instructions=2, max_rationales=4, quiet=True)
    plain = optimize(Program(Predict()), ALL[:20], ALL[20:40], lm=wrap_lm(biased_lm(), cache=False),
                     out=tmp_path / "plain.json", **kw)
    pooled = optimize(Program(Predict()), ALL[:20], ALL[20:40], lm=wrap_lm(biased_lm(), cache=False),
                      out=tmp_path / "pooled.json", pool_effects=True, **kw)
    assert plain.compile_info["study"] != pooled.compile_info["study"]
    assert pooled.compile_info["selection"]["candidates"]  # finalists were ranked and confirmed
