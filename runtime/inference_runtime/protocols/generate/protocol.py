"""Wire model of /generate: a prompt, optional system instructions and the conversation so far as two
parallel lists (``history_input[i]`` is the user's turn i, ``history_output[i]`` the reply to it)."""

from __future__ import annotations

from typing import NotRequired

from pydantic import ConfigDict, Field, model_validator

from inference_runtime.serving.base import Envelope, Usage
from inference_runtime.serving.request import ServingRequest


class GenerateRequest(ServingRequest):
    # Our own protocol: unknown fields are mistakes, not other vendors' options.
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str | None = Field(None, description="optional; when given it must be the served model")
    prompt: str = Field(..., min_length=1)
    system_info: str | None = None
    history_input: list[str] = Field(default_factory=list)
    history_output: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _parallel_history(self) -> GenerateRequest:
        if len(self.history_input) != len(self.history_output):
            raise ValueError(
                f"history_input and history_output must have the same length "
                f"(got {len(self.history_input)} and {len(self.history_output)})"
            )
        return self


# Response bodies (plain dicts on the wire; keys in the order they are built).
class Generation(Envelope):
    text: str
    finish_reason: str | None
    usage: Usage


class GenerationEvent(Envelope):
    """One stream event; the last one carries ``usage``."""

    text: str
    finish_reason: str | None
    usage: NotRequired[Usage]
