"""Med-PaLM 2's ensemble refinement: sample m reasoning paths, then r refined
answers conditioned on them, then vote (m + r calls a question)."""
from medcompile import Program, Refine, Retrieve, SelfCoT


def build(signature=None) -> Program:
    return Program(Refine(SelfCoT(signature, demos=Retrieve(k=3), tune={"cot": [True]}), m=3, r=2),
                   name="ensemble_refinement")
