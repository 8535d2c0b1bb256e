"""Modules answer what they need through one interface; Program names their banks;
the signature decides what a prompt shows; the shared checks name the bad setting."""
from __future__ import annotations

import json

import pytest

from medcompile import Predict, Program, Refine, Retrieve, SelfCoT, Shuffle, Vote, load
from medcompile.compile.space import BankChoice, apply
from medcompile.lm.scripted import EchoLM
from medcompile.modules.base import Module, ModuleError, Needs
from medcompile.question import Question
from tests.conftest import mcq

BANK = [mcq(i, "ABCD"[i % 4]) for i in range(100, 106)]


def test_needs_describe_each_module_and_add_up_over_the_tree():
    assert Predict(tune=False).needs() == Needs(model_calls=True)
    assert Predict().needs() == Needs(model_calls=True, instruction=True)  # open: an instruction may be chosen
    assert SelfCoT(tune=False).needs().rationales and SelfCoT().needs().rationales
    assert not SelfCoT(cot=False, tune={"cot": [False]}).needs().rationales
    assert Retrieve(k=3, strategy="knn", tune=False).needs() == Needs(bank=True, knn=True)
    assert Retrieve(k=0, tune=False).needs() == Needs()  # zero-shot: no bank at all
    assert Retrieve(k=3, strategy="random", tune=False).needs() == Needs(bank=True)
    assert Retrieve(k=0, tune={"k": [0, 2], "strategy": ["random"]}).needs() == Needs(bank=True)
    root = Vote(Shuffle(SelfCoT(demos=Retrieve(k=3)), n=3), Predict(tune=False))
    assert Needs.of(root) == Needs(bank=True, knn=True, rationales=True, instruction=True, model_calls=True)
    assert Needs.of(Shuffle(Predict(tune=False), n=2, tune=False)) == Needs(model_calls=True)


def test_a_new_module_type_takes_part_through_the_interface_alone():
    """No type checks: a module the compiler has never heard of gets banks bound like Predict."""
    class Both(Module):
        type_name = "Both"
        tune = None

        def __init__(self, a: Module, b: Module):
            self.a, self.b = a, b

        def children(self):
            return [("a", self.a), ("b", self.b)]

        def with_children(self, new):
            return Both(new.get("a", self.a), new.get("b", self.b))

        def configure(self, params):
            return self

    full, cot = _banks()
    bound = apply(Both(SelfCoT(demos=Retrieve(k=2, tune=False), tune=False),
                       Predict(demos=Retrieve(k=2, tune=False), tune=False)), {}, BankChoice(full, cot))
    assert bound.a.demos.bank is cot and bound.b.demos.bank is full
    assert (bound.a.demos.bank_name, bound.b.demos.bank_name) == ("a.demos", "b.demos")


def _banks():
    from medcompile.bank import Bank
    from medcompile.exemplar import Exemplar

    return Bank([Exemplar(q) for q in BANK]), Bank([Exemplar(q, "because") for q in BANK])


def test_banks_are_named_by_path_shared_once_and_survive_a_round_trip(tmp_path):
    full, cot = _banks()
    r_full, r_cot = Retrieve(k=1, strategy="random", bank=full, tune=False), Retrieve(k=1, bank=cot, tune=False)
    prog = Program(Vote(Predict(demos=r_full, tune=False), SelfCoT(demos=r_cot, tune=False),
                        Predict(demos=r_full, temperature=0.7, tune=False)))
    assert prog.banks() == {"members.0.demos": full, "members.1.demos": cot}  # the shared bank is stored once
    path = tmp_path / "p.json"
    prog.save(path)
    again = load(path)
    assert sorted(again.banks()) == ["members.0.demos", "members.1.demos"]
    assert again.root.members[0].demos.bank is again.root.members[2].demos.bank
    assert again.to_json() == path.read_text()  # names kept as written: loading and saving are stable
    named = Program(Predict(demos=Retrieve(k=1, bank=full, bank_name="bank", tune=False), tune=False))
    assert list(named.banks()) == ["bank"]  # an explicit name is kept


def test_retrieve_alone_is_a_clear_error_not_a_crash():
    with pytest.raises(ModuleError, match="use it as a predictor's demos"):
        Program(Retrieve(k=0, tune=False)).run(mcq(1), EchoLM())


def test_the_signature_decides_whether_the_context_is_shown():
    q = Question("c1", "Is the drug effective?", {"yes": "yes", "no": "no", "maybe": "maybe"}, answer="yes",
                 context="In a randomised trial of 200 patients the drug lowered mortality.")
    shown, hidden = EchoLM(), EchoLM()
    Program(Predict("context, question, options -> answer", tune=False)).run(q, shown)
    Program(Predict("question, options -> answer", tune=False)).run(q, hidden)
    assert "randomised trial" in shown.requests[0].prompt
    assert "randomised trial" not in hidden.requests[0].prompt


def test_vote_refuses_tune_instead_of_ignoring_it():
    with pytest.raises(ModuleError, match="Vote has no choices to tune"):
        Vote(Predict(), tune=True)
    with pytest.raises(ModuleError, match="Vote has no choices to tune"):
        Vote(Predict(), tune={"n": [1, 3]})
    assert Vote(Predict(), tune=False).tune is None


@pytest.mark.parametrize("build, message", [
    (lambda: Retrieve(k=-1), "Retrieve.k must be an integer within 0..64, got -1"),
    (lambda: Retrieve(k=65), "Retrieve.k must be an integer within 0..64, got 65"),
    (lambda: Retrieve(k=True), "Retrieve.k must be an integer"),
    (lambda: Shuffle(Predict(), n=0), "Shuffle.n must be an integer within 1..64, got 0"),
    (lambda: Refine(Predict(), m=0), "Refine.m must be an integer within 1..32, got 0"),
    (lambda: Refine(Predict(), r=1.5), "Refine.r must be an integer within 1..32, got 1.5"),
    (lambda: Predict(max_tokens=0), "Predict.max_tokens must be an integer within 1..32768, got 0"),
    (lambda: Predict(temperature=2.5), "Predict.temperature must be within 0..2, got 2.5"),
    (lambda: SelfCoT(temperature=float("nan")), "SelfCoT.temperature must be within 0..2, got nan"),
    (lambda: Refine(Predict(), temperature=-0.1), "Refine.temperature must be within 0..2, got -0.1"),
])
def test_shared_checks_name_the_setting_and_the_value(build, message):
    with pytest.raises(ModuleError) as info:
        build()
    assert message in str(info.value)


def test_open_choices_are_written_only_while_open():
    assert json.loads(json.dumps(Retrieve(k=2).to_config()))["tune"] == {"k": [0, 1, 3, 5],
                                                                      "strategy": ["knn", "random"]}
    for frozen in (Retrieve(k=2, tune=False), Shuffle(Predict(), n=2, tune=False), Refine(Predict(), tune=False),
                   Predict(tune=False)):
        assert "tune" not in frozen.to_config()
