"""Schemathesis hooks for the fuzzing run (loaded through $SCHEMATHESIS_HOOKS by test_prod_fuzz.py).

Random model names only ever reach the 404 branch, so string ``model`` values are replaced by the
served model: the fuzzer then exercises prompts, sampling fields and the engine itself. Valid but
large generation sizes are shrunk (out-of-range values are left alone, they must still give 400)
so that a bounded number of examples also takes a bounded time on a CPU.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

MODEL = os.environ["VIF_FUZZ_MODEL"]
LARGEST_VALID = int(os.environ["VIF_FUZZ_MAX_MODEL_LEN"])  # above it max_tokens is a 400; --max-n is lower
SIZE_FIELDS = {"max_tokens": 8, "max_completion_tokens": 8, "n": 2}


def _shrink(value: Any, small: int) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and small < value <= LARGEST_VALID:
        return small
    return value


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    if isinstance(body.get("model"), str):
        body["model"] = MODEL
    for name, small in SIZE_FIELDS.items():
        if name in body:
            body[name] = _shrink(body[name], small)
    if "max_tokens" not in body and "max_completion_tokens" not in body:
        body["max_tokens"] = SIZE_FIELDS["max_tokens"]
    return body
