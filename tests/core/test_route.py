"""Route (Medprompt+ portfolio) against scripted models: when it stops, when it escalates, what it costs."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import pytest

from medcompile import Predict, Program, Route, SelfCoT, Shuffle, Vote
from medcompile.compile.space import BankChoice, active_params, apply, collect_space, count_configurations
from medcompile.lm.scripted import ScriptedLM
from medcompile.modules.base import Module, ModuleError, Prediction, Resolver, RunContext
from medcompile.modules.route import DEFAULT_THRESHOLDS, SKIP
from medcompile.question import Question
from tests.conftest import mcq
from tests.core.scripted import is_cot, last_question, reply


@dataclass(frozen=True, eq=False)
class Fixed(Module):
    """A test member: answers `answer` with `confidence`, costing `cost` calls (counted in a list)."""

    answer: str | None
    confidence: float
    cost: float = 1.0
    log: Any = None
    tune: Any = None
    type_name: ClassVar[str] = "Fixed"

    def forward(self, q: Question, ctx: RunContext, path: str) -> Prediction:
        if self.log is not None:
            self.log.append(path)
        return Prediction(self.answer, self.confidence, {self.answer: 1} if self.answer else {}, reason="fixed")

    def calls_per_question(self) -> float:
        return self.cost

    def configure(self, params: Mapping[str, Any]) -> "Fixed":
        return self

    def to_config(self) -> dict[str, Any]:
        return {"type": "Fixed"}


def run(route: Route, q: Question | None = None) -> Prediction:
    return route(q or mcq(1, "B"), RunContext(lm=ScriptedLM(lambda r: " A"), builder=Program(route).builder), "")


def test_confident_screen_stops_unsure_screen_escalates():
    log: list[str] = []
    screen_sure = Fixed("A", 0.95, log=log)
    big = Fixed("B", 0.6, cost=5, log=log)
    p = run(Route([screen_sure, big], thresholds=[0.9], tune=False))
    assert p.answer == "A" and log == ["/route0"] and "member 0" in p.reason
    log.clear()
    p = run(Route([Fixed("A", 0.85, log=log), big], thresholds=[0.9], tune=False))
    assert p.answer == "B" and log == ["/route0", "/route1"] and "member 1" in p.reason


def test_threshold_zero_never_escalates_and_skip_never_runs():
    log: list[str] = []
    r0 = Route([Fixed("A", 0.1, log=log), Fixed("B", 1.0, cost=5, log=log)], thresholds=[0.0], tune=False)
    assert run(r0).answer == "A" and log == ["/route0"]
    assert r0.max_calls_per_question() == 1.0 and r0.plan() == [(0, 0.0)]
    log.clear()
    rs = Route([Fixed("A", 1.0, log=log), Fixed("B", 0.2, cost=5, log=log)], thresholds=[SKIP], tune=False)
    assert run(rs).answer == "B" and log == ["/route1"]
    assert rs.max_calls_per_question() == 5.0


def test_three_members_cascade_and_skip_in_the_middle():
    log: list[str] = []
    members = [Fixed("A", 0.5, log=log), Fixed("C", 0.7, cost=3, log=log), Fixed("D", 0.2, cost=5, log=log)]
    assert run(Route(members, thresholds=[0.6, 0.6], tune=False)).answer == "C"
    assert log == ["/route0", "/route1"]
    log.clear()
    assert run(Route(members, thresholds=[0.6, SKIP], tune=False)).answer == "D"
    assert log == ["/route0", "/route2"]
    assert Route(members, thresholds=[0.6, SKIP], tune=False).max_calls_per_question() == 6.0


def test_abstaining_escalation_keeps_the_best_earlier_answer():
    r = Route([Fixed("C", 0.4), Fixed(None, 0.0, cost=5)], thresholds=[0.9], tune=False)
    p = run(r)
    assert p.answer == "C" and "abstained" in p.reason
    # an abstaining screen always escalates, whatever its threshold
    log: list[str] = []
    r = Route([Fixed(None, 0.0, log=log), Fixed("D", 0.3, log=log)], thresholds=[0.0 + 1e-9], tune=False)
    assert run(r).answer == "D" and log == ["/route0", "/route1"]


def test_vote_share_is_the_screens_confidence_with_real_modules():
    """Screen: 3 direct answers with shuffled options; unanimous on even questions, split 2:1 on odd ones
    (wrong in the original option order, right in the shuffled ones).
    Escalation: CoT that knows the answer. Calls per question are exact in the run results."""

    def fn(req):
        stem, opts = last_question(req)
        i = int(stem.split()[2].rstrip(":"))
        gold_text = f"option {'ABCD'[i % 4].lower()} for question {i}"
        right = next(k for k, v in opts.items() if v == gold_text)
        if is_cot(req):
            return reply(req, right)
        original_order = list(opts.values()) == sorted(opts.values())
        if i % 2 == 1 and original_order:
            return reply(req, "A" if right != "A" else "B")
        return reply(req, right)

    lm = ScriptedLM(fn)
    screen = Vote(Shuffle(Predict(tune=False), n=3, tune=False))
    expert = Vote(Shuffle(SelfCoT(tune=False), n=5, tune=False))
    prog = Program(Route([screen, expert], thresholds=[1.0], tune=False))
    qs = [mcq(i, "ABCD"[i % 4]) for i in range(8)]
    results = prog.run_many(qs, lm)
    assert all(r.correct for r in results)
    assert [r.usage.calls for r in results] == [3 if i % 2 == 0 else 8 for i in range(8)]
    assert lm.calls == sum(r.usage.calls for r in results)
    # at threshold 0.6 a 2:1 vote (confidence 2/3) stops too: the screen's majority is right, 3 calls each
    cheap = Program(Route([screen, expert], thresholds=[0.6], tune=False)).run_many(qs, lm)
    assert all(r.correct for r in cheap) and [r.usage.calls for r in cheap] == [3] * 8
    assert [r.prediction.confidence for r in cheap] == pytest.approx([1.0, 2 / 3] * 4)


def test_space_configure_and_expected_calls():
    r = Route([Predict(tune=False), Vote(Shuffle(SelfCoT(tune=False), n=5, tune=False))])
    assert r.space() == {"threshold0": DEFAULT_THRESHOLDS}
    params = collect_space(r)
    assert [p.key for p in params] == ["threshold0"]
    frozen = apply(r, {"threshold0": 0.9}, BankChoice(full=None, cot=None))  # type: ignore[arg-type]
    assert isinstance(frozen, Route) and frozen.thresholds == (0.9,) and frozen.tune is None
    assert frozen.calls_per_question() == 6.0  # not measured yet: the upper bound
    measured = frozen.with_expected_calls(2.25)
    assert measured.calls_per_question() == 2.25 and measured.max_calls_per_question() == 6.0
    assert apply(measured, {"threshold0": 0.6}, None).calls_per_question() == 6.0  # type: ignore[arg-type]
    custom = Route([Predict(tune=False), SelfCoT(tune=False)], tune={"threshold0": [0.5, SKIP]})
    assert custom.space() == {"threshold0": (0.5, SKIP)}
    one = Route([Predict(tune=False), SelfCoT(tune=False)], tune={"threshold0": [1.0], "pool": [True]})
    assert one.thresholds == (1.0,) and one.pool  # a single choice is the setting, not ignored
    assert apply(one, {}, None).thresholds == (1.0,)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs, msg", [
    ({"members": [Predict(tune=False)]}, "2..8 members"),
    ({"members": [Predict(tune=False), "x"]}, "must be modules"),
    ({"members": [Predict(tune=False)] * 3, "thresholds": [0.5]}, "one value per member"),
    ({"members": [Predict(tune=False)] * 2, "thresholds": [1.5]}, "within 0..1"),
    ({"members": [Predict(tune=False)] * 2, "thresholds": [True]}, "within 0..1"),
    ({"members": [Predict(tune=False)] * 2, "tune": {"threshold0": [0.5, "never"]}}, "within 0..1"),
    ({"members": [Predict(tune=False)] * 2, "tune": {"threshold1": [0.5]}}, "unknown parameter"),
    ({"members": [Predict(tune=False)] * 2, "expected_calls": -1}, "non-negative"),
])
def test_bad_routes_are_refused_with_the_cause(kwargs: dict, msg: str):
    with pytest.raises(ModuleError, match=msg):
        Route(**kwargs)


def test_config_round_trip_keeps_thresholds_and_expectation():
    r = Route([Predict(tune=False), Vote(Shuffle(SelfCoT(tune=False), n=3, tune=False))],
              thresholds=[SKIP], expected_calls=3.0, tune=False)
    cfg = json.loads(json.dumps(r.to_config()))
    back = Resolver({}).build(cfg)
    assert isinstance(back, Route) and back.to_config() == r.to_config()
    assert back.thresholds == (SKIP,) and back.calls_per_question() == 3.0


def test_members_that_cannot_run_are_inert_choices():
    r = Route([Predict(tune=False), SelfCoT(tune=False), Vote(Shuffle(SelfCoT(tune=False), n=3, tune=False))])
    assert r.inert_params({"threshold0": 0.9, "threshold1": 0.9}) == set()
    assert r.inert_params({"threshold0": 0.0, "threshold1": 0.9}) == {"members.1", "members.2", "threshold1"}
    assert r.inert_params({"threshold0": SKIP, "threshold1": 0.0}) == {"members.0", "members.2"}


def test_compiled_route_records_its_measured_calls_per_question(tmp_path):
    """The compiler measures a portfolio's calls per question on dev and freezes that expectation."""
    from medcompile import load, optimize

    def fn(req):  # direct answers: always 'A'; reasoning knows the answer
        stem, opts = last_question(req)
        i = int(stem.split()[2].rstrip(":"))
        right = next(k for k, v in opts.items() if v == f"option {'ABCD'[i % 4].lower()} for question {i}")
        return reply(req, right) if is_cot(req) else reply(req, "A")

    qs = [mcq(i, "ABCD"[i % 4]) for i in range(24)]
    screen = Vote(Shuffle(Predict(tune=False), n=2, tune=False))
    expert = Vote(Shuffle(SelfCoT(tune={"cot": [True]}), n=3, tune=False))
    declared = Program(Route([screen, expert], tune={"threshold0": [1.0]}), name="route")
    out = tmp_path / "route.json"
    prog = optimize(declared, qs[:12], qs[12:], lm=ScriptedLM(fn), budget=200, seed=0, quiet=True, max_trials=2,
                    n_instructions=0, out=out)
    measured = prog.compile_info["calls_per_question"]
    assert 2.0 < measured < 5.0  # the screen always, the expert on some questions only
    assert prog.root.expected_calls == measured and prog.calls_per_question() == measured
    assert prog.root.max_calls_per_question() == 5.0
    again = load(out)
    assert again.calls_per_question() == measured
    results = again.run_many(qs[12:], ScriptedLM(fn))
    # exact per question: the screen (2), or screen + expert (3 more, fewer when two shuffles coincide)
    per_question = [r.usage.calls for r in results]
    assert set(per_question) <= {2, 3, 4, 5} and 2 in per_question and max(per_question) > 2


