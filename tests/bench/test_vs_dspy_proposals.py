"""The head-to-head's MIPROv2 setting: proposer replies read whole, the task parsed as DSPy does."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

dspy = pytest.importorskip("dspy")

from vs_dspy.dspy_side import dspy_setup, lenient_proposals  # noqa: E402


class Proposal(dspy.Signature):
    """Propose an instruction."""

    task: str = dspy.InputField()
    proposed_instruction: str = dspy.OutputField()


def test_an_unparseable_proposal_is_taken_whole_but_a_task_reply_still_fails() -> None:
    _, Student, ChatA, _ = dspy_setup()
    adapter = lenient_proposals(ChatA)()
    reply = "  Choose the single best option and reason from the pathophysiology.\n"
    assert adapter.parse(Proposal, reply) == {"proposed_instruction": reply.strip()}
    assert adapter.lenient_proposals == 1 and adapter.parse_failures == 1  # still counted as a parse failure
    mcq = Student().predict.signature
    with pytest.raises(Exception):  # the task's own replies: exactly as ChatAdapter reads them
        adapter.parse(mcq, "B")
    with pytest.raises(Exception):  # an empty proposal is not an instruction
        adapter.parse(Proposal, "   ")
    ok = "[[ ## proposed_instruction ## ]]\nBe brief.\n\n[[ ## completed ## ]]"
    assert adapter.parse(Proposal, ok) == {"proposed_instruction": "Be brief."}
    assert adapter.lenient_proposals == 1
