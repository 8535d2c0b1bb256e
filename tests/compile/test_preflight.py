"""Design-review findings on the compiler: programs with several exemplar sources compile,
save and load; a program that cannot be compiled is refused before any model call;
metrics are identified by what they compute; workers say they have no program."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

import medcompile as mc
from medcompile.compile import CompileError, optimize
from medcompile.compile.optimizer import CompileOptions, Compiler
from medcompile.compile.preflight import metric_identity
from medcompile.lm.registry import wrap_lm
from medcompile.lm.scripted import ScriptedLM
from medcompile.question import Question
from tests.compile.test_optimizer import ALL, GOLD
from tests.conftest import REPO
from tests.core.scripted import last_question, proposes_instruction, reply

TRAIN, DEV = ALL[:40], ALL[40:60]


def oracle_fn(req):
    if (instr := proposes_instruction(req)) is not None:
        return instr
    stem, opts = last_question(req)
    return reply(req, next(k for k, v in opts.items() if v == GOLD[stem]))


def counting_oracle() -> ScriptedLM:
    return ScriptedLM(oracle_fn, model="oracle")


def multi_retrieve() -> mc.Program:
    """The review's program: two exemplar sources, one for a reasoning and one for a direct predictor."""
    return mc.Program(mc.Vote(mc.SelfCoT(demos=mc.Retrieve(k=2, strategy="random", tune=False), tune=False),
                              mc.Predict(demos=mc.Retrieve(k=2, strategy="random", tune=False))), name="multi")


FRESH = r"""
import hashlib, json, re, sys
import medcompile
from medcompile.lm.scripted import ScriptedLM
from medcompile.question import Question

gold = json.load(open(sys.argv[2]))
def fn(req):
    block = req.prompt.rsplit("Question: ", 1)[1]
    stem, rest = block.split("\nOptions:\n", 1)
    opts = dict(re.findall(r"^([A-E])\. (.*)$", rest, flags=re.M))
    key = next(k for k, v in opts.items() if v == gold[stem])
    return f" Reasoned.\nAnswer: {key}" if req.prompt.rstrip().endswith("step by step.") else f" {key}"
lm = ScriptedLM(fn, model="oracle")
prog = medcompile.load(sys.argv[1])
qs = [Question.from_dict(json.loads(l)) for l in open(sys.argv[3])]
answers = [prog.run(q, lm).prediction.answer for q in qs]
prompts = hashlib.sha256("\x1e".join(r.prompt for r in lm.requests).encode()).hexdigest()
bad = sorted(m for m in sys.modules if m == "programs" or m.startswith(("programs.", "tests")))
print(json.dumps({"answers": answers, "prompts": prompts, "banks": sorted(prog.banks()), "imported": bad}))
"""


def test_multi_retrieve_program_compiles_saves_and_loads_in_a_fresh_process(tmp_path):
    raw = counting_oracle()
    out = tmp_path / "multi.json"
    prog = optimize(multi_retrieve(), TRAIN, DEV, lm=wrap_lm(raw, cache=False), budget=300, quiet=True,
                    n_instructions=0, out=out)
    assert out.exists() and prog.compile_info["dev"]["score"] == 1.0
    banks = prog.banks()
    assert sorted(banks) == ["members.0.demos", "members.1.demos"]  # named by path: distinct and stable
    assert all(e.rationale for e in banks["members.0.demos"].exemplars)  # the reasoning predictor's bank
    assert not any(e.rationale for e in banks["members.1.demos"].exemplars)
    here = ScriptedLM(oracle_fn, model="oracle")
    answers = [prog.run(q, here).prediction.answer for q in DEV[:5]]
    prompts = hashlib.sha256("\x1e".join(r.prompt for r in here.requests).encode()).hexdigest()
    (tmp_path / "gold.json").write_text(json.dumps(GOLD))
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(q.to_dict()) + "\n" for q in DEV[:5]))
    res = subprocess.run([sys.executable, "-c", FRESH, str(out), str(tmp_path / "gold.json"), str(tmp_path / "q.jsonl")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
                              "MEDCOMPILE_CACHE_DIR": str(tmp_path / "c")})
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got == {"answers": answers, "prompts": prompts, "banks": sorted(banks), "imported": []}
    assert answers == [q.answer for q in DEV[:5]]


