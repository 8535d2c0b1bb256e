"""The optimizer chooses what helps the model at hand, within budget, reproducibly."""
from __future__ import annotations

import pytest

import medcompile as mc
from medcompile.compile import CompileError, optimize
from medcompile.lm.registry import wrap_lm
from medcompile.lm.scripted import ScriptedLM
from medcompile.question import Question
from programs import medprompt
from tests.core.scripted import is_cot, last_question, proposes_instruction, reply, unit

TEXTS = ["aspirin", "heparin", "warfarin", "insulin", "metformin", "atenolol", "lisinopril", "amoxicillin"]


def make_questions(n: int, offset: int = 0) -> list[Question]:
    out = []
    for i in range(offset, offset + n):
        opts = [TEXTS[(i + j) % len(TEXTS)] + f" {i}" for j in range(4)]
        out.append(Question(str(i), f"Case {i}: a patient with condition {i}. Best drug?",
                            dict(zip("ABCD", opts)), answer="ABCD"[(i * 7) % 4]))
    return out


ALL = make_questions(120)
GOLD = {q.question: q.options[q.answer] for q in ALL}


def biased_lm(skill: float = 0.6) -> ScriptedLM:
    """Knows the answer with probability `skill`, otherwise says 'A' (position bias);
    easy questions (every tenth) it always knows."""

    def fn(req):
        if (instr := proposes_instruction(req)) is not None:
            return instr
        stem, opts = last_question(req)
        good = next(k for k, v in opts.items() if v == GOLD[stem])
        easy = int(stem.split()[1].rstrip(":")) % 10 == 0
        if easy or unit(stem, tuple(opts.values()), req.seed) < skill:
            return reply(req, good)
        return reply(req, "A")

    return ScriptedLM(fn, model="biased")


def cot_sensitive_lm(direct: float, cot: float, name: str) -> ScriptedLM:
    def fn(req):
        if (instr := proposes_instruction(req)) is not None:
            return instr
        stem, opts = last_question(req)
        good = next(k for k, v in opts.items() if v == GOLD[stem])
        skill = cot if is_cot(req) else direct
        if unit(stem, tuple(opts.values()), req.seed, "x") < skill:
            return reply(req, good)
        wrong = [k for k in opts if k != good]
        return reply(req, wrong[int(unit(stem, "w") * len(wrong))])

    return ScriptedLM(fn, model=name)


def compile_for(lm, tmp_path, name="mp", **kw):
    args = dict(budget=4000, seed=0, max_trials=14, minibatch=10, quiet=True, n_instructions=0)
    args.update(kw)
    return optimize(medprompt.build(), ALL[:40], ALL[40:80], lm=wrap_lm(lm, cache_dir=tmp_path / "cache"),
                    out=tmp_path / f"{name}.json", **args)


def test_position_biased_model_gets_shuffle_and_vote(tmp_path):
    # 80 dev questions (48 search, 32 confirmation): enough to resolve what shuffling adds for a model that
    # knows 40% of the answers and otherwise says 'A' (at 60% a lucky seed of the sampled one-call
    # configurations ties the ensembles on the search questions, and ties go to the cheaper).
    prog = optimize(medprompt.build(), ALL[:40], ALL[40:120], lm=wrap_lm(biased_lm(0.4), cache_dir=tmp_path / "cache"),
                    out=tmp_path / "mp.json", budget=4000, seed=0, max_trials=14, minibatch=10, quiet=True,
                    n_instructions=0)
    chosen = prog.compile_info["chosen"]
    assert chosen["members.0.n"] > 1, chosen
    assert prog.root.type_name == "Vote" and prog.root.members[0].n > 1
    report = prog.report.to_dict()
    # Configurations without shuffling were tried, scored worse, and were cut short by the pruner.
    no_shuffle = [t for t in report["trials"] if t["params"].get("members.0.n") == 1 and t["score"] is not None]
    assert no_shuffle
    # ... and on the dev questions the shuffle ensemble is significantly better than the one-call baseline,
    # which is what lets it win despite its cost.
    sel = prog.compile_info["selection"]
    assert sel["vs_cheapest"]["significantly_better"] and sel["vs_runner_up"] is not None
    assert sel["vs_cheapest"]["calls_per_question"] < prog.compile_info["calls_per_question"]


