"""`optimize`: compile a declared program for one model into a frozen program.

Stages: self-generated rationales for the exemplar bank, instruction proposals (and refinement rounds if asked),
kNN index, then an optuna search over every open choice of the program, scored on
the dev split with minibatch pruning, inside a hard budget of model calls. The
result is a frozen `Program` (written as JSON) and a report of every trial.

Everything that decides the result is logical, never wall-clock or cache state:
budgets count logical calls, seeds derive from the compile seed, the sampler is
re-seeded per trial. So the same data, seed and model give the same program byte
for byte, cold or warm cache, interrupted or not.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import optuna
from optuna.trial import TrialState

from .. import __version__
from ..bank import Bank
from ..exemplar import Exemplar
from ..evaluate.stats import accuracy_ci
from ..lm.base import LM, LMError, Usage
from ..lm.meter import MeteredLM, usage_diff
from ..modules.base import Module, Needs
from ..program.program import Program
from ..progress import log, progress_bar
from ..question import Question
from . import study as studies
from .instructions import propose_instructions
from .refine_instructions import refine_stage
from .preflight import CompileError, backend_failed, check_data, check_program, metric_identity
from .rationales import generate_rationales
from .report import CompileReport, TrialRow
from .confirm import Confirmation, run_confirmation, search_leader, stored_usage
from .ledger import measured_cost, scored, spent as search_spent, trial_params
from .search import configure, run_search
from .options import CompileOptions, default_rationales
from .selection import RULES, DevSplit, candidate_rows, choose, split_dev, summary
from .space import BankChoice, Param, collect_space
from .trial import Metric, accuracy_metric


@dataclass
class CompileResult:
    """What one compile process produced. A leader freezes the program (with its report);
    a worker only adds trials to the shared study, so it has neither."""

    program: Program | None
    report: CompileReport | None
    study: str
    worker: bool


def optimize(program: Program | Module, trainset: Sequence[Question], devset: Sequence[Question], *,
             lm: LM | str = "local", metric: Metric | None = None, budget: int = 500, seed: int = 0,
             out: str | Path | None = None, **options: Any) -> Program | None:
    """Compile `program` for `lm` against `devset`, using `trainset` as the exemplar bank.

    Returns the frozen program; its `.report` holds the compile report. With `out`,
    the JSON and report files are written there (atomically). A `worker=True` process
    only adds trials to a shared study and returns None: the leader writes the program.
    """
    known = {f.name for f in fields(CompileOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise CompileError(f"unknown option(s) {unknown}; optimize() takes {sorted(known - {'budget', 'seed'})}")
    opts = CompileOptions(budget=budget, seed=seed, **options)
    return Compiler(program, trainset, devset, lm, metric, opts, out).run().program


class Compiler:
    def __init__(self, program: Program | Module, trainset: Sequence[Question], devset: Sequence[Question],
                 lm: LM | str, metric: Metric | None, opts: CompileOptions, out: str | Path | None):
        self.declared = program if isinstance(program, Program) else Program(program)
        self.train = list(trainset)
        self.dev = list(devset)
        self.opts = opts
        self.metric = metric or accuracy_metric
        self.metric_id = metric_identity(metric)
        self.metric_name = self.metric_id["name"]
        self.out = Path(out) if out else None
        self._validate()
        from ..lm.registry import lm_settings, make_lm

        base = make_lm(lm) if isinstance(lm, str) else lm
        self.lm: MeteredLM = base if isinstance(base, MeteredLM) else MeteredLM(base)
        # What model the program is for; not how this process reached it (cache, retries).
        self.lm_settings = {k: v for k, v in lm_settings(self.lm).items() if k in ("model", "mode", "spec", "backend")}

    # ---- set-up --------------------------------------------------------------------------
    def _validate(self) -> None:
        """Everything that can be known without the model, checked before any call."""
        o = self.opts
        check_data(self.declared, self.train, self.dev)
        if not isinstance(o.budget, int) or o.budget < 1:
            raise CompileError(f"budget must be a positive number of model calls, got {o.budget!r}")
        if o.objective not in ("accuracy", "pareto"):
            raise CompileError(f"objective must be 'accuracy' or 'pareto', got {o.objective!r}")
        if o.minibatch < 1 or o.max_trials < 1:
            raise CompileError("minibatch and max_trials must be at least 1")
        if o.select_on not in ("confirmation", "pooled"):
            raise CompileError(f"select_on must be 'confirmation' or 'pooled', got {o.select_on!r}")
        if o.select_rule not in RULES:
            raise CompileError(f"select_rule must be one of {list(RULES)}, got {o.select_rule!r}")
        if not isinstance(o.select_alpha, (int, float)) or not 0.0 < o.select_alpha < 1.0:
            raise CompileError(f"select_alpha must be a probability between 0 and 1 (exclusive), got {o.select_alpha!r}")
        check_program(self.declared, self.train)

    def identity(self) -> dict[str, Any]:
        """What the compile depends on; its hash names the study, so a changed input never
        resumes someone else's search."""
        return {
            "program": json.loads(json.dumps(self.declared.root.to_config(), sort_keys=True, default=str)),
            "templates": self.declared.templates,
            "train": _fingerprint(self.train), "dev": _fingerprint(self.dev),
            "lm": self.lm.model, "mode": self.lm.mode, "seed": self.opts.seed, "budget": self.opts.budget,
            "max_trials": self.opts.max_trials, "minibatch": self.opts.minibatch,
            "n_instructions": self.opts.n_instructions, "max_rationales": self.opts.max_rationales,
            **({"instruction_rounds": self.opts.instruction_rounds} if self.opts.instruction_rounds != 0 else {}),
            **({"instruction_consensus": self.opts.instruction_consensus} if self.opts.instruction_consensus else {}),
            "objective": self.opts.objective, "metric": self.metric_id["id"], "embedder": self.opts.embedder,
            "confirm": [self.opts.confirm_fraction, self.opts.confirm_top],
            "select": [self.opts.select_rule, self.opts.select_alpha, self.opts.reserve_finalists,
                       self.opts.select_on, self.opts.try_declared, self.opts.patient_racing, self.opts.scale_last,
                       self.opts.screen],
            **({"pool_effects": True} if self.opts.pool_effects else {}),
        }

    def study_name(self) -> str:
        h = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:16]
        return self.opts.study_name or f"{self.declared.name}-{h}"

    def storage_url(self, name: str) -> str:
        if self.opts.storage:
            return self.opts.storage
        if self.out is not None:
            path = self.out.with_name(self.out.name + ".study.sqlite")
        else:
            from ..lm.cache import default_cache_dir

            path = default_cache_dir() / "studies" / f"{name}.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        return studies.sqlite_url(path)

    # ---- the compile -----------------------------------------------------------------------
    def run(self) -> CompileResult:
        t0, before = time.perf_counter(), self.lm.snapshot()  # "this run": this compile only, confirmation included
        o = self.opts
        if not 0.0 <= o.confirm_fraction < 1.0 or o.confirm_top < 1:
            raise CompileError("confirm_fraction must be within 0..1 (exclusive of 1) and confirm_top at least 1")
        name = self.study_name()
        url = self.storage_url(name)
        multi = o.objective == "pareto"
        try:
            study = studies.open_study(url, name, directions=["maximize", "minimize"] if multi else ["maximize"],
                                       heartbeat=o.worker or not url.startswith("sqlite"), join=o.worker,
                                       wait_s=o.worker_wait_s)
        except TimeoutError as exc:
            raise CompileError(f"{exc}: start `medcompile optimize` without --worker first, "
                               "with the same arguments and --study-name") from None
        if not o.worker and url.startswith("sqlite"):
            stale = studies.fail_stale(study)
            if stale:
                log(f"resuming study {name}: {stale} interrupted trial(s) will be redone", quiet=o.quiet)
            studies.requeue_interrupted(study)
        try:
            prep = self._prep(study)
        except LMError as exc:  # only fatal ones get here (backend down for good)
            raise backend_failed(exc, "while preparing rationales and instructions",
                                 "every finished model call is kept in the cache") from exc
        banks = self._banks(prep)
        space = collect_space(self.declared.root, tuple(prep["instructions"]))
        log(f"search space: {len(space)} choice(s): " + ", ".join(f"{p.key}{list(p.choices) if p.name != 'instruction' else f'[{len(p.choices)} candidates]'}"
                                                              for p in space), quiet=o.quiet)
        self._search(study, space, banks, prep)
        if o.worker:
            log("worker finished its share of trials", quiet=o.quiet)
            return CompileResult(program=None, report=None, study=name, worker=True)
        studies.wait_for_running(study, o.quiet)
        program, report = self._freeze(study, space, banks, prep, name, url, t0, before)
        if self.out is not None:
            program.save(self.out)
            report.write(self.out)
            log(f"wrote {self.out} and {report.paths(self.out)[0]}", quiet=o.quiet)
        return CompileResult(program=program, report=report, study=name, worker=False)

    # ---- stage 1+2: rationales and instructions (stored in the study, done once) -----------
    def _prep(self, study: optuna.Study) -> dict[str, Any]:
        prep = studies.get_json(study, "prep")
        if prep is not None:
            return prep
        if self.opts.worker:
            return studies.wait_for_prep(study, self.opts.worker_wait_s)
        o = self.opts
        sig = self.declared.signature
        needs = Needs.of(self.declared.root)
        wants_cot = needs.rationales
        wants_instr = needs.instruction and o.n_instructions > 0
        before = self.lm.snapshot()
        calls = 0
        rationales: dict[str, str] = {}
        stats = {"attempted": 0, "kept": 0, "abstained": 0}
        if wants_cot and self.train:
            cap = o.max_rationales if o.max_rationales is not None else default_rationales(o.budget)
            pool = _seeded_order(self.train, o.seed)[: min(cap, len(self.train), o.budget)]
            with progress_bar("self-generated CoT", len(pool), quiet=o.quiet) as bar:
                kept, st = generate_rationales(pool, self.lm, sig, self.declared.templates,
                                               on_result=lambda r: bar.advance(r.usage),
                                               concurrency=o.concurrency)
            rationales = {e.question.id: e.rationale or "" for e in kept}
            stats = st.to_dict()
            calls += len(pool)
            log(f"rationales: kept {st.kept} of {st.attempted} (wrong or unparsable ones dropped)", quiet=o.quiet)
        instructions = [sig.instruction]
        if wants_instr and self.train:
            room = max(0, min(max(o.n_instructions, o.instruction_consensus), o.budget - calls))
            examples = _seeded_order(self.train, o.seed + 1)[:3]
            instructions, n = propose_instructions(sig.instruction, examples, self.lm, n=min(room, o.n_instructions),
                                                   seed=o.seed, consensus_of=room)
            calls += n
            log(f"instructions: {len(instructions)} candidate(s) after de-duplication", quiet=o.quiet)
            if o.instruction_rounds != 0:  # stage 2b, opt-in: the instruction hill climb
                banks = lambda: self._banks({"rationales": rationales})  # noqa: E731 - built only if it runs
                instructions, calls = refine_stage(self.declared, _seeded_order(self.train, o.seed + 2), self.lm,
                                                   banks, self.metric, o, instructions, calls)
        u = _logical(before, self.lm.snapshot())
        # Logical calls as measured: a rationale whose reply has no option key costs a follow-up call.
        prep = {"rationales": rationales, "rationale_stats": stats, "instructions": instructions,
                "calls": max(calls, int(u["calls"])), "usage": u}
        studies.put_json(study, "prep", prep)
        return prep

    def _banks(self, prep: dict[str, Any]) -> BankChoice:
        full = Bank([Exemplar(q) for q in self.train], _embedder_settings(self.opts.embedder))
        if Needs.of(self.declared.root).knn and self.train:
            full.embeddings()
        keep = [i for i, q in enumerate(self.train) if q.id in prep["rationales"]]
        sub = full.subset(keep)
        cot = sub.with_exemplars([Exemplar(e.question, prep["rationales"][e.question.id]) for e in sub.exemplars])
        return BankChoice(full=full, cot=cot)

    # ---- stage 3: search ---------------------------------------------------------------------
    def split(self) -> DevSplit:
        """Search and confirmation questions: a seeded split of the dev set (see `selection`)."""
        return split_dev(self.dev, self.opts.seed, self.opts.confirm_fraction)

    def _search(self, study: optuna.Study, space: list[Param], banks: BankChoice, prep: dict[str, Any]) -> None:
        run_search(self, study, space, banks, prep, self.split())

    # ---- stage 4: confirm the finalists, freeze the choice ----------------------------------------
    def _freeze(self, study: optuna.Study, space: list[Param], banks: BankChoice, prep: dict[str, Any],
                name: str, url: str, t0: float, before: Usage) -> tuple[Program, CompileReport]:
        o = self.opts
        split = self.split()
        trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
        # Trials cut short (process killed, backend down) are redone on resume: leave them out and
        # number the rest in order, so that an interrupted compile writes the same program.
        trials = [t for t in trials if t.state != TrialState.FAIL or "skipped" in t.user_attrs]
        logical = {t.number: i for i, t in enumerate(trials)}
        if not scored(study, len(split.search)):
            errored = [t for t in trials if "model errors" in str(t.user_attrs.get("skipped", ""))]
            if errored and len(errored) == len(trials):
                raise CompileError(
                    f"every trial failed on model errors ({errored[-1].user_attrs['skipped']} in the last "
                    "one), so nothing could be scored: the model, not the budget, is the problem; check "
                    "it with `medcompile run` on a few questions (or `show` to see the prompts)")
            raise CompileError(
                f"no configuration was fully scored within the budget of {o.budget} calls "
                f"({len(split.search)} search questions, {prep['calls']} calls spent on preparation). "
                "Raise --budget or use a smaller dev set; finished work is kept in the study.")
        conf = run_confirmation(self, study, space, banks, prep, split, search_spent(study))
        label = {n: str(i) for n, i in logical.items()}
        chosen_t, sel, dev, cpq = self._choose(study, conf, split, label)
        params = trial_params(chosen_t, space)
        # What the chosen program costs a question, measured (a portfolio's cost depends on the questions).
        final = configure(self.declared.root, params, banks, o.seed).with_expected_calls(cpq)
        usage = _total_usage(prep, trials, stored_usage(study))
        pareto = [logical[t.number] for t in study.best_trials] if o.objective == "pareto" else []
        s_scores = chosen_t.user_attrs["scores"]
        info: dict[str, Any] = {
            "compiler": f"medcompile {__version__}",
            "study": name,
            "seed": o.seed,
            "budget": {"max_calls": o.budget, "spent_calls": usage["calls"], "preparation_calls": prep["calls"]},
            "usage": usage,
            "data": {"train": {"n": len(self.train), "sha256": _fingerprint(self.train)},
                     "dev": {"n": len(self.dev), "sha256": _fingerprint(self.dev)}},
            "dev": dev,
            "search": {"score": round(sum(s_scores) / len(s_scores), 6), "n": len(s_scores)},
            "selection": sel,
            "chosen": {k: (v if not isinstance(v, str) or len(v) <= 64 else f"<{len(v)} chars>")
                       for k, v in sorted(params.items())},
            "chosen_trial": logical[chosen_t.number],
            "calls_per_question": cpq,
            "rationales": prep["rationale_stats"],
            "instructions": prep["instructions"],
            "trials": {**{s: sum(1 for t in trials if t.state.name == s) for s in ("COMPLETE", "PRUNED", "FAIL")},
                       "repeats": sum(1 for t in trials if "duplicate_of" in t.user_attrs)},
        }
        if pareto:
            info["pareto_front"] = pareto
        log(sel["verdict"], quiet=o.quiet)
        program = Program(final, name=self.declared.name, signature=self.declared.signature,
                          templates=self.declared.templates, lm=self.lm_settings, compile_info=info, seed=o.seed)
        confirmed = {int(r["trial"]): r["score"] for r in sel.get("candidates", [])}
        rows = [TrialRow.from_trial(t, space, label, confirmed.get(logical[t.number])) for t in trials]
        report = CompileReport(info=info, trials=rows, live_usage=usage_diff(self.lm.snapshot(), before).to_dict(),
                               elapsed_s=time.perf_counter() - t0, storage=studies.redact_url(url), pareto=pareto)
        program.report = report
        return program, report

    def _choose(self, study: optuna.Study, conf: Confirmation, split: DevSplit, label: dict[int, str]
                ) -> tuple[optuna.trial.FrozenTrial, dict[str, Any], dict[str, Any], float]:
        """(chosen trial, selection summary, dev estimate, measured calls per question)."""
        o = self.opts
        skipped = [f"trial {label[n]}: {why}" for n, why in conf.skipped]
        if conf.candidates:
            choice = choose(conf.candidates, alpha=o.select_alpha, rule=o.select_rule)
            pooled = o.select_on == "pooled" and not split.reused
            sel = summary(choice, label, o.seed, split, pooled)
            sel["candidates"] = candidate_rows(conf.candidates, choice, label, o.seed)
            if o.reserve_finalists:
                sel["reserve_finalists"] = True
            chosen_t, scores, cpq = conf.trials[choice.chosen.number], choice.chosen.scores, choice.chosen.cost
            where = "search" if split.reused else "search+confirmation" if pooled else "confirmation"
        else:  # nothing fit in the budget left: the search scores are all there is
            chosen_t = search_leader(study, len(split.search))
            scores, cpq = chosen_t.user_attrs["scores"], measured_cost(chosen_t)
            sel = {**split.to_dict(), "verdict": "selection: no finalist could be scored on the confirmation "
                                                 "questions within the budget; chosen on the search questions"}
            where = "search"
        if skipped:
            sel["not_confirmed"] = skipped
        ci = accuracy_ci([s >= 0.5 for s in scores], seed=o.seed) if self.metric is accuracy_metric else None
        dev = {"metric": self.metric_name, "score": round(sum(scores) / len(scores), 6), "n": len(scores),
               "questions": where, **({"ci95": [round(ci.low, 6), round(ci.high, 6)]} if ci else {})}
        return chosen_t, sel, dev, round(cpq, 6)


