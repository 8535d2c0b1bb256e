"""Compile and evaluate stages of bench_powered_eval.py (see its docstring).

Compiles are resumable (the optuna study sits beside each program file, the LM cache
serves every call already made) and skipped when the program file exists; evaluations
resume from their checkpoints. Rows are saved after every (dataset, program) pair.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench_powered_eval import (DATASETS, SIGNATURES, DataSpec, _save, paired, questions, row,
                                run_eval)

import programs as ready_made
from medcompile import Predict, Program, load
from medcompile.compile.optimizer import optimize
from medcompile.data import load_dataset, sample, split_named
from medcompile.evaluate.runner import EvalResult

PROGRAMS = ("zero_shot", "few_shot", "medprompt", "ensemble_refinement")  # cheapest first
BUDGETS = {"few_shot": 400, "medprompt": 700, "ensemble_refinement": 700}  # logical calls per compile
QUICK_BUDGETS = {"few_shot": 30, "medprompt": 40, "ensemble_refinement": 40}
DEV_N, QUICK_DEV_N = 100, 8


def family_data(family: str, quick: bool) -> tuple[list, list]:
    """(exemplar bank, dev) for a family. MedQA: bank split (765) and a seeded 100 of the dev
    split; PubMedQA: its 500 non-test questions, a seeded 100 as dev and the rest as bank."""
    n_dev = QUICK_DEV_N if quick else DEV_N
    if family == "medqa":
        ds = load_dataset("medqa_us4")
        bank = split_named(ds, "bank").questions
        dev = sample(split_named(ds, "dev").questions, n_dev, seed=0)
        return (bank[:60] if quick else bank), dev
    pool = split_named(load_dataset("pubmedqa"), "train").questions
    order = sample(pool, len(pool), seed=0)
    dev, bank = order[:n_dev], order[DEV_N:]
    return (bank[:60] if quick else bank), dev


def program_path(out: Path, family: str, name: str, quick: bool) -> Path:
    return out / ("programs.quick" if quick else "programs") / family / f"{name}.json"


def stage_compile(lm: Any, quick: bool, out_dir: Path, names: tuple[str, ...] = PROGRAMS
                  ) -> dict[tuple[str, str], Program]:
    out: dict[tuple[str, str], Program] = {}
    for family in ("medqa", "pubmedqa"):
        sig = SIGNATURES[family]
        bank = dev = None
        for name in names:
            path = program_path(out_dir, family, name, quick)
            if name == "zero_shot":  # nothing to choose: one call, constrained direct answer
                out[family, name] = Program(Predict(sig, tune=False), name="zero_shot",
                                            lm={"model": lm.model, "mode": lm.mode, "spec": "local"})
                continue
            if path.exists():
                out[family, name] = load(path)
                continue
            if bank is None:
                bank, dev = family_data(family, quick)
            budget = (QUICK_BUDGETS if quick else BUDGETS)[name]
            t0 = time.perf_counter()
            print(f"[compile] {family}/{name}: bank {len(bank)}, dev {len(dev)}, budget {budget}", flush=True)
            prog = optimize(ready_made_program(name, sig), bank, dev, lm=lm, budget=budget, seed=0, out=path,
                            max_rationales=None if not quick else 8)
            print(f"[compile] {family}/{name}: done in {time.perf_counter() - t0:.0f} s, dev "
                  f"{(prog.compile_info or {}).get('dev')}", flush=True)
            out[family, name] = prog
    return out


def ready_made_program(name: str, signature: str) -> Program:
    import importlib

    return importlib.import_module(f"{ready_made.__name__}.{name}").build(signature)


def stage_eval(lm: Any, progs: dict[tuple[str, str], Program], quick: bool, only: set[str] | None,
               out_dir: Path, names: tuple[str, ...] = PROGRAMS) -> list[dict]:
    rows: list[dict[str, Any]] = []
    missing: list[str] = []
    for spec in DATASETS:
        if only and spec.name not in only:
            continue
        qs = questions(spec, quick)
        base: EvalResult | None = None
        for name in names:
            prog = progs.get((spec.family, name))
            if prog is None:
                missing.append(f"{spec.name}/{name}")
                continue
            t0 = time.perf_counter()
            res = run_eval(prog, qs, lm, f"{spec.name}.{name}.{prog.content_hash()[:12]}",
                           out_dir / "checkpoints")
            print(f"[eval] {spec.name} {name}: {res.summary()} ({time.perf_counter() - t0:.0f} s)", flush=True)
            r = row(spec, name, res, compiled_on=_compiled_on(spec), calls_declared=prog.calls_per_question())
            if name == "zero_shot":
                base = res
            elif base is not None:
                r["paired_vs_zero_shot"] = paired(base, res, "zero_shot", name)
            if spec.name == "mmlu_medical":
                r["by_subject"] = {s: {"n": c.n, "accuracy": round(c.mean, 4), "ci95": [round(c.low, 4), round(c.high, 4)]}
                                   for s, c in res.by_subject().items()}
            rows.append(r)
            _save(out_dir / "powered", rows, quick, missing=missing, datasets={d.name: d.note for d in DATASETS})
    return rows


def _compiled_on(spec: DataSpec) -> str:
    return ("PubMedQA non-test questions (bank 400, dev 100)" if spec.family == "pubmedqa"
            else "MedQA-US4 bank split (765) and 100 of the dev split")
