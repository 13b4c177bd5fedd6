"""The side-by-side summary: which run is reported and how the ratios are formed (pure logic)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from inference_benchmark.servers import RunningServer
from inference_benchmark.side_by_side import (
    comparison_table,
    cpu_table,
    median_run,
    ratios,
    start_order_line,
    start_orders,
)


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


def test_ratios_are_ours_over_vllm_round_by_round() -> None:
    # Round 2 ran on a machine twice as slow for both servers: per-round ratios see through it, where
    # dividing the median runs would compare ours' fast round with vLLM's slow one.
    ours = [[run("c=1", 200.0, 10.0, 30.0), run("c=1", 100.0, 20.0, 60.0), run("c=1", 220.0, 10.0, 30.0)]]
    vllm = [[run("c=1", 100.0, 20.0, 30.0), run("c=1", 50.0, 40.0, 60.0), run("c=1", 200.0, 10.0, 30.0)]]
    (row,) = ratios(ours, vllm)
    assert row["load"] == "c=1"
    assert row["tok/s"] == {"median": 2.0, "min": 1.1, "max": 2.0, "rounds": [2.0, 2.0, 1.1]}
    assert row["TTFT p50"]["rounds"] == [0.5, 0.5, 1.0] and row["TTFT p50"]["median"] == 0.5
    assert row["TTFT p99"]["median"] == 1.0
    assert row["TTFT mean"]["rounds"] == [0.5, 0.5, 1.0]  # run() sets the mean to the p50


def test_ratios_skip_rounds_without_a_figure() -> None:
    ours = [[run("c=8", None, 20.0, 40.0), run("c=8", 300.0, 20.0, 40.0)]]
    vllm = [[run("c=8", 500.0, 10.0, 80.0), run("c=8", 0.0, 10.0, 80.0)]]
    (row,) = ratios(ours, vllm)
    assert row["tok/s"] is None  # one round lacks ours, the other has nothing to divide by
    assert row["TTFT p50"]["rounds"] == [2.0, 2.0]


def test_ratios_refuse_sweeps_of_different_lengths() -> None:
    with pytest.raises(ValueError):
        ratios([[run("c=1", 1.0, 1.0, 1.0)]], [])
    with pytest.raises(ValueError):  # and rounds that do not pair up
        ratios([[run("c=1", 1.0, 1.0, 1.0)]], [[run("c=1", 1.0, 1.0, 1.0)] * 2])


def test_each_start_order_gets_half_of_the_rounds() -> None:
    assert start_orders(1) == [(("ours", "vllm"), 1)]
    assert start_orders(4) == [(("ours", "vllm"), 2), (("vllm", "ours"), 2)]
    assert start_orders(5) == [(("ours", "vllm"), 3), (("vllm", "ours"), 2)]


def test_ratios_by_the_server_started_first() -> None:
    def started(first: str, tok_s: float) -> dict[str, Any]:
        return {**run("c=8", tok_s, 1.0, 1.0), "started_first": first}

    ours = [[started("ours", 90.0), started("ours", 95.0), started("vllm", 110.0)]]
    vllm = [[started("ours", 100.0), started("ours", 100.0), started("vllm", 100.0)]]
    (row,) = ratios(ours, vllm)
    by_first = row["tok/s by first started"]
    assert by_first["ours"] == {"median": 0.925, "min": 0.9, "max": 0.95, "rounds": [0.9, 0.95]}
    assert by_first["vllm"]["rounds"] == [1.1]
    assert row["tok/s"]["median"] == 0.95  # the overall ratio pairs every round, whoever started first
    line = start_order_line([row])
    assert (
        line == "ratio tok/s by the server started first: c=8: ours first 0.93 [0.90-0.95], vllm first 1.10"
    )
    # runs recorded before the order was kept (no "started_first") fall in neither group
    (old,) = ratios([[run("c=8", 1.0, 1.0, 1.0)]], [[run("c=8", 1.0, 1.0, 1.0)]])
    assert old["tok/s by first started"] == {"ours": None, "vllm": None}


def test_comparison_table_has_a_column_per_target_and_ratio() -> None:
    ours, vllm = [run("c=1", 200.0, 10.0, 30.0)], [run("c=1", 100.0, 20.0, 30.0)]
    table = comparison_table({"ours": ours, "vllm": vllm}, ratios([ours], [vllm])).splitlines()
    assert "ours tok/s" in table[0] and "vllm TTFT p99" in table[0] and "ratio TTFT p50" in table[0]
    assert table[1].split() == [
        "c=1",
        "200.0",
        "100.0",
        "10.0",
        "20.0",
        "30.0",
        "30.0",
        "10.0",
        "20.0",
        "2.00",
        "0.50",
        "1.00",
        "0.50",
    ]
    # several rounds: the median ratio and its range
    rounds = ratios([ours * 3], [[run("c=1", 100.0, 20.0, 30.0), *[run("c=1", 400.0, 5.0, 30.0)] * 2]])
    assert table_cells(comparison_table({"ours": ours, "vllm": vllm}, rounds))[-8:] == [
        "0.50", "[0.50-2.00]", "2.00", "[0.50-2.00]", "1.00", "[1.00-1.00]", "2.00", "[0.50-2.00]",
    ]  # fmt: skip
    # without vLLM's figures there is nothing to divide by
    assert "ratio" not in comparison_table({"engine": [run("c=1", 50.0, 1.0, 2.0)]})


def table_cells(table: str) -> list[str]:
    return table.splitlines()[1].split()


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
