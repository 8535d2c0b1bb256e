"""A tiny OpenAI-compatible server with a fixed latency and a fixed number of slots.

For throughput benchmarks (bench_concurrency.py): every request takes `--latency-ms`
once it holds one of `--max-concurrency` slots; more requests queue. Its ceiling is
therefore max_concurrency / latency requests per second, which the benchmark also
measures directly. Replies are a fixed answer (" B" for completions, "Answer: B" for
chat). When a request asks for `logprobs` (constrained answers), the reply carries the
top log-probabilities of the answer token in the OpenAI shape (completions:
`logprobs.tokens/top_logprobs`; chat: `logprobs.content[].top_logprobs`). Loopback only.

    python benchmarks/fake_openai_server.py --port 8990 --latency-ms 20 --max-concurrency 8
"""
from __future__ import annotations

import argparse
import asyncio
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


TOP = {" B": -0.22, " A": -2.3, " C": -2.8, " D": -3.2}  # log-probabilities of the answer token


def build_app(latency_s: float, max_concurrency: int) -> Starlette:
    slots = asyncio.Semaphore(max_concurrency)
    state = {"served": 0, "in_flight": 0, "peak": 0}

    async def work() -> None:
        async with slots:
            state["in_flight"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
            try:
                await asyncio.sleep(latency_s)
            finally:
                state["in_flight"] -= 1
                state["served"] += 1

    async def completions(request: Request) -> JSONResponse:
        body = await request.json()
        await work()
        logprobs = ({"tokens": [" B"], "token_logprobs": [TOP[" B"]], "top_logprobs": [TOP]}
                    if body.get("logprobs") else None)
        return JSONResponse({"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()),
                             "model": body.get("model", "fake"),
                             "choices": [{"index": 0, "text": " B", "finish_reason": "stop", "logprobs": logprobs}],
                             "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}})

    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        await work()
        tops = [{"token": t, "logprob": lp} for t, lp in TOP.items()]
        logprobs = ({"content": [{"token": "Answer", "logprob": -0.01, "top_logprobs": []},
                                 {"token": ":", "logprob": -0.01, "top_logprobs": []},
                                 {"token": " B", "logprob": TOP[" B"], "top_logprobs": tops}]}
                    if body.get("logprobs") else None)
        return JSONResponse({"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                             "model": body.get("model", "fake"),
                             "choices": [{"index": 0, "finish_reason": "stop", "logprobs": logprobs,
                                          "message": {"role": "assistant", "content": "Answer: B"}}],
                             "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}})

    async def models(_request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def stats(_request: Request) -> JSONResponse:
        return JSONResponse(state)

    return Starlette(routes=[Route("/v1/completions", completions, methods=["POST"]),
                             Route("/v1/chat/completions", chat, methods=["POST"]),
                             Route("/v1/models", models), Route("/stats", stats)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8990)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--max-concurrency", type=int, default=8)
    a = ap.parse_args()
    uvicorn.run(build_app(a.latency_ms / 1000, a.max_concurrency), host="127.0.0.1", port=a.port,
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
