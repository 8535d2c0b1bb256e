"""medcompile: compile medical multiple-choice prompt programs into frozen JSON.

Declare a program from modules (Retrieve, Predict, SelfCoT, Shuffle, Vote, Refine),
compile it for a model with `optimize`, ship the JSON, `load` it anywhere.
"""
from __future__ import annotations

from .offline import keep_litellm_offline

keep_litellm_offline()  # before anything can import litellm

from .exemplar import Exemplar  # noqa: E402
from .modules import Predict, Prediction, Refine, Retrieve, Route, SelfCoT, Shuffle, Vote  # noqa: E402
from .program import Program, ProgramFileError, Result, load, loads  # noqa: E402
from .question import Question, QuestionError  # noqa: E402
from .signatures import MCQ, Field, Signature, SignatureError  # noqa: E402

__version__ = "0.1.0"


def optimize(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Compile a program for a model (see `medcompile.compile.optimize`)."""
    from .compile import optimize as _optimize

    return _optimize(*args, **kwargs)


def make_lm(spec: str, **kwargs):  # type: ignore[no-untyped-def]
    """Build a model client from a spec: 'local', 'gguf:/path', or any litellm model."""
    from .lm.registry import make_lm as _make_lm

    return _make_lm(spec, **kwargs)


__all__ = ["Exemplar", "Predict", "Prediction", "Refine", "Retrieve", "Route", "SelfCoT", "Shuffle", "Vote", "Program",
           "ProgramFileError", "Result", "load", "loads", "Question", "QuestionError", "MCQ", "Field", "Signature",
           "SignatureError", "optimize", "make_lm", "__version__"]
