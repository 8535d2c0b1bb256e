"""The README's commands for an OpenAI-compatible server work as written (against a fake one).

The block under "Running a compiled program on an OpenAI-compatible server" is read from
README.md; every `medcompile` command in it runs in-process with only the server address
swapped for the fake server's port (and `serve` built as it starts, then called over
its API instead of binding a port). The one change: optimize's budget and dev sample are
cut (600 calls, 32 questions -> 40, 8) to keep the normal suite fast; its options are
otherwise the README's.
"""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from medcompile import Predict, Program

README = Path(__file__).resolve().parents[2] / "README.md"
SERVER = "http://127.0.0.1:8080/v1"


def readme_commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("**Running a compiled program on an OpenAI-compatible server**"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README: no command block in the OpenAI-compatible server section"
    joined = block.group(1).replace("\\\n", " ")
    return [shlex.split(ln)[1:] for ln in joined.splitlines() if ln.strip().startswith("medcompile ")]


def test_readme_server_section_has_the_commands() -> None:
    cmds = readme_commands()
    assert [c[0] for c in cmds] == ["run", "eval", "optimize", "serve"]
    for c in cmds:
        assert c[c.index("--api-base") + 1] == SERVER and c[c.index("--lm") + 1] == "openai/gemma3-270m"
    text = README.read_text(encoding="utf-8")
    assert "python -m llama_cpp.server --host 127.0.0.1 --port 8080" in text


def test_readme_server_commands_work_as_written(cli, fake_openai, tmp_path, questions_file) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from medcompile.cli.commands.serve import build_app, load_programs
    from medcompile.cli.main import build_parser
    from medcompile.data import load_dataset

    try:
        load_dataset("medqa_us4")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"MedQA data not available: {exc}")
    questions_file.rename(tmp_path / "questions.jsonl")
    Program(Predict(tune=False), name="medprompt",
            lm={"model": "openai/gemma3-270m", "mode": "text", "spec": "openai/gemma3-270m"}).save(
        str(tmp_path / "medprompt.json"))
    fake_openai.text = " B"
    for argv in readme_commands():
        argv = [fake_openai.base_url if a == SERVER else a for a in argv]
        if argv[0] == "optimize":
            argv[argv.index("--budget") + 1], argv[argv.index("--dev-limit") + 1] = "40", "8"
        if argv[0] == "serve":
            args = build_parser().parse_args(argv)
            with TestClient(build_app(args, load_programs(args.programs))) as client:
                r = client.post("/v1/programs/medprompt/predict",
                                json={"question": "Q?", "options": {"A": "x", "B": "y"}})
            assert r.status_code == 200 and r.json()["answer"] == "B", r.text
            continue
        n = len(fake_openai.requests)
        res = cli(*argv, "-q")
        assert res.rc == 0, (argv[0], res.err)
        assert len(fake_openai.requests) > n and fake_openai.requests[-1]["path"] == "/v1/completions"  # --mode text
    answers = [json.loads(ln) for ln in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert [a["answer"] for a in answers] == ["B", "B", "B"]
    (report,) = (tmp_path / "results").glob("*.eval.json")
    assert json.loads(report.read_text())["n"] == 40
    compiled = json.loads((tmp_path / "medprompt-server.json").read_text())
    assert compiled["lm"]["model"] == "openai/gemma3-270m" and "127.0.0.1" not in json.dumps(compiled["lm"]["spec"])
