"""Route: a Medprompt+ portfolio that spends calls only where a question needs them.

Members are sub-programs ordered from cheapest to most expensive, e.g. a one-call
few-shot direct answer, then the five-call chain-of-thought shuffle ensemble. Each
question goes to the first member; if that member's confidence (a vote share, or the
option probability when the backend scores options) reaches the member's threshold,
its answer stands, otherwise the question escalates to the next member. The last
member always answers when reached.

Thresholds are search choices, one per member but the last: ``0.0`` means "always
stop here" (the members after it are never used) and ``"skip"`` means "never run this
member". So the search also chooses which members the portfolio keeps.

With ``pool=True`` the members' answers accumulate: at each step the question's answer
is the vote over every answer so far, and its confidence that vote's share. Members that
are slices of one ensemble (two chain-of-thought shuffles, then three more) then make an
ensemble that stops early when its first votes agree: a question costs the full ensemble
only when its first votes disagree.

How many calls a question costs depends on the data. Before compilation
`calls_per_question()` is the upper bound (every kept member runs); the compiler
measures the mean on the dev split and records it in the frozen module
(`expected_calls`), which `calls_per_question()` then reports. What each question
actually cost is in its run result (`usage.calls`).

Members share their randomness (one seed for all, so shuffle orders and random exemplars
coincide), and within a question a temperature-0 request a member repeats from an earlier
member is answered from the earlier call, not sent again nor counted: an escalation to
`Vote(Shuffle(SelfCoT, n=5))` after a screen `Vote(Shuffle(SelfCoT, n=2))` costs 3 more calls,
and gives exactly the 5-shuffle ensemble's answer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Mapping

from ..lm.base import LMRequest, LMResponse
from ..question import Question
from .base import Module, ModuleError, Prediction, Resolver, RunContext, register, resolve_tune, tune_to_config
from .vote import plurality

SKIP = "skip"
MAX_MEMBERS = 8
#: Default threshold choices for each member but the last.
DEFAULT_THRESHOLDS: tuple[Any, ...] = (0.0, 0.6, 0.75, 0.9, 1.0, SKIP)

Threshold = float | str


def _check_threshold(t: Any, where: str) -> Threshold:
    if t == SKIP:
        return SKIP
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= float(t) <= 1.0:
        raise ModuleError(f"{where} must be a confidence within 0..1 or {SKIP!r}, got {t!r}")
    return float(t)


@register
@dataclass(frozen=True, eq=False)
class Route(Module):
    """Screen with the cheap members, escalate the questions they are unsure of."""

    members: tuple[Module, ...]
    thresholds: tuple[Threshold, ...] | None = None
    expected_calls: float | None = None
    pool: bool = False
    tune: Any = True

    type_name: ClassVar[str] = "Route"

    def __post_init__(self) -> None:
        members = tuple(self.members) if isinstance(self.members, (list, tuple)) else (self.members,)
        if not 2 <= len(members) <= MAX_MEMBERS:
            raise ModuleError(f"Route needs 2..{MAX_MEMBERS} members (cheapest first), got {len(members)}")
        if not all(isinstance(m, Module) for m in members):
            raise ModuleError("Route members must be modules")
        object.__setattr__(self, "members", members)
        thresholds = self.thresholds if self.thresholds is not None else (0.75,) * (len(members) - 1)
        if isinstance(thresholds, (str, int, float)):
            thresholds = (thresholds,)
        if len(thresholds) != len(members) - 1:
            raise ModuleError(f"Route.thresholds needs one value per member but the last ({len(members) - 1}), "
                              f"got {len(thresholds)}")
        object.__setattr__(self, "thresholds", tuple(_check_threshold(t, f"Route.thresholds[{i}]")
                                                     for i, t in enumerate(thresholds)))
        if self.expected_calls is not None:
            e = self.expected_calls
            if isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e) or e < 0:
                raise ModuleError(f"Route.expected_calls must be a non-negative number, got {e!r}")
            object.__setattr__(self, "expected_calls", float(e))
        if not isinstance(self.pool, bool):
            raise ModuleError(f"Route.pool must be true or false, got {self.pool!r}")
        default = {f"threshold{i}": DEFAULT_THRESHOLDS for i in range(len(members) - 1)}
        tune = resolve_tune(self.tune, default, "Route", extra=("pool",))
        for k, choices in (tune or {}).items():
            if k == "pool":
                if any(not isinstance(c, bool) for c in choices):
                    raise ModuleError(f"Route.tune.pool choices must be true/false, got {list(choices)}")
                continue
            tune[k] = tuple(_check_threshold(t, f"Route.tune.{k}") for t in choices)  # type: ignore[index]
        object.__setattr__(self, "tune", tune)
        # a choice with one value is no choice: it is the setting (the search only sees choices of 2+)
        fixed = {k: v[0] for k, v in (tune or {}).items() if len(v) == 1}
        if fixed:
            object.__setattr__(self, "thresholds", tuple(fixed.get(f"threshold{i}", t)
                                                         for i, t in enumerate(self.thresholds)))
            object.__setattr__(self, "pool", bool(fixed.get("pool", self.pool)))

    # ---- running -----------------------------------------------------------------------
    def plan(self) -> list[tuple[int, Threshold | None]]:
        """(member index, its threshold) for the members that may run; None = answers whatever."""
        return _plan(self.thresholds, len(self.members))

    def forward(self, q: Question, ctx: RunContext, path: str) -> Prediction:
        ctx = RepeatFreeContext.around(ctx)
        fallback: Prediction | None = None
        plan = self.plan()
        so_far: list[Prediction] = []
        for step, (i, t) in enumerate(plan):
            p = self.members[i](q, ctx, f"{path}/route{i}")
            if self.pool:
                so_far.append(p)
                p = plurality(so_far, list(q.options))
            if p.answer is not None and (fallback is None or p.confidence > fallback.confidence):
                fallback = p
            last = step == len(plan) - 1  # the last member, or one at threshold 0.0: nothing is planned after it
            if last or (p.answer is not None and p.confidence >= float(t)):  # type: ignore[arg-type]
                how = "last member" if last else f"confidence {p.confidence:.3f} >= {float(t):g}"  # type: ignore[arg-type]
                if p.answer is None and fallback is not None:  # the escalation abstained: the best earlier answer stands
                    return replace(fallback, reason=f"route: member {i} abstained, earlier answer kept")
                return replace(p, reason=p.reason if p.answer is None else f"route: member {i} ({how})")
        raise AssertionError("unreachable: the last planned member always answers")  # pragma: no cover

    # ---- structure / tuning ----------------------------------------------------------------
    def children(self) -> list[tuple[str, Module]]:
        return [(f"members.{i}", m) for i, m in enumerate(self.members)]

    def with_children(self, new: Mapping[str, Module]) -> "Route":
        return replace(self, members=tuple(new.get(f"members.{i}", m) for i, m in enumerate(self.members)),
                       tune=self.tune or False)

    def configure(self, params: Mapping[str, Any]) -> "Route":
        chosen = tuple(params.get(f"threshold{i}", t) for i, t in enumerate(self.thresholds))
        return replace(self, thresholds=chosen, pool=bool(params.get("pool", self.pool)), tune=False,
                       expected_calls=None)

    def inert_params(self, chosen: Mapping[str, Any]) -> set[str]:
        """Members that cannot run under the chosen thresholds, and thresholds after an 'always stop'."""
        ths = tuple(chosen.get(f"threshold{i}", t) for i, t in enumerate(self.thresholds))
        runs = {i for i, _ in _plan(ths, len(self.members))}
        out = {f"members.{i}" for i in range(len(self.members)) if i not in runs}
        stop = next((i for i, t in enumerate(ths) if t != SKIP and float(t) == 0.0), None)
        if stop is not None:
            out |= {f"threshold{i}" for i in range(stop + 1, len(ths))}
        return out

    def seeded(self, seed: int, *, override: bool = False) -> "Route":
        """Members get one shared seed (whatever their own), so a member that extends another
        (more shuffles of the same predictor) repeats its calls, which cost nothing the second time."""
        from .base import seed_tree

        members = tuple(seed_tree(m, seed, override=True, path="member") for m in self.members)
        if all(a is b for a, b in zip(members, self.members)):
            return self
        return replace(self, members=members, tune=self.tune or False)

    def max_calls_per_question(self) -> float:
        """Every member that may run, runs: the cost of a question that escalates all the way."""
        return float(sum(self.members[i].calls_per_question() for i, _ in self.plan()))

    def calls_per_question(self) -> float:
        """Expected calls: measured on the dev split once compiled, else the upper bound."""
        return self.expected_calls if self.expected_calls is not None else self.max_calls_per_question()

    def with_expected_calls(self, calls_per_question: float) -> "Route":
        """The same route with its measured mean calls per question recorded."""
        return replace(self, expected_calls=round(float(calls_per_question), 6), tune=self.tune or False)

    # ---- serialisation ---------------------------------------------------------------------
    def to_config(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type_name, "members": [m.to_config() for m in self.members],
                             "thresholds": list(self.thresholds), "expected_calls": self.expected_calls,
                             "pool": self.pool}
        if self.tune is not None:
            d["tune"] = tune_to_config(self.tune)
        return d

    @classmethod
    def from_config(cls, d: Mapping[str, Any], resolve: Resolver) -> "Route":
        return cls(members=tuple(resolve.build(m) for m in d["members"]), thresholds=tuple(d["thresholds"]),
                   expected_calls=d.get("expected_calls"), pool=d.get("pool", False), tune=d.get("tune"))



def _plan(thresholds: tuple[Threshold, ...], n_members: int) -> list[tuple[int, Threshold | None]]:
    out: list[tuple[int, Threshold | None]] = []
    for i, t in enumerate(thresholds):
        if t == SKIP:
            continue
        out.append((i, t))
        if float(t) == 0.0:  # always stops here: nothing after it can run
            return out
    out.append((n_members - 1, None))
    return out


@dataclass
class RepeatFreeContext(RunContext):
    """A question's run context that answers a repeated temperature-0 request from the first
    call: a deterministic request sent twice within one question would only cost twice."""

    memo: dict[str, LMResponse] = field(default_factory=dict)

    @classmethod
    def around(cls, ctx: RunContext) -> "RepeatFreeContext":
        if isinstance(ctx, RepeatFreeContext):
            return ctx
        return cls(**{f.name: getattr(ctx, f.name) for f in fields(ctx) if f.init})

    def complete(self, path: str, request: LMRequest) -> LMResponse:
        if request.temperature > 0:
            return super().complete(path, request)
        key = request.cache_key()
        with self._lock:
            hit = self.memo.get(key)
        if hit is not None:
            return hit
        resp = super().complete(path, request)
        with self._lock:
            self.memo[key] = resp
        return resp
