"""Load shapes: a fixed number of requests in flight, or Poisson arrivals at a fixed rate.

The runner knows nothing about HTTP: it drives any ``send(prompt) -> RequestRecord`` coroutine, which
is how the same load and the same statistics apply to a server and to the bare engine.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from inference_benchmark.progress import Progress
from inference_benchmark.prompts import Prompt
from inference_benchmark.stats import RequestRecord, RunStats, aggregate

Send = Callable[[Prompt], Awaitable[RequestRecord]]


@dataclass(frozen=True)
class LoadPoint:
    """One point of a sweep.

    With ``rate`` unset, ``concurrency`` requests are kept in flight until all are sent (closed loop).
    With ``rate`` set, requests arrive as a Poisson process (open loop); ``concurrency``, if set,
    caps how many are in flight, the rest wait for a slot.
    """

    concurrency: int | None = None
    rate: float | None = None

    def __post_init__(self) -> None:
        if self.rate is None and not self.concurrency:
            raise ValueError("a load point needs a concurrency or a request rate")
        if (self.concurrency is not None and self.concurrency < 1) or (
            self.rate is not None and self.rate <= 0
        ):
            raise ValueError("concurrency and request rate must be positive")

    @property
    def label(self) -> str:
        if self.rate is None:
            return f"c={self.concurrency}"
        cap = f" c<={self.concurrency}" if self.concurrency else ""
        return f"rate={self.rate:g}/s{cap}"


@dataclass(frozen=True)
class RunResult:
    """A load point, its statistics, and what the client itself cost (the machine is shared)."""

    point: LoadPoint
    stats: RunStats
    client_cpu_s: float
    load_average: tuple[float, float, float]

    def as_dict(self) -> dict[str, object]:
        return {
            "load": self.point.label,
            "concurrency": self.point.concurrency,
            "request_rate": self.point.rate,
            **self.stats.as_dict(),
            "client_cpu_s": self.client_cpu_s,
            "load_average": list(self.load_average),
        }


async def drive(
    send: Send,
    prompts: Sequence[Prompt],
    point: LoadPoint,
    seed: int = 0,
    on_done: Callable[[RequestRecord], None] = lambda _: None,
) -> list[RequestRecord]:
    """Send every prompt with the load shape of ``point`` and return the records in completion order."""
    records: list[RequestRecord] = []

    async def one(prompt: Prompt) -> None:
        record = await send(prompt)
        records.append(record)
        on_done(record)

    if point.rate is None:
        queue = iter(prompts)

        async def worker() -> None:
            for prompt in queue:  # one shared iterator: each prompt goes to exactly one worker
                await one(prompt)

        await asyncio.gather(*(worker() for _ in range(point.concurrency or 1)))
        return records

    slots = asyncio.Semaphore(point.concurrency) if point.concurrency else None

    async def limited(prompt: Prompt) -> None:
        if slots is None:
            await one(prompt)
        else:
            async with slots:
                await one(prompt)

    rng = random.Random(seed)
    tasks = []
    for prompt in prompts:
        tasks.append(asyncio.create_task(limited(prompt)))
        await asyncio.sleep(rng.expovariate(point.rate))
    await asyncio.gather(*tasks)
    return records


async def run_point(
    send: Send,
    prompts: Sequence[Prompt],
    warmup_prompts: Sequence[Prompt],
    point: LoadPoint,
    *,
    seed: int = 0,
    progress: bool = False,
) -> RunResult:
    """Warm up (uncounted, same concurrency), then run and time the load point."""
    if warmup_prompts:
        warm = LoadPoint(concurrency=min(point.concurrency or len(warmup_prompts), len(warmup_prompts)))
        await drive(send, warmup_prompts, warm)
    bar = Progress(point.label, len(prompts), progress)
    cpu_before = time.process_time()
    started = time.perf_counter()
    records = await drive(send, prompts, point, seed, bar.update)
    duration = time.perf_counter() - started
    bar.close()
    return RunResult(
        point=point,
        stats=aggregate(records, duration),
        client_cpu_s=time.process_time() - cpu_before,
        load_average=os.getloadavg(),
    )
