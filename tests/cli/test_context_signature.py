"""Data with context passages (PubMedQA-like): the command line declares a `context` input
for ready-made programs, so the passages reach the prompt (the signature decides)."""
from __future__ import annotations

import json
from pathlib import Path

from medcompile import load


def write_rows(path: Path, ids: range) -> Path:
    rows = [{"id": f"c{i}", "question": f"Does treatment {i} lower mortality?",
             "options": {"yes": "yes", "no": "no", "maybe": "maybe"}, "answer": "yes",
             "context": f"In trial {i}, treatment {i} lowered mortality."} for i in ids]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_optimize_on_data_with_passages_declares_the_context_input(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    train, dev = write_rows(tmp_path / "train.jsonl", range(0, 6)), write_rows(tmp_path / "dev.jsonl", range(6, 10))
    r = cli("optimize", "zero_shot", "--train", str(train), "--dev", str(dev), "--lm", "echo", "--budget", "40",
            "--trials", "2", "--instructions", "1", "--out", "z.json", "-q")
    assert r.rc == 0, r.err
    prog = load(tmp_path / "z.json")
    assert "context" in prog.signature.input_names
    assert all("context" in m.signature.input_names for _, m in prog.root.walk() if hasattr(m, "signature"))


def test_show_a_ready_made_program_on_questions_with_passages_shows_the_passage(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`show` declares the context input the way optimize/eval/compare do, so the prompt it
    prints is the one those commands would send: with the passage."""
    rows = write_rows(tmp_path / "pubmedqa_like.jsonl", range(2))
    r = cli("show", "zero_shot", "--input", str(rows), "--limit", "2", "--json")
    assert r.rc == 0, r.err
    shown = [json.loads(ln) for ln in r.out.splitlines()]
    assert [s["question_id"] for s in shown] == ["c0", "c1"]
    for i, s in enumerate(shown):
        assert f"In trial {i}, treatment {i} lowered mortality." in s["prompt"]
        assert s["prompt"].index("lowered mortality") < s["prompt"].index(f"Does treatment {i} lower mortality?")
    chat = cli("show", "zero_shot", "--input", str(rows), "--mode", "chat")
    assert chat.rc == 0, chat.err
    assert "In trial 0, treatment 0 lowered mortality." in chat.out


def test_show_keeps_the_plain_signature_without_passages_and_a_compiled_program_as_it_is(
        cli, tmp_path, questions_file, program_file) -> None:  # type: ignore[no-untyped-def]
    plain = cli("show", "zero_shot", "--input", str(questions_file), "--json")
    assert plain.rc == 0, plain.err
    assert "Context" not in json.loads(plain.out.splitlines()[0])["prompt"]
    # a compiled program without a context input is data: show never re-declares it
    rows = write_rows(tmp_path / "with_passages.jsonl", range(1))
    compiled = cli("show", str(program_file), "--input", str(rows), "--json")
    assert compiled.rc == 0, compiled.err
    prompt = json.loads(compiled.out.splitlines()[0])["prompt"]
    assert "Does treatment 0 lower mortality?" in prompt and "lowered mortality" not in prompt


def test_one_rule_for_every_command_that_takes_a_declared_program(tmp_path, program_file) -> None:  # type: ignore[no-untyped-def]
    """optimize, eval, compare and show share `for_questions`: ready-made (and .py) programs get
    the context input on data with passages; compiled programs and plain data are left alone."""
    from dataclasses import replace

    from medcompile.cli.resolve import for_questions, resolve_program
    from medcompile.question import Question

    opts = {"yes": "yes", "no": "no", "maybe": "maybe"}
    with_passages = [Question("c0", "Does it work?", opts, context=None),
                     Question("c1", "Does it help?", opts, context="It helped in a trial.")]
    declared = resolve_program("zero_shot")
    assert "context" not in declared.signature.input_names
    rebuilt = for_questions("zero_shot", declared, with_passages)  # one passage is enough
    assert list(rebuilt.signature.input_names) == ["context", "question", "options"]
    plain = [replace(q, context=None) for q in with_passages]
    assert for_questions("zero_shot", declared, plain) is declared
    compiled = load(program_file)
    assert for_questions(str(program_file), compiled, with_passages) is compiled
