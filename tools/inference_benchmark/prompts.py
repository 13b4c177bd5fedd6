"""Prompt sets: synthetic prompts of a chosen length, or prompts read from a JSONL file."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

# Short, frequent English words: byte-level BPE vocabularies (Llama, SmolLM2, GPT-2 style) encode each
# of them, with its leading space, as one token, so N words make a prompt of about N tokens. The real
# count is whatever the server reports in usage.prompt_tokens, which the report shows.
_WORDS = (  # noqa: SIM905 - a word list reads better as prose
    "the of and to in is it that for on was with as be at by this had not are but from or have an "
    "they which one you were all we her she there their will each about how up out them then many "
    "some so these would other into has more two like him see time could no make than first been "
    "its who now people my made over did down only way find use may water long little very after "
    "words called just where most know get through back much before go good new write our used me "
    "man too any day same right look think also around another came come work three word must "
    "because does part even place well such here take why things help put years different away"
).split()


class PromptFileError(ValueError):
    """A JSONL prompt file that cannot be used; the message names the line and the problem."""


@dataclass(frozen=True)
class Prompt:
    """One request's input: the user text and how many tokens to ask for."""

    text: str
    max_tokens: int


def synthetic_prompts(count: int, input_len: int, output_len: int, seed: int | str = 0) -> list[Prompt]:
    """``count`` distinct prompts of about ``input_len`` tokens, each asking for ``output_len`` tokens.

    Each prompt starts with its own random words, so a prefix cache cannot serve one request from
    another's work; the seed (an int or a string such as ``"0/c=8"``) makes two runs, and two
    servers, see the same prompts.
    """
    if count < 1 or input_len < 1 or output_len < 1:
        raise ValueError("count, input length and output length must be positive")
    rng = random.Random(seed)
    return [Prompt(" ".join(rng.choices(_WORDS, k=input_len)), output_len) for _ in range(count)]


def load_jsonl(path: Path, default_max_tokens: int) -> list[Prompt]:
    """Read prompts from a JSONL file: one object per line with ``prompt`` and optional ``max_tokens``."""
    prompts = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PromptFileError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(item, dict) or not isinstance(item.get("prompt"), str):
                raise PromptFileError(f"{path}:{number}: expected an object with a string 'prompt'")
            max_tokens = item.get("max_tokens", default_max_tokens)
            if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
                raise PromptFileError(f"{path}:{number}: 'max_tokens' must be a positive integer")
            prompts.append(Prompt(item["prompt"], max_tokens))
    if not prompts:
        raise PromptFileError(f"{path}: no prompts")
    return prompts


def take(prompts: list[Prompt], count: int) -> list[Prompt]:
    """``count`` prompts, cycling through the set when it is shorter than the run."""
    return [prompts[i % len(prompts)] for i in range(count)]
