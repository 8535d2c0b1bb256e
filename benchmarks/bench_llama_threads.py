"""Benchmark: llama.cpp threads for the embedded model, old default against new, side by side.

llama-cpp-python's own default is half the CPUs for generation (it assumes two
hyperthreads per core), which on a 2-vCPU machine is one thread. medcompile now uses
every CPU the process may use (`medcompile.lm.llamacpp.default_threads`). This runs the
same real MedQA questions through both settings, alternating A-B / B-A per question so
drift in the machine's load hits both alike, for three call shapes: a direct
(constrained) answer, a 5-shot kNN direct answer (long prompt, one scored token) and a
chain of thought (generation-bound). It reports median latency per setting, the median
per-question ratio with its interquartile range, and whether the answers were identical.

    python benchmarks/bench_llama_threads.py            # 12 questions per shape
    python benchmarks/bench_llama_threads.py --quick    # 3 per shape (~1 min)

Writes benchmarks/results/llama_threads.{json,md} (`--quick`: llama_threads_quick.*).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, medqa_bank_and_dev, pct, save_json  # noqa: E402


def shapes(bank: Any) -> dict[str, Any]:
    from medcompile import Predict, Retrieve, SelfCoT
    from medcompile.program import Program

    return {
        "direct": Program(Predict(tune=False), name="direct"),
        "knn5_direct": Program(Predict(demos=Retrieve(k=5, strategy="knn", bank=bank, tune=False), tune=False),
                               name="knn5_direct"),
        "cot": Program(SelfCoT(cot=True, tune=False), name="cot"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12, help="questions per call shape")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    n = 3 if a.quick else a.n

    from medcompile.lm.llamacpp import default_threads
    from medcompile.lm.registry import make_lm

    bank, dev = medqa_bank_and_dev()
    new = default_threads()
    settings = {"old: 1 thread": 1, f"new: {new} threads": new}
    lms = {name: make_lm("local", cache=False, n_threads=t) for name, t in settings.items()}
    progs = shapes(bank)
    for p in progs.values():
        p.prepare()
    for lm in lms.values():  # load both models and warm them on a question no shape uses
        progs["direct"].run(dev[-1], lm)
    names = list(settings)
    out: dict[str, Any] = {"machine": machine(), "model": next(iter(lms.values())).model, "n": n,
                           "threads": settings, "shapes": {}}
    t0 = time.perf_counter()
    for s, (shape, prog) in enumerate(progs.items()):
        lat: dict[str, list[float]] = {k: [] for k in names}
        same = 0
        for i, q in enumerate(dev[s * n:(s + 1) * n]):
            order = names if i % 2 == 0 else names[::-1]
            answers = {}
            for k in order:
                r = prog.run(q, lms[k])
                lat[k].append(r.latency_s)
                answers[k] = r.prediction.answer
            same += len(set(answers.values())) == 1
        ratios = [o / w for o, w in zip(lat[names[0]], lat[names[1]])]
        row = {"median_s": {k: round(statistics.median(v), 3) for k, v in lat.items()},
               "speedup_median": round(statistics.median(ratios), 3),
               "speedup_iqr": [round(pct(ratios, 25), 3), round(pct(ratios, 75), 3)],
               "identical_answers": same}
        out["shapes"][shape] = row
        print(f"[{time.perf_counter() - t0:.0f}s] {shape}: {row}", flush=True)
    name = "llama_threads" + ("_quick" if a.quick else "")
    md = ["# llama.cpp threads on the embedded model: old default vs new", "",
          f"Command: `{' '.join(['python benchmarks/bench_llama_threads.py', *(argv if argv is not None else sys.argv[1:])])}`",
          f"Model {out['model']}, {n} MedQA dev questions per shape (different questions per shape), "
          f"settings alternated per question; load average at the end {out['machine'].get('loadavg_1_5_15')}.", "",
          f"| call shape | median s, {names[0]} | median s, {names[1]} | speedup (old/new per question): median [IQR] "
          "| identical answers |", "|---|---:|---:|---|---:|"]
    for shape, row in out["shapes"].items():
        md.append(f"| {shape} | {row['median_s'][names[0]]} | {row['median_s'][names[1]]} | "
                  f"{row['speedup_median']:.2f} [{row['speedup_iqr'][0]:.2f}, {row['speedup_iqr'][1]:.2f}] | "
                  f"{row['identical_answers']} of {n} |")
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    save_json(f"{name}.json", out)
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
