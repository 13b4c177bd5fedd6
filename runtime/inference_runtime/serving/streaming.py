"""The streaming side of the request path: SSE framing, merging engine streams, the guarded response.

Nothing here knows a protocol: :class:`~inference_runtime.serving.base.BaseServingEngine` turns engine
chunks into events with its hooks and hands the bytes to :class:`GuardedStream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import orjson
from fastapi.responses import StreamingResponse

from inference_runtime.generation import GenerationChunk
from inference_runtime.serving.admission import Admission

logger = logging.getLogger(__name__)
T = TypeVar("T")
DONE = b"data: [DONE]\n\n"


def sse_event(event: Mapping[str, Any]) -> bytes:
    """One SSE ``data:`` event; events of one engine step are joined into one socket write."""
    return b"data: " + orjson.dumps(event) + b"\n\n"


class GuardedStream(StreamingResponse):
    """A streaming response that always closes its body iterator and runs ``on_close`` when done,
    also when the client disconnects before or during the stream (which aborts the engine work)."""

    def __init__(
        self,
        content: AsyncGenerator[bytes, None],
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
        self._events = content
        self._on_close = on_close
        self._admission = admission

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        unsent = b""  # the body bytes of a send that has not returned: waiting for a slow client

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal unsent
            if message["type"] == "http.response.body":
                unsent = message.get("body", b"")
            await send(message)  # uvicorn waits (if writes are paused) before it writes, never after
            unsent = b""

        try:
            await super().__call__(scope, receive, tracked_send)
        except asyncio.CancelledError:
            if not self._admission.stopping:
                raise
            # Cut at the end of the grace period. Found waiting on the engine, the events have already
            # ended with their last words (see BaseServingEngine._stream), written at once. Found waiting
            # to write, because the client reads slower than the model writes, the bytes of that write
            # are still unsent and the events wait at a yield (or at their last words, if the engine
            # wait was cut and the write of the last words then had to wait): ask them for their last
            # words, and send them after the unsent bytes. Either way the HTTP response is finished, so
            # the client sees a complete stream (unless it cannot take even that before uvicorn's own
            # cut) and the log no traceback.
            if unsent:
                logger.warning(
                    "request_id=%s cut while waiting to write: its client reads slower than the stream is "
                    "made",
                    scope.get("state", {}).get("request_id", "-"),
                )
            last = b""
            with contextlib.suppress(Exception, asyncio.CancelledError):
                last = await self._events.athrow(asyncio.CancelledError()) or b""
            with contextlib.suppress(asyncio.CancelledError):
                await self._events.aclose()  # abort the engine work before waiting on the client
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await send({"type": "http.response.body", "body": unsent + last, "more_body": False})
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await self._events.aclose()
            self._on_close()


class Deadline:
    """A request's deadline as one timer for all of its engine waits.

    ``asyncio.timeout`` around each wait makes and drops a timer per chunk: about 5 us on uvloop, a
    third of a millisecond per 64-token stream (docs/benchmark.md). This arms one timer per request,
    and it cancels the task only while the task waits on the engine, never while the caller writes
    what came. Like ``asyncio.timeout``, its own cancellation ends as TimeoutError and any other
    cancellation (the client gone, the drain's cut) stays one.
    """

    def __init__(self, when: float) -> None:
        self._task: asyncio.Task[Any] | None = None  # the one waiting on the engine, while it waits
        self._cancelled = False
        self.expired = False
        self._timer = asyncio.get_running_loop().call_at(when, self._expire)

    def _expire(self) -> None:
        self.expired = True
        if self._task is not None:
            self._cancelled = True
            self._task.cancel()

    async def wait(self, wait: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await wait(*args)``, or TimeoutError once the deadline has passed."""
        if self.expired:
            raise TimeoutError
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        self._task = task
        try:
            return await wait(*args)
        except asyncio.CancelledError:
            if self._cancelled:
                self._cancelled = False
                if task.uncancel() <= cancelling:
                    raise TimeoutError from None
            raise
        finally:
            self._task = None
            if self._cancelled:  # the awaited code swallowed our cancellation: take it back
                self._cancelled = False
                task.uncancel()

    def close(self) -> None:
        self._timer.cancel()


async def merge_streams(
    gens: list[AsyncIterator[GenerationChunk]], when: float
) -> AsyncIterator[tuple[int, GenerationChunk]]:
    """Interleave several engine streams, tagging chunks with their prompt index, under a deadline."""
    deadline = Deadline(when)
    if len(gens) == 1:  # the common case: no tasks, no queue
        gen = gens[0]
        try:
            while (chunk := await deadline.wait(anext, gen, None)) is not None:
                yield 0, chunk
        finally:
            deadline.close()
            await gen.aclose()
        return
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
            i, item = await deadline.wait(queue.get)
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        deadline.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
