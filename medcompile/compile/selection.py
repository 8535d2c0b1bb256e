"""Choosing a configuration without choosing noise.

A few dozen dev questions cannot tell most configurations apart, so the compiler
never picks on a point estimate alone:

1. `split_dev`: the dev set is split (seeded) into *search* questions, on which the
   optuna search scores and races candidates, and *confirmation* questions the search
   never sees.
2. `race`: while a candidate is scored on a growing prefix of the search questions, it
   is compared, question by question (paired), with the finished candidates. It stops
   early when it is significantly worse than the leader, or when it costs more calls
   than a cheaper candidate it is not ahead of: its calls go where they can still
   separate candidates.
3. `choose`: the top candidates and the cheapest configuration are scored on the
   confirmation questions (paired) and, by default, compared on all their dev
   questions (search + confirmation, `select_on="pooled"`: the held-out questions add
   evidence the search's winner did not pick, the search questions add power). Two
   rules, both with an explicit risk level alpha (default: "ahead" at alpha 0.2,
   chosen on random simulated profiles, `benchmarks/results/selection_design.md`):
   - "not_worse": among those not significantly worse than the best there (exact
     two-sided McNemar at alpha), the one with the fewest calls per question wins;
   - "ahead" (cost-aware): start from the cheapest; walk up in cost, and move to a
     costlier candidate only when it is ahead of the current choice with one-sided
     confidence 1 - alpha (exact sign test on the discordant questions). alpha is
     the price of extra calls: the chance of paying for them when they buy nothing.
   Ties go to the better estimate, then fewer tokens (simpler prompts), then trial
   order. Two configurations of equal quality give the cheaper (with probability at
   least 1 - alpha per step); when nothing helps, the one-call configuration.

The report states the chosen program's estimate and 95% CI on the confirmation
questions, its paired comparisons with the cheapest candidate and the runner-up, and
roughly how many questions would separate the top two (McNemar power calculation).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..evaluate.stats import accuracy_ci, format_p, mcnemar_exact, paired_bootstrap, win_tie_loss
from ..modules.base import derive_seed
from ..question import Question

ALPHA = 0.05  # reporting tests (significantly better/worse than); the choice uses its own alpha
RULES = ("not_worse", "ahead")
DEFAULT_RULE = "ahead"  # measured on random simulated profiles: benchmarks/results/selection_design.md
DEFAULT_SELECT_ALPHA = 0.2
POWER = 0.8
Z_DROP = 1.645  # one-sided 95%: "significantly worse" while racing
ALPHA_DROP = 0.05  # the same, for right/wrong scores (exact sign test)
Z_KEEP = 1.0  # a costlier candidate stops once it is more than one standard error behind a cheaper one
MIN_RACE_QUESTIONS = 4  # no racing decision on fewer paired questions
MIN_PATIENT_QUESTIONS = 8  # ... when racing patiently
MIN_SPLIT = 4  # below this many dev questions, confirmation reuses the search questions
MIN_ALIKE_QUESTIONS = 12  # same correctness on every question: evidence of "no better" only this far


@dataclass(frozen=True)
class DevSplit:
    search: list[Question]
    confirm: list[Question]
    reused: bool = False  # the dev set was too small to hold questions out

    def to_dict(self) -> dict[str, Any]:
        return {"search_questions": len(self.search), "confirmation_questions": len(self.confirm),
                "confirmation_reuses_search": self.reused}


def split_dev(dev: Sequence[Question], seed: int, fraction: float) -> DevSplit:
    """A seeded split, independent of input order: `fraction` of the dev questions (at
    least one) are held out for confirmation; the rest are searched in a seeded order."""
    order = sorted(dev, key=lambda q: (derive_seed(seed, "dev-split", q.id, q.question), q.id))
    n_confirm = min(len(order) - 1, max(1, round(len(order) * fraction))) if fraction > 0 else 0
    if len(order) < MIN_SPLIT or n_confirm < 1:
        return DevSplit(order, order, reused=True)
    return DevSplit(order[n_confirm:], order[:n_confirm])


# ---- racing ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reference:
    """A finished candidate the running one is raced against (scores on the search questions)."""

    number: int
    scores: Sequence[float]
    cost: float  # calls per question


def _paired(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of a - b over paired questions."""
    n = len(a)
    d = [x - y for x, y in zip(a, b)]
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var / n)


