"""SIGKILL a compile and an eval at several points, rerun: nothing lost, nothing repeated.

Each scenario runs the real CLI command (`medcompile optimize` / `medcompile eval`) in a
subprocess through `faultkit.py`, which swaps in a scripted model that logs every
request key that reached it (live) and every call that came back to the program (done,
hence in the disk cache). A chain of runs on one working folder is killed

* at a gate: the process blocks at the start of its N-th live call and is killed there,
  so exactly the calls before it completed;
* at a random moment: killed as soon as its done-log reaches a random length plus a
  random delay, wherever it is (in a model call, an SQLite commit, the optimizer);
* while writing the compiled program,

and after every kill the cache and study files must pass `PRAGMA integrity_check` and no
output file may exist. The last run completes and must give byte for byte the program
(or the eval records) of an uninterrupted run, and no run may send a request whose
answer an earlier run had already received.
"""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.faults.faultkit import declared_program, dev_set, eval_set, fixed_program, train_set, write_jsonl

KIT = Path(__file__).with_name("faultkit.py")
SEED = int(os.environ.get("MEDCOMPILE_FAULTS_SEED", "20240613"))
OPTIMIZE = ["optimize", "declared.json", "--train", "train.jsonl", "--dev", "dev.jsonl", "--budget", "150",
            "--trials", "6", "--minibatch", "4", "--seed", "0", "--out", "out.json", "-q"]
EVAL = ["eval", "fixed.json", "--data", "eval.jsonl", "--out", "evalout", "--name", "e", "-q"]
KILLS: list[str] = []  # what was killed where, printed by each test (visible with pytest -s)


def make_workdir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_jsonl(root / "train.jsonl", train_set())
    write_jsonl(root / "dev.jsonl", dev_set())
    write_jsonl(root / "eval.jsonl", eval_set())
    declared_program().save(str(root / "declared.json"))
    fixed_program().save(str(root / "fixed.json"))
    (root / "logs").mkdir(exist_ok=True)
    return root


@dataclass
class Run:
    name: str
    proc: subprocess.Popen
    live: Path
    done: Path
    marker: Path
    killed: bool = False

    def keys(self, which: str) -> list[str]:
        p = self.live if which == "live" else self.done
        return [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln] if p.exists() else []


@dataclass
class Chain:
    root: Path
    cli: list[str]
    runs: list[Run] = field(default_factory=list)

    def start(self, *, gate: int | None = None, at_save: bool = False, latency: float = 0.0) -> Run:
        name = f"run{len(self.runs)}"
        live, done, marker = (self.root / "logs" / f"{name}.{x}" for x in ("live", "done", "marker"))
        cmd = [sys.executable, str(KIT), "--live-log", str(live), "--done-log", str(done), "--marker", str(marker),
               "--latency", str(latency)]
        if gate is not None:
            cmd += ["--block-at-call", str(gate)]
        if at_save:
            cmd += ["--block-at-save"]
        env = {**os.environ, "MEDCOMPILE_CACHE_DIR": str(self.root / "cache"), "PYTHONHASHSEED": "0"}
        proc = subprocess.Popen(cmd + ["--"] + self.cli, cwd=self.root, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        run = Run(name, proc, live, done, marker)
        self.runs.append(run)
        return run

    def kill_at_marker(self, run: Run, timeout: float = 120) -> None:
        t_end = time.monotonic() + timeout
        while not run.marker.exists():
            if run.proc.poll() is not None:
                pytest.fail(f"{run.name} ended (rc {run.proc.returncode}) before its kill point:\n"
                            f"{run.proc.stderr.read() if run.proc.stderr else ''}")
            if time.monotonic() > t_end:
                run.proc.kill()
                pytest.fail(f"{run.name} never reached its kill point")
            time.sleep(0.01)
        self._kill(run, f"at {run.marker.read_text(encoding='utf-8')}")

    def kill_at_random(self, run: Run, after_done: int, rng: random.Random, timeout: float = 120) -> None:
        """Kill once `after_done` calls came back, plus a random delay: anywhere at all."""
        t_end = time.monotonic() + timeout
        while len(run.keys("done")) < after_done:
            if run.proc.poll() is not None:
                pytest.fail(f"{run.name} ended before its kill point:\n{run.proc.stderr.read()}")  # type: ignore[union-attr]
            if time.monotonic() > t_end:
                run.proc.kill()
                pytest.fail(f"{run.name} never reached {after_done} calls")
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.05))
        self._kill(run, f"at random after {len(run.keys('done'))} finished calls")

    def _kill(self, run: Run, where: str) -> None:
        assert run.proc.poll() is None, f"{run.name} had already ended"
        os.kill(run.proc.pid, signal.SIGKILL)
        run.proc.communicate(timeout=30)
        assert run.proc.returncode == -signal.SIGKILL
        run.killed = True
        KILLS.append(f"{self.cli[0]} {run.name}: SIGKILL {where} ({len(run.keys('live'))} live calls in this run)")

    def finish(self, run: Run, timeout: float = 180) -> str:
        out, err = run.proc.communicate(timeout=timeout)
        assert run.proc.returncode == 0, f"{run.name} failed:\n{err}"
        assert "Traceback" not in err
        return out


def integrity_ok(path: Path) -> None:
    assert path.exists(), path
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)], path
    finally:
        con.close()


def completed(chain: Chain) -> int:
    """Distinct calls answered so far by the runs of a chain (all in the cache)."""
    return len({k for run in chain.runs for k in run.keys("done")})


