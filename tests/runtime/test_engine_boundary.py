"""The engine boundary: what imports vLLM, and what the runtime does when its engine process dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from fixtures.runtime_server import spawn_runtime, start_runtime, tiny_entry

LIGHT_MODULES = (
    "inference_runtime.serving.base",
    "inference_runtime.serving.streaming",
    "inference_runtime.serving.http",
    "inference_runtime.serving.chat_template",
    "inference_runtime.serving.request",
    "inference_runtime.serving.fields",
    "inference_runtime.protocols.openai.request",
    "inference_runtime.protocols.openai.logprobs",
    "inference_runtime.serving.registry",
    "inference_runtime.config",
    "inference_runtime.engine_api",
    "inference_runtime.app",
    "inference_runtime.cli",
    "inference_runtime.protocols.chat.serving",
    "inference_runtime.protocols.completion.serving",
    "inference_runtime.protocols.generate.serving",
    "inference_runtime.cpu_amx",
    "inference_runtime.tools.plan",
    "inference_runtime.tools.registry",
    "inference_runtime.tools.stream",
    "inference_runtime.routes.tokenize",
    "inference_runtime.sources",
    "inference_runtime.sources.hub",
    "inference_runtime.sources.s3",
)


def fresh_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_plugin_facing_modules_import_neither_torch_nor_vllm() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for m in {LIGHT_MODULES!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('vllm', 'torch'))))"
    )
    done = fresh_python(code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_bad_config_exits_2_without_loading_the_engine(tmp_path: Path) -> None:
    config = tmp_path / "model_config.json"
    config.write_text(json.dumps({"m": {"model_path": "no-such-model-folder"}}))
    code = (
        "import json, sys\n"
        "from inference_runtime.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit as exc:\n"
        "    loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('vllm', 'torch'))\n"
        "    print(json.dumps({'code': exc.code, 'loaded': loaded}))\n"
    )
    termination_log = tmp_path / "termination-log"
    done = fresh_python(
        code,
        *("--model-name", "m", "--config", str(config), "--model-root", str(tmp_path)),
        *("--termination-log", str(termination_log)),
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"code": 2, "loaded": []}
    assert "model_path 'no-such-model-folder' is not a folder" in done.stderr
    # In a pod this file is the container's termination message, shown on the InferenceModel.
    assert "model_path 'no-such-model-folder' is not a folder" in termination_log.read_text()


def test_vllm_runs_the_amx_permission_plugin_in_its_processes() -> None:
    """vLLM's own plugin loader (what its engine-core and worker processes call) finds ours."""
    code = (
        "from vllm.plugins import load_plugins_by_group\n"
        "print(sorted(load_plugins_by_group('vllm.general_plugins')))"
    )
    done = fresh_python(code)
    assert done.returncode == 0, done.stderr
    assert "inference_runtime_amx" in done.stdout


@pytest.mark.engine
def test_a_two_token_first_prefill_is_served(tiny_model_path: Path, tmp_path: Path) -> None:
    """The first forward pass of a fresh engine is a 2-token prefill of a bf16 model in eager mode.

    On CPUs with AMX this is what killed vLLM 0.32's CPU worker with SIGILL before the runtime asked
    for AMX permission in every engine process (inference_runtime/cpu_amx.py); elsewhere it is the
    same request path, so the test runs everywhere.
    """
    entry = tiny_entry(tiny_model_path, class_name="OpenAIServingCompletion")
    with start_runtime(tmp_path, "tiny", entry) as server:
        reply = httpx.post(
            server.base_url + "/v1/completions",
            json={"model": "tiny", "prompt": "hi", "max_tokens": 4, "temperature": 0},
            timeout=120,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["usage"]["completion_tokens"] >= 1
        assert server.proc.poll() is None


def engine_processes(pid: int) -> list[psutil.Process]:
    """The engine processes the runtime spawned (vLLM's engine core; its workers are below it).

    multiprocessing's resource tracker is a child too, but not part of the engine.
    """
    return [p for p in psutil.Process(pid).children() if "resource_tracker" not in " ".join(p.cmdline())]


@pytest.mark.engine
@pytest.mark.smollm2
def test_engine_death_answers_503_logs_once_and_exits_1(smollm2_model_path: Path, tmp_path: Path) -> None:
    # SmolLM2, not the tiny model: the stream below must still be in the engine when the engine is
    # killed. The tiny model made its 400 tokens before the client, on a loaded machine, had read the
    # first event (CI under two hogs: the stream ended normally); SmolLM2 needs tens of seconds for them.
    entry = tiny_entry(smollm2_model_path, class_name="OpenAIServingCompletion")
    # A grace long enough to observe the 503s before the exit on a loaded machine (the loop below ends
    # as soon as it sees them; the exit then follows the grace).
    server = spawn_runtime(tmp_path, "smollm2", entry, "--engine-death-exit", "30")
    try:
        server.wait_ready()
        children = engine_processes(server.proc.pid)
        assert children, "the runtime started no engine process"
        # A stream in flight when the engine dies ends with an error event, not a hang.
        with httpx.stream(
            "POST",
            server.base_url + "/v1/completions",
            json={
                "model": "smollm2",
                "prompt": "hello",
                "max_tokens": 400,
                "ignore_eos": True,
                "stream": True,
            },
            timeout=15,
        ) as stream:
            lines = stream.iter_lines()
            assert next(line for line in lines if line.startswith("data: "))
            for child in children:
                os.kill(child.pid, signal.SIGKILL)
            rest = [line for line in lines if line.startswith("data: ")]
        assert rest[-1] == "data: [DONE]", rest[-3:]
        last_event = json.loads(rest[-2][len("data: ") :])
        assert last_event["error"]["type"] == "service_unavailable_error", rest[-3:]
        # Until the process exits, every generating request and the liveness probe say 503.
        deadline = time.monotonic() + 25
        health = completion = None
        while time.monotonic() < deadline and server.proc.poll() is None:
            health = httpx.get(server.base_url + "/health", timeout=5)
            completion = httpx.post(
                server.base_url + "/v1/completions",
                json={"model": "smollm2", "prompt": "hello there", "max_tokens": 4},
                timeout=10,
            )
            if health.status_code == 503 and completion.status_code == 503:
                break
            time.sleep(0.2)
        assert health is not None and health.status_code == 503, health and health.text
        assert completion is not None and completion.status_code == 503, completion and completion.text
        assert completion.json()["error"]["type"] == "service_unavailable_error"
        assert server.proc.wait(90) == 1
        log = server.log()
        assert log.count("the inference engine died") == 1, log[-3000:]
        assert "Traceback" not in log.split("the inference engine died", 1)[1]
    finally:
        server.stop()


@pytest.mark.engine
def test_sigterm_while_loading_exits_promptly(tiny_model_path: Path, tmp_path: Path) -> None:
    """A pod deleted while its model loads must not hold the node for the whole grace period."""
    server = spawn_runtime(tmp_path, "tiny", tiny_entry(tiny_model_path))
    try:
        deadline = time.monotonic() + 120
        children: list[psutil.Process] = []
        while time.monotonic() < deadline and not children:  # wait for the engine process to start
            children = engine_processes(server.proc.pid)
            time.sleep(0.2)
        assert children, "the runtime started no engine process"
        assert httpx.get(server.base_url + "/ready", timeout=10).status_code == 503  # still loading
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"engine processes left running: {alive}"
    finally:
        server.stop()
