"""``inference-benchmark request-path``: the CPU our own request path costs per request, without an engine.

Drives the runtime's real app (``create_app``: its middleware, the protocol routes, the serving class,
SSE framing, metrics and the access log) in-process through ASGI, with a stand-in engine that streams
``--chunks`` one-token chunks, one event-loop turn apart, and a stand-in tokenizer. No vLLM, no socket, no
other process: what is measured is the Python our HTTP process runs per request on top of what vLLM's own
server runs too (vLLM's engine client and detokenizer, uvicorn, the socket writes). Process CPU time on an
otherwise idle loop is steady where a server's wall-clock figures on a shared machine are not, so this is
the figure that tells one commit's request path from another's (docs/benchmark.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from inference_benchmark import machine
from inference_benchmark.client import API_PATHS, RequestOptions, build_body
from inference_benchmark.prompts import Prompt
from inference_benchmark.servers import CLASS_FOR_API
from inference_runtime.app import create_app
from inference_runtime.cli import serving_classes
from inference_runtime.config import ModelConfig, ResolvedModel
from inference_runtime.engine_api import EngineClient, EngineOptions
from inference_runtime.generation import ChoiceOutput, GenerationChunk, SamplingSpec
from inference_runtime.logs import configure_logging
from inference_runtime.settings import LogSettings, Settings

try:  # the loop the server runs on: uvicorn takes uvloop when it is installed
    from uvloop import run as run_loop
except ImportError:  # pragma: no cover - uvloop comes with vLLM
    from asyncio import run as run_loop

MODEL = "stand-in"
DONE = b"data: [DONE]\n\n"


class IncompleteStream(RuntimeError):
    """A response that is not a whole stream: the figure would not measure the request path."""


class StandInTokenizer:
    """One token per word; a chat template that joins the contents."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [1] * add_special_tokens + [7] * len(text.split())

    def decode(self, token_ids: list[int], skip_special_tokens: bool = True) -> str:
        return " tok" * len(token_ids)

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return ["tok"] * len(ids)

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> str:
        return " ".join(str(m.get("content", "")) for m in conversation)

    def __len__(self) -> int:
        return 1000


class StandInEngine:
    """An :class:`EngineClient` that streams ``chunks`` one-token chunks, yielding to the loop before each
    (as a real engine's chunk arrives from its output handler)."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.tokenizer = StandInTokenizer()
        self.max_model_len = 1 << 20
        self.dead = False

    async def wait_dead(self) -> None:
        await asyncio.Event().wait()

    async def check_health(self) -> None:
        return None

    def num_unfinished_requests(self) -> int:
        return 0

    async def abort(self, request_id: str) -> None:
        return None

    def tool_parser(self, name: str) -> None:
        return None

    def shutdown(self) -> None:
        return None

    async def generate(
        self, prompt_token_ids: list[int], spec: SamplingSpec, request_id: str, *, stream: bool
    ) -> AsyncIterator[GenerationChunk]:
        for i in range(1, self.chunks + 1):
            await asyncio.sleep(0)
            last = i == self.chunks
            yield GenerationChunk(
                choices=[ChoiceOutput(0, " tok", 1, finish_reason="length" if last else None)],
                prompt_tokens=len(prompt_token_ids),
                finished=last,
            )


def request_body(api: str, chunks: int) -> bytes:
    """The body the load generator sends (streaming, usage, ``ignore_eos``), with a 64-word prompt."""
    options = RequestOptions(api=api, model=MODEL, stream=True, temperature=0.0, ignore_eos=True)
    return json.dumps(build_body(Prompt(" ".join(["word"] * 64), chunks), options)).encode()


async def measure(api: str, concurrency: int, requests: int, chunks: int, rounds: int) -> list[float]:
    """CPU microseconds per request, one figure per round (after one uncounted warm-up round)."""
    settings = Settings(model_name=MODEL)
    model = ResolvedModel(
        name=MODEL, config=ModelConfig(model_path=MODEL, class_name=CLASS_FOR_API[api]),
        model_path=Path(MODEL), chat_template=None, engine_args={},
    )  # fmt: skip

    async def start(options: EngineOptions) -> EngineClient:
        return StandInEngine(chunks)

    app = create_app(settings, model, serving_classes(model), engine_factory=start)
    body = request_body(api, chunks)
    path = API_PATHS[api]
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    async def one() -> None:
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        }  # fmt: skip
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        status, out = 0, bytearray()

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # the client never hangs up
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            else:
                out.extend(message.get("body", b""))

        await app(scope, receive, send)
        if status != 200 or not out.endswith(DONE) or out.count(b"data: ") < chunks + 2:
            raise IncompleteStream(f"not a complete stream: status {status}, ends {bytes(out[-300:])!r}")

    async def round_() -> float:
        slots = asyncio.Semaphore(concurrency)

        async def limited() -> None:
            async with slots:
                await one()

        started = time.process_time()
        await asyncio.gather(*(limited() for _ in range(requests)))
        return (time.process_time() - started) / requests * 1e6

    async with app.router.lifespan_context(app):
        while not app.state.runtime.servings:
            await asyncio.sleep(0.01)
        await round_()
        return [await round_() for _ in range(rounds)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="inference-benchmark request-path",
        description="CPU time per request of the runtime's own request path (in-process, stand-in engine).",
    )
    parser.add_argument(
        "--api", choices=sorted(CLASS_FOR_API), default="completions", help="protocol (completions)"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (32)")
    parser.add_argument("--num-requests", type=int, default=2000, help="requests per round (2000)")
    parser.add_argument("--chunks", type=int, default=64, help="streamed chunks per request (64)")
    parser.add_argument("--rounds", type=int, default=5, help="counted rounds (5)")
    parser.add_argument("--output-json", type=Path, default=None, help="write settings and results here")
    args = parser.parse_args(argv)
    if min(args.concurrency, args.num_requests, args.chunks, args.rounds) < 1:
        parser.error("every count must be at least 1")
    try:
        # The access log is part of the path: format every line, write it nowhere.
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
            configure_logging(LogSettings())
            try:
                per_round = run_loop(
                    measure(args.api, args.concurrency, args.num_requests, args.chunks, args.rounds)
                )
            finally:
                logging.shutdown()
    except IncompleteStream as exc:
        parser.exit(1, f"inference-benchmark request-path: {exc}\n")
    median = statistics.median(per_round)
    print(
        f"request path ({args.api}, c={args.concurrency}, {args.chunks} chunks): "
        f"{median:.0f} us CPU per request, median of {args.rounds} rounds "
        f"[{min(per_round):.0f}-{max(per_round):.0f}], {median / args.chunks:.1f} us per chunk"
    )
    if args.output_json:
        settings = {k: v for k, v in vars(args).items() if k != "output_json"}
        result = {"settings": settings, "machine": machine.describe(), "us_per_request": per_round}
        args.output_json.write_text(json.dumps(result, indent=2) + "\n")
    return 0
