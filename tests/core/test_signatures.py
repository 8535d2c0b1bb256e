import pytest

from medcompile.signatures import MCQ, Signature, SignatureError


def test_shorthand_and_types():
    s = Signature.parse("context, question, options -> rationale, answer")
    assert s.input_names == ["context", "question", "options"]
    assert [f.type for f in s.outputs] == ["rationale", "choice"]
    assert Signature.parse("question: str, options: dict[str, str] -> answer: Literal").shorthand() == \
        "question, options -> answer"


@pytest.mark.parametrize("bad", ["question -> answer", "question, options -> rationale", "question, options",
                                 "question, options, foo -> answer", "question, options -> answer: int"])
def test_bad_shorthand_names_the_problem(bad):
    with pytest.raises(SignatureError):
        Signature.parse(bad)


def test_from_dspy_signature():
    dspy = pytest.importorskip("dspy")

    class MedQA(dspy.Signature):
        """Answer the medical question."""

        question: str = dspy.InputField()
        options: str = dspy.InputField()
        answer: str = dspy.OutputField()

    s = Signature.coerce(MedQA)
    assert s.shorthand() == "question, options -> answer"
    assert "Answer the medical question" in s.instruction


def test_round_trip_dict():
    assert Signature.from_dict(MCQ.to_dict()) == MCQ
