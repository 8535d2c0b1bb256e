"""Two processes share one optuna study in a real PostgreSQL server and finish a compile."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
import subprocess
import sys

import optuna
import pytest

from medcompile.compile.study import driver_url
from tests.compile.postgres import PrivatePostgres, find_bin
from tests.conftest import REPO

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_url(tmp_path_factory):
    if not find_bin("initdb"):
        pytest.skip("PostgreSQL server binaries are not installed (scripts/test.sh installs them as root)")
    # Not under pytest's tmp dir: that is private to root, and the server runs as 'postgres'.
    root = Path(tempfile.mkdtemp(prefix="medcompile-pg-"))
    os.chmod(root, 0o755)
    server = PrivatePostgres(root / "cluster")
    try:
        url = server.start()
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"could not start PostgreSQL: {exc.stderr}")
    yield url
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_two_workers_finish_one_compile(pg_url, tmp_path):
    out = tmp_path / "mp.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "tests.compile.worker_job", pg_url, "shared-study", str(out)]
    leader = subprocess.Popen(cmd + ["leader", str(tmp_path / "leader.json")], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker = subprocess.Popen(cmd + ["worker", str(tmp_path / "worker.json")], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for p in (leader, worker):
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    logs = {r["role"]: r for r in (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("leader", "worker"))}
    assert logs["worker"]["calls"] > 0 and logs["leader"]["calls"] > 0  # both did model work
    study = optuna.load_study(study_name="shared-study", storage=driver_url(pg_url))
    done = [t for t in study.trials if t.state.is_finished()]
    assert len(done) >= 12
    info = json.loads(out.read_text())["compile"]
    # 80 dev questions: 48 to search on, 32 held out to confirm the finalists on; compared on all 80
    assert info["budget"]["spent_calls"] <= 3000 and info["dev"]["n"] == 80
    assert info["selection"]["search_questions"] == 48
    assert info["chosen"]["members.0.n"] > 1
