"""A one-line live progress bar on stderr, so stdout stays clean for the table."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from inference_benchmark.stats import RequestRecord

_WIDTH = 30
_MIN_INTERVAL_S = 0.1


class Progress:
    """Counts finished requests of one run and redraws at most ten times a second.

    Disabled, it does nothing: a bar written into a log file or a CI console is only noise.
    """

    def __init__(self, label: str, total: int, enabled: bool, stream: TextIO = sys.stderr) -> None:
        self._label = label
        self._total = total
        self._enabled = enabled
        self._stream = stream
        self._done = 0
        self._failed = 0
        self._started = time.perf_counter()
        self._drawn_at = 0.0

    def update(self, record: RequestRecord) -> None:
        self._done += 1
        self._failed += not record.ok
        now = time.perf_counter()
        if self._enabled and (now - self._drawn_at >= _MIN_INTERVAL_S or self._done == self._total):
            self._drawn_at = now
            self._draw(now)

    def close(self) -> None:
        if self._enabled:
            self._stream.write("\n")
            self._stream.flush()

    def _draw(self, now: float) -> None:
        filled = _WIDTH * self._done // max(self._total, 1)
        rate = self._done / max(now - self._started, 1e-9)
        self._stream.write(
            f"\r{self._label} [{'#' * filled}{'.' * (_WIDTH - filled)}] {self._done}/{self._total}"
            f"  {rate:.1f} req/s  failed {self._failed}"
        )
        self._stream.flush()
