"""The optuna study behind a compile: storage, resumption and deterministic sampling.

Storage is an optuna RDB URL: SQLite by default (one file beside the output, so an
interrupted compile resumes where it stopped) or PostgreSQL, where several
`medcompile optimize --worker` processes share one study.

Determinism: the sampler is re-seeded before every trial from the compile seed and
the number of trials already *finished*. A trial killed mid-way is marked failed
and the next trial gets the very seed it had, so a resumed compile proposes the same
configurations as an uninterrupted one.
"""
from __future__ import annotations

import json
import logging
import re
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.trial import TrialState

from ..modules.base import derive_seed
from ..progress import log

optuna.logging.set_verbosity(logging.WARNING)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def open_study(storage: str, name: str, *, directions: list[str], heartbeat: bool, join: bool = False,
               wait_s: float = 600.0) -> optuna.Study:
    """Create or join the study. With `heartbeat`, trials of a crashed worker are failed
    by the others after a grace period (optuna's stale-trial mechanism). A joining
    worker waits for the leader to create the study (and its tables) first, so two
    processes never race to create the schema."""
    if join:
        t_end = time.time() + wait_s
        while not _study_exists(storage, name):  # look without touching the schema
            if time.time() > t_end:
                raise TimeoutError(f"study {name!r} did not appear in the storage within {wait_s:.0f}s")
            time.sleep(1.0)
        return _open(storage, name, directions, heartbeat, create=False)
    return _open(storage, name, directions, heartbeat, create=True)


def _study_exists(storage: str, name: str) -> bool:
    engine = sqlalchemy.create_engine(driver_url(storage), **_engine_kwargs(storage))
    try:
        with engine.connect() as conn:
            if not sqlalchemy.inspect(conn).has_table("studies") or not sqlalchemy.inspect(conn).has_table(
                    "alembic_version"):
                return False
            row = conn.execute(sqlalchemy.text("SELECT 1 FROM studies WHERE study_name = :n"), {"n": name}).first()
            return row is not None
    except sqlalchemy.exc.SQLAlchemyError:
        return False
    finally:
        engine.dispose()


def _open(storage: str, name: str, directions: list[str], heartbeat: bool, *, create: bool) -> optuna.Study:
    storage = driver_url(storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if heartbeat:
            store: Any = optuna.storages.RDBStorage(storage, heartbeat_interval=10, grace_period=60,
                                                    engine_kwargs=_engine_kwargs(storage))
        else:
            store = optuna.storages.RDBStorage(storage, engine_kwargs=_engine_kwargs(storage))
    if not create:
        return optuna.load_study(storage=store, study_name=name)
    return optuna.create_study(storage=store, study_name=name, directions=directions, load_if_exists=True)


def driver_url(url: str) -> str:
    """SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; we ship psycopg2-binary."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True}


def fail_stale(study: optuna.Study) -> int:
    """Mark RUNNING trials left by a killed single-process compile as FAIL."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)  # noqa: SLF001
        n += 1
    return n


def requeue_interrupted(study: optuna.Study) -> bool:
    """Queue again the configuration a stopped compile was scoring (a kill, or the backend going
    down mid-trial), so the resumed search scores it next, as the uninterrupted one did, even
    when it came from a queue (the screen, a cheaper variant, a scaled leader) rather than
    from the seeded sampler. Only the last such trial, and only when nothing is queued."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return False
    last_done = max((t.number for t in trials if t.state in FINISHED or "skipped" in t.user_attrs), default=-1)
    cut = [t for t in trials if t.state == TrialState.FAIL and "skipped" not in t.user_attrs
           and t.number > last_done and t.params]
    if not cut:
        return False
    study.enqueue_trial(dict(max(cut, key=lambda t: t.number).params))
    return True


def seeded_sampler(seed: int, n_finished: int, multi_objective: bool, n_startup: int) -> optuna.samplers.BaseSampler:
    s = derive_seed(seed, "sampler", n_finished)
    if multi_objective:
        return optuna.samplers.NSGAIISampler(seed=s, population_size=max(4, n_startup))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=s, n_startup_trials=n_startup, multivariate=True, group=True)


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return sorted(study.get_trials(deepcopy=False, states=FINISHED), key=lambda t: t.number)


def put_json(study: optuna.Study, key: str, value: Any) -> None:
    study.set_user_attr(key, json.dumps(value, sort_keys=True))


def get_json(study: optuna.Study, key: str) -> Any:
    raw = study.user_attrs.get(key)
    return json.loads(raw) if raw is not None else None


def wait_for_prep(study: optuna.Study, timeout_s: float) -> dict[str, Any]:
    """A worker waits for the leader to store the preparation (rationales, instructions)."""
    from .preflight import CompileError

    t_end = time.time() + timeout_s
    while time.time() < t_end:
        prep = get_json(study, "prep")
        if prep is not None:
            return prep
        time.sleep(1.0)
    raise CompileError(f"no leader has prepared study {study.study_name!r} within {timeout_s:.0f}s: "
                       "start `medcompile optimize` without --worker first")


def wait_for_running(study: optuna.Study, quiet: bool, timeout_s: float = 3600) -> None:
    """Before freezing, let trials that other workers are running finish."""
    t_end = time.time() + timeout_s
    announced = False
    while time.time() < t_end:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return
        if not announced:
            log(f"waiting for {len(running)} trial(s) still running on other workers", quiet=quiet)
            announced = True
        time.sleep(1.0)


def redact_url(url: str) -> str:
    """Storage URLs may carry a password: never write it into a report."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
