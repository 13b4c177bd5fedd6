"""Mount each loaded serving class on its routes. The route is thin: it delegates to ``handle``, which
also checks the API key (so refused requests are counted and logged like any other)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from inference_runtime.errors import Unavailable
from inference_runtime.serving.base import BaseServingEngine


def _endpoint(path: str) -> Any:
    async def serve(request: Request) -> Response:
        state = request.app.state.runtime
        serving = state.servings.get(path)
        if serving is None:
            state.keys.identify(request.headers.get("authorization"))  # 401 before "loading"
            raise Unavailable(
                "The model is loading; retry when /ready answers 200.", headers={"Retry-After": "5"}
            )
        return await serving.handle(request)

    return serve


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
                _endpoint(path),
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
