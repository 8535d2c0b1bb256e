"""Benchmark: chunked prompt evaluation (history-free replies) against longest-prefix reuse.

llama-cpp-python reuses the longest cached token prefix, which made a reply depend on
the prompts evaluated before it (`medcompile.lm.llama_prefix`). medcompile now
evaluates prompts in fixed chunks aligned to position 0 and reuses only whole chunks.
This measures what that costs, side by side in one run: the same real MedQA questions
through the old reuse (emulated here), chunks of 64 tokens (the default) decoded one by
one or (the default, where `calibrate` allows) whole chunks together, and chunks of 128,
the variant order rotating per question so drift in the machine's load hits all alike.
Call shapes: a direct answer, a 5-shot kNN direct answer (a long fresh prompt), a
5-shuffle 5-shot kNN ensemble (the reuse-heavy Medprompt shape) and a sampled chain of
thought (generation-bound).

After the timed pass each variant answers the same questions again in reverse order
(another history); it reports how many predictions (answer, probabilities, rationale)
came out identical. History-free evaluation must give all of them.

    python benchmarks/bench_llama_prefix.py            # 10 questions per shape
    python benchmarks/bench_llama_prefix.py --quick    # 2 per shape (~2 min)

Writes benchmarks/results/llama_prefix.{json,md} (`--quick`: llama_prefix_quick.*).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, medqa_bank_and_dev, pct, save_json  # noqa: E402

from medcompile.lm.llama_prefix import ChunkedPrompt, shared_prefix  # noqa: E402

LEGACY = "longest prefix (old)"


class LongestPrefix(ChunkedPrompt):
    """The old reuse, for comparison: every shared token, the rest in one evaluation."""

    def reusable(self, tokens: Sequence[int]) -> int:
        common = shared_prefix(self._tokens, tokens)
        if self._logits_current and common == len(tokens) == len(self._tokens):
            return common
        return min(common, len(tokens) - 1)

    def evaluate(self, tokens: Sequence[int]) -> None:
        tokens = list(tokens)
        self.check_fits(tokens)
        keep = self.reusable(tokens)
        if keep < len(tokens):
            self.llm.n_tokens = keep
            self.llm.eval(tokens[keep:])  # llama-cpp-python splits it into n_batch pieces
            self._tokens, self._logits_current = tokens, True


def shapes(bank: Any) -> dict[str, Any]:
    from medcompile import Predict, Retrieve, SelfCoT, Shuffle
    from medcompile.program import Program

    knn = Retrieve(k=5, strategy="knn", bank=bank, tune=False)
    return {  # questions differ per shape, so every shape starts from fresh prompts
        "direct": Program(Predict(tune=False), name="direct"),
        "knn5_direct": Program(Predict(demos=knn, tune=False), name="knn5_direct"),
        "knn5_shuffle5_direct": Program(Shuffle(Predict(demos=knn, tune=False), n=5, tune=False),
                                        name="knn5_shuffle5_direct"),
        "cot_sampled": Program(SelfCoT(cot=True, temperature=0.7, tune=False), name="cot_sampled"),
    }


def make_variants() -> dict[str, Any]:
    from medcompile.lm.registry import layers, make_lm

    out = {}
    for name, chunk in ((LEGACY, 64), ("chunk 64, a decode per chunk", 64), ("chunk 64 (default)", 64),
                        ("chunk 128", 128)):
        lm = make_lm("local", cache=False, prefix_chunk=chunk, model_name=f"local/prefix-bench-{name}")
        backend = layers(lm)[-1]
        with backend._loaded():
            pass  # load it
        if name == LEGACY:
            backend._prompt = LongestPrefix(backend._llm, backend.n_ctx, label=backend.model)
        elif "a decode per chunk" in name:
            backend._prompt.merge = False
        out[name] = lm
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10, help="questions per call shape")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    n = 2 if a.quick else a.n

    bank, dev = medqa_bank_and_dev()
    lms = make_variants()
    names = list(lms)
    progs = shapes(bank)
    for p in progs.values():
        p.prepare()
    for lm in lms.values():  # warm every model on a question no shape uses
        progs["direct"].run(dev[-1], lm)
    out: dict[str, Any] = {"machine": machine(), "n": n, "variants": names, "shapes": {}}
    t0 = time.perf_counter()
    for s, (shape, prog) in enumerate(progs.items()):
        qs = dev[s * n:(s + 1) * n]
        lat: dict[str, list[float]] = {k: [] for k in names}
        gen: dict[str, list[int]] = {k: [] for k in names}
        first: dict[str, list[str]] = {k: [] for k in names}
        for i, q in enumerate(qs):
            for k in names[i % len(names):] + names[:i % len(names)]:
                r = prog.run(q, lms[k])
                lat[k].append(r.latency_s)
                gen[k].append(r.usage.completion_tokens)
                first[k].append(json.dumps(r.prediction.to_dict(rationales=True), sort_keys=True))
        same = {k: sum(json.dumps(prog.run(q, lms[k]).prediction.to_dict(rationales=True), sort_keys=True) == f
                       for q, f in zip(reversed(qs), reversed(first[k]))) for k in names}
        row: dict[str, Any] = {"median_s": {}, "ratio_to_old_median": {}, "ratio_to_old_iqr": {},
                               "identical_on_rerun": same,
                               "generated_tokens": {k: sum(v) for k, v in gen.items()}}
        for k in names:
            ratios = [x / o for x, o in zip(lat[k], lat[LEGACY])]
            row["median_s"][k] = round(statistics.median(lat[k]), 3)
            row["ratio_to_old_median"][k] = round(statistics.median(ratios), 3)
            row["ratio_to_old_iqr"][k] = [round(pct(ratios, 25), 3), round(pct(ratios, 75), 3)]
        out["shapes"][shape] = row
        print(f"[{time.perf_counter() - t0:.0f}s] {shape}: {row}", flush=True)
    out["machine"]["loadavg_1_5_15_end"] = machine().get("loadavg_1_5_15")
    name = "llama_prefix" + ("_quick" if a.quick else "")
    (RESULTS / f"{name}.md").write_text(report(out, argv), encoding="utf-8")
    save_json(f"{name}.json", out)
    print(report(out, argv))
    return 0


def report(out: dict[str, Any], argv: list[str] | None) -> str:
    names, n = out["variants"], out["n"]
    cmd = " ".join(["python benchmarks/bench_llama_prefix.py", *(argv if argv is not None else sys.argv[1:])])
    md = ["# Chunked prompt evaluation vs longest-prefix reuse (embedded model)", "",
          f"Command: `{cmd}`", "",
          f"{n} MedQA dev questions per shape (different per shape), variant order rotated per "
          f"question; load average {out['machine'].get('loadavg_1_5_15')} at the start, "
          f"{out['machine'].get('loadavg_1_5_15_end')} at the end. Time ratio = variant / old, per "
          "question: median [IQR]. Identical = predictions unchanged when the same questions are "
          f"answered again in reverse order, of {n}. Sampled replies differ between variants (their "
          "logits differ in the last bits), so a chain of thought's time also follows its length: "
          "tok = tokens generated over the shape's questions.", "",
          "| call shape | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for shape, row in out["shapes"].items():
        cells = [f"{row['median_s'][k]} s; x{row['ratio_to_old_median'][k]:.2f} "
                 f"[{row['ratio_to_old_iqr'][k][0]:.2f}, {row['ratio_to_old_iqr'][k][1]:.2f}]; "
                 f"identical {row['identical_on_rerun'][k]}; tok {row['generated_tokens'][k]}" for k in names]
        md.append(f"| {shape} | " + " | ".join(cells) + " |")
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    sys.exit(main())
