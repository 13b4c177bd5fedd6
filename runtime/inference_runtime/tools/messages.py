"""Conversation messages carrying tool calls and tool results, as chat templates expect them."""

from __future__ import annotations

import json
from typing import Any

from inference_runtime.errors import InvalidRequest
from inference_runtime.tools.protocol import ToolCall


def template_tool_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    """Tool calls for a chat template. Templates of tool-trained models (Llama 3, Qwen, Hermes...)
    serialise ``arguments`` themselves (``| tojson``), so an object's JSON text is handed over decoded,
    as vLLM's server does; anything else stays the string the client sent."""
    out = []
    for call in calls:
        try:
            arguments: Any = json.loads(call.function.arguments)
        except ValueError:
            arguments = call.function.arguments
        if not isinstance(arguments, dict):
            arguments = call.function.arguments
        out.append(
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.function.name, "arguments": arguments},
            }
        )
    return out


def check_tool_results(messages: list[dict[str, Any]]) -> None:
    """Every ``tool`` message answers a call made by an earlier assistant message (400 otherwise)."""
    called: set[str] = set()
    for i, message in enumerate(messages):
        for call in message.get("tool_calls") or ():
            called.add(call["id"])
        if message["role"] != "tool":
            continue
        call_id = message.get("tool_call_id")
        if not call_id:
            raise InvalidRequest("A tool message needs the tool_call_id it answers.", param=f"messages.{i}")
        if call_id not in called:
            raise InvalidRequest(
                f"tool_call_id '{str(call_id)[:64]}' matches no tool call of an earlier assistant message.",
                param=f"messages.{i}.tool_call_id",
            )
