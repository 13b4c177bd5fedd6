"""OpenAIServingCompletion: raw prompt(s) -> engine -> text_completion objects."""

from __future__ import annotations

from typing import Any, ClassVar

from fastapi import Request

from inference_runtime.errors import InvalidRequest
from inference_runtime.generation import GenerationChunk, SamplingSpec
from inference_runtime.protocols.completion.protocol import (
    MAX_PROMPTS,
    CompletionChoice,
    CompletionRequest,
    TextCompletion,
)
from inference_runtime.protocols.openai.logprobs import completion_logprobs
from inference_runtime.serving.base import BaseServingEngine, Completion, PromptInput, StreamState


class OpenAIServingCompletion(BaseServingEngine[CompletionRequest]):
    routes: ClassVar[tuple[str, ...]] = ("/v1/completions", "/completions")
    request_model = CompletionRequest
    protocol = "completion"
    id_prefix = "cmpl"

    def validate_request(self, request: CompletionRequest) -> None:
        super().validate_request(request)
        if request.suffix:
            raise InvalidRequest("suffix is not supported.", param="suffix")
        if request.echo and request.logprobs is not None:
            raise InvalidRequest("echo together with logprobs is not supported.", param="echo")

    async def create_prompts(self, request: CompletionRequest, raw_request: Request) -> list[PromptInput]:
        prompt = request.prompt
        if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
            items: list[Any] = [prompt]
        else:
            items = list(prompt)
        if not items:
            raise InvalidRequest("The prompt is empty.", param="prompt")
        if len(items) > MAX_PROMPTS:
            raise InvalidRequest(f"At most {MAX_PROMPTS} prompts per request.", param="prompt")
        vocab = len(self.engine.tokenizer)
        prompts = []
        for item in items:
            if not isinstance(item, str) and any(t < 0 or t >= vocab for t in item):
                raise InvalidRequest(f"Token ids must be in [0, {vocab}).", param="prompt")
            prompts.append(await self.tokenize(item))
        return prompts

    def sampling_params(self, request: CompletionRequest, prompt_tokens: int) -> SamplingSpec:
        spec = super().sampling_params(request, prompt_tokens)
        spec.logprobs = request.logprobs
        spec.skip_special_tokens = request.skip_special_tokens
        spec.include_stop_str_in_output = request.include_stop_str_in_output
        return spec

    def _echo(self, request: CompletionRequest, prompts: list[PromptInput], index: int, n: int) -> str:
        if not request.echo:
            return ""
        prompt = prompts[index // n]
        return prompt.text if prompt.text is not None else self.engine.tokenizer.decode(prompt.token_ids)

    def create_response(self, request: CompletionRequest, result: Completion) -> TextCompletion:
        choices: list[CompletionChoice] = []
        for c in result.choices:
            choices.append(
                {
                    "index": c.index,
                    "text": self._echo(request, result.prompts, c.index, request.n) + c.text,
                    "logprobs": completion_logprobs(c.logprobs, request.logprobs or 0)
                    if request.logprobs is not None
                    else None,
                    "finish_reason": c.finish_reason,
                }
            )
        return {
            **self.envelope("text_completion", result),
            "choices": choices,
            "usage": self.usage(result.prompt_tokens, result.completion_tokens),
        }

    def stream_chunks(
        self, request: CompletionRequest, chunk: GenerationChunk, state: StreamState
    ) -> list[TextCompletion]:
        events: list[TextCompletion] = []
        for c in chunk.choices:
            text = c.text
            if c.index not in state.begun:
                state.begun.add(c.index)
                text = self._echo(request, state.prompts, c.index, request.n) + text
            choice: CompletionChoice = {
                "index": c.index,
                "text": text,
                "finish_reason": c.finish_reason,
                "logprobs": completion_logprobs(c.logprobs, request.logprobs or 0)
                if request.logprobs is not None
                else None,
            }
            events.append({**self.envelope("text_completion", state), "choices": [choice]})
        return events

    def stream_usage(self, request: CompletionRequest, state: StreamState) -> TextCompletion:
        return {
            **self.envelope("text_completion", state),
            "choices": [],
            "usage": self.usage(state.prompt_tokens, state.completion_tokens),
        }