def test_an_escalation_that_extends_the_screen_repeats_no_call():
    """Members share one seed, and a repeated temperature-0 request within a question is served
    from the first call: 2 CoT shuffles, then the 5-shuffle ensemble, costs 2 + 3 calls and answers
    exactly as the 5-shuffle ensemble alone."""

    def fn(req):
        stem, opts = last_question(req)
        # the answer depends on the option order: shuffles disagree, so every question escalates
        return reply(req, "ABCD"[sum(map(ord, "".join(opts.values()))) % 4], rationale="Thinking.")

    screen = Vote(Shuffle(SelfCoT(tune=False), n=2, tune=False))
    ensemble = Vote(Shuffle(SelfCoT(tune=False), n=5, tune=False))
    route = Program(Route([screen, ensemble], thresholds=[1.0], tune=False), seed=3)
    qs = [mcq(i, "A") for i in range(6)]
    lm = ScriptedLM(fn)
    results = route.run_many(qs, lm)
    escalated = [r for r in results if "member 1" in r.prediction.reason]
    assert len(escalated) >= 3
    assert lm.calls == sum(r.usage.calls for r in results)
    shuffles = [m for _, m in route.root.walk() if isinstance(m, Shuffle)]
    assert shuffles[0].seed == shuffles[1].seed  # one seed for the members
    alone = Program(Vote(Shuffle(SelfCoT(tune=False), n=5, tune=False, seed=shuffles[1].seed)), seed=3)
    for r in escalated:
        alone_lm = ScriptedLM(fn)
        a = alone.run(r.question, alone_lm)
        assert r.prediction.answer == a.prediction.answer and r.prediction.votes == a.prediction.votes
        # the escalated question cost exactly the ensemble's distinct requests: nothing of the screen's again
        assert r.usage.calls == len({req.cache_key() for req in alone_lm.requests}) <= 5


