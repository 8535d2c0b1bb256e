"""Interim figures for (dataset, program) evaluations still under way, read from their
checkpoints: what the questions finished so far say, with their n, never the planned n.

The MedMCQA and MMLU-medical runs go through a seeded random sample in order, so the
questions finished first are a random subset of the planned ones; MedQA-US4 and PubMedQA
use their whole test split in file order, so their first questions are not (the table
says which). Each interim row is paired with zero_shot on exactly the same questions.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medcompile.evaluate.stats import Comparison, compare

BASELINES = ("zero_shot", "zero_shot_parse", "zero_shot_constrained")
RANDOM_ORDER = {"medmcqa", "mmlu_medical"}  # sampled; the others are whole splits in file order


def finished_records(path: Path) -> dict[str, dict[str, Any]]:
    """Question id -> its last record in a checkpoint (a torn last line is skipped)."""
    out: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            continue
        out[d["id"]] = d["record"]
    return out


def interim_rows(checkpoints: Path, done: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """A row for every checkpoint of a (dataset, program) that has no complete row yet."""
    files = sorted(checkpoints.glob("*.checkpoint.jsonl"))
    parts = {f: f.name.split(".")[:2] for f in files}
    rows = []
    for f, (dataset, program) in parts.items():
        if program in BASELINES or (dataset, program) in done:
            continue
        base = [g for g, (d, p) in parts.items() if d == dataset and p == "zero_shot"]
        recs = finished_records(f)
        if len(base) != 1 or not recs:
            continue
        zero = finished_records(base[0])
        ids = [i for i in recs if i in zero]
        c = compare([bool(zero[i]["correct"]) for i in ids], [bool(recs[i]["correct"]) for i in ids],
                    name_a="zero_shot", name_b=program)
        rows.append({
            "dataset": dataset, "program": program, "n_so_far": len(ids),
            "random_subset": dataset in RANDOM_ORDER,
            "accuracy": round(c.acc_b.mean, 4), "ci95": [round(c.acc_b.low, 4), round(c.acc_b.high, 4)],
            "abstention": round(sum(recs[i]["answer"] is None for i in ids) / len(ids), 4),
            "calls_per_question": round(sum(recs[i]["calls"] for i in ids) / len(ids), 2),
            "zero_shot_accuracy": round(c.acc_a.mean, 4),
            "paired_vs_zero_shot": paired_fields(c, digits=6)})
    return rows


def paired_fields(c: Comparison, digits: int = 4) -> dict[str, Any]:
    """A paired comparison as the powered results store it (B - A)."""
    return {"diff": round(c.diff.mean, digits), "diff_ci95": [round(c.diff.low, digits), round(c.diff.high, digits)],
            "mcnemar_p": round(c.mcnemar_p, 6), "wins": c.wtl.wins, "losses": c.wtl.losses, "verdict": c.verdict}


def interim_markdown(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = ["## Under way (interim: the questions finished so far, not the planned n)", "",
             "| dataset | program | n so far | which questions | accuracy % (95% CI) | abstained | calls/q | "
             "zero_shot on them | vs zero_shot: diff (95% CI), McNemar p |", "|---|---|---:|---|---|---:|---:|---:|---|"]
    for r in rows:
        p = r["paired_vs_zero_shot"]
        lines.append(
            f"| {r['dataset']} | {r['program']} | {r['n_so_far']} | "
            f"{'random subset' if r['random_subset'] else 'first in file order'} | "
            f"{100 * r['accuracy']:.1f} ({100 * r['ci95'][0]:.1f}-{100 * r['ci95'][1]:.1f}) | "
            f"{100 * r['abstention']:.1f}% | {r['calls_per_question']:.2f} | {100 * r['zero_shot_accuracy']:.1f} | "
            f"{100 * p['diff']:+.1f} ({100 * p['diff_ci95'][0]:+.1f} to {100 * p['diff_ci95'][1]:+.1f}), "
            f"p={p['mcnemar_p']:.3g} |")
    return lines + [""]
