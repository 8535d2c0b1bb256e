"""Benchmark: medcompile eval throughput vs concurrency, as a fraction of the server's own maximum;
ensemble latency on a concurrent server; KV-prefix reuse on the embedded model.

A fake OpenAI-compatible server (benchmarks/fake_openai_server.py, a separate process:
fixed latency, fixed number of slots) stands in for a model server, so the figures are
fast and repeatable. The server's ceiling is measured directly next to every cell: the best
of raw concurrent HTTP requests with httpx (asyncio) and a raw httpx thread pool, 2x its
slots in flight. Then medcompile
evaluates a one-call program (zero_shot) with Program.run_many at concurrency
1, 2, 4, 8, 16 through the standard LM stack (make_lm('openai/fake', api_base=...,
mode='text'): direct OpenAI-compatible client + retries + concurrency limiter +
metering; no cache, so every question is a real HTTP call), in three settings:

  * default stack: make_lm's default max_concurrency (8 for remote models) stays in
    place, as a user who only passes --concurrency gets;
  * matched limiter: max_concurrency = the run_many concurrency;
  * litellm transport (the previous path, `transport="litellm"`), matched limiter.

Raw httpx from a thread pool of the same size separates the cost of Python threads from
medcompile's own. Per-call timings at concurrency 1 show where the time goes.

Ensemble latency: a second fake server with a fixed latency (100 ms, 16 slots); per-question
latency of a 5-shuffle ensemble vs a one-call program, questions one after another, with the
default limiter (calls of a question side by side) and with max_concurrency=1 (in order).

Prefix reuse on the embedded model (Gemma 3 270M in-process, one call at a time): per-question
latency of a 5-shuffle ensemble with 5 kNN exemplars vs one call with the same exemplars, on
different MedQA dev questions each (cold prefix for every question), medians.

Timings are measured side by side in one run; the ratios are what matter.

    python benchmarks/bench_concurrency.py [--quick] [--latency-ms 20] [--slots 8] [--questions 240]
    python benchmarks/bench_concurrency.py --llama 6   # also a few calls to a real llama_cpp.server

Writes benchmarks/results/concurrency.json and concurrency.png.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, free_port, machine, md_table, save_json, wait_http  # noqa: E402

import httpx  # noqa: E402

from medcompile import Predict, Program, Question  # noqa: E402

LEVELS = (1, 2, 4, 8, 16)
BODY = {"model": "fake", "prompt": "Question: ...\nAnswer:", "max_tokens": 8, "temperature": 0.0}


def questions(n: int) -> list[Question]:
    return [Question(id=f"q{i}", question=f"Synthetic question number {i}: which option is right?",
                     options={"A": "alpha", "B": "beta", "C": "gamma", "D": "delta"}, answer="B") for i in range(n)]


async def _raw_async(base: str, n: int, conc: int) -> float:
    sem = asyncio.Semaphore(conc)
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(timeout=60, limits=limits) as c:
        async def one() -> None:
            async with sem:
                r = await c.post(f"{base}/v1/completions", json=BODY)
                r.raise_for_status()
        await asyncio.gather(*[one() for _ in range(min(conc, 8))])  # warm connections
        t0 = time.perf_counter()
        await asyncio.gather(*[one() for _ in range(n)])
        return n / (time.perf_counter() - t0)


def raw_threads(base: str, n: int, conc: int) -> float:
    """Raw httpx from `conc` threads (one client each): the thread-pool ceiling without litellm."""
    import threading

    local = threading.local()

    def one(_i: int) -> None:
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = httpx.Client(timeout=60)
        c.post(f"{base}/v1/completions", json=BODY).raise_for_status()

    with ThreadPoolExecutor(max_workers=conc) as pool:
        list(pool.map(one, range(conc)))  # warm
        t0 = time.perf_counter()
        list(pool.map(one, range(n)))
        return n / (time.perf_counter() - t0)


def medcompile_qps(base: str, n: int, conc: int, limiter: int | None, transport: str = "auto") -> dict[str, Any]:
    from medcompile.lm.registry import make_lm

    kw: dict[str, Any] = {} if limiter is None else {"max_concurrency": limiter}
    lm = make_lm("openai/fake", api_base=f"{base}/v1", mode="text", cache=False,
                 api_key_env="MEDCOMPILE_BENCH_DUMMY_API_KEY", transport=transport, **kw)
    prog = Program(Predict(tune=False), name="zero_shot")
    prog.run_many(questions(max(4, conc)), lm, concurrency=conc)  # warm: imports, connection pools
    qs = questions(n)
    t0 = time.perf_counter()
    res = prog.run_many(qs, lm, concurrency=conc)
    dt = time.perf_counter() - t0
    ok = sum(r.prediction.answer == "B" for r in res)
    assert ok == n, f"only {ok}/{n} questions answered"
    lat = sorted(r.latency_s for r in res)
    return {"qps": n / dt, "n": n, "p50_question_latency_ms": 1000 * lat[len(lat) // 2],
            "p90_question_latency_ms": 1000 * lat[int(len(lat) * 0.9)]}


def per_call_diag(base: str, n: int = 40) -> dict[str, float]:
    """ms per sequential call at concurrency 1 (fake server latency included)."""
    import litellm

    from medcompile.lm.base import LMRequest
    from medcompile.lm.litellm_lm import LiteLLMLM

    hc = httpx.Client(timeout=60)
    direct = LiteLLMLM("openai/fake", mode="text", api_base=f"{base}/v1", api_key_env="MEDCOMPILE_BENCH_DUMMY_API_KEY")
    via_litellm = LiteLLMLM("openai/fake", mode="text", api_base=f"{base}/v1",
                            api_key_env="MEDCOMPILE_BENCH_DUMMY_API_KEY", transport="litellm")
    req = LMRequest(model="openai/fake", mode="text", prompt="hi", max_tokens=8)
    cases = {
        "httpx_shared_client": lambda: hc.post(f"{base}/v1/completions", json=BODY),
        "medcompile_direct_client": lambda: direct.complete(req),
        "medcompile_litellm_transport": lambda: via_litellm.complete(req),
        "litellm_text_completion": lambda: litellm.text_completion(
            model="openai/fake", prompt="hi", api_base=f"{base}/v1", api_key="x", max_tokens=8),
    }
    out = {}
    for name, fn in cases.items():
        fn()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        out[name] = round(1000 * (time.perf_counter() - t0) / n, 2)
    return out


def ensemble_latency(n: int, latency_ms: float = 100.0) -> dict[str, Any]:
    """Per-question latency, 5-shuffle ensemble vs one call, on a fixed-latency server."""
    from medcompile import Shuffle, Vote
    from medcompile.lm.registry import make_lm

    port = free_port()
    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fake_openai_server.py")), "--port",
                               str(port), "--latency-ms", str(latency_ms), "--max-concurrency", "16"])
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/v1/models", 30)
        one = Program(Predict(tune=False), name="one_call")
        ens = Program(Vote(Shuffle(Predict(tune=False), n=5, tune=False)), name="shuffle5")
        out: dict[str, Any] = {"server_latency_ms": latency_ms, "n": n}
        for limiter in (8, 1):
            lm = make_lm("openai/fake", api_base=f"{base}/v1", mode="text", cache=False,
                         api_key_env="MEDCOMPILE_BENCH_DUMMY_API_KEY", max_concurrency=limiter)
            one.run_many(questions(2), lm)  # warm
            lat_one, lat_ens = [], []
            for q in questions(n):  # interleaved, one question at a time
                lat_one.append(one.run(q, lm).latency_s)
                lat_ens.append(ens.run(q, lm).latency_s)
            row = {"one_call_p50_ms": round(1000 * statistics.median(lat_one), 1),
                   "ensemble_p50_ms": round(1000 * statistics.median(lat_ens), 1)}
            row["ratio"] = round(row["ensemble_p50_ms"] / row["one_call_p50_ms"], 3)
            out[f"max_concurrency_{limiter}"] = row
        return out
    finally:
        server.terminate()
        server.wait(timeout=10)


def prefix_reuse(n: int) -> dict[str, Any]:
    """Embedded model: per-question latency of a 5-shuffle ensemble (5 kNN exemplars) vs one call."""
    from medcompile import Exemplar, Retrieve, Shuffle, Vote
    from medcompile.bank import Bank
    from medcompile.data import load_dataset, split_named
    from medcompile.lm.registry import make_lm

    ds = load_dataset("medqa_us4")
    bank = Bank([Exemplar(q) for q in split_named(ds, "bank").questions], {"kind": "wordllama"})
    dev = split_named(ds, "dev").questions
    qs_one, qs_ens = dev[:n], dev[n:2 * n]  # different questions: no prefix left over from the other program

    def demos() -> Retrieve:
        return Retrieve(k=5, strategy="knn", bank=bank, tune=False)

    one = Program(Predict(demos=demos(), tune=False), name="one_call_knn5")
    ens = Program(Vote(Shuffle(Predict(demos=demos(), tune=False), n=5, tune=False)), name="shuffle5_knn5")
    lm = make_lm("local", cache=False)
    one.prepare()
    one.run(dev[2 * n], lm)  # load the model, warm
    lat_one, lat_ens = [], []
    for qa, qb in zip(qs_one, qs_ens):
        lat_one.append(one.run(qa, lm).latency_s)
        lat_ens.append(ens.run(qb, lm).latency_s)
    out = {"model": lm.model, "n": n, "calls_per_question": {"one": 1, "ensemble": 5},
           "one_call_p50_s": round(statistics.median(lat_one), 3),
           "ensemble_p50_s": round(statistics.median(lat_ens), 3)}
    out["ratio"] = round(out["ensemble_p50_s"] / out["one_call_p50_s"], 3)
    return out


def llama_check(n: int) -> dict[str, Any]:
    """A few calls to a real llama_cpp.server at concurrency 1 and 2 (it serves one at a time)."""
    from medcompile.lm.local_model import default_gguf_path
    from medcompile.lm.registry import make_lm

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(default_gguf_path()),
                             "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", "--verbose", "False"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/v1/models", 180)
        from medcompile.prompts.builder import PromptParts

        os.environ.setdefault("MEDCOMPILE_BENCH_DUMMY_API_KEY", "x")
        prog = Program(Predict(tune=False), name="zero_shot")
        pred = prog.root
        out: dict[str, Any] = {"n": n, "note": "raw requests send exactly the prompts medcompile builds"}
        for conc in (1, 2):
            # Same prompt shape for raw and medcompile, different questions per cell (no KV-cache reuse).
            qs_raw = [Question(id=f"r{conc}-{i}", question=f"Which organ pumps blood? (variant {conc}-{i}, raw)",
                               options={"A": "Heart", "B": "Lung"}, answer="A") for i in range(n + conc)]
            qs_mc = [Question(id=f"m{conc}-{i}", question=f"Which organ pumps blood? (variant {conc}-{i}, mc)",
                              options={"A": "Heart", "B": "Lung"}, answer="A") for i in range(n)]
            reqs = [prog.builder.request(PromptParts(pred.instruction, [], q, False), model="gemma", mode="text",
                                         temperature=0.0, max_tokens=pred.token_limit(), seed=0) for q in qs_raw]
            bodies = [{"prompt": r.prompt, "max_tokens": r.max_tokens, "temperature": 0.0, "stop": list(r.stop)}
                      for r in reqs]

            def one(b: dict) -> None:
                httpx.post(f"{base}/v1/completions", json=b, timeout=300).raise_for_status()
            with ThreadPoolExecutor(conc) as pool:
                list(pool.map(one, bodies[n:]))  # warm
                t0 = time.perf_counter()
                list(pool.map(one, bodies[:n]))
                out[f"raw_c{conc}_rps"] = round(n / (time.perf_counter() - t0), 3)
            lm = make_lm("openai/gemma", api_base=f"{base}/v1", mode="text", cache=False, max_concurrency=conc,
                         api_key_env="MEDCOMPILE_BENCH_DUMMY_API_KEY", timeout=300)
            t0 = time.perf_counter()
            prog.run_many(qs_mc, lm, concurrency=conc)
            out[f"medcompile_c{conc}_qps"] = round(n / (time.perf_counter() - t0), 3)
        out["fraction_c1"] = round(out["medcompile_c1_qps"] / out["raw_c1_rps"], 3)
        out["fraction_c2"] = round(out["medcompile_c2_qps"] / out["raw_c2_rps"], 3)
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer levels and questions (< 2 min)")
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--slots", type=int, default=8, help="fake server max concurrency")
    ap.add_argument("--questions", type=int, default=240, help="questions (= calls) per measurement")
    ap.add_argument("--repeats", type=int, default=2, help="best of N per cell (load on a shared box is noisy)")
    ap.add_argument("--ensemble-questions", type=int, default=20)
    ap.add_argument("--prefix-questions", type=int, default=20, help="embedded-model prefix row (0: skip)")
    ap.add_argument("--prefix-only", action="store_true",
                    help="only the embedded-model prefix row, added to the existing concurrency.json")
    ap.add_argument("--llama", type=int, default=0, help="also N calls against a real llama_cpp.server")
    args = ap.parse_args()
    if args.prefix_only:
        import json

        row = {**prefix_reuse(args.prefix_questions), "machine": machine()}
        path = RESULTS / "concurrency.json"  # read after the (slow) row: another run may have written it
        prev = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        prev["prefix_reuse_embedded"] = row
        print("embedded model, 5-shuffle ensemble vs one call (cold prefix):", prev["prefix_reuse_embedded"])
        save_json("concurrency.json", prev)
        return 0
    levels = (1, 4, 16) if args.quick else LEVELS
    if args.quick:
        args.questions, args.repeats = min(args.questions, 160), 1
        args.ensemble_questions, args.prefix_questions = min(args.ensemble_questions, 8), min(args.prefix_questions, 4)
    os.environ.setdefault("MEDCOMPILE_BENCH_DUMMY_API_KEY", "x")
    port = free_port()
    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fake_openai_server.py")), "--port",
                               str(port), "--latency-ms", str(args.latency_ms), "--max-concurrency", str(args.slots)])
    base = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {"machine": machine(), "config": vars(args), "levels": list(levels)}
    try:
        wait_http(f"{base}/v1/models", 30)
        theory = args.slots / (args.latency_ms / 1000)
        out["per_call_ms_c1"] = per_call_diag(base, 10 if args.quick else 40)
        print("per-call ms at concurrency 1:", out["per_call_ms_c1"], flush=True)
        rows, table = [], []
        for c in levels:
            # The server maximum is re-measured next to each cell (same minute, same machine load): the best
            # of raw async httpx and a raw httpx thread pool, each with 2x the server's slots in flight (on a
            # loaded 2-core box one asyncio loop is CPU-bound well below the server's capacity).
            cell_max = max(max(asyncio.run(_raw_async(base, args.questions * 2, 2 * args.slots)),
                               raw_threads(base, args.questions * 2, 2 * args.slots)) for _ in range(args.repeats))
            raw_t = max(raw_threads(base, args.questions, c) for _ in range(args.repeats))
            cell_max = max(cell_max, raw_t)  # the best any raw client pushed through in this cell

            def best(limiter: int | None, transport: str = "auto") -> dict[str, Any]:
                return max((medcompile_qps(base, args.questions, c, limiter, transport) for _ in range(args.repeats)),
                           key=lambda d: d["qps"])
            default, matched = best(None), best(c)
            via_litellm = best(c, "litellm") if (not args.quick or c == levels[-1]) else None
            row = {"concurrency": c, "ideal_rps": min(c, args.slots) / (args.latency_ms / 1000),
                   "server_max_rps_same_cell": round(cell_max, 1), "raw_threads_rps": round(raw_t, 1),
                   "medcompile_default_qps": round(default["qps"], 1),
                   "medcompile_matched_qps": round(matched["qps"], 1),
                   "medcompile_litellm_transport_qps": round(via_litellm["qps"], 1) if via_litellm else None,
                   "fraction_of_server_max_default": round(default["qps"] / cell_max, 3),
                   "fraction_of_server_max_matched": round(matched["qps"] / cell_max, 3),
                   "fraction_of_server_max_litellm": round(via_litellm["qps"] / cell_max, 3) if via_litellm else None,
                   "medcompile_vs_raw_threads": round(matched["qps"] / raw_t, 3),
                   "matched_latency_p50_ms": round(matched["p50_question_latency_ms"], 2),
                   "matched_latency_p90_ms": round(matched["p90_question_latency_ms"], 2),
                   "n": args.questions}
            rows.append(row)
            table.append([c, f"{row['ideal_rps']:.0f}", row["server_max_rps_same_cell"], row["raw_threads_rps"],
                          row["medcompile_default_qps"], row["medcompile_matched_qps"],
                          row["fraction_of_server_max_matched"], row["medcompile_litellm_transport_qps"] or "-",
                          row["fraction_of_server_max_litellm"] or "-"])
            print(f"c={c:>2}: server max {cell_max:6.1f} req/s | raw threads {raw_t:6.1f} | medcompile default "
                  f"{default['qps']:6.1f} q/s, limiter=c {matched['qps']:6.1f} q/s = "
                  f"{row['fraction_of_server_max_matched']:.0%} of server max"
                  + (f" | litellm transport {via_litellm['qps']:6.1f} q/s" if via_litellm else "")
                  + f" (n={args.questions})", flush=True)
        out["rows"] = rows
        out["server"] = {"latency_ms": args.latency_ms, "slots": args.slots, "theoretical_max_rps": theory,
                         "measured_max_rps": max(r["server_max_rps_same_cell"] for r in rows)}
    finally:
        server.terminate()
        server.wait(timeout=10)
    out["ensemble_latency"] = ensemble_latency(args.ensemble_questions)
    print("ensemble latency (5 shuffles vs one call, 100 ms server):", out["ensemble_latency"], flush=True)
    save_json("concurrency.json", out)  # the slow embedded-model row below adds to it
    if args.prefix_questions:
        out["prefix_reuse_embedded"] = prefix_reuse(args.prefix_questions)
        print("embedded model, 5-shuffle ensemble vs one call (cold prefix):", out["prefix_reuse_embedded"], flush=True)
    if args.llama:
        out["llama_cpp_server"] = llama_check(args.llama)
        print("llama_cpp.server:", out["llama_cpp_server"])
    save_json("concurrency.json", out)
    print()
    print(md_table(["concurrency", "ideal req/s", "server max (same cell)", "raw httpx threads",
                    "medcompile (default limiter 8)", "medcompile (limiter = c)", "of server max",
                    "litellm transport (before)", "of server max (litellm)"], table))
    plot(out)
    return 0


def plot(out: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = out["rows"]
    xs = [r["concurrency"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(xs, [r["ideal_rps"] for r in rows], ls=":", c="gray", label="ideal min(c, slots)/latency")
    ax.plot(xs, [r["server_max_rps_same_cell"] for r in rows], ls="--", c="red", lw=1,
            label="server max (raw async httpx, same cell)")
    ax.plot(xs, [r["raw_threads_rps"] for r in rows], marker="^", label="raw httpx, thread pool")
    ax.plot(xs, [r["medcompile_matched_qps"] for r in rows], marker="o", label="medcompile run_many (limiter = c)")
    ax.plot(xs, [r["medcompile_default_qps"] for r in rows], marker="s", label="medcompile run_many (default limiter 8)")
    lit = [(x, r["medcompile_litellm_transport_qps"]) for x, r in zip(xs, rows) if r["medcompile_litellm_transport_qps"]]
    if lit:
        ax.plot([a for a, _ in lit], [b for _, b in lit], marker="D", label="litellm transport (before)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrency")
    ax.set_ylabel(f"questions (= calls) per second, n={rows[0]['n']}")
    s = out["server"]
    ax.set_title(f"Eval throughput vs a fake server ({s['slots']} slots x {s['latency_ms']:g} ms)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "concurrency.png", dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
