"""Selection that respects noise: held-out confirmation, paired racing, the cheapest of
the not-significantly-worse, conditional choices, repeats that take no slot, seeds."""
from __future__ import annotations

import json
import re

import pytest

from medcompile import Predict, Program, Refine, Retrieve, SelfCoT, Shuffle, Vote
from medcompile.compile import optimize
from medcompile.compile.selection import (Candidate, Reference, choose, questions_to_separate, race,
                                          split_dev)
from medcompile.compile.space import baseline_params, collect_space, count_configurations, is_inert
from medcompile.lm.registry import wrap_lm
from medcompile.lm.scripted import ScriptedLM
from programs import medprompt
from tests.compile.test_optimizer import ALL, GOLD, biased_lm, make_questions
from tests.core.scripted import last_question, proposes_instruction, reply, unit
from tests.faults.faultkit import work  # a scratch folder on tmpfs: SQLite commits cost no fsync

__all__ = ["work"]


# ---- the statistics, alone -------------------------------------------------------------------------
def test_split_is_seeded_disjoint_and_independent_of_input_order():
    qs = make_questions(50)
    a, b = split_dev(qs, 0, 0.4), split_dev(list(reversed(qs)), 0, 0.4)
    assert [q.id for q in a.search] == [q.id for q in b.search] and [q.id for q in a.confirm] == [q.id for q in b.confirm]
    assert len(a.confirm) == 20 and len(a.search) == 30 and not {q.id for q in a.search} & {q.id for q in a.confirm}
    assert [q.id for q in split_dev(qs, 1, 0.4).confirm] != [q.id for q in a.confirm]
    tiny = split_dev(qs[:3], 0, 0.4)  # too few to hold any out: confirmation reuses the search questions
    assert tiny.reused and tiny.search == tiny.confirm


def test_race_stops_the_significantly_worse_and_the_costlier_that_is_not_ahead():
    leader = Reference(0, [1.0] * 8, cost=1.0)
    assert race([0.0] * 5 + [1.0] * 3, 1.0, leader, None)["rule"] == "worse"  # 5 losses, no win: p = 1/32
    # 4 losses and no win is p = 1/16 one-sided (exact sign test): not significant, although the
    # normal approximation (mean + 1.645 standard errors < 0) called it so, and 2 losses in 4 as well
    assert race([0.0] * 4 + [1.0] * 4, 1.0, leader, None) is None
    assert race([0.0] * 2 + [1.0] * 2, 1.0, leader, None) is None
    assert race([0.0] + [1.0] * 7, 1.0, leader, None) is None  # one loss in 8: not significant, keep going
    assert race([0.0] * 5 + [1.0] * 5, 1.0, Reference(0, [1.0] * 5 + [0.0] * 5, 1.0), None) is None  # 5-5: even
    assert race([0.2] * 8, 1.0, Reference(0, [0.9] * 8, 1.0), None)["rule"] == "worse"  # vote shares: z rule
    assert race([0.0] * 3, 1.0, leader, None) is None  # too few questions to decide anything
    cheap = Reference(1, [1.0, 0.0] * 6, cost=1.0)
    assert race([1.0, 0.0] * 6, 5.0, None, cheap)["rule"] == "costlier"  # same 12 results, five times the calls
    assert race([1.0, 0.0] * 4, 5.0, None, cheap) is None  # 8 alike results could still be luck
    assert race([1.0, 0.0] * 6, 1.0, None, cheap) is None  # same results at the same cost: no reason to stop
    assert race([1.0, 1.0] + [1.0, 0.0] * 5, 5.0, None, cheap) is None  # costlier but ahead: keep going
    assert race([0.0] * 4 + [1.0, 0.0] * 4, 5.0, None, cheap)["rule"] == "costlier"  # costlier, 2 losses behind


def cand(number: int, correct: list[int], cost: float, *, baseline: bool = False, tokens: float = 100.0) -> Candidate:
    return Candidate(number, [float(x) for x in correct], cost, tokens, baseline=baseline)


def test_choice_takes_the_cheapest_of_equals_and_the_expensive_only_when_significantly_better():
    n = 40
    base = [1] * 20 + [0] * 20
    similar = [1] * 22 + [0] * 18  # +5 points: noise at n=40
    much_better = [1] * 38 + [0] * 2  # +45 points
    c = choose([cand(0, base, 1.0, baseline=True), cand(1, similar, 5.0)])
    assert c.chosen.number == 0 and c.best.number == 1  # equal quality as far as 40 questions tell: the cheaper
    c = choose([cand(0, base, 1.0, baseline=True), cand(1, much_better, 5.0), cand(2, similar, 3.0)])
    assert c.chosen.number == 1 and c.p_vs_best[0] < 0.05 and c.p_vs_best[2] < 0.05
    # same cost: the better estimate, then fewer tokens, then trial order
    c = choose([cand(3, similar, 1.0, tokens=50), cand(4, similar, 1.0, tokens=10), cand(5, base, 1.0)])
    assert c.chosen.number == 4 and len(c.chosen.scores) == n


