"""Every error status in the protocol's own envelope, with nothing internal leaking (live server)."""

from __future__ import annotations

import httpx
import pytest

from fixtures.helpers import assert_no_leaks
from fixtures.runtime_server import RunningServer

pytestmark = pytest.mark.engine


def assert_envelope(r: httpx.Response, status: int, err_type: str, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == err_type
    if param is not None:
        assert body["error"]["param"] == param
    assert_no_leaks(r.text)
    return body["error"]


def post(server: RunningServer, path: str, **kw: object) -> httpx.Response:
    return httpx.post(server.base_url + path, timeout=60, **kw)  # type: ignore[arg-type]


def chat(server: RunningServer, **fields: object) -> dict:
    return {"model": server.model_name, "messages": [{"role": "user", "content": "hi"}], **fields}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 0}, "n"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({"logprobs": True, "top_logprobs": 50}, "top_logprobs"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        ({"stop": 5}, "stop.str"),
    ],
)
def test_400_invalid_fields(runtime_server: RunningServer, fields: dict, param: str) -> None:
    err = assert_envelope(
        post(runtime_server, "/v1/chat/completions", json=chat(runtime_server, **fields)),
        400,
        "invalid_request_error",
    )
    assert err["param"] is not None and err["param"].startswith(param.split(".")[0])
    assert param.split(".")[0] in err["message"]


def test_400_not_json_and_wrong_types(runtime_server: RunningServer) -> None:
    err = assert_envelope(
        post(runtime_server, "/v1/completions", content=b"{not json"), 400, "invalid_request_error"
    )
    assert "not valid JSON" in err["message"]
    assert_envelope(post(runtime_server, "/v1/completions", content=b"[1,2]"), 400, "invalid_request_error")
    assert_envelope(
        post(runtime_server, "/v1/completions", json={"model": runtime_server.model_name}),
        400,
        "invalid_request_error",
        "prompt",
    )
    assert_envelope(
        post(runtime_server, "/v1/completions", json={"model": runtime_server.model_name, "prompt": [10**9]}),
        400,
        "invalid_request_error",
        "prompt",
    )


def test_404_unknown_model_and_route(runtime_server: RunningServer) -> None:
    err = assert_envelope(
        post(runtime_server, "/v1/chat/completions", json={**chat(runtime_server), "model": "gpt-17"}),
        404,
        "not_found_error",
        "model",
    )
    assert err["code"] == "model_not_found" and "gpt-17" in err["message"]
    assert_envelope(
        post(runtime_server, "/generate", json={"model": "other", "prompt": "x"}),
        404,
        "not_found_error",
        "model",
    )
    assert_envelope(
        httpx.get(runtime_server.base_url + "/v1/nothing-here", timeout=60), 404, "not_found_error"
    )
    assert_envelope(
        httpx.get(runtime_server.base_url + "/v1/chat/completions", timeout=60), 405, "invalid_request_error"
    )


def test_prompt_longer_than_context_names_both_numbers(runtime_server: RunningServer) -> None:
    long_prompt = "def f(x): return x\n" * 400
    err = assert_envelope(
        post(
            runtime_server,
            "/v1/completions",
            json={"model": runtime_server.model_name, "prompt": long_prompt, "max_tokens": 4},
        ),
        400,
        "invalid_request_error",
    )
    assert err["code"] == "context_length_exceeded" and "512" in err["message"]
    prompt_tokens = int(err["message"].split("the prompt has ")[1].split()[0])
    assert prompt_tokens > 512
    err = assert_envelope(
        post(runtime_server, "/v1/chat/completions", json=chat(runtime_server, max_tokens=600)),
        400,
        "invalid_request_error",
        "max_tokens",
    )
    assert "512" in err["message"] and "600" in err["message"]


def test_engine_rejections_are_400(runtime_server: RunningServer) -> None:
    err = assert_envelope(
        post(runtime_server, "/v1/chat/completions", json=chat(runtime_server, n=2, temperature=0)),
        400,
        "invalid_request_error",
    )
    assert "greedy" in err["message"]


def test_413_body_too_large(runtime_server: RunningServer) -> None:
    huge = {"model": runtime_server.model_name, "prompt": "x" * (5 << 20)}
    assert_envelope(post(runtime_server, "/v1/completions", json=huge), 413, "invalid_request_error")


def test_caps_on_n_and_messages(runtime_server: RunningServer) -> None:
    assert_envelope(
        post(runtime_server, "/v1/chat/completions", json=chat(runtime_server, n=17)),
        400,
        "invalid_request_error",
        "n",
    )
    many = [{"role": "user", "content": "x"}] * 513
    assert_envelope(
        post(runtime_server, "/v1/chat/completions", json=chat(runtime_server, messages=many)),
        400,
        "invalid_request_error",
        "messages",
    )


def test_server_still_healthy_after_abuse(runtime_server: RunningServer) -> None:
    """The abuse of the tests above, sent here again, so this test holds whichever tests ran before it;
    only the log this test caused is checked (the server's start-up log is not its business)."""
    logged = len(runtime_server.log())
    model = runtime_server.model_name
    abuse = [
        ("/v1/completions", {"content": b"{not json"}),
        ("/v1/completions", {"content": b"\x00\xff" * 64}),
        ("/v1/completions", {"json": {"model": model, "prompt": [10**9]}}),
        ("/v1/completions", {"json": {"model": model, "prompt": "x" * (5 << 20)}}),
        ("/v1/chat/completions", {"json": chat(runtime_server, n=2, temperature=0)}),
        ("/v1/chat/completions", {"json": chat(runtime_server, messages=[{"role": "user"}] * 513)}),
        ("/generate", {"json": {"model": model, "prompt": "x", "history_input": ["a"]}}),
    ]
    for path, kw in abuse:
        status = post(runtime_server, path, **kw).status_code
        assert 400 <= status < 500, (path, status)
    assert httpx.get(runtime_server.base_url + "/health", timeout=60).status_code == 200
    assert httpx.get(runtime_server.base_url + "/ready", timeout=60).status_code == 200
    caused = runtime_server.log()[logged:]
    assert "Traceback" not in caused, caused[-3000:]
