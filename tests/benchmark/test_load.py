"""Load shapes, prompt sets and request bodies: the benchmark's own logic, without a server.

``FakeSend`` is a test double standing in for the HTTP client; it records how many requests were in
flight at once, which is what the load shapes promise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import pytest

from inference_benchmark.client import RequestOptions, build_body, chunk_text
from inference_benchmark.prompts import Prompt, PromptFileError, load_jsonl, synthetic_prompts, take
from inference_benchmark.runner import LoadPoint, drive, run_point
from inference_benchmark.stats import RequestRecord
from inference_benchmark.sweep import LoadSettings, add_load_arguments, few_waves_line, load_settings


class FakeSend:
    """Test double for ``send``: yields to the loop a few times per request and tracks concurrency."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.seen: list[str] = []

    async def __call__(self, prompt: Prompt) -> RequestRecord:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.seen.append(prompt.text)
        for _ in range(3):
            await asyncio.sleep(0)
        self.in_flight -= 1
        return RequestRecord(start=0.0, end=1.0, status=200, output_tokens=prompt.max_tokens)


def _prompts(n: int) -> list[Prompt]:
    return [Prompt(f"p{i}", 4) for i in range(n)]


@pytest.mark.parametrize("concurrency", [1, 3, 8])
def test_fixed_concurrency_keeps_exactly_that_many_in_flight(concurrency: int) -> None:
    send = FakeSend()
    records = asyncio.run(drive(send, _prompts(20), LoadPoint(concurrency=concurrency)))
    assert len(records) == 20
    assert sorted(send.seen) == sorted(p.text for p in _prompts(20))  # each prompt sent exactly once
    assert send.peak == concurrency


def test_poisson_rate_with_a_cap_never_exceeds_it() -> None:
    send = FakeSend()
    records = asyncio.run(drive(send, _prompts(30), LoadPoint(concurrency=2, rate=1e6), seed=3))
    assert len(records) == 30
    assert send.peak <= 2


def test_warmup_requests_are_sent_but_not_counted() -> None:
    send = FakeSend()
    result = asyncio.run(run_point(send, _prompts(10), [Prompt("warm", 4)] * 3, LoadPoint(concurrency=2)))
    assert len(send.seen) == 13
    assert result.stats.completed == 10
    assert result.as_dict()["concurrency"] == 2


@pytest.mark.parametrize("bad", [{}, {"concurrency": 0}, {"rate": -1.0}])
def test_load_point_refuses_nonsense(bad: dict) -> None:
    with pytest.raises(ValueError):
        LoadPoint(**bad)


def test_synthetic_prompts_are_seeded_distinct_and_sized() -> None:
    first = synthetic_prompts(5, input_len=12, output_len=7, seed="0/c=1")
    assert first == synthetic_prompts(5, input_len=12, output_len=7, seed="0/c=1")
    assert first != synthetic_prompts(5, input_len=12, output_len=7, seed="0/c=8")
    assert len({p.text for p in first}) == 5
    assert all(len(p.text.split()) == 12 and p.max_tokens == 7 for p in first)


def test_jsonl_prompts_and_their_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "a"}\n\n{"prompt": "b", "max_tokens": 3}\n')
    assert load_jsonl(good, default_max_tokens=9) == [Prompt("a", 9), Prompt("b", 3)]
    assert take(load_jsonl(good, 9), 3) == [Prompt("a", 9), Prompt("b", 3), Prompt("a", 9)]
    for text, message in [
        ("{not json", "good.jsonl:1: not valid JSON"),
        ('{"text": "a"}', "expected an object with a string 'prompt'"),
        ('{"prompt": "a", "max_tokens": 0}', "'max_tokens' must be a positive integer"),
        ("", "no prompts"),
    ]:
        good.write_text(text)
        with pytest.raises(PromptFileError, match=message):
            load_jsonl(good, 9)


