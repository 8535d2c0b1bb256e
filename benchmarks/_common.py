"""Shared helpers for the benchmark scripts: paths, machine description, JSON output.

Not a benchmark itself. Every script writes to benchmarks/results/ and records the
machine it ran on (cores, load average, versions), since every figure here is a
ratio or an absolute time measured on whatever else the machine was doing.
"""
from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any, Iterable, Sequence

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        info["loadavg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    for mod in ("medcompile", "dspy", "litellm", "llama_cpp", "numpy", "faiss", "optuna"):
        try:
            m = __import__(mod)
            info[f"{mod}_version"] = getattr(m, "__version__", "?")
        except Exception:  # noqa: BLE001 - optional
            pass
    return info


def save_json(name: str, data: Any) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def pct(values: Sequence[float], p: float) -> float:
    """Linear-interpolation percentile (numpy's default), p in 0..100."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary_ms(seconds: Iterable[float]) -> dict[str, float]:
    xs = [s * 1000 for s in seconds]
    return {"n": len(xs), "median_ms": round(statistics.median(xs), 4), "p90_ms": round(pct(xs, 90), 4),
            "mean_ms": round(statistics.fmean(xs), 4)}


def medqa_bank_and_dev() -> tuple[Any, list[Any]]:
    """The MedQA-US4 bank (as a kNN-ready Bank, WordLlama embeddings) and its dev questions:
    what the embedded-model latency benchmarks run their call shapes on."""
    from medcompile import Exemplar
    from medcompile.bank import Bank
    from medcompile.data import load_dataset, split_named

    ds = load_dataset("medqa_us4")
    bank = Bank([Exemplar(q) for q in split_named(ds, "bank").questions], {"kind": "wordllama"})
    return bank, split_named(ds, "dev").questions


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float = 120.0) -> None:
    """Poll until `url` answers (any HTTP status), or raise."""
    import httpx

    t_end = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < t_end:
        try:
            httpx.get(url, timeout=2.0)
            return
        except Exception as e:  # noqa: BLE001 - not up yet
            last = e
            time.sleep(0.25)
    raise RuntimeError(f"{url} did not come up within {timeout_s:.0f}s: {last}")


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)
