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
