"""How predictors answer: constrained direct answers, parse, the CoT follow-up call, and
the schema version 2 that records the choice (version-1 files load as they ran)."""
from __future__ import annotations

import glob
import json
import math

import pytest

from medcompile import Predict, Program, SelfCoT, Shuffle, Vote
from medcompile.lm.base import LMRequest, LMResponse
from medcompile.lm.scripted import ScriptedLM
from medcompile.modules.base import ModuleError
from medcompile.program.io import ProgramFileError, load, loads
from medcompile.program.schema import SCHEMA_VERSION
from tests.conftest import REPO, mcq


def scoring_lm(probs_for=lambda req: {"A": 0.1, "B": 0.6, "C": 0.2, "D": 0.1}, reasoning=" I am not sure."):
    """Scores `choices` like a constraining backend; free-text requests get `reasoning`."""

    def fn(req: LMRequest):
        if not req.choices:
            return reasoning
        p = probs_for(req)
        lps = tuple((k, math.log(p[k])) for k in req.choices)
        best = max(req.choices, key=lambda k: p[k])
        return LMResponse(best, prompt_tokens=10, completion_tokens=1, choice_logprobs=lps)

    return ScriptedLM(fn)


def test_direct_predict_asks_for_the_keys_and_reports_probabilities():
    lm = scoring_lm()
    r = Program(Predict(tune=False)).run(mcq(1, "B"), lm)
    assert lm.requests[0].choices == ("A", "B", "C", "D")
    p = r.prediction
    assert p.answer == "B" and p.confidence == pytest.approx(0.6) and r.correct
    out = r.to_dict()
    assert out["option_probs"] == pytest.approx({"A": 0.1, "B": 0.6, "C": 0.2, "D": 0.1})
    assert out["confidence"] == pytest.approx(0.6)


def test_parse_method_sends_no_choices_and_abstains_on_empty_text():
    lm = ScriptedLM(lambda req: "")  # what the stop sequence leaves of "\nQuestion: ..."
    r = Program(Predict(tune=False, answer="parse")).run(mcq(1), lm)
    assert lm.requests[0].choices == () and r.prediction.answer is None


def test_backend_that_cannot_constrain_falls_back_to_parsing():
    lm = ScriptedLM(lambda req: " C\n")  # ignores `choices`, no scores
    r = Program(Predict(tune=False)).run(mcq(1, "C"), lm)
    assert lm.requests[0].choices and r.prediction.answer == "C" and r.prediction.option_probs == {}
    chat = ScriptedLM(lambda req: "B", mode="chat")  # a server that constrained without scores
    assert Program(Predict(tune=False)).run(mcq(1), chat).prediction.answer == "B"


def test_shuffled_runs_ask_for_displayed_keys_and_probabilities_map_back():
    q = mcq(3, "C")
    # The backend likes whichever position holds the text of original option C.
    def probs_for(req: LMRequest) -> dict[str, float]:
        shown = dict(line.split(". ", 1) for line in req.prompt.split("Options:\n")[1].split("\nAnswer:")[0].split("\n"))
        return {k: 0.7 if v == q.options["C"] else 0.1 for k, v in shown.items()}

    lm = scoring_lm(probs_for)
    p = Program(Vote(Shuffle(Predict(tune=False), n=3, tune=False))).run(q, lm).prediction
    assert all(r.choices == ("A", "B", "C", "D") for r in lm.requests) and len(lm.requests) == 3
    assert p.answer == "C" and p.confidence == 1.0  # ensembles: confidence stays the vote share
    assert p.option_probs["C"] == pytest.approx(0.7) and sum(p.option_probs.values()) == pytest.approx(1.0)


