"""Unit tests of GuardedStream's cut at the end of the grace period, with a stand-in for uvicorn's side
of ASGI (its ``send`` waits while writes are paused, then writes; the real server's cut is in
tests/runtime_prod/test_prod_shutdown.py). The event generators keep BaseServingEngine._stream's
contract: cancelled while the server is stopping, they yield their last words and end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from inference_runtime.serving.admission import Admission
from inference_runtime.serving.streaming import GuardedStream

LAST = b"data: {error}\n\ndata: [DONE]\n\n"
SCOPE = {"type": "http", "asgi": {"spec_version": "2.3"}, "state": {"request_id": "r1"}}


class Client:
    """uvicorn's send as the app sees it: while the client does not read, a write waits before it is
    written; ``reads`` lets it read again."""

    def __init__(self, slow_on: bytes | None) -> None:
        self.slow_on = slow_on
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

    @staticmethod
    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client never hangs up
        raise AssertionError

    def body(self) -> bytes:
        assert self.messages[-1] == {
            "type": "http.response.body",
            "body": self.messages[-1]["body"],
            "more_body": False,
        }
        assert all(m.get("more_body") for m in self.messages[1:-1])
        return b"".join(m.get("body", b"") for m in self.messages[1:])


async def events(engine: asyncio.Event, admission: Admission) -> AsyncGenerator[bytes, None]:
    """Two chunks, then a wait on the engine (``engine``) before the third and the end."""
    try:
        yield b"one"
        yield b"two"
        await engine.wait()
        yield b"three"
    except asyncio.CancelledError:
        if not admission.stopping:
            raise
        yield LAST
        return
    yield b"data: [DONE]\n\n"


async def cut(client: Client, when: asyncio.Event) -> tuple[bytes, bool]:
    admission = Admission(4)
    closed = asyncio.Event()
    engine = asyncio.Event()  # never set: after "two" the events wait on the engine until the cut
    response = GuardedStream(events(engine, admission), on_close=closed.set, admission=admission, headers={})
    task = asyncio.ensure_future(response(SCOPE, client.receive, client.send))
    await asyncio.wait_for(when.wait(), 5)
    await asyncio.sleep(0.01)
    admission.stopping = True
    task.cancel()
    await asyncio.sleep(0.01)
    client.reads.set()  # the client reads again, after the cut
    await asyncio.wait_for(task, 5)
    return client.body(), closed.is_set()


@pytest.mark.parametrize(
    ("slow_on", "cut_when", "says_waiting"),
    [
        pytest.param(b"two", "waiting", True, id="waiting-to-write"),
        pytest.param(None, "wrote_two", False, id="waiting-on-the-engine"),
        pytest.param(LAST, "wrote_two", True, id="on-the-engine-then-the-last-words-wait"),
    ],
)
def test_a_cut_sends_every_event_once_then_the_last_words(
    caplog: pytest.LogCaptureFixture, slow_on: bytes | None, cut_when: str, says_waiting: bool
) -> None:
    """Cut while the write of "two" waits for the client; cut while the events wait on the engine; and
    cut on the engine when writes are paused by then, so the last words' own write waits and Starlette's
    task group cancels it again. Each time the client gets every event once, then the last words, and
    the log says "waiting to write" exactly when a write was waiting."""

    async def run() -> tuple[bytes, bool]:
        client = Client(slow_on=slow_on)
        return await cut(client, when=getattr(client, cut_when))

    with caplog.at_level(logging.WARNING):
        body, closed = asyncio.run(run())
    assert body == b"one" + b"two" + LAST
    assert closed
    assert ("request_id=r1 cut while waiting to write" in caplog.text) is says_waiting
