"""OpenAIServingChat: messages -> chat template -> engine -> chat.completion(.chunk) objects."""

from __future__ import annotations

from typing import ClassVar

from fastapi import Request

from inference_runtime.errors import InvalidRequest
from inference_runtime.generation import GenerationChunk, SamplingSpec
from inference_runtime.protocols.chat.protocol import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    ChatResponseMessage,
    template_messages,
)
from inference_runtime.protocols.openai.logprobs import chat_logprobs
from inference_runtime.serving.base import BaseServingEngine, Completion, StreamState
from inference_runtime.tools.plan import ToolResult
from inference_runtime.tools.stream import tool_call_deltas


class OpenAIServingChat(BaseServingEngine[ChatCompletionRequest]):
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
        plan = self.tool_plan(request)
        return self.render_messages(
            template_messages(request.messages),
            request.add_generation_prompt,
            tools=plan.template_tools if plan is not None else None,
        )

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
        if request.structured_outputs is not None:
            spec.json_object, spec.json_schema = False, request.structured_outputs.json_
            spec.compact_json = request.structured_outputs.disable_any_whitespace
        return spec

    def create_response(self, request: ChatCompletionRequest, result: Completion) -> ChatCompletion:
        top = request.top_logprobs or 0
        choices: list[ChatChoice] = []
        for c in result.choices:
            message: ChatResponseMessage = {"role": self.ctx.model.config.response_role, "content": c.text}
            finish_reason = c.finish_reason
            tools = self.tool_result(request, c)
            if tools is not None:
                message["content"], finish_reason = tools.content, tools.finish_reason
                if tools.calls:
                    message["tool_calls"] = [call.model_dump() for call in tools.calls]
            choices.append(
                {
                    "index": c.index,
                    "message": message,
                    "logprobs": chat_logprobs(c.logprobs, top) if request.logprobs else None,
                    "finish_reason": finish_reason,
                }
            )
        return {
            **self.envelope("chat.completion", result),
            "choices": choices,
            "usage": self.usage(result.prompt_tokens, result.completion_tokens),
        }

    def stream_chunks(
        self, request: ChatCompletionRequest, chunk: GenerationChunk, state: StreamState
    ) -> list[ChatCompletionChunk]:
        events: list[ChatCompletionChunk] = []
        top = request.top_logprobs or 0
        plan = state.tool_plan
        for c in chunk.choices:
            if plan is not None and plan.extracts:
                result = self.held_tool_result(request, c, state)
                if result is not None:
                    events.extend(self._tool_events(c.index, result, state))
                continue
            delta: ChatDelta = {"content": c.text}
            if c.index not in state.begun:  # the first chunk of a choice names the role
                state.begun.add(c.index)
                delta = {"role": self.ctx.model.config.response_role, "content": c.text}
            choice: ChatChunkChoice = {
                "index": c.index,
                "delta": delta,
                "logprobs": None,
                "finish_reason": c.finish_reason,
            }
            if request.logprobs:
                choice["logprobs"] = chat_logprobs(c.logprobs, top)
            events.append({**self.envelope("chat.completion.chunk", state), "choices": [choice]})
        return events

    def _tool_events(self, index: int, result: ToolResult, state: StreamState) -> list[ChatCompletionChunk]:
        """A finished choice's held text as deltas: the role, content, calls, then the finish reason."""
        deltas: list[ChatDelta] = [
            {"role": self.ctx.model.config.response_role},
            *tool_call_deltas(result),
            {},
        ]
        return [
            {
                **self.envelope("chat.completion.chunk", state),
                "choices": [
                    {
                        "index": index,
                        "delta": delta,
                        "logprobs": None,
                        "finish_reason": result.finish_reason if last else None,
                    }
                ],
            }
            for last, delta in ((i == len(deltas) - 1, d) for i, d in enumerate(deltas))
        ]

    def stream_usage(self, request: ChatCompletionRequest, state: StreamState) -> ChatCompletionChunk:
        return {
            **self.envelope("chat.completion.chunk", state),
            "choices": [],
            "usage": self.usage(state.prompt_tokens, state.completion_tokens),
        }
