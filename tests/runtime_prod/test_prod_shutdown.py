"""A server of its own, because the last test stops it: per-request timeouts, keys from $API_KEYS with
--metrics-require-auth, and SIGTERM with requests in flight (drain, [DONE] for the streams that end
within the grace period, the rest cut at its end, exit 0)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from prod_helpers import MAX_MODEL_LEN, access_log_lines, scrape, sse_events

from fixtures.helpers import wait_for, wait_for_async
from fixtures.prereq import require_path
from fixtures.runtime_server import TINY_NAME, RunningServer, start_runtime, tiny_entry

pytestmark = pytest.mark.engine
TIMEOUT = 20  # --request-timeout
GRACE = 15  # --shutdown-grace
# Two sequences at a time: a "huge" request (4 prompts x 16 choices x ~2000 tokens) then needs minutes,
# far longer than TIMEOUT.
ENGINE_ARGS = {"enforce_eager": True, "max_num_seqs": 2, "seed": 0}
# The drain test streams from SmolLM2, not the tiny model: vLLM's API process handles engine output
# ahead of everything else, and the tiny model (thousands of tokens/s) can keep a loaded 2-core
# machine's API process busy until its stream ends, so no check could run while the stream is live.
# SmolLM2's pace leaves the API process idle between tokens, as a real model on a real node does.
STREAM_TOKENS = 100
DRAIN_GRACE = 30  # room for STREAM_TOKENS on a loaded machine


@contextlib.contextmanager
def drain_server(
    workdir: Path, *, smollm2: bool = False, grace: int = GRACE, timeout: int = TIMEOUT
) -> Iterator[RunningServer]:
    if smollm2:
        model, name = require_path("VIF_SMOLLM2_MODEL", "SmolLM2 model"), "smollm2"
    else:
        model, name = require_path("VIF_TINY_MODEL", "tiny test model"), TINY_NAME
    key = f"sk-{secrets.token_urlsafe(24)}"
    entry = tiny_entry(model, max_model_len=MAX_MODEL_LEN, engine_args=ENGINE_ARGS)
    with start_runtime(
        workdir,
        name,
        entry,
        "--request-timeout",
        str(timeout),
        "--shutdown-grace",
        str(grace),
        "--metrics-require-auth",
        env={"API_KEYS": f"drain:{key}"},
        model_root=model.parent,
    ) as running:
        running.api_key = key
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Shared by the timeout tests."""
    with drain_server(tmp_path_factory.mktemp("timeouts")) as running:
        yield running


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A SIGTERM test stops its server: a server of its own, where only the grace period cuts requests."""
    with drain_server(tmp_path / "drain", timeout=600) as running:
        yield running


@pytest.fixture
def smollm2_server(tmp_path: Path) -> Iterator[RunningServer]:
    with drain_server(tmp_path / "drain", smollm2=True, grace=DRAIN_GRACE, timeout=600) as running:
        yield running


def auth(server: RunningServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.api_key}"}


def test_metrics_require_auth_when_asked(server: RunningServer) -> None:
    r = httpx.get(server.base_url + "/metrics", timeout=30)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert "vllm:num_requests_running" in scrape(server.base_url, auth(server)).names()
    for probe in ("/health", "/ready"):
        assert httpx.get(server.base_url + probe, timeout=30).status_code == 200


def huge_request(server: RunningServer, *, stream: bool) -> dict[str, object]:
    return {
        "model": server.model_name,
        "prompt": ["hi"] * 4,
        "max_tokens": MAX_MODEL_LEN - 16,
        "n": 16,
        "ignore_eos": True,
        "stream": stream,
    }


HUGE_TOKENS = 4 * 16 * (MAX_MODEL_LEN - 16)


def engine_idle(server: RunningServer) -> bool:
    now = scrape(server.base_url, auth(server))
    return now.value("vllm:num_requests_running") == 0 and now.value("vllm:num_requests_waiting") == 0


def test_request_timeout_non_stream(server: RunningServer) -> None:
    """The huge request ignores EOS, so unless the engine aborts it, the engine stays busy until it has
    generated exactly HUGE_TOKENS tokens. An idle engine short of that count is the evidence of the
    abort, however fast the machine."""
    before = scrape(server.base_url, auth(server))
    r = httpx.post(
        server.base_url + "/v1/completions",
        json=huge_request(server, stream=False),
        headers=auth(server),
        timeout=300,
    )
    assert r.status_code == 504, r.text
    error = r.json()["error"]
    assert error["type"] == "timeout_error" and f"{TIMEOUT} s" in error["message"]
    wait_for(lambda: engine_idle(server), what="engine idle after the timeout")
    after = scrape(server.base_url, auth(server))
    generated = after.value("vllm:generation_tokens_total") - before.value("vllm:generation_tokens_total")
    assert 0 < generated < HUGE_TOKENS, generated  # cut off, not run to the end
    assert (
        after.value("inference_requests_total", status="504")
        - before.value("inference_requests_total", status="504")
        == 1
    )


def test_request_timeout_stream_ends_with_an_error_event_and_done(server: RunningServer) -> None:
    with httpx.Client(base_url=server.base_url, headers=auth(server), timeout=300) as http:
        events = sse_events(http, "/v1/completions", huge_request(server, stream=True))
    assert events[0]["choices"], events[0]  # it was streaming when the deadline hit
    assert events[-1] == {
        "error": {
            "message": f"The request took longer than {TIMEOUT} s.",
            "type": "timeout_error",
            "param": None,
            "code": None,
        }
    }
    wait_for(lambda: engine_idle(server), what="engine idle after the timeout")


async def open_stream(http: httpx.AsyncClient, body: dict[str, object]) -> httpx.Response:
    """Send a streaming request and return once its headers are in: the server has admitted it."""
    response = await http.send(http.build_request("POST", "/v1/completions", json=body), stream=True)
    assert response.status_code == 200, await response.aread()
    return response


async def start_unfinished_upload(server: RunningServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A request that is admitted but whose body never completes: in flight, yet no engine work.

    It is what holds the drain open for the whole grace period. (A long generation would too, but on a
    2-core machine the tiny model outpaces the API process, whose event loop then answers other
    connections only between bursts of engine output.)
    """
    body = json.dumps({"model": server.model_name, "prompt": "hi", "max_tokens": 2}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {server.api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body[:-1]
    )
    await writer.drain()
    return reader, writer


async def first_event(response: httpx.Response) -> tuple[AsyncIterator[str], str]:
    """Read a stream up to its first event, so it is certainly live; return the rest and that event."""
    lines = response.aiter_lines()
    async for line in lines:
        if line.startswith("data: "):
            return lines, line[6:]
    pytest.fail("the stream ended before its first event")


async def sigterm_with_requests_in_flight(server: RunningServer) -> tuple[list[str], bytes]:
    """With an unfinished upload and a live stream in flight, send SIGTERM and check the draining
    server's answers. Returns the events of the stream and what the upload's connection received.

    One event loop and no reader threads, so the checks run while the stream is still live.
    """
    body = {
        "model": server.model_name,
        "prompt": "hi",
        "max_tokens": STREAM_TOKENS,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with httpx.AsyncClient(base_url=server.base_url, headers=auth(server), timeout=300) as http:

        async def admitted() -> bool:
            in_flight = await asyncio.to_thread(
                lambda: scrape(server.base_url, auth(server)).value("inference_requests_in_flight")
            )
            return in_flight == 1

        upload_reader, upload_writer = await start_unfinished_upload(server)
        await wait_for_async(admitted, what="the unfinished upload is in flight")
        stream = await open_stream(http, body)
        rest, first = await first_event(stream)
        server.proc.send_signal(signal.SIGTERM)
        reader = asyncio.create_task(read_rest(stream, rest))

        async def draining() -> bool:
            return (await http.get("/ready")).status_code == 503

        await wait_for_async(draining, what="/ready turns 503")
        ready = await http.get("/ready")
        assert ready.json()["error"]["message"] == "The server is shutting down."
        refused = await http.post(
            "/v1/completions", json={"model": server.model_name, "prompt": "hi", "max_tokens": 2}
        )
        assert refused.status_code == 503 and refused.headers["retry-after"]
        assert refused.json()["error"]["type"] == "service_unavailable_error"
        assert (await http.get("/health")).status_code == 200  # alive, just draining
        events = [first, *await asyncio.wait_for(reader, timeout=300)]
    cut = await asyncio.wait_for(upload_reader.read(), timeout=300)
    upload_writer.close()
    return events, cut


async def read_rest(response: httpx.Response, lines: AsyncIterator[str]) -> list[str]:
    events = [line[6:] async for line in lines if line.startswith("data: ")]
    await response.aclose()
    return events


def assert_clean_exit(server: RunningServer) -> str:
    try:
        code = server.proc.wait(180)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the runtime did not exit after draining:\n{server.log()[-3000:]}")
    log = server.log()
    assert code == 0, log[-3000:]
    assert "engine stopped" in log
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
    return log


@pytest.mark.smollm2
def test_sigterm_drains_in_flight_requests_then_exits_0(smollm2_server: RunningServer) -> None:
    events, cut = asyncio.run(sigterm_with_requests_in_flight(smollm2_server))
    assert events[-1] == "[DONE]"
    assert not [e for e in events[:-1] if "error" in json.loads(e)]
    assert f'"completion_tokens":{STREAM_TOKENS}' in events[-2]  # the usage event: complete
    # The upload was still unfinished when the grace period ended: a 503 in the OpenAI envelope.
    head, _, payload = cut.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), cut[:300]
    assert json.loads(payload)["error"]["message"] == "The server is shutting down."
    log = assert_clean_exit(smollm2_server)
    assert "draining: 2 request(s) in flight" in log  # both were live when SIGTERM came
    assert "grace period over with 1 request(s) in flight" in log


@pytest.mark.parametrize("reader", ["keeps-up", "stops-reading"])
def test_stream_still_running_when_the_grace_period_ends_gets_a_last_error_event(
    fresh_server: RunningServer, reader: str
) -> None:
    """The cut finds a stream with its client keeping up, or far behind (CI saw that under load: the
    stream then ended without its last event). ``keeps-up`` reads raw bytes as they come;
    ``stops-reading`` takes the first event, then reads nothing until the server logs the cut, so
    megabytes of events are still unread (in the sockets' buffers: on this machine they hold all that
    the grace period makes, so the server's writes do not wait; a cut while a write waits is in
    tests/runtime/test_guarded_stream.py). Either way the client, once it reads, gets everything sent
    before, then the error event and ``[DONE]``."""
    server = fresh_server
    raw = bytearray()
    body = huge_request(server, stream=True)
    if reader == "stops-reading":
        # Logprobs make each event about 400 bytes: 2 MB or so are unread when the grace period ends.
        body["logprobs"] = 5
    with server.client() as http, http.stream("POST", "/v1/completions", json=body) as r:
        assert r.status_code == 200
        chunks = r.iter_raw()
        while b"data: " not in raw:
            raw += next(chunks)
        server.proc.send_signal(signal.SIGTERM)  # it is live: the first event is in
        if reader == "stops-reading":
            wait_for(lambda: "grace period over" in server.log(), what="the end of the grace period")
        reading_since = time.monotonic()
        try:
            for chunk in chunks:
                raw += chunk
        except httpx.RemoteProtocolError as exc:
            pytest.fail(
                f"{exc}: {len(raw)} bytes read, the client reading again for the last "
                f"{time.monotonic() - reading_since:.1f} s; the server logged:\n{server.log()[-3000:]}"
            )
    data = [e.removeprefix(b"data: ") for e in raw.split(b"\n\n") if e]
    assert data[-1] == b"[DONE]", data[-3:]
    events = [json.loads(d) for d in data[:-1]]
    assert events[0]["choices"] and all("choices" in e for e in events[:-1]), events[-3:]
    assert events[-1] == {
        "error": {
            "message": "The server is shutting down.",
            "type": "service_unavailable_error",
            "param": None,
            "code": None,
        }
    }
    log = assert_clean_exit(server)
    assert "grace period over with 1 request(s) in flight" in log
    if reader == "keeps-up":  # its stream waited on the engine, and the log does not say otherwise
        assert "cut while waiting to write" not in log, log[-3000:]
    (access,) = access_log_lines(log)
    assert " status=503 " in access, access  # cut by the server, not a client disconnect (499)