def test_model_hurt_by_cot_gets_cot_off_and_the_other_keeps_it(tmp_path):
    hurt = compile_for(cot_sensitive_lm(direct=0.8, cot=0.3, name="hurt"), tmp_path, "hurt")
    helped = compile_for(cot_sensitive_lm(direct=0.3, cot=0.8, name="helped"), tmp_path, "helped")
    assert hurt.compile_info["chosen"]["members.0.inner.cot"] is False
    assert helped.compile_info["chosen"]["members.0.inner.cot"] is True  # same program, other model: other choice


def test_rationales_kept_only_when_correct(tmp_path):
    # Reasoning and exemplars frozen on: the compiled program always holds the CoT bank.
    cot_only = mc.Program(mc.Vote(mc.Shuffle(mc.SelfCoT(demos=mc.Retrieve(k=3, strategy="random", tune=False),
                                                        tune=False), n=1, tune=False)), name="cotbank")
    prog = optimize(cot_only, ALL[:40], ALL[40:80], lm=wrap_lm(cot_sensitive_lm(0.3, 0.8, "helped"), cache=False),
                    budget=4000, seed=0, max_trials=2, minibatch=10, quiet=True, n_instructions=0,
                    out=tmp_path / "r.json")
    st = prog.compile_info["rationales"]
    assert st["attempted"] == 40 and 0 < st["kept"] < st["attempted"]
    (bank,) = prog.banks().values()
    # The scripted model reasons its way to the right answer exactly where unit(...) < 0.8 (seed 0):
    right = {q.id for q in ALL[:40]
             if unit(q.question, tuple(q.options.values()), 0, "x") < 0.8}
    assert {ex.question.id for ex in bank.exemplars} == right and len(right) == st["kept"]
    assert all(ex.rationale == "Reasoned." for ex in bank.exemplars)


@pytest.mark.parametrize("budget", [150, 400])
def test_budget_is_never_exceeded(tmp_path, budget):
    lm = wrap_lm(biased_lm(), cache=False)
    prog = optimize(medprompt.build(), ALL[:40], ALL[40:60], lm=lm, budget=budget, seed=1, max_trials=20,
                    minibatch=5, quiet=True, out=tmp_path / "b.json")
    assert lm.snapshot().calls <= budget
    assert prog.compile_info["budget"]["spent_calls"] == lm.snapshot().calls


def test_too_small_budget_is_a_clear_error(tmp_path):
    with pytest.raises(CompileError, match="budget"):
        optimize(medprompt.build(), ALL[:40], ALL[40:80], lm=biased_lm(), budget=20, seed=0, quiet=True,
                 out=tmp_path / "x.json")


def test_same_inputs_give_byte_identical_program_and_warm_run_makes_no_calls(tmp_path):
    first = compile_for(biased_lm(), tmp_path, "same", max_trials=6)
    text1 = (tmp_path / "same.json").read_text()
    (tmp_path / "same.json.study.sqlite").unlink()  # a fresh study, same cache
    lm = wrap_lm(biased_lm(), cache_dir=tmp_path / "cache")
    second = optimize(medprompt.build(), ALL[:40], ALL[40:80], lm=lm, budget=4000, seed=0, max_trials=6,
                      minibatch=10, quiet=True, n_instructions=0, out=tmp_path / "same.json")
    assert (tmp_path / "same.json").read_text() == text1
    assert lm.snapshot().live_calls == 0 and lm.snapshot().calls > 0
    assert first.compile_info == second.compile_info


def test_rerun_resumes_finished_study_without_calls(tmp_path):
    compile_for(biased_lm(), tmp_path, "res", max_trials=5)
    text1 = (tmp_path / "res.json").read_text()
    raw = biased_lm()
    lm = wrap_lm(raw, cache=False)  # no cache at all: only the study can avoid calls
    optimize(medprompt.build(), ALL[:40], ALL[40:80], lm=lm, budget=4000, seed=0, max_trials=5, minibatch=10,
             quiet=True, n_instructions=0, out=tmp_path / "res.json")
    assert raw.calls == 0 and (tmp_path / "res.json").read_text() == text1


