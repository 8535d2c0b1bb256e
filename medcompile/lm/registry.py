"""Turn a model spec string into a ready LM stack, and describe a stack as JSON.

Specs: 'local' / 'local/gemma3-270m' (the embedded model), 'gguf:/path/model.gguf'
(any GGUF file), 'echo' (offline, replies with its prompt), 'sim' / 'sim:<profile>' (the
offline simulated model, medcompile.sim); anything else is a litellm model name
('openai/gpt-4o-mini', 'ollama/llama3', 'text-completion-openai/...'). Every stack is
MeteredLM(CachedLM(LimitedLM(RetryingLM(backend)))), the cache being optional.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

from medcompile.lm.base import Mode
from medcompile.lm.cache import CachedLM, DiskCache
from medcompile.lm.litellm_lm import LiteLLMLM
from medcompile.lm.llamacpp import LlamaCppLM, has_chat_template
from medcompile.lm.local_model import DEFAULT_LOCAL_MODEL, DEFAULT_LOCAL_MODEL_ID, default_gguf_path
from medcompile.lm.meter import MeteredLM
from medcompile.lm.retry import LimitedLM, RetryingLM
from medcompile.lm.wrapper import LMWrapper

LOCAL_SPECS = ("local", DEFAULT_LOCAL_MODEL)
_RETRY_KEYS = ("max_retries", "base_delay", "max_delay")
DEFAULT_REMOTE_CONCURRENCY = 8
_shared: dict[tuple, LlamaCppLM] = {}
_shared_lock = threading.Lock()


@atexit.register
def _close_shared() -> None:
    """Free llama.cpp models before interpreter teardown (its __del__ then fails noisily)."""
    with _shared_lock:
        for lm in _shared.values():
            lm.close()
        _shared.clear()


def _shared_llama(path: Path, mode: Mode, **kw: Any) -> LlamaCppLM:
    """One loaded model per file and settings per process: stacks built separately
    (compile, evaluate, serve) share its weights and its KV prefix cache."""
    kw = {"n_ctx": 2048, "n_threads": None, **kw}  # so defaults and explicit defaults share
    key = (str(path.resolve()), mode, tuple(sorted(kw.items())))
    with _shared_lock:
        if key not in _shared:
            _shared[key] = LlamaCppLM(path, mode=mode, **kw)
        return _shared[key]


def gguf_model_id(path: str | os.PathLike[str]) -> str:
    """A stable model id for a GGUF file: its name plus a content fingerprint.

    The fingerprint (size, first and last MiB) keeps two different 'model.gguf' files
    from sharing cache entries, without hashing hundreds of MB.
    """
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with p.open("rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    return f"local/{p.stem.lower()}-{h.hexdigest()[:8]}"


def make_backend(spec: str, *, mode: Mode | None = None, api_base: str | None = None,
                 **kw: Any) -> Any:
    """The bare backend for `spec`, with no retry, cache or metering."""
    if spec == "sim" or spec.startswith("sim:"):  # the offline simulated model (medcompile.sim)
        from medcompile.sim import world_for_spec

        return world_for_spec(spec[len("sim:"):]).lm(mode=mode or "text")
    if spec in LOCAL_SPECS:
        if api_base:
            raise ValueError("api_base makes no sense for the embedded local model")
        kw.setdefault("model_name", DEFAULT_LOCAL_MODEL_ID)
        return _shared_llama(default_gguf_path(), mode or "text", **kw)
    if spec.startswith("gguf:"):
        path = Path(spec[len("gguf:"):]).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"GGUF model file not found: {path} (from spec {spec!r})")
        if api_base:
            raise ValueError("api_base makes no sense for a local GGUF file")
        mode = mode or ("chat" if has_chat_template(path) else "text")
        kw.setdefault("model_name", gguf_model_id(path))
        return _shared_llama(path, mode, **kw)
    if spec == "echo":  # offline: replies with the exact prompt it got (see what a program sends)
        if api_base:
            raise ValueError("api_base makes no sense for the offline 'echo' model")
        from medcompile.lm.scripted import EchoLM

        return EchoLM(mode=mode or "text")
    if spec.startswith("local/"):
        raise ValueError(f"unknown local model {spec!r}; use 'local' ({DEFAULT_LOCAL_MODEL}) "
                         "or 'gguf:/path/to/model.gguf'")
    return LiteLLMLM(spec, mode=mode, api_base=api_base, **kw)


def wrap_lm(backend: Any, *, cache: bool = True, cache_dir: str | os.PathLike[str] | None = None,
            max_concurrency: int = DEFAULT_REMOTE_CONCURRENCY, max_retries: int = 5,
            base_delay: float = 0.5, max_delay: float = 30.0) -> MeteredLM:
    """The standard stack around any backend (also a ScriptedLM or FaultyLM in tests):
    MeteredLM(CachedLM(LimitedLM(RetryingLM(backend))))."""
    stack: Any = LimitedLM(RetryingLM(backend, max_retries=max_retries, base_delay=base_delay,
                                      max_delay=max_delay), max_concurrency)
    if cache:
        stack = CachedLM(stack, DiskCache(cache_dir))
    return MeteredLM(stack)


def make_lm(spec: str, *, cache: bool = True, cache_dir: str | os.PathLike[str] | None = None,
            max_concurrency: int | None = None, mode: Mode | None = None,
            api_base: str | None = None, **kw: Any) -> MeteredLM:
    """Build the standard stack for `spec`.

    Extra keywords go to the backend (n_ctx, n_threads / api_key_env, timeout, extra),
    except max_retries, base_delay and max_delay, which configure the retries.
    max_concurrency defaults to 1 for local models (one llama context) and 8 for remote.
    """
    retry_kw = {k: kw.pop(k) for k in _RETRY_KEYS if k in kw}
    backend = make_backend(spec, mode=mode, api_base=api_base, **kw)
    if max_concurrency is None:
        max_concurrency = 1 if isinstance(backend, LlamaCppLM) else DEFAULT_REMOTE_CONCURRENCY
    lm = wrap_lm(backend, cache=cache, cache_dir=cache_dir, max_concurrency=max_concurrency, **retry_kw)
    lm.spec = spec
    return lm


def layers(lm: Any) -> list[Any]:
    """The layers from outermost to the backend: every `LMWrapper`, then what it wraps."""
    out = [lm]
    while isinstance(out[-1], LMWrapper):
        out.append(out[-1].inner)
    return out


def lm_settings(lm: Any) -> dict:
    """JSON-safe description of an LM stack for compiled programs; never holds secrets."""
    stack = layers(lm)
    backend = stack[-1]
    d: dict[str, Any] = {"model": backend.model, "mode": backend.mode}
    wrappers = stack[:-1]
    spec = next((x.spec for x in wrappers if x.spec), None)
    if spec is not None:
        d["spec"] = spec
    settings = getattr(backend, "settings", None)
    d["backend"] = settings() if callable(settings) else {"backend": type(backend).__name__}
    d["cache"] = False
    for x in reversed(wrappers):  # outer layers win, as they do when a request passes through
        d.update(x.describe())
    return d
