"""Program: a module graph plus everything needed to run it anywhere.

A `Program` owns its root module, the prompt templates, the exemplar banks its
modules hold (each stored once, under the path of the first module holding it), the
model it was compiled for and its compile metadata. It runs questions, one or many,
and writes itself as the frozen JSON file.
"""
from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from ..lm.base import LM, LMError, Usage
from ..modules.base import Module, ModuleError, Prediction, RunContext, seed_tree
from ..modules.fanout import parallel_capacity
from ..prompts.builder import PromptBuilder
from ..prompts.templates import DEFAULT_TEMPLATES, check_templates
from ..question import Question
from ..signatures import Signature

if TYPE_CHECKING:
    from ..compile.report import CompileReport


@dataclass
class Result:
    """One question's outcome: the prediction plus what it cost."""

    question: Question
    prediction: Prediction
    usage: Usage
    latency_s: float
    error: str | None = None

    @property
    def correct(self) -> bool:
        return self.question.answer is not None and self.prediction.answer == self.question.answer

    def to_dict(self, *, rationales: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.question.id, **self.prediction.to_dict(rationales=rationales)}
        if self.question.answer is not None:
            d["gold"] = self.question.answer
            d["correct"] = self.correct
        d["usage"] = {"calls": self.usage.calls, "cached_calls": self.usage.cached_calls,
                      "prompt_tokens": self.usage.prompt_tokens, "completion_tokens": self.usage.completion_tokens,
                      "cost": round(self.usage.cost, 8)}
        d["latency_s"] = round(self.latency_s, 4)
        if self.error:
            d["error"] = self.error
        return d


