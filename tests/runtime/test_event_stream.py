"""Unit tests of EventStream (the SSE response) with a stand-in for uvicorn's side of ASGI (its ``send``
waits while writes are paused, then writes; ``receive`` says when the client hangs up): its cut at the end
of the grace period and a client that hangs up. The real server's are in
tests/runtime_prod/test_prod_shutdown.py and test_prod_limits.py. The event generators keep
BaseServingEngine._stream's contract: they wait on the engine through the stream's guard; cancelled while
the server is stopping, they yield their last words and end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from inference_runtime.errors import ClientDisconnected
from inference_runtime.serving.admission import Admission
from inference_runtime.serving.streaming import EventStream, StreamGuard

LAST = b"data: {error}\n\ndata: [DONE]\n\n"
SCOPE = {"type": "http", "asgi": {"spec_version": "2.3"}, "state": {"request_id": "r1"}}


class Client:
    """uvicorn's send as the app sees it: while the client does not read, a write waits before it is
    written; ``reads`` lets it read again."""

    def __init__(self, slow_on: bytes | None) -> None:
        self.slow_on = slow_on
        self.gone = asyncio.Event()  # the client hangs up
        self.reads = asyncio.Event()
        self.waiting = asyncio.Event()
        self.wrote_two = asyncio.Event()  # the events then wait on the engine
        self.messages: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        if (
            message["type"] == "http.response.body"
            and message["body"] == self.slow_on
            and not self.reads.is_set()
        ):
            self.waiting.set()
            await self.reads.wait()
        if self.messages and self.messages[-1].get("more_body") is False:
            raise RuntimeError("Unexpected ASGI message sent, after response already completed.")  # uvicorn's
        self.messages.append(message)
        if message.get("body") == b"two":
            self.wrote_two.set()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    def body(self) -> bytes:
        start = self.messages[0]
        assert start["type"] == "http.response.start" and start["status"] == 200
        headers = dict(start["headers"])
        assert headers[b"content-type"].startswith(b"text/event-stream")
        assert b"content-length" not in headers  # chunked: a length would end the response at once
        assert self.messages[-1] == {
            "type": "http.response.body",
            "body": self.messages[-1]["body"],
            "more_body": False,
        }
        assert all(m.get("more_body") for m in self.messages[1:-1])
        return b"".join(m.get("body", b"") for m in self.messages[1:])


async def events(
    engine: asyncio.Event, guard: StreamGuard, admission: Admission, ended: list[str]
) -> AsyncGenerator[bytes, None]:
    """Two chunks, then a wait on the engine (``engine``) before the third and the end; ``ended`` says
    how they ended."""
    try:
        yield b"one"
        yield b"two"
        await guard.wait(engine.wait)
        yield b"three"
    except ClientDisconnected:
        ended.append("client gone")
        return
    except asyncio.CancelledError:
        if not admission.stopping:
            raise
        yield LAST
        return
    finally:
        ended.append("closed")
    yield b"data: [DONE]\n\n"


def event_stream(admission: Admission, closed: asyncio.Event, ended: list[str]) -> EventStream:
    engine = asyncio.Event()  # never set: after "two" the events wait on the engine until the end
    guard = StreamGuard(asyncio.get_running_loop().time() + 60)
    return EventStream(
        events(engine, guard, admission, ended),
        guard=guard,
        on_close=closed.set,
        admission=admission,
        headers={},
    )


async def cut(client: Client, when: asyncio.Event, again: bool) -> tuple[bytes, bool]:
    """Cut the stream once ``when`` is set; ``again``: cut it a second time (as uvicorn does at its own
    end) once a write waits for the client."""
    admission = Admission(4)
    closed = asyncio.Event()
    response = event_stream(admission, closed, [])
    task = asyncio.ensure_future(response(SCOPE, client.receive, client.send))
    await asyncio.wait_for(when.wait(), 5)
    await asyncio.sleep(0.01)
    admission.stopping = True
    task.cancel()
    if again:
        await asyncio.wait_for(client.waiting.wait(), 5)
        task.cancel()
    await asyncio.sleep(0.01)
    client.reads.set()  # the client reads again, after the cut
    await asyncio.wait_for(task, 5)
    return client.body(), closed.is_set()


@pytest.mark.parametrize(
    ("slow_on", "cut_when", "again", "says_waiting"),
    [
        pytest.param(b"two", "waiting", False, True, id="waiting-to-write"),
        pytest.param(None, "wrote_two", False, False, id="waiting-on-the-engine"),
        pytest.param(LAST, "wrote_two", False, False, id="on-the-engine-then-the-last-words-wait"),
        pytest.param(LAST, "wrote_two", True, True, id="on-the-engine-then-again-in-the-last-words"),
    ],
)
def test_a_cut_sends_every_event_once_then_the_last_words(
    caplog: pytest.LogCaptureFixture, slow_on: bytes | None, cut_when: str, again: bool, says_waiting: bool
) -> None:
    """Cut while the write of "two" waits for the client; cut while the events wait on the engine; cut
    on the engine when writes are paused by then, so the last words' own write waits (until the client
    reads); and the same cut again in that write. Each time the client gets every event once, then the
    last words, and the log says "waiting to write" exactly when a cut found a write waiting."""

    async def run() -> tuple[bytes, bool]:
        client = Client(slow_on=slow_on)
        return await cut(client, when=getattr(client, cut_when), again=again)

    with caplog.at_level(logging.WARNING):
        body, closed = asyncio.run(run())
    assert body == b"one" + b"two" + LAST
    assert closed
    assert ("request_id=r1 cut while waiting to write" in caplog.text) is says_waiting


def test_a_client_that_hangs_up_while_the_stream_waits_on_the_engine_ends_it_at_once() -> None:
    """The hang-up ends the wait on the engine (which aborts the engine work in the real server), the
    events are closed and ``on_close`` runs; the request's task is not left cancelled."""

    async def run() -> tuple[list[str], bool, int]:
        client = Client(slow_on=None)
        closed = asyncio.Event()
        ended: list[str] = []
        task = asyncio.ensure_future(
            event_stream(Admission(4), closed, ended)(SCOPE, client.receive, client.send)
        )
        await asyncio.wait_for(client.wrote_two.wait(), 5)
        client.gone.set()
        await asyncio.wait_for(task, 5)
        return ended, closed.is_set(), task.cancelling()

    ended, closed, cancelling = asyncio.run(run())
    assert ended == ["client gone", "closed"]
    assert closed
    assert cancelling == 0
