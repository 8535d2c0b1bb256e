"""Benchmark: `medcompile run` and `medcompile eval` over 1,000 and 10,000 questions, zero-latency model.

The model is the command line's scripted model (`--lm scripted`: answers instantly with an
option chosen by a hash of the prompt, no cache), so every second and megabyte measured is
medcompile's: reading questions, kNN retrieval (WordLlama query embedding + faiss), prompt
building, parsing, voting, records, checkpoint and output. The program is Medprompt-shaped:
Vote(Shuffle(Predict(demos=Retrieve(k=3, knn over a 200-exemplar bank)), n=3)), 3 calls a question.

Each measurement is one fresh process (`--child`), so its peak RSS (ru_maxrss) is its own;
a 10-question run gives the fixed cost (interpreter, numpy, faiss, WordLlama), and growth is
judged on wall time and on peak RSS above that fixed cost, per question, at 1k and 10k.

Checked, not just timed:
  * `run -o -` streams answers in input order (ids compared with the input);
  * `eval` writes its checkpoint in input order; SIGKILLed once a third of the questions are
    in the checkpoint and rerun, it resumes (restored count > 0) and ends with the same
    per-question answers as an uninterrupted eval;
  * a `run` killed mid-way leaves complete lines that are a prefix of the full output.

    python benchmarks/bench_scale.py [--quick] [--sizes 1000,10000] [--concurrency 4]

Writes benchmarks/results/scale.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, md_table, save_json  # noqa: E402

WORDS = ("fever cough chest pain abdominal acute chronic history shows elevated serum blood pressure pulse "
         "renal hepatic cardiac pulmonary neurologic infection rash weakness fatigue nausea headache glucose "
         "sodium potassium infant elderly woman man biopsy lesion").split()


def question(rng: random.Random, i: int, prefix: str) -> dict[str, Any]:
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 80)))
    return {"id": f"{prefix}{i}", "question": f"A {rng.randint(2, 90)}-year-old with {words}?",
            "options": {k: " ".join(rng.choice(WORDS) for _ in range(3)) for k in "ABCD"},
            "answer": rng.choice("ABCD")}


def write_inputs(work: Path, sizes: list[int]) -> Path:
    """The program file and one question file per size."""
    from medcompile import Exemplar, Predict, Program, Question, Retrieve, Shuffle, Vote
    from medcompile.bank import Bank

    rng = random.Random(0)
    bank = Bank([Exemplar(Question.from_dict(question(rng, i, "b"))) for i in range(200)], {"kind": "wordllama"})
    bank.embeddings()  # stored in the program, as a compiled one would have them
    prog = Program(Vote(Shuffle(Predict(demos=Retrieve(k=3, strategy="knn", bank=bank, tune=False), tune=False),
                                n=3, tune=False)), name="scale")
    prog.save(str(work / "program.json"))
    for n in sorted(set(sizes) | {10}):
        rng = random.Random(n)
        with (work / f"q{n}.jsonl").open("w", encoding="utf-8") as f:
            for i in range(n):
                f.write(json.dumps(question(rng, i, "q")) + "\n")
    return work / "program.json"


def child(argv: list[str], report: str) -> int:
    """Run one CLI command in this process; write wall time and peak RSS to `report`."""
    from medcompile.cli.main import main

    t0 = time.perf_counter()
    rc = main(argv)
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    Path(report).write_text(json.dumps({"rc": rc, "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime,
                                        "peak_rss_mb": ru.ru_maxrss / 1024}), encoding="utf-8")
    return rc


def spawn(argv: list[str], work: Path, stdout: Path | None = None) -> tuple[subprocess.Popen, Path]:
    report = work / f"report-{time.monotonic_ns()}.json"
    out = stdout.open("w", encoding="utf-8") if stdout else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, __file__, "--child", str(report), "--", *argv], cwd=work,
                            stdout=out, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
    return proc, report


def measure(argv: list[str], work: Path, stdout: Path | None = None) -> dict[str, Any]:
    proc, report = spawn(argv, work, stdout)
    rc = proc.wait()
    if rc != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {rc}")
    return json.loads(report.read_text(encoding="utf-8"))


def ids_of(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def kill_when(proc: subprocess.Popen, path: Path, lines: int, timeout_s: float = 600) -> int:
    """SIGKILL `proc` once `path` has at least `lines` lines; returns the count seen just before."""
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end and proc.poll() is None:
        n = path.read_text(encoding="utf-8").count("\n") if path.exists() else 0
        if n >= lines:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return n
        time.sleep(0.05)
    raise RuntimeError("the process ended (or timed out) before it could be killed mid-way")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1k only for the checks, 1k and 3k for growth (< 2 min)")
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("argv", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.argv, args.child)
    sizes = [1000, 3000] if args.quick else [int(s) for s in args.sizes.split(",")]
    c = ["--concurrency", str(args.concurrency), "--lm", "scripted", "--quiet"]
    out: dict[str, Any] = {"machine": machine(), "config": {"sizes": sizes, "concurrency": args.concurrency,
                                                            "quick": args.quick}, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_inputs(work, sizes)
        base = {"run": measure(["run", "program.json", "-i", "q10.jsonl", "-o", "-", *c], work, work / "a10.jsonl"),
                "eval": measure(["eval", "program.json", "--data", "q10.jsonl", "--out", "e10", "--name", "scale", *c], work)}
        out["fixed_cost_10_questions"] = base
        for n in sizes:
            r = measure(["run", "program.json", "-i", f"q{n}.jsonl", "-o", "-", *c], work, work / f"a{n}.jsonl")
            in_order = ids_of(work / f"a{n}.jsonl") == ids_of(work / f"q{n}.jsonl")
            e = measure(["eval", "program.json", "--data", f"q{n}.jsonl", "--out", f"e{n}", "--name", "scale", *c], work)
            ckpt = work / f"e{n}" / "scale.eval.checkpoint.jsonl"
            ckpt_in_order = ckpt.exists() and ids_of(ckpt) == ids_of(work / f"q{n}.jsonl")
            row = {"questions": n, "calls": 3 * n,
                   "run_wall_s": round(r["wall_s"], 2), "run_peak_rss_mb": round(r["peak_rss_mb"], 1),
                   "eval_wall_s": round(e["wall_s"], 2), "eval_peak_rss_mb": round(e["peak_rss_mb"], 1),
                   "run_cpu_s": round(r["cpu_s"], 2), "eval_cpu_s": round(e["cpu_s"], 2),
                   "run_cpu_ms_per_question_above_fixed": round(1000 * (r["cpu_s"] - base["run"]["cpu_s"]) / n, 3),
                   "eval_cpu_ms_per_question_above_fixed": round(1000 * (e["cpu_s"] - base["eval"]["cpu_s"]) / n, 3),
                   "run_ms_per_question": round(1000 * r["wall_s"] / n, 3),
                   "eval_ms_per_question": round(1000 * e["wall_s"] / n, 3),
                   "run_kb_per_question_above_fixed": round(1024 * (r["peak_rss_mb"] - base["run"]["peak_rss_mb"]) / n, 2),
                   "eval_kb_per_question_above_fixed": round(
                       1024 * (e["peak_rss_mb"] - base["eval"]["peak_rss_mb"]) / n, 2),
                   "run_output_in_input_order": in_order, "eval_checkpoint_in_input_order": ckpt_in_order}
            out["rows"].append(row)
            print(f"{n:>6} questions: run {r['wall_s']:.1f} s ({r['cpu_s']:.1f} s CPU), peak RSS {r['peak_rss_mb']:.0f} MB"
                  f" | eval {e['wall_s']:.1f} s ({e['cpu_s']:.1f} s CPU), peak RSS {e['peak_rss_mb']:.0f} MB | in order: "
                  f"run {in_order}, "
                  f"checkpoint {ckpt_in_order}", flush=True)
        out["resume"] = resume_check(work, sizes[-1] if not args.quick else sizes[0], c)
        print("kill and resume:", out["resume"], flush=True)
    if len(out["rows"]) >= 2:
        a, b = out["rows"][0], out["rows"][-1]
        k = b["questions"] / a["questions"]
        out["growth"] = {"questions_ratio": k,
                         "run_time_ratio": round(b["run_wall_s"] / a["run_wall_s"], 2),
                         "eval_time_ratio": round(b["eval_wall_s"] / a["eval_wall_s"], 2),
                         "run_cpu_above_fixed_ratio": round(b["run_cpu_ms_per_question_above_fixed"] * b["questions"]
                                                            / max(1e-9, a["run_cpu_ms_per_question_above_fixed"]
                                                                  * a["questions"]), 2),
                         "eval_cpu_above_fixed_ratio": round(b["eval_cpu_ms_per_question_above_fixed"] * b["questions"]
                                                             / max(1e-9, a["eval_cpu_ms_per_question_above_fixed"]
                                                                   * a["questions"]), 2),
                         "run_rss_above_fixed_ratio": _ratio(b, a, "run", out), "eval_rss_above_fixed_ratio":
                             _ratio(b, a, "eval", out)}
    save_json("scale.json", out)
    print()
    print(md_table(["questions", "run s", "run peak RSS MB", "eval s", "eval peak RSS MB", "run ms/q", "eval ms/q",
                    "in input order"],
                   [[r["questions"], r["run_wall_s"], r["run_peak_rss_mb"], r["eval_wall_s"], r["eval_peak_rss_mb"],
                     r["run_ms_per_question"], r["eval_ms_per_question"],
                     r["run_output_in_input_order"] and r["eval_checkpoint_in_input_order"]] for r in out["rows"]]))
    print("fixed cost (10 questions):", out["fixed_cost_10_questions"])
    print("growth:", out.get("growth"))
    return 0


def _ratio(b: dict, a: dict, what: str, out: dict) -> float | None:
    fixed = out["fixed_cost_10_questions"][what]["peak_rss_mb"]
    da, db = a[f"{what}_peak_rss_mb"] - fixed, b[f"{what}_peak_rss_mb"] - fixed
    return round(db / da, 2) if da > 0 else None


def resume_check(work: Path, n: int, c: list[str]) -> dict[str, Any]:
    """eval killed at a third and resumed ends like an uninterrupted eval; a killed run leaves a prefix."""
    data = f"q{n}.jsonl"
    proc, _ = spawn(["eval", "program.json", "--data", data, "--out", "killed", "--name", "scale", *c], work)
    ckpt = work / "killed" / "scale.eval.checkpoint.jsonl"
    before = kill_when(proc, ckpt, n // 3)
    kept_in_order = ids_of(ckpt)[:before] == ids_of(work / data)[:before]
    again = measure(["eval", "program.json", "--data", data, "--out", "killed", "--name", "scale", *c], work)
    resumed = json.loads((work / "killed" / "scale.eval.json").read_text(encoding="utf-8"))
    uninterrupted = json.loads((work / f"e{n}" / "scale.eval.json").read_text(encoding="utf-8"))
    same = ([(r["id"], r["answer"]) for r in resumed["records"]]
            == [(r["id"], r["answer"]) for r in uninterrupted["records"]])
    proc, _ = spawn(["run", "program.json", "-i", data, "-o", "-", *c], work, work / "partial.jsonl")
    seen = kill_when(proc, work / "partial.jsonl", n // 3)
    lines = (work / "partial.jsonl").read_text(encoding="utf-8").splitlines()
    answers = [(d["id"], d["answer"]) for d in map(json.loads, (ln for ln in lines if ln.endswith("}")))]
    full = [(d["id"], d["answer"]) for d in map(json.loads, (work / f"a{n}.jsonl").read_text().splitlines())]
    return {"questions": n, "eval_killed_with_records": before, "eval_checkpoint_prefix_in_order": kept_in_order,
            "eval_resumed_records": resumed["resumed"], "eval_resume_wall_s": round(again["wall_s"], 2),
            "eval_resumed_answers_equal_uninterrupted": same,
            "run_killed_after_lines": seen, "run_partial_is_prefix_of_full_output":  # same ids and answers, in order
                answers == full[:len(answers)] and len(answers) >= seen - 1}


if __name__ == "__main__":
    raise SystemExit(main())
