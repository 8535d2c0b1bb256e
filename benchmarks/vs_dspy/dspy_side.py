"""DSPy's side: the signature, student and parse-counting adapters, an LM behind the
proxy's phase, and one optimizer compile recorded with its calls and parse failures."""
from __future__ import annotations

import time
import traceback
from typing import Any, Callable

from .context import Run, log
from .reading import extract_letter, options_text


def dspy_setup():  # noqa: ANN201
    import dspy

    # No DSPy cache: its key ignores api_base, so a reply cached in one phase would be served
    # in another and the proxy would under-count; medcompile's own cache starts empty too.
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)

    class MCQ(dspy.Signature):
        """Answer the medical multiple-choice question with the letter of the single best option."""

        question: str = dspy.InputField()
        options: str = dspy.InputField(desc="one option per line, as 'A. text'")
        answer: str = dspy.OutputField(desc="the letter of the correct option, e.g. B")

    class Student(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.predict = dspy.Predict(MCQ)

        def forward(self, question: str, options: str):  # noqa: ANN201
            return self.predict(question=question, options=options)

    class CountingParses:
        """Mixin counting an adapter's parse failures (each triggers a fallback call)."""

        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            self.parses = 0
            self.parse_failures = 0

        def parse(self, signature, completion):  # noqa: ANN001, ANN201
            self.parses += 1
            try:
                return super().parse(signature, completion)
            except Exception:
                self.parse_failures += 1
                raise

    class CountingChatAdapter(CountingParses, dspy.ChatAdapter):
        pass

    class CountingJSONAdapter(CountingParses, dspy.JSONAdapter):
        pass

    return dspy, Student, CountingChatAdapter, CountingJSONAdapter


def lenient_proposals(adapter_cls):  # noqa: ANN001, ANN201
    """`adapter_cls` that takes a reply it cannot parse whole as the proposed instruction
    when (and only when) the signature is MIPROv2's instruction proposer's (its one output
    field `proposed_instruction`). MIPROv2 does not guard its proposer calls: one reply out
    of ChatAdapter's format sends the JSONAdapter fallback a `response_format`, which a text
    completion endpoint refuses, and the whole compile fails (seen at its first proposal on
    this base model). The task's own predictions are parsed exactly as with the default."""

    class LenientProposals(adapter_cls):
        lenient_proposals = 0

        def parse(self, signature, completion):  # noqa: ANN001, ANN201
            try:
                return super().parse(signature, completion)
            except Exception:
                if list(signature.output_fields) != ["proposed_instruction"] or not completion.strip():
                    raise
                self.lenient_proposals += 1
                return {"proposed_instruction": completion.strip()}

    return LenientProposals


def dspy_lm(run: Run, phase: str, budget: int | None, wall: float | None, model_type: str = "text"):  # noqa: ANN201
    import dspy

    assert run.proxy is not None
    base = run.proxy.phase(phase, budget=budget, wall_s=wall)
    return dspy.LM("openai/gemma", api_base=base, api_key="x", model_type=model_type, temperature=0.0,
                   max_tokens=run.args.dspy_max_tokens, num_retries=0, cache=False, timeout=900)


def to_examples(qs):  # noqa: ANN001, ANN201
    import dspy

    return [dspy.Example(question=q.question, options=options_text(q), answer=q.answer).with_inputs("question", "options")
            for q in qs]


def dspy_metric(example, pred, trace=None) -> bool:  # noqa: ANN001
    return extract_letter(getattr(pred, "answer", None), "ABCDE") == example.answer


def compile_dspy(run: Run, name: str, make: Callable[[], Any], student_cls, adapter_cls, train_ex, dev_ex) -> Any:  # noqa: ANN001
    import dspy

    a = run.args
    phase = f"compile-dspy_{name}"
    lm = dspy_lm(run, phase, a.budget, a.compile_wall)
    adapter = adapter_cls()
    t = time.perf_counter()
    rec: dict[str, Any] = {"framework": "dspy", "optimizer": name, "budget": a.budget}
    prog = None
    try:
        with dspy.context(lm=lm, adapter=adapter):
            prog = make()(student_cls(), train_ex, dev_ex)
    except Exception as e:  # noqa: BLE001 - recorded honestly
        rec["error"] = f"{type(e).__name__}: {str(e)[:600]}"
        rec["traceback_tail"] = traceback.format_exc()[-1500:]
    rec["wall_s"] = round(time.perf_counter() - t, 1)
    rec["proxy"] = run.proxy.stats(phase).to_dict()
    rec["dspy_history_calls"] = len(lm.history)
    rec["adapter_parses"] = adapter.parses
    rec["adapter_parse_failures"] = adapter.parse_failures
    if hasattr(adapter, "lenient_proposals"):
        rec["proposals_read_leniently"] = adapter.lenient_proposals
    rec["within_budget"] = rec["proxy"]["calls"] <= a.budget
    rec["wanted_more_than_budget"] = rec["proxy"]["refused"] > 0
    if prog is not None:
        try:
            rec["demos"] = sum(len(p.demos) for _, p in prog.named_predictors())
        except Exception:  # noqa: BLE001
            pass
    run.results["compile"][f"dspy_{name}"] = rec
    log(f"compiled dspy_{name}: {rec.get('error', 'ok')[:160]} calls={rec['proxy']['calls']} "
        f"refused={rec['proxy']['refused']} wall={rec['wall_s']}s")
    return prog