def test_cost_aware_rule_buys_extra_calls_only_at_its_confidence():
    base = [1] * 20 + [0] * 20
    plus5 = [1] * 22 + [0] * 18  # 2 more right, 0 fewer: one-sided p = 0.25
    plus10 = [1] * 24 + [0] * 16  # 4 more right: one-sided p = 1/16 = 0.0625
    cands = [cand(0, base, 1.0, baseline=True), cand(1, plus10, 5.0), cand(2, plus5, 3.0)]
    assert choose(cands, rule="ahead", alpha=0.05).chosen.number == 0  # 0.0625 is not below 0.05
    c = choose(cands, rule="ahead", alpha=0.1)
    assert c.chosen.number == 1  # 3 calls not bought (p 0.25), then 5 calls bought over the cheapest (p 0.0625)
    assert [(st["costlier"], st["current"], st["moved"]) for st in c.steps] == [(2, 0, False), (1, 0, True)]
    assert c.steps[1]["p_one_sided"] == 0.0625 and c.alpha == 0.1 and c.rule == "ahead"
    assert choose(cands, rule="ahead", alpha=0.3).chosen.number == 1  # from 2 (p 0.25) to 1 (2 more right: 0.25)
    same = [cand(0, base, 1.0, baseline=True), cand(1, base, 5.0)]
    assert choose(same, rule="ahead", alpha=0.5).chosen.number == 0  # equal on every question: the cheaper
    # the risk level is the option's: not_worse at alpha 0.5 drops the cheapest (p 0.125 vs the best), at 0.05 keeps it
    assert choose(cands, rule="not_worse", alpha=0.5).chosen.number == 2
    assert choose(cands, rule="not_worse", alpha=0.05).chosen.number == 0
    assert choose(cands).rule == "ahead" and choose(cands).alpha == 0.2  # the defaults, chosen on random profiles
    with pytest.raises(ValueError, match="rule"):
        choose(cands, rule="fastest")


def test_selection_options_are_checked_and_recorded(work):
    kw = dict(budget=400, seed=0, max_trials=4, minibatch=4, n_instructions=0, max_rationales=4, quiet=True)
    with pytest.raises(Exception, match="select_alpha"):
        optimize(Program(Predict()), ALL[:20], ALL[20:40], lm=wrap_lm(biased_lm(), cache=False), select_alpha=1.5,
                 **kw)
    prog = optimize(Program(Predict()), ALL[:20], ALL[20:40], lm=wrap_lm(biased_lm(), cache=False),
                    select_rule="ahead", select_alpha=0.2, reserve_finalists=True, out=work / "sel.json", **kw)
    sel = prog.compile_info["selection"]
    assert "one-sided confidence 0.8" in sel["rule"] and sel["reserve_finalists"] is True
    assert all(st["p_one_sided"] >= 0.2 or st["moved"] for st in sel["steps"])


def test_questions_to_separate_is_the_mcnemar_sample_size():
    a = [True] * 80 + [True] * 5 + [False] * 15   # p10 = 0.05 (a right, b wrong)
    b = [True] * 80 + [False] * 5 + [True] * 15   # p01 = 0.15
    # Connor (1987): (1.96 sqrt(0.2) + 0.8416 sqrt(0.2 - 0.01))^2 / 0.1^2 = 154.6
    assert questions_to_separate(a, b) == 155
    assert questions_to_separate(a, a) is None  # no difference observed: no finite answer


# ---- the search space: conditional choices ------------------------------------------------------------
def test_choices_that_cannot_change_the_program_are_not_searched():
    root = medprompt.build().root
    space = collect_space(root, ("i0", "i1", "i2"))
    strategy = next(p for p in space if p.name == "strategy")
    assert is_inert(root, strategy, {"members.0.inner.demos.k": 0})
    assert not is_inert(root, strategy, {"members.0.inner.demos.k": 3})
    # 3 shuffles x 2 cot x 3 instructions x 2 temperatures x (k=0, or k in 1,3,5 with knn|random)
    assert count_configurations(root, space) == 3 * 2 * 3 * 2 * (1 + 3 * 2)
    assert baseline_params(root, space) == {"members.0.n": 1, "members.0.inner.cot": False,
                                            "members.0.inner.instruction": "i0", "members.0.inner.temperature": 0.0,
                                            "members.0.inner.demos.k": 0}
    er = Refine(SelfCoT(demos=Retrieve(k=1, strategy="random", tune=False)), m=2, r=1, tune=False)
    temp = next(p for p in collect_space(er) if p.name == "temperature")  # Refine samples at its own temperature
    assert is_inert(er, temp, {})


