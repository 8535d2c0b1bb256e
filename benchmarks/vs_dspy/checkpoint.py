"""Resume state of a long head-to-head (issue 11's n=254 run takes longer than one sitting).

Kept in benchmarks/results/vs_dspy_resume/<config hash>/, small enough to commit so the run
can go on on another machine: each finished compile (its record as measured then, and the
compiled program: medcompile's frozen JSON, DSPy's `Module.save` state) and one line per
answered (program, test question). A resumed run loads the programs instead of compiling
them again and answers only the questions not yet answered; its report counts calls from
the per-question records, so they add up across sittings. KNNFewShot is compiled again
(it makes no model calls; its kNN lookup lives in code, not in saved state).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

from _common import RESULTS

#: The arguments that change what is compiled or answered (not deadlines or wall limits).
IDENTITY = ("bank", "dev", "test", "budget", "mc_trials", "minibatch", "dspy_max_tokens", "dspy_max_errors",
            "max_tokens_cap", "n_ctx", "mipro_candidates", "mipro_trials", "mipro_minibatch")
RECOMPILE = {"dspy_knn"}  # no model calls to compile, state not saveable


class Checkpoint:
    def __init__(self, args: Any, root: Path = RESULTS) -> None:
        ident = {k: getattr(args, k) for k in IDENTITY}
        digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
        self.folder = root / "vs_dspy_resume" / digest
        (self.folder / "programs").mkdir(parents=True, exist_ok=True)
        (self.folder / "config.json").write_text(json.dumps(ident, indent=1, sort_keys=True) + "\n")
        self.records: dict[str, dict[str, Any]] = _read_json(self.folder / "compile.json")
        self.answers: dict[tuple[str, str], dict[str, Any]] = {}
        path = self.folder / "answers.jsonl"
        if path.exists():
            text = path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):  # a line cut by a kill: drop it, so appends stay whole lines
                text = text[:text.rfind("\n") + 1]
                path.write_text(text, encoding="utf-8")
            for line in text.splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill: answered again
                    continue
                self.answers[row["program"], row["q"]] = row

    def _program_path(self, name: str) -> Path:
        return self.folder / "programs" / f"{name}.json"

    def compiled(self, name: str, load: Callable[[Path], Any]) -> tuple[dict[str, Any], Any] | None:
        """(the compile's record, the loaded program) if this compile finished in an earlier sitting."""
        rec = self.records.get(name)
        if rec is None or name in RECOMPILE or not self._program_path(name).exists():
            return None
        return rec, load(self._program_path(name))

    def save_compiled(self, name: str, rec: dict[str, Any], save: Callable[[Path], None] | None) -> None:
        if save is not None and name not in RECOMPILE:
            tmp = self._program_path(name).with_suffix(".tmp.json")
            save(tmp)
            os.replace(tmp, self._program_path(name))
        self.records[name] = rec
        tmp = self.folder / "compile.json.tmp"
        tmp.write_text(json.dumps(self.records, indent=1, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.folder / "compile.json")

    def answer(self, name: str, qid: str) -> dict[str, Any] | None:
        return self.answers.get((name, qid))

    def add_answer(self, row: dict[str, Any]) -> None:
        self.answers[row["program"], row["q"]] = row
        with open(self.folder / "answers.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