def _significantly_behind(a: Sequence[float], b: Sequence[float], paired: tuple[float, float]) -> bool:
    """Is `a` behind `b` on the same questions, one-sided at 5%? Right/wrong scores get the
    exact sign test on the questions they disagree on (as McNemar): the normal approximation
    called 2 of 4 questions lost "significant". Other scores (vote fractions) get the z rule
    on `paired`, the (mean, standard error) of a - b."""
    if all(x in (0.0, 1.0) for x in (*a, *b)):
        w = win_tie_loss(a, b)  # wins: b right where a is wrong, i.e. a's losses
        return w.wins > w.losses and mcnemar_exact(w.losses, w.wins) / 2 < ALPHA_DROP
    mean, se = paired
    return mean + Z_DROP * se < 0


def race(scores: Sequence[float], cost: float, leader: Reference | None, cheaper: Reference | None,
         *, patient: bool = False) -> dict[str, Any] | None:
    """Why a running candidate should stop now (None: keep going).

    `leader` is the best finished candidate, `cheaper` the best finished one that costs
    fewer calls per question than this candidate; both were scored on the same search
    questions in the same order, so the first len(scores) of theirs pair with ours.
    """
    n = len(scores)
    if n < (MIN_PATIENT_QUESTIONS if patient else MIN_RACE_QUESTIONS):
        return None
    if leader is not None and len(leader.scores) >= n:
        paired = _paired(scores, leader.scores[:n])
        if _significantly_behind(scores, leader.scores[:n], paired):
            return {"rule": "worse", "ref": leader.number, "n": n, "diff": round(paired[0], 6)}
    if cheaper is not None and cost > cheaper.cost + 1e-9 and len(cheaper.scores) >= n:
        mean, se = _paired(scores, cheaper.scores[:n])
        # behind (`patient`: significantly, as its extra calls may still buy accuracy), or right and
        # wrong on exactly the same questions for long enough to mean it
        alike = mean == 0 and se == 0 and n >= MIN_ALIKE_QUESTIONS
        behind = (_significantly_behind(scores, cheaper.scores[:n], (mean, se)) if patient
                  else mean + Z_KEEP * se < 0)
        if alike or behind:
            return {"rule": "costlier", "ref": cheaper.number, "n": n, "diff": round(mean, 6)}
    return None


def race_note(why: dict[str, Any], ref_label: str) -> str:
    if why["rule"] == "worse":
        return (f"pruned: significantly worse than trial {ref_label} on the same {why['n']} questions "
                f"({100 * why['diff']:+.1f} points)")
    return (f"pruned: costs more calls than trial {ref_label} and is not ahead of it on the same {why['n']} "
            f"questions ({100 * why['diff']:+.1f} points)")


# ---- confirmation and choice ------------------------------------------------------------------------
@dataclass
class Candidate:
    """One configuration scored on the confirmation questions."""

    number: int  # trial number (as shown in the report)
    scores: list[float]
    cost: float  # calls per question on the confirmation questions
    tokens: float  # tokens per question (prompt + completion): the simpler prompt has fewer
    search_score: float | None = None
    search_n: int = 0
    baseline: bool = False

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else 0.0

    def correct(self) -> list[bool]:
        return [s >= 0.5 for s in self.scores]


@dataclass
class Choice:
    chosen: Candidate
    best: Candidate
    runner_up: Candidate | None
    baseline: Candidate | None
    p_vs_best: dict[int, float] = field(default_factory=dict)
    rule: str = DEFAULT_RULE
    alpha: float = DEFAULT_SELECT_ALPHA
    steps: list[dict[str, Any]] = field(default_factory=list)  # "ahead": each costlier candidate's test

    @property
    def not_worse(self) -> list[int]:
        return [n for n, p in self.p_vs_best.items() if p >= ALPHA]


def p_ahead(costlier: Candidate, current: Candidate) -> float:
    """One-sided exact sign test that `costlier` is right more often than `current` on
    the questions where exactly one of them is right (P(X >= wins) at 1/2)."""
    from scipy.stats import binom

    w = win_tie_loss(current.correct(), costlier.correct())  # wins: costlier right, current wrong
    n = w.wins + w.losses
    return 1.0 if n == 0 or w.wins == 0 else float(binom.sf(w.wins - 1, n, 0.5))


