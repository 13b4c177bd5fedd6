"""Wire models of OpenAI Chat Completions (the subset vLLM serves, plus vLLM's sampling extras)."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from pydantic import BaseModel, ConfigDict, Field, model_validator

from inference_runtime.protocols.openai.logprobs import ChatLogprobs
from inference_runtime.protocols.openai.request import OpenAIBaseModel
from inference_runtime.serving.base import Envelope, Usage
from inference_runtime.serving.request import ServingRequest
from inference_runtime.tools.messages import check_tool_results, template_tool_calls
from inference_runtime.tools.protocol import ToolCall, ToolFields
from inference_runtime.tools.stream import ToolDelta


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = Field(None, max_length=256)
    tool_calls: list[ToolCall] | None = Field(None, description="assistant messages: the calls it made")
    tool_call_id: str | None = Field(None, max_length=256, description="tool messages: the call answered")

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)

    def for_template(self) -> dict[str, Any]:
        """The message as chat templates take it (content always a string, calls with their ids)."""
        out: dict[str, Any] = {"role": self.role, "content": self.text()}
        if self.tool_calls:
            out["tool_calls"] = template_tool_calls(self.tool_calls)
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


def template_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Messages for the chat template; a tool result answering no earlier call is a 400."""
    out = [m.for_template() for m in messages]
    check_tool_results(out)
    return out


class JSONSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field("response", max_length=256)
    schema_: dict[str, Any] = Field(..., alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_present(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format.json_schema is required when type is 'json_schema'")
        return self


class StructuredOutputs(BaseModel):
    """vLLM's ``structured_outputs`` extra (the JSON-schema part). ``disable_any_whitespace`` is honoured
    per request here (vLLM's server reads it only from its engine flags)."""

    model_config = ConfigDict(extra="forbid")
    json_: dict[str, Any] = Field(..., alias="json")
    disable_any_whitespace: bool = False


class ChatCompletionRequest(OpenAIBaseModel, ServingRequest, ToolFields):
    model: str
    messages: list[ChatMessage] = Field(..., min_length=1)
    n: int = Field(1, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    user: str | None = Field(None, max_length=256)
    # vLLM extras
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    add_generation_prompt: bool = True
    structured_outputs: StructuredOutputs | None = None


# Response bodies (plain dicts on the wire; keys in the order they are built).
class ChatResponseMessage(TypedDict):
    role: str
    content: str | None
    tool_calls: NotRequired[list[dict[str, Any]]]


class ChatChoice(TypedDict):
    index: int
    message: ChatResponseMessage
    logprobs: ChatLogprobs | None
    finish_reason: str | None


class ChatCompletion(Envelope):
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(ToolDelta, total=False):
    role: str


class ChatChunkChoice(TypedDict):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None
    finish_reason: str | None


class ChatCompletionChunk(Envelope):
    choices: list[ChatChunkChoice]
    usage: NotRequired[Usage]  # only on the last event, when the client asked for usage
