"""Unit tests of the request deadline's one timer (serving.streaming.Deadline) and merge_streams under it;
the real server's request timeout is in tests/runtime_prod/test_prod_shutdown.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from inference_runtime.generation import GenerationChunk
from inference_runtime.serving.streaming import Deadline, merge_streams


def test_a_wait_past_the_deadline_is_a_timeout_and_leaves_no_cancellation() -> None:
    async def run() -> int:
        deadline = Deadline(asyncio.get_running_loop().time() + 0.05)
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
        deadline = Deadline(loop.time() + 0.02)
        assert await deadline.wait(asyncio.sleep, 0, "first") == "first"
        started = loop.time()
        while loop.time() - started < 0.1:  # the caller writes what came (never cancelled here)
            await asyncio.sleep(0.01)
        assert deadline.expired
        with pytest.raises(TimeoutError):
            await deadline.wait(asyncio.sleep, 0)
        deadline.close()

    asyncio.run(run())


def test_another_cancellation_during_a_wait_stays_a_cancellation() -> None:
    async def waiter(deadline_in: float) -> None:
        deadline = Deadline(asyncio.get_running_loop().time() + deadline_in)
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
        deadline = Deadline(asyncio.get_running_loop().time() + 0.02)
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
            async for i, _ in merge_streams([stalls(closed) for _ in range(streams)], loop.time() + 0.1):
                got.append(i)
        return sorted(got)

    assert asyncio.run(run()) == list(range(streams))
    assert closed == ["closed"] * streams