def test_bodies_per_protocol() -> None:
    prompt = Prompt("hello", 16)
    chat = build_body(prompt, RequestOptions("chat", "m", stream=True, temperature=0.0, ignore_eos=True))
    assert chat["messages"] == [{"role": "user", "content": "hello"}]
    assert chat["stream_options"] == {"include_usage": True}
    assert (chat["max_tokens"], chat["ignore_eos"]) == (16, True)
    completion = build_body(prompt, RequestOptions("completions", "m", False, 0.5, ignore_eos=False))
    assert completion["prompt"] == "hello"
    assert "stream_options" not in completion and "ignore_eos" not in completion
    generate = build_body(prompt, RequestOptions("generate", "m", True, 0.0, ignore_eos=False))
    assert {k: generate[k] for k in ("prompt", "history_input", "history_output", "stream")} == {
        "prompt": "hello",
        "history_input": [],
        "history_output": [],
        "stream": True,
    }
    json.dumps(generate)  # bodies must be plain JSON
    with pytest.raises(ValueError, match="unknown api"):
        build_body(prompt, RequestOptions("embeddings", "m", False, 0.0, False))


def test_structured_bodies_ask_for_the_same_object() -> None:
    prompt = Prompt("hello", 16)
    tool = build_body(prompt, RequestOptions("chat", "m", False, 0.0, False, structured="tool-choice"))
    fmt = build_body(prompt, RequestOptions("chat", "m", False, 0.0, False, structured="json-schema"))
    assert tool["tools"][0]["function"]["parameters"] == fmt["response_format"]["json_schema"]["schema"]
    assert tool["tool_choice"] == {"type": "function", "function": {"name": "forecast"}}
    with pytest.raises(ValueError, match="needs --api chat"):
        build_body(prompt, RequestOptions("completions", "m", False, 0.0, False, structured="tool-choice"))


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        ({"choices": [{"text": "ab"}]}, "ab"),
        ({"object": "generation.chunk", "text": "gh", "finish_reason": None}, "gh"),
        ({"object": "generation.chunk", "text": "", "usage": {"completion_tokens": 3}}, None),
        ({"choices": [{"delta": {"content": "cd"}}]}, "cd"),
        ({"choices": [{"message": {"content": "ef"}}]}, "ef"),
        ({"choices": [{"delta": {"role": "assistant", "content": ""}}]}, None),  # chat's opening chunk
        ({"choices": [], "usage": {"completion_tokens": 3}}, None),  # the usage-only last chunk
        ({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]}, "{}"),
        (
            {"choices": [{"message": {"content": None, "tool_calls": [{"function": {"arguments": "{}"}}]}}]},
            "{}",
        ),
    ],
)
def test_chunk_text_finds_generated_text_in_every_shape(payload: dict, text: str | None) -> None:
    assert chunk_text(payload) == text


@pytest.mark.parametrize(
    "argv",
    [
        ["--concurrency", "1,8,32", "--no-stream", "--output-len", "9", "--temperature", "0.7"],
        [
            "--request-rate",
            "0.5,2",
            "--max-concurrency",
            "4",
            "--no-ignore-eos",
            "--seed",
            "3",
            "--warmup",
            "0",
        ],
    ],
)
def test_load_settings_survive_the_trip_to_another_process(argv: list[str]) -> None:
    settings = parsed_load(*argv)
    assert parsed_load(*settings.to_argv()) == settings


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-concurrency", "4"], "only applies with --request-rate"),
        (["--num-requests", "0"], "--num-requests must be positive"),
        (["--warmup", "-1"], "--warmup must not be negative"),
    ],
)
def test_contradictory_load_options_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parsed_load(*argv)


def parsed_load(*argv: str) -> LoadSettings:
    """Load settings from command-line options, the way the benchmark commands build them."""
    parser = argparse.ArgumentParser()
    add_load_arguments(parser)
    return load_settings(parser.parse_args(argv))


def test_few_waves_line_names_closed_loop_points_with_under_three_waves() -> None:
    assert few_waves_line(parsed_load("--concurrency", "1,32", "--num-requests", "96")) is None
    line = few_waves_line(parsed_load("--concurrency", "8,32", "--num-requests", "64"))
    assert line is not None and line.startswith("note: fewer than 3 waves of requests at c=32 (2): ")
    # an open-loop point has no waves, capped or not
    assert few_waves_line(parsed_load("--request-rate", "2,4", "--num-requests", "8")) is None
    capped = parsed_load("--request-rate", "2,4", "--max-concurrency", "32", "--num-requests", "8")
    assert few_waves_line(capped) is None
