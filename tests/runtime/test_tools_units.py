"""Tool calling without an engine: forced-call schemas, extraction, stream deltas, the parser registry."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from inference_runtime.config import ConfigError
from inference_runtime.engine_api import ParsedToolCalls
from inference_runtime.errors import InvalidRequest
from inference_runtime.generation import SamplingSpec
from inference_runtime.tools.messages import check_tool_results
from inference_runtime.tools.plan import plan_tools
from inference_runtime.tools.protocol import ToolDefinition, ToolFields
from inference_runtime.tools.registry import ENTRY_POINT_GROUP, load_tool_parser
from inference_runtime.tools.schema import required_schema
from inference_runtime.tools.stream import tool_call_deltas


def tool(name: str, parameters: dict[str, Any] | None) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


POINT = {"$defs": {"p": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}}}
ROUTE = tool(
    "route", {"type": "object", "properties": {"to": {"$ref": "#/$defs/p"}}, "required": ["to"], **POINT}
)
ADD = tool(
    "add",
    {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    },
)


def fields(**kw: Any) -> ToolFields:
    return ToolFields.model_validate(kw)


def test_required_schema_hoists_defs_and_accepts_exactly_the_calls_of_the_tools() -> None:
    schema = required_schema([ToolDefinition.model_validate(t) for t in (ROUTE, ADD)], parallel=True)
    assert schema["$defs"] == POINT["$defs"]
    ok = [{"name": "route", "parameters": {"to": {"x": 1}}}, {"name": "add", "parameters": {"a": 2}}]
    jsonschema.validate(ok, schema)
    for bad in ([], [{"name": "route", "parameters": {"to": {}}}], [{"name": "nope", "parameters": {}}]):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    single = required_schema([ToolDefinition.model_validate(ADD)], parallel=False)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([ok[1], ok[1]], single)


def test_defs_clash_between_tools_is_a_400() -> None:
    other = tool("other", {"type": "object", "$defs": {"p": {"type": "string"}}})
    with pytest.raises(InvalidRequest) as err:
        plan_tools(fields(tools=[ROUTE, other], tool_choice="required"), None)
    assert err.value.param == "tools.1.function.parameters"


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        (
            {"tools": [tool("f", {"type": "object", "properties": {"a": {"type": 12}}})]},
            "tools.0.function.parameters",
        ),
        ({"tools": [tool("f", {"type": "string"})]}, "tools.0.function.parameters"),
        ({"tools": [ADD, ADD]}, "tools.1.function.name"),
        (
            {"tools": [ADD], "tool_choice": {"type": "function", "function": {"name": "sub"}}},
            "tool_choice.function.name",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
    ],
)
def test_invalid_tool_fields_name_the_field(kw: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        plan_tools(fields(**kw), None)
    assert err.value.param == param


def test_forced_calls_validate_or_are_not_returned() -> None:
    named = plan_tools(
        fields(tools=[ADD], tool_choice={"type": "function", "function": {"name": "add"}}), None
    )
    assert named is not None
    spec = SamplingSpec(max_tokens=5, json_object=True)
    named.constrain(spec)
    assert spec.json_schema == ADD["function"]["parameters"] and not spec.json_object and spec.compact_json
    done = named.finish('{"a": 3}', "stop")
    assert done.finish_reason == "tool_calls" and done.content is None
    assert [(c.function.name, json.loads(c.function.arguments)) for c in done.calls] == [("add", {"a": 3})]
    assert done.calls[0].id.startswith("call_")
    cut = named.finish('{"a": ', "length")  # max_tokens ended the call: no call, the text, "length"
    assert (cut.calls, cut.content, cut.finish_reason) == ([], '{"a": ', "length")
    assert named.finish('{"a": "x"}', "stop").calls == []  # not valid against the schema


def test_required_calls_get_unique_ids() -> None:
    plan = plan_tools(fields(tools=[ROUTE, ADD], tool_choice="required"), None)
    assert plan is not None
    text = json.dumps([{"name": "add", "parameters": {"a": 1}}, {"name": "add", "parameters": {"a": 2}}])
    result = plan.finish(text, "stop")
    assert [json.loads(c.function.arguments) for c in result.calls] == [{"a": 1}, {"a": 2}]
    assert len({c.id for c in result.calls}) == 2


class FakeParser:
    keeps_special_tokens = True

    def __init__(self, tools: list[dict[str, Any]]) -> None:
        self.tools = tools

    def parse(self, text: str) -> ParsedToolCalls:
        name, _, args = text.partition(" ")
        if name == "CALL":
            return ParsedToolCalls(content=None, calls=[("add", args), ("add", args)])
        return ParsedToolCalls(content=text)


def test_auto_uses_the_parser_and_none_or_no_parser_answer_text() -> None:
    auto = plan_tools(fields(tools=[ADD], parallel_tool_calls=False), FakeParser)
    assert auto is not None and auto.mode == "auto" and not auto.text_only
    spec = SamplingSpec(max_tokens=5)
    auto.constrain(spec)
    assert spec.json_schema is None and spec.skip_special_tokens is False
    result = auto.finish('CALL {"a": 1}', "stop")
    assert result.finish_reason == "tool_calls" and len(result.calls) == 1  # parallel_tool_calls false
    assert auto.finish("hello", "stop").content == "hello"
    text_only = plan_tools(fields(tools=[ADD]), None)
    assert text_only is not None and text_only.text_only and not text_only.extracts
    none = plan_tools(fields(tools=[ADD], tool_choice="none"), FakeParser)
    assert none is not None and none.parser is None and none.template_tools == [ADD]


def test_stream_deltas_assemble_into_the_calls() -> None:
    plan = plan_tools(fields(tools=[ADD], tool_choice="required"), None)
    assert plan is not None
    result = plan.finish(json.dumps([{"name": "add", "parameters": {"a": 1}}] * 2), "stop")
    calls: dict[int, dict[str, str]] = {}
    for delta in tool_call_deltas(result):
        for part in delta["tool_calls"]:
            call = calls.setdefault(part["index"], {"id": "", "name": "", "arguments": ""})
            call["id"] += part.get("id", "")
            call["name"] += part["function"].get("name", "")
            call["arguments"] += part["function"]["arguments"]
    assert [c["id"] for c in calls.values()] == [c.id for c in result.calls]
    assert [c["arguments"] for c in calls.values()] == [c.function.arguments for c in result.calls]


def test_tool_results_must_answer_an_earlier_call() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{}"}}
    ok = [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1"},
    ]
    check_tool_results(ok)
    with pytest.raises(InvalidRequest) as err:
        check_tool_results([{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "call_1"}])
    assert err.value.param == "messages.1.tool_call_id"


class StubEngine:
    tokenizer = "the tokenizer"

    def tool_parser(self, name: str) -> None:
        return None


@pytest.fixture
def parser_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A distribution registering a tool parser plugin, installed (as pip would) into a folder on sys.path."""
    (tmp_path / "vif_test_parser.py").write_text(
        textwrap.dedent(
            """
            from inference_runtime.engine_api import ParsedToolCalls

            class EverythingIsAText:
                keeps_special_tokens = False

                def __init__(self, tokenizer, tools):
                    self.tokenizer, self.tools = tokenizer, tools

                def parse(self, text):
                    return ParsedToolCalls(content=text)
            """
        )
    )
    info = tmp_path / "vif_test_parser-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vif-test-parser\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\ntext = vif_test_parser:EverythingIsAText\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_registered_parser_plugins_load_and_unknown_names_fail(parser_distribution: Path) -> None:
    factory = load_tool_parser("text", StubEngine())  # type: ignore[arg-type]
    parser = factory([ADD])
    assert parser.tokenizer == "the tokenizer" and parser.tools == [ADD]  # type: ignore[attr-defined]
    assert parser.parse("hi") == ParsedToolCalls(content="hi")
    with pytest.raises(ConfigError, match=r"'vif_test_parser:EverythingIsAText' .*plugins: text"):
        load_tool_parser("vif_test_parser:EverythingIsAText", StubEngine())  # type: ignore[arg-type]


def test_a_raw_control_character_in_a_string_still_makes_a_call() -> None:
    """A byte-level token can decode to a raw control character inside a JSON string; the call is kept,
    and its re-serialised arguments escape it."""
    word = tool("word", {"type": "object", "properties": {"w": {"type": "string"}}, "required": ["w"]})
    plan = plan_tools(fields(tools=[word], tool_choice="required"), None)
    assert plan is not None
    result = plan.finish('[{"name":"word","parameters":{"w":"a\x02b"}}]', "stop")
    assert result.calls[0].function.arguments == '{"w": "a\\u0002b"}'
