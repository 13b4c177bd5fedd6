"""Human-readable tables of run results; the JSON form is ``RunResult.as_dict``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from inference_benchmark.runner import RunResult
from inference_benchmark.stats import Summary

_LATENCIES = (("TTFT", "ttft_ms"), ("ITL", "itl_ms"), ("TPOT", "tpot_ms"), ("E2E", "e2e_ms"))


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def run_table(result: RunResult) -> str:
    """One run: throughputs, a latency block (mean and percentiles in ms) and the errors by status."""
    s = result.stats
    lines = [
        f"{result.point.label}: {s.completed} ok, {s.failed} failed in {s.duration_s:.2f} s"
        f"  (client CPU {result.client_cpu_s:.2f} s, load average {result.load_average[0]:.2f})",
        f"  requests/s {fmt(s.request_throughput, 2)}   output tokens/s {fmt(s.output_throughput)}"
        f"   tokens/request: prompt {fmt(s.mean_prompt_tokens)}, output {fmt(s.mean_output_tokens)}",
        f"  {'ms':<6}{'mean':>10}{'p50':>10}{'p90':>10}{'p99':>10}",
    ]
    for name, attr in _LATENCIES:
        summary: Summary | None = getattr(s, attr)
        if summary:
            cells = (summary.mean, summary.p50, summary.p90, summary.p99)
            lines.append(f"  {name:<6}" + "".join(f"{fmt(v, 2):>10}" for v in cells))
    if s.missing_usage:
        lines.append(f"  {s.missing_usage} replies had no usage: output tokens/s not reported")
    for status, count in s.errors.items():
        example = s.error_examples.get(status, "")
        lines.append(f"  error {status}: {count}x  {example}")
    return "\n".join(lines)


def sweep_table(runs: Sequence[dict[str, Any]]) -> str:
    """One row per load point (runs in their JSON form), with the figures a sweep is read for."""
    header = (
        f"{'load':<16}{'ok':>6}{'fail':>6}{'req/s':>9}{'tok/s':>10}"
        f"{'TTFT p50':>10}{'TTFT p99':>10}{'ITL p50':>9}{'E2E p50':>10}{'E2E p99':>10}"
    )
    rows = [header]
    for run in runs:
        rows.append(
            f"{run['load']:<16}{run['completed']:>6}{run['failed']:>6}{fmt(run['request_throughput'], 2):>9}"
            f"{fmt(run['output_throughput']):>10}{fmt(latency(run, 'ttft_ms', 'p50')):>10}"
            f"{fmt(latency(run, 'ttft_ms', 'p99')):>10}{fmt(latency(run, 'itl_ms', 'p50'), 2):>9}"
            f"{fmt(latency(run, 'e2e_ms', 'p50')):>10}{fmt(latency(run, 'e2e_ms', 'p99')):>10}"
        )
    return "\n".join(rows)


def latency(run: dict[str, Any], metric: str, statistic: str) -> float | None:
    """One statistic of one latency metric of a run in JSON form, ``None`` if the run has none."""
    summary = run.get(metric)
    return summary[statistic] if summary else None
