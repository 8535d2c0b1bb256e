"""DSPy interop both ways: import DSPy programs (with compiled demos), export compiled programs, round trips."""
from __future__ import annotations

import json
import warnings

import dspy
import pytest
from dspy.utils.dummies import DummyLM

import medcompile as mc
from medcompile.bank import Bank
from medcompile.exemplar import Exemplar
from medcompile.interop import InteropError, dspy_inputs, from_dspy, to_dspy
from medcompile.interop.dspy_export import KNNFewShotProgram
from medcompile.lm.scripted import ScriptedLM
from medcompile.question import Question
from tests.core.scripted import is_cot, last_question, reply

N_TRAIN = 8


@pytest.fixture(scope="module")
def medqa() -> list[Question]:
    from medcompile.data import load_dataset, split_named

    return split_named(load_dataset("medqa_us4"), "bank").questions[:N_TRAIN + 4]


def examples(qs: list[Question]) -> list[dspy.Example]:
    return [dspy.Example(**dspy_inputs(q), answer=q.answer, id=q.id).with_inputs("question", "options") for q in qs]


def demo_view(demos) -> list[tuple]:
    """What a demo teaches, independent of its container (dspy.Example or dict)."""
    out = []
    for d in demos:
        d = d.toDict() if hasattr(d, "toDict") else dict(d)
        out.append((d["question"], d["options"], d["answer"], d.get("reasoning")))
    return sorted(out)


def test_labeled_fewshot_program_imports_and_round_trips(medqa, tmp_path):
    compiled = dspy.LabeledFewShot(k=4).compile(dspy.ChainOfThought("question, options -> answer"),
                                                trainset=examples(medqa[:N_TRAIN]))
    prog = from_dspy(compiled, name="labeled")
    root = prog.root
    assert isinstance(root, mc.SelfCoT) and root.cot and root.demos is not None and root.demos.k == 4
    assert root.instruction == mc.MCQ.instruction  # DSPy's auto "Given the fields ..." -> medcompile's default
    assert [e.question.id for e in root.demos.static_demos()] == [d.id for d in compiled.predict.demos]  # same order
    # back out to DSPy: the same demos, now medcompile-rendered
    back = to_dspy(prog)
    assert isinstance(back, dspy.ChainOfThought)
    assert [d.id for d in back.predict.demos] == [d.id for d in compiled.predict.demos]
    assert demo_view(back.predict.demos) == demo_view(compiled.predict.demos)
    # and in again: the same medcompile program, also after a save/load in JSON
    again = from_dspy(back, name="labeled")
    assert again.to_json() == prog.to_json()
    prog.save(tmp_path / "labeled.json")
    loaded = mc.load(tmp_path / "labeled.json")
    assert loaded.to_json() == prog.to_json()


def test_bootstrap_fewshot_demos_keep_their_reasoning_and_run_in_medcompile(medqa):
    train = medqa[:N_TRAIN]
    answers = {q.question[-60:]: {"reasoning": f"Because of finding {i}.", "answer": q.answer}
               for i, q in enumerate(train)}
    lm = DummyLM(answers)
    with dspy.context(lm=lm):
        compiled = dspy.BootstrapFewShot(max_bootstrapped_demos=3, max_labeled_demos=0).compile(
            dspy.ChainOfThought("question, options -> answer"), trainset=examples(train))
    demos = compiled.predict.demos
    assert len(demos) == 3 and all(d.get("reasoning", "").startswith("Because of finding") for d in demos)
    prog = from_dspy(compiled)
    shown = prog.root.demos.static_demos()
    assert sorted(e.rationale for e in shown) == sorted(d["reasoning"] for d in demos)
    # the imported program runs on a medcompile model and shows those rationales as its exemplars
    scripted = ScriptedLM(lambda req: reply(req, "A"))
    r = prog.run(medqa[-1], scripted)
    assert r.prediction.answer == "A" and r.usage.calls == 1
    assert all(f"Reasoning: {d['reasoning']}" in scripted.requests[0].prompt for d in demos)
    assert demo_view(to_dspy(prog).predict.demos) == demo_view(demos)


def test_compiled_medcompile_program_exports_and_runs_in_dspy(medqa):
    bank, dev = medqa[:N_TRAIN], medqa[N_TRAIN:]
    gold = {q.question: q.options[q.answer] for q in medqa}

    def knows(req):
        stem, opts = last_question(req)
        good = next((k for k, v in opts.items() if v == gold.get(stem)), "A")
        return reply(req, good, rationale=f"Reasoned about {good}.") if is_cot(req) else reply(req, good)

    declared = mc.Program(mc.SelfCoT(demos=mc.Retrieve(k=2, strategy="random", tune=False),
                                     tune={"cot": [True]}), name="cot_fewshot")
    compiled = mc.optimize(declared, bank, dev, lm=ScriptedLM(knows), budget=40, seed=0, quiet=True, max_trials=2,
                           n_instructions=0)
    pred = compiled.root
    ex = pred.demos.static_demos()
    assert all(e.rationale for e in ex)  # self-generated at compile time
    module = to_dspy(compiled)
    assert isinstance(module, dspy.ChainOfThought)
    assert module.predict.signature.instructions == pred.instruction
    assert demo_view(module.predict.demos) == sorted(
        (e.question.question, mc.interop.options_text(e.question.options), e.question.answer, e.rationale) for e in ex)
    q = dev[0]
    lm = DummyLM([{"reasoning": "r", "answer": q.answer}])
    with dspy.context(lm=lm):
        out = module(**dspy_inputs(q))
    assert out.answer == q.answer
    sent = json.dumps(lm.history[-1]["messages"])
    assert pred.instruction in sent and json.dumps(ex[0].rationale)[1:-1] in sent


