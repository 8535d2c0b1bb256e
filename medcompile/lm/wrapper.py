"""The one base class of every layer around a model (metering, budget, cache, retries,
concurrency limit, fault injection).

A layer holds the LM it wraps in `inner` and answers to the same `model` and `mode`,
so it satisfies the `LM` protocol wherever the backend would. Because layers say what
they are by subclassing this, `registry.layers()` walks a stack without guessing from
attributes (a backend may well have an attribute called `inner`), and each layer
describes its own part of the stack (`describe()`) for the program file's `lm` section.
"""
from __future__ import annotations

from typing import Any

from medcompile.lm.base import LM, LMRequest, LMResponse, Mode


class LMWrapper:
    """A pass-through layer; subclasses override `complete` (and `describe`)."""

    #: The spec string the stack was built from ('local', 'openai/gpt-4o-mini'); set by
    #: `registry.make_lm` on the outermost layer, None for stacks built by hand.
    spec: str | None = None

    def __init__(self, inner: LM) -> None:
        self.inner = inner
        self.model: str = inner.model  # plain attributes: wrappers satisfy the LM protocol
        self.mode: Mode = inner.mode

    def complete(self, request: LMRequest) -> LMResponse:
        return self.inner.complete(request)

    def describe(self) -> dict[str, Any]:
        """This layer's settings for the stack's description (never secrets)."""
        return {}
