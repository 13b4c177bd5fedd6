"""/metrics on a live server: values move exactly as known requests dictate, vLLM's own ``vllm:*``
metrics come from the same scrape, and promtool accepts the exposition."""

from __future__ import annotations

import subprocess

import httpx
import pytest
from prod_helpers import ProdServer, Scrape, scrape, sse_events

from fixtures.helpers import wait_for
from fixtures.prereq import require_path

pytestmark = pytest.mark.engine
OURS = "inference_"


def _delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def test_known_requests_move_the_metrics(prod: ProdServer) -> None:
    m = {"model": prod.model}
    before = scrape(prod.url)
    usage: dict[str, list[dict[str, int]]] = {"chat": [], "completion": [], "generate": []}
    with httpx.Client(base_url=prod.url, headers=prod.auth(), timeout=120) as http:
        chat = {"model": prod.model, "messages": [{"role": "user", "content": "hi"}], "ignore_eos": True}
        r = http.post("/v1/chat/completions", json={**chat, "max_tokens": 5})
        assert r.status_code == 200, r.text
        usage["chat"].append(r.json()["usage"])
        r = http.post("/v1/chat/completions", json={**chat, "temperature": 7})  # one 400
        assert r.status_code == 400, r.text
        for _ in range(2):  # two streams: the only requests with a time to first token
            body = {"model": prod.model, "prompt": "abc", "max_tokens": 7, "ignore_eos": True, "stream": True}
            events = sse_events(http, "/v1/completions", {**body, "stream_options": {"include_usage": True}})
            usage["completion"].append(events[-1]["usage"])
        r = http.post("/generate", json={"prompt": "hello", "max_tokens": 4, "ignore_eos": True})
        assert r.status_code == 200, r.text
        usage["generate"].append(r.json()["usage"])
    after = scrape(prod.url)

    def d(name: str, **labels: str) -> float:
        return _delta(before, after, OURS + name, **m, **labels)

    assert d("requests_total", protocol="chat", status="200", key_id="ci") == 1
    assert d("requests_total", protocol="chat", status="400", key_id="ci") == 1
    assert d("requests_total", protocol="completion", status="200", key_id="ci") == 2
    assert d("requests_total", protocol="generate", status="200", key_id="ci") == 1
    assert d("request_errors_total", protocol="chat", error_type="invalid_request_error") == 1
    assert d("request_duration_seconds_count", protocol="chat") == 2
    assert d("request_duration_seconds_count", protocol="completion") == 2
    for protocol, seen in usage.items():
        assert d("prompt_tokens_total", protocol=protocol) == sum(u["prompt_tokens"] for u in seen)
        assert d("completion_tokens_total", protocol=protocol) == sum(u["completion_tokens"] for u in seen)
        assert d("finish_reason_total", protocol=protocol, reason="length") == len(seen)
    assert d("time_to_first_token_seconds_count", protocol="completion") == 2
    assert d("time_to_first_token_seconds_count", protocol="chat") == 0  # answered whole, not streamed
    # Each streamed token after the first is one inter-token gap.
    assert 0 < d("inter_token_latency_seconds_count", protocol="completion") <= 2 * (7 - 1)
    assert after.value(OURS + "requests_in_flight") == 0

    # vLLM's own counters, on the same endpoint, saw exactly the same tokens (it updates them after
    # the last output is delivered, so wait for it).
    ours_prompt = sum(u["prompt_tokens"] for seen in usage.values() for u in seen)
    ours_completion = sum(u["completion_tokens"] for seen in usage.values() for u in seen)

    def engine_agrees() -> bool:
        now = scrape(prod.url)
        return (
            _delta(before, now, "vllm:prompt_tokens_total") == ours_prompt
            and _delta(before, now, "vllm:generation_tokens_total") == ours_completion
        )

    wait_for(engine_agrees, what="vllm:prompt_tokens_total/generation_tokens_total match our counters")


def test_engine_metrics_on_the_same_endpoint(prod: ProdServer) -> None:
    names = scrape(prod.url).names()
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:time_to_first_token_seconds_count",
        "vllm:e2e_request_latency_seconds_count",
        OURS + "requests_in_flight",
        OURS + "time_to_first_token_seconds_count",
    ):
        assert name in names, name


def test_promtool_check_metrics(prod: ProdServer) -> None:
    """promtool parses the whole scrape and finds nothing wrong with ours.

    vLLM's metric names contain ``:`` (``vllm:num_requests_running``), which promtool's linter reserves
    for recording rules, and one vLLM histogram ends in ``_total``. Those names are vLLM's public
    interface (dashboards and alerts use them), so they are passed through unchanged; the test
    requires that every lint finding is about a ``vllm:`` metric and none about ours.
    """
    promtool = require_path("VIF_PROMTOOL", "promtool (hack/install-promtool.sh)")
    text = scrape(prod.url).text
    whole = subprocess.run([str(promtool), "check", "metrics"], input=text, capture_output=True, text=True)
    findings = [line for line in (whole.stdout + whole.stderr).splitlines() if line.strip()]
    assert whole.returncode in (0, 3), findings  # 1 would be a parse error: the exposition is broken
    assert not [f for f in findings if not f.startswith("vllm:")], findings
    own = "\n".join(line for line in text.splitlines() if "vllm:" not in line) + "\n"
    ours = subprocess.run([str(promtool), "check", "metrics"], input=own, capture_output=True, text=True)
    assert ours.returncode == 0, ours.stdout + ours.stderr
    assert OURS + "requests_total" in own
