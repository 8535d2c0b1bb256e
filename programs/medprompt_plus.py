"""Medprompt+ (the Medprompt authors' follow-up): a portfolio that screens every question
with a cheap few-shot direct answer and escalates only the questions it is unsure of to
Medprompt's chain-of-thought choice-shuffle ensemble.

Route(Predict(kNN few-shot, direct) -> Vote(Shuffle(SelfCoT(kNN few-shot), 5))). The
screen's confidence is its option probability where the backend scores options (else a
parsed answer counts as certain), and the compiler chooses the threshold, which members
to keep (threshold 0: screen only; "skip": ensemble only) and every member's own choices.
Calls per question are measured on dev and recorded in the compiled program.
"""
from medcompile import Predict, Program, Retrieve, Route, SelfCoT, Shuffle, Vote


def build(signature=None) -> Program:
    screen = Predict(signature, demos=Retrieve(k=5), tune={"temperature": [0.0]})
    ensemble = Vote(Shuffle(SelfCoT(signature, demos=Retrieve(k=5)), n=5))
    return Program(Route([screen, ensemble]), name="medprompt_plus")
