"""The oracle: the best configuration of a declared program's search space, found
exhaustively, with its expected accuracy under the simulator's own probabilities.

Every configuration (`compile.space.collect_space` / `apply`, the same code the
optimizer uses) is evaluated by a vectorised mirror of the modules' semantics: each
model call becomes a logit matrix over (question, option) from the same formula the
simulated LM uses, and answers are drawn for `replicates` instances of the model at
once (the per-prompt Gumbel noise, plus sampling noise for temperature > 0). A single
temperature-0 call is computed exactly (softmax over the noise scale). Shuffle maps
answers back through the same permutations medcompile uses; Vote and Shuffle take the
plurality of their leaves with ties broken by option order; Refine shows the sampled
attempts' answers to the refining calls. Noise is keyed by each call's signature, so
configurations sharing a call share its noise (common random numbers) and identical
prompts within one program get identical answers, as they would from the LM.

Chain-of-thought exemplars come from the simulator's own rationale writer over the bank
(`compile.rationales.generate_rationales` against `world.lm()`), as the optimizer's do.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..bank import Bank
from ..compile.rationales import generate_rationales
from ..compile.space import BankChoice, apply, collect_space
from ..exemplar import Exemplar
from ..modules.base import Module
from ..modules.predict import Predict
from ..modules.refine import Refine
from ..modules.retrieve import Retrieve
from ..modules.shuffle import Shuffle, permutation_for
from ..modules.vote import Vote
from ..question import Question
from .rand import int_seed

NEG = -1e9
KNN_FETCH = 10  # neighbours fetched per bank at once
MEMO_LIMIT = 3000  # memoised calls per evaluator (~16 kB each for 64 replicates x 254 questions)


class OracleError(ValueError):
    """The oracle cannot evaluate this program (an unknown module type, no questions)."""


@dataclass(frozen=True)
class OracleRow:
    params: dict[str, Any]
    expected_accuracy: float
    calls_per_question: float

    def to_dict(self) -> dict[str, Any]:
        return {"params": dict(self.params), "expected_accuracy": self.expected_accuracy,
                "calls_per_question": self.calls_per_question}


@dataclass
class OracleResult:
    best: dict[str, Any]
    expected_accuracy: float
    calls_per_question: float
    rows: list[OracleRow]
    n_questions: int
    replicates: int
    seconds: float = 0.0
    rationale_bank: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"best": dict(self.best), "expected_accuracy": self.expected_accuracy,
                "calls_per_question": self.calls_per_question, "n_questions": self.n_questions,
                "replicates": self.replicates, "seconds": round(self.seconds, 3),
                "rationale_bank": dict(self.rationale_bank), "rows": [r.to_dict() for r in self.rows]}


@dataclass
class _Out:
    leaves: np.ndarray                  # [L, R, Q] original option indices
    probs: np.ndarray | None = None     # [Q, O] exact distribution when there is one temperature-0 leaf


def bank_key(bank: Bank) -> str:
    """What identifies an exemplar bank in a call's noise key: its questions and whether they carry
    rationales (not `id(bank)`, which differs from process to process and made oracles vary)."""
    ids = [f"{e.question.id}{'+' if e.rationale else ''}" for e in bank.exemplars]
    return f"{len(ids)}:{int_seed(*ids)}"


class _Evaluator:
    def __init__(self, world, questions: Sequence[Question], replicates: int) -> None:  # type: ignore[no-untyped-def]
        if not questions:
            raise OracleError("the oracle needs at least one question")
        self.w = world
        self.p = world.profile
        self.qs = list(questions)
        self.R = replicates
        sq = [world.sim_question(q) for q in self.qs]
        self.O = max(len(q.options) for q in self.qs)
        Q = len(self.qs)
        self.attract = np.full((Q, self.O), NEG)
        self.gold = np.full(Q, -1)
        self.n_opts = np.array([len(q.options) for q in self.qs])
        for i, s in enumerate(sq):
            for j, t in enumerate(s.options):
                self.attract[i, j] = s.attract.get(t, 0.0)
                if t == s.gold and self.gold[i] < 0:
                    self.gold[i] = j
        self.true = np.array([list(q.options).index(q.answer) if q.answer is not None else -1 for q in self.qs])
        self.diff = np.array([s.difficulty for s in sq])
        self.topic = np.array([s.topic for s in sq])
        self.goldmask = np.zeros((Q, self.O))
        self.goldmask[np.arange(Q), np.maximum(self.gold, 0)] = (self.gold >= 0).astype(float)
        self._demo_cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}
        self._memo: dict[tuple, _Out] = {}
        self._knn: dict[tuple[int, int], list] = {}
        self._topics: dict[str, int] = {}

    # ---- pieces ----------------------------------------------------------------------------------
    def demo_counts(self, r: Retrieve | None) -> tuple[np.ndarray, np.ndarray]:
        """(number of exemplars, number on the target's topic) per question."""
        Q = len(self.qs)
        if r is None or r.k == 0 or r.bank is None or len(r.bank) == 0:
            return np.zeros(Q), np.zeros(Q)
        key = (id(r.bank), r.k, r.strategy, r.seed if r.strategy == "random" else None)
        if key not in self._demo_cache:
            if r.strategy == "random":
                demo_sets = [r.static_demos()] * Q
            else:
                # One search per bank at the largest k: the k nearest are the last k of the longer list.
                kk = max(r.k, KNN_FETCH)
                bkey = (id(r.bank), kk)
                if bkey not in self._knn:
                    self._knn = {k: v for k, v in self._knn.items() if k[0] != id(r.bank) or k[1] > kk}
                    self._knn[bkey] = r.bank.nearest_many(self.qs, kk)
                full = self._knn[bkey]
                demo_sets = [row[-r.k:] if r.k <= len(row) else row for row in full]
            n = np.array([len(d) for d in demo_sets], dtype=float)
            same = np.array([sum(self.topic_of(e.question) == self.topic[i] for e in d)
                             for i, d in enumerate(demo_sets)], dtype=float)
            self._demo_cache[key] = (n, same)
        return self._demo_cache[key]

    def topic_of(self, q: Question) -> int:
        t = self._topics.get(q.id)
        if t is None:
            t = self._topics[q.id] = self.w.sim_question(q).topic
        return t

    def logits(self, m: Predict, perm: np.ndarray, cot: bool, temperature: float,
               votes: np.ndarray | None = None) -> np.ndarray:
        """Noise-free logits [Q, O] (original option order) of one call of `m` shown in `perm` order;
        with `votes` [R, Q, O] from shown attempts, [R, Q, O]."""
        p = self.p
        n, same = self.demo_counts(m.demos)
        s = (p.base_skill - p.difficulty_sd * self.diff + self.w.instruction_effect(m.instruction)
             + p.temperature_effect * temperature)
        if cot:
            s = s + p.cot_effect + np.where(n > 0, p.rationale_demo_effect, 0.0)  # CoT exemplars all carry rationales
        s = s + np.where(n > 0, p.demo_effect * (1 - np.exp(-n / p.demo_scale))
                         + p.relevance_effect * (1 - np.exp(-same / p.demo_scale)), 0.0)
        z = p.distractor_sd * np.where(self.attract > NEG / 2, self.attract, 0.0) + self.goldmask * s[:, None]
        if p.position_bias:
            pref = self.w.preferred % self.n_opts          # displayed position each question's bias falls on
            z[np.arange(len(self.qs)), perm[np.arange(len(self.qs)), pref]] += p.position_bias
        z = np.where(self.attract > NEG / 2, z, NEG)
        if votes is not None:
            tot = np.maximum(votes.sum(axis=2, keepdims=True), 1)
            z = z[None] + p.refine_effect * votes / tot
        return z

    def perms(self, seed: int, i: int) -> np.ndarray:
        key = (seed, i)
        if key not in self._perm_cache:
            m = np.tile(np.arange(self.O), (len(self.qs), 1))
            for qi, q in enumerate(self.qs):
                m[qi, :len(q.options)] = permutation_for(q, seed, i)
            self._perm_cache[key] = m
        return self._perm_cache[key]

    def gumbel(self, *key: object) -> np.ndarray:
        """Gumbel noise [R, Q, O] for one call signature: a window of a fixed pool at a hashed
        offset (two keys share values only at the same offset, a 1 in millions chance)."""
        size = self.R * len(self.qs) * self.O
        pool = _pool(size)
        off = int_seed(self.w.seed, "oracle", *key) % (len(pool) - size + 1)
        return pool[off:off + size].reshape(self.R, len(self.qs), self.O).copy()

    def call(self, m: Predict, perm: np.ndarray, cot: bool, temperature: float, sig: str, path: str,
             seen: dict, votes: np.ndarray | None = None, shared_noise: np.ndarray | None = None) -> _Out:
        """One call per question for R model instances: answers [1, R, Q] (original indices)."""
        p = self.p
        z = self.logits(m, perm, cot, temperature, votes)
        if shared_noise is not None:
            g = shared_noise
        else:
            g = self.gumbel("prompt", sig, path)
            # Identical prompts (same signature and displayed order) get identical noise, as from the LM:
            # each question takes the raw noise of the earliest identical call.
            filled = np.zeros(len(self.qs), dtype=bool)
            for prev_perm, prev_path in seen.get(sig, []):
                same = np.all(prev_perm == perm, axis=1) & ~filled
                if same.any():
                    g[:, same, :] = self.gumbel("prompt", sig, prev_path)[:, same, :]
                    filled |= same
            seen.setdefault(sig, []).append((perm, path))
        noisy = z + p.prompt_noise * g if p.prompt_noise else np.broadcast_to(z, g.shape)
        if temperature > 0 and p.sampling_noise:
            noisy = noisy + p.sampling_noise * temperature * self.gumbel("sample", sig, path)
        ans = np.argmax(noisy, axis=2).astype(np.int8)
        probs = None
        if votes is None and temperature == 0:
            if p.prompt_noise:
                zz = z / p.prompt_noise
                e = np.exp(zz - zz.max(axis=1, keepdims=True))
                probs = e / e.sum(axis=1, keepdims=True)
            else:
                probs = np.zeros_like(z)
                probs[np.arange(len(self.qs)), np.argmax(z, axis=1)] = 1.0
        return _Out(ans[None], probs)

    @staticmethod
    def signature(m: Predict, cot: bool, temperature: float, extra: str = "") -> str:
        r = m.demos
        demos = "none" if r is None or r.k == 0 or r.bank is None else \
            f"{r.strategy}:{r.k}:{r.seed if r.strategy == 'random' else ''}:{bank_key(r.bank)}"
        return f"{m.instruction}|{demos}|{int(cot)}|{temperature}|{extra}"

    # ---- modules ---------------------------------------------------------------------------------
    def run(self, m: Module, perm: np.ndarray, path: str, seen: dict, pkey: tuple = ()) -> _Out:
        """Answers of module `m` shown in `perm` order; `pkey` names the permutation chain."""
        if isinstance(m, Predict):
            t = float(m.temperature)
            sig = self.signature(m, m.cot, t)
            key = (sig, path, pkey)
            hit = self._memo.get(key)
            if hit is None:
                # A call's answers depend only on its signature, path and display order (the noise of an
                # identical earlier prompt in the same program comes from calls every such program shares).
                hit = self.call(m, perm, m.cot, t, sig, path, seen)
                if len(self._memo) > MEMO_LIMIT:
                    self._memo.clear()
                self._memo[key] = hit
            else:
                seen.setdefault(sig, []).append((perm, path))
            return hit
        if isinstance(m, Shuffle):
            outs = []
            for i in range(m.n):
                p_i = self.perms(m.seed, i)
                composed = np.take_along_axis(perm, p_i, axis=1)
                outs.append(self.run(m.inner, composed, f"{path}/shuffle{i}", seen, pkey + ((m.seed, i),)))
            return _concat(outs)
        if isinstance(m, Vote):
            if len(m.members) == 1:
                return self.run(m.members[0], perm, f"{path}/vote", seen, pkey)
            return _concat([self.run(x, perm, f"{path}/vote{i}", seen, pkey) for i, x in enumerate(m.members)])
        if isinstance(m, Refine):
            return self.refine(m, perm, path, seen)
        raise OracleError(f"the oracle cannot evaluate module type {type(m).__name__}")

    def refine(self, m: Refine, perm: np.ndarray, path: str, seen: dict) -> _Out:
        inner, t = m.inner, float(m.temperature)
        sig = self.signature(inner, inner.cot, t)
        paths = np.concatenate([self.call(inner, perm, inner.cot, t, sig, f"{path}/path{i}", seen).leaves
                                for i in range(m.m)])                     # [m, R, Q]
        votes = self.counts(paths)
        tr = t if m.r > 1 else 0.0
        rsig = self.signature(inner, True, tr, "refine")
        noise = self.gumbel("prompt", rsig, path)  # one refine prompt per replicate: its calls share this noise
        outs = [self.call(inner, perm, True, tr, rsig, f"{path}/refine{j}", seen, votes=votes, shared_noise=noise)
                for j in range(m.r)]
        out = _concat(outs)
        out.probs = None
        return out

    def counts(self, leaves: np.ndarray) -> np.ndarray:
        """Votes per option [R, Q, O] from answers [L, R, Q]."""
        out = np.zeros((self.R, len(self.qs), self.O))
        for o in range(self.O):
            out[:, :, o] = (leaves == o).sum(axis=0)
        return out

    def accuracy(self, m: Module) -> float:
        ident = np.tile(np.arange(self.O), (len(self.qs), 1))
        out = self.run(m, ident, "", {})
        ok = self.true >= 0
        if out.probs is not None and out.leaves.shape[0] == 1:
            return float(out.probs[np.arange(len(self.qs)), np.maximum(self.true, 0)][ok].sum() / len(self.qs))
        counts = self.counts(out.leaves)
        winner = np.argmax(counts, axis=2)  # first maximum = option order, as Vote breaks ties
        return float(((winner == self.true[None, :]) & ok[None, :]).mean())


_POOL: dict[int, np.ndarray] = {}
POOL_SIZE = 1 << 23


def _pool(size: int) -> np.ndarray:
    """Standard Gumbel draws shared by every oracle call in the process (fixed seed)."""
    n = max(POOL_SIZE, 4 * size)
    if n not in _POOL:
        _POOL.clear()
        _POOL[n] = np.random.default_rng(20261201).gumbel(size=n)
    return _POOL[n]


def _concat(outs: list[_Out]) -> _Out:
    if len(outs) == 1:
        return outs[0]
    return _Out(np.concatenate([o.leaves for o in outs]), None)


def rationale_banks(world, program, bank: Sequence[Question] | BankChoice, mode: str = "text",  # type: ignore[no-untyped-def]
                    embedder: Any = None) -> tuple[BankChoice, dict[str, int]]:
    """The optimizer's two banks, with rationales from the simulator itself (replicate 0)."""
    if isinstance(bank, BankChoice):
        return bank, {"kept": len(bank.cot), "attempted": len(bank.full)}
    qs = list(bank)
    full = Bank([Exemplar(q) for q in qs], embedder)
    kept, stats = generate_rationales(qs, world.lm(mode=mode), program.signature, program.templates)
    why = {e.question.id: e.rationale for e in kept}
    keep = [i for i, q in enumerate(qs) if q.id in why]
    if any(isinstance(m, Retrieve) for _, m in program.root.walk()):
        full.embeddings()
    sub = full.subset(keep)
    cot = sub.with_exemplars([Exemplar(e.question, why[e.question.id]) for e in sub.exemplars])
    return BankChoice(full=full, cot=cot), stats.to_dict()


def oracle(world, program, bank, questions: Sequence[Question], instructions: Sequence[str] = (),  # type: ignore[no-untyped-def]
           *, replicates: int = 64, mode: str = "text", embedder: Any = None,
           max_configurations: int = 20000) -> OracleResult:
    """Exhaustive search of `program`'s space (a medcompile Program as declared) on `questions`.

    `instructions`: the candidate instructions (the user's first, as the optimizer's); none means
    the signature's own. `bank`: exemplar questions (rationales are written by the simulator) or a
    ready `BankChoice`. Ties in expected accuracy go to the configuration with fewer calls per question.
    """
    t0 = time.perf_counter()
    root = program.root
    instr = tuple(dict.fromkeys(instructions)) or (program.signature.instruction,)
    space = collect_space(root, instr)
    n_conf = 1
    for prm in space:
        n_conf *= len(prm.choices)
    if n_conf > max_configurations:
        raise OracleError(f"the search space has {n_conf} configurations, more than max_configurations="
                          f"{max_configurations}")
    banks, stats = rationale_banks(world, program, bank, mode, embedder)
    ev = _Evaluator(world, questions, replicates)
    rows = []
    for combo in itertools.product(*(prm.choices for prm in space)):
        params = {prm.key: v for prm, v in zip(space, combo)}
        configured = apply(root, params, banks)
        rows.append(OracleRow(params, ev.accuracy(configured), float(configured.calls_per_question())))
    best = max(rows, key=lambda r: (round(r.expected_accuracy, 9), -r.calls_per_question))
    return OracleResult(best=dict(best.params), expected_accuracy=best.expected_accuracy,
                        calls_per_question=best.calls_per_question, rows=rows, n_questions=len(questions),
                        replicates=replicates, seconds=time.perf_counter() - t0, rationale_bank=stats)
