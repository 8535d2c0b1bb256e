"""Speed and faithfulness of the simulated model family (medcompile.sim).

Measures, on MedQA-US4 (registry = bank + dev + test):
- simulator time per call (no medcompile overhead) for zero-shot and 5-shot CoT prompts, medcompile text
  and chat layouts, and the DSPy face (ChatAdapter prompts);
- world construction (wordllama embedding + k-means topics);
- oracle wall time over programs/medprompt.py's space with 4 instruction candidates, per profile;
- agreement of the oracle's expected accuracy with running configured programs through the LM
  (mean over replicates), for the oracle's best, median and worst configurations;
- kNN vs random exemplars sharing the target's topic.
Writes benchmarks/results/simulator.json. `--quick`: one profile, fewer questions.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save_json  # noqa: E402


def per_call_us(lm, requests) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    for r in requests:
        lm.complete(r)
    return 1e6 * (time.perf_counter() - t) / len(requests)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()

    import dspy

    import medcompile as mc
    from medcompile.bank import Bank
    from medcompile.compile.space import apply
    from medcompile.data import load_dataset, split_named
    from medcompile.exemplar import Exemplar
    from medcompile.prompts.builder import PromptParts
    from medcompile.sim import SimWorld
    from medcompile.sim.oracle import rationale_banks
    from medcompile.sim.proposals import propose
    from programs import medprompt

    ds = load_dataset("medqa_us4")
    bank, dev, test = (split_named(ds, s).questions for s in ("bank", "dev", "test"))
    profiles = ["strong_chat"] if args.quick else ["strong_chat", "base_model", "instruction_sensitive",
                                                    "knn_sensitive", "noisy_sampler", "nothing_helps"]
    n_calls = 100 if args.quick else 254
    out: dict = {"machine": machine(), "quick": args.quick}

    t = time.perf_counter()
    world = SimWorld(bank + dev + test, profile="strong_chat", seed=0)
    out["world_build_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    SimWorld(bank + dev + test, profile="strong_chat", seed=1)
    out["world_build_cached_embeddings_s"] = round(time.perf_counter() - t, 3)

    full = Bank([Exemplar(q, "The findings point to this option and rule out the others, as is typical of "
                             "this presentation and its classic features.") for q in bank])
    knn = full.nearest_many(test[:n_calls], 5)
    prog = mc.Program(mc.Predict("question, options -> answer", tune=False))
    speed = {}
    for mode in ("text", "chat"):
        lm = world.lm(mode=mode)
        for name, cot, demos in (("zero_shot", False, [[]] * n_calls), ("5shot_cot", True, knn)):
            reqs = [prog.builder.request(PromptParts(prog.signature.instruction, d, q, cot), model=lm.model,
                                         mode=mode, temperature=0.0, max_tokens=8, seed=0)
                    for q, d in zip(test[:n_calls], demos)]
            speed[f"{mode}_{name}_us"] = round(per_call_us(lm, reqs), 1)

    class MCQ(dspy.Signature):
        """Answer the multiple-choice question."""

        question: str = dspy.InputField()
        options: str = dspy.InputField()
        answer: str = dspy.OutputField()

    dlm = world.dspy_lm()
    adapter = dspy.ChatAdapter()
    msgs = [adapter.format(MCQ, [], {"question": q.question, "options": "\n".join(f"{k}. {v}" for k, v in
                                                                                  q.options.items())})
            for q in test[:n_calls]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        for m in msgs:
            dlm.forward(messages=m)
        speed["dspy_chat_zero_shot_us"] = round(1e6 * (time.perf_counter() - t) / len(msgs), 1)
    out["per_call"] = speed
    print("simulator time per call (us):", speed)

    dev_knn = full.nearest_many(dev, 5)
    rnd = mc.Retrieve(k=5, strategy="random", bank=full, tune=False).static_demos()
    out["topic_share"] = {
        "knn_k5": round(statistics.mean(world.topic(e.question) == world.topic(q)
                                        for q, row in zip(dev, dev_knn) for e in row), 4),
        "random_k5": round(statistics.mean(world.topic(e.question) == world.topic(q) for q in dev for e in rnd), 4),
        "n_slots": 5 * len(dev)}
    print("same-topic share of exemplars:", out["topic_share"])

    declared = medprompt.build()
    rows = []
    for profile in profiles:
        w = SimWorld(bank + dev + test, profile=profile, seed=0)
        instr = [declared.signature.instruction] + [propose(w.effects, 0.3, "bench", i) for i in range(3)]
        t = time.perf_counter()
        banks, _ = rationale_banks(w, declared, bank)
        t_banks = time.perf_counter() - t
        o = w.oracle(declared, banks, test, instr)
        ranked = sorted(o.rows, key=lambda r: -r.expected_accuracy)
        checks = []
        reps = 2 if args.quick else 4
        for r in (ranked[0], ranked[len(ranked) // 2], ranked[-1]):
            p = mc.Program(apply(declared.root, r.params, banks), templates=declared.templates)
            measured = w.expected_accuracy(
                lambda rep, p=p, w=w: [x.prediction.answer for x in p.run_many(test, w.lm(replicate=rep))],
                test, replicates=reps)
            checks.append({"oracle": round(r.expected_accuracy, 4), "measured": round(measured, 4),
                           "replicates": reps, "calls_per_question": r.calls_per_question})
        row = {"profile": profile, "configurations": len(o.rows), "n_test": len(test), "rationale_bank_s": round(t_banks, 2),
               "oracle_s": round(o.seconds, 2), "best_accuracy": round(o.expected_accuracy, 4),
               "best_calls_per_question": o.calls_per_question, "agreement": checks}
        rows.append(row)
        print(row)
    out["oracle"] = rows
    print("wrote", save_json("simulator.json", out))


if __name__ == "__main__":
    main()
