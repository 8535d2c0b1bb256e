"""The contract between the compiler and text embedders.

The compiler only needs "texts in, unit vectors out", plus enough description of
the embedder (`settings()`) to rebuild the same one when a frozen program is
loaded again. Rows are L2-normalised so that inner product is cosine similarity
and one faiss `IndexFlatIP` serves every embedder.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


class EmbedderError(RuntimeError):
    """Embedding failed or an embedder could not be built.

    `retryable` says whether trying again may help (rate limits, timeouts).
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into L2-normalised float32 vectors.

    `id` is stable across processes and machines (it goes into frozen programs and
    cache keys); `settings()` is JSON-safe, holds no secrets, and
    `make_embedder(e.settings())` rebuilds an equivalent embedder.
    """

    @property
    def id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def settings(self) -> dict[str, Any]: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...


def check_texts(texts: Sequence[str], who: str) -> list[str]:
    """Validate input early: a bad item deep inside a batch gives useless errors later."""
    if isinstance(texts, str):
        raise EmbedderError(f"{who}: embed() takes a list of strings, not a single string")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise EmbedderError(f"{who}: text at index {i} is {type(t).__name__}, not str")
        if not t.strip():
            raise EmbedderError(f"{who}: text at index {i} is empty; an empty text has no embedding")
    return out


def l2_normalize(m: np.ndarray, who: str) -> np.ndarray:
    """Return float32 rows of unit length; fail loudly on rows that cannot be normalised.

    The norm is taken in float64 so that the result does not depend on BLAS paths.
    """
    arr = np.asarray(m, dtype=np.float64)
    if arr.ndim != 2:
        raise EmbedderError(f"{who}: expected a 2-d embedding matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.argwhere(~np.isfinite(arr))[0][0])
        raise EmbedderError(f"{who}: embedding of text {bad} has non-finite values")
    norms = np.sqrt(np.einsum("ij,ij->i", arr, arr))
    zero = np.flatnonzero(norms == 0.0)
    if zero.size:
        raise EmbedderError(
            f"{who}: embedding of text {int(zero[0])} is all zeros (no known tokens?); cannot normalise"
        )
    return np.ascontiguousarray(arr / norms[:, None], dtype=np.float32)


def empty_matrix(dim: int) -> np.ndarray:
    """The (0, dim) result for an empty batch, so callers need no special case."""
    return np.zeros((0, dim), dtype=np.float32)


_MODELS: dict[tuple, Any] = {}
_MODELS_LOCK = threading.Lock()


def load_once(key: tuple, loader: Callable[[], Any]) -> Any:
    """Load a model at most once per process (loading weights per call is wasteful).

    One lock for all loads keeps two threads from loading the same weights twice;
    loads are rare, so the coarse lock costs nothing in practice.
    """
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = loader()
        return _MODELS[key]


def clear_model_cache() -> None:
    """Forget loaded models (tests; freeing memory in long-lived servers)."""
    with _MODELS_LOCK:
        _MODELS.clear()