def exact_lm() -> ScriptedLM:
    """Knows a fixed 60% of the questions whatever the prompt (else picks the same wrong option
    text): every configuration answers alike, so the extra calls of an ensemble buy nothing."""

    def fn(req):
        if (instr := proposes_instruction(req)) is not None:
            return instr
        stem, opts = last_question(req)
        if unit(stem, "knows") < 0.6:
            text = GOLD[stem]
        else:
            text = sorted(t for t in opts.values() if t != GOLD[stem])[0]
        return reply(req, next(k for k, v in opts.items() if v == text))

    return ScriptedLM(fn, model="exact")


def test_equal_quality_gives_the_cheaper_configuration_and_the_report_says_so(work, capfd):
    prog = optimize(medprompt.build(), ALL[:30], ALL[30:70], lm=wrap_lm(exact_lm(), cache=False), budget=1500,
                    seed=0, max_trials=10, minibatch=4, n_instructions=0, max_rationales=6, out=work / "eq.json")
    info = prog.compile_info
    assert prog.calls_per_question() == 1 and info["calls_per_question"] == 1
    sel, dev = info["selection"], info["dev"]
    assert sel["search_questions"] + sel["confirmation_questions"] == 40 and sel["confirmation_questions"] == 16
    # compared on all 40 (search + confirmation, paired): the default `select_on="pooled"`
    assert dev["questions"] == "search+confirmation" and dev["n"] == 40 and dev["ci95"][0] <= dev["score"] <= dev["ci95"][1]
    assert sel["compared_on"] == "pooled"
    assert sel["chosen"] == {"trial": str(info["chosen_trial"]), "score": dev["score"], "n": 40, "ci95": dev["ci95"],
                             "calls_per_question": 1.0}
    # every candidate answered alike: nothing is significant, and no sample size would separate them
    if sel["vs_runner_up"] is not None:
        assert sel["vs_runner_up"]["p"] == 1.0 and not sel["vs_runner_up"]["significantly_better"]
        assert sel["questions_to_separate"] is None
    assert any(c["cheapest_configuration"] for c in sel["candidates"])
    # costlier configurations were stopped early: they gave the very answers of a cheaper one
    report = prog.report.to_dict()
    assert any("costs more calls" in t["note"] for t in report["trials"])
    # choices that cannot matter are not reported: no strategy for zero-shot trials
    assert all("members.0.inner.demos.strategy" not in t["params"]
               for t in report["trials"] if t["params"].get("members.0.inner.demos.k") == 0)
    err = capfd.readouterr().err
    assert re.search(r"selection: trial \d+ \(1 call/question\) scored [0-9.]+ on 40 dev questions", err)
    md = (work / "eq.report.md").read_text()
    assert "## Selection" in md and sel["verdict"] in md


def test_nothing_helps_on_the_simulator_gives_a_one_call_program(work):
    sim = pytest.importorskip("medcompile.sim")
    qs = make_questions(160)
    world = sim.SimWorld(qs, profile="nothing_helps", seed=0, use_embeddings=False)
    prog = optimize(medprompt.build(), qs[:60], qs[60:120], lm=wrap_lm(world.lm(mode="text"), cache=False),
                    budget=500, seed=0, max_trials=10, n_instructions=0, max_rationales=10, quiet=True,
                    out=work / "nh.json")
    assert prog.calls_per_question() == 1, prog.compile_info["chosen"]
    assert prog.compile_info["budget"]["spent_calls"] <= 500


# ---- trial slots ----------------------------------------------------------------------------------------
def small_program() -> Program:
    """k in (0, 1, 2) x temperature in (0, 0.7): six configurations."""
    return Program(Predict(demos=Retrieve(k=1, strategy="random", tune={"k": (0, 1, 2)}),
                           tune={"temperature": (0.0, 0.7)}), name="small")


def _trials(prog) -> list[dict]:
    return prog.report.to_dict()["trials"]


