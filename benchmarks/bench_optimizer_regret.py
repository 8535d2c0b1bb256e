"""Benchmark: does the optimizer choose well? Regret against a known optimum.

On the simulated model family (medcompile.sim), every profile x seed (a fresh world:
new latent difficulty/topic/bias per MedQA-US4 question) x budget (model calls per
compile, enforced at the simulator) runs:

  end_to_end  medcompile optimize(medprompt) with default options, uniform random search
              over the same space, the fixed Medprompt recipe, and DSPy LabeledFewShot,
              BootstrapFewShot, BootstrapFewShotWithRandomSearch, KNNFewShot, MIPROv2 and
              GEPA on dspy.ChainOfThought;
  same_space  medcompile optimize(SelfCoT(demos=Retrieve)) (no Shuffle/Vote), random search
              over that space, and the same DSPy programs (ChainOfThought; with
              --dspy-predict also dspy.Predict).

test_accuracy: the simulator's expected accuracy on the test split (254 questions, mean
over --replicates runs of the model's per-prompt noise); oracle_accuracy: the best
configuration of the comparison's space found exhaustively by the simulator; regret =
oracle - test. Writes benchmarks/results/optimizer_regret.{json,md,png} (--quick:
optimizer_regret_quick.*). Resumable: rows already in the partial file are skipped.

    python benchmarks/bench_optimizer_regret.py --quick
    nice -n 10 python benchmarks/bench_optimizer_regret.py --seeds 10 --jobs 2
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Iterable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS  # noqa: E402

from regret import report  # noqa: E402
from regret.world import COMPARISONS, Cell, load_splits, profile_name, resolve_profiles  # noqa: E402

MC_OPTIMIZERS = ("medcompile", "random_search", "medprompt_fixed")
ALL_DSPY = ("labeled", "bootstrap", "bootstrap_rs", "knn", "mipro", "gepa")
KEY = ("profile", "seed", "budget", "optimizer", "comparison")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def row_key(r: dict[str, Any]) -> tuple:
    return tuple(r[k] for k in KEY)


# ---- the plan: which runs make which rows -------------------------------------------------------------
def plan(budget: int, args: argparse.Namespace) -> list[tuple[str, list[tuple[str, str]], dict[str, Any]]]:
    """(run id, [(optimizer name, comparison) rows it fills], how to run it)."""
    out: list[tuple[str, list[tuple[str, str]], dict[str, Any]]] = []
    mc = set(args.mc)
    for comp in args.comparisons:
        if "medcompile" in mc:
            out.append((f"medcompile/{comp}", [("medcompile", comp)], {"kind": "optimize", "comparison": comp}))
        if "random_search" in mc:
            out.append((f"random/{comp}", [("random_search", comp)], {"kind": "random", "comparison": comp}))
    if "medprompt_fixed" in mc and "end_to_end" in args.comparisons:
        out.append(("medprompt_fixed", [("medprompt_fixed", "end_to_end")], {"kind": "fixed"}))
    for d in args.dspy:
        out.append((f"dspy_{d}/cot", [(f"dspy_{d}", c) for c in args.comparisons], {"kind": "dspy", "name": d,
                                                                                       "student": "cot"}))
        if args.dspy_predict and "same_space" in args.comparisons:
            out.append((f"dspy_{d}/predict", [(f"dspy_{d}_predict", "same_space")],
                        {"kind": "dspy", "name": d, "student": "predict"}))
    return out


def execute(cell: Cell, budget: int, seed: int, how: dict[str, Any], args: argparse.Namespace) -> Any:
    from regret import mc_runs

    k = how["kind"]
    if k == "optimize":
        return mc_runs.run_optimize(cell, how["comparison"], budget, seed, dev_policy=args.mc_dev)
    if k == "random":
        return mc_runs.run_random_search(cell, how["comparison"], budget, seed, dev_policy=args.mc_dev)
    if k == "fixed":
        return mc_runs.run_medprompt_fixed(cell, budget, seed)
    from regret import dspy_runs

    return dspy_runs.run_dspy(cell, how["name"], how["student"], budget, seed)


def rows_for(cell: Cell, budget: int, seed: int, targets: list[tuple[str, str]], out: Any,
             args: argparse.Namespace) -> list[dict[str, Any]]:
    """Score the run's program once on the test split; one row per comparison it belongs to."""
    test_acc = None
    t0 = time.perf_counter()
    if out.answer is not None:
        try:
            test_acc = cell.expected_accuracy(out.answer, args.replicates)
        except Exception as e:  # noqa: BLE001 - e.g. a DSPy program that crashes on every question
            out.status, out.error = "failed", f"test: {type(e).__name__}: {str(e)[:300]}"
    counter = out.detail.pop("_counter", None)
    cpq = out.calls_per_question
    if counter and counter["questions"]:
        cpq = counter["calls"] / counter["questions"]
        out.detail["test_unparsed_frac"] = round(counter["unparsed"] / counter["questions"], 4)
    rows = []
    for optimizer, comp in targets:
        o = cell.oracle(comp)
        oracle = float(o.expected_accuracy)
        rows.append({
            "profile": cell.name, "seed": seed, "budget": budget, "optimizer": optimizer, "comparison": comp,
            "test_accuracy": None if test_acc is None else round(test_acc, 6),
            "oracle_accuracy": round(oracle, 6),
            "regret": None if test_acc is None else round(oracle - round(test_acc, 6), 6),
            "calls_per_question": None if cpq is None else round(cpq, 4),
            "compile_calls": int(out.compile_calls),
            "status": out.status, "error": out.error, "budget_ok": int(out.compile_calls) <= budget,
            "oracle_calls_per_question": float(o.calls_per_question), "replicates": args.replicates,
            "test_n": len(cell.splits.test),
            "compile_wall_s": round(out.wall_s, 2), "test_wall_s": round(time.perf_counter() - t0, 2),
            "detail": _jsonable(out.detail),
        })
    return rows


