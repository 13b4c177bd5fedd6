"""Engine-neutral data exchanged between the serving layer and the engine adapter.

Serving classes (and third-party plugins) only see these, never vLLM's own types, so a vLLM upgrade
touches the adapter alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class SamplingSpec:
    """What to sample; converted to vLLM's SamplingParams inside the adapter."""

    max_tokens: int
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    min_tokens: int = 0
    logprobs: int | None = None
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True
    # Structured output: at most one of these is set.
    json_schema: dict[str, Any] | None = None
    json_object: bool = False
    regex: str | None = None
    choice: list[str] | None = None
    # JSON without whitespace between tokens: a weak model cannot spend its budget on indentation.
    compact_json: bool = False
    # Streaming only: tokens per delta (the first and last deltas at once). An engine that cannot
    # coalesce its deltas may ignore it.
    stream_interval: int = 1


@dataclass(slots=True)
class TokenLogprob:
    """The sampled token's log-probability and the most likely alternatives at that position."""

    token: str
    logprob: float
    top: list[tuple[str, float]]


@dataclass(slots=True)
class ChoiceOutput:
    """One of the ``n`` sequences: new text since the last chunk when streaming, all text otherwise."""

    index: int
    text: str
    num_tokens: int  # tokens in this chunk: new ones when streaming, all of them otherwise
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None


@dataclass(slots=True)
class GenerationChunk:
    """One engine step's output for a request."""

    choices: list[ChoiceOutput]
    prompt_tokens: int
    finished: bool
