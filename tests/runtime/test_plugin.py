"""Plugins: the example plugin loads through its entry point; unregistered class names are refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from fixtures.prereq import require_path
from fixtures.runtime_server import EXAMPLE_PLUGIN, RunningServer, runtime_command, write_config


def require_example_plugin() -> None:
    from fixtures.runtime_server import example_plugin_installed

    if not example_plugin_installed():
        require_path("VIF_EXAMPLE_PLUGIN_INSTALLED", "the example plugin (pip install -e examples/plugin)")


def test_entry_point_registration() -> None:
    require_example_plugin()
    from importlib.metadata import entry_points

    from inference_runtime.serving.base import BaseServingEngine
    from inference_runtime.serving.registry import ENTRY_POINT_GROUP, load_serving_class

    names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert EXAMPLE_PLUGIN in names
    cls = load_serving_class(EXAMPLE_PLUGIN)
    assert issubclass(cls, BaseServingEngine) and cls.routes == ("/instruct",)


@pytest.mark.engine
def test_plugin_route_served(runtime_server: RunningServer) -> None:
    require_example_plugin()
    r = httpx.post(
        runtime_server.base_url + "/instruct",
        json={"instruction": "List three colours.", "max_tokens": 5, "ignore_eos": True},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.json()["tokens"] == 5 and r.json()["output"]
    bad = httpx.post(runtime_server.base_url + "/instruct", json={"instruction": ""}, timeout=60)
    assert bad.status_code == 400
    assert bad.json() == {"status": "error", "message": bad.json()["message"], "field": "instruction"}


def run_cli(tmp_path: Path, entry: dict, *args: str) -> subprocess.CompletedProcess[str]:
    config = write_config(tmp_path, "m", entry)
    return subprocess.run(
        [*runtime_command(), "--model-name", "m", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


def test_unregistered_class_name_refused_at_startup(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    done = run_cli(
        tmp_path,
        {"class_name": "os:system", "model_path": str(tmp_path / "model")},
        "--allowed-root",
        str(tmp_path),
    )
    assert done.returncode == 2
    assert "class_name 'os:system' is not a registered serving class" in done.stderr
    assert "OpenAIServingChat" in done.stderr and "Traceback" not in done.stderr


def test_path_traversal_refused_at_startup(tmp_path: Path) -> None:
    done = run_cli(tmp_path, {"model_path": "../../../../etc"}, "--model-root", str(tmp_path / "models"))
    assert done.returncode == 2
    assert "model 'm': model_path: '../../../../etc' resolves outside the allowed roots" in done.stderr
    done = run_cli(
        tmp_path, {"model_path": str(tmp_path), "chat_template": "/etc/passwd"}, "--model-root", str(tmp_path)
    )
    assert done.returncode == 2 and "chat_template: '/etc/passwd' resolves outside" in done.stderr


def test_bad_config_field_exits_with_clear_message(tmp_path: Path) -> None:
    done = run_cli(tmp_path, {"model_path": "x", "tensor_parallel_size": 0})
    assert done.returncode == 2
    assert "model 'm': field 'tensor_parallel_size'" in done.stderr and "Traceback" not in done.stderr


def test_plugin_errors_keep_their_format_while_the_model_loads(tmp_path: Path) -> None:
    """401 and "loading" on a plugin's route come in the plugin's own error format, not OpenAI's."""
    require_example_plugin()
    import asyncio

    from fastapi.testclient import TestClient

    from inference_runtime.app import create_app
    from inference_runtime.auth import KeyRing
    from inference_runtime.cli import prepare
    from inference_runtime.settings import settings_from_args

    (tmp_path / "model").mkdir()
    entry = {"model_path": str(tmp_path / "model"), "class_name": EXAMPLE_PLUGIN}
    config = write_config(tmp_path, "m", entry)
    settings = settings_from_args(
        ["--model-name", "m", "--config", str(config), "--model-root", str(tmp_path)]
    )
    model, classes, _ = prepare(settings)

    async def never_loads(_options: object) -> object:  # stands in for an engine still loading
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    keys = KeyRing.from_sources(["id1:secret"], None)
    app = create_app(settings, model, classes, keys=keys, engine_factory=never_loads)
    key = {"Authorization": "Bearer secret"}
    with TestClient(app) as client:
        refused = client.post("/instruct", json={"instruction": "x"})
        loading = client.post("/instruct", json={"instruction": "x"}, headers=key)
        openai_route = client.post("/v1/chat/completions", json={}, headers=key)
    assert refused.status_code == 401 and refused.json()["status"] == "error"
    assert loading.status_code == 503 and loading.json()["status"] == "error"
    assert openai_route.status_code == 503 and "error" in openai_route.json()  # the OpenAI envelope


