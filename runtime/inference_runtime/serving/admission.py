"""Overload control: at most N requests in flight; request N+1 is refused at once, not queued. Under
load, streams write in bigger chunks."""

from __future__ import annotations

from inference_runtime.errors import APIError, Overloaded, ShuttingDown


class Admission:
    """A counter, not a semaphore: waiting would only move the queue into the client's timeout."""

    def __init__(self, limit: int, coalesce_above: int = 0) -> None:
        self.limit = limit
        self.coalesce_above = coalesce_above  # 0: every stream writes every token
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

    def stream_interval(self) -> int:
        """Tokens per write for a stream that starts now.

        Every engine step costs the server one socket write and one task wake-up per stream, the
        largest per-token cost of the HTTP process (docs/benchmark.md). With more than
        ``coalesce_above`` requests in flight, a new stream writes every ``ceil(in flight /
        coalesce_above)`` tokens (its first and last tokens at once), so a step costs about
        ``coalesce_above`` writes however many streams run. Under light load every token is written.
        """
        if self.coalesce_above <= 0 or self.active <= self.coalesce_above:
            return 1
        return -(-self.active // self.coalesce_above)

    def refusal(self) -> APIError:
        if self.draining:
            return ShuttingDown()
        return Overloaded(
            f"The server is at its limit of {self.limit} concurrent requests; retry shortly.",
            code="concurrency_limit",
            headers={"Retry-After": "1"},
        )
