"""Shared pieces of the fuzz tests (test_fuzz_program_files.py, test_fuzz_dataset_rows.py,
test_fuzz_inputs.py): the Hypothesis settings, the tally of bad inputs tried (shared, so one
run reports every kind), the CLI run in this process on a scripted model, and what a clean
refusal looks like."""
from __future__ import annotations

import contextlib
import io
import os
from collections import Counter
from typing import Any, Iterator
from unittest import mock

from hypothesis import HealthCheck, settings

from medcompile import Program
from medcompile.lm.registry import wrap_lm
from tests.faults.faultkit import oracle

FUZZ = settings(max_examples=int(os.environ.get("MEDCOMPILE_FUZZ_EXAMPLES", "150")), deadline=None,
                derandomize=True, database=None, suppress_health_check=list(HealthCheck))
TRIED: Counter[str] = Counter()  # bad inputs tried, by kind (printed with pytest -s)


@contextlib.contextmanager
def scripted_model() -> Iterator[None]:
    """`medcompile run/eval` get the scripted model instead of the one a program names."""
    lm = wrap_lm(oracle(), cache=False, max_retries=0)
    real = Program.resolve_lm

    def resolve_lm(self: Program, spec: Any = None) -> Any:
        return lm if spec is None or isinstance(spec, str) else real(self, spec)

    with mock.patch("medcompile.program.program.Program.resolve_lm", resolve_lm), \
            mock.patch("medcompile.lm.registry.make_lm", lambda *a, **k: lm):
        yield


def cli(*argv: str) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit code, stdout, stderr)."""
    from medcompile.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as exc:
            rc = int(exc.code or 0)
    return rc, out.getvalue(), err.getvalue()


def assert_clean_refusal(rc: int, err: str, *, names: str | None = None) -> None:
    assert rc == 2, err
    assert err.startswith("error: ") or "\nerror: " in err or err.lstrip().startswith("error"), err
    assert "Traceback" not in err
    if names is not None:
        assert names in err, (names, err[:500])
