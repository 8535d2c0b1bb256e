"""The in-process model takes one call at a time: a question's calls stay in order on it."""
from __future__ import annotations

import pytest

from medcompile import Predict, Program, Question, Shuffle, Vote
from medcompile.modules.fanout import parallel_capacity


@pytest.mark.real_model
def test_embedded_model_runs_an_ensemble_in_order_with_prefix_reuse() -> None:
    from medcompile.lm.registry import make_lm

    lm = make_lm("local", cache=False)
    assert parallel_capacity(lm) == 1  # one llama.cpp context: no parallel calls, KV prefix reused
    q = Question(id="real-par-1", question="Which vitamin deficiency causes scurvy?",
                 options={"A": "Vitamin A", "B": "Vitamin C", "C": "Vitamin D", "D": "Vitamin K"}, answer="B")
    prog = Program(Vote(Shuffle(Predict(tune=False), n=3, tune=False)), name="real_shuffle3")
    first = prog.run(q, lm)
    again = prog.run(q, lm)
    assert first.usage.calls == 3 and first.error is None
    # the same votes again (option probabilities move in the last digits: KV-prefix reuse changes batching)
    assert (first.prediction.answer, first.prediction.votes) == (again.prediction.answer, again.prediction.votes)
    assert sum(first.prediction.votes.values()) == 3
