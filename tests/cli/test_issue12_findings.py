"""Issue 12, one test per finding: the command line as a new user meets it.

Every model here is offline: the simulated model (`--lm sim`), `--lm echo`, or a fake
OpenAI-compatible server on 127.0.0.1. (Finding 12, the reason of failed trials in
optimize's progress, belongs to the optimizer and is tested there.)
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.cli.conftest import BAD_ROWS, CSV_FIELDS, GENERIC_CSV, MEDQA_HEAD

MODEL_COMMANDS = ("optimize", "run", "eval", "compare", "ablate", "serve")


def lines(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


# 1 -----------------------------------------------------------------------------------------------
def test_1_run_reads_any_layout_with_fields_and_skips_bad_rows(cli, program_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = cli("run", program_file, "-i", GENERIC_CSV, "--fields", CSV_FIELDS, "-o", "a.jsonl", "--lm", "sim", "-q")
    assert r.rc == 0, r.err
    rows = lines(tmp_path / "a.jsonl")
    assert [x["id"] for x in rows] == ["q1", "q2", "q3"]
    assert [x["gold"] for x in rows] == ["A", "B", "A"]  # 'Epinephrine' (answer by text) is option B
    assert all(x["answer"] in "ABCDE" for x in rows)
    r = cli("run", program_file, "-i", BAD_ROWS, "--skip-bad-rows", "-o", "b.jsonl", "--lm", "sim", "-q")
    assert r.rc == 0, r.err
    assert "skipped 8 bad row(s)" in r.err and len(lines(tmp_path / "b.jsonl")) == 2


# 2 -----------------------------------------------------------------------------------------------
def test_2_wrong_model_name_stops_at_once_naming_the_model(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = cli("optimize", "zero_shot", "--train", MEDQA_HEAD, "--dev", GENERIC_CSV, "--dev-fields", CSV_FIELDS,
            "--lm", "nosuchmodel", "--budget", "60", "--out", "s.json")
    assert r.rc == 2
    first = r.err.strip().splitlines()[0]
    assert first.startswith("error: model 'nosuchmodel' is not a model litellm knows (no provider prefix): "
                            "use --lm local, sim, echo")
    assert "budget" not in r.err and "trial" not in r.err and not (tmp_path / "s.json").exists()


def test_2_python_api_wrong_model_name_names_the_cause_not_the_budget() -> None:
    import medcompile as mc
    from medcompile.compile.optimizer import CompileError
    from medcompile.data import load_dataset
    from medcompile.lm.base import LMConfigError

    qs = load_dataset(MEDQA_HEAD).questions
    t0 = time.monotonic()
    with pytest.raises((CompileError, LMConfigError)) as ei:
        mc.optimize(mc.Program(mc.Predict(tune=False), name="p"), qs[:6], qs[6:], lm="scripted", budget=60)
    msg = str(ei.value)
    assert msg.startswith("model 'scripted' is not a model litellm knows")  # the cause first
    assert "Raise --budget" not in msg
    assert time.monotonic() - t0 < 30  # stopped at the first call, no retries


# 3 -----------------------------------------------------------------------------------------------
def test_3_a_failed_run_leaves_no_file_behind(cli, program_file, questions_file, tmp_path, fake_openai,  # type: ignore[no-untyped-def]
                                              monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000")
    before = set(tmp_path.iterdir())
    fake_openai.status = 403  # the first question is answered, then the run stops
    fake_openai.fail_after = 1
    r = cli("run", program_file, "-i", questions_file, "-o", "out.jsonl", "--lm", "openai/served",
            "--api-base", fake_openai.base_url, "--no-cache", "-q")
    assert r.rc == 2 and "not allowed to use this model" in r.err and len(fake_openai.requests) == 2
    assert set(tmp_path.iterdir()) == before  # neither out.jsonl nor out.jsonl.partial nor a temp file
    r = cli("run", program_file, "-i", questions_file, "-o", "out.jsonl", "--lm", "openai/served",
            "--api-base", "http://127.0.0.1:9/v1", "--no-cache", "-q")
    assert r.rc == 2 and r.err.startswith("error: cannot reach http://127.0.0.1:9/v1 (connection refused)")
    assert set(tmp_path.iterdir()) == before


# 4 -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_4_every_model_command_takes_the_same_model_options(command: str) -> None:
    from medcompile.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]  # type: ignore[attr-defined]
    flags = {s for a in sub._actions for s in a.option_strings}
    assert {"--lm", "--api-base", "--mode", "--concurrency", "--cache", "--no-cache", "--cache-dir",
            "--lm-timeout"} <= flags


def test_4_run_eval_and_serve_reach_an_openai_compatible_server(cli, program_file, questions_file, tmp_path,  # type: ignore[no-untyped-def]
                                                                 fake_openai) -> None:
    base = fake_openai.base_url
    r = cli("run", program_file, "-i", questions_file, "-o", "a.jsonl", "--lm", "openai/served", "--api-base", base,
            "--mode", "chat", "--lm-timeout", "300", "-q")
    assert r.rc == 0, r.err
    assert [x["answer"] for x in lines(tmp_path / "a.jsonl")] == ["B", "B", "B"]
    assert {q["path"] for q in fake_openai.requests} == {"/v1/chat/completions"}
    r = cli("eval", program_file, "--data", MEDQA_HEAD, "--limit", "4", "--lm", "text-completion-openai/served",
            "--api-base", base, "--out", "ev", "-q")
    assert r.rc == 0, r.err
    assert fake_openai.requests[-1]["path"] == "/v1/completions" and "n=4" in r.out
    import argparse

    from fastapi.testclient import TestClient

    from medcompile.cli.model_args import Models
    from medcompile.program.io import load
    from medcompile.serve import create_app

    args = argparse.Namespace(lm="openai/served", api_base=base, mode="chat", cache=False, cache_dir=None)
    prog = load(program_file)
    n = len(fake_openai.requests)
    with TestClient(create_app({prog.name: prog}, Models(args))) as client:
        resp = client.post("/v1/programs/zs/predict", json={"question": "Q?", "options": {"A": "x", "B": "y"}})
    assert resp.status_code == 200 and resp.json()["answer"] == "B" and len(fake_openai.requests) == n + 1


# 5 -----------------------------------------------------------------------------------------------
def test_5_a_rejected_key_is_not_retried(cli, program_file, questions_file, tmp_path, fake_openai,  # type: ignore[no-untyped-def]
                                         monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-rejected-key-0000000000")
    fake_openai.status = 401
    t0 = time.monotonic()
    r = cli("run", program_file, "-i", questions_file, "-o", "out.jsonl", "--lm", "openai/served",
            "--api-base", fake_openai.base_url, "--no-cache", "-q")
    assert r.rc == 2 and len(fake_openai.requests) == 1 and time.monotonic() - t0 < 5
    assert r.err.startswith("error: openai/served: the API key was rejected: check OPENAI_API_KEY")
    assert "sk-test-rejected" not in r.err and not (tmp_path / "out.jsonl").exists()


def test_5_a_missing_key_is_not_retried(cli, program_file, questions_file, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_BASE", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    r = cli("run", program_file, "-i", questions_file, "-o", "out.jsonl", "--lm", "openai/gpt-4o-mini", "-q")
    assert r.rc == 2 and r.err.startswith("error: openai/gpt-4o-mini: no API key: set OPENAI_API_KEY")
    assert "unavailable after" not in r.err


# 6 -----------------------------------------------------------------------------------------------
def test_6_bad_row_hint_names_the_real_flag_and_the_flag_works(cli, program_file) -> None:  # type: ignore[no-untyped-def]
    r = cli("eval", program_file, "--data", BAD_ROWS, "--lm", "sim", "--out", "ev", "-q")
    assert r.rc == 2 and "row 2 (id '1'): missing answer" in r.err
    assert "--skip-bad-rows" in r.err and "--on-error" not in r.err
    r = cli("eval", program_file, "--data", BAD_ROWS, "--skip-bad-rows", "--lm", "sim", "--out", "ev", "-q")
    assert r.rc == 0 and "n=2" in r.out, r.err


# 7 -----------------------------------------------------------------------------------------------
def test_7_unknown_program_is_404_before_the_body_is_validated(program_file) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from medcompile.lm.scripted import EchoLM
    from medcompile.program.io import load
    from medcompile.serve import create_app

    prog = load(program_file)
    client = TestClient(create_app({prog.name: prog}, EchoLM()))
    for path in ("/v1/programs/nope/predict", "/v1/programs/nope/batch"):
        resp = client.post(path, json={})
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "program_not_found", resp.text
    resp = client.post("/v1/programs/zs/predict", json={})  # a served program still validates its body
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_request"


# 8 -----------------------------------------------------------------------------------------------
def test_8_optimize_reads_each_file_in_its_own_layout(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = cli("optimize", "zero_shot", "--train", MEDQA_HEAD, "--dev", GENERIC_CSV, "--dev-fields", CSV_FIELDS,
            "--lm", "sim", "--budget", "20", "--out", "zs.json", "-q")
    assert r.rc == 0, r.err
    from medcompile.program.io import load

    assert load(tmp_path / "zs.json").compile_info["dev"]["n"] == 3  # type: ignore[index]


def test_8_a_field_named_in_the_map_must_exist(cli, program_file) -> None:  # type: ignore[no-untyped-def]
    r = cli("run", program_file, "-i", GENERIC_CSV, "--fields", CSV_FIELDS.replace("id=qid", "id=nosuch"),
            "--lm", "sim", "-q")
    assert r.rc == 2 and "--fields id=nosuch: the file has no field 'nosuch'" in r.err and "qid" in r.err
    r = cli("optimize", "zero_shot", "--train", MEDQA_HEAD, "--dev", GENERIC_CSV,
            "--fields", CSV_FIELDS.replace("id=qid", "id=nosuch"), "--train-fields", "id=realidx",
            "--lm", "sim", "--budget", "20", "--out", "x.json", "-q")
    assert r.rc == 2 and "id=nosuch" in r.err


# 9 -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_9_concurrency_below_one_is_refused(cli, program_file, command) -> None:  # type: ignore[no-untyped-def]
    args = {"optimize": ["zero_shot", "--train", "x", "--dev", "y", "--out", "o.json"],
            "run": [program_file], "eval": [program_file, "--data", "x"],
            "compare": [program_file, program_file, "--data", "x"], "ablate": ["--train", "x", "--data", "y"],
            "serve": [program_file]}[command]
    r = cli(command, *args, "--concurrency", "0")
    assert r.rc == 2 and "argument --concurrency" in r.err and "must be at least 1, got 0" in r.err


# 10 ----------------------------------------------------------------------------------------------
def test_10_help_a_newcomer_can_act_on(cli) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import fields

    from medcompile.cli.main import build_parser
    from medcompile.data.formats import FieldMap

    top = cli("--help")
    assert top.rc == 0 and "cli/commands" not in top.out and "compile medical multiple-choice" in top.out
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices  # type: ignore[attr-defined]
    for name, parser in sub.items():
        for action in parser._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
    run = cli("run", "--help").out
    assert "(default: 1)" in run and "JSONL" in run and "CSV" in run and "dataset file" in run
    fields_help = " ".join(run.split())
    assert all(f.name in fields_help for f in fields(FieldMap))
    opt = " ".join(cli("optimize", "--help").out.split())
    for flag in ("--seed", "--concurrency", "--quiet"):
        assert flag in opt
    assert "(default: 500)" in opt and "(default: 0)" in opt
    assert "PROGRAM.json compiled program file to check" in " ".join(cli("validate", "--help").out.split())


# 11 ----------------------------------------------------------------------------------------------
def test_11_show_prints_exactly_what_the_program_sends(cli, program_file, questions_file) -> None:  # type: ignore[no-untyped-def]
    from medcompile.lm.scripted import ScriptedLM
    from medcompile.program.io import load
    from medcompile.cli.commands.run import read_questions

    r = cli("show", program_file, "--input", questions_file, "--limit", "2", "--json")
    assert r.rc == 0, r.err
    shown = [json.loads(ln) for ln in r.out.splitlines()]
    prog = load(program_file)
    sent = []
    for q in read_questions(str(questions_file))[:2]:
        rec = ScriptedLM(lambda req: "<model reply>", mode="text")
        prog.run(q, rec)
        sent += [(q.id, req.prompt) for req in rec.requests]
    assert [(s["question_id"], s["prompt"]) for s in shown] == sent and len(sent) == 2
    text = cli("show", program_file, "--input", questions_file, "--mode", "chat")
    assert text.rc == 0 and "[user]" in text.out and "1 model call(s)" in text.out


@pytest.mark.parametrize("spec", ["sim", "sim:base_model", "echo"])
def test_11_offline_models_work_from_every_command(cli, program_file, questions_file, tmp_path, spec) -> None:  # type: ignore[no-untyped-def]
    r = cli("run", program_file, "-i", questions_file, "-o", "a.jsonl", "--lm", spec, "-q")
    assert r.rc == 0 and len(lines(tmp_path / "a.jsonl")) == 3, r.err
    r = cli("eval", program_file, "--data", MEDQA_HEAD, "--lm", spec, "--out", "ev", "-q")
    assert r.rc == 0 and "n=10" in r.out, r.err
    r = cli("compare", program_file, program_file, "--data", MEDQA_HEAD, "--lm", spec, "--lm-b", "sim",
            "--out", "cmp", "-q")
    assert r.rc == 0 and "n=10" in r.out, r.err
    if spec == "sim":  # the slow ones once
        r = cli("ablate", "--train", GENERIC_CSV, "--train-fields", CSV_FIELDS, "--data", MEDQA_HEAD, "--limit", "4",
                "--k", "1", "--shuffles", "2", "--rationales", "2", "--lm", spec, "--out", "abl", "-q")
        assert r.rc == 0 and "n=4 questions per row" in r.out, r.err
