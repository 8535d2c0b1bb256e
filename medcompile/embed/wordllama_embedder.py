"""Default embedder: WordLlama static token embeddings, fully offline.

WordLlama averages per-token vectors taken from an LLM's embedding table, so it is
tiny, CPU-fast and deterministic, and its wheel ships the `l2_supercat` 256-dim
weights: nothing is ever fetched from a model hub. Lower dims (64, 128) are
Matryoshka truncations of the same weights.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from medcompile.embed.base import EmbedderError, check_texts, empty_matrix, l2_normalize, load_once

DEFAULT_CONFIG = "l2_supercat"
DEFAULT_DIM = 256
# The wheel ships only l2_supercat_256; smaller dims truncate it, larger ones would need a download.
_SHIPPED_DIM = 256
_TRUNC_DIMS = (64, 128, 256)


def _import_wordllama() -> Any:
    """Import wordllama without letting it reconfigure the application's logging.

    wordllama calls `logging.basicConfig(level=INFO)` at import time; undo that so
    importing an embedder does not change what the host program logs.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import wordllama
    except ImportError as e:  # pragma: no cover - dependency is pinned
        raise EmbedderError("the 'wordllama' package is not installed (pip install wordllama)") from e
    finally:
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)
    return wordllama


def _load(config: str, dim: int) -> Any:
    """Load the shipped weights without any download attempt.

    wordllama looks for a shipped tokenizer under `wordllama/tokenizer/` but the wheel
    puts it in `wordllama/tokenizers/`, which is where it looks inside a cache dir; so
    the package directory itself is passed as the cache dir.
    """
    wordllama = _import_wordllama()
    trunc = None if dim == _SHIPPED_DIM else dim
    try:
        return wordllama.WordLlama.load(config=config, dim=_SHIPPED_DIM, trunc_dim=trunc,
                                        cache_dir=Path(wordllama.__file__).parent, disable_download=True)
    except (FileNotFoundError, AttributeError, ValueError) as e:
        raise EmbedderError(
            f"wordllama model {config!r} (dim {dim}) is not available offline: {str(e).rstrip('.')}. "
            f"The wheel ships {DEFAULT_CONFIG!r} with dims {list(_TRUNC_DIMS)}."
        ) from e


class WordLlamaEmbedder:
    """WordLlama embeddings, L2-normalised. Cheap to construct after the first load."""

    kind = "wordllama"

    def __init__(self, config: str = DEFAULT_CONFIG, dim: int = DEFAULT_DIM, batch_size: int = 64) -> None:
        if config != DEFAULT_CONFIG or dim not in _TRUNC_DIMS:
            raise EmbedderError(
                f"wordllama {config!r}/{dim} is not available offline; "
                f"use config {DEFAULT_CONFIG!r} with dim in {list(_TRUNC_DIMS)}"
            )
        if batch_size < 1:
            raise EmbedderError(f"wordllama: batch_size must be >= 1, got {batch_size}")
        self.config = config
        self.dim = dim
        self.batch_size = batch_size
        self.id = f"wordllama/{config}/{dim}"
        self._model = load_once(("wordllama", config, dim), lambda: _load(config, dim))

    def settings(self) -> dict[str, Any]:
        """Everything that determines the vectors (batch size does not, so it is left out)."""
        return {"kind": self.kind, "model": self.config, "dim": self.dim, "normalize": True}

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts; the same text always gets the same bytes, whatever its batch."""
        items = check_texts(texts, self.id)
        if not items:
            return empty_matrix(self.dim)
        raw = self._model.embed(items, norm=False, return_np=True, batch_size=self.batch_size)
        return l2_normalize(raw, self.id)

    def __repr__(self) -> str:
        return f"WordLlamaEmbedder({self.id!r})"