def _pts(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}"


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


# ---- one unit of work: a (profile, seed) over every budget -------------------------------------------------
def work_cell(job: tuple[Any, int, argparse.Namespace, set]) -> list[dict[str, Any]]:
    profile, seed, args, done = job
    splits = load_splits(args.test_n, args.bank_n)
    cell = Cell(profile, seed, splits, oracle_cache=args.oracle_cache)
    made: list[dict[str, Any]] = []
    for budget in args.budgets:
        for run_id, targets, how in plan(budget, args):
            todo = [t for t in targets if (cell.name, seed, budget, *t) not in done]
            if not todo:
                continue
            t0 = time.perf_counter()
            try:
                out = execute(cell, budget, seed, how, args)
                rows = rows_for(cell, budget, seed, todo, out, args)
            except Exception as e:  # noqa: BLE001 - never lose the grid to one run
                log(f"ERROR {cell.name} s{seed} b{budget} {run_id}: {type(e).__name__}: {e}")
                traceback.print_exc()
                continue
            append_partial(args.partial, rows)
            made.extend(rows)
            r = rows[0]
            acc = "-" if r["test_accuracy"] is None else f"{100 * r['test_accuracy']:.1f}"
            reg = " ".join(f"{x['comparison'][:3]}:{_pts(x['regret'])}" for x in rows)
            log(f"{cell.name:<20} s{seed:<2} b{budget:<5} {run_id:<24} test {acc:>5}% regret {reg:<20} "
                f"cpq {r['calls_per_question']} calls {r['compile_calls']:>5} {r['status']} "
                f"({time.perf_counter() - t0:.1f}s){' ' + r['error'][:80] if r['error'] else ''}")
    return made


