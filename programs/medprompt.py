"""Medprompt (Nori et al., 2023): kNN dynamic few-shot, self-generated chain of
thought, choice-shuffle ensemble and majority vote.

Retrieve -> SelfCoT -> Shuffle(5) -> Vote. Each stage is a tunable default, so the
compiler may, for a given model, turn chain of thought off, use fewer shuffles or
random exemplars when that scores better on the dev split.
"""
from medcompile import Program, Retrieve, SelfCoT, Shuffle, Vote


def build(signature=None) -> Program:
    return Program(Vote(Shuffle(SelfCoT(signature, demos=Retrieve(k=5)), n=5)), name="medprompt")
