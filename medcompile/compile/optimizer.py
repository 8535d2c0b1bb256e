"""`optimize`: compile a declared program for one model into a frozen program.

Stages: self-generated rationales for the exemplar bank, instruction proposals,
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import optuna
from optuna.trial import TrialState

from .. import __version__
from ..bank import Bank
from ..exemplar import Exemplar
from ..lm.base import LM, LMError, Usage
from ..lm.meter import BudgetExceeded, MeteredLM
from ..modules.base import Module, Needs
from ..program.program import Program
from ..progress import log, progress_bar
from ..question import Question
from . import study as studies
from .instructions import propose_instructions
from .preflight import CompileError, check_data, check_program, metric_identity
from .rationales import generate_rationales
from .report import CompileReport, TrialRow
from .space import BankChoice, Param, apply, canonical, collect_space
from .trial import Metric, Pruned, TooManyModelErrors, TrialOutcome, accuracy_metric, evaluate_candidate


@dataclass
class CompileOptions:
    budget: int = 500
    seed: int = 0
    max_trials: int = 24
    minibatch: int = 8
    n_instructions: int = 3
    max_rationales: int | None = None
    objective: str = "accuracy"  # or "pareto": accuracy vs calls per question
    concurrency: int = 1
    storage: str | None = None
    study_name: str | None = None
    worker: bool = False
    embedder: str | dict | None = None
    quiet: bool = False
    worker_wait_s: float = 600.0


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
            "objective": self.opts.objective, "metric": self.metric_id["id"], "embedder": self.opts.embedder,
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
        t0 = time.perf_counter()
        o = self.opts
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
        try:
            prep = self._prep(study)
        except LMError as exc:  # only fatal ones get here (backend down for good)
            raise CompileError(f"model backend failed while preparing rationales and instructions: {exc}. "
                               "Every finished model call is kept in the cache; rerun the same command "
                               "to resume.") from exc
        banks = self._banks(prep)
        space = collect_space(self.declared.root, tuple(prep["instructions"]))
        log(f"search space: {len(space)} choice(s): " + ", ".join(f"{p.key}{list(p.choices) if p.name != 'instruction' else f'[{len(p.choices)} candidates]'}"
                                                              for p in space), quiet=o.quiet)
        self._search(study, space, banks, prep)
        if o.worker:
            log("worker finished its share of trials", quiet=o.quiet)
            return CompileResult(program=None, report=None, study=name, worker=True)
        _wait_for_running(study, o.quiet)
        program, report = self._freeze(study, space, banks, prep, name, url, time.perf_counter() - t0)
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
            return _wait_for_prep(study, self.opts.worker_wait_s)
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
            cap = o.max_rationales if o.max_rationales is not None else max(1, int(o.budget * 0.3))
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
            room = max(0, min(o.n_instructions, o.budget - calls))
            examples = _seeded_order(self.train, o.seed + 1)[:3]
            instructions, n = propose_instructions(sig.instruction, examples, self.lm, n=room, seed=o.seed)
            calls += n
            log(f"instructions: {len(instructions)} candidate(s) after de-duplication", quiet=o.quiet)
        u = _logical(before, self.lm.snapshot())
        prep = {"rationales": rationales, "rationale_stats": stats, "instructions": instructions,
                "calls": calls, "usage": u}
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
    def _search(self, study: optuna.Study, space: list[Param], banks: BankChoice, prep: dict[str, Any]) -> None:
        o = self.opts
        multi = o.objective == "pareto"
        n_startup = max(3, min(8, o.max_trials // 3))
        cheapest = len(self.dev) * _cheapest(self.declared.root, space, banks)
        with progress_bar("search", o.max_trials, quiet=o.quiet) as bar:
            bar.advance(None, n=min(_n_done(study), o.max_trials))
            misfits = 0
            while _n_done(study) < o.max_trials:
                spent = prep["calls"] + _spent(study)
                if spent >= o.budget:
                    log(f"budget of {o.budget} calls reached", quiet=o.quiet)
                    break
                study.sampler = studies.seeded_sampler(o.seed, _n_done(study), multi, n_startup)
                trial = study.ask()
                params = {p.key: p.value(trial.suggest_categorical(p.key, p.optuna_choices())) for p in space}
                candidate = apply(self.declared.root, params, banks)
                key = hashlib.sha256(canonical(candidate).encode()).hexdigest()
                trial.set_user_attr("canonical", key)
                est = int(len(self.dev) * candidate.calls_per_question())
                trial.set_user_attr("reserved", est)
                dup = _find_duplicate(study, key, trial.number)
                if dup is not None:
                    self._tell_duplicate(study, trial, dup)
                    bar.advance(None)
                    log(f"trial {trial.number:>3} same configuration as trial {dup.number}: reused, 0 calls",
                        quiet=o.quiet)
                    continue
                if spent + est > o.budget:
                    trial.set_user_attr("skipped", f"needs ~{est} calls, {o.budget - spent} left")
                    trial.set_user_attr("calls", 0)
                    study.tell(trial, state=TrialState.FAIL)
                    misfits += 1
                    if spent + cheapest > o.budget or misfits >= MAX_MISFITS:
                        log(f"budget left ({o.budget - spent} calls) is too small for the configurations "
                            "proposed; stopping search", quiet=o.quiet)
                        break
                    continue
                misfits = 0
                prog = Program(candidate, name=self.declared.name, templates=self.declared.templates, seed=o.seed)
                outcome = TrialOutcome()

                def report(score: float, step: int, trial: optuna.Trial = trial) -> bool:
                    if multi:
                        return False
                    trial.report(score, step)
                    return trial.should_prune()

                state = TrialState.COMPLETE
                stop = False
                try:
                    evaluate_candidate(prog, self.dev, self.lm, o.budget - spent, self.metric, minibatch=o.minibatch,
                                       report=report, concurrency=o.concurrency, outcome=outcome)
                except Pruned:
                    state = TrialState.PRUNED
                except TooManyModelErrors:
                    state = TrialState.FAIL
                    trial.set_user_attr("skipped", f"{outcome.model_errors} of {len(outcome.scores)} answers "
                                                   "were model errors")
                except BudgetExceeded:
                    state, stop = TrialState.FAIL, True
                    trial.set_user_attr("skipped", "budget ran out during the trial")
                except LMError as exc:
                    # Fatal backend failure: record what was spent, keep the study, stop cleanly.
                    self._record(trial, outcome, candidate)
                    study.tell(trial, state=TrialState.FAIL)
                    raise CompileError(f"model backend failed during trial {trial.number}: {exc}. "
                                       "All finished trials are kept; rerun the same command to resume.") from exc
                self._record(trial, outcome, candidate)
                if state == TrialState.COMPLETE:
                    values = [outcome.mean, candidate.calls_per_question()] if multi else outcome.mean
                    study.tell(trial, values)
                else:
                    study.tell(trial, state=state)
                bar.advance(outcome.usage)
                log(_trial_line(trial.number, state, outcome, params, space, len(self.dev)), quiet=o.quiet)
                if stop:
                    log(f"budget of {o.budget} calls reached during trial {trial.number}", quiet=o.quiet)
                    break

    def _record(self, trial: optuna.Trial, outcome: TrialOutcome, candidate: Module) -> None:
        trial.set_user_attr("calls", outcome.calls)
        trial.set_user_attr("usage", _usage_dict(outcome.usage))
        trial.set_user_attr("n", len(outcome.scores))
        trial.set_user_attr("scores", outcome.scores)
        trial.set_user_attr("abstentions", outcome.abstentions)
        trial.set_user_attr("cpq", candidate.calls_per_question())

    def _tell_duplicate(self, study: optuna.Study, trial: optuna.Trial, dup: optuna.trial.FrozenTrial) -> None:
        for k in ("n", "scores", "abstentions", "cpq"):
            if k in dup.user_attrs:
                trial.set_user_attr(k, dup.user_attrs[k])
        trial.set_user_attr("calls", 0)
        trial.set_user_attr("duplicate_of", dup.number)
        if dup.state == TrialState.COMPLETE:
            study.tell(trial, dup.values if len(dup.values) > 1 else dup.values[0])
        else:
            study.tell(trial, state=TrialState.PRUNED)

    # ---- stage 4: freeze ------------------------------------------------------------------------
    def _freeze(self, study: optuna.Study, space: list[Param], banks: BankChoice, prep: dict[str, Any],
                name: str, url: str, elapsed: float) -> tuple[Program, CompileReport]:
        from ..evaluate.stats import accuracy_ci

        o = self.opts
        trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
        # Trials cut short (process killed, backend down) are redone on resume: leave them out and
        # number the rest in order, so that an interrupted compile writes the same program.
        trials = [t for t in trials if t.state != TrialState.FAIL or "skipped" in t.user_attrs]
        logical = {t.number: i for i, t in enumerate(trials)}
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if not complete:
            raise CompileError(
                f"no configuration was fully scored within the budget of {o.budget} calls "
                f"(dev set of {len(self.dev)} questions, {prep['calls']} calls spent on preparation). "
                "Raise --budget or use a smaller dev set; finished work is kept in the study.")
        best = min(complete, key=lambda t: (-t.values[0], t.user_attrs.get("cpq", 0.0), t.number))
        pareto = [logical[t.number] for t in study.best_trials] if o.objective == "pareto" else []
        params = {p.key: p.value(best.params[p.key]) for p in space if p.key in best.params}
        final = apply(self.declared.root, params, banks)
        scores = best.user_attrs["scores"]
        ci = accuracy_ci([s >= 0.5 for s in scores], seed=o.seed) if self.metric is accuracy_metric else None
        usage = _total_usage(prep, trials)
        cpq = final.calls_per_question()
        info: dict[str, Any] = {
            "compiler": f"medcompile {__version__}",
            "study": name,
            "seed": o.seed,
            "budget": {"max_calls": o.budget, "spent_calls": usage["calls"]},
            "usage": usage,
            "data": {"train": {"n": len(self.train), "sha256": _fingerprint(self.train)},
                     "dev": {"n": len(self.dev), "sha256": _fingerprint(self.dev)}},
            "dev": {"metric": self.metric_name, "score": round(best.values[0], 6), "n": len(scores),
                    **({"ci95": [round(ci.low, 6), round(ci.high, 6)]} if ci else {})},
            "chosen": {k: (v if not isinstance(v, str) or len(v) <= 64 else f"<{len(v)} chars>")
                       for k, v in sorted(params.items())},
            "chosen_trial": logical[best.number],
            "calls_per_question": cpq,
            "rationales": prep["rationale_stats"],
            "instructions": prep["instructions"],
            "trials": {s: sum(1 for t in trials if t.state.name == s) for s in ("COMPLETE", "PRUNED", "FAIL")},
        }
        if pareto:
            info["pareto_front"] = pareto
        program = Program(final, name=self.declared.name, signature=self.declared.signature,
                          templates=self.declared.templates, lm=self.lm_settings, compile_info=info, seed=o.seed)
        rows = [TrialRow.from_trial(t, space) for t in trials]
        for row, t in zip(rows, trials):
            row.number = logical[t.number]
            if "duplicate_of" in t.user_attrs:
                row.note = f"same as trial {logical.get(t.user_attrs['duplicate_of'], t.user_attrs['duplicate_of'])}"
        report = CompileReport(info=info, trials=rows, live_usage=self.lm.snapshot().to_dict(),
                               elapsed_s=elapsed, storage=_redact(url), pareto=pareto)
        program.report = report
        return program, report


# ---- helpers ---------------------------------------------------------------------------------------
MAX_MISFITS = 25  # proposals in a row that do not fit the budget before the search gives up


def _cheapest(root: Module, space: list[Param], banks: BankChoice) -> float:
    """Calls per question of the cheapest configuration: fewest shuffles, paths, refinements."""
    params = {p.key: min(p.choices) for p in space if p.name in ("n", "m", "r")}
    return apply(root, params, banks).calls_per_question()
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


def _n_done(study: optuna.Study) -> int:
    """Trials that count for re-seeding: finished ones and budget skips, not killed ones."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in studies.FINISHED or (t.state == TrialState.FAIL and "skipped" in t.user_attrs))