def test_a_vote_over_one_scored_answer_keeps_its_probability_as_confidence():
    # Medprompt compiled down to one sample is Vote(Shuffle(n=1)): a vote share of 1.0
    # would tell a caller (and a Route threshold) nothing; the option probability does.
    lm = scoring_lm(lambda req: {"A": 0.1, "B": 0.6, "C": 0.2, "D": 0.1})
    p = Program(Vote(Shuffle(Predict(tune=False), n=1, tune=False))).run(mcq(1), lm).prediction
    assert len(lm.requests) == 1 and p.votes == {"B": 1}
    assert p.confidence == pytest.approx(0.6) and p.option_probs["B"] == pytest.approx(0.6)
    q = mcq(1)

    def likes_b(req: LMRequest) -> dict[str, float]:  # whichever position shows option B's text
        shown = dict(line.split(". ", 1) for line in req.prompt.split("Options:\n")[1].split("\nAnswer:")[0].split("\n"))
        return {k: 0.6 if v == q.options["B"] else 0.4 / 3 for k, v in shown.items()}

    two = Program(Vote(Shuffle(Predict(tune=False), n=2, tune=False))).run(q, scoring_lm(likes_b)).prediction
    assert two.answer == "B" and two.confidence == 1.0  # two samples: the vote share again


def test_cot_without_a_key_gets_one_constrained_followup():
    lm = scoring_lm(reasoning=" The patient has a fever and")
    r = Program(SelfCoT(tune=False)).run(mcq(2, "B"), lm)
    first, follow = lm.requests
    assert first.choices == () and follow.choices == ("A", "B", "C", "D")
    assert follow.prompt == first.prompt + " The patient has a fever and\nAnswer:"
    assert follow.temperature == 0.0 and follow.max_tokens == 8
    assert r.prediction.answer == "B" and r.prediction.reason == "follow-up"
    assert r.prediction.rationale == "The patient has a fever and"
    assert r.usage.calls == 2  # the follow-up is counted


def test_cot_followup_only_when_needed_and_when_the_program_says_so():
    keyed = scoring_lm(reasoning=" Fever.\nAnswer: D")
    assert Program(SelfCoT(tune=False)).run(mcq(2), keyed).prediction.answer == "D" and keyed.calls == 1
    off = scoring_lm(reasoning=" no idea")
    r = Program(SelfCoT(tune=False, followup=False)).run(mcq(2), off)
    assert r.prediction.answer is None and off.calls == 1


def test_chat_followup_appends_the_reply_and_the_answer_prefix():
    lm = ScriptedLM(lambda req: "Unclear." if not req.choices else "A", mode="chat")
    r = Program(SelfCoT(tune=False)).run(mcq(2, "A"), lm)
    follow = lm.requests[1]
    assert [m.role for m in follow.messages[-2:]] == ["assistant", "user"]
    assert follow.messages[-2].content == "Unclear." and follow.messages[-1].content == "Answer:"
    assert r.prediction.answer == "A"


def test_answer_method_is_validated_configurable_and_saved():
    with pytest.raises(ModuleError, match="answer must be one of"):
        Predict(answer="grammar")
    with pytest.raises(ModuleError, match="followup"):
        Predict(followup="yes")
    p = Predict(tune={"answer": ["constrained", "parse"]})
    assert p.space()["answer"] == ("constrained", "parse")
    assert p.configure({"answer": "parse"}).answer == "parse"
    prog = Program(Predict(tune=False, answer="parse", followup=False))
    d = json.loads(prog.to_json())
    assert d["schema_version"] == SCHEMA_VERSION == 2
    assert (d["graph"]["answer"], d["graph"]["followup"]) == ("parse", False)
    again = loads(prog.to_json()).root
    assert (again.answer, again.followup) == ("parse", False)
    assert Predict().answer == "constrained" and SelfCoT().followup  # new programs' defaults


def _v1(d: dict) -> dict:
    """A version-2 dict as version 1 wrote it: no answer/followup on predictors."""
    def strip(node):
        if isinstance(node, list):
            return [strip(x) for x in node]
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if not (node.get("type") in ("Predict", "SelfCoT")
                                                                   and k in ("answer", "followup"))}
        return node
    return {**strip(d), "schema_version": 1}


