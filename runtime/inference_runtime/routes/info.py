"""Health, readiness, version and model listing."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from inference_runtime import __version__
from inference_runtime.deps import StateDep, request_context
from inference_runtime.engine import VLLM_VERSION, EngineDead
from inference_runtime.errors import Unavailable

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
        raise Unavailable("The server is shutting down.")
    if not state.ready:
        raise Unavailable("The model is loading.", headers={"Retry-After": "5"})
    return JSONResponse({"status": "ready", "model": state.model.name})


@router.get("/version", summary="Versions of this runtime and of vLLM.")
async def version() -> Response:
    return JSONResponse({"version": __version__, "vllm_version": VLLM_VERSION})


@router.get(
    "/v1/models", summary="The served model (OpenAI list format).", dependencies=[Depends(request_context)]
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