def test_repeated_proposals_take_no_trial_slot(work, capfd):
    lm = wrap_lm(biased_lm(), cache=False)
    # screen=False: the systematic screen would enumerate this small space without any repeat
    everything = optimize(small_program(), ALL[:20], ALL[20:40], lm=lm, budget=2000, seed=0, max_trials=20,
                          minibatch=4, n_instructions=0, out=work / "all.json", screen=False)
    rows = _trials(everything)
    tried = [t for t in rows if "same as trial" not in t["note"]]
    assert len(tried) == 6 and len({json.dumps(t["params"], sort_keys=True) for t in tried}) == 6
    assert everything.compile_info["trials"]["repeats"] == len(rows) - 6 >= 1
    assert "every one of the 6 configurations" in capfd.readouterr().err
    four = optimize(small_program(), ALL[:20], ALL[20:40], lm=wrap_lm(biased_lm(), cache=False), budget=2000, seed=0,
                    max_trials=4, minibatch=4, n_instructions=0, quiet=True, out=work / "four.json")
    assert sum("same as trial" not in t["note"] for t in _trials(four)) == 4


def test_failed_trials_show_their_reason_in_the_progress(work, capfd):
    from medcompile.lm.base import LMError

    inner = biased_lm()

    def fn(req):
        if "step by step" not in (req.prompt or ""):
            raise LMError("refused by the gateway", retryable=False)
        return inner.fn(req)

    optimize(medprompt.build(), ALL[:30], ALL[30:50], lm=ScriptedLM(fn), budget=2000, seed=0, max_trials=6,
             minibatch=4, n_instructions=0, max_rationales=6, out=work / "e.json")
    err = capfd.readouterr().err
    assert re.search(r"trial +\d+ failed .*\(\d+ of \d+ answers were model errors\)", err), err


def test_every_trial_failing_on_model_errors_blames_the_model_not_the_budget(work):
    from medcompile.compile.optimizer import CompileError
    from medcompile.lm.base import LMError

    def fn(req):
        raise LMError("400 bad request from the gateway", retryable=False)

    with pytest.raises(CompileError) as ei:
        optimize(small_program(), ALL[:20], ALL[20:40], lm=ScriptedLM(fn), budget=300, seed=0, max_trials=3,
                 minibatch=4, n_instructions=0, quiet=True, out=work / "m.json")
    msg = str(ei.value)
    assert msg.startswith("every trial failed on model errors") and "Raise --budget" not in msg
    assert not (work / "m.json").exists()


# ---- seeds -------------------------------------------------------------------------------------------
def recording_lm(log: list[tuple[str, tuple[str, ...]]]) -> ScriptedLM:
    def fn(req):
        stem, opts = last_question(req)
        text = req.prompt or req.messages[-1].content
        shown = tuple(re.findall(r"Question: (Case \d+)", text))  # exemplars, then the question itself
        log.append((stem, tuple(opts.values()) + shown))
        return reply(req, next(k for k, v in opts.items() if v == GOLD[stem]))

    return ScriptedLM(fn, model="recorder")


def seeded_program() -> Program:
    """Nothing to tune: a 3-way shuffle ensemble of a predictor with two random exemplars."""
    return Program(Vote(Shuffle(Predict(demos=Retrieve(k=2, strategy="random", tune=False), tune=False),
                                n=3, tune=False)), name="seeded")


def test_the_seed_reaches_shuffle_orders_and_random_exemplars(work):
    sent: dict[str, list] = {}
    texts: dict[str, bytes] = {}
    for run, seed in (("a", 0), ("b", 7), ("c", 0)):
        sent[run] = []
        optimize(seeded_program(), ALL[:20], ALL[20:30], lm=wrap_lm(recording_lm(sent[run]), cache=False),
                 budget=500, seed=seed, max_trials=3, n_instructions=0, quiet=True, out=work / run / "p.json")
        texts[run] = (work / run / "p.json").read_bytes()
    # same seed: same bytes, same prompts (a question's shuffles may reach the model in either order)
    assert texts["a"] == texts["c"] and sorted(sent["a"]) == sorted(sent["c"])
    assert texts["a"] != texts["b"]
    orders = {run: {(stem, shown[:4]) for stem, shown in sent[run]} for run in sent}
    assert orders["a"] != orders["b"]  # another seed shuffles the options differently...
    exemplars = {run: {shown[4:-1] for _, shown in sent[run]} for run in sent}
    assert exemplars["a"] != exemplars["b"]  # ...and draws other random exemplars
    graph = json.loads(texts["b"])["graph"]["members"][0]
    assert graph["seed"] != json.loads(texts["a"])["graph"]["members"][0]["seed"]