def question_with_context(i: int) -> Question:
    q = ALL[i]
    return Question(q.id, q.question, dict(q.options), answer=q.answer, context="A passage about the case.")


UNCOMPILABLE = [
    (lambda: mc.Vote(mc.Retrieve(k=2), mc.Predict()), TRAIN, "no predictor gives it a bank"),
    (lambda: mc.Program(mc.Retrieve(k=2)), TRAIN, "makes no model calls"),
    (lambda: mc.Predict(demos=mc.Retrieve(k=2, tune={"k": [2, 100]})), TRAIN, "must be an integer within 0..64"),
    (lambda: mc.Program(mc.Predict(), name="not a valid file name!"), TRAIN, "could not be saved"),
    (lambda: mc.SelfCoT(demos=mc.Retrieve(k=2)), [], "training set is empty"),
    (lambda: mc.Predict(), [question_with_context(i) for i in range(100, 110)], "no 'context' input"),
]


@pytest.mark.parametrize("build, train, message", UNCOMPILABLE)
def test_a_program_that_cannot_be_compiled_is_refused_before_any_model_call(tmp_path, build, train, message):
    raw = counting_oracle()
    with pytest.raises(CompileError, match=message):
        optimize(build(), train, DEV, lm=wrap_lm(raw, cache=False), budget=300, quiet=True, out=tmp_path / "x.json")
    assert raw.calls == 0
    assert not (tmp_path / "x.json.study.sqlite").exists()  # refused before even opening a study


def test_two_different_banks_under_one_name_are_refused_when_the_program_is_built():
    a, b = mc.Retrieve(k=1, bank=TRAIN[:3], bank_name="shared"), mc.Retrieve(k=1, bank=TRAIN[3:6], bank_name="shared")
    with pytest.raises(mc.modules.ModuleError, match="both named 'shared'"):
        mc.Program(mc.Vote(mc.Predict(demos=a), mc.Predict(demos=b)))


def test_context_signature_compiles_on_data_with_contexts(tmp_path):
    data = [question_with_context(i) for i in range(100, 120)]
    sig = "context, question, options -> answer"
    prog = optimize(mc.Predict(sig, demos=mc.Retrieve(k=1, strategy="random", tune=False), tune=False),
                    data[:10], data[10:], lm=wrap_lm(counting_oracle(), cache=False), budget=50, quiet=True)
    assert prog.compile_info["dev"]["score"] == 1.0


# ---- the metric's identity ---------------------------------------------------------------------------------
def test_different_lambda_metrics_never_share_a_study(tmp_path):
    def compiler(metric):
        return Compiler(mc.Program(mc.Predict(tune=False), name="m"), TRAIN, DEV, wrap_lm(counting_oracle(), cache=False),
                        metric, CompileOptions(budget=50, quiet=True), None)

    strict = lambda q, p: float(p.answer == q.answer)  # noqa: E731
    lenient = lambda q, p: float(p.answer is not None)  # noqa: E731
    same_as_strict = lambda q, p: float(p.answer == q.answer)  # noqa: E731
    assert strict.__name__ == lenient.__name__ == "<lambda>"
    names = {compiler(m).study_name() for m in (strict, lenient)}
    assert len(names) == 2
    assert compiler(strict).study_name() == compiler(same_as_strict).study_name()  # same code: same study
    assert compiler(None).identity()["metric"] == "accuracy"


