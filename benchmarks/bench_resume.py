"""Cache and resume on the real embedded model (one command, figures saved to JSON).

A: a cold compile, uninterrupted.  B: the same compile on a fresh cache, SIGKILLed
part-way, then rerun to completion.  C: the same compile again on A's warm cache.
Shows: B's result is byte-identical to A's and B's rerun repeated no model call
already made (cache rows after the kill + live calls of the rerun = A's live calls);
C is byte-identical with zero live calls, and the warm/cold time ratio.

    python benchmarks/bench_resume.py [--kill-after 120]
    python benchmarks/bench_resume.py --quick   # zero_shot, dev 6: < 2 min here; resume_quick.json

--quick keeps the real model and every check but compiles the one-call zero_shot program
on 6 dev questions, and kills B once its cache holds half of A's live calls (a fixed time
would land before the model loads or after the compile ends on a machine this variable).
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
#: --quick: the same checks on a one-call program (6 model calls instead of 83).
QUICK_ARGS = ["optimize", "zero_shot", "--train", "medqa_us4", "--train-split", "bank", "--train-limit", "20",
              "--dev", "medqa_us4", "--dev-split", "dev", "--dev-limit", "6", "--lm", "local", "--budget", "30",
              "--trials", "3", "--instructions", "2", "--minibatch", "4", "--seed", "0"]


def run(args: list[str], out: Path, cache: Path, kill_after: float | None = None,
        kill_at_rows: int | None = None) -> dict:
    env = {**os.environ, "MEDCOMPILE_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "medcompile.cli.main", *args, "--out", str(out), "--quiet"]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if kill_after is not None or kill_at_rows is not None:
        return kill_midway(p, cache, t0, kill_after, kill_at_rows)
    _, err = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"compile failed: {err}")
    report = json.loads(out.with_name(out.stem + ".report.json").read_text())
    return {"seconds": round(time.perf_counter() - t0, 1), "live_calls": report["this_run"]["live_usage"]["live_calls"],
            "logical_calls": report["compile"]["budget"]["spent_calls"], "cache_rows": cache_rows(cache),
            "sha256": __import__("hashlib").sha256(out.read_bytes()).hexdigest()}


def kill_midway(p: subprocess.Popen, cache: Path, t0: float, kill_after: float | None,
                kill_at_rows: int | None) -> dict:
    """SIGKILL the compile after `kill_after` seconds or once the cache holds `kill_at_rows` replies."""
    while True:
        if p.poll() is not None:
            raise SystemExit("compile finished before the kill (full mode: use a smaller --kill-after)")
        elapsed = time.perf_counter() - t0
        if kill_after is not None and elapsed >= kill_after:
            break
        if kill_at_rows is not None and cache_rows(cache, check=False) >= kill_at_rows:
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGKILL)
    p.wait()
    return {"killed_after_s": round(time.perf_counter() - t0, 1), "cache_rows": cache_rows(cache)}


def cache_rows(cache: Path, check: bool = True) -> int:
    db = cache / "lm-cache.sqlite"
    if not db.exists():
        return 0
    con = sqlite3.connect(db, timeout=5)
    try:
        if check:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return con.execute("select count(*) from responses").fetchone()[0]
    except sqlite3.OperationalError:  # polled while the compile creates the table
        if check:
            raise
        return 0
    finally:
        con.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kill-after", type=float, default=120.0)
    ap.add_argument("--work", default="/tmp/medcompile-bench-resume")
    ap.add_argument("--quick", action="store_true",
                    help="zero_shot on 6 dev questions, killed at half its calls (< 2 min); writes resume_quick.json")
    a = ap.parse_args()
    args = QUICK_ARGS if a.quick else ARGS
    work = Path(a.work)
    t0 = time.perf_counter()
    subprocess.run(["rm", "-rf", str(work)], check=True)
    A = run(args, work / "a" / "mp.json", work / "cache-a")
    if a.quick:
        B_killed = run(args, work / "b" / "mp.json", work / "cache-b", kill_at_rows=max(1, A["live_calls"] // 2))
    else:
        B_killed = run(args, work / "b" / "mp.json", work / "cache-b", kill_after=a.kill_after)
    B = run(args, work / "b" / "mp.json", work / "cache-b")
    C = run(args, work / "c" / "mp.json", work / "cache-a")
    res = {
        "quick": a.quick, "n_dev": int(args[args.index("--dev-limit") + 1]),
        "budget": int(args[args.index("--budget") + 1]), "model": "local/gemma3-270m-q4_k_m",
        "command": "medcompile " + " ".join(args),
        "A_cold": A, "B_killed": B_killed, "B_resumed": B, "C_warm": C,
        "B_identical_to_A": B["sha256"] == A["sha256"], "C_identical_to_A": C["sha256"] == A["sha256"],
        "B_repeated_calls": B_killed["cache_rows"] + B["live_calls"] - A["live_calls"],
        "warm_over_cold_time": round(C["seconds"] / A["seconds"], 3),
        "benchmark_wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(res, indent=1))
    out = REPO / "benchmarks" / "results" / ("resume_quick.json" if a.quick else "resume.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
