"""Property tests: shuffle is a bijection, votes ignore order, files round-trip exactly,
and malformed files are refused with a clear error."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medcompile import Predict, Program, Refine, Retrieve, SelfCoT, Shuffle, Vote
from medcompile.bank import Bank
from medcompile.exemplar import Exemplar
from medcompile.modules.base import Prediction
from medcompile.modules.shuffle import permutation_for, permute
from medcompile.modules.vote import plurality
from medcompile.program.io import ProgramFileError, loads
from medcompile.question import Question

texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)
letter_keys = st.integers(2, 5).map(lambda n: list("ABCDE"[:n]))
word_keys = st.lists(st.sampled_from(["yes", "no", "maybe", "true", "false"]), min_size=2, max_size=5, unique=True)


@st.composite
def questions(draw):
    keys = draw(st.one_of(letter_keys, word_keys))
    opts = {k: draw(texts) for k in keys}
    return Question(draw(st.text(min_size=1, max_size=8)), draw(texts.filter(str.strip)), opts,
                    answer=draw(st.sampled_from(keys)))


@given(questions(), st.integers(0, 2**31 - 1), st.integers(0, 20))
def test_shuffle_is_a_bijection_that_keeps_the_answer(q, seed, i):
    perm = permutation_for(q, seed, i)
    shuffled, back = permute(q, perm)
    assert sorted(back) == sorted(q.options) and sorted(back.values()) == sorted(q.options)
    for new_key, orig_key in back.items():  # every shuffled option maps to the same text
        assert shuffled.options[new_key] == q.options[orig_key]
    assert back[shuffled.answer] == q.answer
    assert sorted(shuffled.options.values()) == sorted(q.options.values())


@given(st.lists(st.one_of(st.none(), st.sampled_from("ABCD")), min_size=1, max_size=15), st.randoms())
def test_vote_is_invariant_to_answer_order(answers, rnd):
    cands = [Prediction(a, 1.0 if a else 0.0, {a: 1} if a else {}) for a in answers]
    shuffled = list(cands)
    rnd.shuffle(shuffled)
    a, b = plurality(cands, list("ABCD")), plurality(shuffled, list("ABCD"))
    assert (a.answer, a.votes, a.confidence) == (b.answer, b.votes, b.confidence)


def _exemplar(i: int, rationale: bool) -> Exemplar:
    q = Question(f"b{i}", f"bank question {i}", {"A": "x", "B": "y", "C": "z"}, answer="ABC"[i % 3])
    return Exemplar(q, f"because {i}" if rationale else None)


@st.composite
def programs(draw, depth=0):
    bank = Bank([_exemplar(i, draw(st.booleans())) for i in range(draw(st.integers(1, 4)))])
    demos = draw(st.one_of(st.none(), st.builds(lambda k, s, seed: Retrieve(k=k, strategy=s, bank=bank, seed=seed, tune=False),
                                                 st.integers(0, 3), st.sampled_from(["random"]), st.integers(0, 99))))
    pred = draw(st.sampled_from([Predict, SelfCoT]))(
        signature=draw(st.sampled_from([None, "context, question, options -> answer"])),
        demos=demos, temperature=draw(st.sampled_from([0.0, 0.5, 1.0])),
        max_tokens=draw(st.one_of(st.none(), st.integers(1, 512))), tune=draw(st.booleans()))
    root = draw(st.sampled_from(["pred", "shuffle", "vote", "refine"]))
    if root == "shuffle":
        node = Shuffle(pred, n=draw(st.integers(1, 7)), seed=draw(st.integers(0, 9)), tune=draw(st.booleans()))
    elif root == "vote":
        node = Vote(Shuffle(pred, n=draw(st.integers(1, 3)), tune=False), pred)
    elif root == "refine":
        node = Refine(pred, m=draw(st.integers(1, 4)), r=draw(st.integers(1, 3)), tune=draw(st.booleans()))
    else:
        node = pred
    return Program(node, name=draw(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)),
                   seed=draw(st.integers(0, 1000)),
                   compile_info=draw(st.one_of(st.none(), st.fixed_dictionaries({"dev": st.fixed_dictionaries(
                       {"score": st.floats(0, 1), "n": st.integers(0, 300)})}))))


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_save_load_save_is_byte_identical(prog):
    text = prog.to_json()
    again = loads(text).to_json()
    assert again == text
    assert loads(again).to_json() == text


def _valid_dict() -> dict:
    bank = Bank([_exemplar(i, True) for i in range(2)])
    return json.loads(Program(Vote(Shuffle(SelfCoT(demos=Retrieve(k=1, strategy="random", bank=bank)), n=3))).to_json())


def _mutations():
    return st.sampled_from([
        ("schema_version", 3), ("schema_version", "1"), ("schema", "other"), ("name", ""), ("name", "a b/../c"),
        ("graph", {"type": "os.system"}), ("graph", []), ("seed", -1), ("seed", 1.5), ("templates", {"x": "y"}),
        ("banks", {"bank": {"items": "nope", "embedder": None}}), ("graph.members", []),
        ("graph.members.0.n", 10**9), ("graph.members.0.inner.temperature", float("inf")),
        ("graph.members.0.inner.cot", "yes"), ("graph.members.0.inner.signature.inputs", [{"name": "q"}]),
        ("graph.members.0.inner.demos.bank", "missing"), ("extra_field", 1), ("graph.members.0.type", "Eval"),
        ("templates.answer_line", "{{ answer.__class__ }}"), ("graph.members.0.inner.max_tokens", 0),
    ])


def _set(d: dict, path: str, value) -> None:
    parts = path.split(".")
    for p in parts[:-1]:
        d = d[int(p)] if isinstance(d, list) else d[p]
    last = parts[-1]
    if isinstance(d, list):
        d[int(last)] = value
    else:
        d[last] = value


@given(_mutations())
def test_malformed_programs_are_rejected_clearly(mutation):
    path, value = mutation
    d = _valid_dict()
    _set(d, path, value)
    try:
        text = json.dumps(d)
    except ValueError:
        text = json.dumps(d, allow_nan=True)
    with pytest.raises(ProgramFileError) as info:
        loads(text)
    msg = str(info.value)
    assert msg and "Traceback" not in msg
    top = path.split(".")[0]
    assert any(word in msg for word in (top, path.split(".")[-1], "schema", "Infinity")), msg


@given(st.text(max_size=200))
def test_random_text_is_rejected_clearly(text):
    with pytest.raises(ProgramFileError):
        loads(text)


@settings(max_examples=30)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3)))
def test_random_json_is_rejected_clearly(value):
    with pytest.raises(ProgramFileError):
        loads(json.dumps(value))


def test_deep_nesting_is_refused_before_parsing():
    with pytest.raises(ProgramFileError, match="nested"):
        loads("[" * 100_000 + "]" * 100_000)
