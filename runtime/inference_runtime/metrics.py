"""Prometheus metrics of the framework, exported beside the engine's own ``vllm:*`` metrics.

Labels come from a fixed, small set (model, protocol, status code, error type, finish reason, key id)
so hostile input can never create new time series.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# LLM latencies span milliseconds (a cached token) to many minutes (long generations on CPU).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.5, 5)
PREFIX = "inference_"


class Metrics:
    """The framework's collectors, registered once per registry."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        labels = ["model", "protocol"]
        self.requests = Counter(
            PREFIX + "requests",
            "Finished requests by HTTP status.",
            [*labels, "status", "key_id"],
            registry=registry,
        )
        self.in_flight = Gauge(
            PREFIX + "requests_in_flight",
            "Requests admitted and not yet finished.",
            labels,
            registry=registry,
        )
        self.rejected = Counter(
            PREFIX + "requests_rejected",
            "Requests refused by overload control (429).",
            labels,
            registry=registry,
        )
        self.errors = Counter(
            PREFIX + "request_errors",
            "Failed requests by error type.",
            [*labels, "error_type"],
            registry=registry,
        )
        self.e2e = Histogram(
            PREFIX + "request_duration_seconds",
            "End-to-end request latency.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            PREFIX + "time_to_first_token_seconds",
            "Time from arrival to the first streamed token (streamed requests only).",
            labels,
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.itl = Histogram(
            PREFIX + "inter_token_latency_seconds",
            "Time between streamed tokens.",
            labels,
            buckets=ITL_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            PREFIX + "prompt_tokens", "Prompt tokens processed.", labels, registry=registry
        )
        self.completion_tokens = Counter(
            PREFIX + "completion_tokens", "Tokens generated.", labels, registry=registry
        )
        self.finished = Counter(
            PREFIX + "finish_reason",
            "Generated sequences by finish reason.",
            [*labels, "reason"],
            registry=registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
