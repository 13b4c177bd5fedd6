"""Helpers of the production tests: a real syslog receiver, /metrics parsing, SSE reading."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from fixtures.runtime_server import RunningServer

# Long enough for generations that outlast any poll loop below (the tiny model allows 2048).
MAX_MODEL_LEN = 2048
CONCURRENCY = 2
WRITE_BUDGET = 1  # --stream-write-budget: a stream within a second or two of another one's tokens gets chunks


class SyslogReceiver:
    """A real syslog collector as far as the runtime can tell: RFC 3164 datagrams on a UDP port."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.messages: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="syslog-receiver", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            with self._lock:
                self.messages.append(data.decode("utf-8", errors="replace"))

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.messages)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@dataclass
class ProdServer:
    """The shared server plus what the tests need to know about its set-up."""

    server: RunningServer
    keys: dict[str, str]  # key id -> key
    log_file: Path
    syslog: SyslogReceiver
    secrets_: list[str] = field(default_factory=list)  # strings that must never appear in any log

    @property
    def url(self) -> str:
        return self.server.base_url

    @property
    def model(self) -> str:
        return self.server.model_name

    def auth(self, key_id: str = "ci") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[key_id]}"}

    def console(self) -> str:
        return self.server.log()

    def all_logs(self) -> str:
        return "\n".join((self.console(), self.log_file.read_text(errors="replace"), self.syslog.text()))


@dataclass
class Scrape:
    """One /metrics scrape, parsed with prometheus-client's own parser."""

    text: str
    samples: list[tuple[str, dict[str, str], float]]

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels`` (0 when there is none)."""
        return sum(
            v for n, lab, v in self.samples if n == name and all(lab.get(k) == x for k, x in labels.items())
        )

    def names(self) -> set[str]:
        return {n for n, _, _ in self.samples}


def scrape(url: str, headers: dict[str, str] | None = None) -> Scrape:
    r = httpx.get(url + "/metrics", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    samples = [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    ]
    return Scrape(r.text, samples)


def access_log_lines(log: str) -> list[str]:
    """The access-log lines (one per finished request) of a server's console output."""
    return [line for line in log.splitlines() if "inference_runtime.access" in line]


def engine_running(url: str, headers: dict[str, str] | None = None) -> float:
    return scrape(url, headers).value("vllm:num_requests_running")


def sse_events(http: httpx.Client, path: str, body: dict[str, object]) -> list[dict[str, object]]:
    """POST a streaming request and return its events; the stream must end with ``[DONE]``."""
    data: list[str] = []
    with http.stream("POST", path, json=body) as r:
        assert r.status_code == 200, r.read().decode()
        data = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert data and data[-1] == "[DONE]", data[-3:]
    return [json.loads(d) for d in data[:-1]]
