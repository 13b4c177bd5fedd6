"""FastAPI dependencies: the shared state and API-key checks (request ids come from observe.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from inference_runtime.state import RuntimeState


def get_state(request: Request) -> RuntimeState:
    return request.app.state.runtime


StateDep = Annotated[RuntimeState, Depends(get_state)]


def require_key(request: Request, state: StateDep) -> None:
    """Check the API key of a protected route (protocol routes check theirs in the serving path)."""
    request.state.key_id = state.keys.identify(request.headers.get("authorization"))


def metrics_auth(request: Request, state: StateDep) -> None:
    if state.settings.metrics_require_auth:
        require_key(request, state)
