"""The model options of every command that calls a model, defined once.

optimize, run, eval, compare (with -b variants for the second model), ablate and
serve all take the same `--lm`, `--api-base`, `--mode`, `--concurrency`,
`--cache/--no-cache` and `--cache-dir`, and build the model stack the same way.
"""
from __future__ import annotations

import argparse
import hashlib
from typing import Any

from .argtypes import positive_float, positive_int

LM_HELP = ("model spec: 'local' (embedded Gemma 3 270M), 'gguf:/path/model.gguf', 'echo' (offline: replies with "
           "the prompt it got), 'sim' or 'sim:<profile>' (offline simulated model, for trying commands and "
           "scripts), or a litellm name: openai/gpt-4o-mini, ollama/llama3, openai/<served-name> with --api-base")
#: Specs that never leave the machine and answer instantly: their replies are not cached by default.
OFFLINE_FAKES = ("echo", "sim", "scripted")
SCRIPTED = "scripted"  # tests and benchmarks only; deliberately not in --help


class ModelSpecError(ValueError):
    """A model option that cannot work (e.g. --api-base with the embedded model)."""


def add_model_args(p: argparse.ArgumentParser, *, default_lm: str | None, second: bool = False,
                   concurrency_help: str = "questions answered at once (each may make several model calls)",
                   concurrency_flags: tuple[str, ...] = ("--concurrency",), concurrency_dest: str = "concurrency",
                   concurrency_default: int = 1) -> None:
    g = p.add_argument_group("model options", "which model answers and how it is reached; the same for every "
                                              "command (see the README, 'Model options')")
    own = " (default: the model the program was compiled for)" if default_lm is None else ""
    g.add_argument("--lm", default=default_lm, metavar="SPEC", help=LM_HELP + own)
    g.add_argument("--api-base", default=None, metavar="URL",
                   help="OpenAI-compatible server for a litellm model, e.g. http://127.0.0.1:8080/v1 with "
                        "--lm openai/<served-name> (vLLM, llama.cpp server); no key needed for such a server")
    g.add_argument("--mode", "--lm-mode", dest="mode", choices=("text", "chat"), default=None,
                   help="send a plain text prompt (base models) or chat messages (chat models); default: the "
                        "mode the program was compiled with, else guessed from the model")
    if second:
        g.add_argument("--lm-b", default=None, metavar="SPEC", help="model for program B (default: --lm)")
        g.add_argument("--api-base-b", default=None, metavar="URL", help="server for --lm-b (default: --api-base)")
        g.add_argument("--mode-b", choices=("text", "chat"), default=None, help="mode for --lm-b (default: --mode)")
    g.add_argument(*concurrency_flags, dest=concurrency_dest, type=positive_int, default=concurrency_default,
                   metavar="N", help=concurrency_help)
    g.add_argument("--lm-timeout", type=positive_float, default=None, metavar="SECONDS",
                   help="seconds to wait for one reply from a remote model or server before retrying "
                        "(default: 60; raise it for a slow local server)")
    g.add_argument("--cache", action=argparse.BooleanOptionalAction, default=None,
                   help="reuse and store model replies in the on-disk cache, so reruns and resumed runs cost "
                        "nothing (default: on; off for the offline fakes echo and sim)")
    g.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="response cache directory (default: $MEDCOMPILE_CACHE_DIR, else ~/.cache/medcompile)")


def is_offline_fake(spec: str) -> bool:
    return spec.split(":", 1)[0] in OFFLINE_FAKES


def is_remote(spec: str) -> bool:
    """A litellm name (a provider or a server), not a model run in this process."""
    return not (is_offline_fake(spec) or spec == "local" or spec.startswith(("local/", "gguf:")))


