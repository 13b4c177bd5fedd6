"""Unit tests of small pieces of our own logic: API keys, admission, registry, logprob shapes, settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference_runtime.auth import KeyRing
from inference_runtime.config import ConfigError
from inference_runtime.errors import Overloaded, Unauthorized, Unavailable
from inference_runtime.generation import TokenLogprob
from inference_runtime.protocols.openai.logprobs import chat_logprobs, completion_logprobs
from inference_runtime.serving.admission import Admission
from inference_runtime.serving.pacing import StreamPacing
from inference_runtime.serving.registry import BUILTINS, load_serving_class, registered
from inference_runtime.settings import settings_from_args


def test_keyring_ids_and_checks(tmp_path: Path) -> None:
    keyfile = tmp_path / "keys"
    keyfile.write_text("# comment\nteam-a:sk-aaa\n\nsk-bare\n")
    ring = KeyRing.from_sources(["ci:sk-env"], keyfile)
    assert len(ring) == 3 and ring.enabled
    assert ring.check("Bearer sk-aaa") == "team-a"
    assert ring.check("bearer sk-env") == "ci"
    bare_id = ring.check("Bearer sk-bare")
    assert len(bare_id) == 8 and "sk-bare" not in bare_id
    for bad in (None, "", "Bearer", "Bearer sk-aa", "Basic sk-aaa", "Bearer sk-aaax", "sk-aaa"):
        with pytest.raises(Unauthorized):
            ring.check(bad)
    assert not KeyRing().enabled


def test_admission_refuses_at_limit_and_while_draining() -> None:
    gate = Admission(2)
    assert gate.try_acquire() and gate.try_acquire()
    assert not gate.try_acquire()
    refusal = gate.refusal()
    assert isinstance(refusal, Overloaded) and refusal.status == 429 and refusal.headers["Retry-After"]
    gate.release()
    assert gate.try_acquire()
    gate.draining = True
    gate.release()
    assert not gate.try_acquire()
    assert isinstance(gate.refusal(), Unavailable) and gate.refusal().status == 503


class FakeClock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_streams_get_chunks_only_while_tokens_flow_faster_than_the_write_budget() -> None:
    """Tokens per write for a new stream: ``ceil(streamed tokens a second / budget)``, at least 1, over
    the last one to two seconds; an idle second or two brings it back to 1; 0 turns pacing off."""
    clock = FakeClock()  # steps of 0.25 s: exact in binary, so bucket edges are where they look
    pacing = StreamPacing(100, clock)
    assert pacing.interval() == 1  # nothing streamed yet

    def second_of_streaming() -> None:  # 4 writes of 125 tokens, the clock left at the last one
        for step in range(4):
            clock.now += 0.25 if step else 0.0
            pacing.written(125)

    second_of_streaming()  # 100.0-100.75: 500 tokens over the 1.75 s of a bucket and an empty one
    assert pacing.tokens_per_second() == pytest.approx(500 / 1.75) and pacing.interval() == 3
    clock.now = 101.0  # a new bucket: the last full second alone
    assert pacing.interval() == 5
    second_of_streaming()  # 101.0-101.75: 1000 tokens over 1.75 s
    assert pacing.interval() == 6
    clock.now = 102.75  # idle since: the bucket of 101 over 1.75 s
    assert pacing.interval() == 3
    clock.now = 103.5  # idle for more than a bucket: nothing counts
    assert pacing.interval() == 1
    pacing.written(300)  # a burst at once counts over the span, not over no time at all
    assert pacing.tokens_per_second() == pytest.approx(300 / 1.5) and pacing.interval() == 2

    off = StreamPacing(0, clock)
    off.written(10**6)
    assert off.interval() == 1
    assert (
        settings_from_args(["--model-name", "m", "--stream-write-budget", "800"]).limits.stream_write_budget
        == 800
    )
    with pytest.raises(SystemExit):
        settings_from_args(["--model-name", "m", "--stream-write-budget", "-1"])


def test_registry_builtins_and_unknown_name() -> None:
    assert set(BUILTINS) <= set(registered())
    assert load_serving_class("OpenAIServingChat").routes == ("/v1/chat/completions", "/chat/completions")
    with pytest.raises(ConfigError) as err:
        load_serving_class("os.system")
    assert "not a registered serving class" in str(err.value)
    assert "OpenAIServingChat" in str(err.value) and "ServingGenerate" in str(err.value)


def test_logprob_shapes() -> None:
    items = [
        TokenLogprob("Hi", -0.5, [("Hi", -0.5), ("Yo", -1.0), ("He", -2.0)]),
        TokenLogprob("!", -0.1, [("!", -0.1), (".", -3.0), ("?", -4.0)]),
    ]
    chat = chat_logprobs(items, 2)["content"]
    assert [c["token"] for c in chat] == ["Hi", "!"]
    assert [t["token"] for t in chat[0]["top_logprobs"]] == ["Hi", "Yo"]
    assert chat[0]["bytes"] == [72, 105]
    legacy = completion_logprobs(items, 1, text_offset=3)
    assert legacy["tokens"] == ["Hi", "!"] and legacy["text_offset"] == [3, 5]
    assert legacy["top_logprobs"] == [{"Hi": -0.5}, {"!": -0.1}]


def test_settings_env_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_NAME", "from-env")
    monkeypatch.setenv("SERVICE_PORT", "9001")
    monkeypatch.setenv("API_KEYS", "a:1, b:2")
    s = settings_from_args([])
    assert (s.model_name, s.port, s.api_keys) == ("from-env", 9001, ("a:1", "b:2"))
    s = settings_from_args(["--model-name", "flag", "--port", "9002", "--limit-concurrency", "3"])
    assert (s.model_name, s.port, s.limits.concurrency) == ("flag", 9002, 3)
    with pytest.raises(SystemExit):
        settings_from_args(["--limit-concurrency", "0"])