def _by_cost(c: Candidate) -> tuple:
    return (round(c.cost, 6), -c.mean, round(c.tokens, 3), c.number)


def choose(cands: Sequence[Candidate], *, alpha: float = DEFAULT_SELECT_ALPHA, rule: str = DEFAULT_RULE) -> Choice:
    """Pick a candidate by `rule` at risk level `alpha` (see the module note).
    Candidates must be scored on the same confirmation questions."""
    if not cands:
        raise ValueError("choose: no candidates")
    if rule not in RULES:
        raise ValueError(f"choose: rule must be one of {RULES}, got {rule!r}")
    best = max(cands, key=lambda c: (c.mean, -c.cost, -c.tokens, -c.number))
    p_vs_best: dict[int, float] = {}
    for c in cands:
        if c is best or c.mean >= best.mean:
            p_vs_best[c.number] = 1.0
            continue
        w = win_tie_loss(best.correct(), c.correct())
        p_vs_best[c.number] = mcnemar_exact(w.losses, w.wins)
    steps: list[dict[str, Any]] = []
    if rule == "not_worse":
        pool = [c for c in cands if p_vs_best[c.number] >= alpha]
        chosen = min(pool, key=_by_cost)
    else:
        order = sorted(cands, key=_by_cost)
        chosen = order[0]
        for c in order[1:]:
            if round(c.cost, 6) <= round(chosen.cost, 6):
                continue  # same cost, lower in the tie order: never a reason to move
            p = p_ahead(c, chosen)
            moved = p < alpha and c.mean > chosen.mean
            steps.append({"costlier": c.number, "current": chosen.number, "p_one_sided": round(p, 6), "moved": moved})
            if moved:
                chosen = c
    others = [c for c in cands if c is not chosen]
    runner_up = max(others, key=lambda c: (c.mean, -c.cost, -c.tokens, -c.number)) if others else None
    baseline = next((c for c in cands if c.baseline), None)
    return Choice(chosen, best, runner_up, baseline, p_vs_best, rule, alpha, steps)


def rule_text(rule: str, alpha: float) -> str:
    if rule == "ahead":
        return ("cheapest candidate unless a costlier one is ahead of it on the confirmation questions with "
                f"one-sided confidence {1 - alpha:g} (exact sign test, paired; alpha {alpha:g}), repeated up the costs")
    return ("cheapest candidate not significantly worse than the best on the confirmation questions "
            f"(exact McNemar, alpha {alpha:g})")


def questions_to_separate(a: Sequence[bool], b: Sequence[bool], *, alpha: float = ALPHA,
                          power: float = POWER) -> int | None:
    """Paired questions a McNemar test needs to tell a from b with the given power, from
    their observed discordance (Connor, 1987): n = (z_a sqrt(psi) + z_b sqrt(psi - delta^2))^2
    / delta^2, psi = discordant share, delta = difference of the two discordant shares.
    None when no difference was observed (no finite answer)."""
    from scipy.stats import norm

    n = len(a)
    if n == 0:
        return None
    p10 = sum(1 for x, y in zip(a, b) if x and not y) / n
    p01 = sum(1 for x, y in zip(a, b) if y and not x) / n
    psi, delta = p10 + p01, p01 - p10
    if delta == 0:
        return None
    za, zb = float(norm.ppf(1 - alpha / 2)), float(norm.ppf(power))
    return math.ceil((za * math.sqrt(psi) + zb * math.sqrt(max(0.0, psi - delta * delta))) ** 2 / (delta * delta))


def _r(x: float) -> float:
    return round(float(x), 6)


def comparison(chosen: Candidate, other: Candidate, label: str, seed: int) -> dict[str, Any]:
    """Chosen vs another candidate on the confirmation questions, paired."""
    a, b = other.correct(), chosen.correct()
    diff = paired_bootstrap(a, b, seed=seed)
    w = win_tie_loss(a, b)
    p = mcnemar_exact(w.losses, w.wins)
    better = p < ALPHA and diff.mean > 0
    worse = p < ALPHA and diff.mean < 0
    word = "significantly better than" if better else "significantly worse than" if worse else \
        "not significantly different from"
    return {"trial": label, "calls_per_question": _r(other.cost), "score": _r(other.mean),
            "diff": _r(diff.mean), "diff_ci95": [_r(diff.low), _r(diff.high)], "p": _r(p),
            "wins": w.wins, "losses": w.losses, "significantly_better": better,
            "text": f"{word} trial {label} ({100 * diff.mean:+.1f} points, 95% CI {100 * diff.low:+.1f} to "
                    f"{100 * diff.high:+.1f}, McNemar {format_p(p)}, n={len(a)})"}


