"""Engine log-probabilities in the two OpenAI shapes (chat and legacy completions)."""

from __future__ import annotations

from typing import TypedDict

from inference_runtime.generation import TokenLogprob


class TopLogprob(TypedDict):
    token: str
    logprob: float
    bytes: list[int]


class ChatTokenLogprob(TypedDict):
    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprob]


class ChatLogprobs(TypedDict):
    content: list[ChatTokenLogprob]


class CompletionLogprobs(TypedDict):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


def _bytes(token: str) -> list[int]:
    return list(token.encode("utf-8", errors="replace"))


def chat_logprobs(items: list[TokenLogprob] | None, top: int) -> ChatLogprobs:
    return {
        "content": [
            {
                "token": lp.token,
                "logprob": lp.logprob,
                "bytes": _bytes(lp.token),
                "top_logprobs": [{"token": t, "logprob": v, "bytes": _bytes(t)} for t, v in lp.top[:top]],
            }
            for lp in items or []
        ]
    }


def completion_logprobs(
    items: list[TokenLogprob] | None, top: int, text_offset: int = 0
) -> CompletionLogprobs:
    tokens: list[str] = []
    token_logprobs: list[float] = []
    top_logprobs: list[dict[str, float] | None] = []
    offsets: list[int] = []
    offset = text_offset
    for lp in items or []:
        tokens.append(lp.token)
        token_logprobs.append(lp.logprob)
        top_logprobs.append(dict(lp.top[:top]) if top else None)
        offsets.append(offset)
        offset += len(lp.token)
    return {
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs,
        "text_offset": offsets,
    }
