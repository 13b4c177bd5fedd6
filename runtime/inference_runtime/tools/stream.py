"""Streamed tool calls as OpenAI ``delta.tool_calls`` fragments.

Each call is sent as one delta with its ``index``, ``id``, ``type`` and ``function.name`` (arguments
empty), then one with its ``arguments``: the shape the official clients' stream helpers and LangChain
assemble. Calls are sent once the choice is complete, because a call is only valid once its JSON is
(a stream cut by ``max_tokens`` must not have sent half a call as if it were one).
"""

from __future__ import annotations

from typing import Any

from inference_runtime.tools.plan import ToolResult


def tool_call_deltas(result: ToolResult) -> list[dict[str, Any]]:
    """The deltas of a complete choice: its content (if any), then each call's head and arguments."""
    deltas: list[dict[str, Any]] = []
    if result.content:
        deltas.append({"content": result.content})
    for index, call in enumerate(result.calls):
        head = {"index": index, "id": call.id, "type": "function"}
        deltas.append({"tool_calls": [{**head, "function": {"name": call.function.name, "arguments": ""}}]})
        deltas.append({"tool_calls": [{"index": index, "function": {"arguments": call.function.arguments}}]})
    return deltas
