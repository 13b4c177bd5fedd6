"""The side-by-side summary: which run is reported and how the ratios are formed (pure logic)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from inference_benchmark.servers import RunningServer
from inference_benchmark.side_by_side import comparison_table, cpu_table, median_run, ratios


def run(load: str, tok_s: float | None, ttft_p50: float, ttft_p99: float) -> dict[str, Any]:
    return {
        "load": load,
        "output_throughput": tok_s,
        "ttft_ms": {"count": 1, "mean": ttft_p50, "p50": ttft_p50, "p90": ttft_p99, "p99": ttft_p99},
    }


def test_median_run_keeps_one_whole_run() -> None:
    runs = [run("c=1", 300.0, 9.0, 9.0), run("c=1", 100.0, 1.0, 1.0), run("c=1", 200.0, 5.0, 5.0)]
    assert median_run(runs) is runs[2]
    assert median_run(runs[:2]) is runs[1]  # the lower middle of an even count
    assert median_run([run("c=1", None, 1.0, 1.0)])["output_throughput"] is None


def test_ratios_are_ours_over_vllm_per_load_point() -> None:
    ours = [run("c=1", 200.0, 10.0, 30.0), run("c=8", None, 20.0, 40.0)]
    vllm = [run("c=1", 100.0, 20.0, 30.0), run("c=8", 500.0, 10.0, 80.0)]
    first, second = ratios(ours, vllm)
    assert first == {"load": "c=1", "tok/s": 2.0, "TTFT p50": 0.5, "TTFT p99": 1.0}
    assert second == {"load": "c=8", "tok/s": None, "TTFT p50": 2.0, "TTFT p99": 0.5}


def test_ratios_refuse_sweeps_of_different_lengths() -> None:
    with pytest.raises(ValueError):
        ratios([run("c=1", 1.0, 1.0, 1.0)], [])


def test_comparison_table_has_a_column_per_target_and_ratio() -> None:
    table = comparison_table(
        {"ours": [run("c=1", 200.0, 10.0, 30.0)], "vllm": [run("c=1", 100.0, 20.0, 30.0)]}
    ).splitlines()
    assert "ours tok/s" in table[0] and "vllm TTFT p99" in table[0] and "ratio TTFT p50" in table[0]
    assert table[1].split() == [
        "c=1",
        "200.0",
        "100.0",
        "10.0",
        "20.0",
        "30.0",
        "30.0",
        "2.00",
        "0.50",
        "1.00",
    ]
    # without vLLM's figures there is nothing to divide by
    assert "ratio" not in comparison_table({"engine": [run("c=1", 50.0, 1.0, 2.0)]})


def test_cpu_table_lists_both_servers_per_load_point() -> None:
    ours, vllm = run("c=8", 1.0, 1.0, 1.0), run("c=8", 1.0, 1.0, 1.0)
    ours["server_cpu_ms_per_request"] = {"http_process": 1.5, "all_processes": 4.0}
    vllm["server_cpu_ms_per_request"] = {"http_process": 2.5, "all_processes": 5.0}
    header, row = cpu_table({"ours": [ours], "vllm": [vllm]}).splitlines()
    assert header.split() == [
        "CPU",
        "ms/request",
        "ours",
        "HTTP",
        "vllm",
        "HTTP",
        "ours",
        "all",
        "vllm",
        "all",
    ]
    assert row.split() == ["c=8", "1.50", "2.50", "4.00", "5.00"]


def test_server_cpu_accounting_covers_the_process_group() -> None:
    """A real process that burns CPU and has a child that burns CPU too, like a server and its engine."""
    burn = "sum(range(3 * 10**7)); print('burnt', flush=True); import time; time.sleep(60)"
    script = (
        "import subprocess, sys\n"
        f"child = subprocess.Popen([sys.executable, '-c', {burn!r}], stdout=subprocess.PIPE, text=True)\n"
        "child.stdout.readline()\n"
        f"{burn}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "burnt\n"
        own, group = RunningServer("http://unused", proc.pid).cpu_seconds()
        assert own > 0
        assert group > own  # the child's time counts for the group only
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
