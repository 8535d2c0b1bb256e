"""Vote: majority over several answers.

Ties break by the option order of the question, never by the order answers
arrived, so a vote is a function of the multiset of answers alone. Confidence is the
winner's share of all candidates, abstentions included: three abstentions and one
"B" is a weak "B". A vote over a single answer is that answer, confidence included
(a scored answer keeps its option probability, so a Route threshold on a one-sample
member still means something). When the answers were scored (constrained), the mean
option probabilities are reported too; the vote remains the decision rule.
"""
from __future__ import annotations

from collections import Counter
from functools import partial
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

from ..question import Question
from .fanout import fan_out
from .base import Module, ModuleError, Prediction, Resolver, RunContext, register


def plurality(cands: Sequence[Prediction], keys: Sequence[str]) -> Prediction:
    """Combine predictions by counting their leaf answers."""
    leaves = [leaf for c in cands for leaf in c.leaves()]
    counts = Counter(leaf.answer for leaf in leaves if leaf.answer is not None)
    if not counts:
        reasons = sorted({leaf.reason for leaf in leaves if leaf.reason})
        return Prediction(None, 0.0, {}, None, "all abstained: " + "; ".join(reasons), list(cands))
    order = {k: i for i, k in enumerate(keys)}
    best = min(counts, key=lambda k: (-counts[k], order.get(k, len(order)), k))
    rationale = next((leaf.rationale for leaf in leaves if leaf.answer == best and leaf.rationale), None)
    votes = {k: counts[k] for k in sorted(counts, key=lambda k: (order.get(k, len(order)), k))}
    share = leaves[0].confidence if len(leaves) == 1 else counts[best] / len(leaves)
    return Prediction(best, share, votes, rationale, "vote", list(cands),
                      mean_option_probs(leaves, keys))


def mean_option_probs(leaves: Sequence[Prediction], keys: Sequence[str]) -> dict[str, float]:
    """The mean of the leaves' option probabilities, when every answering leaf has them
    (reported beside the vote; the vote still decides)."""
    answered = [leaf for leaf in leaves if leaf.answer is not None]
    if not answered or any(not leaf.option_probs for leaf in answered):
        return {}
    return {k: sum(leaf.option_probs.get(k, 0.0) for leaf in answered) / len(answered) for k in keys}


@register
@dataclass(frozen=True, eq=False)
class Vote(Module):
    """Vote over the candidates of one module, or over several modules' answers."""

    members: tuple[Module, ...]
    tune: Any = None

    type_name: ClassVar[str] = "Vote"

    def __init__(self, *members: Module | Sequence[Module], tune: Any = None):
        if tune not in (None, False):
            raise ModuleError("Vote has no choices to tune (it counts its members' answers): tune its members")
        flat: list[Module] = []
        for m in members:
            flat.extend(m if isinstance(m, (list, tuple)) else [m])
        if not flat or not all(isinstance(m, Module) for m in flat):
            raise ModuleError("Vote needs one or more modules to vote over")
        object.__setattr__(self, "members", tuple(flat))
        object.__setattr__(self, "tune", None)

    def forward(self, q: Question, ctx: RunContext, path: str) -> Prediction:
        if len(self.members) == 1:
            return plurality([self.members[0](q, ctx, f"{path}/vote")], list(q.options))
        tasks = [partial(m, q, ctx, f"{path}/vote{i}") for i, m in enumerate(self.members)]
        return plurality(fan_out(ctx, tasks), list(q.options))

    def children(self) -> list[tuple[str, Module]]:
        return [(f"members.{i}", m) for i, m in enumerate(self.members)]

    def with_children(self, new: Mapping[str, Module]) -> "Vote":
        return Vote(*[new.get(f"members.{i}", m) for i, m in enumerate(self.members)])

    def configure(self, params: Mapping[str, Any]) -> "Vote":
        return self

    def calls_per_question(self) -> float:
        return sum(m.calls_per_question() for m in self.members)

    def to_config(self) -> dict[str, Any]:
        return {"type": self.type_name, "members": [m.to_config() for m in self.members]}

    @classmethod
    def from_config(cls, d: Mapping[str, Any], resolve: Resolver) -> "Vote":
        return cls(*[resolve.build(m) for m in d["members"]])

