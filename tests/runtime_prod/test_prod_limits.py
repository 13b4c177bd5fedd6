"""Overload and disconnects on a live server (--limit-concurrency 2, --stream-write-budget 1): request
N+1 is refused with 429 at once while the admitted ones run, a stream that starts while tokens are
streamed faster than the write budget writes several tokens at a time, and a client that goes away frees
its engine work."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from prod_helpers import (
    CONCURRENCY,
    MAX_MODEL_LEN,
    ProdServer,
    access_log_lines,
    engine_running,
    scrape,
    sse_events,
)

from fixtures.helpers import wait_for

pytestmark = pytest.mark.engine


def test_requests_over_the_limit_get_429_at_once_while_the_admitted_ones_run(prod: ProdServer) -> None:
    """``CONCURRENCY`` requests are held in flight (admitted, their bodies one byte short), so every
    further request meets a full server, whatever the machine's speed. Each gets 429 while the held ones
    are still in flight (the server says so in /metrics): refusals are not queued behind admitted work.
    Then the held requests complete in full."""
    over, n, max_tokens = 2 * CONCURRENCY, 2, 40
    body = {"model": prod.model, "prompt": "hi", "max_tokens": max_tokens, "n": n, "ignore_eos": True}
    labels = {"model": prod.model, "protocol": "completion"}
    before = scrape(prod.url)
    held = []
    for _ in range(CONCURRENCY):
        request = raw_request(prod, "/v1/completions", body)
        sock = socket.create_connection(("127.0.0.1", prod.server.port), timeout=300)
        sock.sendall(request[:-1])
        held.append((sock, request[-1:]))
    try:
        wait_for(
            lambda: scrape(prod.url).value("inference_requests_in_flight") == CONCURRENCY,
            what=f"the {CONCURRENCY} held requests in flight",
        )
        with httpx.Client(headers=prod.auth(), timeout=300) as client:
            refused = [client.post(prod.url + "/v1/completions", json=body) for _ in range(over)]
        assert [r.status_code for r in refused] == [429] * over, [r.text[:200] for r in refused]
        assert scrape(prod.url).value("inference_requests_in_flight") == CONCURRENCY
        for r in refused:
            assert r.headers["retry-after"].isdigit() and int(r.headers["retry-after"]) >= 1
            error = r.json()["error"]
            assert error["type"] == "rate_limit_error" and error["code"] == "concurrency_limit"
            assert str(CONCURRENCY) in error["message"]
        for sock, last in held:
            sock.sendall(last)
        answers = [read_response(sock) for sock, _ in held]
    finally:
        for sock, _ in held:
            sock.close()
    for status, doc in answers:
        assert status == 200, doc
        assert doc["usage"]["completion_tokens"] == n * max_tokens
        assert [c["finish_reason"] for c in doc["choices"]] == ["length"] * n

    after = scrape(prod.url)

    def delta(name: str, **more: str) -> float:
        return after.value(name, **labels, **more) - before.value(name, **labels, **more)

    assert delta("inference_requests_rejected_total") == over
    assert delta("inference_requests_total", status="429") == over
    assert delta("inference_requests_total", status="200") == CONCURRENCY
    assert after.value("inference_requests_in_flight") == 0


def test_a_stream_that_starts_while_tokens_flow_faster_than_the_budget_writes_several_at_a_time(
    prod: ProdServer,
) -> None:
    """A stream that starts while streams deliver T tokens a second gets ``ceil(T / budget)`` tokens
    per write, its first at once; the shared server's budget is one write a second. A stream that starts
    right after another one of 24 tokens sees more than one token a second streamed (the rate spans the
    last one to two seconds; the tiny model makes tens to thousands a second), so each of its writes but
    the first and the last holds at least two tokens. It has the same tokens and text as the stream
    before it (temperature 0). With every token written, writes of one token would make most of it."""
    max_tokens = 24
    body = {
        "model": prod.model,
        "prompt": "Once upon a time",
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "logprobs": 0,
        "stream": True,
    }
    with httpx.Client(base_url=prod.url, headers=prod.auth(), timeout=120) as http:
        first = stream_writes(http, body)
        paced = stream_writes(http, body)
    sizes = [len(tokens) for tokens, _ in paced]
    assert sizes[0] == 1 and all(size >= 2 for size in sizes[1:-1]), sizes
    assert [t for tokens, _ in paced for t in tokens] == [t for tokens, _ in first for t in tokens]
    assert "".join(text for _, text in paced) == "".join(text for _, text in first)
    assert sum(sizes) == max_tokens


def stream_writes(http: httpx.Client, body: dict[str, object]) -> list[tuple[list[str], str]]:
    """The tokens and text of each event of a one-choice completions stream that carries tokens."""
    writes = []
    for event in sse_events(http, "/v1/completions", body):
        for choice in event["choices"]:  # type: ignore[attr-defined]
            if choice["logprobs"] and choice["logprobs"]["tokens"]:
                writes.append((choice["logprobs"]["tokens"], choice["text"]))
    return writes


def read_response(sock: socket.socket) -> tuple[int, dict[str, object]]:
    """Status and JSON body of the one response on a ``Connection: close`` socket."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