def test_a_declared_program_follows_its_seed_and_old_files_keep_theirs():
    import medcompile as mc

    q = ALL[0]
    orders = {}
    for seed in (0, 7):
        log: list = []
        Program(Shuffle(Predict(tune=False), n=4, tune=False), seed=seed)(q, recording_lm(log))
        orders[seed] = [shown[:4] for _, shown in log]
    assert orders[0] != orders[7] and orders[0][0] == tuple(q.options.values())  # run 0 keeps the order
    old = Program(Shuffle(Predict(tune=False), n=4, seed=0, tune=False), seed=7)  # explicit seed: kept
    assert json.loads(old.to_json())["graph"]["seed"] == 0
    again = mc.loads(old.to_json())
    assert again.root.seed == 0


def test_backend_down_during_confirmation_resumes_to_the_same_program(work):
    """Confirmation results live in the study and every call in the cache: a compile stopped
    there and rerun asks the model nothing twice and writes the uninterrupted program."""
    from medcompile.compile import CompileError
    from medcompile.lm.base import LMUnavailable

    kw = dict(budget=1500, seed=0, max_trials=6, minibatch=4, n_instructions=0, max_rationales=6, quiet=True)
    ref = exact_lm()
    optimize(medprompt.build(), ALL[:30], ALL[30:70], lm=wrap_lm(ref, cache_dir=work / "ref-cache"),
             out=work / "ref" / "p.json", **kw)
    total, n_confirm = ref.calls, 16  # distinct requests: the cache answers repeats
    inner, answered = exact_lm(), []

    def flaky(req):
        if len(answered) >= total - n_confirm // 2:  # half-way through the last finalist's confirmation
            raise LMUnavailable("backend is down")
        answered.append(req)
        return inner.fn(req)

    down = ScriptedLM(flaky, model="exact")
    with pytest.raises(CompileError, match="confirming trial"):
        optimize(medprompt.build(), ALL[:30], ALL[30:70], lm=wrap_lm(down, cache_dir=work / "cache"),
                 out=work / "run" / "p.json", **kw)
    assert not (work / "run" / "p.json").exists()
    healthy = exact_lm()
    optimize(medprompt.build(), ALL[:30], ALL[30:70], lm=wrap_lm(healthy, cache_dir=work / "cache"),
             out=work / "run" / "p.json", **kw)
    assert (work / "run" / "p.json").read_bytes() == (work / "ref" / "p.json").read_bytes()
    assert healthy.calls == total - len(answered)  # only what the stopped run never received


def test_a_confirmation_the_budget_cannot_finish_is_not_started(work, capfd):
    """Chain of thought that names no option costs a constrained follow-up call: two calls a
    question where the program declares one. The confirmation is costed at what the search
    measured, so a budget that cannot pay for it is not spent on an unfinished one."""
    def fn(req):
        if req.choices:  # the constrained follow-up
            return " " + "ABCD"[int(unit(last_question(req)[0]) * 4)]
        return " The findings point one way but I cannot say which."

    lm = ScriptedLM(fn, model="rambler")
    dev = ALL[40:60]  # 12 search questions, 8 held out
    prog = optimize(Program(SelfCoT(cot=True, tune=False)), ALL[:20], dev, lm=wrap_lm(lm, cache=False),
                    budget=36, seed=0, max_trials=2, n_instructions=0, max_rationales=0, out=work / "p.json")
    sel = prog.compile_info["selection"]
    assert sel["search_questions"] == 12 and sel["confirmation_questions"] == 8
    assert lm.calls == 24  # the search (12 questions x 2 calls); the 16-call confirmation was not begun
    assert "confirmation of trial 0 skipped: needs ~16 calls, 12 left" in capfd.readouterr().err


def test_this_run_counts_only_this_compile_on_a_shared_model_stack(work):
    """Two compiles in one process on one LM stack (as a benchmark compiling several programs
    does): each report's "this run" is its own calls and time, confirmation included."""
    lm = wrap_lm(exact_lm(), cache=False)
    kw = dict(budget=400, seed=0, max_trials=3, minibatch=4, n_instructions=0, max_rationales=0, quiet=True)
    optimize(Program(Predict(tune=False)), ALL[:20], ALL[40:60], lm=lm, out=work / "a.json", **kw)
    before = lm.snapshot().calls
    second = optimize(Program(Predict(tune=False)), ALL[:20], ALL[60:80], lm=lm, out=work / "b.json", **kw)
    run = second.report.to_dict()["this_run"]
    assert run["live_usage"]["calls"] == lm.snapshot().calls - before > 0
    assert run["live_usage"]["calls"] == second.compile_info["budget"]["spent_calls"]
