"""Tool calling with the official ``openai`` client against a live runtime on the random tiny model.

Forced choices are decoded under the tools' schema, so even a random model returns valid calls: every
call's arguments are checked with ``jsonschema`` against its tool's ``parameters``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from fixtures.prereq import require_path
from fixtures.runtime_server import RunningServer, start_runtime, tiny_entry

pytestmark = pytest.mark.engine

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 12},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
ORDER = {  # nested objects, an array, an enum, an integer range, required fields
    "type": "function",
    "function": {
        "name": "place_order",
        "parameters": {
            "type": "object",
            "properties": {
                "customer": {
                    "type": "object",
                    "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 999}},
                    "required": ["id"],
                    "additionalProperties": False,
                },
                "items": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 2,
                    "items": {
                        "type": "object",
                        "properties": {
                            "sku": {"type": "string", "pattern": "^[A-Z]{3}$"},
                            "size": {"enum": ["S", "M", "L"]},
                        },
                        "required": ["sku", "size"],
                        "additionalProperties": False,
                    },
                },
                "express": {"type": "boolean"},
            },
            "required": ["customer", "items", "express"],
            "additionalProperties": False,
        },
    },
}
ROUTE = {  # $defs and references, shared by the "required" schema
    "type": "function",
    "function": {
        "name": "route",
        "parameters": {
            "$defs": {
                "point": {
                    "type": "object",
                    "properties": {
                        "x": {"type": "integer", "minimum": -99, "maximum": 99},
                        "y": {"type": "integer", "minimum": -99, "maximum": 99},
                    },
                    "required": ["x", "y"],
                    "additionalProperties": False,
                }
            },
            "type": "object",
            "properties": {"start": {"$ref": "#/$defs/point"}, "end": {"$ref": "#/$defs/point"}},
            "required": ["start", "end"],
            "additionalProperties": False,
        },
    },
}
NO_ARGS = {"type": "function", "function": {"name": "ping", "description": "no parameters"}}
TOOLS = [WEATHER, ORDER, ROUTE, NO_ARGS]
SCHEMAS = {t["function"]["name"]: t["function"].get("parameters") or {"type": "object"} for t in TOOLS}
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
# Every value above is bounded (lengths, ranges, enums): a random model fills an unbounded number or
# string until max_tokens, which is the truncation case (tested below), not a call. Bounded, the calls
# finish well inside this budget.
BUDGET = 200


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A chat server whose model config names vLLM's xlam parser (JSON arrays of calls) for "auto"."""
    model: Path = require_path("VIF_TINY_MODEL", "tiny test model")
    entry = tiny_entry(model, class_name="OpenAIServingChat", tool_call_parser="xlam")
    with start_runtime(tmp_path_factory.mktemp("tools"), "tiny", entry, model_root=model.parent) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)