def test_minimal_plugin_request_model_through_the_request_path(tmp_path: Path) -> None:
    """A plugin whose request model declares only its own field gets the shared fields' defaults from
    ServingRequest: no 500 for the sampling fields it never declared, streaming or not."""
    import asyncio
    import time
    from collections.abc import AsyncIterator
    from typing import Any, ClassVar

    from fastapi import Request
    from fastapi.testclient import TestClient
    from prometheus_client import CollectorRegistry

    from inference_runtime.app import create_app
    from inference_runtime.cli import prepare
    from inference_runtime.generation import ChoiceOutput, GenerationChunk, SamplingSpec
    from inference_runtime.metrics import Metrics
    from inference_runtime.serving.base import BaseServingEngine, Completion, StreamState
    from inference_runtime.serving.request import ServingRequest
    from inference_runtime.settings import settings_from_args

    class EchoRequest(ServingRequest):
        text: str

    class Echo(BaseServingEngine[EchoRequest]):
        routes: ClassVar[tuple[str, ...]] = ("/echo",)
        request_model = EchoRequest
        protocol = "echo"

        async def create_prompt(self, request: EchoRequest, raw_request: Request) -> str:
            return request.text

        def create_response(self, request: EchoRequest, result: Completion) -> dict[str, Any]:
            return {"text": result.choices[0].text, "tokens": result.completion_tokens}

        def stream_chunks(
            self, request: EchoRequest, chunk: GenerationChunk, state: StreamState
        ) -> list[dict[str, Any]]:
            return [{"text": c.text} for c in chunk.choices]

    specs: list[SamplingSpec] = []

    class Tokenizer:
        def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
            return [ord(ch) for ch in text]

    class Engine:  # stands in for vLLM: echoes the prompt back, one character per step
        tokenizer = Tokenizer()
        max_model_len = 64
        dead = False

        async def wait_dead(self) -> None:
            await asyncio.Event().wait()

        def tool_parser(self, name: str) -> None:
            return None

        def shutdown(self) -> None:
            pass

        async def generate(
            self, prompt_token_ids: list[int], spec: SamplingSpec, request_id: str, *, stream: bool
        ) -> AsyncIterator[GenerationChunk]:
            specs.append(spec)
            text = "".join(chr(t) for t in prompt_token_ids)
            steps = list(text) if stream else [text]
            for i, step in enumerate(steps):
                done = i == len(steps) - 1
                choice = ChoiceOutput(0, step, len(step), finish_reason="stop" if done else None)
                yield GenerationChunk([choice], len(prompt_token_ids), done)

    async def start(_options: object) -> Engine:
        return Engine()

    (tmp_path / "model").mkdir()
    config = write_config(tmp_path, "m", {"model_path": str(tmp_path / "model")})
    settings = settings_from_args(
        ["--model-name", "m", "--config", str(config), "--model-root", str(tmp_path)]
    )
    model, _, _ = prepare(settings)
    with TestClient(
        create_app(
            settings, model, [Echo], metrics_registry=Metrics(CollectorRegistry()), engine_factory=start
        )
    ) as client:
        for _ in range(100):
            if client.get("/ready").status_code == 200:
                break
            time.sleep(0.05)  # the engine loads in the lifespan's background task
        done = client.post("/echo", json={"text": "hi"})
        streamed = client.post("/echo", json={"text": "hi", "stream": True, "max_tokens": 3})
        bad = client.post("/echo", json={"text": "hi", "temperature": 9})
    assert done.status_code == 200, done.text
    assert done.json() == {"text": "hi", "tokens": 2}
    assert streamed.status_code == 200, streamed.text
    assert streamed.text == 'data: {"text":"h"}\n\ndata: {"text":"i"}\n\ndata: [DONE]\n\n'
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "temperature"
    # The defaults of the fields the plugin never declared: the remaining context, no stop, EOS kept.
    assert (specs[0].max_tokens, specs[0].stop, specs[0].ignore_eos, specs[0].min_tokens) == (
        62,
        [],
        False,
        0,
    )
    assert specs[1].max_tokens == 3


def test_request_model_outside_serving_request_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared path reads ServingRequest's fields: a class whose model lacks them fails at start-up."""
    from pydantic import BaseModel

    from inference_runtime.config import ConfigError
    from inference_runtime.serving import registry
    from inference_runtime.serving.base import BaseServingEngine

    class Bare(BaseServingEngine):  # type: ignore[type-arg]
        request_model = BaseModel  # type: ignore[assignment]

    monkeypatch.setitem(registry.BUILTINS, "Bare", f"{__name__}:Bare")
    monkeypatch.setattr(f"{__name__}.Bare", Bare, raising=False)
    with pytest.raises(ConfigError, match="request_model does not derive from ServingRequest"):
        registry.load_serving_class("Bare")
