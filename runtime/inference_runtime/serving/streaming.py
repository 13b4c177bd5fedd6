"""The streaming side of the request path: SSE framing, merging engine streams, the guarded response.

Nothing here knows a protocol: :class:`~inference_runtime.serving.base.BaseServingEngine` turns engine
chunks into events with its hooks and hands the bytes to :class:`GuardedStream`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson
from fastapi.responses import StreamingResponse

from inference_runtime.generation import GenerationChunk
from inference_runtime.serving.admission import Admission

DONE = b"data: [DONE]\n\n"


def sse_event(event: Mapping[str, Any]) -> bytes:
    """One SSE ``data:`` event; events of one engine step are joined into one socket write."""
    return b"data: " + orjson.dumps(event) + b"\n\n"


class GuardedStream(StreamingResponse):
    """A streaming response that always closes its body iterator and runs ``on_close`` when done,
    also when the client disconnects before or during the stream (which aborts the engine work)."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        on_close: Callable[[], None],
        admission: Admission,
        headers: dict[str, str],
    ) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers},
        )
        self._on_close = on_close
        self._admission = admission

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except asyncio.CancelledError:
            if not self._admission.stopping:
                raise
            # Cut at the end of the grace period, after its last event (see BaseServingEngine._stream):
            # finish the HTTP response, so the client sees a complete stream and the log no traceback.
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await self.body_iterator.aclose()  # type: ignore[union-attr]
            self._on_close()


async def merge_streams(
    gens: list[AsyncIterator[GenerationChunk]], deadline: float
) -> AsyncIterator[tuple[int, GenerationChunk]]:
    """Interleave several engine streams, tagging chunks with their prompt index, under a deadline."""
    loop = asyncio.get_running_loop()
    if len(gens) == 1:  # the common case: no tasks, no queue
        gen = gens[0]
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError
                async with asyncio.timeout(remaining):
                    chunk = await anext(gen, None)
                if chunk is None:
                    return
                yield 0, chunk
        finally:
            await gen.aclose()
    queue: asyncio.Queue[tuple[int, GenerationChunk | BaseException | None]] = asyncio.Queue()

    async def pump(i: int, gen: AsyncIterator[GenerationChunk]) -> None:
        try:
            async for chunk in gen:
                await queue.put((i, chunk))
            await queue.put((i, None))
        except Exception as exc:
            await queue.put((i, exc))

    tasks = [asyncio.ensure_future(pump(i, g)) for i, g in enumerate(gens)]
    try:
        running = len(tasks)
        while running:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout(remaining):
                i, item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
