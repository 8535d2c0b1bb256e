"""Every module against scripted LMs: the logic, without a model."""
from __future__ import annotations

import pytest

from medcompile import Predict, Program, Refine, Retrieve, SelfCoT, Shuffle, Vote
from medcompile.bank import Bank
from medcompile.exemplar import Exemplar
from medcompile.lm.base import LMError
from medcompile.lm.scripted import ScriptedLM
from medcompile.modules.base import ModuleError
from tests.conftest import mcq
from tests.core.scripted import is_cot, last_question, reply


def always(key: str) -> ScriptedLM:
    return ScriptedLM(lambda req: reply(req, key))


def test_predict_direct_one_call_and_parse():
    lm = always("C")
    r = Program(Predict(tune=False)).run(mcq(1, "C"), lm)
    assert r.prediction.answer == "C" and r.correct and r.usage.calls == 1 and lm.calls == 1
    assert lm.requests[0].prompt.endswith("Answer:")


def test_selfcot_asks_for_reasoning_and_keeps_rationale():
    lm = ScriptedLM(lambda req: " Because heparin.\nAnswer: B" if is_cot(req) else " A")
    p = Program(SelfCoT(tune=False)).run(mcq(1), lm).prediction
    assert p.answer == "B" and p.rationale == "Because heparin."


def test_retrieve_knn_returns_nearest_and_never_the_question_itself():
    bank = [mcq(i, text=t) for i, t in enumerate(["heart attack aspirin dose", "kidney stone pain",
                                                  "myocardial infarction treatment", "broken arm cast"])]
    r = Retrieve(k=2, bank=bank, tune=False)
    demos = r.demos(mcq(99, text="treatment of acute myocardial infarction heart"))
    assert [d.question.id for d in demos][-1] == "2"  # nearest last, next to the question
    assert all(d.question.id != "2" for d in r.demos(bank[2]))  # leave-one-out


def test_retrieve_random_is_static_and_seeded():
    bank = [mcq(i) for i in range(20)]
    a = Retrieve(k=3, strategy="random", bank=bank, seed=1).demos(mcq(50))
    b = Retrieve(k=3, strategy="random", bank=bank, seed=1).demos(mcq(60))
    assert [d.question.id for d in a] == [d.question.id for d in b]


def test_retrieve_without_bank_is_a_clear_error():
    with pytest.raises(ModuleError, match="no exemplar bank"):
        Program(Predict(demos=Retrieve(k=2))).run(mcq(1), always("A"))


def test_demos_appear_in_prompt_with_rationales_for_cot():
    bank = Bank([Exemplar(mcq(7, "D"), "Seven is D because reasons.")])
    lm = always("B")
    Program(SelfCoT(demos=Retrieve(k=1, strategy="random", bank=bank), tune=False)).run(mcq(1), lm)
    assert "Reasoning: Seven is D because reasons.\nAnswer: D" in lm.requests[0].prompt


def test_shuffle_maps_answers_back_to_original_keys():
    # The model always picks the option whose text is the correct one: shuffling must not hurt.
    q = mcq(3, "C")
    good = q.options["C"]
    lm = ScriptedLM(lambda req: reply(req, next(k for k, v in last_question(req)[1].items() if v == good)))
    p = Program(Shuffle(Predict(tune=False), n=5, tune=False)).run(q, lm).prediction
    assert p.answer == "C" and p.votes == {"C": 5} and lm.calls == 5
    orders = {tuple(last_question(r)[1].values()) for r in lm.requests}
    assert len(orders) > 1 and list(last_question(lm.requests[0])[1].values()) == list(q.options.values())


def test_shuffle_defeats_position_bias():
    lm = always("A")  # position-biased model: votes spread over the original keys
    p = Program(Vote(Shuffle(Predict(tune=False), n=5, tune=False))).run(mcq(3, "C"), lm).prediction
    assert sum(p.votes.values()) == 5 and len(p.votes) > 1 and p.confidence < 1


def test_vote_over_members_and_tie_break_by_option_order():
    lm = ScriptedLM(lambda req: " D" if "second" in req.prompt else " B")
    prog = Program(Vote(Predict(signature=None, tune=False),
                        Predict(signature="question, options -> answer", tune=False).configure(
                            {"instruction": "second"})))
    p = prog.run(mcq(1), lm).prediction
    assert p.answer == "B" and p.votes == {"B": 1, "D": 1} and p.confidence == 0.5


def test_refine_samples_paths_then_refines():
    def fn(req):
        text = req.prompt
        if "independent attempts" in text:
            assert "Attempt 1:" in text and "Attempt 3:" in text
            return " After weighing them.\nAnswer: C"
        return " Path.\nAnswer: B"

    lm = ScriptedLM(fn)
    r = Program(Refine(SelfCoT(tune=False), m=3, r=2, tune=False)).run(mcq(1, "C"), lm)
    assert r.prediction.answer == "C" and r.usage.calls == 5
    seeds = [q.seed for q in lm.requests]
    assert len(set(seeds[:3])) == 3  # distinct samples, distinct seeds (and cache keys)


def test_model_error_becomes_abstention_not_crash():
    def boom(req):
        raise LMError("bad request", retryable=False)

    r = Program(Vote(Shuffle(Predict(tune=False), n=3, tune=False))).run(mcq(1), ScriptedLM(boom))
    assert r.prediction.answer is None and "model error" in r.prediction.reason and r.usage.failures == 3


def test_chat_mode_layout():
    lm = ScriptedLM(lambda req: "Answer: B", mode="chat")
    bank = Bank([Exemplar(mcq(7, "D"))])
    r = Program(Predict(demos=Retrieve(k=1, strategy="random", bank=bank), tune=False)).run(mcq(1), lm)
    roles = [m.role for m in lm.requests[0].messages]
    assert roles == ["system", "user", "assistant", "user"] and r.prediction.answer == "B"


@pytest.mark.parametrize("bad", [dict(n=0), dict(n=1000), dict(n=2.5)])
def test_shuffle_bounds(bad):
    with pytest.raises(ModuleError):
        Shuffle(Predict(), **bad)


def test_calls_per_question():
    assert Vote(Shuffle(SelfCoT(), n=5)).calls_per_question() == 5
    assert Refine(SelfCoT(), m=3, r=2).calls_per_question() == 5
