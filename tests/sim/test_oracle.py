"""The oracle: exhaustive, agrees with running the programs, and finds the known optima."""
from __future__ import annotations

import medcompile as mc
from medcompile.compile.space import apply
from medcompile.sim.oracle import rationale_banks
from programs import medprompt

SIG = "question, options -> answer"


def test_oracle_matches_running_the_configured_program(world_for, medqa) -> None:  # type: ignore[no-untyped-def]
    w, test = world_for("strong_chat"), medqa["test"][:90]
    prog = medprompt.build()
    banks, _ = rationale_banks(w, prog, medqa["bank"][:200])
    o = w.oracle(prog, banks, test, replicates=64)
    assert len(o.rows) == 2 * 2 * 4 * 2 * 3  # cot x temperature x k x strategy x n: every configuration
    for row in (o.rows[0], max(o.rows, key=lambda r: r.expected_accuracy)):
        program = mc.Program(apply(prog.root, row.params, banks), templates=prog.templates)

        def run(r: int) -> list:
            return [x.prediction.answer for x in program.run_many(test, w.lm(replicate=r))]

        measured = w.expected_accuracy(run, test, replicates=4)
        assert abs(measured - row.expected_accuracy) < 0.05, (row.params, measured, row.expected_accuracy)


def test_oracle_picks_zero_shot_when_nothing_helps(world_for, medqa) -> None:  # type: ignore[no-untyped-def]
    w = world_for("nothing_helps")
    o = w.oracle(medprompt.build(), medqa["bank"][:150], medqa["test"],
                 instructions=["Answer the question.", "Answer the question. Be concise."])
    assert o.calls_per_question == 1.0
    best = {k.rsplit(".", 1)[-1]: v for k, v in o.best.items()}
    assert best["cot"] is False and best["k"] == 0 and best["temperature"] == 0.0 and best["n"] == 1
    assert best["instruction"] == "Answer the question."  # equal accuracy: the first candidate, no extra cost
    assert o.expected_accuracy == max(r.expected_accuracy for r in o.rows)


def test_oracle_picks_a_shuffle_ensemble_for_the_biased_base_model(world_for, medqa) -> None:  # type: ignore[no-untyped-def]
    w = world_for("base_model")
    o = w.oracle(medprompt.build(), medqa["bank"][:150], medqa["test"])
    best = {k.rsplit(".", 1)[-1]: v for k, v in o.best.items()}
    assert best["n"] > 1 and best["cot"] is False
    zero = [r for r in o.rows if r.calls_per_question == 1 and not r.params["members.0.inner.cot"]]
    assert o.expected_accuracy > max(r.expected_accuracy for r in zero) + 0.02
    d = o.to_dict()
    assert d["best"] == o.best and len(d["rows"]) == len(o.rows)


def test_oracle_does_not_depend_on_which_bank_object_holds_the_exemplars(world_for, medqa) -> None:  # type: ignore[no-untyped-def]
    """Noise keys name a bank by its content, so the same exemplars in another object (another
    process, a reloaded program) give the same oracle; an `id()` in the key made it vary."""
    from medcompile.bank import Bank
    from medcompile.compile.space import BankChoice

    w, test = world_for("strong_chat"), medqa["test"][:60]
    prog = medprompt.build()
    banks, _ = rationale_banks(w, prog, medqa["bank"][:120])
    copy = BankChoice(full=Bank(list(banks.full.exemplars)), cot=Bank(list(banks.cot.exemplars)))
    a = w.oracle(prog, banks, test, replicates=16)
    b = w.oracle(prog, copy, test, replicates=16)
    assert [r.expected_accuracy for r in a.rows] == [r.expected_accuracy for r in b.rows]
