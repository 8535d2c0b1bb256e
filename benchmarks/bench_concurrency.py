"""Benchmark: medcompile eval throughput vs concurrency, as a fraction of the server's own maximum.

A fake OpenAI-compatible server (benchmarks/fake_openai_server.py, a separate process:
fixed latency, fixed number of slots) stands in for a model server, so the figures are
fast and repeatable. First the server's ceiling is measured directly: raw concurrent
HTTP requests with httpx (asyncio, up to 4x its slots in flight). Then medcompile
evaluates a one-call program (zero_shot) with Program.run_many at concurrency
1, 2, 4, 8, 16 through the standard LM stack (make_lm('openai/fake', api_base=...,
mode='text'): litellm + retries + concurrency limiter + metering; no cache, so every
question is a real HTTP call), in two settings:

  * default stack: make_lm's default max_concurrency (8 for remote models) stays in
    place, as a user who only passes --concurrency gets;
  * matched limiter: max_concurrency = the run_many concurrency.

The same measurement runs with raw httpx from a thread pool of the same size, which
separates the cost of Python threads from litellm's and medcompile's own, and once more
with one shared OpenAI client handed to litellm (make_lm(..., extra={"client": ...})):
litellm.text_completion otherwise builds a new OpenAI/httpx client, SSL context
included, on every call. Per-call timings at concurrency 1 show where that time goes.
Timings are measured side by side in one run; the ratio is what matters.

    python benchmarks/bench_concurrency.py [--latency-ms 20] [--slots 8] [--questions 240]
    python benchmarks/bench_concurrency.py --llama 6   # also a few calls to a real llama_cpp.server

Writes benchmarks/results/concurrency.json and concurrency.png.
"""
from __future__ import annotations

import argparse
import asyncio
import os
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


