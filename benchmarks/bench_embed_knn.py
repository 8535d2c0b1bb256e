"""Benchmark: WordLlama embedding throughput on real MedQA text, and kNN latency flat vs HNSW.

Answers two sizing questions for dynamic few-shot: how long does embedding a
question bank take on a CPU, and from which bank size does an approximate index
pay off. Prints a table and writes benchmarks/results/embed_knn.json.

    python benchmarks/bench_embed_knn.py [--sizes 1000,10000,100000] [--queries 200]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medcompile.embed import KNNIndex, make_embedder  # noqa: E402


def data_dir() -> Path:
    """MEDCOMPILE_DATA_DIR, else the shared data folder beside the repo."""
    return Path(os.environ.get("MEDCOMPILE_DATA_DIR") or REPO.parent / "shared" / "data")


def medqa_texts(n: int) -> list[str]:
    """n real MedQA texts: every question, then question + options for as many as needed.

    The US test set has 1,273 questions; the option-augmented variants are also real
    MedQA text and are what a program embeds when it keys on question and options.
    """
    path = data_dir() / "medqa_us4" / "test.jsonl"
    if not path.is_file():
        raise SystemExit(f"MedQA data not found at {path}; set MEDCOMPILE_DATA_DIR")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [r["question"] for r in rows]
    with_options = [r["question"] + "\n" + "\n".join(f"{k}. {v}" for k, v in r["options"].items()) for r in rows]
    return (texts + with_options)[:n]


def bench_wordllama(n_texts: int, repeats: int) -> dict:
    from medcompile.embed.base import clear_model_cache
    from medcompile.embed.registry import clear_embedder_cache

    clear_model_cache()
    clear_embedder_cache()
    t0 = time.perf_counter()
    emb = make_embedder("wordllama")
    load_s = time.perf_counter() - t0
    texts = medqa_texts(n_texts)
    emb.embed(texts[:64])  # warm-up
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        m = emb.embed(texts)
        runs.append(time.perf_counter() - t)
    chars = sum(len(t) for t in texts)
    best = min(runs)
    return {"embedder": emb.id, "n_texts": len(texts), "mean_chars": round(chars / len(texts), 1),
            "load_s": round(load_s, 3), "embed_s_runs": [round(r, 3) for r in runs],
            "texts_per_s": round(len(texts) / best, 1),
            "median_texts_per_s": round(len(texts) / statistics.median(runs), 1),
            "shape": list(m.shape)}


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    m = rng.standard_normal((n, dim), dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def measure(index: KNNIndex, bank: np.ndarray, queries: np.ndarray, k: int,
            exact: list[list[int]] | None) -> dict:
    """Single-query latency (what serving sees), batched cost, leave-one-out cost, recall vs flat."""
    n_queries = len(queries)
    index.search(queries[:5], k)  # warm-up
    single = []
    for q in queries:
        t = time.perf_counter()
        index.search(q, k)
        single.append((time.perf_counter() - t) * 1e3)
    t = time.perf_counter()
    got = index.search(queries, k)
    batched_ms = (time.perf_counter() - t) * 1e3 / n_queries
    t = time.perf_counter()
    index.search(bank[:n_queries], k, exclude=[{i} for i in range(n_queries)])
    loo_ms = (time.perf_counter() - t) * 1e3 / n_queries
    recall = float(np.mean([len(set(g) & set(e)) / k for g, e in zip(got, exact or got)]))
    single.sort()
    return {"single_query_ms_median": round(statistics.median(single), 4),
            "single_query_ms_p95": round(single[int(0.95 * (len(single) - 1))], 4),
            "batched_ms_per_query": round(batched_ms, 4),
            "leave_one_out_ms_per_query": round(loo_ms, 4),
            f"recall_at_{k}_vs_flat": round(recall, 4), "_got": got}


def bench_knn(sizes: list[int], n_queries: int, k: int, dim: int = 256) -> list[dict]:
    rng = np.random.default_rng(0)
    queries = unit(rng, n_queries, dim)
    rows = []
    for n in sizes:
        bank = unit(rng, n, dim)
        exact: list[list[int]] | None = None
        for kind in ("flat", "hnsw"):
            t = time.perf_counter()
            index = KNNIndex(bank, kind=kind)
            build_s = time.perf_counter() - t
            # The HNSW graph is built once and searched at two efSearch settings (speed vs recall).
            for ef in ((None,) if kind == "flat" else (128, 512)):
                if ef is not None:
                    index.ef_search = ef
                row = measure(index, bank, queries, k, exact)
                if kind == "flat":
                    exact = row.pop("_got")
                else:
                    row.pop("_got")
                rows.append({"n": n, "dim": dim, "k": k, "kind": kind, "settings": index.settings(),
                             "build_s": round(build_s, 3), **row})
                label = kind if ef is None else f"{kind}/ef{ef}"
                print(f"  n={n:>7} {label:>10}: build {build_s:7.2f}s"
                      f"  single {row['single_query_ms_median']:8.3f} ms"
                      f"  batched {row['batched_ms_per_query']:8.3f} ms/q"
                      f"  recall@{k} {row[f'recall_at_{k}_vs_flat']:.3f}",
                      flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None, help="default results/embed_knn.json (--quick: embed_knn_quick.json)")
    ap.add_argument("--quick", action="store_true", help="300 texts, 1k/10k banks, 50 queries, one repeat (< 2 min)")
    args = ap.parse_args()
    if args.quick:
        args.texts, args.repeats, args.sizes, args.queries = 300, 1, "1000,10000", 50
    if args.out is None:
        args.out = REPO / "benchmarks" / "results" / ("embed_knn_quick.json" if args.quick else "embed_knn.json")

    import faiss
    import wordllama

    load_before = os.getloadavg()
    print("wordllama embedding throughput:", flush=True)
    wl = bench_wordllama(args.texts, args.repeats)
    print(f"  {wl['embedder']}: {wl['n_texts']} texts (mean {wl['mean_chars']} chars) -> "
          f"{wl['texts_per_s']} texts/s best, {wl['median_texts_per_s']} median; cold load {wl['load_s']} s")
    print(f"faiss kNN latency (k={args.k}, {args.queries} queries):", flush=True)
    knn = bench_knn([int(s) for s in args.sizes.split(",")], args.queries, args.k)
    result = {
        "benchmark": "embed_knn",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "faiss": faiss.__version__, "faiss_threads": faiss.omp_get_max_threads(),
                    "numpy": np.__version__, "wordllama": wordllama.__version__,
                    # Other work on the machine skews timings; the 1-min load average tells how much.
                    "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]},
        "wordllama": wl,
        "knn": knn,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
