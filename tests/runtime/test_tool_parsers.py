"""The tool-call parsers the README lists, through the engine adapter, on recorded model outputs.

The outputs are what models trained for each format emit (Hermes/Qwen, Llama 3.x JSON, Llama 3.2/4
pythonic, Mistral, xLAM). Marker tokens a parser needs are added to the tiny model's tokenizer, as a
model of that family has them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from transformers import AutoTokenizer

from fixtures.prereq import require_path

engine = pytest.importorskip("inference_runtime.engine", reason="needs vLLM")

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            },
        },
    },
    {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    },
]
PARIS = ("get_weather", {"city": "Paris", "unit": "celsius"})
HERMES_CALL = (
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>'
)
RECORDED: dict[str, list[tuple[str, str | None, list[tuple[str, dict[str, Any]]]]]] = {
    "hermes": [
        (
            f"Let me check.{HERMES_CALL}",
            "Let me check.",
            [PARIS],
        ),
        (
            f'{HERMES_CALL}\n<tool_call>\n{{"name": "get_time", "arguments": {{}}}}\n</tool_call>',
            None,
            [PARIS, ("get_time", {})],
        ),
        ("It is sunny in Paris.", "It is sunny in Paris.", []),
    ],
    "llama3_json": [
        ('{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}', None, [PARIS]),
        ("Paris is in France.", "Paris is in France.", []),
    ],
    "pythonic": [
        ('[get_weather(city="Paris", unit="celsius"), get_time()]', None, [PARIS, ("get_time", {})]),
        ("No tools needed.", "No tools needed.", []),
    ],
    "mistral": [
        (
            '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]',
            None,
            [PARIS],
        ),
        ("Bonjour.", "Bonjour.", []),
    ],
    "xlam": [
        ('[{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]', None, [PARIS]),
        ("Just text.", "Just text.", []),
    ],
}
MARKERS = {"llama3_json": ["<|python_tag|>"], "mistral": ["[TOOL_CALLS]"]}


def tokenizer_for(name: str) -> Any:
    tokenizer = AutoTokenizer.from_pretrained(require_path("VIF_TINY_MODEL", "tiny test model"))
    if name in MARKERS:
        tokenizer.add_special_tokens({"additional_special_tokens": MARKERS[name]})
    return tokenizer


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_outputs(name: str) -> None:
    factory = engine.vllm_tool_parser(name, tokenizer_for(name))
    assert factory is not None
    for text, content, calls in RECORDED[name]:
        parsed = factory(TOOLS).parse(text)
        assert [(n, json.loads(a)) for n, a in parsed.calls] == calls, text
        assert (parsed.content or None) == (content if calls else text)


def test_unknown_names_and_missing_markers() -> None:
    tokenizer = tokenizer_for("hermes")
    assert engine.vllm_tool_parser("no_such_parser", tokenizer) is None
    with pytest.raises(ValueError, match="python_tag"):
        engine.vllm_tool_parser("llama3_json", tokenizer)  # a model without Llama 3's marker token
