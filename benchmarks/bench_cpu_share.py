"""Benchmark: two processes generating with the embedded model at once, before and after
CPU sharing (`medcompile.lm.cpu_share`).

Before, every process running a local model took a thread per CPU, so two of them on a
2-CPU machine ran four spinning ggml threads on two cores. Now each takes its fair share
of the CPUs, re-checked before every call. This starts worker processes that load the
model, wait at a common start line, then write the same chains of thought (greedy,
distinct MedQA questions), and measures, in rotated order per round:

- alone: one worker, all CPUs (the reference);
- before: two workers, each with a thread per CPU ($MEDCOMPILE_LLAMA_THREADS=cpus);
- now: two workers with the default, sharing the CPUs (a private share directory).

It reports the wall time until every worker finished, tokens per second summed over the
workers, that rate as a ratio to the alone rate of the same round, and whether every
worker's replies equal the alone worker's (they should: threads change no bits).

    python benchmarks/bench_cpu_share.py            # 2 rounds, 6 CoTs of 96 tokens each
    python benchmarks/bench_cpu_share.py --quick    # 1 round, 2 CoTs of 32 tokens

Run it on an otherwise idle machine: it measures contention, so other load distorts it.
Writes benchmarks/results/cpu_share.{json,md} (`--quick`: cpu_share_quick.*).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, md_table, save_json  # noqa: E402

WORKER_TIMEOUT_S = 900


def worker(start_file: Path, n: int, tokens: int) -> None:
    """Load, warm up, wait for the start line, answer, print one JSON line."""
    from medcompile.data import load_dataset, split_named
    from medcompile.lm.base import LMRequest
    from medcompile.lm.llamacpp import LlamaCppLM
    from medcompile.lm.local_model import DEFAULT_LOCAL_MODEL_ID, default_gguf_path

    dev = split_named(load_dataset("medqa_us4"), "dev").questions
    lm = LlamaCppLM(default_gguf_path(), n_ctx=1024, model_name=DEFAULT_LOCAL_MODEL_ID)
    lm.complete(LMRequest(model=lm.model, mode="text", prompt="Question: warm up\nAnswer:", max_tokens=2))
    print("ready", flush=True)
    while not start_file.exists():
        time.sleep(0.01)
    texts, toks, threads, t0 = [], 0, set(), time.perf_counter()
    for ex in dev[:n]:
        opts = "\n".join(f"{k}) {v}" for k, v in ex.options.items())
        prompt = f"Question: {ex.question}\n{opts}\nLet's think step by step."
        r = lm.complete(LMRequest(model=lm.model, mode="text", prompt=prompt, max_tokens=tokens,
                                  temperature=0.0, stop=("\nQuestion:",)))
        texts.append(r.text)
        toks += r.completion_tokens
        threads.add(lm.threads)
    print(json.dumps({"seconds": time.perf_counter() - t0, "tokens": toks, "texts": texts,
                      "threads": sorted(threads)}), flush=True)


def run_config(workers: int, env_extra: dict[str, str], n: int, tokens: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        start = Path(tmp) / "start"
        env = {**os.environ, "MEDCOMPILE_CPU_SHARE_DIR": str(Path(tmp) / "share"), **env_extra}
        if "MEDCOMPILE_LLAMA_THREADS" not in env_extra:
            env.pop("MEDCOMPILE_LLAMA_THREADS", None)
        procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(start), str(n), str(tokens)],
                                  stdout=subprocess.PIPE, text=True, env=env) for _ in range(workers)]
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        t0 = time.perf_counter()
        start.touch()
        outs: list[dict[str, Any]] = []
        failed = {"seconds": None, "tokens": 0, "texts": [], "threads": []}
        for p in procs:
            try:
                text, _ = p.communicate(timeout=max(1.0, WORKER_TIMEOUT_S - (time.perf_counter() - t0)))
                lines = text.strip().splitlines()
                outs.append(json.loads(lines[-1]) if p.returncode == 0 and lines else failed)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                outs.append(failed)
        wall = time.perf_counter() - t0
    finished = all(o["seconds"] is not None for o in outs)
    tokens_total = sum(o["tokens"] for o in outs)
    return {"workers": workers, "wall_s": round(wall, 2), "finished": finished,
            "tokens": tokens_total, "tokens_per_s": round(tokens_total / wall, 2) if finished else None,
            "threads_per_worker": [o["threads"] for o in outs], "texts": [o["texts"] for o in outs]}


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args(argv)
    rounds, n, tokens = (1, 2, 32) if a.quick else (a.rounds, 6, 96)
    from medcompile.lm.cpu_share import usable_cpus

    cpus = usable_cpus()
    configs = {"alone": (1, {}), "before: two, a thread per CPU each": (2, {"MEDCOMPILE_LLAMA_THREADS": str(cpus)}),
               "now: two, sharing the CPUs": (2, {})}
    names = list(configs)
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            w, env = configs[name]
            res = run_config(w, env, n, tokens)
            results[name].append(res)
            print(f"round {r + 1} {name}: wall {res['wall_s']} s, {res['tokens_per_s']} tok/s, "
                  f"threads {res['threads_per_worker']}", flush=True)
    rows, summary = [], {}
    for name in names:
        ratios = [x["tokens_per_s"] / al["tokens_per_s"] if x["tokens_per_s"] else 0.0
                  for x, al in zip(results[name], results["alone"])]
        same = all(t == results["alone"][0]["texts"][0] for x in results[name] for t in x["texts"])
        summary[name] = {"median_wall_s": statistics.median(x["wall_s"] for x in results[name]),
                         "median_tokens_per_s_vs_alone": round(statistics.median(ratios), 3),
                         "ratios": [round(x, 3) for x in ratios],
                         "all_finished": all(x["finished"] for x in results[name]),
                         "replies_equal_alone": same}
        s = summary[name]
        rows.append([name, results[name][0]["workers"], s["median_wall_s"],
                     f"{s['median_tokens_per_s_vs_alone']:.2f} ({', '.join(f'{x:.2f}' for x in s['ratios'])})",
                     "yes" if s["all_finished"] else f"no (> {WORKER_TIMEOUT_S} s)",
                     "yes" if s["replies_equal_alone"] else "NO"])
    table = md_table(["setting", "processes", "median wall s", "tokens/s summed, vs alone (per round)",
                      "finished", "replies equal alone's"], rows)
    print(table)
    stem = "cpu_share_quick" if a.quick else "cpu_share"
    for res in results.values():
        for x in res:
            x.pop("texts")
    save_json(f"{stem}.json", {"machine": machine(), "cpus": cpus, "rounds": rounds, "cots_per_worker": n,
                     "max_tokens": tokens, "summary": summary, "runs": results})
    (RESULTS / f"{stem}.md").write_text(
        f"# Two processes with the embedded model at once, {cpus} CPUs\n\n"
        f"{n} greedy chains of thought of up to {tokens} tokens per process, {rounds} round(s), "
        f"configurations in rotated order. `python benchmarks/bench_cpu_share.py"
        f"{' --quick' if a.quick else ''}`\n\n{table}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
