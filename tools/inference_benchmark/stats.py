"""Pure statistics over recorded requests: no I/O, no clocks, so every figure is unit-testable.

The load generator records raw timestamps per request (start, arrival of each streamed chunk that
carries text, end) plus the token counts the server reported. Everything a report shows is derived
here, from those records only.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class RequestRecord:
    """What one request did, as seen by the client (times in seconds from any monotonic origin).

    ``chunk_times`` holds the arrival time of every streamed chunk that carried generated text; it is
    empty for a non-streamed request. Token counts come from the server's ``usage`` and are ``None``
    when the server did not report them (the benchmark never guesses them from text).
    ``status`` is the HTTP status, or a short error kind such as ``"timeout"`` when no status came back.
    """

    start: float
    end: float
    status: int | str
    chunk_times: tuple[float, ...] = ()
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass(frozen=True)
class Summary:
    """Mean and percentiles of one latency metric, in milliseconds."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float

    def as_dict(self) -> dict[str, float | int]:
        return {"count": self.count, "mean": self.mean, "p50": self.p50, "p90": self.p90, "p99": self.p99}


@dataclass(frozen=True)
class RunStats:
    """The aggregate of one load run (one concurrency or one request rate)."""

    duration_s: float
    completed: int
    failed: int
    errors: dict[str, int]
    error_examples: dict[str, str]
    request_throughput: float
    output_throughput: float | None
    total_output_tokens: int | None
    mean_prompt_tokens: float | None
    mean_output_tokens: float | None
    missing_usage: int
    stream_chunks: int
    e2e_ms: Summary | None
    ttft_ms: Summary | None
    itl_ms: Summary | None
    tpot_ms: Summary | None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "duration_s": self.duration_s,
            "completed": self.completed,
            "failed": self.failed,
            "errors": dict(self.errors),
            "error_examples": dict(self.error_examples),
            "request_throughput": self.request_throughput,
            "output_throughput": self.output_throughput,
            "total_output_tokens": self.total_output_tokens,
            "mean_prompt_tokens": self.mean_prompt_tokens,
            "mean_output_tokens": self.mean_output_tokens,
            "missing_usage": self.missing_usage,
            "stream_chunks": self.stream_chunks,
        }
        for name in ("e2e_ms", "ttft_ms", "itl_ms", "tpot_ms"):
            summary = getattr(self, name)
            out[name] = summary.as_dict() if summary else None
        return out


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks.

    This is numpy's default ("linear") method, written out so the statistics need no numpy and the
    method is explicit: with few samples, p99 is an interpolation between the two largest values.
    """
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values_s: Sequence[float]) -> Summary | None:
    """Summarise durations given in seconds as milliseconds; ``None`` when there are no samples."""
    if not values_s:
        return None
    ms = [v * 1000.0 for v in values_s]
    p50, p90, p99 = (percentile(ms, q) for q in PERCENTILES)
    return Summary(count=len(ms), mean=sum(ms) / len(ms), p50=p50, p90=p90, p99=p99)


def ttft(record: RequestRecord) -> float | None:
    """Time to first token: from sending the request to the first chunk that carried text."""
    return record.chunk_times[0] - record.start if record.chunk_times else None


def inter_token_latencies(record: RequestRecord) -> list[float]:
    """Gaps between consecutive text-carrying chunks.

    A chunk can carry more than one token when the server coalesces them, so this is the latency a
    reader of the stream sees between updates; :func:`tpot` is the per-token figure.
    """
    return [later - earlier for earlier, later in pairwise(record.chunk_times)]


def tpot(record: RequestRecord) -> float | None:
    """Time per output token after the first: (last chunk - first chunk) / (output tokens - 1)."""
    if len(record.chunk_times) < 2 or not record.output_tokens or record.output_tokens < 2:
        return None
    return (record.chunk_times[-1] - record.chunk_times[0]) / (record.output_tokens - 1)


def aggregate(records: Sequence[RequestRecord], duration_s: float) -> RunStats:
    """Aggregate the records of one run that took ``duration_s`` of wall-clock time.

    Errors are counted by status, with the first message seen for each as an example.
    Throughputs count only successful requests. Output throughput is ``None`` when any successful
    request lacked a usage report: a partial sum would silently understate it. ``stream_chunks``
    counts the text-carrying chunks of the successful streams: how much the server coalesced tokens
    (ITL has one sample per chunk after each stream's first).
    """
    if duration_s <= 0:
        raise ValueError(f"duration must be positive, got {duration_s}")
    good = [r for r in records if r.ok]
    failures = [r for r in records if not r.ok]
    errors = Counter(str(r.status) for r in failures)
    examples = {str(r.status): r.error or "" for r in reversed(failures)}  # keeps the first per status
    missing_usage = sum(1 for r in good if r.output_tokens is None)
    outputs = [r.output_tokens for r in good if r.output_tokens is not None]
    prompts = [r.prompt_tokens for r in good if r.prompt_tokens is not None]
    total_output = sum(outputs) if good and not missing_usage else None
    itl = [gap for r in good for gap in inter_token_latencies(r)]
    return RunStats(
        duration_s=duration_s,
        completed=len(good),
        failed=len(records) - len(good),
        errors=dict(sorted(errors.items())),
        error_examples=examples,
        request_throughput=len(good) / duration_s,
        output_throughput=total_output / duration_s if total_output is not None else None,
        total_output_tokens=total_output,
        mean_prompt_tokens=sum(prompts) / len(prompts) if prompts else None,
        mean_output_tokens=sum(outputs) / len(outputs) if outputs else None,
        missing_usage=missing_usage,
        stream_chunks=sum(len(r.chunk_times) for r in good),
        e2e_ms=summarize([r.end - r.start for r in good]),
        ttft_ms=summarize([t for r in good if (t := ttft(r)) is not None]),
        itl_ms=summarize(itl),
        tpot_ms=summarize([t for r in good if (t := tpot(r)) is not None]),
    )