def test_metric_fingerprint_sees_captured_values_and_refuses_what_it_cannot_read():
    def at_least(t):
        return lambda q, p: float((p.confidence or 0) >= t)

    assert metric_identity(at_least(0.5))["id"] != metric_identity(at_least(0.9))["id"]
    assert metric_identity(at_least(0.5)) == metric_identity(at_least(0.5))

    class Scorer:
        def __call__(self, q, p):
            return 1.0

    with pytest.raises(CompileError, match="metric_id"):
        metric_identity(Scorer())
    named = Scorer()
    named.metric_id = "always-one-v1"
    assert metric_identity(named) == {"name": "always-one-v1", "id": "named:always-one-v1"}
    opaque = object()
    with pytest.raises(CompileError, match="without a stable value"):
        metric_identity(lambda q, p: float(opaque is p))


# ---- what a compile returns ----------------------------------------------------------------------------------
def test_leader_returns_program_and_report_worker_returns_none(tmp_path):
    args = dict(budget=300, seed=0, quiet=True, n_instructions=0, max_trials=3, minibatch=10,
                storage=f"sqlite:///{tmp_path / 'study.sqlite'}", study_name="shared")
    leader = Compiler(multi_retrieve(), TRAIN, DEV, wrap_lm(counting_oracle(), cache=False), None,
                      CompileOptions(**args), tmp_path / "p.json").run()
    assert not leader.worker and leader.program is not None and leader.report is leader.program.report
    assert leader.program.compile_info["study"] == leader.study == "shared"
    assert optimize(multi_retrieve(), TRAIN, DEV, lm=wrap_lm(counting_oracle(), cache=False), worker=True,
                    **args) is None


REAL_FRESH = r"""
import json, sys
import medcompile
from medcompile.question import Question
prog = medcompile.load(sys.argv[1])
qs = [Question.from_dict(json.loads(l)) for l in open(sys.argv[2])]
print(json.dumps({"answers": [prog.run(q).prediction.answer for q in qs], "banks": sorted(prog.banks())}))
"""


@pytest.mark.real_model
def test_two_bank_program_on_the_real_model_saves_and_answers_the_same_in_a_fresh_process(
        tmp_path, local_lm, medqa_dev, medqa_bank):
    from medcompile.bank import Bank
    from medcompile.exemplar import Exemplar

    direct = Bank([Exemplar(q) for q in medqa_bank[:6]])
    reasoned = Bank([Exemplar(q, "The findings point to this answer.") for q in medqa_bank[6:12]])
    prog = mc.Program(mc.Vote(
        mc.SelfCoT(demos=mc.Retrieve(k=1, strategy="random", bank=reasoned, tune=False), max_tokens=48, tune=False),
        mc.Predict(demos=mc.Retrieve(k=1, strategy="random", bank=direct, tune=False), tune=False)),
        name="two-banks", lm={"model": local_lm.model, "mode": local_lm.mode, "spec": "local"})
    qs = medqa_dev[:2]
    here = [prog.run(q, local_lm).prediction.answer for q in qs]
    path = tmp_path / "two.json"
    prog.save(path)  # used to fail: two different banks both named 'bank'
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(q.to_dict()) + "\n" for q in qs))
    env = {**os.environ, "MEDCOMPILE_CACHE_DIR": str(tmp_path / "cold")}  # real calls again
    res = subprocess.run([sys.executable, "-c", REAL_FRESH, str(path), str(tmp_path / "q.jsonl")],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got == {"answers": here, "banks": ["members.0.demos", "members.1.demos"]}


def test_an_unknown_option_is_a_clear_error_not_a_type_error(tmp_path):
    raw = counting_oracle()
    with pytest.raises(CompileError, match=r"unknown option\(s\) \['extra'\]"):  # CompileOptions.extra was dead
        optimize(multi_retrieve(), TRAIN, DEV, lm=wrap_lm(raw, cache=False), budget=300, extra={"x": 1})
    assert raw.calls == 0