def check_no_repeats(chain: Chain) -> None:
    """No run sent a request whose answer an earlier run had received (done), and a run
    killed at a gate had received every request it sent (its live calls all completed)."""
    received: set[str] = set()
    for run in chain.runs:
        live = run.keys("live")
        assert len(live) == len(set(live)), f"{run.name} asked the model the same thing twice"
        again = received & set(live)
        assert not again, f"{run.name} repeated {len(again)} call(s) that had already completed"
        received |= set(run.keys("done")) | (set(live) if run.marker.exists() else set())


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tests.faults.faultkit import scratch_dir

    import shutil

    base = scratch_dir(tmp_path_factory.mktemp("crash"))
    yield base
    if not str(base).startswith(str(tmp_path_factory.getbasetemp())):
        shutil.rmtree(base, ignore_errors=True)


def test_optimize_killed_four_times_resumes_to_the_same_program(roots: Path) -> None:
    rng = random.Random(SEED)
    ref = Chain(make_workdir(roots / "opt-ref"), OPTIMIZE)
    chain = Chain(make_workdir(roots / "opt"), OPTIMIZE)
    ref_run = ref.start()  # uninterrupted, in parallel with the chain
    study = chain.root / "out.json.study.sqlite"
    cache = chain.root / "cache" / "lm-cache.sqlite"

    def after_kill() -> None:
        integrity_ok(cache)
        if study.exists():
            integrity_ok(study)
        assert not (chain.root / "out.json").exists()  # never a partial program

    # 1: during the self-generated rationales (8 calls)
    chain.kill_at_marker(chain.start(gate=rng.randint(2, 6)))
    after_kill()
    # 2: around the instruction proposals / the first trial (the earlier work comes from the cache)
    chain.kill_at_marker(chain.start(gate=rng.randint(6, 12)))
    after_kill()
    # 3: at a random moment of the search (slower model, so the kill lands mid-trial); calls that
    # come back from the cache count as done too, so aim past them
    r = chain.start(latency=0.02)
    chain.kill_at_random(r, completed(chain) + rng.randint(3, 12), rng)
    after_kill()
    # 4: while writing the compiled program, after the whole search
    chain.kill_at_marker(chain.start(at_save=True))
    after_kill()
    # 5: completes
    last = chain.start()
    chain.finish(last)
    ref.finish(ref_run)

    assert (chain.root / "out.json").read_bytes() == (ref.root / "out.json").read_bytes()
    assert last.keys("live") == []  # everything was already done and cached
    check_no_repeats(chain)
    all_live = [k for run in chain.runs for k in run.keys("live")]
    ref_live = ref_run.keys("live")
    assert set(all_live) == set(ref_live)  # the same requests, each asked once
    assert len(all_live) - len(ref_live) <= 1  # at most the call cut by the random kill
    integrity_ok(cache)
    integrity_ok(study)
    assert not list(chain.root.glob(".out.json.*"))  # no temp file left behind by the kill at save
    KILLS.append(f"optimize: {len(all_live)} live calls over {len(chain.runs)} runs, reference {len(ref_live)}")
    print("\n" + "\n".join(k for k in KILLS if k.startswith("optimize")))


def test_eval_killed_three_times_resumes_to_the_same_records(roots: Path) -> None:
    pytest.importorskip("medcompile.cli.commands.eval")  # built by another change; skip until it lands
    rng = random.Random(SEED + 1)
    ref = Chain(make_workdir(roots / "eval-ref"), EVAL)
    chain = Chain(make_workdir(roots / "eval"), EVAL)
    ref_run = ref.start()
    cache = chain.root / "cache" / "lm-cache.sqlite"
    ckpt = chain.root / "evalout" / "e.eval.checkpoint.jsonl"

    def after_kill() -> int:
        integrity_ok(cache)
        assert not (chain.root / "evalout" / "e.eval.json").exists()
        lines = ckpt.read_text(encoding="utf-8").splitlines() if ckpt.exists() else []
        ids = [json.loads(ln)["id"] for ln in lines if ln.endswith("}")]
        assert ids == [q.id for q in eval_set()[:len(ids)]]  # finished questions, in order
        return len(ids)

    chain.kill_at_marker(chain.start(gate=rng.randint(4, 8)))  # mid-question
    n1 = after_kill()
    r = chain.start(latency=0.02)
    chain.kill_at_random(r, completed(chain) + rng.randint(2, 8), rng)
    n2 = after_kill()
    chain.kill_at_marker(chain.start(gate=rng.randint(3, 6)))
    n3 = after_kill()
    assert n1 <= n2 <= n3 < len(eval_set()) and n3 >= 1
    last = chain.start()
    chain.finish(last)
    ref.finish(ref_run)

    got = json.loads((chain.root / "evalout" / "e.eval.json").read_text(encoding="utf-8"))
    want = json.loads((ref.root / "evalout" / "e.eval.json").read_text(encoding="utf-8"))
    keep = ("id", "answer", "correct", "votes", "calls", "prompt_tokens", "completion_tokens", "confidence",
            "error", "abstain_reason")
    assert [{k: r[k] for k in keep} for r in got["records"]] == [{k: r[k] for k in keep} for r in want["records"]]
    assert got["n"] == len(eval_set()) and got["accuracy"] == want["accuracy"]  # no item lost
    assert got["resumed"] == n3
    check_no_repeats(chain)
    all_live = [k for run in chain.runs for k in run.keys("live")]
    assert set(all_live) == set(ref_run.keys("live"))
    assert len(all_live) - len(ref_run.keys("live")) <= 1
    integrity_ok(cache)
    KILLS.append(f"eval: {len(all_live)} live calls over {len(chain.runs)} runs, "
                 f"reference {len(ref_run.keys('live'))}; checkpoint after kills {n1}, {n2}, {n3}")
    print("\n" + "\n".join(k for k in KILLS if k.startswith("eval")))

