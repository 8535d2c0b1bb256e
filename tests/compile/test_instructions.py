from medcompile.compile.instructions import clean, dedupe, propose_instructions
from medcompile.lm.scripted import ScriptedLM
from tests.conftest import mcq


def test_clean_keeps_instruction_like_lines_only():
    assert clean(' A: "Read each option carefully before you choose."') == "Read each option carefully before you choose."
    assert clean("1. Think about the mechanism first.\nQuestion: ...") == "Think about the mechanism first."
    for junk in ("", "B", "{{question}} answer it now please", "1234 5678 9012 3456 7890 ....", "x" * 500):
        assert clean(junk) is None


def test_dedupe_ignores_case_space_and_punctuation():
    assert dedupe(["Pick the best.", "pick  the BEST", "Other one."]) == ["Pick the best.", "Other one."]


def test_proposals_user_first_and_counted():
    texts = iter([" Consider the pathophysiology.", " consider the pathophysiology", "", " Rule out the dangerous causes first."])
    lm = ScriptedLM(lambda req: next(texts))
    cands, calls = propose_instructions("Answer the question.", [mcq(1), mcq(2)], lm, n=4, seed=3)
    assert calls == 4 and lm.calls == 4
    assert cands == ["Answer the question.", "Consider the pathophysiology.", "Rule out the dangerous causes first."]
    assert len({r.seed for r in lm.requests}) == 4 and all(r.temperature > 0 for r in lm.requests)


# ---- instruction refinement (the hill climb) -------------------------------------------------
from medcompile.compile.refine_instructions import REFINE_PROMPT, refine_instructions, refinement_plan  # noqa: E402


def test_refinement_climbs_from_the_leader_and_keeps_the_user_first():
    qs = [mcq(i) for i in range(10)]
    u, t = "Answer the question now.", "Think about the mechanism."
    tc, tcr = t + " Check the vignette.", t + " Check the vignette. Rule out emergencies."
    quality = {u: 3, t: 5, tc: 8, tcr: 9}
    rewrites = iter([" " + tc, f"```\n{tcr}\n```", " " + tc])
    lm = ScriptedLM(lambda req: next(rewrites))

    def score(text, questions):
        return [i < quality.get(text, 0) for i in range(len(questions))]

    chosen, pool, calls = refine_instructions([u, t], qs, score, lm, rounds=3, keep=3, seed=0)
    assert calls == 3 and lm.calls == 3
    # round 1 rewrites t (5/10, the leader), round 2 the new leader tc; round 3's repeat is not rescored
    assert f"```\n{t}\n```" in lm.requests[0].prompt and f"```\n{tc}\n```" in lm.requests[1].prompt
    assert f"```\n{tcr}\n```" in lm.requests[2].prompt
    assert [p.text for p in pool] == [u, t, tc, tcr] and pool[3].origin == "refined from 2"
    assert chosen == [u, tcr, tc]
    # the prompt shows questions the leader got wrong, with their answers, not ones it got right
    assert "got 5 of 10" in lm.requests[0].prompt and qs[7].question in lm.requests[0].prompt
    assert qs[0].question not in lm.requests[0].prompt
    assert len({r.seed for r in lm.requests}) == 3


def test_refinement_ties_keep_the_earlier_candidate_as_leader():
    qs = [mcq(i) for i in range(6)]
    lm = ScriptedLM(lambda req: " A different instruction text here.")
    chosen, pool, _ = refine_instructions(["User instruction text.", "Proposal text here."], qs,
                                          lambda t, q: [True] * 3 + [False] * 3, lm, rounds=1, keep=2, seed=0)
    assert "User instruction text." in lm.requests[0].prompt
    assert chosen == ["User instruction text.", "Proposal text here."]


def test_refinement_plan_fits_the_budget_share():
    assert refinement_plan(150, 4, None, 500) is None  # 30 calls pay for no round after the candidates
    plan = refinement_plan(400, 4, None, 500)
    assert plan is not None and plan.questions == 10 and plan.rounds == 3
    assert (plan.rounds + 4) * plan.questions + plan.rounds <= 0.2 * 400
    assert refinement_plan(1000, 4, None, 500).rounds == 14
    assert refinement_plan(1000, 4, 0, 500) is None and refinement_plan(1000, 4, 5, 3) is None
    assert refinement_plan(400, 4, 50, 500).rounds == 200 // 11 - 4  # asked-for rounds: at most half the budget
    assert refinement_plan(60, 4, 3, 500) is None  # half of 60 calls cannot even score the candidates
    assert "```" in REFINE_PROMPT


def test_consensus_keeps_sentences_proposed_at_least_twice_in_first_seen_order():
    from medcompile.compile.instructions import consensus

    props = ["Answer well. Think of the mechanism. Be brief.",
             "Answer well. Rule out emergencies first.",
             "answer  WELL. Rule out emergencies first. Think of the mechanism.",
             "Answer well. Think of the mechanism. Think of the mechanism."]  # repeats inside one count once
    assert consensus(props) == "Answer well. Think of the mechanism. Rule out emergencies first."
    assert consensus(props, max_sentences=2) == "Answer well. Think of the mechanism."
    assert consensus(["One idea only here.", "Another idea entirely."]) is None


def test_consensus_candidate_is_added_without_extra_calls():
    texts = iter([" Answer well. Think of the mechanism.", " Answer well. Be brief today.",
                  " Answer well. Think of the mechanism. Be brief today.", " Answer well. Rule out emergencies."])
    lm = ScriptedLM(lambda req: next(texts))
    cands, calls = propose_instructions("Answer the question.", [mcq(1)], lm, n=2, seed=0, consensus_of=4)
    assert calls == 4 == lm.calls
    assert cands == ["Answer the question.", "Answer well. Think of the mechanism.", "Answer well. Be brief today.",
                     "Answer well. Think of the mechanism. Be brief today."]
