"""medcompile's side: `optimize` with default options, uniform random search over the
same space with the same scoring, and the fixed Medprompt recipe.

Every run gets its own simulated LM with the budget enforced at the simulator
(`world.lm(budget=...)`) and its own temporary study storage, so runs are independent
and nothing lands in the user's cache.
"""
from __future__ import annotations

import hashlib
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from medcompile.program.program import Program
from medcompile.question import Question

from .programs import declared, fixed_params, medprompt_recipe
from .world import Cell, dev_for_budget

_FAST_TMP = "/dev/shm" if Path("/dev/shm").is_dir() else None

#: `optimize` defaults the random search mirrors (trial cap, rationale share, instructions).
DEFAULT_TRIALS = 24
N_INSTRUCTIONS = 3


@dataclass
class Outcome:
    """What one optimizer run produced: a way to answer test questions, and its cost."""

    answer: Any = None  # callable(replicate) -> list[str|None] over the test split, or None on failure
    calls_per_question: float | None = None
    compile_calls: int = 0
    status: str = "ok"
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0


def _sim_calls(lm: Any) -> int:
    return int(getattr(lm, "calls", 0))


def _answers(cell: Cell, prog: Program, mode: str) -> Any:
    def run(replicate: int) -> list[str | None]:
        lm = cell.world.lm(mode=mode, replicate=replicate)
        return [r.prediction.answer for r in prog.run_many(cell.splits.test, lm)]
    return run


# ---- medcompile optimize, default options ------------------------------------------------------
def run_optimize(cell: Cell, comparison: str, budget: int, seed: int, *, dev_policy: str = "budget",
                 mode: str = "text", options: dict[str, Any] | None = None) -> Outcome:
    from medcompile.compile import optimize

    lm = cell.world.lm(mode=mode, replicate=0, budget=budget)
    dev = pick_dev(cell, budget, seed, dev_policy)
    t0 = time.perf_counter()
    out = Outcome()
    # tmpfs when there is one: the study's SQLite commits then cost no disk syncs
    with tempfile.TemporaryDirectory(prefix="regret_mc_", dir=_FAST_TMP) as tmp:
        try:
            prog = optimize(declared(comparison), cell.splits.bank, dev, lm=lm, budget=budget, seed=seed,
                            out=Path(tmp) / "program.json", quiet=True, **(options or {}))
            info = prog.compile_info or {}
            out.answer = _answers(cell, prog, mode)
            out.calls_per_question = float(prog.calls_per_question())
            out.detail = {"chosen": info.get("chosen"), "dev": info.get("dev"), "trials": info.get("trials"),
                          "spent_calls": info.get("budget", {}).get("spent_calls"), "dev_n": len(dev),
                          **{k: info[k] for k in ("selection", "confirmation") if k in info}}
        except Exception as e:  # noqa: BLE001 - a failed compile is a result, recorded as such
            out.status, out.error = "failed", f"{type(e).__name__}: {str(e)[:300]}"
    out.compile_calls = _sim_calls(lm)
    out.wall_s = time.perf_counter() - t0
    return out


def pick_dev(cell: Cell, budget: int, seed: int, policy: str) -> list[Question]:
    """'budget': budget/10 questions (>= 16) for every searcher; 'all': the whole dev split."""
    if policy == "all":
        return list(cell.splits.dev)
    if policy.isdigit():
        from medcompile.data import sample

        return sample(list(cell.splits.dev), min(int(policy), len(cell.splits.dev)), seed=seed)
    return dev_for_budget(cell.splits.dev, budget, seed)


# ---- shared preparation: rationales, instructions, banks ------------------------------------------
def _prep(cell: Cell, root_prog: Program, lm: Any, budget: int, seed: int, n_rationales: int,
          n_instructions: int) -> tuple[Any, list[str], dict[str, Any]]:
    from medcompile.bank import Bank
    from medcompile.compile.instructions import propose_instructions
    from medcompile.compile.optimizer import _seeded_order
    from medcompile.compile.rationales import generate_rationales
    from medcompile.compile.space import BankChoice
    from medcompile.exemplar import Exemplar

    train = cell.splits.bank
    sig = root_prog.signature
    pool = _seeded_order(train, seed)[: max(0, min(n_rationales, len(train), budget))]
    kept, st = generate_rationales(pool, lm, sig, root_prog.templates) if pool else ([], None)
    rationales = {e.question.id: e.rationale or "" for e in kept}
    instructions = [sig.instruction]
    if n_instructions > 0:
        examples = _seeded_order(train, seed + 1)[:3]
        instructions, _ = propose_instructions(sig.instruction, examples, lm, n=n_instructions, seed=seed)
    full = Bank([Exemplar(q) for q in train])
    keep = [i for i, q in enumerate(train) if q.id in rationales]
    sub = full.subset(keep)
    cot = sub.with_exemplars([Exemplar(e.question, rationales[e.question.id]) for e in sub.exemplars])
    info = {"rationales": st.to_dict() if st else None, "instructions": len(instructions)}
    return BankChoice(full=full, cot=cot), instructions, info


