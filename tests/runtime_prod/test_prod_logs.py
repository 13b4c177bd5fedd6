"""Logs of a live server: one JSON access line per request on the console, in the rotating file and at
a real syslog receiver; request ids taken from the client and echoed; no prompts or completions."""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest
from prod_helpers import ProdServer, sse_events

from fixtures.helpers import wait_for

pytestmark = pytest.mark.engine
ACCESS_FIELDS = {
    "request_id",
    "model",
    "protocol",
    "key_id",
    "status",
    "latency",
    "ttft",
    "prompt_tokens",
    "completion_tokens",
}


def access_lines(text: str, request_id: str) -> list[dict[str, object]]:
    """The JSON access records for ``request_id`` in ``text`` (syslog prefixes are skipped)."""
    found = []
    for line in text.splitlines():
        start = line.find("{")
        if start < 0 or request_id not in line:
            continue
        doc = json.loads(line[start:])
        if doc.get("logger") == "inference_runtime.access" and doc.get("request_id") == request_id:
            found.append(doc)
    return found


def test_access_line_in_console_file_and_syslog(prod: ProdServer) -> None:
    request_id = f"trace-{uuid.uuid4().hex}"
    secret_prompt = f"PROMPT-{uuid.uuid4().hex}"
    body = {
        "model": prod.model,
        "messages": [{"role": "user", "content": secret_prompt}],
        "max_tokens": 24,
        "ignore_eos": True,
    }
    r = httpx.post(
        prod.url + "/v1/chat/completions",
        json=body,
        headers={**prod.auth(), "X-Request-Id": request_id},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == request_id
    usage, completion = r.json()["usage"], r.json()["choices"][0]["message"]["content"]

    sinks = {"console": prod.console, "file": lambda: prod.log_file.read_text(), "syslog": prod.syslog.text}
    for sink, read in sinks.items():
        wait_for(lambda read=read: access_lines(read(), request_id), what=f"access line in the {sink}")
        (line,) = access_lines(read(), request_id)
        assert set(line) >= ACCESS_FIELDS, (sink, line)
        assert line["model"] == prod.model and line["protocol"] == "chat" and line["key_id"] == "ci"
        assert line["status"] == 200 and line["latency"] > 0 and line["ttft"] is None  # not streamed
        assert line["prompt_tokens"] == usage["prompt_tokens"]
        assert line["completion_tokens"] == usage["completion_tokens"] == 24
    # RFC 3164: <facility*8+severity> (user.info = 14), then the tag.
    datagram = next(m for m in prod.syslog.messages if request_id in m)
    assert datagram.startswith("<14>inference-runtime: {"), datagram[:80]

    # Neither the prompt nor the completion is logged anywhere (--log-content is off).
    logs = prod.all_logs()
    assert secret_prompt not in logs
    assert len(completion) >= 20 and completion not in logs


def test_streamed_request_logs_its_time_to_first_token(prod: ProdServer) -> None:
    request_id = f"stream-{uuid.uuid4().hex}"
    with httpx.Client(
        base_url=prod.url, headers={**prod.auth(), "X-Request-Id": request_id}, timeout=120
    ) as c:
        events = sse_events(
            c, "/generate", {"prompt": "hi", "max_tokens": 5, "ignore_eos": True, "stream": True}
        )
    assert events
    wait_for(lambda: access_lines(prod.log_file.read_text(), request_id), what="stream access line")
    (line,) = access_lines(prod.log_file.read_text(), request_id)
    assert line["protocol"] == "generate" and line["stream"] is True and line["status"] == 200
    assert isinstance(line["ttft"], float) and 0 < line["ttft"] <= line["latency"]
    assert line["completion_tokens"] == 5


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", "new\tline"])
def test_unsafe_client_request_id_is_replaced(prod: ProdServer, bad: str) -> None:
    r = httpx.get(prod.url + "/v1/models", headers={**prod.auth(), "X-Request-Id": bad}, timeout=30)
    assert r.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])


@pytest.mark.parametrize(
    ("method", "path", "auth", "status"),
    [
        ("GET", "/health", False, 200),
        ("GET", "/v1/models", True, 200),
        ("GET", "/v1/models", False, 401),
        ("GET", "/no/such/route", True, 404),
        ("POST", "/v1/completions", True, 400),  # not JSON
        ("POST", "/generate", False, 401),
    ],
)
def test_every_response_carries_the_request_id(
    prod: ProdServer, method: str, path: str, auth: bool, status: int
) -> None:
    request_id = f"every-{uuid.uuid4().hex}"
    headers = {"X-Request-Id": request_id, **(prod.auth() if auth else {})}
    r = httpx.request(method, prod.url + path, headers=headers, content=b"{not json", timeout=30)
    assert r.status_code == status, r.text
    assert r.headers["x-request-id"] == request_id
