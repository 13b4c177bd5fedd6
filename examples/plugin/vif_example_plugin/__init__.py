"""An example protocol plugin: ``POST /instruct`` with an Alpaca-style prompt and its own error format.

It overrides only the hooks it needs; admission, limits, timeouts, disconnects, metrics and streaming
come from BaseServingEngine.
"""

from __future__ import annotations

from typing import ClassVar, TypedDict

import orjson
from fastapi import Request
from fastapi.responses import Response
from pydantic import ConfigDict, Field

from inference_runtime.errors import APIError
from inference_runtime.generation import GenerationChunk
from inference_runtime.serving.base import BaseServingEngine, Completion, StreamState
from inference_runtime.serving.request import ServingRequest

TEMPLATE = (
    "Below is an instruction that describes a task{ctx}. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n{instruction}\n\n{input}### Response:\n"
)


class InstructRequest(ServingRequest):
    """Only its own fields: the sampling fields, ``max_tokens`` and ``stream`` come from ServingRequest."""

    model_config = ConfigDict(extra="forbid")
    instruction: str = Field(..., min_length=1, max_length=20000)
    input: str | None = Field(None, max_length=20000)


# Bodies are TypedDicts, plain dicts at run time: stream events are built every engine step.
class InstructResponse(TypedDict):
    id: str
    output: str
    finish_reason: str | None
    tokens: int


class InstructEvent(TypedDict):
    id: str
    output: str
    finish_reason: str | None


class AlpacaInstruct(BaseServingEngine[InstructRequest]):
    """Alpaca-style instruction following."""

    routes: ClassVar[tuple[str, ...]] = ("/instruct",)
    request_model = InstructRequest
    protocol = "instruct"
    id_prefix = "inst"

    async def create_prompt(self, request: InstructRequest, raw_request: Request) -> str:
        ctx = ", paired with an input that provides further context" if request.input else ""
        given = f"### Input:\n{request.input}\n\n" if request.input else ""
        return TEMPLATE.format(ctx=ctx, instruction=request.instruction, input=given)

    def create_response(self, request: InstructRequest, result: Completion) -> InstructResponse:
        choice = result.choices[0]
        return {
            "id": result.id,
            "output": choice.text,
            "finish_reason": choice.finish_reason,
            "tokens": result.completion_tokens,
        }

    def stream_chunks(
        self, request: InstructRequest, chunk: GenerationChunk, state: StreamState
    ) -> list[InstructEvent]:
        return [{"id": state.id, "output": c.text, "finish_reason": c.finish_reason} for c in chunk.choices]

    @classmethod
    def create_error_response(cls, error: APIError) -> Response:
        body = {"status": "error", "message": error.message, "field": error.param}
        return Response(
            orjson.dumps(body), status_code=error.status, media_type="application/json", headers=error.headers
        )
