"""Raw HTTP helpers of the request path and the routes: body size limit, disconnects, 400 messages."""

from __future__ import annotations

from fastapi import Request
from pydantic import ValidationError
from starlette.types import Receive

from inference_runtime.errors import PayloadTooLarge


async def read_body(raw_request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is (or says it is) larger than ``limit``."""
    declared = raw_request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for part in raw_request.stream():
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
        chunks.append(part)
    return b"".join(chunks)


async def wait_disconnect(receive: Receive) -> None:
    """Returns when the client goes away (the body has been read, so only disconnects arrive)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def validation_message(exc: ValidationError) -> tuple[str, str | None]:
    """A 400's message and ``param`` from the first validation error (dotted field path)."""
    err = exc.errors(include_url=False, include_input=False)[0]
    loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
    param = ".".join(loc) or None
    if err["type"] == "json_invalid":
        return "The request body is not valid JSON.", None
    message = err["msg"]
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return (f"Invalid value for '{param}': {message}{suffix}." if param else f"{message}{suffix}."), param
