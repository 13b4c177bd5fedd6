"""ServingGenerate: /generate renders system, then (user, assistant) history pairs, then the prompt,
with the model's chat template, and answers with a flat ``text`` (no choices: one sequence)."""

from __future__ import annotations

from typing import ClassVar

from fastapi import Request

from inference_runtime.errors import InvalidRequest
from inference_runtime.generation import GenerationChunk
from inference_runtime.protocols.generate.protocol import GenerateRequest, Generation, GenerationEvent
from inference_runtime.serving.base import BaseServingEngine, Completion, StreamState


class ServingGenerate(BaseServingEngine[GenerateRequest]):
    routes: ClassVar[tuple[str, ...]] = ("/generate",)
    request_model = GenerateRequest
    protocol = "generate"
    id_prefix = "gen"
    add_special_tokens = False

    def validate_request(self, request: GenerateRequest) -> None:
        super().validate_request(request)
        turns = 2 * len(request.history_input) + 2
        if turns > self.ctx.limits.max_messages:
            raise InvalidRequest(
                f"At most {self.ctx.limits.max_messages} messages are allowed; this history has {turns}.",
                param="history_input",
            )

    @staticmethod
    def conversation(request: GenerateRequest) -> list[dict[str, str]]:
        messages = []
        if request.system_info:
            messages.append({"role": "system", "content": request.system_info})
        for said, answered in zip(request.history_input, request.history_output, strict=True):
            messages.append({"role": "user", "content": said})
            messages.append({"role": "assistant", "content": answered})
        messages.append({"role": "user", "content": request.prompt})
        return messages

    async def create_prompt(self, request: GenerateRequest, raw_request: Request) -> str:
        return self.render_messages(self.conversation(request))

    def include_usage(self, request: GenerateRequest) -> bool:
        return True  # the last stream event always carries usage

    def create_response(self, request: GenerateRequest, result: Completion) -> Generation:
        choice = result.choices[0]
        return {
            **self.envelope("generation", result),
            "text": choice.text,
            "finish_reason": choice.finish_reason,
            "usage": self.usage(result.prompt_tokens, result.completion_tokens),
        }

    def stream_chunks(
        self, request: GenerateRequest, chunk: GenerationChunk, state: StreamState
    ) -> list[GenerationEvent]:
        return [
            {**self.envelope("generation.chunk", state), "text": c.text, "finish_reason": c.finish_reason}
            for c in chunk.choices
        ]

    def stream_usage(self, request: GenerateRequest, state: StreamState) -> GenerationEvent:
        return {
            **self.envelope("generation.chunk", state),
            "text": "",
            "finish_reason": None,
            "usage": self.usage(state.prompt_tokens, state.completion_tokens),
        }
