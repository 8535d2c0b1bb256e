"""Synthetic questions and exemplar banks whose vectors are drawn around real embeddings.

Embedding 100k texts is not what the benchmark measures, so bank vectors are real WordLlama
question embeddings plus Gaussian noise shaped by their covariance (see bench_overhead.py's
docstring for the bandwidth); random unit vectors would have no neighbourhood structure.
"""
from __future__ import annotations

import random

import numpy as np

from medcompile import Exemplar, Question

WORDS = ("patient presents fever cough pain chest abdominal acute chronic history examination shows elevated "
         "serum level blood pressure pulse respiratory rate temperature physician emergency department "
         "year-old woman man child infant medication therapy diagnosis laboratory findings biopsy renal "
         "hepatic cardiac pulmonary neurologic infection inflammation lesion mass swelling rash weakness "
         "fatigue weight loss nausea vomiting diarrhea headache vision hearing glucose sodium potassium").split()
ANSWER_TEXT = "The findings point to the second option because of the history and the laboratory values.\nAnswer: B"
DIM = 256


def synth_question(rng: random.Random, i: int, prefix: str = "b") -> Question:
    words = [rng.choice(WORDS) for _ in range(rng.randint(60, 110))]
    opts = {k: " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5))).capitalize() for k in "ABCD"}
    return Question(id=f"{prefix}{i}", question=f"A {rng.randint(2, 90)}-year-old " + " ".join(words) + "?",
                    options=opts, answer=rng.choice("ABCD"))


_REAL: dict[str, np.ndarray] = {}
BANDWIDTH = 0.9


def real_embeddings() -> np.ndarray:
    """WordLlama embeddings of every question in the bundled datasets (once per run)."""
    if "v" not in _REAL:
        from medcompile.data import load_dataset
        from medcompile.embed import make_embedder

        texts = []
        for name in ("medqa_us4", "medmcqa", "mmlu_medical", "pubmedqa"):
            try:
                texts += [q.question for q in load_dataset(name).questions]
            except Exception:  # noqa: BLE001 - a dataset missing: use the rest
                pass
        _REAL["v"] = make_embedder("wordllama").embed(texts).astype(np.float64) if texts else np.zeros((0, DIM))
    return _REAL["v"]


def bank_vectors(n: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """n unit vectors around the real embeddings (see the module docstring); random if no data."""
    real = real_embeddings()
    rng = np.random.default_rng(seed)
    if len(real) < 100:
        v = rng.standard_normal((n, DIM))
        kind = "random unit vectors (no dataset found)"
    else:
        chol = np.linalg.cholesky(np.cov((real - real.mean(0)).T) + 1e-9 * np.eye(real.shape[1]))
        v = real[rng.integers(0, len(real), n)] + BANDWIDTH * (rng.standard_normal((n, real.shape[1])) @ chol.T)
        kind = f"around {len(real)} real WordLlama question embeddings (bandwidth {BANDWIDTH})"
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float32), kind


def synth_bank(n: int, seed: int = 0) -> tuple[list[Exemplar], np.ndarray]:
    rng = random.Random(seed)
    ex = [Exemplar(synth_question(rng, i), rationale=" ".join(rng.choice(WORDS) for _ in range(40)))
          for i in range(n)]
    return ex, bank_vectors(n, seed)[0]
