"""kNN few-shot with direct answers: the compiler picks k and kNN vs random exemplars."""
from medcompile import Predict, Program, Retrieve


def build(signature=None) -> Program:
    return Program(Predict(signature, demos=Retrieve(k=3)), name="few_shot")