@pytest.mark.real_model
def test_route_on_the_real_model_screens_with_option_probabilities(local_lm, medqa_dev):
    """The embedded model scores the option keys: the screen's confidence is a probability, and a
    question escalates to a 3-shuffle direct vote exactly when it is below the threshold."""
    screen = Predict(tune=False)
    route = Program(Route([screen, Vote(Shuffle(Predict(tune=False), n=3, tune=False))], thresholds=[0.5],
                          tune=False))
    qs = medqa_dev[:3]
    alone = Program(screen).run_many(qs, local_lm)
    assert all(0.0 < r.prediction.confidence < 1.0 for r in alone)  # scored, not parsed
    for r, s in zip(route.run_many(qs, local_lm), alone):
        if s.prediction.confidence >= 0.5:
            assert r.usage.calls == 1 and r.prediction.answer == s.prediction.answer
        else:  # run 0 of the shuffles repeats the screen's request: served from it, not sent again
            # (so 3 calls; 2 when the other two shuffled orders happen to coincide)
            assert r.usage.calls in (2, 3) and "member 1" in r.prediction.reason


def test_an_always_stop_member_that_abstains_ends_the_route_with_its_abstention():
    """Threshold 0.0 plans nothing after its member, so that member's reply is final even
    when it names no option (a model error, an unparsable reply): an abstention, not a crash."""
    log: list[str] = []
    p = run(Route([Fixed(None, 0.0, log=log), Fixed("B", 1.0, cost=5, log=log)], thresholds=[0.0], tune=False))
    assert p.answer is None and p.reason == "fixed" and log == ["/route0"]
    log.clear()
    three = Route([Fixed("A", 0.5, log=log), Fixed(None, 0.0, log=log), Fixed("D", 1.0, cost=5, log=log)],
                  thresholds=[0.9, 0.0], tune=False)
    p = run(three)  # the screen escalated, the always-stop member abstained: the screen's answer stands
    assert p.answer == "A" and "abstained" in p.reason and log == ["/route0", "/route1"]


