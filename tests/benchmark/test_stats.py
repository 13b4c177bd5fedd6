"""The benchmark's statistics, from synthetic timestamps whose answers can be worked out by hand."""

from __future__ import annotations

import random

import numpy
import pytest

from inference_benchmark.stats import (
    RequestRecord,
    aggregate,
    inter_token_latencies,
    percentile,
    summarize,
    tpot,
    ttft,
)


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 100) == 4.0
    assert percentile(values, 90) == pytest.approx(3.7)
    assert percentile([7.0], 99) == 7.0


def test_percentile_agrees_with_numpy_linear_method() -> None:
    rng = random.Random(1)
    values = [rng.expovariate(0.1) for _ in range(257)]
    for q in (1, 25, 50, 90, 99, 99.9):
        assert percentile(values, q) == pytest.approx(numpy.percentile(values, q))


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0], 101), ([1.0], -1)])
def test_percentile_refuses_what_has_no_answer(values: list[float], q: float) -> None:
    with pytest.raises(ValueError):
        percentile(values, q)


def test_summarize_reports_milliseconds() -> None:
    summary = summarize([0.010, 0.020, 0.030])
    assert summary is not None
    assert (summary.count, summary.mean, summary.p50) == (3, pytest.approx(20.0), pytest.approx(20.0))
    assert summary.p99 == pytest.approx(29.8)
    assert summarize([]) is None


def test_ttft_itl_and_tpot_from_chunk_times() -> None:
    # sent at 10.0; text chunks at 10.5, 10.6, 10.8, 11.1; four tokens in all
    record = RequestRecord(
        start=10.0, end=11.2, status=200, chunk_times=(10.5, 10.6, 10.8, 11.1), output_tokens=4
    )
    assert ttft(record) == pytest.approx(0.5)
    assert inter_token_latencies(record) == pytest.approx([0.1, 0.2, 0.3])
    assert tpot(record) == pytest.approx(0.2)


def test_tpot_divides_by_tokens_not_chunks_when_the_server_coalesces() -> None:
    # two chunks carried 7 tokens: 6 tokens came after the first one, in 0.6 s
    record = RequestRecord(start=0.0, end=1.0, status=200, chunk_times=(0.2, 0.8), output_tokens=7)
    assert inter_token_latencies(record) == pytest.approx([0.6])
    assert tpot(record) == pytest.approx(0.1)


def test_a_non_streamed_request_has_no_ttft_or_itl() -> None:
    record = RequestRecord(start=0.0, end=1.0, status=200, output_tokens=5)
    assert (ttft(record), inter_token_latencies(record), tpot(record)) == (None, [], None)


def test_aggregate_counts_only_successes_and_groups_errors_by_status() -> None:
    records = [
        RequestRecord(0.0, 1.0, 200, (0.1, 0.2), prompt_tokens=10, output_tokens=2),
        RequestRecord(0.0, 2.0, 200, (0.3, 0.5), prompt_tokens=20, output_tokens=2),
        RequestRecord(0.0, 0.1, 400, error="max_tokens too large"),
        RequestRecord(0.0, 0.1, 400, error="other"),
        RequestRecord(0.0, 5.0, "timeout", error="no reply"),
    ]
    stats = aggregate(records, duration_s=4.0)
    assert (stats.completed, stats.failed) == (2, 3)
    assert stats.errors == {"400": 2, "timeout": 1}
    assert stats.error_examples["400"] == "max_tokens too large"
    assert stats.request_throughput == pytest.approx(0.5)
    assert stats.output_throughput == pytest.approx(1.0)
    assert (stats.mean_prompt_tokens, stats.mean_output_tokens) == (15.0, 2.0)
    assert stats.e2e_ms is not None and stats.e2e_ms.mean == pytest.approx(1500.0)
    assert stats.ttft_ms is not None and stats.ttft_ms.p50 == pytest.approx(200.0)
    assert stats.itl_ms is not None and stats.itl_ms.mean == pytest.approx(150.0)
    assert stats.stream_chunks == 4 and stats.itl_ms.count == stats.stream_chunks - stats.completed


def test_aggregate_withholds_output_throughput_when_usage_is_missing() -> None:
    records = [
        RequestRecord(0.0, 1.0, 200, output_tokens=8),
        RequestRecord(0.0, 1.0, 200),  # a server that sent no usage
    ]
    stats = aggregate(records, duration_s=1.0)
    assert stats.missing_usage == 1
    assert stats.output_throughput is None
    assert stats.total_output_tokens is None


def test_aggregate_of_a_run_where_everything_failed() -> None:
    stats = aggregate([RequestRecord(0.0, 0.1, 503, error="not ready")], duration_s=0.1)
    assert (stats.completed, stats.request_throughput, stats.e2e_ms, stats.output_throughput) == (
        0,
        0.0,
        None,
        None,
    )
    assert stats.as_dict()["errors"] == {"503": 1}