def named(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


def create(client: openai.OpenAI, **kw: Any) -> Any:
    args = {
        "model": "tiny",
        "messages": MESSAGES,
        "tools": TOOLS,
        "max_tokens": BUDGET,
        "temperature": 0,
        **kw,
    }
    return client.chat.completions.create(**args)


def check_calls(message: Any, allowed: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """Each call names an offered tool, and its arguments are a JSON object valid for that tool."""
    assert message.tool_calls, message
    assert all(c.id.startswith("call_") and c.type == "function" for c in message.tool_calls)
    assert len({c.id for c in message.tool_calls}) == len(message.tool_calls)
    calls = []
    for call in message.tool_calls:
        assert call.function.name in allowed
        arguments = json.loads(call.function.arguments)
        assert isinstance(arguments, dict)
        jsonschema.validate(arguments, SCHEMAS[call.function.name])
        calls.append((call.function.name, arguments))
    return calls


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_named_function_returns_a_valid_call(client: openai.OpenAI, name: str) -> None:
    r = create(client, tool_choice=named(name))
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [n for n, _ in check_calls(choice.message, {name})] == [name]
    assert choice.message.content is None


def test_required_with_two_tools_and_parallel_calls(client: openai.OpenAI) -> None:
    r = create(client, tools=[WEATHER, ROUTE], tool_choice="required", seed=3, temperature=1.0)
    assert r.choices[0].finish_reason == "tool_calls"
    check_calls(r.choices[0].message, {"get_weather", "route"})


def test_parallel_tool_calls_false_gives_exactly_one_call(client: openai.OpenAI) -> None:
    for seed in range(3):
        r = create(client, tool_choice="required", parallel_tool_calls=False, seed=seed, temperature=1.0)
        assert len(check_calls(r.choices[0].message, set(SCHEMAS))) == 1


def test_streamed_calls_assemble_into_the_non_streamed_ones(client: openai.OpenAI) -> None:
    for choice in (named("place_order"), "required"):
        kw = {"model": "tiny", "messages": MESSAGES, "tools": TOOLS, "max_tokens": BUDGET, "temperature": 0}
        plain = client.chat.completions.create(**kw, tool_choice=choice)
        with client.chat.completions.stream(
            **kw, tool_choice=choice, stream_options={"include_usage": True}
        ) as s:
            final = s.get_final_completion()
        assert final.choices[0].finish_reason == "tool_calls"
        assert check_calls(final.choices[0].message, set(SCHEMAS)) == check_calls(
            plain.choices[0].message, set(SCHEMAS)
        )
        assert final.usage is not None and final.usage.completion_tokens == plain.usage.completion_tokens


def test_stream_events_name_the_call_before_its_arguments(server: RunningServer) -> None:
    body = {
        "model": "tiny",
        "messages": MESSAGES,
        "tools": TOOLS,
        "tool_choice": named("get_weather"),
        "max_tokens": BUDGET,
        "stream": True,
    }
    with httpx.stream("POST", server.base_url + "/v1/chat/completions", json=body, timeout=120) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    parts = [
        p
        for line in lines[:-1]
        for c in json.loads(line[6:])["choices"]
        for p in c["delta"].get("tool_calls", [])
    ]
    head, *rest = parts
    assert head["index"] == 0 and head["id"].startswith("call_") and head["type"] == "function"
    assert head["function"] == {"name": "get_weather", "arguments": ""}
    assert all("id" not in p and "name" not in p["function"] for p in rest)
    jsonschema.validate(json.loads("".join(p["function"]["arguments"] for p in rest)), SCHEMAS["get_weather"])


def test_truncated_forced_call_is_length_and_no_call(client: openai.OpenAI) -> None:
    kw = {"tool_choice": named("place_order"), "max_tokens": 4}
    plain = create(client, **kw).choices[0]
    assert plain.finish_reason == "length" and not plain.message.tool_calls
    assert plain.message.content and plain.message.content.startswith("{")  # the partial JSON, as text
    # The client's stream helper refuses a "length" finish; the raw stream says the same as above.
    chunks = list(create(client, stream=True, **kw))
    deltas = [c.choices[0] for c in chunks if c.choices]
    assert "".join(d.delta.content or "" for d in deltas) == plain.message.content
    assert not any(d.delta.tool_calls for d in deltas) and deltas[-1].finish_reason == "length"


def test_auto_recognises_calls_with_the_configured_parser(client: openai.OpenAI) -> None:
    """The model's text is constrained (response_format) to the JSON array xlam's parser reads: "auto"
    must then find the call in the text, streamed and not."""
    shape = {
        "type": "array",
        "minItems": 1,
        "maxItems": 1,
        "items": {
            "type": "object",
            "properties": {"name": {"const": "get_weather"}, "arguments": WEATHER["function"]["parameters"]},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        },
    }
    # Compact JSON (no whitespace), else the random model spends any budget on indentation.
    kw = {
        "tool_choice": "auto",
        "extra_body": {"structured_outputs": {"json": shape, "disable_any_whitespace": True}},
    }
    r = create(client, **kw)
    assert r.choices[0].finish_reason == "tool_calls"
    calls = check_calls(r.choices[0].message, {"get_weather"})
    with client.chat.completions.stream(
        model="tiny", messages=MESSAGES, tools=TOOLS, max_tokens=BUDGET, temperature=0, **kw
    ) as s:
        streamed = s.get_final_completion()
    assert check_calls(streamed.choices[0].message, {"get_weather"}) == calls


def test_auto_text_and_none_answer_in_text(client: openai.OpenAI) -> None:
    for choice in ("auto", "none"):
        r = create(client, tool_choice=choice, max_tokens=8)
        assert r.choices[0].message.content and not r.choices[0].message.tool_calls
        assert r.choices[0].finish_reason in ("stop", "length")


def test_auto_without_a_parser_says_text_only(runtime_server: RunningServer) -> None:
    body = {"model": runtime_server.model_name, "messages": MESSAGES, "tools": TOOLS, "max_tokens": 8}
    with runtime_server.client() as http:
        r = http.post("/v1/chat/completions", json=body)
        assert r.status_code == 200 and r.headers["x-tool-choice"] == "text-only"
        assert r.json()["choices"][0]["message"]["content"]
        forced = http.post(
            "/v1/chat/completions", json={**body, "tool_choice": "required", "max_tokens": BUDGET}
        )
        assert forced.status_code == 200 and "x-tool-choice" not in forced.headers
        assert forced.json()["choices"][0]["finish_reason"] == "tool_calls"


def test_multi_turn_conversation_with_a_tool_result(client: openai.OpenAI) -> None:
    first = create(client, tool_choice=named("get_weather"))
    call = first.choices[0].message.tool_calls[0]
    messages = [
        *MESSAGES,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 21})},
    ]
    again = create(client, messages=messages, tool_choice=named("get_weather"))
    check_calls(again.choices[0].message, {"get_weather"})
    text = create(client, messages=messages, tool_choice="none", max_tokens=8)
    assert text.choices[0].message.content
    # The tool result is in the prompt the template made.
    assert text.usage.prompt_tokens > first.usage.prompt_tokens + 10