def test_knn_exemplars_export_as_a_dspy_module_and_import_back(medqa, tmp_path):
    bank = Bank([Exemplar(q, f"rationale {i}") for i, q in enumerate(medqa[:N_TRAIN])])
    prog = mc.Program(mc.SelfCoT(demos=mc.Retrieve(k=2, strategy="knn", bank=bank, tune=False), tune=False))
    module = to_dspy(prog)
    assert isinstance(module, KNNFewShotProgram)
    q = medqa[N_TRAIN]
    want = [e.question.id for e in bank.nearest(q, 2)]
    assert [d.id for d in module.demos_for(q.question, mc.interop.options_text(q.options))] == want
    lm = DummyLM([{"reasoning": "r", "answer": "C"}])
    with dspy.context(lm=lm):
        assert module(**dspy_inputs(q)).answer == "C"
    assert "rationale" in json.dumps(lm.history[-1]["messages"])
    back = from_dspy(module)
    assert back.root.demos.strategy == "knn" and back.root.demos.k == 2 and back.root.demos.bank is bank


def test_renamed_fields_context_and_a_vote_of_predictors():
    class Sig(dspy.Signature):
        """Pick the best option."""

        passage: str = dspy.InputField()
        stem: str = dspy.InputField()
        choices: list[str] = dspy.InputField()
        label: str = dspy.OutputField()

    demo = dspy.Example(passage="P", stem="Q?", choices=["yes", "no"], label="no").with_inputs("passage", "stem",
                                                                                               "choices")
    p = dspy.Predict(Sig)
    p.demos = [demo]
    with pytest.raises(InteropError, match="input field 'passage'.*fields="):
        from_dspy(p)
    rename = {"passage": "context", "stem": "question", "choices": "options", "label": "answer"}
    prog = from_dspy(p, fields=rename)
    assert prog.root.signature.input_names == ["context", "question", "options"]
    assert prog.root.instruction == "Pick the best option."
    (ex,) = prog.root.demos.static_demos()
    assert ex.question.options == {"A": "yes", "B": "no"} and ex.question.answer == "B" and ex.question.context == "P"

    class Two(dspy.Module):
        def __init__(self):
            super().__init__()
            self.fast = dspy.Predict("question, options -> answer")
            self.slow = dspy.ChainOfThought("question, options -> answer")

    with pytest.raises(InteropError, match="2 predictors.*combine='vote'"):
        from_dspy(Two())
    voted = from_dspy(Two(), combine="vote")
    assert isinstance(voted.root, mc.Vote) and [m.type_name for m in voted.root.members] == ["Predict", "SelfCoT"]


@pytest.mark.parametrize("make, msg", [
    (lambda: dspy.ReAct("question, options -> answer", tools=[]), "dspy.ReAct"),
    (lambda: dspy.Predict("question, options -> answer, confidence"), "output field 'confidence'"),
    (lambda: dspy.Predict("question -> answer"), "needs the inputs 'question' and 'options'"),
    (lambda: dspy.Predict("question, options -> answer", n=3), r"config \['n'\]"),
    (lambda: "question, options -> answer", "expected a dspy.Module"),
])
def test_what_cannot_be_imported_is_refused_with_the_cause(make, msg):
    with pytest.raises(InteropError, match=msg):
        from_dspy(make())


def test_bad_demos_are_refused_naming_the_demo():
    p = dspy.Predict("question, options -> answer")
    p.demos = [dspy.Example(question="Q?", options="A. x\nB. y", answer="E")]
    with pytest.raises(InteropError, match="demo 0: answer 'E' is not one of the option keys"):
        from_dspy(p)
    p.demos = [dspy.Example(question="Q?", answer="A")]
    with pytest.raises(InteropError, match="demo 0: has no 'options'"):
        from_dspy(p)


def test_export_names_what_dspy_cannot_hold():
    ens = mc.Program(mc.Vote(mc.Shuffle(mc.Predict(tune=False), n=3, tune=False)))
    with pytest.warns(UserWarning, match="Shuffle, Vote"):
        module = to_dspy(ens)
    assert isinstance(module, dspy.Predict) and not module.demos
    route = mc.Program(mc.Route([mc.Predict(tune=False), mc.SelfCoT(tune=False)], tune=False))
    with pytest.raises(InteropError, match=r"2 different predictors.*members\.0.*members\.1"):
        to_dspy(route)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert isinstance(to_dspy(route, predictor="members.1"), dspy.ChainOfThought)


@pytest.mark.real_model
def test_imported_dspy_program_runs_on_the_real_model(medqa, local_lm):
    compiled = dspy.LabeledFewShot(k=2).compile(dspy.Predict("question, options -> answer"),
                                                trainset=examples(medqa[:4]))
    prog = from_dspy(compiled)
    results = prog.run_many(medqa[-2:], local_lm)
    assert all(r.usage.calls == 1 for r in results)
    assert all(r.prediction.answer in (None, *r.question.options) for r in results)
