"""FastAPI dependencies: the shared state, request ids and API-key checks."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from fastapi import Depends, Request

from inference_runtime.state import RuntimeState

_CLIENT_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def get_state(request: Request) -> RuntimeState:
    return request.app.state.runtime


StateDep = Annotated[RuntimeState, Depends(get_state)]


def request_context(request: Request, state: StateDep) -> None:
    """Give the request an id (the client's ``X-Request-Id`` when it is sane) and check its API key."""
    client_id = request.headers.get("x-request-id")
    request.state.request_id = (
        client_id if client_id and _CLIENT_ID.fullmatch(client_id) else uuid.uuid4().hex
    )
    request.state.key_id = (
        state.keys.check(request.headers.get("authorization")) if state.keys.enabled else "-"
    )


def metrics_auth(request: Request, state: StateDep) -> None:
    if state.settings.metrics_require_auth and state.keys.enabled:
        state.keys.check(request.headers.get("authorization"))
