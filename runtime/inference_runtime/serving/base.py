"""BaseServingEngine: the one request path every protocol shares, with hooks for what differs.

API key -> admission -> validate -> prompt -> sampling params -> engine -> response or stream -> errors.
A protocol (built-in or plugin) subclasses this and overrides hooks; it never re-implements API keys,
admission, limits, timeouts, disconnect handling, metrics or error rendering. SSE framing and the
streaming response live in ``serving.streaming``, the raw HTTP helpers in ``serving.http``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypedDict, TypeVar

import orjson
from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError

from inference_runtime.auth import KeyRing
from inference_runtime.config import ResolvedModel
from inference_runtime.engine_api import (
    EngineClient,
    EngineDead,
    EngineRequestError,
    ToolParserFactory,
)
from inference_runtime.errors import (
    APIError,
    ClientDisconnected,
    ContextLengthExceeded,
    InternalError,
    InvalidRequest,
    ModelNotFound,
    RequestTimeout,
    ShuttingDown,
    Unavailable,
    openai_error_body,
)
from inference_runtime.generation import ChoiceOutput, GenerationChunk, SamplingSpec
from inference_runtime.metrics import Metrics
from inference_runtime.observe import RequestRecord
from inference_runtime.serving.admission import Admission
from inference_runtime.serving.chat_template import render_chat
from inference_runtime.serving.http import read_body, validation_message, wait_disconnect
from inference_runtime.serving.pacing import StreamPacing
from inference_runtime.serving.request import ServingRequest
from inference_runtime.serving.streaming import DONE, EventStream, StreamGuard, merge_streams, sse_event
from inference_runtime.settings import Limits
from inference_runtime.tools.plan import ToolPlan, ToolResult, plan_tools
from inference_runtime.tools.protocol import ToolFields

logger = logging.getLogger(__name__)
JSON = "application/json"
TOKENIZE_IN_THREAD_CHARS = 8192  # below this, a thread hop costs more than encoding
RequestT = TypeVar("RequestT", bound=ServingRequest)
# ServingRequest fields copied to the SamplingSpec when the request sets them.
SAMPLING_KNOBS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "seed",
)


class Envelope(TypedDict):
    """What every response body and stream event starts with, in OpenAI's order."""

    id: str
    object: str
    created: int
    model: str


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(slots=True)
class ServingContext:
    """What a serving class needs, built once when the engine is up."""

    engine: EngineClient
    model: ResolvedModel
    limits: Limits
    admission: Admission
    pacing: StreamPacing
    keys: KeyRing = field(default_factory=KeyRing)
    metrics: Metrics | None = None
    log_content: bool = False
    tool_parser: ToolParserFactory | None = None  # the model config's tool_call_parser, for "auto"


@dataclass(slots=True)
class PromptInput:
    """One prompt as the engine sees it; ``text`` is kept for echo and (opt-in) content logs."""

    token_ids: list[int]
    text: str | None = None


@dataclass(slots=True)
class Completion:
    """A finished non-streaming request, handed to ``create_response``."""

    id: str
    created: int
    prompts: list[PromptInput]
    choices: list[ChoiceOutput]
    prompt_tokens: int
    completion_tokens: int


@dataclass(slots=True)
class StreamState:
    """Per-stream state for ``stream_chunks``: ids, the request's tool plan, usage so far, which choices
    have begun."""

    id: str
    created: int
    prompts: list[PromptInput]
    # The request's tool_plan, read here for every chunk (the request model keeps it as a pydantic
    # private attribute, a slow read).
    tool_plan: ToolPlan | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    begun: set[int] = field(default_factory=set)
    held: dict[int, list[str]] = field(default_factory=dict)  # text held back for tool extraction


