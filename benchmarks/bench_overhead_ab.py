"""A/B: framework overhead per question of two medcompile source trees, side by side in one run.

On a shared machine the absolute milliseconds of bench_overhead.py move with other jobs'
load, so "not slower than before" is checked here by alternating fresh processes of the
old tree (`--ref DIR`, e.g. `git archive <commit> | tar -x -C DIR`) and of this repository,
same program, same bank, same questions, and comparing their medians (wall and CPU time).

    python benchmarks/bench_overhead_ab.py --ref /tmp/old [--sizes 1000,10000] [--rounds 2] [--queries 100]

Writes benchmarks/results/overhead_ab.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, save_json  # noqa: E402

CHILD = r'''
import json, random, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from medcompile import Exemplar, Program, Question, Retrieve, SelfCoT, Shuffle, Vote
from medcompile.bank import Bank
from medcompile.embed import make_embedder
from medcompile.lm.base import LMResponse
from medcompile.lm.scripted import ScriptedLM
sys.path.insert(0, sys.argv[2])
from bench_overhead import synth_question, WORDS, ANSWER_TEXT
n, nq = int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(0)
ex = [Exemplar(synth_question(rng, i), rationale=" ".join(rng.choice(WORDS) for _ in range(40))) for i in range(n)]
v = np.load(sys.argv[5])[:n]
emb = make_embedder("wordllama")
bank = Bank(ex, emb.settings(), embeddings=v)
prog = Program(Vote(Shuffle(SelfCoT(demos=Retrieve(k=5, strategy="knn", bank=bank, tune=False), tune=False),
                            n=5, tune=False)), name="ab")
prog.prepare()
resp = LMResponse(text=ANSWER_TEXT)
lm = ScriptedLM(lambda _r: resp, model="scripted-zero-latency")
qrng = random.Random(12345)
qs = [synth_question(qrng, i, prefix="q") for i in range(nq)]
wall, cpu = [], []
for q in qs[:10]:
    prog.run(q, lm)
for q in qs:
    getattr(bank, "_memo", {}).clear()
    c0, t0 = time.process_time(), time.perf_counter()
    r = prog.run(q, lm)
    wall.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
    assert r.prediction.answer is not None
print(json.dumps({"wall_ms": 1000 * sorted(wall)[len(wall) // 2], "cpu_ms": 1000 * sorted(cpu)[len(cpu) // 2]}))
'''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", required=True, help="the other source tree (its medcompile package is imported)")
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="1k bank, one round of 30 questions (< 2 min); "
                    "writes overhead_ab_quick.json")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.rounds, args.queries = "1000", 1, 30
    import numpy as np

    from bench_overhead import bank_vectors

    sizes = [int(s) for s in args.sizes.split(",")]
    vec_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"ab_vectors_{max(sizes)}.npy"
    np.save(vec_file, bank_vectors(max(sizes))[0])
    trees = {"ref": str(Path(args.ref).resolve()), "this": str(REPO)}
    out: dict[str, Any] = {"machine": machine(), "config": vars(args), "rows": []}
    for n in sizes:
        got: dict[str, list[dict]] = {"ref": [], "this": []}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                res = subprocess.run([sys.executable, "-c", CHILD, tree, str(REPO / "benchmarks"), str(n),
                                      str(args.queries), str(vec_file)], capture_output=True, text=True,
                                     env={**os.environ, "PYTHONPATH": tree}, cwd=tree)
                if res.returncode != 0:
                    raise RuntimeError(f"{name} failed: {res.stderr[-2000:]}")
                got[name].append(json.loads(res.stdout.strip().splitlines()[-1]))
        row: dict[str, Any] = {"bank": n, "queries": args.queries, "rounds": args.rounds}
        for name in trees:
            for k in ("wall_ms", "cpu_ms"):
                row[f"{name}_{k}"] = round(statistics.median(x[k] for x in got[name]), 3)
        row["this_over_ref_wall"] = round(row["this_wall_ms"] / row["ref_wall_ms"], 3)
        row["this_over_ref_cpu"] = round(row["this_cpu_ms"] / row["ref_cpu_ms"], 3)
        out["rows"].append(row)
        print(row, flush=True)
    save_json("overhead_ab_quick.json" if args.quick else "overhead_ab.json", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
