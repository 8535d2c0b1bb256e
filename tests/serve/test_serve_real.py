"""`medcompile serve` as a real process on loopback: the client and plain httpx against it,
start-up refusals, graceful shutdown, and (real_model) answers equal to `medcompile run`."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from medcompile.client import ClientError, MedcompileClient
from medcompile.lm.cache import default_cache_dir
from medcompile.question import Question

from .conftest import LOCAL_LM, medcompile_cmd, save_zero_shot

Q = {"question": "Which vitamin deficiency causes scurvy?",
     "options": {"A": "Vitamin A", "B": "Vitamin C", "C": "Vitamin D", "D": "Vitamin K"}}


@pytest.fixture
def program_file(tmp_path: Path) -> Path:
    return save_zero_shot(tmp_path / "zs.json")


# ---- scripted model, real HTTP ---------------------------------------------------------------
def test_client_and_httpx_against_a_served_program(start_server: Any, program_file: Path) -> None:
    srv = start_server([program_file], "--lm", "scripted:answer=C")
    with MedcompileClient(srv.url, timeout=30) as c:
        assert c.health()["status"] == "ok"
        [info] = c.programs()
        assert info["name"] == "zs" and info["compiled_for"]["model"] == LOCAL_LM["model"]
        assert c.program("zs")["signature"] == "question, options -> answer"
        r = c.predict("zs", Q["question"], Q["options"], id="q1")
        assert (r["id"], r["answer"], r["confidence"]) == ("q1", "C", 1.0)
        b = c.batch("zs", [{**Q, "id": str(i)} for i in range(5)])
        assert b["succeeded"] == 5 and [it["id"] for it in b["results"]] == ["0", "1", "2", "3", "4"]
    plain = httpx.post(f"{srv.url}/v1/programs/zs/predict", json=Q, timeout=30)
    assert plain.status_code == 200 and plain.json()["answer"] == "C"


def test_client_errors_carry_the_server_message(start_server: Any, program_file: Path) -> None:
    srv = start_server([program_file], "--lm", "scripted")
    with MedcompileClient(srv.url, timeout=30) as c:
        with pytest.raises(ClientError, match="no program named 'nope'") as ei:
            c.predict("nope", "Q?", {"A": "x", "B": "y"})
        assert (ei.value.status, ei.value.code) == (404, "program_not_found")
        with pytest.raises(ClientError, match="needs at least 2 options") as ei:
            c.predict("zs", "Q?", {"A": "x"})
        assert ei.value.status == 422 and ei.value.details[0]["field"] == "options"
        with pytest.raises(ClientError, match="takes no context"):
            c.predict("zs", "Q?", {"A": "x", "B": "y"}, context="passage")
        with pytest.raises(ClientError, match="at most 64 questions"):
            c.batch("zs", [Q] * 65)


def test_client_reports_an_unreachable_server() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ClientError, match="cannot reach the server") as ei:
        MedcompileClient(f"http://127.0.0.1:{port}", timeout=2).health()
    assert ei.value.status is None and ei.value.code == "unreachable"


def test_oversized_chunked_upload_is_413_over_real_http(start_server: Any, program_file: Path) -> None:
    srv = start_server([program_file], "--lm", "scripted", "--max-body-bytes", "5000")

    def body():  # type: ignore[no-untyped-def]
        for _ in range(100):
            yield b" " * 1000

    r = httpx.post(f"{srv.url}/v1/programs/zs/predict", content=body(),
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    r = httpx.post(f"{srv.url}/v1/programs/zs/predict", content=b" " * 6000,
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413 and "6000 bytes" in r.json()["error"]["message"]
    assert httpx.get(f"{srv.url}/health").status_code == 200  # the server is fine afterwards


def test_sigterm_lets_the_in_flight_request_finish(start_server: Any, program_file: Path) -> None:
    srv = start_server([program_file], "--lm", "scripted:latency=2.0,answer=B")
    out: dict[str, Any] = {}

    def call() -> None:
        try:
            out["r"] = httpx.post(f"{srv.url}/v1/programs/zs/predict", json=Q, timeout=30)
        except Exception as exc:  # noqa: BLE001 - reported by the assert below
            out["exc"] = exc

    t = threading.Thread(target=call)
    t.start()
    deadline = time.monotonic() + 10
    while httpx.get(f"{srv.url}/health").json()["running"] < 1:
        assert time.monotonic() < deadline, "the request never started"
        time.sleep(0.02)
    srv.terminate()
    t.join(30)
    assert "exc" not in out, out.get("exc")
    assert out["r"].status_code == 200 and out["r"].json()["answer"] == "B"
    assert srv.proc.wait(20) in (0, -15)  # uvicorn re-raises SIGTERM after the graceful shutdown
    log = srv.log.read_text()
    assert "Traceback" not in log and "Finished server process" in log


# ---- start-up refusals: one clear line, exit code 2 ----------------------------------------------
def refused(*args: str) -> str:
    p = subprocess.run(medcompile_cmd("serve", *args, "--port", "0"), capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and p.stderr.startswith("error:"), p.stderr
    return p.stderr


def test_startup_refuses_a_file_failing_validation(tmp_path: Path, program_file: Path) -> None:
    bad = tmp_path / "bad.json"
    d = json.loads(program_file.read_text())
    d["graph"]["temperature"] = 9
    bad.write_text(json.dumps(d))
    assert "graph" in refused(str(program_file), str(bad))
    (tmp_path / "broken.json").write_text("{not json")
    assert "not valid JSON" in refused(str(tmp_path / "broken.json"))
    assert "no such program file" in refused(str(tmp_path / "missing.json"))


def test_startup_refuses_python_files_and_duplicate_names(tmp_path: Path, program_file: Path) -> None:
    py = tmp_path / "prog.py"
    py.write_text("raise SystemExit('this must never run')\n")
    assert "only loads compiled program .json" in refused(str(py))
    twin = save_zero_shot(tmp_path / "twin.json")
    assert "both hold a program named 'zs'" in refused(str(program_file), str(twin))


def test_startup_refuses_a_busy_port(program_file: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = subprocess.run(medcompile_cmd("serve", str(program_file), "--port", str(port), "--lm", "scripted"),
                           capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in p.stderr and "Traceback" not in p.stderr


# ---- the real embedded model -----------------------------------------------------------------------
@pytest.mark.real_model
def test_served_answers_equal_medcompile_run(start_server: Any, program_file: Path, tmp_path: Path,
                                             medqa_dev: list[Question]) -> None:
    cache = os.environ.get("MEDCOMPILE_CACHE_DIR") or str(default_cache_dir())
    env = {"MEDCOMPILE_CACHE_DIR": cache}
    qs = medqa_dev[:3]
    srv = start_server([program_file], "--max-concurrency", "2", env=env)
    with MedcompileClient(srv.url, timeout=600) as c:
        assert c.programs()[0]["lm"]["model"] == LOCAL_LM["model"]
        served = [c.predict("zs", q.question, q.options, id=q.id) for q in qs]
    raw = httpx.post(f"{srv.url}/v1/programs/zs/batch", timeout=600,
                     json={"questions": [{"id": q.id, "question": q.question, "options": q.options} for q in qs]})
    assert raw.status_code == 200, raw.text
    batch = [it["result"] for it in raw.json()["results"]]

    # Questions without answers, as a caller has them: canonical JSONL on stdin.
    lines = "".join(json.dumps({"id": q.id, "question": q.question, "options": q.options}) + "\n" for q in qs)
    run = subprocess.run(medcompile_cmd("run", str(program_file), "--input", "-", "--output",
                                        str(tmp_path / "a.jsonl"), "--quiet"),
                         input=lines, capture_output=True, text=True, timeout=900, env={**os.environ, **env})
    assert run.returncode == 0, run.stderr
    expected = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [e["id"] for e in expected] == [q.id for q in qs]
    for want, got, got_b in zip(expected, served, batch):
        assert (got["id"], got["answer"], got["votes"]) == (want["id"], want["answer"], want["votes"])
        assert (got_b["answer"], got_b["votes"]) == (want["answer"], want["votes"])
        assert got["usage"]["calls"] == 1