def append_partial(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    data = "".join(json.dumps(r) + "\n" for r in rows)
    with open(path, "a", encoding="utf-8") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def read_rows(json_path: Path, partial: Path) -> dict[tuple, dict[str, Any]]:
    rows: dict[tuple, dict[str, Any]] = {}
    if json_path.exists():
        try:
            for r in json.loads(json_path.read_text(encoding="utf-8")).get("rows", []):
                rows[row_key(r)] = r
        except (json.JSONDecodeError, AttributeError):
            log(f"warning: {json_path} is not a results file; ignoring it")
    if partial.exists():
        for line in partial.read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            rows[row_key(r)] = r
    return rows


# ---- main --------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one profile, two seeds, budget 400, 64 test questions, "
                    "1 replicate (< 2 min on an idle machine)")
    ap.add_argument("--profiles", default="", help="comma list of builtin profile names (default: all builtin)")
    ap.add_argument("--profile-file", action="append", default=[], help="a profile JSON (repeatable)")
    ap.add_argument("--random-profiles", type=int, default=0, help="also draw N random profiles")
    ap.add_argument("--profile-seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1")
    ap.add_argument("--seed-start", type=int, default=0)
    ap.add_argument("--budgets", default="150,400,1000")
    ap.add_argument("--seeds-at", default="", help="fewer seeds at some budgets, e.g. '1000:5' (stated in the MD)")
    ap.add_argument("--comparisons", default=",".join(COMPARISONS))
    ap.add_argument("--mc", default=",".join(MC_OPTIMIZERS), help="medcompile-side runs")
    ap.add_argument("--dspy", default=",".join(ALL_DSPY), help="DSPy optimizers ('' for none)")
    ap.add_argument("--dspy-predict", action="store_true", help="same_space: also DSPy on dspy.Predict")
    ap.add_argument("--mc-dev", default="budget", help="dev questions for medcompile/random: 'budget' (budget/10, "
                    ">= 16, the rule every searcher gets), 'all' (254) or a number")
    ap.add_argument("--replicates", type=int, default=4, help="test replicates per program (model noise)")
    ap.add_argument("--test-n", type=int, default=None, help="score on a fixed seeded sample of the test split "
                    "(the oracle uses the same sample)")
    ap.add_argument("--bank-n", type=int, default=None, help="subsample the bank split (tests only)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (cells run in parallel)")
    ap.add_argument("--out", default="", help="result name stem (default optimizer_regret[_quick])")
    ap.add_argument("--results-dir", default=str(RESULTS))
    ap.add_argument("--report-only", action="store_true", help="rewrite JSON/MD/PNG from the partial file")
    ap.add_argument("--fresh", action="store_true", help="ignore earlier rows (start over)")
    ap.add_argument("--reoracle", action="store_true", help="rewrite every row's oracle_accuracy and regret from the "
                    "oracle cache (after a profile or the oracle changed mid-run and its cache entries were redone)")
    ap.add_argument("--note", action="append", default=[], help="a line for the MD header (e.g. a stated reduction)")
    a = ap.parse_args(argv)
    if a.quick:
        a.profiles = a.profiles or "strong_chat"
        a.seeds = 2 if a.seeds == 10 else a.seeds
        a.budgets = "400" if a.budgets == "150,400,1000" else a.budgets
        a.replicates = 1
        a.test_n = a.test_n or 64
    a.budgets = [int(x) for x in a.budgets.split(",") if x]
    a.comparisons = [c for c in a.comparisons.split(",") if c]
    a.mc = [m for m in a.mc.split(",") if m]
    a.dspy = [d for d in a.dspy.split(",") if d]
    bad = [c for c in a.comparisons if c not in COMPARISONS] + [m for m in a.mc if m not in MC_OPTIMIZERS] + \
          [d for d in a.dspy if d not in ALL_DSPY]
    if bad:
        ap.error(f"unknown name(s): {bad}")
    a.seeds_at = {int(b): int(n) for b, n in (x.split(":") for x in a.seeds_at.split(",") if x)}
    a.stem = a.out or ("optimizer_regret_quick" if a.quick else "optimizer_regret")
    rd = Path(a.results_dir)
    rd.mkdir(parents=True, exist_ok=True)
    a.json_path, a.partial = rd / f"{a.stem}.json", rd / f"{a.stem}.partial.jsonl"
    a.oracle_cache = rd / f"{a.stem}.oracles.jsonl"
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    if args.fresh:
        for p in (args.partial, args.json_path, args.oracle_cache):
            p.unlink(missing_ok=True)
    profiles = resolve_profiles([p for p in args.profiles.split(",") if p], args.profile_file, args.random_profiles,
                                args.profile_seed)
    existing = read_rows(args.json_path, args.partial)
    if existing and not args.report_only:
        # Keep what we have in the partial file, so a resume needs only that one file.
        if not args.partial.exists():
            append_partial(args.partial, existing.values())
        log(f"resuming: {len(existing)} row(s) already done")
    if not args.report_only:
        done = set(existing)
        seeds = list(range(args.seed_start, args.seed_start + args.seeds))
        jobs = [(p, s, _for_seed(args, s), done) for s in seeds for p in profiles]
        jobs = [j for j in jobs if j[2].budgets]
        log(f"{len(profiles)} profile(s) x {len(seeds)} seed(s) x budgets {args.budgets} "
            f"({len(jobs)} cells, {args.jobs} process(es)); results -> {args.json_path}")
        if args.jobs > 1:
            import medcompile.compile.optimizer  # noqa: F401 - loaded once, before forking: one code version
            from regret import dspy_runs, mc_runs  # noqa: F401

            if args.dspy:
                dspy_runs._dspy()
            ctx = mp.get_context("fork")
            with ctx.Pool(args.jobs, maxtasksperchild=4) as pool:
                for _ in pool.imap_unordered(work_cell, jobs):
                    pass
        else:
            for j in jobs:
                work_cell(j)
    if args.reoracle:
        reoracle(args)
    rows = sorted(read_rows(args.json_path, args.partial).values(),
                  key=lambda r: (r["profile"], r["comparison"], r["budget"], r["optimizer"], r["seed"]))
    command = "python benchmarks/bench_optimizer_regret.py " + " ".join(sys.argv[1:] if argv is None else argv)
    commands = _old_commands(args.json_path) + ([] if args.report_only else [command])
    meta = {"command": command, "commands": list(dict.fromkeys(commands)),
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "profiles": [profile_name(p) for p in profiles], "machine": machine(), "code": code_state(),
            "elapsed_s_this_invocation": round(time.monotonic() - t0, 1),
            "row_fields": list(KEY) + ["test_accuracy", "oracle_accuracy", "regret", "calls_per_question",
                                       "compile_calls"]}
    _save_rows(args.json_path, meta, rows)
    report.write(rows, meta, args.json_path.with_suffix(".md"), args.json_path.with_suffix(".png"))
    log(f"{len(rows)} rows -> {args.json_path}, {args.json_path.with_suffix('.md').name}, "
        f"{args.json_path.with_suffix('.png').name} ({time.monotonic() - t0:.0f}s)")
    return 0


