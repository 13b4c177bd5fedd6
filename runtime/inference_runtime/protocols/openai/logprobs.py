"""Engine log-probabilities in the two OpenAI shapes (chat and legacy completions)."""

from __future__ import annotations

from typing import Any

from inference_runtime.generation import TokenLogprob


def _bytes(token: str) -> list[int]:
    return list(token.encode("utf-8", errors="replace"))


def chat_logprobs(items: list[TokenLogprob] | None, top: int) -> dict[str, Any]:
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


def completion_logprobs(items: list[TokenLogprob] | None, top: int, text_offset: int = 0) -> dict[str, Any]:
    tokens, token_logprobs, top_logprobs, offsets = [], [], [], []
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
