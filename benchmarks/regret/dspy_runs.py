"""DSPy's optimizers driven through the same simulator, budget enforced at the simulator.

Each compile gets `world.dspy_lm(budget=B)`: past B calls the simulator refuses (raises),
which DSPy records as a failed example; optimizers that keep a best-so-far program keep
it, the others fail and the failure is recorded. Settings are sized to each budget
(`settings_for`), documented in the MD report. DSPy's own caches are off, so every
call reaches the simulator and is counted.
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
import time
from typing import Any, Callable

from .mc_runs import Outcome
from .world import Cell, dev_for_budget

DSPY_OPTIMIZERS = ("labeled", "bootstrap", "bootstrap_rs", "knn", "mipro", "gepa")
LETTER = re.compile(r"\b([A-E])\b")
_STATE: dict[str, Any] = {}


def _dspy() -> Any:
    if "dspy" not in _STATE:
        import dspy

        dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
        for name in ("dspy", "dspy.teleprompt", "dspy.evaluate", "gepa", "optuna", "LiteLLM", "httpx"):
            logging.getLogger(name).setLevel(logging.ERROR)

        class MCQ(dspy.Signature):
            """Answer the medical multiple-choice question with the letter of the single best option."""

            question: str = dspy.InputField()
            options: str = dspy.InputField(desc="one option per line, as 'A. text'")
            answer: str = dspy.OutputField(desc="the letter of the correct option, e.g. B")

        _STATE.update(dspy=dspy, MCQ=MCQ)
    return _STATE["dspy"]


def student(kind: str) -> Any:
    """`predict` -> dspy.Predict(MCQ); `cot` -> dspy.ChainOfThought(MCQ)."""
    dspy = _dspy()
    return dspy.ChainOfThought(_STATE["MCQ"]) if kind == "cot" else dspy.Predict(_STATE["MCQ"])


def options_text(q: Any) -> str:
    return "\n".join(f"{k}. {v}" for k, v in q.options.items())


def to_examples(qs: list[Any]) -> list[Any]:
    dspy = _dspy()
    return [dspy.Example(question=q.question, options=options_text(q), answer=q.answer).with_inputs("question", "options")
            for q in qs]


def letter(text: Any, keys: Any) -> str | None:
    if not isinstance(text, str):
        return None
    m = LETTER.search(text.strip())
    return m.group(1) if m and m.group(1) in keys else None


def metric(example: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> float:
    return float(letter(getattr(pred, "answer", None), "ABCDE") == example.answer)


def gepa_metric(example: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> Any:
    """Score plus the textual feedback GEPA reflects on (the gold letter, as a grader would say)."""
    dspy = _dspy()
    got = letter(getattr(pred, "answer", None), "ABCDE")
    ok = got == example.answer
    fb = "Correct." if ok else (f"Incorrect: answered {got}, the correct option is {example.answer}."
                                if got else f"No option letter could be read; the correct option is {example.answer}.")
    return dspy.Prediction(score=float(ok), feedback=fb)


# ---- settings sized to the budget ---------------------------------------------------------------------
def settings_for(name: str, budget: int, n_val: int) -> dict[str, Any]:
    """What each optimizer is allowed to do at a budget (documented in the report).
    `n_val`: dev questions it scores on (the same budget/10 rule as medcompile's)."""
    if name == "labeled":
        return {"k": 16}  # DSPy's default; 0 calls
    if name == "bootstrap":
        return {"max_bootstrapped_demos": 4, "max_labeled_demos": 16}  # defaults; ~4/acc calls
    if name == "bootstrap_rs":
        # candidates -3..-1 (zero-shot, labeled, unshuffled) + N random: each scored on the valset,
        # each bootstrap ~8 calls; fill 90% of the budget.
        n = max(1, int(0.9 * budget / (n_val + 8)) - 3)
        return {"num_candidate_programs": n, "max_bootstrapped_demos": 4, "max_labeled_demos": 16}
    if name == "knn":
        return {"k": 5}  # Medprompt's k; bootstraps on the neighbours at inference time
    if name == "mipro":
        cands = 3 if budget < 300 else 5 if budget < 700 else 8
        mb = max(4, min(35, n_val // 2, budget // 20))
        fixed = 8 * cands + 15 + cands  # bootstraps, data/program summaries, instruction proposals
        full_every = 5
        trials = 2
        while True:  # largest trial count whose minibatches + periodic full evals fit 90% of the budget
            t = trials + 1
            cost = fixed + t * mb + (t // full_every + 1) * n_val
            if cost > 0.9 * budget or t > 40:
                break
            trials = t
        return {"num_candidates": cands, "num_trials": trials, "minibatch_size": mb,
                "minibatch_full_eval_steps": full_every, "max_bootstrapped_demos": 4, "max_labeled_demos": 4}
    if name == "gepa":
        # metric calls are program rollouts; reflection calls come on top (at most one per 3 rollouts)
        return {"max_metric_calls": max(n_val + 6, int(0.7 * budget)), "reflection_minibatch_size": 3}
    raise ValueError(name)


def _compile(name: str, st: Any, trainset: list[Any], valset: list[Any], s: dict[str, Any], seed: int,
             lm: Any) -> Any:
    dspy = _dspy()
    big = 10**6  # the simulator's refusals must not abort the optimizer: it keeps what it has
    if name == "labeled":
        return dspy.LabeledFewShot(k=s["k"]).compile(st, trainset=trainset)
    if name == "bootstrap":
        return dspy.BootstrapFewShot(metric=metric, max_errors=big, **s).compile(st, trainset=trainset)
    if name == "bootstrap_rs":
        return dspy.BootstrapFewShotWithRandomSearch(metric=metric, num_threads=1, max_errors=big, **s).compile(
            st, trainset=trainset, valset=valset)
    if name == "knn":
        from medcompile.embed import make_embedder

        emb = make_embedder("wordllama")
        vec = dspy.Embedder(lambda texts: emb.embed(list(texts)))
        return dspy.KNNFewShot(k=s["k"], trainset=trainset, vectorizer=vec, max_errors=big).compile(st)
    if name == "mipro":
        opt = dspy.MIPROv2(metric=metric, auto=None, num_candidates=s["num_candidates"], num_threads=1, seed=seed,
                           max_errors=big, max_bootstrapped_demos=s["max_bootstrapped_demos"],
                           max_labeled_demos=s["max_labeled_demos"], verbose=False, track_stats=False)
        return opt.compile(st, trainset=trainset, valset=valset, num_trials=s["num_trials"],
                           minibatch_size=s["minibatch_size"], minibatch_full_eval_steps=s["minibatch_full_eval_steps"])
    if name == "gepa":
        opt = dspy.GEPA(metric=gepa_metric, max_metric_calls=s["max_metric_calls"], reflection_lm=lm,
                        reflection_minibatch_size=s["reflection_minibatch_size"], num_threads=1, seed=seed,
                        track_stats=False)
        return opt.compile(st, trainset=trainset, valset=valset)
    raise ValueError(name)


def run_dspy(cell: Cell, name: str, kind: str, budget: int, seed: int) -> Outcome:
    """Compile DSPy optimizer `name` on `kind` ('predict'/'cot') within `budget` simulated calls."""
    dspy = _dspy()
    t0 = time.perf_counter()
    dev = dev_for_budget(cell.splits.dev, budget, seed)
    s = settings_for(name, budget, len(dev))
    lm = cell.world.dspy_lm(replicate=0, budget=budget)
    out = Outcome(detail={"settings": s, "student": kind, "dev_n": len(dev)})
    train_ex, val_ex = _examples(cell, "bank"), to_examples(dev)
    sink = io.StringIO()
    prog = None
    try:
        with dspy.context(lm=lm, adapter=dspy.ChatAdapter()), contextlib.redirect_stdout(sink), \
                contextlib.redirect_stderr(sink):
            prog = _compile(name, student(kind), train_ex, val_ex, s, seed, lm)
    except Exception as e:  # noqa: BLE001 - recorded honestly
        out.status, out.error = "failed", f"{type(e).__name__}: {str(e)[:300]}"
    out.compile_calls = int(getattr(lm, "calls", 0))
    refused = getattr(lm, "refused", None)
    if refused is not None:
        out.detail["refused_calls"] = int(refused)
    if prog is not None:
        out.answer, counter = _answers(cell, prog)
        out.detail["_counter"] = counter
        try:
            out.detail["demos"] = sum(len(p.demos) for _, p in prog.named_predictors())
            instr = [p.signature.instructions for _, p in prog.named_predictors()]
            out.detail["instruction"] = (instr[0][:160] if instr else None)
        except Exception:  # noqa: BLE001 - informational only
            pass
    out.wall_s = time.perf_counter() - t0
    return out


def _examples(cell: Cell, split: str) -> list[Any]:
    key = ("examples", id(cell.splits), split)
    if key not in _STATE:
        _STATE[key] = to_examples(getattr(cell.splits, split))
    return _STATE[key]


def _answers(cell: Cell, prog: Any) -> tuple[Callable[[int], list[str | None]], dict[str, int]]:
    """Test answers per replicate; counts calls and questions so calls/question is measured."""
    dspy = _dspy()
    counter = {"calls": 0, "questions": 0, "unparsed": 0}

    def run(replicate: int) -> list[str | None]:
        lm = cell.world.dspy_lm(replicate=replicate)
        answers: list[str | None] = []
        sink = io.StringIO()
        with dspy.context(lm=lm, adapter=dspy.ChatAdapter()), contextlib.redirect_stdout(sink), \
                contextlib.redirect_stderr(sink):
            for q in cell.splits.test:
                try:
                    pred = prog(question=q.question, options=options_text(q))
                    a = letter(getattr(pred, "answer", None), list(q.options))
                except Exception:  # noqa: BLE001 - an unparsable reply is an abstention
                    a = None
                counter["unparsed"] += int(a is None)
                answers.append(a)
        counter["calls"] += int(getattr(lm, "calls", 0))
        counter["questions"] += len(cell.splits.test)
        return answers

    return run, counter