def test_version_1_files_load_as_they_ran():
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- example-program -->", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    files = [block] + [open(f).read() for f in sorted(glob.glob(str(REPO / "benchmarks/results/eval/programs/*.json")))
                       if not f.endswith(".report.json")]
    versions = set()
    for text in files:
        raw = json.loads(text)
        versions.add(raw["schema_version"])
        prog = loads(text)
        preds = [m for _, m in prog.root.walk() if isinstance(m, Predict)]
        assert preds
        if raw["schema_version"] == 1:
            assert all((m.answer, m.followup) == ("parse", False) for m in preds)
            assert json.loads(prog.to_json())["schema_version"] == 2
    assert 1 in versions
    v1 = _v1(json.loads(Program(Vote(Shuffle(SelfCoT(tune=False), n=2, tune=False))).to_json()))
    assert loads(json.dumps(v1)).root.members[0].inner.answer == "parse"


def test_version_1_file_with_version_2_fields_is_refused():
    d = json.loads(Program(Predict(tune=False)).to_json())
    d["schema_version"] = 1  # keeps "answer"/"followup", which version 1 did not have
    with pytest.raises(ProgramFileError, match="not in schema_version 1"):
        loads(json.dumps(d))
    d2 = json.loads(Program(Predict(tune=False)).to_json())
    del d2["graph"]["answer"]  # version 2 requires the field
    with pytest.raises(ProgramFileError, match="graph.*answer"):
        loads(json.dumps(d2))


def test_committed_programs_answer_the_same_after_the_upgrade(tmp_path):
    """A v1 program run through the v2 loader sends exactly the requests it sent before."""
    path = REPO / "benchmarks/results/eval/programs/zero_shot.json"
    prog = load(path)
    lm = ScriptedLM(lambda req: " A")
    prog.run(mcq(5), lm)
    assert lm.requests[0].choices == () and lm.requests[0].max_tokens == 8


@pytest.mark.real_model
def test_real_model_constrained_answers_never_abstain(local_lm, medqa_dev):
    prog = Program(Predict(tune=False))
    for q in medqa_dev[:5]:
        r = prog.run(q, local_lm)
        p = r.prediction
        assert p.answer in q.options and r.usage.calls == 1
        assert set(p.option_probs) == set(q.options) and sum(p.option_probs.values()) == pytest.approx(1.0)
        assert p.confidence == pytest.approx(p.option_probs[p.answer])


def test_eval_records_keep_option_probabilities_through_the_checkpoint(tmp_path):
    from medcompile.evaluate.runner import evaluate

    qs = [mcq(i, "B") for i in range(4)]
    prog = Program(Predict(tune=False))
    ck = tmp_path / "ck.jsonl"
    res = evaluate(prog, qs, scoring_lm(), checkpoint=ck, quiet=True)
    assert res.abstention_rate == 0 and res.accuracy.mean == 1.0
    assert all(r.option_probs["B"] == pytest.approx(0.6) and r.confidence == pytest.approx(0.6) for r in res.records)
    again = evaluate(prog, qs, ScriptedLM(lambda req: "never called"), checkpoint=ck, quiet=True)
    assert again.resumed == 4 and [r.option_probs for r in again.records] == [r.option_probs for r in res.records]
    assert "option_probs" in res.to_dict()["records"][0]


def test_serve_response_carries_option_probabilities():
    from medcompile.serve.app import prediction

    r = Program(Predict(tune=False)).run(mcq(1, "B"), scoring_lm())
    out = prediction(r, rationales=False).model_dump(exclude_unset=True)
    assert out["option_probs"] == pytest.approx({"A": 0.1, "B": 0.6, "C": 0.2, "D": 0.1})
    parsed = Program(Predict(tune=False, answer="parse")).run(mcq(1, "B"), ScriptedLM(lambda req: " B"))
    assert "option_probs" not in prediction(parsed, rationales=False).model_dump(exclude_unset=True)
