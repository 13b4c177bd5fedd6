"""Overload control: at most N requests in flight; request N+1 is refused at once, not queued."""

from __future__ import annotations

from inference_runtime.errors import APIError, Overloaded, ShuttingDown


class Admission:
    """A counter, not a semaphore: waiting would only move the queue into the client's timeout."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self.draining = False  # SIGTERM came: refuse new work, let what is in flight finish
        self.stopping = False  # the grace period is over: what is still in flight gets cut

    def try_acquire(self) -> bool:
        if self.draining or self.active >= self.limit:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active -= 1

    def refusal(self) -> APIError:
        if self.draining:
            return ShuttingDown()
        return Overloaded(
            f"The server is at its limit of {self.limit} concurrent requests; retry shortly.",
            code="concurrency_limit",
            headers={"Retry-After": "1"},
        )
