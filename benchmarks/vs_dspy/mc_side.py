"""medcompile's side: an LM behind the proxy's phase, and one `optimize` compile recorded
with its calls as the proxy counted them."""
from __future__ import annotations

import os
import time
import traceback
from typing import Any

from .context import Run, log


def mc_lm(run: Run, phase: str, budget: int | None, wall: float | None):  # noqa: ANN201
    from medcompile.lm.registry import make_lm

    assert run.proxy is not None
    base = run.proxy.phase(phase, budget=budget, wall_s=wall)
    # llama_cpp.server needs no key, but the OpenAI client insists on one: a dummy, via the env.
    os.environ.setdefault("MEDCOMPILE_BENCH_DUMMY_API_KEY", "x")
    return make_lm("openai/gemma", api_base=base, mode="text", cache_dir=run.tmp / "mc-cache",
                   api_key_env="MEDCOMPILE_BENCH_DUMMY_API_KEY", timeout=900, max_retries=1, max_concurrency=1)


def compile_medcompile(run: Run, name: str, train, dev) -> Any:  # noqa: ANN001
    import importlib

    from medcompile.compile import optimize

    a = run.args
    phase = f"compile-mc_{name}"
    lm = mc_lm(run, phase, a.budget, a.compile_wall)
    build = importlib.import_module(f"programs.{name}").build
    t = time.perf_counter()
    rec: dict[str, Any] = {"framework": "medcompile", "optimizer": f"optimize({name})", "budget": a.budget}
    prog = None
    try:
        prog = optimize(build(), train, dev, lm=lm, budget=a.budget, seed=0, out=run.tmp / f"mc_{name}.json",
                        max_trials=a.mc_trials, minibatch=a.minibatch, n_instructions=2,
                        max_rationales=max(1, int(0.3 * a.budget)), quiet=True)
        info = prog.compile_info or {}
        rec.update(spent_logical=info.get("budget", {}).get("spent_calls"), chosen=info.get("chosen"),
                   dev_score=info.get("dev", {}).get("score"), trials=info.get("trials"),
                   calls_per_question=prog.calls_per_question(), rationales=info.get("rationales"))
        u = lm.snapshot()
        rec["logical_calls_seen_by_lm"] = u.calls
        rec["cached_calls"] = u.cached_calls
    except Exception as e:  # noqa: BLE001 - recorded honestly
        rec["error"] = f"{type(e).__name__}: {e}"
        rec["traceback_tail"] = traceback.format_exc()[-1500:]
    rec["wall_s"] = round(time.perf_counter() - t, 1)
    rec["proxy"] = run.proxy.stats(phase).to_dict()
    rec["within_budget"] = rec["proxy"]["calls"] <= a.budget
    run.results["compile"][f"mc_{name}"] = rec
    log(f"compiled mc_{name}: {rec.get('error') or rec.get('chosen')} calls={rec['proxy']['calls']} "
        f"refused={rec['proxy']['refused']} wall={rec['wall_s']}s")
    return prog