# ---- helpers ---------------------------------------------------------------------------------------
def _fingerprint(qs: Sequence[Question]) -> str:
    blob = json.dumps([q.to_dict() for q in qs], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _seeded_order(qs: Sequence[Question], seed: int) -> list[Question]:
    from ..modules.base import derive_seed

    return sorted(qs, key=lambda q: (derive_seed(seed, "order", q.id, q.question), q.id))


def _embedder_settings(spec: str | dict | None) -> dict | None:
    if spec is None or isinstance(spec, dict):
        return spec
    from ..embed import make_embedder

    return make_embedder(spec).settings()


def _usage_dict(u: Usage) -> dict[str, Any]:
    return {"calls": u.calls, "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "cost": round(u.cost, 8)}


def _logical(before: Usage, after: Usage) -> dict[str, Any]:
    from ..lm.meter import usage_diff

    return _usage_dict(usage_diff(after, before))


def _total_usage(prep: dict[str, Any], trials: list[optuna.trial.FrozenTrial],
                 confirmations: list[dict[str, Any]]) -> dict[str, Any]:
    tot = dict(prep["usage"])
    done = [t.user_attrs.get("usage", {}) for t in trials if t.state in studies.FINISHED or "skipped" in t.user_attrs]
    for u in done + confirmations:
        for k, v in u.items():
            tot[k] = tot.get(k, 0) + v
    tot["cost"] = round(tot.get("cost", 0.0), 8)
    return tot


__all__ = ["optimize", "CompileError", "CompileOptions", "CompileResult", "Compiler"]
