"""Each module against the real embedded model (Gemma 3 270M, llama.cpp in-process).

The model is near chance at medicine; these tests check that the real stack works:
prompts it can continue, answers parsed or recorded as abstentions, usage counted,
and a second identical run served entirely from the cache.
"""
from __future__ import annotations

import pytest

from medcompile import Predict, Program, Refine, Retrieve, SelfCoT, Shuffle, Vote
from medcompile.bank import Bank
from medcompile.exemplar import Exemplar

pytestmark = pytest.mark.real_model


#: How many of each program's calls reason (CoT): each may get one constrained follow-up call
#: when its reply names no option (SelfCoT's default `followup=True`), counted in usage.
_COT_CALLS = {"Predict": 0, "SelfCoT": 1, "Retrieve": 0, "Shuffle+Vote": 0, "Refine": 3}


def _programs(bank: Bank) -> dict[str, tuple[Program, int]]:
    return {
        "Predict": (Program(Predict(tune=False)), 1),
        "SelfCoT": (Program(SelfCoT(max_tokens=48, tune=False)), 1),
        "Retrieve": (Program(Predict(demos=Retrieve(k=2, bank=bank, tune=False), tune=False)), 1),
        "Shuffle+Vote": (Program(Vote(Shuffle(Predict(demos=Retrieve(k=1, bank=bank, tune=False), tune=False),
                                              n=3, tune=False))), 3),
        "Refine": (Program(Refine(SelfCoT(max_tokens=32, tune=False), m=2, r=1, temperature=0.8, tune=False)), 3),
    }


@pytest.mark.parametrize("name", ["Predict", "SelfCoT", "Retrieve", "Shuffle+Vote", "Refine"])
def test_module_on_real_model(name, local_lm, medqa_dev, medqa_bank):
    bank = Bank([Exemplar(q) for q in medqa_bank[:30]])
    prog, calls = _programs(bank)[name]
    q = medqa_dev[0]
    before = local_lm.snapshot()
    r = prog.run(q, local_lm)
    followups = r.usage.calls - calls
    assert 0 <= followups <= _COT_CALLS[name], (r.usage.calls, calls)
    if followups and name == "SelfCoT":  # the follow-up is constrained to the option keys
        assert r.prediction.answer in q.options
    assert r.usage.prompt_tokens > 50 and r.usage.completion_tokens >= 1
    assert r.prediction.answer is None or r.prediction.answer in q.options
    if r.prediction.answer is None:
        assert r.prediction.reason  # an abstention says why
    # Same request again: every call comes from the cache, none reaches the model.
    again = prog.run(q, local_lm)
    assert again.prediction.answer == r.prediction.answer
    assert again.usage.cached_calls == again.usage.calls == r.usage.calls
    assert local_lm.snapshot().live_calls - before.live_calls <= r.usage.calls