def test_the_search_never_varies_a_member_that_cannot_run():
    """Route's inert choices reach the compiler: configurations that differ only in a member the
    thresholds leave out are one configuration (counted once, never proposed twice)."""
    screen = Predict(tune={"temperature": [0.0, 0.7]})                  # 2 configurations
    expert = Vote(Shuffle(SelfCoT(tune=False), n=3, tune={"n": [1, 3, 5]}))  # 3 configurations
    root = Route([screen, expert])                                      # threshold0: 6 choices
    space = collect_space(root)
    assert [p.key for p in space] == ["threshold0", "members.0.temperature", "members.1.members.0.n"]
    # 0.0 = screen only (2), SKIP = expert only (3), four real thresholds = both (4 x 2 x 3)
    assert count_configurations(root, space) == 2 + 3 + 4 * 2 * 3 < 6 * 2 * 3

    def picks(threshold: Any) -> dict[str, Any]:
        return active_params(root, space, lambda p: threshold if p.key == "threshold0" else p.choices[-1])

    assert picks(0.0) == {"threshold0": 0.0, "members.0.temperature": 0.7}
    assert picks(SKIP) == {"threshold0": SKIP, "members.1.members.0.n": 5}
    assert picks(0.75) == {"threshold0": 0.75, "members.0.temperature": 0.7, "members.1.members.0.n": 5}


def test_thresholds_after_an_always_stop_are_not_searched():
    members = [Predict(tune=False), SelfCoT(tune=False), Vote(Shuffle(SelfCoT(tune=False), n=3, tune=False))]
    root = Route(members, tune={"threshold0": [0.0, 0.9], "threshold1": [0.6, 0.9, SKIP]})
    space = collect_space(root)
    assert count_configurations(root, space) == 1 + 3  # 0.0 ends the cascade: threshold1 cannot matter
    fixed_stop = Route(members, thresholds=[0.0, 0.6], tune={"threshold1": [0.6, 0.9]})
    assert count_configurations(fixed_stop, collect_space(fixed_stop)) == 1