def test_pareto_objective_saves_front(tmp_path):
    prog = compile_for(biased_lm(), tmp_path, "par", objective="pareto", max_trials=8)
    front = prog.compile_info["pareto_front"]
    assert front and prog.compile_info["chosen_trial"] in front


def test_bad_inputs_are_clear(tmp_path):
    with pytest.raises(CompileError, match="dev set is empty"):
        optimize(medprompt.build(), ALL[:10], [], lm=biased_lm(), quiet=True)
    with pytest.raises(CompileError, match="also in the training set"):
        optimize(medprompt.build(), ALL[:10], ALL[5:15], lm=biased_lm(), quiet=True)
    unlabeled = [q.with_options(q.options, None) for q in ALL[40:45]]
    with pytest.raises(CompileError, match="answer"):
        optimize(medprompt.build(), ALL[:10], unlabeled, lm=biased_lm(), quiet=True)


def test_compiled_program_loads_and_answers_like_in_memory(tmp_path):
    prog = compile_for(biased_lm(), tmp_path, "load", max_trials=4)
    loaded = mc.load(tmp_path / "load.json")
    lm = biased_lm()
    for q in ALL[80:86]:
        assert loaded(q, lm).answer == prog(q, lm).answer


def test_small_budget_still_finds_a_configuration_that_fits(tmp_path):
    # 40 dev questions x up to 5 calls would not fit; the 1-call configurations do.
    lm = wrap_lm(biased_lm(), cache=False)
    prog = optimize(medprompt.build(), ALL[:40], ALL[40:80], lm=lm, budget=110, seed=0, max_trials=10,
                    minibatch=10, n_instructions=0, max_rationales=4, quiet=True, out=tmp_path / "s.json")
    assert prog.calls_per_question() * 40 <= 110 - 4 and lm.snapshot().calls <= 110


def test_trials_scored_on_model_errors_are_dropped(tmp_path):
    from medcompile.lm.base import LMError

    inner = biased_lm()
    broken = {"on": False}

    def fn(req):
        if broken["on"] and "step by step" not in (req.prompt or ""):
            raise LMError("refused by the gateway", retryable=False)
        return inner.fn(req)

    from medcompile.lm.scripted import ScriptedLM

    broken["on"] = True  # every direct-answer call fails, CoT ones work
    prog = optimize(medprompt.build(), ALL[:40], ALL[40:60], lm=ScriptedLM(fn), budget=3000, seed=0, max_trials=8,
                    minibatch=5, n_instructions=0, quiet=True, out=tmp_path / "e.json")
    assert prog.compile_info["chosen"]["members.0.inner.cot"] is True
    report = prog.report.to_dict()
    assert any("model errors" in t["note"] for t in report["trials"])


def test_preparation_counts_follow_up_calls_of_keyless_rationales(tmp_path):
    """A rationale reply that names no option costs a constrained follow-up call: the
    preparation stage counts it, so the whole compile stays within the budget."""

    def fn(req):
        stem, opts = last_question(req)
        good = next(k for k, v in opts.items() if v == GOLD[stem])
        if is_cot(req):
            return " The findings point one way, but I will not commit to a letter."  # no key: follow-up
        return f" {good}"

    cot_only = mc.Program(mc.Vote(mc.Shuffle(mc.SelfCoT(demos=mc.Retrieve(k=3, strategy="random", tune=False),
                                                        tune=False), n=1, tune=False)), name="followups")
    lm = wrap_lm(ScriptedLM(fn, model="keyless"), cache=False)
    budget = 160
    prog = optimize(cot_only, ALL[:40], ALL[40:80], lm=lm, budget=budget, seed=0, max_trials=4, minibatch=5,
                    quiet=True, n_instructions=0, max_rationales=30, out=tmp_path / "f.json")
    assert prog.compile_info["rationales"]["attempted"] == 30
    # 30 rationale calls + 30 follow-ups, all counted before the search starts
    assert prog.compile_info["budget"]["preparation_calls"] == 60
    assert lm.snapshot().calls <= budget
    assert prog.compile_info["budget"]["spent_calls"] == lm.snapshot().calls
