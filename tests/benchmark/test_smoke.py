"""A few real requests through ``python tools/benchmark.py`` against the shared live runtime server.

Runs the script as a user would (a subprocess, from the clone), so the launcher, the CLI, the HTTP
client and the statistics are all exercised against the real engine. The full sweep is a benchmark
(docs/benchmark.md), not a test: nothing here asserts on speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fixtures.runtime_server import RunningServer

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "benchmark.py"
REQUESTS = 4
OUTPUT_LEN = 8

pytestmark = pytest.mark.engine


def run_benchmark(
    server: RunningServer, tmp_path: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / "result.json"
    argv = [
        sys.executable, str(SCRIPT), "--base-url", server.base_url,
        "--concurrency", "2", "--num-requests", str(REQUESTS), "--warmup", "1",
        "--input-len", "16", "--output-len", str(OUTPUT_LEN), "--output-json", str(out), *args,
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    return done, json.loads(out.read_text())


def check_latency(summary: dict[str, Any] | None, count: int) -> None:
    assert summary is not None
    assert summary["count"] == count
    assert 0 <= summary["p50"] <= summary["p90"] <= summary["p99"]
    assert summary["mean"] >= 0


@pytest.mark.parametrize(
    ("api", "stream"),
    [("completions", True), ("chat", False), ("chat", True), ("generate", True), ("generate", False)],
)
def test_benchmark_reports_every_field(
    runtime_server: RunningServer, tmp_path: Path, api: str, stream: bool
) -> None:
    done, result = run_benchmark(
        runtime_server, tmp_path, "--api", api, "--stream" if stream else "--no-stream"
    )
    assert done.returncode == 0, done.stderr
    assert "TTFT p50" in done.stdout and "requests/s" in done.stdout
    assert "note: fewer than 3 waves of requests at c=2 (2): " in done.stdout  # 4 requests at c=2
    assert result["target"]["model"] == runtime_server.model_name  # asked from /v1/models
    assert result["load"]["stream"] is stream
    assert {"date_utc", "cpu", "load_average"} <= result["machine"].keys()
    [run] = result["runs"]
    assert (run["load"], run["completed"], run["failed"], run["errors"]) == ("c=2", REQUESTS, 0, {})
    # ignore_eos makes every reply exactly OUTPUT_LEN tokens, and the count is the server's usage
    assert run["total_output_tokens"] == REQUESTS * OUTPUT_LEN
    assert run["missing_usage"] == 0
    assert run["mean_prompt_tokens"] > 0
    assert run["request_throughput"] > 0 and run["output_throughput"] > 0
    check_latency(run["e2e_ms"], REQUESTS)
    assert run["e2e_ms"]["p50"] > 0
    if not stream:
        assert run["stream_chunks"] == 0
        assert run["ttft_ms"] is None and run["itl_ms"] is None and run["tpot_ms"] is None
        return
    check_latency(run["ttft_ms"], REQUESTS)
    assert run["ttft_ms"]["p50"] > 0
    # How many chunks carry the 8 tokens depends on how far the client lags behind the engine (the
    # server packs what the engine made meanwhile into one event): every stream carries text, no
    # chunk is empty, and ITL has one sample per chunk after each stream's first.
    chunks = run["stream_chunks"]
    assert REQUESTS <= chunks <= REQUESTS * OUTPUT_LEN, chunks
    if chunks == REQUESTS:
        assert run["itl_ms"] is None and run["tpot_ms"] is None
    else:
        check_latency(run["itl_ms"], chunks - REQUESTS)
        assert 1 <= run["tpot_ms"]["count"] <= min(REQUESTS, chunks - REQUESTS)


def test_benchmark_counts_errors_by_status(runtime_server: RunningServer, tmp_path: Path) -> None:
    done, result = run_benchmark(runtime_server, tmp_path, "--model", "no-such-model", "--warmup", "0")
    assert done.returncode == 1  # no request of the load point succeeded
    [run] = result["runs"]
    assert (run["completed"], run["errors"]) == (0, {"404": REQUESTS})
    assert "no-such-model" in run["error_examples"]["404"]
    assert "error 404: 4x" in done.stdout
