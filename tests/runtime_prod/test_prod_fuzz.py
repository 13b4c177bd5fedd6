"""Schemathesis against the live server's own /openapi.json: hostile and random input, bounded in
examples, must never produce a 5xx (nor an error logged by the runtime)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prod_helpers import MAX_MODEL_LEN, ProdServer, scrape

pytestmark = pytest.mark.engine
HOOKS = Path(__file__).with_name("fuzz_hooks.py")
EXAMPLES = os.environ.get("VIF_FUZZ_EXAMPLES", "40")  # per operation; each phase is bounded by it


def runtime_errors(prod: ProdServer) -> list[str]:
    return [line for line in prod.log_file.read_text().splitlines() if '"level": "ERROR"' in line]


def test_fuzzing_finds_no_server_error(prod: ProdServer) -> None:
    errors_before = len(runtime_errors(prod))
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--no-color",
        "run",
        prod.url + "/openapi.json",
        "--checks",
        "not_a_server_error",
        "--header",
        f"Authorization: Bearer {prod.keys['ci']}",
        "--max-examples",
        EXAMPLES,
        "--workers",
        "1",
        "--seed",
        "20261126",  # reproducible in CI; change it to explore further
        "--request-timeout",
        "120",
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": str(HOOKS),
        "VIF_FUZZ_MODEL": prod.model,
        "VIF_FUZZ_MAX_MODEL_LEN": str(MAX_MODEL_LEN),
    }
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    report = (run.stdout + run.stderr).replace(prod.keys["ci"], "<key>")
    assert run.returncode == 0, report[-6000:]
    assert runtime_errors(prod)[errors_before:] == []
    # The server is still healthy and nothing is left in flight.
    assert httpx.get(prod.url + "/health", timeout=30).status_code == 200
    assert scrape(prod.url).value("inference_requests_in_flight") == 0
