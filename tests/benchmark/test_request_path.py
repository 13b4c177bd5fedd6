"""``inference-benchmark request-path`` as a user runs it (a subprocess of ``tools/benchmark.py``): it drives
the runtime's real app with its stand-in engine, checks every stream, and prints and records the figure.
Nothing here asserts on speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "benchmark.py"


def request_path(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(SCRIPT), "request-path", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_request_path_prints_and_records_cpu_per_request(tmp_path: Path, api: str) -> None:
    out = tmp_path / "result.json"
    done = request_path(
        "--api", api, "--concurrency", "4", "--num-requests", "40", "--chunks", "8", "--rounds", "2",
        "--output-json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"request path ({api}, c=4, 8 chunks):" in done.stdout
    assert "us CPU per request, median of 2 rounds" in done.stdout
    result = json.loads(out.read_text())
    assert result["settings"]["api"] == api and result["settings"]["chunks"] == 8
    assert len(result["us_per_request"]) == 2 and all(us > 0 for us in result["us_per_request"])
    assert result["machine"]["cpu_count"] >= 1


def test_request_path_refuses_a_zero_count() -> None:
    done = request_path("--chunks", "0")
    assert done.returncode == 2
    assert "every count must be at least 1" in done.stderr
