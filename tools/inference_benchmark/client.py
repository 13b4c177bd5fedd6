"""HTTP side of the benchmark: request bodies for each protocol, sending, and reading the reply.

One generic reader serves all three protocols because they share the OpenAI stream shape: the text
sits in ``choices[0].text`` (completions), ``choices[0].delta.content`` / ``message.content`` (chat)
or a flat ``text`` (/generate, one sequence), streams are SSE ``data:`` lines ending with
``data: [DONE]``, and token counts come in ``usage`` (in the last chunk when streaming).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from inference_benchmark.prompts import Prompt
from inference_benchmark.stats import RequestRecord

API_PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions", "generate": "/generate"}
# The object both structured modes ask for: one forced tool call, or response_format json_schema.
STRUCTURED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 24},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}
STRUCTURED_MODES = ("tool-choice", "json-schema")


@dataclass(frozen=True)
class RequestOptions:
    """What every request of a run shares."""

    api: str
    model: str
    stream: bool
    temperature: float
    ignore_eos: bool
    structured: str | None = None  # one of STRUCTURED_MODES (chat only)


def build_body(prompt: Prompt, options: RequestOptions) -> dict[str, Any]:
    """The JSON body for one request in the chosen protocol.

    ``ignore_eos`` (a vLLM extension) makes the model produce exactly ``max_tokens`` tokens, so output
    length is fixed by the benchmark and not by when a random model happens to stop.
    Streaming OpenAI requests ask for ``stream_options.include_usage``: the only exact token count of a
    stream is the server's own.
    """
    body: dict[str, Any] = {
        "model": options.model,
        "max_tokens": prompt.max_tokens,
        "temperature": options.temperature,
        "stream": options.stream,
    }
    if options.api == "chat":
        body["messages"] = [{"role": "user", "content": prompt.text}]
    elif options.api == "completions":
        body["prompt"] = prompt.text
    elif options.api == "generate":
        body.update(prompt=prompt.text, history_input=[], history_output=[])
    else:
        raise ValueError(f"unknown api {options.api!r}; choose one of {sorted(API_PATHS)}")
    if options.structured is not None:
        if options.api != "chat":
            raise ValueError("--structured needs --api chat")
        body.update(_structured_fields(options.structured))
    if options.stream and options.api != "generate":
        body["stream_options"] = {"include_usage": True}
    if options.ignore_eos:
        body["ignore_eos"] = True
    return body


def _structured_fields(mode: str) -> dict[str, Any]:
    if mode == "tool-choice":
        function = {"name": "forecast", "parameters": STRUCTURED_SCHEMA}
        return {
            "tools": [{"type": "function", "function": function}],
            "tool_choice": {"type": "function", "function": {"name": "forecast"}},
        }
    if mode == "json-schema":
        schema = {"name": "forecast", "schema": STRUCTURED_SCHEMA}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    raise ValueError(f"unknown structured mode {mode!r}; choose one of {STRUCTURED_MODES}")


def chunk_text(payload: dict[str, Any]) -> str | None:
    """The generated text a response or stream chunk carries, if any."""
    if text := payload.get("text"):
        return text
    choices = payload.get("choices") or ()
    if not choices:
        return None
    choice = choices[0]
    if text := choice.get("text"):
        return text
    message = choice.get("delta") or choice.get("message") or {}
    calls = message.get("tool_calls") or ()
    arguments = "".join(c.get("function", {}).get("arguments") or "" for c in calls)
    return message.get("content") or arguments or None


def _record(start: float, status: int | str, **fields: Any) -> RequestRecord:
    return RequestRecord(start=start, end=time.perf_counter(), status=status, **fields)


def _usage_fields(usage: dict[str, Any] | None) -> dict[str, int | None]:
    usage = usage or {}
    return {"prompt_tokens": usage.get("prompt_tokens"), "output_tokens": usage.get("completion_tokens")}


def _error_text(response: httpx.Response) -> str:
    """A short reason from an error reply (OpenAI envelope or plain text), for the report."""
    try:
        payload = response.json()
        detail = payload.get("error", payload) if isinstance(payload, dict) else payload
        message = detail.get("message", detail) if isinstance(detail, dict) else detail
    except ValueError:
        message = response.text
    return str(message)[:200]


async def send(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> RequestRecord:
    """Send one request and record its timing; transport failures become records, never exceptions."""
    start = time.perf_counter()
    try:
        if body.get("stream"):
            return await _send_streaming(client, path, body, start)
        response = await client.post(path, json=body)
        if response.status_code != 200:
            return _record(start, response.status_code, error=_error_text(response))
        return _record(start, 200, **_usage_fields(response.json().get("usage")))
    except httpx.TimeoutException:
        return _record(start, "timeout", error="no complete reply within the timeout")
    except (httpx.HTTPError, ValueError) as exc:
        return _record(start, type(exc).__name__, error=str(exc)[:200])


async def _send_streaming(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], start: float
) -> RequestRecord:
    chunk_times: list[float] = []
    usage = None
    async with client.stream("POST", path, json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return _record(start, response.status_code, error=_error_text(response))
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return _record(start, 200, chunk_times=tuple(chunk_times), **_usage_fields(usage))
            chunk = json.loads(data)
            if "error" in chunk:
                return _record(start, "stream-error", error=str(chunk["error"])[:200])
            if chunk_text(chunk):
                chunk_times.append(time.perf_counter())
            usage = chunk.get("usage") or usage
    return _record(start, "incomplete", error="the stream ended without data: [DONE]")


async def first_model(client: httpx.AsyncClient) -> str:
    """The first model the server lists at /v1/models: the default when no --model is given."""
    response = await client.get("/v1/models")
    response.raise_for_status()
    return response.json()["data"][0]["id"]