def _spent(study: optuna.Study) -> int:
    """Logical calls of finished trials, plus what running trials (other workers) reserved."""
    total = 0
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.RUNNING:
            total += int(t.user_attrs.get("reserved", 0))
        elif t.state in studies.FINISHED or "skipped" in t.user_attrs:
            total += int(t.user_attrs.get("calls", 0))
    return total


def _find_duplicate(study: optuna.Study, key: str, number: int) -> optuna.trial.FrozenTrial | None:
    for t in studies.finished_trials(study):
        if t.number != number and t.user_attrs.get("canonical") == key and "scores" in t.user_attrs:
            return t
    return None


def _usage_dict(u: Usage) -> dict[str, Any]:
    return {"calls": u.calls, "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "cost": round(u.cost, 8)}


def _logical(before: Usage, after: Usage) -> dict[str, Any]:
    from ..lm.meter import usage_diff

    return _usage_dict(usage_diff(after, before))


def _total_usage(prep: dict[str, Any], trials: list[optuna.trial.FrozenTrial]) -> dict[str, Any]:
    tot = dict(prep["usage"])
    for t in trials:
        if t.state in studies.FINISHED or "skipped" in t.user_attrs:
            for k, v in t.user_attrs.get("usage", {}).items():
                tot[k] = tot.get(k, 0) + v
    tot["cost"] = round(tot.get("cost", 0.0), 8)
    return tot


def _trial_line(number: int, state: TrialState, o: TrialOutcome, params: dict[str, Any], space: list[Param],
                n_dev: int) -> str:
    shown = ", ".join(f"{p.key.split('.')[-1] if p.name != 'instruction' else 'instr'}="
                      f"{(p.choices.index(params[p.key]) if p.name == 'instruction' else params[p.key])}" for p in space)
    return (f"trial {number:>3} {state.name.lower():8} score {o.mean:.3f} on {len(o.scores)}/{n_dev} "
            f"calls {o.calls:>5}  {shown}")


def _wait_for_prep(study: optuna.Study, timeout_s: float) -> dict[str, Any]:
    t_end = time.time() + timeout_s
    while time.time() < t_end:
        prep = studies.get_json(study, "prep")
        if prep is not None:
            return prep
        time.sleep(1.0)
    raise CompileError(f"no leader has prepared study {study.study_name!r} within {timeout_s:.0f}s: "
                       "start `medcompile optimize` without --worker first")


def _wait_for_running(study: optuna.Study, quiet: bool, timeout_s: float = 3600) -> None:
    """Before freezing, let trials that other workers are running finish."""
    t_end = time.time() + timeout_s
    announced = False
    while time.time() < t_end:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return
        if not announced:
            log(f"waiting for {len(running)} trial(s) still running on other workers", quiet=quiet)
            announced = True
        time.sleep(1.0)


def _redact(url: str) -> str:
    """Storage URLs may carry a password: never write it into a report."""
    import re

    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


__all__ = ["optimize", "CompileError", "CompileOptions", "CompileResult", "Compiler"]
