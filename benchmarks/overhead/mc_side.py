"""medcompile's side: the Medprompt-shaped program on a zero-latency scripted model, its
timing per question, the instrumented breakdown, and the bank's index against exact search."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from medcompile import Exemplar, Program, Question, Retrieve, SelfCoT, Shuffle, Vote
from medcompile.bank import Bank
from medcompile.lm.base import LMResponse
from medcompile.lm.scripted import ScriptedLM

from .instrument import Acc, patched
from .synthetic import ANSWER_TEXT


def exact_twin(ex: list[Exemplar], vecs: np.ndarray, emb: Any) -> Bank:
    """The same bank searched with an exact flat index (what every bank used before)."""
    from medcompile.embed import KNNIndex

    twin = Bank(ex, emb.settings(), embeddings=vecs)
    twin._embedder, twin._index = emb, KNNIndex(vecs, kind="flat")  # noqa: SLF001 - benchmark instrumentation
    return twin


def query_recall(bank: Bank, vecs: np.ndarray, queries: list[Question], emb: Any, k: int = 5) -> float:
    """recall@k of the bank's index on these queries against an exact flat search."""
    import faiss

    q = np.ascontiguousarray(emb.embed([x.question for x in queries]), dtype=np.float32)
    exact = faiss.IndexFlatIP(vecs.shape[1])
    exact.add(vecs)
    _, truth = exact.search(q, k)
    got = bank._index.search(q, k)  # noqa: SLF001 - benchmark instrumentation
    return float(np.mean([len(set(g) & set(t.tolist())) / k for g, t in zip(got, truth)]))


def scripted_lm() -> ScriptedLM:
    resp = LMResponse(text=ANSWER_TEXT, prompt_tokens=0, completion_tokens=0)
    return ScriptedLM(lambda _r: resp, model="scripted-zero-latency")


def mc_program(bank: Bank) -> Program:
    return Program(Vote(Shuffle(SelfCoT(demos=Retrieve(k=5, strategy="knn", bank=bank, tune=False), tune=False),
                                n=5, tune=False)), name="medprompt-shaped")


def forget(bank: Bank) -> None:
    """Empty Bank's retrieval memo (if this version has one), so that every timed question
    pays for its own retrieval: the variants below run the same questions in turn."""
    memo = getattr(bank, "_memo", None)
    if memo is not None:
        memo.clear()


def time_mc(prog: Program, lm: Any, queries: list[Question], bank: Bank, cpu: list[float] | None = None) -> list[float]:
    """Wall seconds per question; with `cpu`, also this process's CPU seconds per question (all its
    threads), which a machine shared with other jobs inflates far less than wall time."""
    out = []
    for q in queries:
        forget(bank)
        c0, t0 = time.process_time(), time.perf_counter()
        r = prog.run(q, lm)
        out.append(time.perf_counter() - t0)
        if cpu is not None:
            cpu.append(time.process_time() - c0)
        assert r.prediction.answer is not None, r.prediction.reason
    return out


def breakdown_mc(prog: Program, bank: Bank, queries: list[Question]) -> dict[str, float]:
    """Instrumented pass: ms/question per section (the wrappers add a little time)."""
    import medcompile.embed.index as index_mod
    import medcompile.modules.predict as predict_mod
    import medcompile.modules.shuffle as shuffle_mod
    import medcompile.modules.vote as vote_mod
    from medcompile.prompts.builder import PromptBuilder

    acc = Acc()
    lm = scripted_lm()
    emb = bank._embedder  # noqa: SLF001 - benchmark instrumentation
    with patched(emb, "embed", acc.wrap("query_embedding", emb.embed)), \
            patched(index_mod.KNNIndex, "search", acc.wrap("knn_search", index_mod.KNNIndex.search)), \
            patched(Bank, "nearest", acc.wrap("retrieval_total", Bank.nearest)), \
            patched(PromptBuilder, "request", acc.wrap("prompt_building", PromptBuilder.request)), \
            patched(predict_mod, "parse_answer", acc.wrap("parsing", predict_mod.parse_answer)), \
            patched(shuffle_mod, "permute", acc.wrap("shuffle_permute", shuffle_mod.permute)), \
            patched(shuffle_mod, "plurality", acc.wrap("vote", shuffle_mod.plurality)), \
            patched(vote_mod, "plurality", acc.wrap("vote", vote_mod.plurality)), \
            patched(lm, "complete", acc.wrap("model_call(scripted)", lm.complete)):
        t0 = time.perf_counter()
        for q in queries:
            forget(bank)
            prog.run(q, lm)
        total = time.perf_counter() - t0
    n = len(queries)
    d = {k: round(1000 * v / n, 4) for k, v in acc.t.items()}
    d["retrieval_other(exclusion, memo, id mapping)"] = round(
        d.get("retrieval_total", 0) - d.get("query_embedding", 0) - d.get("knn_search", 0), 4)
    d["total_instrumented"] = round(1000 * total / n, 4)
    d["retrievals_per_question"] = acc.n["retrieval_total"] / n
    d["query_embeddings_per_question"] = acc.n["query_embedding"] / n
    return d
