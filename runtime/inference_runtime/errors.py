"""Typed errors raised anywhere in the request path and rendered once, by the owning protocol.

Nothing from an exception's internals (traceback, file path, class name, engine message that may
carry a path) reaches a response body unless the error type says it is safe for clients.
"""

from __future__ import annotations

from typing import TypedDict


class APIError(Exception):
    """An error meant for the client: its message is safe to show."""

    status: int = 400
    type: str = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}
        if status is not None:
            self.status = status


class InvalidRequest(APIError):
    status = 400
    type = "invalid_request_error"


class ContextLengthExceeded(APIError):
    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = "messages") -> None:
        super().__init__(message, param=param, code="context_length_exceeded")


class Unauthorized(APIError):
    status = 401
    type = "authentication_error"

    def __init__(self, message: str = "Missing or invalid API key.") -> None:
        super().__init__(message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


class NotFound(APIError):
    status = 404
    type = "not_found_error"


class ModelNotFound(NotFound):
    def __init__(self, model: str) -> None:
        # The name is echoed after truncation so a hostile value cannot flood logs or responses.
        super().__init__(
            f"The model '{model[:100]}' does not exist on this server.", param="model", code="model_not_found"
        )


class PayloadTooLarge(APIError):
    status = 413
    type = "invalid_request_error"


class Overloaded(APIError):
    status = 429
    type = "rate_limit_error"


class ClientDisconnected(APIError):
    """Nobody reads this response; the status (nginx's 499) only labels metrics and logs."""

    status = 499
    type = "client_disconnected"


class RequestTimeout(APIError):
    status = 504
    type = "timeout_error"


class Unavailable(APIError):
    status = 503
    type = "service_unavailable_error"


class ShuttingDown(Unavailable):
    """Work refused while draining after SIGTERM, or cut when the grace period ends."""

    def __init__(self) -> None:
        super().__init__("The server is shutting down.", headers={"Retry-After": "1"})


class InternalError(APIError):
    """Anything unexpected: the client gets a generic message and the request id, the log gets details."""

    status = 500
    type = "internal_server_error"

    def __init__(self, request_id: str) -> None:
        super().__init__(
            f"The server had an error while processing the request (request id {request_id}).",
            code="internal_error",
        )


class ErrorDetail(TypedDict):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(TypedDict):
    error: ErrorDetail


def openai_error_body(err: APIError) -> ErrorBody:
    """The OpenAI error envelope."""
    return {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}
