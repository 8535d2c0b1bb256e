"""The simulated model as a `dspy.BaseLM`.

DSPy 3.4 still supports custom LMs that implement `forward(prompt, messages, **kwargs)`
and return an OpenAI-shaped chat completion (`choices[i].message.content`, `usage`,
`model`); that is what this does. The replies follow the prompt's adapter (ChatAdapter
field blocks or JSONAdapter objects), so DSPy never loses an answer to parsing.

Copies made by DSPy (`lm.copy(rollout_id=..., temperature=...)`) share the call counter
and budget. Sampled calls (temperature > 0) are seeded by the rollout id, an explicit
`seed`, and the choice index when `n` > 1; DSPy's own cache is not used for custom LMs,
so every call reaches the simulator and is counted.
"""
from __future__ import annotations

import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import dspy

from .formats import approx_tokens
from .lm import CountsSimCalls, SimReplier, prompt_text
from .rand import int_seed

if TYPE_CHECKING:
    from .world import SimWorld


def _content(m: Any) -> Any:
    c = m.get("content") if isinstance(m, dict) else getattr(m, "content", "")
    if isinstance(c, list):  # content parts
        c = "\n".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in c)
    return {"role": m.get("role") if isinstance(m, dict) else getattr(m, "role", "user"), "content": c or ""}


class SimDSPyLM(CountsSimCalls, dspy.BaseLM):
    def __init__(self, world: "SimWorld", replicate: int = 0, budget: int | None = None, temperature: float = 0.0,
                 max_tokens: int = 1024, **kwargs: Any) -> None:
        super().__init__(model=world.model_id(replicate), model_type="chat", temperature=temperature,
                         max_tokens=max_tokens, cache=False, **kwargs)
        self.world = world
        self.replicate = int(replicate)
        self._r = SimReplier(world, replicate, budget)


    def forward(self, prompt: str | None = None, messages: list | None = None, **kwargs: Any) -> SimpleNamespace:
        kw = {**self.kwargs, **kwargs}
        temperature = float(kw.get("temperature") or 0.0)
        n = int(kw.get("n") or kw.get("num_generations") or 1)
        msgs = [_content(m) for m in messages] if messages else [{"role": "user", "content": prompt or ""}]
        text = prompt_text("chat", None, msgs)
        t0 = time.perf_counter()
        choices = []
        for i in range(n):
            self._r.count()
            seed = int_seed("dspy", kw.get("rollout_id"), kw.get("seed"), i) if temperature > 0 else 0
            reply, _ = self._r.reply(text, "chat", temperature, seed)
            choices.append(SimpleNamespace(index=i, finish_reason="stop", logprobs=None,
                                           message=SimpleNamespace(role="assistant", content=reply,
                                                                   tool_calls=None, reasoning_content=None)))
        completion = sum(approx_tokens(c.message.content) for c in choices)
        prompt_tokens = approx_tokens(text)
        return SimpleNamespace(choices=choices, model=self.model, cache_hit=False,
                               usage={"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                                      "total_tokens": prompt_tokens + completion},
                               _hidden_params={"response_cost": 0.0}, latency_s=time.perf_counter() - t0)

    async def aforward(self, prompt: str | None = None, messages: list | None = None, **kwargs: Any) -> SimpleNamespace:
        return self.forward(prompt=prompt, messages=messages, **kwargs)
