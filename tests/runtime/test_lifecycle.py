"""The server answers while the model loads, in the OpenAI envelope, and reports its versions."""

from __future__ import annotations

import httpx
import pytest

from fixtures.runtime_server import RunningServer

pytestmark = pytest.mark.engine


def test_answers_503_while_loading(runtime_server: RunningServer) -> None:
    seen = runtime_server.extra["loading"]
    assert seen, "the server never answered before it was ready"
    assert seen["health"].status_code == 200
    # Engine start takes tens of seconds; the HTTP server is up within a few: it must say "not yet".
    assert seen["ready"].status_code == 503
    assert seen["ready"].json()["error"]["type"] == "service_unavailable_error"
    assert seen["chat"].status_code == 503
    assert seen["chat"].headers["retry-after"]
    assert "loading" in seen["chat"].json()["error"]["message"]


def test_ready_health_version(runtime_server: RunningServer) -> None:
    assert httpx.get(runtime_server.base_url + "/ready").json() == {"status": "ready", "model": "tiny"}
    assert httpx.get(runtime_server.base_url + "/health").json() == {"status": "ok"}
    version = httpx.get(runtime_server.base_url + "/version").json()
    assert version["vllm_version"].startswith("0.32.") and version["version"]


def test_openapi_lists_mounted_routes(runtime_server: RunningServer) -> None:
    spec = httpx.get(runtime_server.base_url + "/openapi.json").json()
    for path in ("/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions", "/generate"):
        assert "post" in spec["paths"][path]
    body = spec["paths"]["/generate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["required"]) == {"prompt"}
    # pydantic's nested definitions are moved into components so every $ref resolves
    chat = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert "ChatMessage" in str(chat) and "ChatMessage" in spec["components"]["schemas"]
