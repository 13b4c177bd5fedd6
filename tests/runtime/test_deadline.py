"""Unit tests of a stream's guard (serving.streaming.StreamGuard: the request deadline's one timer and the
client's hang-up) and merge_streams under it; the real server's request timeout and disconnects are in
tests/runtime_prod/test_prod_shutdown.py and test_prod_limits.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from inference_runtime.errors import ClientDisconnected
from inference_runtime.generation import GenerationChunk
from inference_runtime.serving.streaming import StreamGuard, merge_streams


def test_a_wait_past_the_deadline_is_a_timeout_and_leaves_no_cancellation() -> None:
    async def run() -> int:
        deadline = StreamGuard(asyncio.get_running_loop().time() + 0.05)
        with pytest.raises(TimeoutError):
            await deadline.wait(asyncio.sleep, 10)
        deadline.close()
        task = asyncio.current_task()
        assert task is not None
        await asyncio.sleep(0.01)  # not cancelled again
        return task.cancelling()

    assert asyncio.run(run()) == 0


def test_the_deadline_passing_between_waits_cancels_nothing_and_the_next_wait_times_out() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        deadline = StreamGuard(loop.time() + 0.02)
        assert await deadline.wait(asyncio.sleep, 0, "first") == "first"
        started = loop.time()
        while loop.time() - started < 0.1:  # the caller writes what came (never cancelled here)
            await asyncio.sleep(0.01)
        with pytest.raises(TimeoutError):
            await deadline.wait(asyncio.sleep, 0)
        deadline.close()

    asyncio.run(run())


def test_another_cancellation_during_a_wait_stays_a_cancellation() -> None:
    async def waiter(deadline_in: float) -> None:
        deadline = StreamGuard(asyncio.get_running_loop().time() + deadline_in)
        try:
            await deadline.wait(asyncio.sleep, 10)
        finally:
            deadline.close()

    async def run(deadline_in: float) -> None:
        task = asyncio.ensure_future(waiter(deadline_in))
        await asyncio.sleep(0.05)
        task.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run(10))
    asyncio.run(run(0.05))  # both at once: the other cancellation wins, as with asyncio.timeout


def test_a_swallowed_deadline_cancellation_is_taken_back() -> None:
    async def swallows() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "swallowed"
        return "slept"

    async def run() -> int:
        deadline = StreamGuard(asyncio.get_running_loop().time() + 0.02)
        assert await deadline.wait(swallows) == "swallowed"
        deadline.close()
        task = asyncio.current_task()
        assert task is not None
        await asyncio.sleep(0.01)
        return task.cancelling()

    assert asyncio.run(run()) == 0


async def stalls(closed: list[str]) -> AsyncIterator[GenerationChunk]:
    try:
        yield GenerationChunk(choices=[], prompt_tokens=1, finished=False)
        await asyncio.sleep(10)  # the engine makes nothing more
        yield GenerationChunk(choices=[], prompt_tokens=1, finished=True)
    finally:
        closed.append("closed")


@pytest.mark.parametrize("streams", [1, 2])
def test_merge_streams_ends_a_stalled_engine_stream_at_the_deadline_and_closes_it(streams: int) -> None:
    closed: list[str] = []

    async def run() -> list[int]:
        loop = asyncio.get_running_loop()
        got = []
        with pytest.raises(TimeoutError):
            guard = StreamGuard(loop.time() + 0.1)
            async for i, _ in merge_streams([stalls(closed) for _ in range(streams)], guard):
                got.append(i)
        return sorted(got)

    assert asyncio.run(run()) == list(range(streams))
    assert closed == ["closed"] * streams


@pytest.mark.parametrize("during_a_wait", [True, False])
def test_a_hang_up_ends_the_wait_on_the_engine_as_a_disconnect_and_leaves_no_cancellation(
    during_a_wait: bool,
) -> None:
    """The client hangs up while the stream waits on the engine (the wait ends at once), or while it
    writes (the next wait ends before it starts); the deadline's timer is then off."""

    async def run() -> int:
        loop = asyncio.get_running_loop()
        guard = StreamGuard(loop.time() + 0.1)
        if during_a_wait:
            loop.call_later(0.02, guard.hang_up)
        else:
            guard.hang_up()
        started = loop.time()
        with pytest.raises(ClientDisconnected):
            await guard.wait(asyncio.sleep, 10)
        assert loop.time() - started < 1
        await asyncio.sleep(0.15)  # past the deadline: its timer cancels nothing
        guard.close()
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    assert asyncio.run(run()) == 0
