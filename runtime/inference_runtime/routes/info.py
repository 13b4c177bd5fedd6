"""Health, readiness, version, model listing and the API description (schema and its browser UI)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response

from inference_runtime import __version__
from inference_runtime.deps import StateDep, require_key
from inference_runtime.engine_api import EngineDead, engine_version
from inference_runtime.errors import ShuttingDown, Unavailable

router = APIRouter(tags=["info"])


@router.get("/health", summary="Liveness: the process and the engine are alive (also while loading).")
async def health(state: StateDep) -> Response:
    if state.load_error is not None:
        raise Unavailable("The model failed to load.")
    if state.engine is not None:
        try:
            await state.engine.check_health()
        except EngineDead:
            raise Unavailable("The inference engine is not alive.") from None
    return JSONResponse({"status": "ok"})


@router.get("/ready", summary="Readiness: the model is loaded and the server accepts work.")
async def ready(state: StateDep) -> Response:
    if state.admission.draining:
        raise ShuttingDown()
    if not state.ready:
        raise Unavailable("The model is loading.", headers={"Retry-After": "5"})
    return JSONResponse({"status": "ready", "model": state.model.name})


@router.get("/version", summary="Versions of this runtime and of vLLM.", dependencies=[Depends(require_key)])
async def version() -> Response:
    return JSONResponse({"version": __version__, "vllm_version": engine_version()})


@router.get(
    "/v1/models", summary="The served model (OpenAI list format).", dependencies=[Depends(require_key)]
)
async def models(state: StateDep) -> Response:
    card = {
        "id": state.model.name,
        "object": "model",
        "created": state.created,
        "owned_by": "vllm-inference",
        "max_model_len": state.engine.max_model_len if state.engine else state.model.config.max_model_len,
    }
    return JSONResponse({"object": "list", "data": [card]})


@router.get("/openapi.json", include_in_schema=False, dependencies=[Depends(require_key)])
async def openapi(request: Request) -> Response:
    return JSONResponse(request.app.openapi())


@router.get("/docs", include_in_schema=False, dependencies=[Depends(require_key)])
async def docs(request: Request) -> HTMLResponse:
    """Swagger UI. With API keys on, a browser cannot send the key, so use it on a keyless server."""
    return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{request.app.title} - docs")
