"""The declared medcompile programs that define each comparison's search space.

end_to_end: the ready-made Medprompt program (kNN/random few-shot, self-generated CoT
on/off, temperature, instruction, 1/3/5 choice shuffles + vote): medcompile's own best
program for MedQA.
same_space: the same predictor without Shuffle/Vote, `SelfCoT(demos=Retrieve(k=5))`
with its default space (k, kNN vs random, CoT on/off, temperature, instruction), the
space DSPy's few-shot and instruction optimizers search on `dspy.Predict` /
`dspy.ChainOfThought`.
"""
from __future__ import annotations

from medcompile import Program, Retrieve, SelfCoT


def declared(comparison: str) -> Program:
    if comparison == "end_to_end":
        import programs.medprompt as mp

        return mp.build()
    if comparison == "same_space":
        return Program(SelfCoT(None, demos=Retrieve(k=5)), name="selfcot_demos")
    raise ValueError(f"unknown comparison {comparison!r}")


def medprompt_recipe() -> dict[str, object]:
    """Medprompt as published: kNN k=5, CoT with self-generated rationales, 5 shuffles
    + majority vote, the user's instruction, greedy decoding. No search."""
    return {"k": 5, "strategy": "knn", "cot": True, "temperature": 0.0, "n": 5}


def fixed_params(root, recipe: dict[str, object]) -> dict[str, object]:  # noqa: ANN001
    """Map the recipe onto the declared program's parameter keys (paths differ per tree)."""
    from medcompile.compile.space import collect_space

    out: dict[str, object] = {}
    for p in collect_space(root, ()):
        if p.name in recipe:
            out[p.key] = recipe[p.name]
    return out


__all__ = ["declared", "medprompt_recipe", "fixed_params"]
