"""The search's design (compile/design.py): declared configuration, one-change screening,
the combination of what helped, scale last; patient racing and pooled selection."""
from __future__ import annotations

import pytest

from medcompile.compile import optimize
from medcompile.compile.design import combination, cost_keys, openings, screen_values, with_sizes
from medcompile.compile.search import configure
from medcompile.compile.selection import Reference, race
from medcompile.compile.space import BankChoice, baseline_params, collect_space, declared_params
from medcompile.lm.registry import wrap_lm
from programs import medprompt
from tests.compile.test_optimizer import make_questions
from tests.faults.faultkit import work

__all__ = ["work"]
INSTR = ("user instruction", "proposal one", "proposal two")


def _space():
    root = medprompt.build().root
    return root, collect_space(root, INSTR)


def _short(ps: dict) -> dict:
    return {k.rsplit(".", 1)[-1]: v for k, v in ps.items()}


def test_declared_configuration_is_the_program_as_written_and_the_baseline_the_cheapest():
    root, space = _space()
    assert _short(declared_params(root, space)) == {"n": 5, "cot": True, "instruction": INSTR[0], "temperature": 0.0,
                                                     "k": 5, "strategy": "knn"}
    assert _short(baseline_params(root, space)) == {"n": 1, "cot": False, "instruction": INSTR[0], "temperature": 0.0,
                                                     "k": 0}


def test_call_multipliers_are_measured_and_scaling_sets_only_them():
    root, space = _space()
    base = baseline_params(root, space)
    banks = BankChoice(full=None, cot=None)  # type: ignore[arg-type]  # costs do not need banks
    keys = cost_keys(root, space, base, lambda ps: configure(root, ps, banks, 0).calls_per_question())
    assert keys == {"members.0.n"}  # shuffles multiply calls; CoT, exemplars, instructions do not
    leader = {**base, "members.0.inner.cot": True}
    sized = with_sizes(root, space, leader, declared_params(root, space), keys)
    assert _short(sized) == {**_short(leader), "n": 5}


def test_screen_changes_one_choice_at_a_time_and_never_a_call_multiplier():
    root, space = _space()
    base, declared = baseline_params(root, space), declared_params(root, space)
    assert screen_values(next(p for p in space if p.name == "k"), 0, 5) == [5]  # numeric: the declared value
    got = [_short(ps) for ps in openings(root, space, base, declared, False, True, {"members.0.n"})]
    changed = [{k: v for k, v in g.items() if _short(base).get(k) != v} for g in got]
    assert {"cot": True} in changed and {"temperature": 0.7} in changed and {"k": 5, "strategy": "knn"} in changed
    assert {"instruction": INSTR[1]} in changed and {"instruction": INSTR[2]} in changed
    assert all("n" not in c for c in changed) and len(changed) == 5
    assert openings(root, space, base, declared, True, False, set()) == [declared]  # try_declared alone


def test_combination_joins_the_changes_that_were_ahead():
    root, space = _space()
    base = baseline_params(root, space)
    one = lambda k, v: {**base, k: v}  # noqa: E731
    screened = [(one("members.0.inner.cot", True), 0.08), (one("members.0.inner.temperature", 0.7), -0.1),
                (one("members.0.inner.instruction", INSTR[1]), 0.02), (one("members.0.inner.instruction", INSTR[2]), 0.05)]
    combo = _short(combination(root, space, base, screened))
    assert combo["cot"] is True and combo["instruction"] == INSTR[2] and combo["temperature"] == 0.0
    assert combination(root, space, base, screened[:2]) is None  # one helpful change: already measured


def test_patient_racing_stops_a_costlier_candidate_only_when_significantly_behind():
    cheap = Reference(1, [1.0, 0.0] * 6, cost=1.0)
    alike = [1.0, 0.0] * 6
    assert race(alike, 5.0, None, cheap, patient=True)["rule"] == "costlier"  # same 12 answers, more calls
    assert race(alike[:8], 5.0, None, cheap, patient=True) is None  # 8 alike could still be luck
    behind = [0.0] * 4 + [1.0, 0.0] * 4  # one standard error behind is enough for the impatient rule
    assert race(behind, 5.0, None, cheap)["rule"] == "costlier"
    assert race(behind, 5.0, None, cheap, patient=True) is None
    far_behind = [0.0] * 12
    assert race(far_behind, 5.0, None, cheap, patient=True)["rule"] == "costlier"
    assert race([0.0] * 6, 5.0, None, cheap, patient=True) is None  # under 8 questions: no decision
    # 4 losses, no win in 8 is p = 1/16 by the exact sign test: not significantly behind yet
    assert race([0.0] * 4 + [1.0] * 4, 5.0, None, Reference(1, [1.0] * 8, cost=1.0), patient=True) is None
    assert race([0.0] * 5 + [1.0] * 3, 5.0, None, Reference(1, [1.0] * 8, cost=1.0), patient=True)["rule"] == "costlier"


