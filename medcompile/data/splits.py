"""Deterministic splits and samples.

Every choice here is a pure function of question ids and a seed, computed with
sha256 rather than `random`/`hash()`: results do not depend on PYTHONHASHSEED, the
Python version, or the order the questions were loaded in. That keeps compiled
programs, benchmark numbers and cache keys reproducible across machines.
"""
from __future__ import annotations

import hashlib
from typing import Sequence, TypeVar

from ..question import Question
from .validate import Dataset, DatasetError

MEDQA_SPLITS: tuple[str, ...] = ("bank", "dev", "test")
SPLIT_CHOICES: tuple[str, ...] = ("all", "bank", "dev", "test", "train")
_MEDQA_RULE = {0: "bank", 1: "bank", 2: "bank", 3: "dev", 4: "test"}

Q = TypeVar("Q", bound=Question)


def medqa_dev_split(dataset: Dataset) -> dict[str, Dataset]:
    """The development split of medqa_us4 (and us5, whose ids are the same row indexes)
    while the MedQA training set is unavailable: realidx % 5 in {0,1,2} -> 'bank'
    (exemplar pool, 765), 3 -> 'dev' (254), 4 -> 'test' (254). Needs integer ids."""
    parts: dict[str, list[Question]] = {name: [] for name in MEDQA_SPLITS}
    for q in dataset.questions:
        try:
            idx = int(q.id)
        except ValueError:
            raise DatasetError(f"{dataset.source.path}: the MedQA realidx % 5 split needs integer ids, "
                               f"got {q.id!r}") from None
        parts[_MEDQA_RULE[idx % 5]].append(q)
    return {name: dataset.subset(qs, name) for name, qs in parts.items()}


def split_named(ds: Dataset, name: str) -> Dataset:
    """The split behind CLI ``--split``: 'all'; a split the source defines (PubMedQA
    'train'/'test' from test_ground_truth.json); or MedQA 'bank'/'dev'/'test'."""
    if name == "all":
        return ds
    if name in ds.named_splits:
        keep = set(ds.named_splits[name])
        return ds.subset([q for q in ds.questions if q.id in keep], name)
    if ds.source.format == "medqa" and name in MEDQA_SPLITS:
        return medqa_dev_split(ds)[name]
    available = ["all"] + list(ds.named_splits) + (list(MEDQA_SPLITS) if ds.source.format == "medqa" else [])
    hint = ""
    if ds.source.format == "pubmedqa" and not ds.named_splits:
        hint = " (PubMedQA 'train'/'test' need test_ground_truth.json beside ori_pqal.json)"
    raise DatasetError(f"{ds.source.path}: no split {name!r} for format {ds.source.format!r}; "
                       f"available: {', '.join(available)}{hint}")


def _rank(qid: str, seed: int, salt: str) -> bytes:
    return hashlib.sha256(f"{salt}\x1f{seed}\x1f{qid}".encode("utf-8")).digest()


def _order(questions: Sequence[Q], seed: int, salt: str) -> list[int]:
    # Ties (duplicate ids) fall back to input position so the order is still total.
    return sorted(range(len(questions)), key=lambda i: (_rank(questions[i].id, seed, salt), i))


def sample(questions: Sequence[Q], n: int, seed: int = 0) -> list[Q]:
    """`n` questions in a seeded pseudo-random order. Same seed -> same subset and
    order; samples are nested (the first k of a larger sample are the sample of k)."""
    if n < 0:
        raise DatasetError(f"sample size must be >= 0, got {n}")
    if n > len(questions):
        raise DatasetError(f"cannot take {n} questions: only {len(questions)} are available (lower --limit)")
    return [questions[i] for i in _order(questions, seed, "sample")[:n]]


def shuffled(questions: Sequence[Q], seed: int = 0) -> list[Q]:
    """All questions in the seeded order `sample` uses."""
    return sample(questions, len(questions), seed)


def train_dev_split(questions: Sequence[Q], dev_fraction: float, seed: int = 0) -> tuple[list[Q], list[Q]]:
    """Split into (train, dev) with round(dev_fraction * n) dev questions chosen by seed;
    both parts keep the input order. Both are non-empty when n >= 2."""
    if not 0.0 < dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must be between 0 and 1 (exclusive), got {dev_fraction}")
    n = len(questions)
    if n < 2:
        raise ValueError(f"need at least 2 questions to split, got {n}")
    n_dev = min(max(round(dev_fraction * n), 1), n - 1)
    dev_idx = set(_order(questions, seed, "train_dev")[:n_dev])
    train = [q for i, q in enumerate(questions) if i not in dev_idx]
    dev = [q for i, q in enumerate(questions) if i in dev_idx]
    return train, dev
