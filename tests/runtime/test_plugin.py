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
