"""DSPy's side: KNN demos, 5 x ChainOfThought over shuffled options and a majority vote on
DummyLM, its timing per question and the instrumented breakdown."""
from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any, Callable

import numpy as np

from medcompile import Exemplar, Question

from .instrument import Acc, patched


def dspy_parts(exemplars: list[Exemplar], vectors: np.ndarray, embed: Callable[[list[str]], np.ndarray]):  # noqa: ANN201
    import dspy
    from dspy.predict.knn import KNN

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)

    class MCQ(dspy.Signature):
        """Answer the medical multiple-choice question."""

        question: str = dspy.InputField()
        options: str = dspy.InputField()
        answer: str = dspy.OutputField()

    train = [dspy.Example(question=e.question.question,
                          options="\n".join(f"{k}. {v}" for k, v in e.question.options.items()),
                          reasoning=e.rationale, answer=e.question.answer).with_inputs("question", "options")
             for e in exemplars]
    n = len(train)

    def vectorizer(texts: list[str]) -> np.ndarray:
        # The bank: precomputed vectors, as for medcompile. A query: the real embedder.
        return vectors if len(texts) == n else embed(list(texts))

    knn = KNN(k=5, trainset=train, vectorizer=dspy.Embedder(vectorizer))

    class Medprompt(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cot = dspy.ChainOfThought(MCQ)

        def forward(self, question: str, options: dict[str, str], qid: str):  # noqa: ANN201
            demos = knn(question=question)  # one retrieval per question, as DSPy users write it
            keys = list(options)
            texts = [options[k] for k in keys]
            votes: Counter = Counter()
            for i in range(5):
                perm = list(range(len(keys)))
                if i:
                    random.Random(f"{qid}-{i}").shuffle(perm)
                shown = "\n".join(f"{keys[j]}. {texts[perm[j]]}" for j in range(len(keys)))
                pred = self.cot(question=question, options=shown, demos=demos)
                letter = (pred.answer or "").strip()[:1]
                if letter in keys:
                    votes[keys[perm[keys.index(letter)]]] += 1
            best = max(sorted(votes), key=lambda k: votes[k]) if votes else None
            return dspy.Prediction(answer=best, votes=dict(votes))

    lm = dspy.utils.DummyLM({"": {"reasoning": "The findings point to the second option.", "answer": "B"}})
    return dspy, Medprompt(), lm, knn


def time_dspy(dspy: Any, prog: Any, lm: Any, queries: list[Question], cpu: list[float] | None = None) -> list[float]:
    out = []
    with dspy.context(lm=lm):
        for q in queries:
            c0, t0 = time.process_time(), time.perf_counter()
            p = prog(question=q.question, options=dict(q.options), qid=q.id)
            out.append(time.perf_counter() - t0)
            if cpu is not None:
                cpu.append(time.process_time() - c0)
            assert p.answer is not None
    return out


def breakdown_dspy(dspy: Any, prog: Any, lm: Any, knn: Any, queries: list[Question]) -> dict[str, float]:
    acc = Acc()
    adapter = dspy.ChatAdapter()
    with patched(knn, "embedding", acc.wrap("query_embedding", knn.embedding)), \
            patched(adapter, "format", acc.wrap("prompt_building", adapter.format)), \
            patched(adapter, "parse", acc.wrap("parsing", adapter.parse)):
        # KNN.__call__ is looked up on the class, so time it through the module's global.
        import dspy.predict.knn as knn_mod

        with patched(knn_mod.KNN, "__call__", acc.wrap("retrieval_total", knn_mod.KNN.__call__)):
            t0 = time.perf_counter()
            with dspy.context(lm=lm, adapter=adapter):
                for q in queries:
                    prog(question=q.question, options=dict(q.options), qid=q.id)
            total = time.perf_counter() - t0
    n = len(queries)
    d = {k: round(1000 * v / n, 4) for k, v in acc.t.items()}
    d["retrieval_other(dot+argsort)"] = round(d.get("retrieval_total", 0) - d.get("query_embedding", 0), 4)
    d["total_instrumented"] = round(1000 * total / n, 4)
    return d
