"""Reading py-spy's raw profiles: which process each sample belongs to and what it was doing (pure logic).

The lines are in the format ``py-spy record --subprocesses --format raw`` writes (seen in a real run):
each stack starts with the chain of processes from the sampled root down to the one the sample is in.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inference_benchmark.profile import profile_table, summarize

ROOT = 'process 100:"/venv/bin/python3 /venv/bin/inference-runtime --model-name tiny"'
CORE = f'{ROOT};process 101:"VLLM::EngineCore"'
WORKER = f'{CORE};process 102:"VLLM::Worker"'
RAW = "\n".join(
    [
        f"{ROOT};<module> (<string>:1);run (uvicorn/server.py:65);_render (serving/sse.py:30) 30",
        f"{CORE};run_busy_loop (vllm/v1/engine/core.py:900);sched_yield (vllm/utils.py:12) 20",
        f"{CORE};step (vllm/v1/engine/core.py:300);schedule (vllm/v1/core/sched/scheduler.py:200) 10",
        f"{WORKER};worker_busy_loop (vllm/executor.py:700);acquire_read (shm_broadcast.py:400) 5",
        f"{WORKER};worker_busy_loop (vllm/executor.py:700);MessageQueue.acquire_read (shm.py:401) 15",
        f"{WORKER};execute_model (vllm/worker.py:80);forward (torch/nn/modules/module.py:1) 20",
        "a line that is not a stack",
        "",
    ]
)


def test_each_sample_is_counted_for_the_innermost_process_and_busy_polling_is_told_apart(
    tmp_path: Path,
) -> None:
    raw = tmp_path / "profile.txt"
    raw.write_text(RAW)
    summary = summarize(raw, root_pid=100, top=2)
    assert summary["samples"] == 100
    assert summary["processes"] == {"http": 0.3, "EngineCore": 0.3, "Worker": 0.4}
    # sched_yield and MessageQueue.acquire_read are spinning; a bare "acquire_read" is not one of them.
    assert summary["busy_poll"] == pytest.approx(0.35)
    assert summary["top"][0] == {
        "process": "http",
        "frame": "_render (serving/sse.py:30)",
        "share": 0.3,
    }
    assert len(summary["top"]) == 2


def test_an_empty_profile_has_no_shares(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    raw.write_text("")
    assert summarize(raw, root_pid=100) == {"samples": 0, "processes": {}, "busy_poll": 0.0, "top": []}


def test_the_table_has_a_column_per_process_seen_in_any_profile(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    raw.write_text(RAW)
    ours = summarize(raw, root_pid=100)
    raw.write_text(f"{ROOT};serve (vllm/entrypoints/api_server.py:1) 10")
    theirs = summarize(raw, root_pid=100)
    header, first, second = profile_table({"ours": {"c=8": ours}, "vllm": {"c=8": theirs}}).splitlines()
    assert header.split() == ["profile", "samples", "EngineCore", "Worker", "http", "busy-poll"]
    assert first.split() == ["ours", "c=8", "100", "30.0%", "40.0%", "30.0%", "35.0%"]
    assert second.split() == ["vllm", "c=8", "10", "0.0%", "0.0%", "100.0%", "0.0%"]