def _slim(row: dict[str, Any]) -> dict[str, Any]:
    """A row for the committed JSON: the selection's verdict, not every candidate (the partial
    file keeps the full detail)."""
    det = dict(row.get("detail") or {})
    sel = det.get("selection")
    if isinstance(sel, dict):
        det["selection"] = {k: sel[k] for k in ("verdict",) if k in sel}
    if isinstance(det.get("instruction"), str) and len(det["instruction"]) > 64:
        det["instruction"] = det["instruction"][:61] + "..."
    return {**row, "detail": det}


def _save_rows(path: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """One row per line (a few MB of rows stay diffable and under the repository's size limit)."""
    body = ",\n".join(json.dumps(_slim(r), separators=(",", ":"), default=str) for r in rows)
    text = '{"meta": ' + json.dumps(meta, indent=1, default=str) + ',\n"rows": [\n' + body + "\n]}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def machine() -> dict[str, Any]:
    """What the numbers were measured on (versions from package metadata: no heavy imports)."""
    import platform
    from importlib import metadata

    info: dict[str, Any] = {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                            "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()]}
    for pkg in ("medcompile", "dspy", "optuna", "numpy"):
        try:
            info[f"{pkg}_version"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return info


def code_state() -> dict[str, Any]:
    """The commit the rows were computed at, and which optimizer/simulator files differed from it."""
    import subprocess

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    dirty = [ln[3:] for ln in git("status", "--porcelain", "--", "medcompile/compile", "medcompile/sim").splitlines()]
    return {"head": git("rev-parse", "--short", "HEAD"), "uncommitted_in_compile_or_sim": dirty}


def reoracle(args: argparse.Namespace) -> None:
    """Rows keep the oracle of their cell as it was when they were computed; this rewrites
    oracle_accuracy and regret from the oracle cache, logging every change."""
    from regret.world import _read_oracles

    cache = _read_oracles(args.oracle_cache)
    rows = read_rows(args.json_path, args.partial)
    changed: list[dict[str, Any]] = []
    for r in rows.values():
        o = cache.get(f"{r['profile']}|{r['seed']}|{r['comparison']}|{args.bank_n or 765}|{r.get('test_n') or args.test_n or 254}")
        if o is None or abs(o["expected_accuracy"] - r["oracle_accuracy"]) < 1e-6:  # rows keep 6 decimals
            continue
        log(f"reoracle {r['profile']} s{r['seed']} b{r['budget']} {r['optimizer']} {r['comparison']}: "
            f"oracle {r['oracle_accuracy']:.4f} -> {o['expected_accuracy']:.4f}")
        r["oracle_accuracy"] = round(o["expected_accuracy"], 6)
        r["oracle_calls_per_question"] = o["calls_per_question"]
        if r["test_accuracy"] is not None:
            r["regret"] = round(r["oracle_accuracy"] - r["test_accuracy"], 6)
        r.setdefault("detail", {})["oracle_rewritten"] = True
        changed.append(r)
    append_partial(args.partial, changed)  # later lines win on read
    log(f"reoracle: {len(changed)} row(s) rewritten")


def _old_commands(path: Path) -> list[str]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))["meta"]
        return list(meta.get("commands") or [meta["command"]])
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return []


def _for_seed(args: argparse.Namespace, seed: int) -> argparse.Namespace:
    """A copy of args with only the budgets this seed runs (--seeds-at)."""
    ns = argparse.Namespace(**vars(args))
    ns.budgets = [b for b in args.budgets if seed - args.seed_start < args.seeds_at.get(b, args.seeds)]
    return ns


if __name__ == "__main__":
    raise SystemExit(main())
