"""Streamed tool calls as OpenAI ``delta.tool_calls`` fragments.

Each call is sent as one delta with its ``index``, ``id``, ``type`` and ``function.name`` (arguments
empty), then one with its ``arguments``: the shape the official clients' stream helpers and LangChain
assemble. Calls are sent once the choice is complete, because a call is only valid once its JSON is
(a stream cut by ``max_tokens`` must not have sent half a call as if it were one).
"""

from __future__ import annotations

from typing import Required, TypedDict

from inference_runtime.tools.plan import ToolResult


class FunctionDelta(TypedDict, total=False):
    name: str
    arguments: str


class ToolCallDelta(TypedDict, total=False):
    index: Required[int]
    id: str
    type: str
    function: Required[FunctionDelta]


class ToolDelta(TypedDict, total=False):
    content: str | None
    tool_calls: list[ToolCallDelta]


def tool_call_deltas(result: ToolResult) -> list[ToolDelta]:
    """The deltas of a complete choice: its content (if any), then each call's head and arguments."""
    deltas: list[ToolDelta] = []
    if result.content:
        deltas.append({"content": result.content})
    for index, call in enumerate(result.calls):
        head: ToolCallDelta = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.function.name, "arguments": ""},
        }
        deltas.append({"tool_calls": [head]})
        deltas.append({"tool_calls": [{"index": index, "function": {"arguments": call.function.arguments}}]})
    return deltas
