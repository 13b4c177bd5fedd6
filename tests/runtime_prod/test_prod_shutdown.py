"""A server of its own, because the last test stops it: per-request timeouts, keys from $API_KEYS with
--metrics-require-auth, and SIGTERM during live streams (drain, [DONE] for those that end within the
grace period, the rest cut at its end, exit 0)."""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prod_helpers import MAX_MODEL_LEN, engine_running, scrape, sse_events, wait_for

from fixtures.prereq import require_path
from fixtures.runtime_server import TINY_NAME, RunningServer, start_runtime, tiny_entry

pytestmark = pytest.mark.engine
TIMEOUT = 20  # --request-timeout
GRACE = 15  # --shutdown-grace
# Two sequences at a time: a "huge" request (4 prompts x 16 choices x ~2000 tokens) then needs minutes,
# far longer than TIMEOUT and GRACE, while the two single-choice streams of the drain test still run
# side by side and end well within GRACE.
ENGINE_ARGS = {"enforce_eager": True, "max_num_seqs": 2, "seed": 0}
STREAM_TOKENS = 2000


@contextlib.contextmanager
def drain_server(workdir: Path) -> Iterator[RunningServer]:
    model = require_path("VIF_TINY_MODEL", "tiny test model")
    key = f"sk-{secrets.token_urlsafe(24)}"
    entry = tiny_entry(model, max_model_len=MAX_MODEL_LEN, engine_args=ENGINE_ARGS)
    with start_runtime(
        workdir,
        TINY_NAME,
        entry,
        "--request-timeout",
        str(TIMEOUT),
        "--shutdown-grace",
        str(GRACE),
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
    """The SIGTERM test stops its server, and needs an idle one: a server of its own."""
    with drain_server(tmp_path / "drain") as running:
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


def test_request_timeout_non_stream(server: RunningServer) -> None:
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
    wait_for(lambda: engine_running(server.base_url, auth(server)) == 0, "engine idle after the timeout")
    after = scrape(server.base_url, auth(server))
    generated = after.value("vllm:generation_tokens_total") - before.value("vllm:generation_tokens_total")
    assert generated < HUGE_TOKENS / 2, generated  # cut off, not run to the end
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
    wait_for(lambda: engine_running(server.base_url, auth(server)) == 0, "engine idle after the timeout")


class StreamReader(threading.Thread):
    """One stream, opened in the caller's thread (so the request is admitted when the constructor
    returns) and read to its end in the background."""

    def __init__(self, server: RunningServer, body: dict[str, object]) -> None:
        super().__init__(daemon=True)
        self.http = httpx.Client(base_url=server.base_url, headers=auth(server), timeout=300)
        self.response = self.http.send(
            self.http.build_request("POST", "/v1/completions", json=body), stream=True
        )
        assert self.response.status_code == 200, self.response.read()
        self.events: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for line in self.response.iter_lines():
                if line.startswith("data: "):
                    self.events.append(line[6:])
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.response.close()
            self.http.close()


def test_sigterm_drains_live_streams_then_exits_0(fresh_server: RunningServer) -> None:
    server = fresh_server
    short = {
        "model": server.model_name,
        "prompt": "hi",
        "max_tokens": STREAM_TOKENS,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    # Opened one after the other in this thread: when SIGTERM goes, all three were admitted within
    # milliseconds, so the two short streams (seconds of generation) are certainly still live. The third
    # waits for the engine behind them and cannot end within GRACE.
    streams = [StreamReader(server, short), StreamReader(server, short)]
    huge = StreamReader(server, huge_request(server, stream=True))
    for reader in [*streams, huge]:
        reader.start()

    server.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: httpx.get(server.base_url + "/ready", timeout=30).status_code == 503, "/ready turns 503")
    ready = httpx.get(server.base_url + "/ready", timeout=30)
    assert ready.json()["error"]["message"] == "The server is shutting down."
    refused = httpx.post(
        server.base_url + "/v1/completions",
        json={"model": server.model_name, "prompt": "hi", "max_tokens": 2},
        headers=auth(server),
        timeout=30,
    )
    assert refused.status_code == 503 and refused.headers["retry-after"]
    assert refused.json()["error"]["type"] == "service_unavailable_error"
    assert httpx.get(server.base_url + "/health", timeout=30).status_code == 200  # alive, just draining

    for reader in streams:
        reader.join(300)
        assert not reader.is_alive() and reader.error is None, reader.error
        assert reader.events[-1] == "[DONE]"
        assert not [e for e in reader.events[:-1] if "error" in json.loads(e)]
        assert f'"completion_tokens":{STREAM_TOKENS}' in reader.events[-2]  # the usage event: complete
    try:
        code = server.proc.wait(180)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the runtime did not exit after draining:\n{server.log()[-3000:]}")
    assert code == 0, server.log()[-3000:]
    huge.join(60)
    assert not huge.is_alive() and "[DONE]" not in huge.events  # cut when the grace period ended
    log = server.log()
    assert "draining: 3 request(s) in flight" in log  # all three were live when SIGTERM came
    assert "grace period over with 1 request(s) in flight" in log
    assert "engine stopped" in log
