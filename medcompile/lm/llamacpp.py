"""In-process GGUF models through llama-cpp-python: the free, offline default backend.

One `Llama` per LlamaCppLM, loaded on first call and never reset between calls, so
llama.cpp's KV cache reuses the shared token prefix (few-shot prompts share long
prefixes). Prompts are evaluated in fixed chunks (`medcompile.lm.llama_prefix`), so a
reply depends on its request alone, not on which prompts came before it. A lock
serialises calls: a llama context is not thread-safe.
The request seed is passed on every call (llama-cpp-python rebuilds its sampler from
it each time), so sampled outputs are reproducible; temperature 0 is greedy.

A request with `choices` is not generated at all: the keys are scored by their
next-token log-probabilities after the prompt (`medcompile.lm.choices`), so the reply
is always one of the keys and carries a probability for each.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medcompile.lm.base import LMError, LMRequest, LMResponse, Mode
from medcompile.lm.choices import pick_choice, score_choices
from medcompile.lm.cpu_share import CpuShare
from medcompile.lm.llama_prefix import DEFAULT_CHUNK, ChunkedPrompt, ChunkedScorer


THREADS_ENV = "MEDCOMPILE_LLAMA_THREADS"


def fixed_threads() -> int | None:
    """$MEDCOMPILE_LLAMA_THREADS if set (a fixed count, e.g. 1 beside other jobs), else None."""
    env = os.environ.get(THREADS_ENV, "").strip()
    if not env:
        return None
    if not env.isdigit() or int(env) < 1:
        raise LMError(f"${THREADS_ENV} must be a whole number of threads >= 1, got {env!r}")
    return int(env)


def default_threads() -> int:
    """llama.cpp threads a call gets when none are given: $MEDCOMPILE_LLAMA_THREADS, else
    its fair share of the CPUs this process may use (`medcompile.lm.cpu_share`): all of
    them when no other call to a local model runs, so generation never idles a core.

    llama-cpp-python's own default is half the CPUs (it assumes two hyperthreads per
    core); on a 2-vCPU machine that leaves one real core idle while generating: chain of
    thought ran 1.58x slower, direct answers alike (`benchmarks/bench_llama_threads.py`)."""
    fixed = fixed_threads()
    return fixed if fixed is not None else CpuShare().threads_now()


def _import_llama() -> Any:
    try:
        import llama_cpp
    except ImportError as e:  # pragma: no cover - the package is a hard dependency
        raise LMError("local models need llama-cpp-python (pip install llama-cpp-python)") from e
    return llama_cpp


# llama.cpp prints these at context creation even with verbose=False; they are harmless.
_NOISE = re.compile(r"using full-size SWA cache|n_ctx_seq \(\d+\) [<>] n_ctx_train|^\s*$")


@contextlib.contextmanager
def _quiet_native_stderr(captured: list[str]) -> Iterator[None]:
    """Capture what native code writes to fd 2 while loading; replay all but known noise.

    Replaying keeps anything else (another thread's output, a real llama.cpp complaint);
    on failure the caller puts the captured lines into its error message.
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):  # no real stderr (e.g. captured by pytest)
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            captured.extend(tmp.read().decode("utf-8", "replace").splitlines())
    keep = [line for line in captured if not _NOISE.search(line)]
    if keep:
        print("\n".join(keep), file=sys.stderr)


def gguf_metadata(model_path: str | os.PathLike[str]) -> dict[str, str]:
    """The GGUF key/value metadata, read by loading only the vocabulary (fast)."""
    path = Path(model_path)
    if not path.is_file():
        raise LMError(f"model file not found: {path}")
    llama_cpp = _import_llama()
    log: list[str] = []
    try:
        with _quiet_native_stderr(log):
            llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    except Exception as e:  # noqa: BLE001 - llama raises bare ValueError/RuntimeError
        raise LMError(f"cannot read GGUF file {path}: {e}{_tail(log)}") from e
    try:
        return dict(llm.metadata)
    finally:
        llm.close()


def _tail(log: list[str], n: int = 5) -> str:
    lines = [line for line in log if line.strip()][-n:]
    return ("\nllama.cpp said:\n  " + "\n  ".join(lines)) if lines else ""


def has_chat_template(model_path: str | os.PathLike[str]) -> bool:
    """True if the GGUF ships a chat template, i.e. was tuned for chat messages."""
    return "tokenizer.chat_template" in gguf_metadata(model_path)


