"""``inference-runtime``: validate everything that can be validated, then serve.

Config, path and plugin errors exit with status 2 and one line naming the problem, before the engine
(which takes seconds to minutes) is started. A remote ``model_path`` (``hf://``, ``s3://``) is then
downloaded into the model root unless it is complete there; a failed download exits with status 1 and
one line starting with its category (see inference_runtime.sources). ``--download-only`` stops after the
download (the operator's download Job). SIGTERM drains: /ready turns 503 at once, new requests
get 503, in-flight requests and streams finish within the grace period, then the engine stops. What
is still in flight when the grace period ends gets a 503 (or, mid-stream, a last error event).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import sys
from types import FrameType

import uvicorn

from inference_policy.engine import refused_env
from inference_policy.model_source import ModelSource, SourceError
from inference_runtime.app import create_app
from inference_runtime.auth import KeyRing
from inference_runtime.config import (
    ConfigError,
    PathPolicy,
    ResolvedModel,
    load_model_config,
    source_from_env,
)
from inference_runtime.serving.admission import Admission
from inference_runtime.serving.base import BaseServingEngine
from inference_runtime.serving.registry import load_serving_class
from inference_runtime.settings import Settings, settings_from_args
from inference_runtime.sources import DownloadError, ensure_model
from inference_runtime.state import RuntimeState

logger = logging.getLogger("inference_runtime")
OPENAI_CLASSES = ("OpenAIServingChat", "OpenAIServingCompletion")
CUT_FLUSH_SECONDS = 5.0  # after the grace period, how long cut requests get to send their last bytes


def serving_classes(model: ResolvedModel) -> list[type[BaseServingEngine]]:
    """The primary class first (it wins shared paths), then the OpenAI routes unless disabled, then extras."""
    names = [model.config.class_name]
    if model.config.openai_routes:
        names += [n for n in OPENAI_CLASSES if n not in names]
    names += [n for n in model.config.extra_protocols if n not in names]
    return [load_serving_class(n) for n in names]


def path_policy(settings: Settings) -> PathPolicy:
    return PathPolicy(
        model_root=settings.model_root,
        config_dir=settings.config_path.resolve().parent,
        extra_roots=settings.allowed_roots,
    )


def prepare(settings: Settings) -> tuple[ResolvedModel, list[type[BaseServingEngine]], KeyRing]:
    policy = path_policy(settings)
    refused = refused_env(os.environ, settings.allowed_env)
    if refused:
        raise ConfigError(
            f"model '{settings.model_name}': environment variable {'; '.join(refused)} would let code "
            "into the engine; unset it or pass --allow-env NAME"
        )
    for name in sorted(settings.allowed_env):
        logger.warning("environment variable %s allowed by --allow-env: it may load code", name)
    for name in sorted(settings.allowed_engine_args):
        logger.warning("engine argument %s allowed by --allow-engine-arg: it may load code", name)
    model = load_model_config(settings.config_path, settings.model_name, policy, settings.allowed_engine_args)
    try:
        classes = serving_classes(model)
    except ConfigError as exc:
        raise ConfigError(f"model '{model.name}': {exc}") from None
    try:
        keys = KeyRing.from_sources(settings.api_keys, settings.api_keys_file)
    except OSError as exc:
        raise ConfigError(f"cannot read the API keys file: {exc.strerror}") from None
    return model, classes, keys


class DrainingServer(uvicorn.Server):
    """uvicorn, with a drain phase before its own shutdown on the first SIGTERM/SIGINT."""

    def __init__(self, config: uvicorn.Config, state: RuntimeState, grace: float) -> None:
        super().__init__(config)
        self.runtime = state
        self.grace = grace
        self.exit_code = 0
        self._drain: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list | None = None) -> None:  # type: ignore[override]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain is not None or self._loop is None:
            super().handle_exit(sig, frame)  # a second signal: stop now
            return
        if self.runtime.engine is None:
            # Still loading, so nothing to drain: a requested stop, exit 0 (uvicorn's own handler would
            # re-raise the signal at the end, which PID 1 of a container ignores).
            self.should_exit = True
            return
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        if self._drain is None:
            self._drain = asyncio.ensure_future(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        admission = self.runtime.admission
        admission.draining = True
        logger.info("draining: %d request(s) in flight, grace %.0f s", admission.active, self.grace)
        await _until_idle(admission, self.grace)
        admission.stopping = True
        if admission.active:
            logger.warning("grace period over with %d request(s) in flight; stopping", admission.active)
            # Cut them here, while the app still runs, and let each write its last words (a 503, or a
            # stream's error event): uvicorn would cancel them too, but stop the app at once after, and
            # on a loaded machine the process exited before those bytes left.
            for task in self.server_state.tasks:
                task.cancel()
            await _until_idle(admission, CUT_FLUSH_SECONDS)
        self.should_exit = True

    def fatal(self) -> None:
        self.exit_code = 1
        self.should_exit = True


def main(argv: list[str] | None = None) -> None:
    settings = settings_from_args(argv)
    from inference_runtime.logs import configure_logging

    configure_logging(settings.log)
    if settings.download_only:
        sys.exit(download_only(settings))
    try:
        model, classes, keys = prepare(settings)
    except ConfigError as exc:
        print(f"inference-runtime: error: {exc}", file=sys.stderr)
        write_termination_log(settings, f"error: {exc}")
        sys.exit(2)
    if model.source is not None and (failed := fetch(settings, model.source)):
        sys.exit(_fail(settings, failed))
    holder: list[DrainingServer] = []

    def fatal(message: str) -> None:
        write_termination_log(settings, message)
        holder[0].fatal()

    app = create_app(settings, model, classes, keys=keys, on_fatal=fatal)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        # The drain above already gave in-flight requests the grace period; what uvicorn still finds
        # then is cut after this (else a pod would need twice the grace before SIGKILL).
        timeout_graceful_shutdown=2,
        lifespan="on",
        server_header=False,
    )
    server = DrainingServer(config, app.state.runtime, settings.shutdown_grace)
    holder.append(server)
    logger.info(
        "serving model %s from %s on http://%s:%d (keys: %s)",
        model.name,
        model.model_path,
        settings.host,
        settings.port,
        f"{len(keys)} configured" if keys.enabled else "off",
    )
    server.run()
    if app.state.runtime.engine is None:
        # Stopped (or failed) while the model was loading. The loader thread inside vLLM's start-up
        # cannot be interrupted and would keep the interpreter alive until loading ends: stop the
        # engine processes it started and leave now.
        _stop_children()
        logging.shutdown()
        os._exit(server.exit_code)
    sys.exit(server.exit_code)


async def _until_idle(admission: Admission, seconds: float) -> None:
    """Wait until no request is in flight, or ``seconds`` have passed."""
    deadline = asyncio.get_running_loop().time() + seconds
    while admission.active > 0 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)


def download_only(settings: Settings) -> int:
    """``--download-only``: the source of ``--model-uri`` or of the config entry, into the model root.

    0 when it is complete (already, or now); 1 with one categorised line otherwise.
    """
    source: ModelSource
    if settings.model_uri:
        try:
            source = source_from_env(settings.model_uri, settings.allow_patterns, os.environ)
        except SourceError as exc:
            return _fail(settings, f"error: {exc}")
    else:
        try:
            model = load_model_config(
                settings.config_path, settings.model_name, path_policy(settings), settings.allowed_engine_args
            )
        except ConfigError as exc:
            return _fail(settings, f"error: {exc}")
        if model.source is None:
            logger.info("model %s is the local folder %s: nothing to download", model.name, model.model_path)
            return 0
        source = model.source
    failed = fetch(settings, source)  # at once when it is complete: the marker is read first
    return _fail(settings, failed) if failed else 0


def fetch(settings: Settings, source: ModelSource) -> str | None:
    """Make ``source`` complete under the model root; the failure's one line, or None."""
    try:
        ensure_model(source, settings.model_root.resolve())
    except DownloadError as exc:
        return str(exc)
    except Exception as exc:  # a bug or an unforeseen answer: still one line, never a traceback
        logger.debug("download of %s failed", source.uri, exc_info=True)
        return f"error: {source.uri}: the download failed unexpectedly ({type(exc).__name__})"
    return None


def _fail(settings: Settings, line: str) -> int:
    print(line, file=sys.stderr)
    write_termination_log(settings, line)
    return 1


def write_termination_log(settings: Settings, message: str) -> None:
    """Leave the reason of a fatal exit where the supervisor shows it (best effort, 4 KiB at most)."""
    if settings.termination_log is None:
        return
    try:
        settings.termination_log.write_text(message[:4096] + "\n", encoding="utf-8")
    except OSError as exc:
        logger.warning("cannot write the termination log %s: %s", settings.termination_log, exc.strerror)


def _stop_children(timeout: float = 5.0) -> None:
    """SIGTERM the engine processes this process started, then SIGKILL what is left after ``timeout``."""
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(timeout)
        if child.is_alive():
            child.kill()


if __name__ == "__main__":
    main()