@pytest.mark.parametrize(
    ("change", "param"),
    [
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"type": "object", "required": 5}},
                    }
                ]
            },
            "tools.0.function.parameters",
        ),
        ({"tool_choice": named("no_such_tool")}, "tool_choice.function.name"),
        (
            {"messages": [*MESSAGES, {"role": "tool", "tool_call_id": "call_nobody", "content": "1"}]},
            "messages.1.tool_call_id",
        ),
        ({"tools": None, "tool_choice": "required"}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools.0.function.name"),
    ],
)
def test_invalid_tool_requests_are_400_naming_the_field(
    server: RunningServer, change: dict[str, Any], param: str
) -> None:
    body = {"model": "tiny", "messages": MESSAGES, "tools": TOOLS, "tool_choice": "auto", **change}
    body = {k: v for k, v in body.items() if v is not None}
    with server.client() as http:
        r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


class Weather(BaseModel):
    """The weather in a city."""

    city: str = Field(max_length=12)
    unit: Literal["celsius", "fahrenheit"]
    days: int = Field(ge=1, le=7)


def test_langchain_bound_tool_call_and_structured_output(server: RunningServer) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        base_url=server.base_url + "/v1", api_key="unused", model="tiny", temperature=0, max_tokens=BUDGET
    )
    # One call: with parallel calls allowed, a random model may repeat calls until max_tokens.
    bound = llm.bind_tools([Weather], tool_choice="any", parallel_tool_calls=False)
    message = bound.invoke("Weather in Paris?")
    assert [call["name"] for call in message.tool_calls] and message.response_metadata[
        "finish_reason"
    ] == "tool_calls"
    for call in message.tool_calls:
        Weather.model_validate(call["args"])
        assert call["id"].startswith("call_")
    streamed = bound.stream("Weather in Paris?")
    assembled = None
    for chunk in streamed:
        assembled = chunk if assembled is None else assembled + chunk
    assert assembled is not None
    assert [c["args"] for c in assembled.tool_calls] == [c["args"] for c in message.tool_calls]
    result = llm.with_structured_output(Weather, method="function_calling").invoke("Weather in Paris?")
    assert isinstance(result, Weather)