@pytest.fixture(scope="module")
def ensemble_world():
    sim = pytest.importorskip("medcompile.sim")
    qs = make_questions(160)
    return qs, sim.SimWorld(qs, profile="noisy_sampler", seed=0, use_embeddings=False)


def test_screen_scale_last_and_pooled_selection_in_a_compile(work, ensemble_world):
    qs, world = ensemble_world
    prog = optimize(medprompt.build(), qs[:60], qs[60:120], lm=wrap_lm(world.lm(mode="text"), cache=False),
                    budget=900, seed=0, max_trials=14, n_instructions=2, max_rationales=20, quiet=True,
                    screen=True, scale_last=True, patient_racing=True, select_on="pooled",
                    out=work / "design.json")
    rows = prog.report.to_dict()["trials"]
    scored_rows = [t for t in rows if t["state"] in ("COMPLETE", "PRUNED") and "same as trial" not in t["note"]]
    n_of = lambda t: t["params"].get("members.0.n", 1)  # noqa: E731
    first_big = next(i for i, t in enumerate(scored_rows) if n_of(t) > 1)
    assert first_big >= 5 and all(n_of(t) == 1 for t in scored_rows[:first_big])  # cheap first
    assert sum(1 for t in scored_rows if n_of(t) > 1) >= 1  # then one leader at its declared size
    sel = prog.compile_info["selection"]
    assert sel["chosen"]["n"] == sel["search_questions"] + sel["confirmation_questions"] == 60  # pooled
    assert prog.compile_info["budget"]["spent_calls"] <= 900
    again = optimize(medprompt.build(), qs[:60], qs[60:120], lm=wrap_lm(world.lm(mode="text"), cache=False),
                     budget=900, seed=0, max_trials=14, n_instructions=2, max_rationales=20, quiet=True,
                     screen=True, scale_last=True, patient_racing=True, select_on="pooled",
                     out=work / "design2.json")
    assert (work / "design.json").read_bytes() == (work / "design2.json").read_bytes()


@pytest.mark.parametrize("stop_at", [0.35, 0.6, 0.85])
def test_screen_and_scale_last_resume_to_the_same_program_after_the_backend_goes_down(work, stop_at):
    """The openings, the combination and the scaled leader are found again from the study, so a
    compile stopped anywhere in the search and rerun writes the uninterrupted program and asks
    the model nothing twice."""
    from medcompile.compile import CompileError
    from medcompile.lm.base import LMUnavailable
    from medcompile.lm.scripted import ScriptedLM
    from tests.compile.test_optimizer import ALL, biased_lm

    kw = dict(budget=700, seed=0, max_trials=10, minibatch=4, n_instructions=1, max_rationales=6, quiet=True,
              screen=True, scale_last=True)
    ref = biased_lm(0.4)
    prog = optimize(medprompt.build(), ALL[:30], ALL[30:70], lm=wrap_lm(ref, cache_dir=work / "ref-cache"),
                    out=work / "ref" / "p.json", **kw)
    rows = prog.report.to_dict()["trials"]
    assert any(t["params"].get("members.0.n", 1) > 1 for t in rows)  # the scaled leader was tried
    inner, answered = biased_lm(0.4), []

    def flaky(req):
        if len(answered) >= int(ref.calls * stop_at):
            raise LMUnavailable("backend is down")
        answered.append(req)
        return inner.fn(req)

    with pytest.raises(CompileError):
        optimize(medprompt.build(), ALL[:30], ALL[30:70], lm=wrap_lm(ScriptedLM(flaky, model="biased"),
                                                                     cache_dir=work / "cache"),
                 out=work / "run" / "p.json", **kw)
    assert not (work / "run" / "p.json").exists()
    healthy = biased_lm(0.4)
    optimize(medprompt.build(), ALL[:30], ALL[30:70], lm=wrap_lm(healthy, cache_dir=work / "cache"),
             out=work / "run" / "p.json", **kw)
    assert (work / "run" / "p.json").read_bytes() == (work / "ref" / "p.json").read_bytes()
    assert healthy.calls == ref.calls - len(answered)  # only what the stopped run never received