def raw_request(prod: ProdServer, path: str, body: dict[str, object]) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {prod.keys['ci']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + payload


def first_event(sock: socket.socket) -> None:
    seen = b""
    while b"data: " not in seen:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed before the first event: {seen[-300:]!r}"
        seen += chunk


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_disconnect_frees_engine_work(prod: ProdServer, stream: bool) -> None:
    """The client sends a long request, waits until the engine runs it, and hangs up.

    Every sequence ignores EOS, so a request that is not aborted generates exactly ``requested``
    tokens before the engine goes idle; one that is aborted stops short of it. How far short depends on
    how fast the loaded API process notices the hang-up, which is not asserted. The request is many
    minutes of engine work (32 prompts x 16 choices x ~2000 tokens, 16 sequences at a time), so even a
    test client starved of CPU for a minute hangs up long before it could end: CI saw 8 prompts run to
    their end, and the failure now says when the client hung up and how far the engine was then.
    """
    prompts, n, max_tokens = 32, 16, MAX_MODEL_LEN - 16
    requested = prompts * n * max_tokens
    body = {
        "model": prod.model,
        "prompt": ["hi"] * prompts,
        "max_tokens": max_tokens,
        "n": n,
        "ignore_eos": True,
        "stream": stream,
    }
    before = scrape(prod.url)

    def generated() -> float:
        return scrape(prod.url).value("vllm:generation_tokens_total") - before.value(
            "vllm:generation_tokens_total"
        )

    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", prod.server.port), timeout=120) as sock:
        sock.sendall(raw_request(prod, "/v1/completions", body))
        if stream:
            first_event(sock)
        # (vllm:num_requests_running can still show the engine's last busy step, so watch tokens.)
        at_hang_up = wait_for(generated, what="the engine runs the request")
    when = f"the client hung up {time.monotonic() - start:.1f} s after sending, at {at_hang_up:.0f} tokens"
    wait_for(lambda: engine_running(prod.url) == 0, what=f"vllm:num_requests_running back to 0 ({when})")
    logged = [line[-220:] for line in access_log_lines(prod.console())[-3:]]
    assert generated() < requested, f"all {requested} tokens generated ({when}); logged: {logged}"
    labels = {"model": prod.model, "protocol": "completion"}

    def recorded() -> bool:
        now = scrape(prod.url)
        closed = now.value("inference_requests_total", status="499", **labels) - before.value(
            "inference_requests_total", status="499", **labels
        )
        return closed == 1 and now.value("inference_requests_in_flight") == 0

    wait_for(recorded, what="the request counted as 499 (client closed) and no longer in flight")
