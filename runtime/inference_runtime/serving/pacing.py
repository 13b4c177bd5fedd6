"""Stream pacing: how many tokens a new stream gets per write, from the rate tokens are streamed at.

Every engine step costs the HTTP process one socket write and one task wake-up per stream, the largest
per-token cost it has (docs/benchmark.md). What that costs a second is the number of writes a second,
which is the streamed token rate while every stream writes every token. So the rule keys on that rate,
not on the number of streams: a slow model serving many streams (whose engine, not its writes, is the
cost) keeps writing every token, and a fast one gets chunks only once its streams together would write
more often than the budget allows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

SPAN_SECONDS = 1.0  # one bucket of the rate: the rate covers the last one to two of these


class StreamPacing:
    """A budget of socket writes per second for all streams together; 0 turns pacing off.

    A stream that starts while streams deliver T tokens a second gets ``ceil(T / budget)`` tokens per
    write (its first and last at once), so the writes of streams started at that rate stay within the
    budget. The interval is fixed for the stream's life: vLLM applies it per request. The rate counts
    tokens, not writes, so coalescing does not lower the figure it is decided from.
    """

    def __init__(self, budget: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self._clock = clock
        self._start = clock()  # of the current bucket
        self._current = 0  # tokens in the current bucket
        self._previous = 0  # tokens in the bucket before it (0 if that one was idle or not yet begun)

    def written(self, tokens: int) -> None:
        """Count tokens a stream has just delivered."""
        if self.budget:
            self._roll(self._clock())
            self._current += tokens

    def tokens_per_second(self) -> float:
        """Streamed tokens a second over the last one to two buckets."""
        now = self._clock()
        self._roll(now)
        return (self._previous + self._current) / (SPAN_SECONDS + now - self._start)

    def interval(self) -> int:
        """Tokens per write for a stream that starts now: 1 while the rate is within the budget."""
        if not self.budget:
            return 1
        return max(1, math.ceil(self.tokens_per_second() / self.budget))

    def _roll(self, now: float) -> None:
        spans = int((now - self._start) // SPAN_SECONDS)
        if spans:
            self._previous = self._current if spans == 1 else 0
            self._current = 0
            self._start += spans * SPAN_SECONDS