# ---- uniform random search over the same space ------------------------------------------------------
def run_random_search(cell: Cell, comparison: str, budget: int, seed: int, *, dev_policy: str = "budget",
                      mode: str = "text", max_trials: int = DEFAULT_TRIALS) -> Outcome:
    """Same preparation and dev scoring as `optimize` (rationales as `default_rationales(budget)`, 3
    proposed instructions, `evaluate_candidate`), but configurations drawn uniformly at
    random and the best mean dev score kept (ties: fewer calls, then earlier)."""
    from medcompile.compile.space import apply, canonical, collect_space
    from medcompile.compile.trial import TrialOutcome, accuracy_metric, evaluate_candidate
    from medcompile.lm.meter import BudgetExceeded, MeteredLM

    t0 = time.perf_counter()
    sim = cell.world.lm(mode=mode, replicate=0, budget=budget)
    lm = MeteredLM(sim)
    dev = pick_dev(cell, budget, seed, dev_policy)
    decl = declared(comparison)
    out = Outcome()
    try:
        from medcompile.compile.options import default_rationales

        banks, instructions, info = _prep(cell, decl, lm, budget, seed, default_rationales(budget), N_INSTRUCTIONS)
        space = collect_space(decl.root, tuple(instructions))
        rng = random.Random(seed)
        seen: set[str] = set()
        best: tuple[float, float, int] | None = None
        best_prog: Program | None = None
        trials = misfits = 0
        while trials < max_trials and misfits < 50:
            spent = lm.snapshot().calls
            params = {p.key: rng.choice(p.choices) for p in space}
            cand = apply(decl.root, params, banks)
            key = hashlib.sha256(canonical(cand).encode()).hexdigest()
            est = int(len(dev) * cand.calls_per_question())
            if key in seen or spent + est > budget:
                misfits += 1
                continue
            seen.add(key)
            misfits = 0
            trials += 1
            prog = Program(cand, name=decl.name, templates=decl.templates, seed=seed)
            o = TrialOutcome()
            try:
                evaluate_candidate(prog, dev, lm, budget - spent, accuracy_metric, minibatch=len(dev), report=None,
                                   concurrency=1, outcome=o)
            except BudgetExceeded:
                break
            score = (o.mean, -cand.calls_per_question(), -trials)
            if best is None or score > best:
                best, best_prog = score, prog
        if best_prog is None:
            raise RuntimeError("no configuration fit the budget")
        out.answer = _answers(cell, best_prog, mode)
        out.calls_per_question = float(best_prog.calls_per_question())
        out.detail = {**info, "trials": trials, "dev_score": best[0] if best else None, "dev_n": len(dev)}
    except Exception as e:  # noqa: BLE001
        out.status, out.error = "failed", f"{type(e).__name__}: {str(e)[:300]}"
    out.compile_calls = _sim_calls(sim)
    out.wall_s = time.perf_counter() - t0
    return out


# ---- the fixed Medprompt recipe ---------------------------------------------------------------------
def run_medprompt_fixed(cell: Cell, budget: int, seed: int, *, mode: str = "text") -> Outcome:
    """kNN k=5, self-generated CoT (rationales for as many bank questions as the budget
    allows, wrong ones dropped), 5 shuffles + vote, the default instruction. No search."""
    from medcompile.compile.space import apply

    t0 = time.perf_counter()
    sim = cell.world.lm(mode=mode, replicate=0, budget=budget)
    decl = declared("end_to_end")
    out = Outcome()
    try:
        banks, _, info = _prep(cell, decl, sim, budget, seed, budget, 0)
        cand = apply(decl.root, fixed_params(decl.root, medprompt_recipe()), banks)
        prog = Program(cand, name="medprompt_fixed", templates=decl.templates, seed=seed)
        out.answer = _answers(cell, prog, mode)
        out.calls_per_question = float(prog.calls_per_question())
        out.detail = info
    except Exception as e:  # noqa: BLE001
        out.status, out.error = "failed", f"{type(e).__name__}: {str(e)[:300]}"
    out.compile_calls = _sim_calls(sim)
    out.wall_s = time.perf_counter() - t0
    return out


def oracle_row(cell: Cell, comparison: str) -> dict[str, Any]:
    o = cell.oracle(comparison)
    return {"oracle_accuracy": float(o.expected_accuracy), "oracle_calls_per_question": float(o.calls_per_question),
            "oracle_best": _short(getattr(o, "best", {}))}


def _short(params: Any) -> Any:
    if not isinstance(params, dict):
        return str(params)[:200]
    return {k: (v if not isinstance(v, str) or len(v) <= 64 else f"<{len(v)} chars>") for k, v in params.items()}


def chosen_is_one_call(out: Outcome) -> bool | None:
    return None if out.calls_per_question is None else out.calls_per_question <= 1.0


__all__: Sequence[str] = ["Outcome", "run_optimize", "run_random_search", "run_medprompt_fixed", "oracle_row",
                          "pick_dev"]
