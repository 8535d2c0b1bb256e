"""Zero-shot: one call, direct answer. The baseline every other program must beat."""
from medcompile import Predict, Program


def build(signature=None) -> Program:
    return Program(Predict(signature, tune=False), name="zero_shot")
