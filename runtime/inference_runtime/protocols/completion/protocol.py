"""Wire models of OpenAI (legacy) Completions."""

from __future__ import annotations

from typing import NotRequired, TypedDict

from pydantic import Field

from inference_runtime.protocols.openai.logprobs import CompletionLogprobs
from inference_runtime.protocols.openai.request import OpenAIBaseModel
from inference_runtime.serving.base import Envelope, Usage
from inference_runtime.serving.request import ServingRequest

MAX_PROMPTS = 64


class CompletionRequest(OpenAIBaseModel, ServingRequest):
    model: str
    # A string, a list of strings, a list of token ids, or a list of token-id lists.
    prompt: str | list[str] | list[int] | list[list[int]] = Field(...)
    n: int = Field(1, ge=1)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=5)
    suffix: str | None = None
    # vLLM extras
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False


# Response bodies (plain dicts on the wire; keys in the order they are built).
class CompletionChoice(TypedDict):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: str | None


class TextCompletion(Envelope):
    """The response body, and each stream event (those carry ``usage`` only in the last one)."""

    choices: list[CompletionChoice]
    usage: NotRequired[Usage]
