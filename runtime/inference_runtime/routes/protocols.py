"""The protocol routes: each loaded serving class on its paths.

Once the model is loaded, :class:`ProtocolRoutes` (an ASGI middleware in front of FastAPI's routing)
hands a POST to a protocol path straight to its serving class's ``handle``, which also checks the API
key (so refused requests are counted and logged like any other). FastAPI's own routes for those paths
describe them in the API schema and answer while the model loads.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from inference_runtime.errors import Unavailable
from inference_runtime.serving.base import BaseServingEngine
from inference_runtime.state import RuntimeState


class ProtocolRoutes:
    """Serve protocol requests without FastAPI's routing and middleware layers.

    A stream runs in the request's own task (serving.streaming.EventStream), which resumes its whole
    call stack for every chunk it writes, so each layer between the server and the response costs once
    per token, not once per request: FastAPI's routing adds nine (exception handlers, exit stack,
    router, route, endpoint wrappers). Everything else passes through.
    """

    def __init__(self, app: ASGIApp, state: RuntimeState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            serving = self.state.servings.get(scope["path"])
            if serving is not None:
                response = await serving.handle(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _loading(request: Request) -> Response:
    """A protocol route before the model is loaded (after, ProtocolRoutes serves it)."""
    request.app.state.runtime.keys.identify(request.headers.get("authorization"))  # 401 before "loading"
    raise Unavailable("The model is loading; retry when /ready answers 200.", headers={"Retry-After": "5"})


def attach(app: FastAPI, classes: list[type[BaseServingEngine]]) -> dict[str, type[BaseServingEngine]]:
    """Add the routes of ``classes`` (first class wins a path) and return path -> class."""
    owners: dict[str, type[BaseServingEngine]] = {}
    router = APIRouter()
    for cls in classes:
        schema = cls.request_model.model_json_schema(ref_template="#/components/schemas/{model}")
        for path in cls.routes:
            if path in owners:
                continue
            owners[path] = cls
            router.add_api_route(
                path,
                _loading,
                methods=["POST"],
                tags=[cls.protocol],
                name=f"{cls.__name__}:{path}",
                summary=(cls.__doc__ or cls.__name__).strip().splitlines()[0],
                openapi_extra={
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {k: v for k, v in schema.items() if k != "$defs"}}
                        },
                    },
                    "x-defs": schema.get("$defs", {}),
                },
            )
    app.include_router(router)
    return owners
