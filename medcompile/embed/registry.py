"""Build an embedder from a short string or from a saved `settings()` dict.

Strings are what users type on the command line; dicts are what frozen programs
store. `make_embedder(e.settings())` rebuilds an embedder with the same `id`, and
instances are cached per process so that weights load once.

Spec strings:
  None, "wordllama", "wordllama:64"            -> WordLlama (default, offline)
  "st:/path/to/model", "st:model-name", "minilm",
  "sentence-transformers/all-MiniLM-L6-v2"     -> sentence-transformers
  "litellm:openai/text-embedding-3-small"      -> litellm
"""
from __future__ import annotations

import json
import threading
from typing import Any

from medcompile.embed.base import Embedder, EmbedderError
from medcompile.embed.litellm_embedder import LiteLLMEmbedder
from medcompile.embed.st_embedder import SentenceTransformerEmbedder
from medcompile.embed.wordllama_embedder import DEFAULT_CONFIG, WordLlamaEmbedder

DEFAULT_SPEC = "wordllama"
_KINDS = ("wordllama", "sentence-transformers", "litellm")
_ST_KINDS = {"st", "sentence-transformers", "sentence_transformers"}
_INSTANCES: dict[str, Embedder] = {}
_LOCK = threading.Lock()


def parse_spec(spec: str | dict[str, Any] | None) -> dict[str, Any]:
    """Turn any accepted spec into a settings-like dict with a canonical `kind`."""
    if spec is None:
        spec = DEFAULT_SPEC
    if isinstance(spec, dict):
        d = dict(spec)
        kind = d.get("kind")
        if kind in _ST_KINDS:
            d["kind"] = "sentence-transformers"
        elif kind not in _KINDS:
            raise EmbedderError(f"embedder settings: unknown kind {kind!r}; expected one of {list(_KINDS)}")
        return d
    if not isinstance(spec, str) or not spec.strip():
        raise EmbedderError(f"embedder spec must be a non-empty string, a settings dict or None, got {spec!r}")
    s = spec.strip()
    head, sep, rest = s.partition(":")
    if s == "wordllama" or (head == "wordllama" and sep):
        return {"kind": "wordllama", **({"dim": _int(rest, s)} if rest else {})}
    if head in _ST_KINDS and sep:
        return {"kind": "sentence-transformers", "model": rest}
    if head == "litellm" and sep and rest:
        return {"kind": "litellm", "model": rest}
    if s.lower() in {"minilm", "all-minilm-l6-v2"} or s.startswith("sentence-transformers/"):
        return {"kind": "sentence-transformers", "model": s}
    raise EmbedderError(
        f"unknown embedder spec {spec!r}: use 'wordllama', 'st:/path', 'st:model-name', "
        f"'sentence-transformers/NAME' or 'litellm:provider/model'"
    )


def _int(text: str, spec: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise EmbedderError(f"embedder spec {spec!r}: {text!r} is not an integer dim") from None


def _build(d: dict[str, Any]) -> Embedder:
    if d.get("normalize", True) is not True:
        raise EmbedderError("embedder settings: normalize must be true (kNN uses inner product on unit vectors)")
    kind = d["kind"]
    if kind == "wordllama":
        e: Embedder = WordLlamaEmbedder(config=d.get("model", DEFAULT_CONFIG), dim=int(d.get("dim", 256)))
    elif kind == "sentence-transformers":
        if not d.get("model"):
            raise EmbedderError("sentence-transformers embedder needs a model name or path")
        e = SentenceTransformerEmbedder(d["model"], **_pick(d, "device", "batch_size", "allow_download"))
    else:
        e = LiteLLMEmbedder(d["model"], **_pick(d, "dim", "dimensions", "api_base", "api_key_env",
                                                "batch_size", "timeout", "max_retries"))
    want = d.get("dim")
    if want is not None and kind != "litellm" and int(want) != e.dim:
        raise EmbedderError(f"embedder {e.id!r} has dim {e.dim}, but the settings say {want}")
    return e


def _pick(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: d[k] for k in keys if d.get(k) is not None}


def make_embedder(spec: str | dict[str, Any] | None = None) -> Embedder:
    """Return the embedder for `spec`, reusing an already-built one with the same settings."""
    d = parse_spec(spec)
    key = json.dumps(d, sort_keys=True, default=str)
    with _LOCK:
        cached = _INSTANCES.get(key)
    if cached is not None:
        return cached
    e = _build(d)  # outside the lock: loading is slow, and models are loaded once anyway
    canonical = "settings:" + json.dumps(e.settings(), sort_keys=True)
    with _LOCK:
        e = _INSTANCES.setdefault(canonical, e)  # 'wordllama' and its settings dict share one instance
        return _INSTANCES.setdefault(key, e)


def clear_embedder_cache() -> None:
    """Forget built embedders (tests)."""
    with _LOCK:
        _INSTANCES.clear()
