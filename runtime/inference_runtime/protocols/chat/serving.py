"""OpenAIServingChat: messages -> chat template -> engine -> chat.completion(.chunk) objects."""

from __future__ import annotations

from typing import Any, ClassVar

from fastapi import Request

from inference_runtime.errors import InvalidRequest
from inference_runtime.generation import GenerationChunk, SamplingSpec
from inference_runtime.protocols.chat.protocol import ChatCompletionRequest
from inference_runtime.serving.base import BaseServingEngine, Completion, StreamState
from inference_runtime.serving.logprobs import chat_logprobs


class OpenAIServingChat(BaseServingEngine):
    routes: ClassVar[tuple[str, ...]] = ("/v1/chat/completions", "/chat/completions")
    request_model = ChatCompletionRequest
    protocol = "chat"
    id_prefix = "chatcmpl"
    add_special_tokens = False

    def validate_request(self, request: ChatCompletionRequest) -> None:
        super().validate_request(request)
        if len(request.messages) > self.ctx.limits.max_messages:
            raise InvalidRequest(
                f"At most {self.ctx.limits.max_messages} messages are allowed, got {len(request.messages)}.",
                param="messages",
            )
        if request.top_logprobs and not request.logprobs:
            raise InvalidRequest("top_logprobs requires logprobs to be true.", param="top_logprobs")

    async def create_prompt(self, request: ChatCompletionRequest, raw_request: Request) -> str:
        messages = [{"role": m.role, "content": m.text()} for m in request.messages]
        return self.render_messages(messages, request.add_generation_prompt)

    def requested_max_tokens(self, request: ChatCompletionRequest) -> int | None:
        return request.max_completion_tokens or request.max_tokens

    def sampling_params(self, request: ChatCompletionRequest, prompt_tokens: int) -> SamplingSpec:
        spec = super().sampling_params(request, prompt_tokens)
        if request.logprobs:
            spec.logprobs = request.top_logprobs or 0
        spec.skip_special_tokens = request.skip_special_tokens
        spec.include_stop_str_in_output = request.include_stop_str_in_output
        fmt = request.response_format
        if fmt is not None and fmt.type == "json_object":
            spec.json_object = True
        elif fmt is not None and fmt.type == "json_schema" and fmt.json_schema is not None:
            spec.json_schema = fmt.json_schema.schema_
        return spec

    def create_response(self, request: ChatCompletionRequest, result: Completion) -> dict[str, Any]:
        top = request.top_logprobs or 0
        choices = [
            {
                "index": c.index,
                "message": {"role": self.ctx.model.config.response_role, "content": c.text},
                "logprobs": chat_logprobs(c.logprobs, top) if request.logprobs else None,
                "finish_reason": c.finish_reason,
            }
            for c in result.choices
        ]
        return self.envelope(
            "chat.completion",
            result,
            choices=choices,
            usage=self.usage(result.prompt_tokens, result.completion_tokens),
        )

    def stream_chunks(
        self, request: ChatCompletionRequest, chunk: GenerationChunk, state: StreamState
    ) -> list[dict[str, Any]]:
        events = []
        top = request.top_logprobs or 0
        for c in chunk.choices:
            delta: dict[str, Any] = {"content": c.text}
            if c.index not in state.begun:  # the first chunk of a choice names the role
                state.begun.add(c.index)
                delta = {"role": self.ctx.model.config.response_role, "content": c.text}
            choice: dict[str, Any] = {
                "index": c.index,
                "delta": delta,
                "logprobs": None,
                "finish_reason": c.finish_reason,
            }
            if request.logprobs:
                choice["logprobs"] = chat_logprobs(c.logprobs, top)
            events.append(self.envelope("chat.completion.chunk", state, choices=[choice]))
        return events

    def stream_usage(self, request: ChatCompletionRequest, state: StreamState) -> dict[str, Any]:
        return self.envelope(
            "chat.completion.chunk",
            state,
            choices=[],
            usage=self.usage(state.prompt_tokens, state.completion_tokens),
        )