def summary(choice: Choice, label: dict[int, str], seed: int, split: DevSplit, pooled: bool = False) -> dict[str, Any]:
    """The `selection` block of compile_info, and the `dev` estimate of the chosen program."""
    c = choice.chosen
    ci = accuracy_ci(c.correct(), seed=seed)
    rule = rule_text(choice.rule, choice.alpha)
    out: dict[str, Any] = {
        **split.to_dict(),
        "compared_on": "pooled" if pooled else "confirmation",
        "rule": rule.replace("the confirmation questions", "all dev questions (search + confirmation)") if pooled
        else rule,
        "chosen": {"trial": label[c.number], "score": _r(c.mean), "n": len(c.scores),
                   "ci95": [_r(ci.low), _r(ci.high)], "calls_per_question": _r(c.cost)},
        "best_on_confirmation": label[choice.best.number],
        "vs_cheapest": None, "vs_runner_up": None, "questions_to_separate": None,
        "candidates": [],
    }
    if choice.baseline is not None and choice.baseline is not c:
        out["vs_cheapest"] = comparison(c, choice.baseline, label[choice.baseline.number], seed)
    if choice.runner_up is not None:
        out["vs_runner_up"] = comparison(c, choice.runner_up, label[choice.runner_up.number], seed)
        out["questions_to_separate"] = questions_to_separate(c.correct(), choice.runner_up.correct())
    if choice.rule == "ahead":
        out["steps"] = [{**st, "costlier": label[st["costlier"]], "current": label[st["current"]]}
                        for st in choice.steps]
    out["verdict"] = verdict(out, choice)
    return out


def candidate_rows(cands: Sequence[Candidate], choice: Choice, label: dict[int, str], seed: int
                   ) -> list[dict[str, Any]]:
    rows = []
    for c in cands:
        ci = accuracy_ci(c.correct(), seed=seed)
        rows.append({"trial": label[c.number], "calls_per_question": _r(c.cost), "tokens_per_question": _r(c.tokens),
                     "search_score": None if c.search_score is None else _r(c.search_score),
                     "search_n": c.search_n, "score": _r(c.mean), "n": len(c.scores),
                     "ci95": [_r(ci.low), _r(ci.high)], "p_vs_best": _r(choice.p_vs_best[c.number]),
                     "not_worse_than_best": choice.p_vs_best[c.number] >= ALPHA, "cheapest_configuration": c.baseline,
                     "chosen": c is choice.chosen})
    return rows


def _calls(x: float) -> str:
    return f"{x:g} call{'' if x == 1 else 's'}/question"


def verdict(sel: dict[str, Any], choice: Choice) -> str:
    ch = sel["chosen"]
    parts = [f"selection: trial {ch['trial']} ({_calls(ch['calls_per_question'])}) scored {ch['score']:.3f} "
             f"on {ch['n']} {'dev' if sel.get('compared_on') == 'pooled' else 'confirmation'} questions "
             f"(95% CI {ch['ci95'][0]:.3f}-{ch['ci95'][1]:.3f})"]
    same = choice.runner_up is not None and choice.runner_up is choice.baseline
    if choice.baseline is None:
        parts.append("the cheapest configuration was not confirmed")
    elif sel["vs_cheapest"] is None:
        parts.append("it is the cheapest configuration")
    elif not same:
        parts.append("vs the cheapest configuration: " + sel["vs_cheapest"]["text"])
    if sel["vs_runner_up"] is not None:
        q = sel["questions_to_separate"]
        sep = (f"about {q} questions would separate them (80% power, alpha 0.05)" if q is not None
               else "no difference between them was observed, so no sample size can be estimated")
        who = "vs the runner-up, the cheapest configuration: " if same else "vs the runner-up: "
        parts.append(who + sel["vs_runner_up"]["text"] + "; " + sep)
    return "; ".join(parts)