class BaseServingEngine(Generic[RequestT]):
    """Base class of every serving class (the seed's BaseServingEngine), typed over its request model.

    Subclasses set ``routes``, ``request_model`` (a :class:`ServingRequest` subclass: the fields the
    hooks below read), ``protocol`` and ``id_prefix`` and override the hooks below; README.md
    (Plugins) and examples/plugin/ show a complete example.
    """

    routes: ClassVar[tuple[str, ...]] = ()
    request_model: type[RequestT]  # set on the class (a ClassVar cannot be generic)
    protocol: ClassVar[str] = "custom"  # metrics/log label
    id_prefix: ClassVar[str] = "req"
    # Chat templates add BOS themselves; raw-text protocols let the tokenizer add it.
    add_special_tokens: ClassVar[bool] = True

    def __init__(self, ctx: ServingContext) -> None:
        self.ctx = ctx
        self.engine = ctx.engine
        self.model_name = ctx.model.name

    # ------------------------------------------------------------------ hooks
    def parse_request(self, body: bytes) -> RequestT:
        """Bytes -> request model. Validation problems become a 400 naming the field."""
        try:
            return self.request_model.model_validate_json(body)
        except ValidationError as exc:
            message, param = validation_message(exc)
            raise InvalidRequest(message, param=param) from None

    def validate_request(self, request: RequestT) -> None:
        """Protocol checks beyond the schema. The default checks the model name and common caps."""
        model = getattr(request, "model", None)
        if model is not None and model != self.model_name:
            raise ModelNotFound(model)
        limits = self.ctx.limits
        n = getattr(request, "n", None) or 1
        if n > limits.max_n:
            raise InvalidRequest(f"n must be at most {limits.max_n}, got {n}.", param="n")
        stop = request.stop_list()
        if len(stop) > limits.max_stop:
            raise InvalidRequest(f"At most {limits.max_stop} stop sequences are allowed.", param="stop")

    async def create_prompt(self, request: RequestT, raw_request: Request) -> str | list[int]:
        """The prompt text (or token ids) for one request. Protocols must override this."""
        raise NotImplementedError

    async def create_prompts(self, request: RequestT, raw_request: Request) -> list[PromptInput]:
        """All prompts of a request (batching protocols override); each runs as one engine request."""
        return [await self.tokenize(await self.create_prompt(request, raw_request))]

    def sampling_params(self, request: RequestT, prompt_tokens: int) -> SamplingSpec:
        """Sampling parameters from the request; ``max_tokens`` defaults to the remaining context."""
        remaining = self.engine.max_model_len - prompt_tokens
        max_tokens = self.requested_max_tokens(request)
        if max_tokens is None:
            max_tokens = remaining
        elif max_tokens > remaining:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.engine.max_model_len} tokens; the prompt has "
                f"{prompt_tokens} tokens and max_tokens is {max_tokens}. "
                "Lower max_tokens or shorten the prompt.",
                param="max_tokens",
            )
        spec = SamplingSpec(max_tokens=max_tokens, n=getattr(request, "n", None) or 1)
        for name in SAMPLING_KNOBS:  # unset (None) keeps the SamplingSpec default
            value = getattr(request, name)
            if value is not None:
                setattr(spec, name, value)
        spec.stop = request.stop_list()
        spec.ignore_eos = request.ignore_eos
        spec.min_tokens = request.min_tokens
        return spec

    def requested_max_tokens(self, request: RequestT) -> int | None:
        return request.max_tokens

    def is_stream(self, request: RequestT) -> bool:
        return request.stream

    def include_usage(self, request: RequestT) -> bool:
        options = request.stream_options
        return options is not None and options.include_usage

    def tool_plan(self, request: RequestT) -> ToolPlan | None:
        """How the request uses tools; None when it offers none.

        A request model that mixes in :class:`~inference_runtime.tools.protocol.ToolFields` gets tool
        calling from the request path: its fields are checked (400 naming the field) before the prompt
        is made, forced choices are decoded under the tools' schema, and ``tool_result`` /
        ``held_tool_result`` give each choice's calls. The protocol only passes
        ``tool_plan(request).template_tools`` to ``render_messages`` and renders the calls in its format.
        The plan is made once per request.
        """
        if not isinstance(request, ToolFields):
            return None
        if not request.tool_plan_made:
            request.remember_tool_plan(plan_tools(request, self.ctx.tool_parser))
        return request.remembered_tool_plan

    def tool_result(self, request: RequestT, choice: ChoiceOutput) -> ToolResult | None:
        """The calls in a finished choice; None when the request's output is not parsed for calls."""
        plan = self.tool_plan(request)
        if plan is None or not plan.extracts:
            return None
        return plan.finish(choice.text, choice.finish_reason)

    def held_tool_result(
        self, request: RequestT, choice: ChoiceOutput, state: StreamState
    ) -> ToolResult | None:
        """Streaming under a plan that extracts calls: holds the choice's text back and returns the
        extracted result once the choice finishes (None before). Only for ``tool_plan(request).extracts``."""
        plan = state.tool_plan
        assert plan is not None
        state.held.setdefault(choice.index, []).append(choice.text)
        if choice.finish_reason is None:
            return None
        return plan.finish("".join(state.held.pop(choice.index)), choice.finish_reason)

    def response_headers(self, request: RequestT) -> dict[str, str]:
        """Headers of a successful response. ``X-Tool-Choice: text-only`` says that tool_choice "auto"
        was answered as text because the model config names no ``tool_call_parser``."""
        plan = self.tool_plan(request)
        return {"X-Tool-Choice": "text-only"} if plan is not None and plan.text_only else {}

    # Bodies are plain dicts (TypedDicts in the built-in protocols): orjson writes them directly, at
    # no validation or model-dump cost on the streaming path, which builds events every engine step.
    def create_response(self, request: RequestT, result: Completion) -> Mapping[str, Any]:
        """The non-streaming response body."""
        raise NotImplementedError

    def stream_chunks(
        self, request: RequestT, chunk: GenerationChunk, state: StreamState
    ) -> Sequence[Mapping[str, Any]]:
        """SSE events (as dicts) for one engine chunk."""
        raise NotImplementedError

    def stream_usage(self, request: RequestT, state: StreamState) -> Mapping[str, Any] | None:
        """The last event before ``[DONE]`` when the client asked for usage; None for none."""
        return None

    @classmethod
    def create_error_response(cls, error: APIError) -> Response:
        """Render an error in this protocol's format (the OpenAI envelope by default).

        A classmethod: the server renders errors of a protocol's routes before the engine is up too
        (401, "loading"), when no instance exists yet.
        """
        return Response(
            orjson.dumps(openai_error_body(error)),
            status_code=error.status,
            media_type=JSON,
            headers=error.headers,
        )

    # --------------------------------------------------------- shared helpers
    async def tokenize(self, prompt: str | list[int]) -> PromptInput:
        """Token ids for a prompt. Long texts are encoded in a thread so they do not stall other streams."""
        if isinstance(prompt, str):
            encode = self.engine.tokenizer.encode
            if len(prompt) > TOKENIZE_IN_THREAD_CHARS:
                ids = await asyncio.to_thread(encode, prompt, add_special_tokens=self.add_special_tokens)
            else:
                ids = encode(prompt, add_special_tokens=self.add_special_tokens)
            return PromptInput(token_ids=list(ids), text=prompt)
        return PromptInput(token_ids=list(prompt))

    def render_messages(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        """Apply the configured chat template (or the model's own) to messages, with ``tools=``."""
        return render_chat(
            self.engine.tokenizer, self.ctx.model.chat_template, messages, add_generation_prompt, tools
        )

    def envelope(self, obj: str, of: Completion | StreamState) -> Envelope:
        """What every response and stream event starts with; a body adds its fields after it:
        ``{**self.envelope("chat.completion", result), "choices": ...}``."""
        return {"id": of.id, "object": obj, "created": of.created, "model": self.model_name}

    def usage(self, prompt_tokens: int, completion_tokens: int) -> Usage:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    def check_length(self, prompt: PromptInput) -> None:
        limit = self.engine.max_model_len
        if len(prompt.token_ids) >= limit:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {limit} tokens; the prompt has "
                f"{len(prompt.token_ids)} tokens, which leaves no room to generate."
            )
        if not prompt.token_ids:
            raise InvalidRequest("The prompt is empty.", param="prompt")

    # ------------------------------------------------------ the request path
    async def handle(self, raw_request: Request) -> Response:
        """Serve one HTTP request end to end. Never raises: every failure becomes an error response."""
        request_id: str = raw_request.state.request_id
        record = RequestRecord(request_id=request_id, model=self.model_name, protocol=self.protocol)
        admitted = streaming = False
        try:
            record.key_id = self.ctx.keys.identify(raw_request.headers.get("authorization"))
            if not self.ctx.admission.try_acquire():
                if self.ctx.metrics is not None:
                    self.ctx.metrics.rejected.labels(self.model_name, self.protocol).inc()
                raise self.ctx.admission.refusal()
            admitted = True
            if self.ctx.metrics is not None:
                self.ctx.metrics.in_flight.labels(self.model_name, self.protocol).inc()
            body = await read_body(raw_request, self.ctx.limits.max_body_bytes)
            request = self.parse_request(body)
            self.validate_request(request)
            plan = self.tool_plan(request)
            prompts = await self.create_prompts(request, raw_request)
            for prompt in prompts:
                self.check_length(prompt)
            specs = [self.sampling_params(request, len(p.token_ids)) for p in prompts]
            if plan is not None:
                for spec in specs:
                    plan.constrain(spec)
            record.prompt_tokens = sum(len(p.token_ids) for p in prompts)
            if self.ctx.log_content:
                logger.info("request_id=%s prompt=%r", request_id, [p.text for p in prompts])
            response_id = f"{self.id_prefix}-{uuid.uuid4().hex}"
            if self.is_stream(request):
                record.stream = streaming = True
                interval = self.ctx.pacing.interval()
                for spec in specs:
                    spec.stream_interval = interval
                state = StreamState(id=response_id, created=int(time.time()), prompts=prompts, tool_plan=plan)
                guard = StreamGuard(asyncio.get_running_loop().time() + self.ctx.limits.request_timeout)
                return EventStream(
                    self._stream(request, prompts, specs, state, record, guard),
                    guard=guard,
                    on_close=lambda: self._finish(record, admitted=True),
                    admission=self.ctx.admission,
                    headers=self.response_headers(request),
                )
            result = await self._complete(request, prompts, specs, response_id, record, raw_request)
            if self.ctx.log_content:
                logger.info("request_id=%s completion=%r", request_id, [c.text for c in result.choices])
            return Response(
                orjson.dumps(self.create_response(request, result)),
                media_type=JSON,
                headers=self.response_headers(request),
            )
        except Exception as exc:
            streaming = False
            error = self._to_api_error(exc, request_id)
            record.fail(error.status, error.type)
            return self.create_error_response(error)
        except asyncio.CancelledError:
            if not self.ctx.admission.stopping:
                raise
            # uvicorn cancels what is left when the grace period is over: answer it instead of a 500.
            streaming = False
            error = ShuttingDown()
            record.fail(error.status, error.type)
            return self.create_error_response(error)
        finally:
            if not streaming:
                self._finish(record, admitted=admitted)

    def _finish(self, record: RequestRecord, *, admitted: bool) -> None:
        if record.closed:
            return
        if admitted:
            self.ctx.admission.release()
            if self.ctx.metrics is not None:
                self.ctx.metrics.in_flight.labels(self.model_name, self.protocol).dec()
        record.close(self.ctx.metrics)

    def _to_api_error(self, exc: BaseException, request_id: str) -> APIError:
        if isinstance(exc, APIError):
            return exc
        if isinstance(exc, EngineRequestError):
            return InvalidRequest(_first_line(str(exc)))
        if isinstance(exc, EngineDead):
            return Unavailable("The inference engine is not available.")
        if isinstance(exc, TimeoutError):
            return RequestTimeout(f"The request took longer than {self.ctx.limits.request_timeout:g} s.")
        logger.error("request_id=%s failed", request_id, exc_info=exc)
        return InternalError(request_id)

    def _engine_id(self, response_id: str, index: int) -> str:
        return f"{response_id}-{index}"

    async def _complete(
        self,
        request: RequestT,
        prompts: list[PromptInput],
        specs: list[SamplingSpec],
        response_id: str,
        record: RequestRecord,
        raw_request: Request,
    ) -> Completion:
        async def run(i: int) -> list[ChoiceOutput]:
            final: GenerationChunk | None = None
            async for chunk in self.engine.generate(
                prompts[i].token_ids, specs[i], self._engine_id(response_id, i), stream=False
            ):
                final = chunk
            assert final is not None
            # The whole answer arrives at once: no time to first token to observe (vLLM's own
            # vllm:time_to_first_token_seconds measures it inside the engine).
            record.completion_tokens += sum(c.num_tokens for c in final.choices)
            for c in final.choices:
                c.index += i * specs[i].n
            return final.choices

        work = asyncio.ensure_future(asyncio.gather(*(run(i) for i in range(len(prompts)))))
        gone = asyncio.ensure_future(wait_disconnect(raw_request.receive))
        try:
            done, _ = await asyncio.wait(
                {work, gone}, timeout=self.ctx.limits.request_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if work not in done:
                work.cancel()  # closes the engine generators, which aborts the engine requests
                await asyncio.gather(work, return_exceptions=True)
                if gone in done:
                    raise ClientDisconnected("The client closed the connection.")
                raise TimeoutError
            per_prompt = work.result()
        finally:
            gone.cancel()
            work.cancel()  # a no-op once it is done; else (cancelled at shutdown) it aborts the engine work
        choices = [c for group in per_prompt for c in group]
        record.finish_reasons = [c.finish_reason or "abort" for c in choices]
        return Completion(
            id=response_id,
            created=int(time.time()),
            prompts=prompts,
            choices=choices,
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
        )

    async def _stream(
        self,
        request: RequestT,
        prompts: list[PromptInput],
        specs: list[SamplingSpec],
        state: StreamState,
        record: RequestRecord,
        guard: StreamGuard,
    ) -> AsyncGenerator[bytes, None]:
        state.prompt_tokens = record.prompt_tokens
        merged = merge_streams(
            [
                self.engine.generate(p.token_ids, s, self._engine_id(state.id, i), stream=True)
                for i, (p, s) in enumerate(zip(prompts, specs, strict=True))
            ],
            guard,
        )
        usage: Mapping[str, Any] | None = None
        try:
            async for i, chunk in merged:
                new = 0
                for c in chunk.choices:
                    new += c.num_tokens
                    c.index += i * specs[i].n
                    if c.finish_reason is not None:
                        record.finish_reasons.append(c.finish_reason)
                record.tokens_arrived(new)
                self.ctx.pacing.written(new)
                state.completion_tokens += new
                # One write per engine step: socket writes are the largest cost of a stream.
                events = self.stream_chunks(request, chunk, state)
                if events:
                    yield b"".join([sse_event(event) for event in events])
            usage = self.stream_usage(request, state) if self.include_usage(request) else None
        except ClientDisconnected:
            # The client hung up (EventStream's watcher ended the wait on the engine): nobody reads on.
            record.fail(ClientDisconnected.status, ClientDisconnected.type)
            return
        except (GeneratorExit, asyncio.CancelledError) as exc:
            if isinstance(exc, GeneratorExit) or not self.ctx.admission.stopping:
                # Closed or cancelled from outside before its end: not a success.
                record.fail(ClientDisconnected.status, ClientDisconnected.type)
                raise
            # The grace period is over and the stream is cut: cancelled while waiting on the engine, or
            # (waiting to write to a slow client) thrown in by EventStream. End with an error event.
            error = ShuttingDown()
            record.fail(error.status, error.type)
            yield sse_event(openai_error_body(error)) + DONE
            return
        except Exception as exc:
            error = self._to_api_error(exc, record.request_id)
            record.fail(error.status, error.type)
            yield sse_event(openai_error_body(error))
        finally:
            await merged.aclose()  # now, not at garbage collection: this aborts the engine requests
        # Past the try: a cut while this last write waits for a slow client sends it as it is.
        yield (sse_event(usage) if usage is not None else b"") + DONE


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:500] if text.strip() else "The request was rejected by the engine."
