"""The application factory and its lifespan: the engine starts once, in the background, and is shared."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from inference_runtime import __version__
from inference_runtime.auth import KeyRing
from inference_runtime.config import ConfigError, ResolvedModel
from inference_runtime.engine_api import EngineClient, EngineOptions
from inference_runtime.errors import APIError, InternalError, InvalidRequest, NotFound, openai_error_body
from inference_runtime.metrics import Metrics
from inference_runtime.observe import RequestIdMiddleware
from inference_runtime.routes import info, metrics, protocols, tokenize
from inference_runtime.serving.admission import Admission
from inference_runtime.serving.base import BaseServingEngine, ServingContext
from inference_runtime.serving.pacing import StreamPacing
from inference_runtime.settings import Settings
from inference_runtime.state import RuntimeState
from inference_runtime.tools.registry import load_tool_parser

logger = logging.getLogger(__name__)
EngineFactory = Callable[[EngineOptions], Awaitable[EngineClient]]


async def start_vllm(options: EngineOptions) -> EngineClient:
    """The default engine: vLLM, imported here and nowhere earlier (config errors exit before this)."""
    from inference_runtime.engine import Engine

    return await Engine.start(options)


def engine_options(settings: Settings, model: ResolvedModel) -> EngineOptions:
    cfg = model.config
    return EngineOptions(
        model_path=str(model.model_path),
        served_model_name=model.name,
        max_model_len=settings.max_model_len or cfg.max_model_len,
        dtype=cfg.dtype,
        tensor_parallel_size=settings.tensor_parallel_size or cfg.tensor_parallel_size,
        gpu_memory_utilization=cfg.gpu_memory_utilization,
        extra=dict(model.engine_args),
    )


def create_app(
    settings: Settings,
    model: ResolvedModel,
    serving_classes: list[type[BaseServingEngine]],
    *,
    keys: KeyRing | None = None,
    metrics_registry: Metrics | None = None,
    engine_factory: EngineFactory = start_vllm,
    on_fatal: Callable[[str], None] | None = None,
) -> FastAPI:
    """Build the app. ``on_fatal(message)`` is called when the engine cannot start, or died and
    ``settings.engine_death_exit`` has passed (the CLI then exits non-zero)."""
    state = RuntimeState(
        settings=settings,
        model=model,
        serving_classes=serving_classes,
        keys=keys or KeyRing(),
        metrics=metrics_registry or Metrics(),
        admission=Admission(settings.limits.concurrency),
    )

    async def load_engine() -> None:
        try:
            engine = await engine_factory(engine_options(settings, model))
        except Exception as exc:
            state.load_error = str(exc)
            logger.error("the engine failed to start: %s", exc, exc_info=logger.isEnabledFor(logging.DEBUG))
            if on_fatal is not None:
                on_fatal(f"the engine failed to start: {_first_line(str(exc))}")
            return
        try:
            parser = (
                load_tool_parser(model.config.tool_call_parser, engine)
                if model.config.tool_call_parser is not None
                else None
            )
        except ConfigError as exc:
            engine.shutdown()
            state.load_error = str(exc)
            logger.error("model %s: %s", model.name, exc)
            if on_fatal is not None:
                on_fatal(f"model '{model.name}': {exc}")
            return
        ctx = ServingContext(
            engine=engine,
            tool_parser=parser,
            model=model,
            limits=settings.limits,
            admission=state.admission,
            pacing=StreamPacing(settings.limits.stream_write_budget),
            keys=state.keys,
            metrics=state.metrics,
            log_content=settings.log.log_content,
        )
        instances = {cls: cls(ctx) for cls in serving_classes}
        state.servings = {path: instances[cls] for path, cls in app.state.route_owners.items()}
        freeze_heap()
        state.engine = engine
        logger.info(
            "model %s is ready (max_model_len %d); serving %s",
            model.name,
            engine.max_model_len,
            ", ".join(sorted(state.servings)),
        )
        await watch_engine(engine)

    async def watch_engine(engine: EngineClient) -> None:
        """Notice the engine's death even when no request is running, say so once, then exit."""
        await engine.wait_dead()
        if state.admission.stopping:
            return  # the engine is being stopped with the server
        grace = settings.engine_death_exit
        then = f"the process exits in {grace:g} s" if grace >= 0 else "until the process is restarted"
        logger.error("the inference engine died (its log lines above say why); requests get 503, %s", then)
        if grace < 0:
            return
        await asyncio.sleep(grace)
        if on_fatal is not None:
            on_fatal("the inference engine died; see the log for its cause")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.create_task(load_engine())
        app.state.loader = loader
        try:
            yield
        finally:
            loader.cancel()
            await asyncio.gather(loader, return_exceptions=True)
            if state.engine is not None:
                state.engine.shutdown()
                logger.info("engine stopped")

    app = FastAPI(
        title="vLLM Inference Framework runtime",
        version=__version__,
        lifespan=lifespan,
        # Served by routes.info instead, behind the API key like every route but the probes.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = state
    app.include_router(info.router)
    app.include_router(metrics.router)
    app.include_router(tokenize.router)
    app.state.route_owners = protocols.attach(app, serving_classes)
    app.add_middleware(protocols.ProtocolRoutes, state=state)
    app.add_middleware(RequestIdMiddleware)  # added last, so outermost: every response carries the id
    _install_error_handlers(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def freeze_heap() -> None:
    """Move everything allocated so far (torch, vLLM, the tokenizer: most of the process's objects, and
    they live as long as it does) out of the garbage collector's sight, as vLLM's own server does after
    start-up. Each full collection would walk all of them again (0.23 s each with the tiny model's 640,000
    objects); the collector then works on what requests allocate."""
    gc.collect()
    gc.freeze()


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0][:1000] if lines else "no reason given"


def _render(request: Request, error: APIError) -> Response:
    """Render in the format of the protocol that owns the path (the OpenAI envelope elsewhere), also
    while the model loads and no serving instance exists yet."""
    owner = request.app.state.route_owners.get(request.url.path)
    if owner is not None:
        return owner.create_error_response(error)
    return Response(
        orjson.dumps(openai_error_body(error)),
        status_code=error.status,
        media_type="application/json",
        headers=error.headers,
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> Response:
        return _render(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        return _render(
            request,
            InvalidRequest(f"Invalid value for '{param}': {first.get('msg', 'invalid')}.", param=param),
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            error: APIError = NotFound(f"There is no route {request.method} {request.url.path[:200]}.")
        else:
            error = APIError(str(exc.detail)[:200], status=exc.status_code)
        return _render(request, error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        request_id = getattr(request.state, "request_id", "-")
        logger.error("request_id=%s unhandled error on %s", request_id, request.url.path, exc_info=exc)
        return _render(request, InternalError(request_id))


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with each protocol's pydantic ``$defs`` moved into components."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for item in schema.get("paths", {}).values():
            for op in item.values():
                components.update(op.pop("x-defs", {}))
        app.openapi_schema = schema
    return app.openapi_schema