class LlamaCppLM:
    """A GGUF model run in this process. `model` is a stable id, not a file path."""

    def __init__(self, model_path: str | os.PathLike[str], n_ctx: int = 2048,
                 n_threads: int | None = None, mode: Mode = "text",
                 model_name: str | None = None, prefix_chunk: int = DEFAULT_CHUNK) -> None:
        if mode not in ("text", "chat"):
            raise ValueError(f"mode must be 'text' or 'chat', not {mode!r}")
        self.model_path = Path(model_path)
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.mode: Mode = mode
        self.model = model_name or f"local/{self.model_path.stem.lower()}"
        self.prefix_chunk = prefix_chunk
        self._llm: Any = None
        self._prompt: ChunkedPrompt | None = None
        self._threads = 0  # what the loaded context runs with now
        self._share: CpuShare | None = None
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _loaded(self) -> Iterator[Any]:
        """The model, locked for one call and running with that call's share of the CPUs
        (re-read every call: other processes' calls to local models come and go)."""
        with self._lock:
            fixed = self.n_threads or fixed_threads()
            if self._share is None:
                self._share = CpuShare()
            with self._share.running(fixed) as claim:
                yield self._load(claim.threads())

    def _load(self, threads: int) -> Any:
        if self._llm is None:
            if not self.model_path.is_file():
                raise LMError(f"{self.model}: model file not found: {self.model_path}")
            llama_cpp = _import_llama()
            log: list[str] = []
            try:
                with _quiet_native_stderr(log):  # prompt batches too: the share is for both
                    self._llm = llama_cpp.Llama(model_path=str(self.model_path), n_ctx=self.n_ctx,
                                                n_threads=threads, n_threads_batch=threads,
                                                verbose=False, logits_all=False, seed=0)
            except Exception as e:  # noqa: BLE001
                raise LMError(f"{self.model}: cannot load {self.model_path}: {e}{_tail(log)}") from e
            self._prompt = ChunkedPrompt(self._llm, self.n_ctx, self.prefix_chunk, label=self.model)
        elif threads != self._threads:
            _import_llama().llama_set_n_threads(self._llm.ctx, threads, threads)
        self._threads = threads
        return self._llm

    @property
    def threads(self) -> int:
        """Threads the loaded model runs with now (0 before the first call)."""
        return self._threads

    def complete(self, request: LMRequest) -> LMResponse:
        if request.choices:
            return self._complete_choices(request)
        with self._loaded() as llm:
            prompt = self._prompt
            assert prompt is not None
            t0 = time.perf_counter()
            try:
                tokens = prompt.prompt_tokens(self._prompt_text(llm, request))
                stop = list(request.stop)
                if request.mode == "chat":  # what llama-cpp-python's chat handler adds
                    stop.append(llm._model.token_get_text(llm.token_eos()))
                prompt.evaluate(tokens)
                # the prompt is cached exactly, so llama-cpp-python samples from its logits
                out = llm.create_completion(tokens, max_tokens=request.max_tokens,
                                            temperature=request.temperature, top_p=request.top_p,
                                            stop=stop, seed=request.seed)
                prompt.generated()
                text = out["choices"][0].get("text") or ""
            except LMError:
                prompt.forget()
                raise
            except Exception as e:  # noqa: BLE001 - llama raises bare ValueError/RuntimeError
                prompt.forget()
                hint = "; shorten the prompt or raise n_ctx" if "context window" in str(e) else ""
                raise LMError(f"{self.model} (n_ctx={self.n_ctx}) failed: {e}{hint}",
                              retryable=False) from e
            latency = time.perf_counter() - t0
        usage = out.get("usage") or {}
        return LMResponse(text=text, prompt_tokens=int(usage.get("prompt_tokens", 0)),
                          completion_tokens=int(usage.get("completion_tokens", 0)),
                          cost=0.0, latency_s=latency)

    def _complete_choices(self, request: LMRequest) -> LMResponse:
        """Score the request's choices after its prompt; the reply is the best (or, above
        temperature 0, a seeded draw) and `choice_logprobs` are normalised over them."""
        with self._loaded() as llm:
            prompt = self._prompt
            assert prompt is not None
            t0 = time.perf_counter()
            try:
                tokens = prompt.prompt_tokens(self._prompt_text(llm, request))
                logprobs = score_choices(tokens, request.choices, ChunkedScorer(prompt, tokens))
            except LMError:
                prompt.forget()
                raise
            except Exception as e:  # noqa: BLE001 - llama raises bare ValueError/RuntimeError
                prompt.forget()
                raise LMError(f"{self.model} (n_ctx={self.n_ctx}) failed to score choices: {e}",
                              retryable=False) from e
            latency = time.perf_counter() - t0
        text = pick_choice(logprobs, request.temperature, request.seed)
        return LMResponse(text=text, prompt_tokens=len(tokens), completion_tokens=1, cost=0.0,
                          latency_s=latency, choice_logprobs=logprobs)

    def _prompt_text(self, llm: Any, request: LMRequest) -> str:
        """The exact text the model reads before its reply (chat: through the GGUF's template)."""
        if request.mode != "chat":
            if request.prompt is None:
                raise LMError(f"{self.model}: text-mode request has no prompt")
            return request.prompt
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise LMError(f"{self.model}: chat mode needs a GGUF with a chat template; "
                          "use text mode for base models")
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        vocab = llm._model
        fmt = Jinja2ChatFormatter(template=template,
                                  eos_token=vocab.token_get_text(llm.token_eos()),
                                  bos_token=vocab.token_get_text(llm.token_bos()))
        msgs = [{"role": m.role, "content": m.content} for m in request.messages]
        text = fmt(messages=msgs).prompt
        bos = vocab.token_get_text(llm.token_bos())
        return text[len(bos):] if bos and text.startswith(bos) else text  # the BOS token is added once, below

    def close(self) -> None:
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm, self._prompt = None, None

    def settings(self) -> dict:
        return {"backend": "llamacpp", "model": self.model, "mode": self.mode,
                "n_ctx": self.n_ctx, "file": self.model_path.name}
