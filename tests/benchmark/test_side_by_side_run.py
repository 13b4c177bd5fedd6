"""``python tools/side_by_side.py`` run for real: our runtime and vLLM's own server on the tiny model.

A short run (two rounds of one load point, then three seconds of it under py-spy), as a user would
start it: both servers come up with the same engine settings (each with one flag of its own, which the
output names), each round pairs them back to back, the second round runs after both were started again
in the other order, py-spy samples each server's process tree in uncounted rounds, and the output
records what was run. Nothing here asserts on speed (docs/benchmark.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "side_by_side.py"
ROUNDS = 2
REQUESTS = 4
BUDGET = "--stream-write-budget=1"
INTERVAL = "--stream-interval=2"

pytestmark = pytest.mark.engine


def test_side_by_side_runs_both_servers_and_records_its_settings(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sbs.json"
    argv = [
        sys.executable, str(SCRIPT), "--model", str(tiny_model_path), "--model-name", "tiny",
        "--targets", "ours,vllm", "--max-model-len", "256", "--max-num-seqs", "4",
        "--concurrency", "2", "--num-requests", str(REQUESTS), "--warmup", "1", "--repeat", str(ROUNDS),
        "--input-len", "8", "--output-len", "4", "--workdir", str(tmp_path / "work"),
        "--profile", "--profile-seconds", "3", "--output-json", str(out),
        f"--runtime-arg={BUDGET}", f"--vllm-arg={INTERVAL}",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(out.read_text())
    assert document["failures"] == {}
    assert document["engine"]["enforce_eager"] is True and document["engine"]["max_model_len"] == 256
    assert document["load"]["points"] == ["c=2"] and document["repeat"] == ROUNDS
    assert document["runtime_args"] == [BUDGET] and document["vllm_args"] == [INTERVAL]
    assert document["machine"]["cpu_count"] >= 1 and len(document["machine"]["load_average"]) == 3
    for target in ("ours", "vllm"):
        (rounds,) = document["trials"][target]
        assert [r["completed"] for r in rounds] == [REQUESTS] * ROUNDS, rounds
        assert [r["started_first"] for r in rounds] == ["ours", "vllm"]
        for log in (f"{target}.log", f"{target}-2.log"):  # a log per start
            assert (tmp_path / "work" / log).is_file()
        assert all(r["server_cpu_ms_per_request"]["all_processes"] > 0 for r in rounds)
    (ratio,) = document["ratios"]
    assert len(ratio["tok/s"]["rounds"]) == ROUNDS
    assert ratio["tok/s"]["min"] <= ratio["tok/s"]["median"] <= ratio["tok/s"]["max"]
    commands = {"ours": "inference-runtime --model-name tiny", "vllm": "vllm.entrypoints.openai.api_server"}
    for target, command in commands.items():
        summary = document["profiles"][target]["c=2"]
        assert summary["samples"] > 0, summary
        assert abs(sum(summary["processes"].values()) - 1) < 1e-9
        # Every sample is in the server's own tree: each stack starts at its root process, the command
        # the tool started. (Which processes get samples is not asserted: the HTTP process is idle
        # most of a round this short, and py-spy skips idle threads, so on a loaded machine three
        # seconds can pass without one sample of it.) A line is "frame;frame;... count", and a sample of
        # a process with no Python frame is only "process ...:"command" count".
        raw = (tmp_path / "work" / f"profile-{target}-c=2.txt").read_text().splitlines()
        roots = {line.rpartition(" ")[0].split(";", 1)[0] for line in raw if line.strip()}
        assert len(roots) == 1 and command in roots.pop(), raw[:3]
    # The printed summary carries its own settings and the paired ratios.
    assert "settings: tiny (" in done.stdout and "eager, max_model_len 256" in done.stdout, done.stdout
    assert f"ours with {BUDGET}; vLLM with {INTERVAL}" in done.stdout, done.stdout
    assert "ratio tok/s" in done.stdout and "busy-poll" in done.stdout
    assert "ratio tok/s by the server started first: c=2: ours first " in done.stdout, done.stdout
    # 4 requests at c=2 are 2 waves: too few for TTFT percentiles, and the summary says so
    assert "note: fewer than 3 waves of requests at c=2 (2): " in done.stdout, done.stdout
    assert len(ratio["TTFT mean"]["rounds"]) == ROUNDS
