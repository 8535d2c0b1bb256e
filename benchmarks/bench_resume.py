"""Cache and resume on the real embedded model (one command, figures saved to JSON).

A: a cold compile, uninterrupted.  B: the same compile on a fresh cache, SIGKILLed
part-way, then rerun to completion.  C: the same compile again on A's warm cache.
Shows: B's result is byte-identical to A's and B's rerun repeated no model call
already made (cache rows after the kill + live calls of the rerun = A's live calls);
C is byte-identical with zero live calls, and the warm/cold time ratio.

    python benchmarks/bench_resume.py [--kill-after 120]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARGS = ["optimize", "medprompt", "--train", "medqa_us4", "--train-split", "bank", "--train-limit", "60",
        "--dev", "medqa_us4", "--dev-split", "dev", "--dev-limit", "8", "--lm", "local", "--budget", "150",
        "--trials", "5", "--rationales", "4", "--instructions", "1", "--minibatch", "4", "--seed", "0"]


def run(out: Path, cache: Path, kill_after: float | None = None) -> dict:
    env = {**os.environ, "MEDCOMPILE_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "medcompile.cli.main", *ARGS, "--out", str(out), "--quiet"]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if kill_after is not None:
        try:
            p.wait(timeout=kill_after)
            raise SystemExit("compile finished before the kill; use a smaller --kill-after")
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait()
            return {"killed_after_s": kill_after, "cache_rows": cache_rows(cache)}
    _, err = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"compile failed: {err}")
    report = json.loads(out.with_name(out.stem + ".report.json").read_text())
    return {"seconds": round(time.perf_counter() - t0, 1), "live_calls": report["this_run"]["live_usage"]["live_calls"],
            "logical_calls": report["compile"]["budget"]["spent_calls"], "cache_rows": cache_rows(cache),
            "sha256": __import__("hashlib").sha256(out.read_bytes()).hexdigest()}


def cache_rows(cache: Path) -> int:
    db = cache / "lm-cache.sqlite"
    if not db.exists():
        return 0
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return con.execute("select count(*) from responses").fetchone()[0]
    finally:
        con.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kill-after", type=float, default=120.0)
    ap.add_argument("--work", default="/tmp/medcompile-bench-resume")
    a = ap.parse_args()
    work = Path(a.work)
    subprocess.run(["rm", "-rf", str(work)], check=True)
    A = run(work / "a" / "mp.json", work / "cache-a")
    B_killed = run(work / "b" / "mp.json", work / "cache-b", kill_after=a.kill_after)
    B = run(work / "b" / "mp.json", work / "cache-b")
    C = run(work / "c" / "mp.json", work / "cache-a")
    res = {
        "n_dev": 8, "budget": 150, "model": "local/gemma3-270m-q4_k_m", "command": "medcompile " + " ".join(ARGS),
        "A_cold": A, "B_killed": B_killed, "B_resumed": B, "C_warm": C,
        "B_identical_to_A": B["sha256"] == A["sha256"], "C_identical_to_A": C["sha256"] == A["sha256"],
        "B_repeated_calls": B_killed["cache_rows"] + B["live_calls"] - A["live_calls"],
        "warm_over_cold_time": round(C["seconds"] / A["seconds"], 3),
    }
    print(json.dumps(res, indent=1))
    out = REPO / "benchmarks" / "results" / "resume.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
