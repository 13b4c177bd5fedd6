"""Chat templates: messages (and ``tools=``) to prompt text, a failure as a 400 naming ``messages``."""

from __future__ import annotations

from typing import Any

from inference_runtime.engine_api import Tokenizer
from inference_runtime.errors import InvalidRequest


def render_chat(
    tokenizer: Tokenizer,
    chat_template: str | None,
    messages: list[dict[str, Any]],
    add_generation_prompt: bool,
    tools: list[dict[str, Any]] | None,
    *,
    continue_final_message: bool = False,
) -> str:
    """Messages through a chat template (``chat_template``, or the tokenizer's own when None)."""
    extra: dict[str, Any] = {"tools": tools} if tools else {}
    if continue_final_message:
        extra["continue_final_message"] = True
    try:
        return tokenizer.apply_chat_template(
            messages,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            chat_template=chat_template,
            **extra,
        )
    except Exception as exc:
        raise InvalidRequest(
            f"The messages cannot be rendered with the chat template: {exc}"[:500], param="messages"
        ) from None