class Program:
    """A runnable prompt program (declared or compiled)."""

    def __init__(self, root: Module, *, name: str = "program", signature: Signature | str | None = None,
                 templates: Mapping[str, str] | None = None, lm: Mapping[str, Any] | None = None,
                 compile_info: Mapping[str, Any] | None = None, seed: int = 0):
        if not isinstance(root, Module):
            raise TypeError(f"a Program needs a root Module, got {type(root).__name__}")
        self.root = seed_tree(name_banks(root), seed)  # shuffles and random exemplars follow the program seed
        self.banks()  # two different banks under one name: refused now, not when saving
        self.name = name
        self.signature = Signature.coerce(signature) if signature is not None else _first_signature(root)
        self.templates = dict(templates or DEFAULT_TEMPLATES)
        self.builder = PromptBuilder(check_templates(self.templates))
        self.lm_settings = dict(lm) if lm else None
        self.compile_info = dict(compile_info) if compile_info else None
        self.seed = seed
        #: The compile's full report (every trial) when this program was just compiled; not
        #: part of the file (its summary is `compile_info`; the report is written beside it).
        self.report: CompileReport | None = None
        self._lms: dict[tuple[str, str | None], LM] = {}

    # ---- running ---------------------------------------------------------------------
    def resolve_lm(self, lm: LM | str | None) -> LM:
        """The LM to use: the one given, else the one the program was compiled for."""
        if lm is not None and not isinstance(lm, str):
            return lm
        from ..lm.registry import make_lm

        settings = self.lm_settings or {}
        spec = lm or settings.get("spec") or settings.get("model") or "local"
        mode = None if isinstance(lm, str) else settings.get("mode")
        key = (spec, mode)
        if key not in self._lms:  # one client (and cache connection) per program, not per call
            self._lms[key] = make_lm(spec, mode=mode)
        return self._lms[key]

    def run(self, q: Question, lm: LM | str | None = None) -> Result:
        return self._run_one(q, self.resolve_lm(lm))

    def __call__(self, q: Question, lm: LM | str | None = None) -> Prediction:
        return self.run(q, lm).prediction

    def _run_one(self, q: Question, lm: LM) -> Result:
        ctx = RunContext(lm=lm, builder=self.builder, seed=self.seed, parallel_calls=parallel_capacity(lm))
        t0 = time.perf_counter()
        error = None
        try:
            pred = self.root(q, ctx, "")
        except LMError as exc:
            if exc.fatal:
                raise
            pred, error = Prediction(None, reason=f"model error: {exc}"), str(exc)
        usage = Usage()
        for c in sorted(ctx.calls, key=lambda c: c.path):  # parallel calls land in any order
            if c.response is not None:
                usage.add_response(c.response)
            else:
                usage.failures += 1
        return Result(q, pred, usage, time.perf_counter() - t0, error)

    def run_many(self, questions: Sequence[Question], lm: LM | str | None = None, *, concurrency: int = 1,
                 on_result: Any = None) -> list[Result]:
        """Run many questions; results come back in input order and `on_result(result)` is
        called in input order too (so streamed output keeps the input's order). A fatal
        model error stops the run after the results before it have been handed over."""
        the_lm = self.resolve_lm(lm)
        self.prepare(questions)
        if concurrency <= 1:
            out = []
            for q in questions:
                r = self._run_one(q, the_lm)
                if on_result:
                    on_result(r)
                out.append(r)
            return out
        results: list[Result | None] = [None] * len(questions)
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            futs = {pool.submit(self._run_one, q, the_lm): i for i, q in enumerate(questions)}
            first_error: BaseException | None = None
            for fut in list(futs):
                try:
                    r = fut.result()
                except BaseException as exc:  # noqa: BLE001 - re-raised below after the others finish
                    first_error = first_error or exc
                    continue
                results[futs[fut]] = r
                if on_result:
                    on_result(r)
            if first_error is not None:
                raise first_error
        return [r for r in results if r is not None]

    def prepare(self, questions: Iterable[Question] = ()) -> None:
        """Build retrieval indexes up front (not inside the first timed question)."""
        for _, m in self.root.walk():
            slot = m.bank_slot()
            if slot is not None and m.needs().knn:
                slot.bank.embeddings()

    # ---- inspection --------------------------------------------------------------------
    def calls_per_question(self) -> float:
        return self.root.calls_per_question()

    def banks(self) -> dict[str, Any]:
        """Name -> exemplar bank, for every bank a module holds (a shared bank once)."""
        out: dict[str, Any] = {}
        for path, m in self.root.walk():
            slot = m.bank_slot()
            if slot is None:
                continue
            name = slot.name or bank_name_for(path)
            if name in out and out[name] is not slot.bank:
                raise ModuleError(f"two different exemplar banks are both named {name!r} (the second at "
                                  f"{path or 'the root'}); give each its own name")
            out[name] = slot.bank
        return out

    def to_dict(self) -> dict[str, Any]:
        from .io import program_to_dict

        return program_to_dict(self)

    def to_json(self) -> str:
        from .io import dumps

        return dumps(self.to_dict())

    def save(self, path: str) -> None:
        from .io import save

        save(self, path)

    def content_hash(self) -> str:
        import hashlib

        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    def __repr__(self) -> str:
        return f"Program({self.name!r}, root={self.root.type_name}, calls/question={self.calls_per_question():g})"


MAX_BANK_NAME = 64  # the program file's bound on a bank's name


def bank_name_for(path: str) -> str:
    """A bank's name in the file: the path of the module holding it ("bank" at the root),
    shortened with a hash when the path is very deep."""
    name = path or "bank"
    if len(name) > MAX_BANK_NAME:
        name = name[:MAX_BANK_NAME - 17] + "~" + hashlib.sha256(name.encode()).hexdigest()[:16]
    return name


def name_banks(root: Module) -> Module:
    """`root` with every unnamed bank named after the path of the first module holding it
    (modules holding the same bank share its name). Stable: it depends on the tree's shape
    only, and a tree whose banks all have names is returned as it is."""
    names: dict[int, str] = {}

    def visit(m: Module, path: str) -> Module:
        kids = {name: visit(c, f"{path}.{name}" if path else name) for name, c in m.children()}
        changed = {k: v for k, v in kids.items() if v is not dict(m.children())[k]}
        out = m.with_children(changed) if changed else m
        slot = out.bank_slot()
        if slot is not None and slot.name is None:
            out = out.with_bank_name(names.setdefault(id(slot.bank), bank_name_for(path)))
        return out

    if all(slot.name is not None for _, m in root.walk() if (slot := m.bank_slot()) is not None):
        return root
    return visit(root, "")


def _first_signature(root: Module) -> Signature:
    for _, m in root.walk():
        sig = getattr(m, "signature", None)
        if isinstance(sig, Signature):
            return sig
    return Signature.coerce(None)
