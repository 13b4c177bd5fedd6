"""The streaming side of the request path: SSE framing, a stream's guard, merging engine streams, and
the SSE response.

Nothing here knows a protocol: :class:`~inference_runtime.serving.base.BaseServingEngine` turns engine
chunks into events with its hooks and hands the bytes to :class:`EventStream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, NoReturn, TypeVar

import orjson
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from inference_runtime.errors import ClientDisconnected
from inference_runtime.generation import GenerationChunk
from inference_runtime.serving.admission import Admission
from inference_runtime.serving.http import wait_disconnect

logger = logging.getLogger(__name__)
T = TypeVar("T")
DONE = b"data: [DONE]\n\n"


def sse_event(event: Mapping[str, Any]) -> bytes:
    """One SSE ``data:`` event; events of one engine step are joined into one socket write."""
    return b"data: " + orjson.dumps(event) + b"\n\n"


class StreamGuard:
    """Ends a stream's waits on the engine when its deadline passes or its client hangs up.

    One timer per request (``asyncio.timeout`` around each wait makes and drops a timer per chunk:
    about 5 us on uvloop, a third of a millisecond per 64-token stream, docs/benchmark.md) and one
    flag for the hang-up, which :class:`EventStream`'s watcher raises. Either cancels the task only while
    it waits on the engine, never while it writes what came, and that wait then ends as TimeoutError or
    :class:`ClientDisconnected`; a wait that starts later raises at once. Any other cancellation (the
    drain's cut) stays one.
    """

    def __init__(self, deadline: float) -> None:
        self._task: asyncio.Task[Any] | None = None  # the one waiting on the engine, while it waits
        self._cancelled = False
        self._reason: type[Exception] | None = None  # why it ends: TimeoutError or ClientDisconnected
        self._timer = asyncio.get_running_loop().call_at(deadline, self._end, TimeoutError)

    def hang_up(self) -> None:
        """The client is gone: end the wait on the engine (now, or the next one)."""
        self._timer.cancel()
        self._end(ClientDisconnected)

    def _end(self, reason: type[Exception]) -> None:
        if self._reason is not None:
            return
        self._reason = reason
        if self._task is not None:
            self._cancelled = True
            self._task.cancel()

    @staticmethod
    def _raise(reason: type[Exception]) -> NoReturn:
        if reason is ClientDisconnected:
            raise ClientDisconnected("The client closed the connection.") from None
        raise reason from None

    async def wait(self, wait: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await wait(*args)``, unless the deadline passes or the client hangs up first."""
        if self._reason is not None:
            self._raise(self._reason)
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
                    assert self._reason is not None
                    self._raise(self._reason)
            raise
        finally:
            self._task = None
            if self._cancelled:  # the awaited code swallowed our cancellation: take it back
                self._cancelled = False
                task.uncancel()

    def close(self) -> None:
        self._timer.cancel()


class EventStream(StreamingResponse):
    """The SSE response of a stream: streams the events, watches for the client hanging up, and always
    closes the events and runs ``on_close`` when done.

    Starlette's StreamingResponse (whose headers it keeps) runs each response in a task group of two
    tasks: the stream, and a disconnect listener that cancels it. This runs the stream in the request's
    own task and hands a hang-up to the :class:`StreamGuard` of its events, which ends their wait on the
    engine (aborting the engine work). A write to a client that is gone returns at once (uvicorn drops
    it).
    """

    def __init__(
        self,
        events: AsyncGenerator[bytes, None],
        *,
        guard: StreamGuard,
        on_close: Callable[[], None],
        admission: Admission,
        headers: dict[str, str],
    ) -> None:
        super().__init__(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers},
        )
        self._events = events
        self._guard = guard
        self._on_close = on_close
        self._admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.ensure_future(self._watch(receive))
        unsent = b""  # the body bytes of a send that has not returned: waiting for a slow client
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for chunk in self._events:
                unsent = chunk
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                unsent = b""  # uvicorn waits (if writes are paused) before it writes, never after
            await send({"type": "http.response.body", "body": b"", "more_body": False})
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
            watcher.cancel()
            self._guard.close()
            with contextlib.suppress(asyncio.CancelledError):
                await self._events.aclose()
            self._on_close()

    async def _watch(self, receive: Receive) -> None:
        await wait_disconnect(receive)
        self._guard.hang_up()


async def merge_streams(
    gens: list[AsyncIterator[GenerationChunk]], guard: StreamGuard
) -> AsyncIterator[tuple[int, GenerationChunk]]:
    """Interleave several engine streams, tagging chunks with their prompt index, under a guard."""
    if len(gens) == 1:  # the common case: no tasks, no queue
        gen = gens[0]
        try:
            while (chunk := await guard.wait(anext, gen, None)) is not None:
                yield 0, chunk
        finally:
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
            i, item = await guard.wait(queue.get)
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