def medcompile_qps(base: str, n: int, conc: int, limiter: int | None, shared_client: bool = False) -> dict[str, Any]:
    from medcompile.lm.registry import make_lm

    os.environ.setdefault("MEDCOMPILE_BENCH_DUMMY_API_KEY", "x")
    kw: dict[str, Any] = {} if limiter is None else {"max_concurrency": limiter}
    if shared_client:  # the fix, without touching core: one OpenAI client for every call
        import openai

        kw["extra"] = {"client": openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)}
    lm = make_lm("openai/fake", api_base=f"{base}/v1", mode="text", cache=False,
                 api_key_env="MEDCOMPILE_BENCH_DUMMY_API_KEY", **kw)
    prog = Program(Predict(tune=False), name="zero_shot")
    prog.run_many(questions(max(4, conc)), lm, concurrency=conc)  # warm: imports, connection pools
    qs = questions(n)
    t0 = time.perf_counter()
    res = prog.run_many(qs, lm, concurrency=conc)
    dt = time.perf_counter() - t0
    ok = sum(r.prediction.answer == "B" for r in res)
    assert ok == n, f"only {ok}/{n} questions answered"
    lat = [r.latency_s for r in res]
    lat.sort()
    return {"qps": n / dt, "n": n, "p50_question_latency_ms": 1000 * lat[len(lat) // 2],
            "p90_question_latency_ms": 1000 * lat[int(len(lat) * 0.9)]}


def litellm_diag(base: str, n: int = 40) -> dict[str, float]:
    """ms per sequential call at concurrency 1: where the per-call client time goes."""
    import litellm
    import openai

    oc = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)
    hc = httpx.Client(timeout=60)
    msgs = [{"role": "user", "content": "hi"}]
    cases = {
        "httpx_shared_client": lambda: hc.post(f"{base}/v1/completions", json=BODY),
        "openai_shared_client": lambda: oc.completions.create(model="fake", prompt="hi", max_tokens=8),
        "litellm_text_completion": lambda: litellm.text_completion(
            model="openai/fake", prompt="hi", api_base=f"{base}/v1", api_key="x", max_tokens=8),
        "litellm_text_completion_shared_client": lambda: litellm.text_completion(
            model="openai/fake", prompt="hi", api_base=f"{base}/v1", api_key="x", max_tokens=8, client=oc),
        "litellm_chat_completion": lambda: litellm.completion(
            model="openai/fake", messages=msgs, api_base=f"{base}/v1", api_key="x", max_tokens=8),
    }
    out = {}
    for name, fn in cases.items():
        fn()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        out[name] = round(1000 * (time.perf_counter() - t0) / n, 2)
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
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--slots", type=int, default=8, help="fake server max concurrency")
    ap.add_argument("--questions", type=int, default=240, help="questions (= calls) per measurement")
    ap.add_argument("--repeats", type=int, default=2, help="best of N per cell (load on a shared box is noisy)")
    ap.add_argument("--llama", type=int, default=0, help="also N calls against a real llama_cpp.server")
    args = ap.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fake_openai_server.py")), "--port",
                               str(port), "--latency-ms", str(args.latency_ms), "--max-concurrency", str(args.slots)])
    base = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {"machine": machine(), "config": vars(args), "levels": list(LEVELS)}
    try:
        wait_http(f"{base}/v1/models", 30)
        theory = args.slots / (args.latency_ms / 1000)
        raw_async = {c: max(asyncio.run(_raw_async(base, args.questions * 2, c)) for _ in range(args.repeats))
                     for c in sorted(set(LEVELS) | {args.slots, 2 * args.slots, 4 * args.slots})}
        server_max = max(raw_async.values())
        out["server"] = {"latency_ms": args.latency_ms, "slots": args.slots, "theoretical_max_rps": theory,
                         "measured_max_rps": round(server_max, 1),
                         "raw_async_rps_by_concurrency": {c: round(v, 1) for c, v in raw_async.items()}}
        print(f"fake server: {args.slots} slots x {args.latency_ms:g} ms -> theoretical {theory:.0f} req/s, "
              f"measured max {server_max:.0f} req/s (raw async httpx)", flush=True)
        out["per_call_ms_c1"] = litellm_diag(base)
        print("per-call ms at concurrency 1:", out["per_call_ms_c1"], flush=True)
        rows = []
        table = []
        for c in LEVELS:
            raw_t = max(raw_threads(base, args.questions, c) for _ in range(args.repeats))
            default = max((medcompile_qps(base, args.questions, c, None) for _ in range(args.repeats)),
                          key=lambda d: d["qps"])
            matched = max((medcompile_qps(base, args.questions, c, c) for _ in range(args.repeats)),
                          key=lambda d: d["qps"])
            shared = max((medcompile_qps(base, args.questions, c, c, shared_client=True)
                          for _ in range(args.repeats)), key=lambda d: d["qps"])
            row = {"concurrency": c, "ideal_rps": min(c, args.slots) / (args.latency_ms / 1000),
                   "raw_async_rps": round(raw_async.get(c, float("nan")), 1), "raw_threads_rps": round(raw_t, 1),
                   "medcompile_default_qps": round(default["qps"], 1),
                   "medcompile_matched_qps": round(matched["qps"], 1),
                   "medcompile_shared_client_qps": round(shared["qps"], 1),
                   "fraction_of_server_max_shared_client": round(shared["qps"] / server_max, 3),
                   "fraction_of_server_max_default": round(default["qps"] / server_max, 3),
                   "fraction_of_server_max_matched": round(matched["qps"] / server_max, 3),
                   "fraction_of_ideal_at_this_concurrency": round(matched["qps"] / (min(c, args.slots) / (args.latency_ms / 1000)), 3),
                   "medcompile_vs_raw_threads": round(matched["qps"] / raw_t, 3),
                   "matched_latency_p50_ms": round(matched["p50_question_latency_ms"], 2),
                   "matched_latency_p90_ms": round(matched["p90_question_latency_ms"], 2),
                   "n": args.questions}
            rows.append(row)
            table.append([c, f"{row['ideal_rps']:.0f}", row["raw_threads_rps"], row["medcompile_default_qps"],
                          row["medcompile_matched_qps"], row["fraction_of_server_max_matched"],
                          row["medcompile_shared_client_qps"], row["fraction_of_server_max_shared_client"],
                          row["fraction_of_ideal_at_this_concurrency"], row["medcompile_vs_raw_threads"]])
            print(f"c={c:>2}: raw threads {raw_t:6.1f} req/s | medcompile default stack {default['qps']:6.1f} q/s, "
                  f"matched limiter {matched['qps']:6.1f} q/s = {row['fraction_of_server_max_matched']:.0%} of server max "
                  f"; with a shared OpenAI client {shared['qps']:6.1f} q/s (n={args.questions})", flush=True)
        out["rows"] = rows
        if args.llama:
            out["llama_cpp_server"] = llama_check(args.llama)
            print("llama_cpp.server:", out["llama_cpp_server"])
    finally:
        server.terminate()
        server.wait(timeout=10)
    save_json("concurrency.json", out)
    print()
    print(md_table(["concurrency", "ideal req/s", "raw httpx threads", "medcompile (default stack)",
                    "medcompile (limiter = c)", "of server max", "medcompile + shared client (prototype)",
                    "of server max (shared)", "of ideal at c", "vs raw threads"], table))
    print("\nper-call ms at concurrency 1 (fake server latency included):", out["per_call_ms_c1"])
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
    ax.axhline(out["server"]["measured_max_rps"], ls="--", c="red", lw=1, label="server max (raw async httpx)")
    ax.plot(xs, [r["raw_threads_rps"] for r in rows], marker="^", label="raw httpx, thread pool")
    ax.plot(xs, [r["medcompile_matched_qps"] for r in rows], marker="o", label="medcompile run_many (limiter = c)")
    ax.plot(xs, [r["medcompile_default_qps"] for r in rows], marker="s", label="medcompile run_many (default limiter 8)")
    ax.plot(xs, [r["medcompile_shared_client_qps"] for r in rows], marker="D",
            label="medcompile + shared OpenAI client (prototype via extra=)")
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
