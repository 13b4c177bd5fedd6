"""Per-request bookkeeping: the request id of every response, and one record per inference request that
feeds the metrics and the access log line when it closes."""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass, field

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference_runtime.metrics import Metrics

access_log = logging.getLogger("inference_runtime.access")
FINISH_REASONS = frozenset({"stop", "length", "abort", "error"})
# A client's id is echoed into headers and logs, so only a short, plain token is taken as is.
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class RequestIdMiddleware:
    """Give every HTTP request an id and return it in ``X-Request-Id`` on every response.

    The id is the client's ``X-Request-Id`` when it is sane (so one id follows a call through a
    gateway and our logs), else a new one. A middleware rather than a dependency, so that responses
    produced before routing (404, 401, 413, 429, 503 while loading) carry it too.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _client_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-Id"] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


def _client_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _CLIENT_ID.fullmatch(text) else None
    return None


@dataclass(slots=True)
class RequestRecord:
    """Timing and token counts of one request, closed exactly once."""

    request_id: str
    model: str
    protocol: str
    key_id: str = "-"
    start: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    last_token: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reasons: list[str] = field(default_factory=list)
    stream: bool = False
    status: int = 200
    error_type: str | None = None
    closed: bool = False
    _itl: list[float] = field(default_factory=list)

    def tokens_arrived(self, count: int) -> None:
        """Called per engine chunk with the number of new tokens across all choices."""
        if count <= 0:
            return
        now = time.perf_counter()
        if self.first_token is None:
            self.first_token = now
        elif self.last_token is not None:
            # A chunk of k tokens after a gap g counts as k gaps of g/k (vLLM batches stream output).
            gap = (now - self.last_token) / count
            self._itl.extend([gap] * count)
        self.last_token = now
        self.completion_tokens += count

    def fail(self, status: int, error_type: str) -> None:
        self.status = status
        self.error_type = error_type

    def close(self, metrics: Metrics | None) -> None:
        if self.closed:
            return
        self.closed = True
        end = time.perf_counter()
        if metrics is not None:
            self._export(metrics, end)
        ttft = f"{self.first_token - self.start:.3f}" if self.first_token is not None else "-"
        access_log.info(
            "request_id=%s model=%s protocol=%s key_id=%s status=%d latency=%.3f ttft=%s "
            "prompt_tokens=%d completion_tokens=%d stream=%s",
            self.request_id,
            self.model,
            self.protocol,
            self.key_id,
            self.status,
            end - self.start,
            ttft,
            self.prompt_tokens,
            self.completion_tokens,
            self.stream,
            extra={
                "request_id": self.request_id,
                "model": self.model,
                "protocol": self.protocol,
                "key_id": self.key_id,
                "status": self.status,
                "latency": round(end - self.start, 4),
                "ttft": None if self.first_token is None else round(self.first_token - self.start, 4),
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "stream": self.stream,
                "error_type": self.error_type,
            },
        )

    def _export(self, m: Metrics, end: float) -> None:
        labels = (self.model, self.protocol)
        m.requests.labels(*labels, str(self.status), self.key_id).inc()
        m.e2e.labels(*labels).observe(end - self.start)
        if self.error_type is not None:
            m.errors.labels(*labels, self.error_type).inc()
        if self.first_token is not None:
            m.ttft.labels(*labels).observe(self.first_token - self.start)
        if self._itl:
            itl = m.itl.labels(*labels)
            for gap in self._itl:
                itl.observe(gap)
        if self.prompt_tokens:
            m.prompt_tokens.labels(*labels).inc(self.prompt_tokens)
        if self.completion_tokens:
            m.completion_tokens.labels(*labels).inc(self.completion_tokens)
        for reason in self.finish_reasons:
            m.finished.labels(*labels, reason if reason in FINISH_REASONS else "other").inc()
