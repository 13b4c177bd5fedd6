"""A real model gives real answers: SmolLM2-135M-Instruct through the chat route."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import openai
import pytest

from fixtures.runtime_server import RunningServer, start_runtime

pytestmark = pytest.mark.smollm2


@pytest.fixture(scope="module")
def smollm2(smollm2_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    entry = {
        "class_name": "OpenAIServingChat",
        "model_path": smollm2_model_path.name,
        "max_model_len": 2048,
        "dtype": "bfloat16",
        "engine_args": {"enforce_eager": True, "max_num_seqs": 4, "seed": 0},
    }
    with start_runtime(
        tmp_path_factory.mktemp("smollm2"), "smollm2", entry, model_root=smollm2_model_path.parent
    ) as server:
        yield server


def test_capital_of_france(smollm2: RunningServer) -> None:
    client = openai.OpenAI(base_url=smollm2.base_url + "/v1", api_key="unused", max_retries=0)
    r = client.chat.completions.create(
        model="smollm2",
        temperature=0,
        max_tokens=30,
        messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
    )
    assert "Paris" in r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")


def test_json_schema_output_parses_and_validates(smollm2: RunningServer) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 40},
            "country": {"type": "string", "maxLength": 40},
        },
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    client = openai.OpenAI(base_url=smollm2.base_url + "/v1", api_key="unused", max_retries=0)
    r = client.chat.completions.create(
        model="smollm2",
        temperature=0,
        max_tokens=120,
        messages=[
            {"role": "user", "content": "Name the capital of France as JSON with keys city and country."}
        ],
        response_format={"type": "json_schema", "json_schema": {"name": "capital", "schema": schema}},
    )
    data = json.loads(r.choices[0].message.content)
    jsonschema.validate(data, schema)
    assert "Paris" in data["city"]


def test_forced_tool_call_is_valid(smollm2: RunningServer) -> None:
    parameters = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 40},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    }
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": parameters}}
    client = openai.OpenAI(base_url=smollm2.base_url + "/v1", api_key="unused", max_retries=0)
    for tool_choice in ({"type": "function", "function": {"name": "get_weather"}}, "required"):
        r = client.chat.completions.create(
            model="smollm2",
            temperature=0,
            max_tokens=120,
            messages=[{"role": "user", "content": "What is the weather in Paris, in celsius?"}],
            tools=[tool],
            tool_choice=tool_choice,
        )
        assert r.choices[0].finish_reason == "tool_calls"
        calls = r.choices[0].message.tool_calls
        assert calls
        for call in calls:
            assert call.function.name == "get_weather"
            jsonschema.validate(json.loads(call.function.arguments), parameters)