class Models:
    """Builds (once per distinct setting) the model stack the options ask for.

    Called with a program, it falls back to the model that program was compiled for;
    `b=True` reads the -b options of `compare`, each falling back to the A option.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._built: dict[tuple[Any, ...], Any] = {}

    def options(self, program: Any = None, *, b: bool = False) -> tuple[str, str | None, str | None]:
        a = self.args
        spec = (getattr(a, "lm_b", None) if b else None) or a.lm
        api_base = (getattr(a, "api_base_b", None) if b else None) or a.api_base
        mode = (getattr(a, "mode_b", None) if b else None) or a.mode
        if spec is None:
            settings = (getattr(program, "lm_settings", None) or {}) if program is not None else {}
            spec = settings.get("spec") or settings.get("model") or "local"
            mode = mode or settings.get("mode")
        return spec, api_base, mode

    def __call__(self, program: Any = None, *, b: bool = False) -> Any:
        spec, api_base, mode = self.options(program, b=b)
        key = (spec, api_base, mode)
        if key not in self._built:
            self._built[key] = self.build(spec, api_base, mode)
        return self._built[key]

    def build(self, spec: str, api_base: str | None, mode: str | None) -> Any:
        from ..lm.registry import make_lm

        cache = self.args.cache if self.args.cache is not None else not is_offline_fake(spec)
        if spec.split(":", 1)[0] == SCRIPTED:
            return scripted_lm(spec, mode or "text")
        extra: dict[str, Any] = {}
        if getattr(self.args, "lm_timeout", None) is not None:
            if not is_remote(spec):
                raise ModelSpecError(f"--lm-timeout applies to remote models and servers, not --lm {spec}")
            extra["timeout"] = self.args.lm_timeout
        try:
            lm = make_lm(spec, cache=cache, cache_dir=self.args.cache_dir, mode=mode,  # type: ignore[arg-type]
                         api_base=api_base, **extra)
        except ValueError as exc:
            raise ModelSpecError(f"--lm {spec}: {exc}") from None
        preflight(lm)
        return lm


def preflight(lm: Any) -> None:
    """Refuse a model name no litellm provider claims before any work starts (it could
    never answer), with the same message the first call would give."""
    from ..lm.registry import layers

    backend = layers(lm)[-1]
    if type(backend).__name__ != "LiteLLMLM":
        return
    from ..lm.base import LMConfigError
    from ..lm.errors import unknown_model_message
    from ..lm.litellm_lm import _lazy_litellm

    try:
        _lazy_litellm().get_llm_provider(backend.model)
    except Exception as exc:  # noqa: BLE001 - litellm raises its BadRequestError here
        if "LLM Provider NOT provided" in str(exc) or "Provider" in type(exc).__name__:
            raise LMConfigError(unknown_model_message(backend.model)) from None


def scripted_lm(spec: str, mode: str = "text") -> Any:
    """The benchmark/test model `scripted[:latency=0.005,answer=A]`, wrapped like a real one.

    It answers KEY, or one option of the question (chosen by a hash of the prompt),
    after sleeping `latency` seconds per call. Not listed in --help."""
    from ..lm.registry import wrap_lm
    from ..lm.scripted import ScriptedLM

    opts: dict[str, str] = {}
    rest = spec[len(SCRIPTED):].lstrip(":")
    for part in filter(None, rest.split(",")):
        key, sep, value = part.partition("=")
        if not sep or key not in ("latency", "answer"):
            raise ModelSpecError(f"bad scripted model option {part!r}: use latency=SECONDS and/or answer=KEY")
        opts[key] = value
    answer = opts.get("answer")
    try:
        latency = float(opts.get("latency", 0.0))
    except ValueError:
        raise ModelSpecError(f"scripted model: latency must be a number, got {opts['latency']!r}") from None

    def reply(request: Any) -> str:
        if answer:
            return answer
        text = request.prompt or "\n".join(m.content for m in request.messages)
        block = text.rsplit("Options:", 1)[-1].splitlines()
        keys = [ln.split(".", 1)[0].strip() for ln in block if "." in ln and ln.split(".", 1)[0].strip().isalnum()]
        if not keys:
            return "A"
        return keys[int(hashlib.sha256(text.encode()).hexdigest(), 16) % len(keys)]

    return wrap_lm(ScriptedLM(reply, model=SCRIPTED, mode=mode, latency=latency),  # type: ignore[arg-type]
                   cache=False, max_retries=0)
