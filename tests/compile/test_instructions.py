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
