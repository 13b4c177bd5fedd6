"""Overload and disconnects on a live server (--limit-concurrency 2): request N+1 is refused with 429 at
once while the admitted ones complete, and a client that goes away frees its engine work."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest
from prod_helpers import CONCURRENCY, MAX_MODEL_LEN, ProdServer, engine_running, scrape, wait_for

pytestmark = pytest.mark.engine


def test_flood_gets_429_at_once_and_the_admitted_requests_complete(prod: ProdServer) -> None:
    flood, n, max_tokens = 6 * CONCURRENCY, 2, 400
    body = {"model": prod.model, "prompt": "hi", "max_tokens": max_tokens, "n": n, "ignore_eos": True}
    before = scrape(prod.url)

    async def fire() -> list[httpx.Response]:
        done: list[httpx.Response] = []  # in the order the answers arrived
        limits = httpx.Limits(max_connections=flood)
        async with httpx.AsyncClient(headers=prod.auth(), timeout=300, limits=limits) as client:

            async def one() -> None:
                done.append(await client.post(prod.url + "/v1/completions", json=body))

            await asyncio.gather(*(one() for _ in range(flood)))
        return done

    answers = asyncio.run(fire())
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 429}, [(r.status_code, r.text[:200]) for r in answers]
    refused = [r for r in answers if r.status_code == 429]
    admitted = [r for r in answers if r.status_code == 200]
    assert refused and len(admitted) >= CONCURRENCY, statuses
    # Refusals are not queued behind the admitted work: every 429 came back before any 200.
    assert statuses.index(200) > max(i for i, s in enumerate(statuses) if s == 429), statuses
    for r in refused:
        assert r.headers["retry-after"].isdigit() and int(r.headers["retry-after"]) >= 1
        error = r.json()["error"]
        assert error["type"] == "rate_limit_error" and error["code"] == "concurrency_limit"
        assert str(CONCURRENCY) in error["message"]
    for r in admitted:
        doc = r.json()
        assert doc["usage"]["completion_tokens"] == n * max_tokens
        assert [c["finish_reason"] for c in doc["choices"]] == ["length"] * n

    after = scrape(prod.url)
    labels = {"model": prod.model, "protocol": "completion"}
    rejected = after.value("inference_requests_rejected_total", **labels) - before.value(
        "inference_requests_rejected_total", **labels
    )
    assert rejected == len(refused)
    status_429 = after.value("inference_requests_total", status="429", **labels) - before.value(
        "inference_requests_total", status="429", **labels
    )
    assert status_429 == len(refused)
    assert after.value("inference_requests_in_flight") == 0


def raw_request(prod: ProdServer, path: str, body: dict[str, object]) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {prod.keys['ci']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
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
    tokens (8 prompts x 16 choices x ~2000 tokens) before the engine goes idle; one that is aborted
    stops short of it. How far short depends on how fast the loaded API process notices the hang-up,
    which is not asserted.
    """
    prompts, n, max_tokens = 8, 16, MAX_MODEL_LEN - 16
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

    with socket.create_connection(("127.0.0.1", prod.server.port), timeout=120) as sock:
        sock.sendall(raw_request(prod, "/v1/completions", body))
        if stream:
            first_event(sock)
        # (vllm:num_requests_running can still show the engine's last busy step, so watch tokens.)
        wait_for(lambda: generated() > 0, "the engine runs the request")
    wait_for(
        lambda: engine_running(prod.url) == 0, "vllm:num_requests_running back to 0 after the disconnect"
    )
    assert generated() < requested, (generated(), requested)
    labels = {"model": prod.model, "protocol": "completion"}

    def recorded() -> bool:
        now = scrape(prod.url)
        closed = now.value("inference_requests_total", status="499", **labels) - before.value(
            "inference_requests_total", status="499", **labels
        )
        return closed == 1 and now.value("inference_requests_in_flight") == 0

    wait_for(recorded, "the request counted as 499 (client closed) and no longer in flight")
