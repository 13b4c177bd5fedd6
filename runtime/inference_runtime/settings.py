"""Runtime settings: command-line flags over environment variables over defaults.

Every setting has one flag and (where deployments need it) one environment variable; README.md
lists them all.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MODEL_ROOT = Path("~/.cache/inference-stack/models").expanduser()


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps applied to every request before it reaches the engine."""

    concurrency: int = 100  # admitted requests at once; request N+1 gets 429 at once
    max_body_bytes: int = 4 << 20
    max_n: int = 16
    max_messages: int = 512
    max_stop: int = 16
    max_logprobs: int = 20
    request_timeout: float = 600.0  # seconds, whole request including streaming
    # Socket writes a second for all streams together; above it new streams get chunks (StreamPacing).
    stream_write_budget: int = 0


@dataclass(frozen=True, slots=True)
class LogSettings:
    format: str = "text"  # text | json
    level: str = "INFO"
    file: Path | None = None
    file_max_bytes: int = 50 << 20
    file_backups: int = 5
    syslog: str | None = None  # host:port (UDP) or unix socket path
    log_content: bool = False  # prompts and completions in logs


@dataclass(frozen=True, slots=True)
class Settings:
    model_name: str
    config_path: Path = Path("conf/model_config.json")
    host: str = "127.0.0.1"
    port: int = 8000
    tensor_parallel_size: int | None = None
    max_model_len: int | None = None
    model_root: Path = DEFAULT_MODEL_ROOT
    allowed_roots: tuple[Path, ...] = ()
    # Code-loading engine arguments and environment variables let through by name (flags only: an
    # environment variable could be set by whoever may only set the container's environment).
    allowed_engine_args: frozenset[str] = frozenset()
    allowed_env: frozenset[str] = frozenset()
    api_keys: tuple[str, ...] = ()
    api_keys_file: Path | None = None
    metrics_require_auth: bool = False
    shutdown_grace: float = 30.0
    # Seconds between the engine's death and the process's exit (1), so a supervisor or the kubelet
    # restarts it; in-flight and new requests get 503 meanwhile. Negative: stay up, answering 503.
    engine_death_exit: float = 5.0
    # Where a fatal error's one line is written before a non-zero exit (Kubernetes shows the file of
    # terminationMessagePath, /dev/termination-log, as the container's termination message).
    termination_log: Path | None = None
    # --download-only: fetch the model's remote source into model_root, then exit (no engine, no server).
    # model_uri names the source directly (no config file), as the operator's download Job runs it.
    download_only: bool = False
    model_uri: str | None = None
    allow_patterns: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    log: LogSettings = field(default_factory=LogSettings)


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


_LIMITS = Limits()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="inference-runtime",
        description="Serve one model over OpenAI Chat, OpenAI Completions and /generate with vLLM.",
    )
    add = p.add_argument
    add("--model-name", default=_env("MODEL_NAME"), help="model to serve, a key of the config [$MODEL_NAME]")
    add(
        "--config",
        default=_env("MODEL_CONFIG", "conf/model_config.json"),
        help="model config file [$MODEL_CONFIG, default conf/model_config.json]",
    )
    add("--host", default=_env("SERVICE_HOST", "127.0.0.1"), help="bind address [$SERVICE_HOST, 127.0.0.1]")
    add("--port", type=int, default=int(_env("SERVICE_PORT", "8000")), help="port [$SERVICE_PORT, 8000]")
    add("--tensor-parallel-size", type=int, default=None, help="override the config's tensor_parallel_size")
    add("--max-model-len", type=int, default=None, help="override the config's max_model_len")
    add(
        "--limit-concurrency",
        type=int,
        default=int(_env("LIMIT_CONCURRENCY", "100")),
        help="requests served at once; more get 429 with Retry-After [$LIMIT_CONCURRENCY, 100]",
    )
    add("--max-body-bytes", type=int, default=_LIMITS.max_body_bytes, help="largest request body accepted")
    add("--max-n", type=int, default=_LIMITS.max_n, help="largest n (choices per request)")
    add("--max-messages", type=int, default=_LIMITS.max_messages, help="most chat messages per request")
    add(
        "--request-timeout",
        type=float,
        default=float(_env("REQUEST_TIMEOUT", str(_LIMITS.request_timeout))),
        help="seconds before a request is cut off and its engine work freed [$REQUEST_TIMEOUT, 600]",
    )
    add(
        "--stream-write-budget",
        type=int,
        default=int(_env("STREAM_WRITE_BUDGET", "0")),
        metavar="W",
        help="socket writes a second for all streams together: while streams deliver T tokens a second, "
        "a new stream gets ceil(T / W) tokens per write (its first at once); 0: every token "
        "[$STREAM_WRITE_BUDGET, 0]",
    )
    add(
        "--model-root",
        default=_env("MODEL_ROOT", str(DEFAULT_MODEL_ROOT)),
        help="relative model_path values resolve here; an allowed root [$MODEL_ROOT]",
    )
    add(
        "--allowed-root",
        action="append",
        default=[],
        help="a further folder model files and templates may come from (repeatable) "
        "[$ALLOWED_ROOTS, ':'-separated]",
    )
    add(
        "--allow-engine-arg",
        action="append",
        default=[],
        metavar="NAME",
        help="let this code-loading engine argument through (repeatable; e.g. trust_remote_code). "
        "Without it, engine arguments that import code or read paths outside the roots are refused",
    )
    add(
        "--allow-env",
        action="append",
        default=[],
        metavar="NAME",
        help="start although this code-loading environment variable is set (repeatable; e.g. "
        "LD_LIBRARY_PATH)",
    )
    add(
        "--api-keys-file",
        default=_env("API_KEYS_FILE"),
        help="file with one API key per line (`id:key` or a bare key) [$API_KEYS_FILE]; "
        "keys also from $API_KEYS",
    )
    add(
        "--metrics-require-auth",
        action="store_true",
        default=_env("METRICS_REQUIRE_AUTH") == "1",
        help="require an API key on /metrics too [$METRICS_REQUIRE_AUTH=1]",
    )
    add(
        "--shutdown-grace",
        type=float,
        default=float(_env("SHUTDOWN_GRACE", "30")),
        help="seconds in-flight requests get to finish after SIGTERM [$SHUTDOWN_GRACE, 30]",
    )
    add(
        "--engine-death-exit",
        type=float,
        default=float(_env("ENGINE_DEATH_EXIT", "5")),
        help="seconds after the engine dies before the process exits with status 1, so a supervisor "
        "restarts it; negative: stay up and answer 503 [$ENGINE_DEATH_EXIT, 5]",
    )
    add(
        "--termination-log",
        default=_env("TERMINATION_LOG"),
        help="write a fatal error's message to this file before exiting (in a pod: /dev/termination-log) "
        "[$TERMINATION_LOG]",
    )
    add(
        "--download-only",
        action="store_true",
        help="download the model's hf:// or s3:// source into --model-root, then exit without serving",
    )
    add(
        "--model-uri",
        default=None,
        metavar="URI",
        help="with --download-only: the source to download (hf://owner/name[@revision] or "
        "s3://bucket/prefix) instead of a config entry's model_path",
    )
    add(
        "--allow-pattern",
        action="append",
        default=[],
        metavar="GLOB",
        help="with --model-uri hf://...: fetch only the files matching this pattern (repeatable)",
    )
    add("--log-format", choices=["text", "json"], default=_env("LOG_FORMAT", "text"), help="[$LOG_FORMAT]")
    add("--log-level", default=_env("LOG_LEVEL", "INFO"), help="[$LOG_LEVEL, INFO]")
    add("--log-file", default=_env("LOG_FILE"), help="also log to this rotating file [$LOG_FILE]")
    add(
        "--log-syslog",
        default=_env("LOG_SYSLOG"),
        help="also send logs to syslog at host:port (UDP) or a unix socket path [$LOG_SYSLOG]",
    )
    add(
        "--log-content",
        action="store_true",
        default=_env("LOG_CONTENT") == "1",
        help="log prompts and completions (off by default) [$LOG_CONTENT=1]",
    )
    return p


def settings_from_args(argv: list[str] | None = None) -> Settings:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if (ns.model_uri or ns.allow_pattern) and not ns.download_only:
        parser.error("--model-uri and --allow-pattern go with --download-only")
    if ns.allow_pattern and not ns.model_uri:
        parser.error("--allow-pattern goes with --model-uri (a config entry has allow_patterns)")
    if not ns.model_name and not ns.model_uri:
        parser.error("--model-name (or $MODEL_NAME) is required")
    env_roots = [r for r in (_env("ALLOWED_ROOTS") or "").split(":") if r]
    env_keys = tuple(k.strip() for k in (_env("API_KEYS") or "").split(",") if k.strip())
    for flag, value in (
        ("--limit-concurrency", ns.limit_concurrency),
        ("--max-n", ns.max_n),
        ("--max-body-bytes", ns.max_body_bytes),
        ("--max-messages", ns.max_messages),
    ):
        if value < 1:
            parser.error(f"{flag} must be at least 1")
    if ns.request_timeout <= 0 or ns.shutdown_grace < 0:
        parser.error("--request-timeout must be positive and --shutdown-grace not negative")
    if ns.stream_write_budget < 0:
        parser.error("--stream-write-budget must not be negative (0 turns it off)")
    return Settings(
        model_name=ns.model_name or "",
        config_path=Path(ns.config),
        host=ns.host,
        port=ns.port,
        tensor_parallel_size=ns.tensor_parallel_size,
        max_model_len=ns.max_model_len,
        model_root=Path(ns.model_root).expanduser(),
        allowed_roots=tuple(Path(r).expanduser() for r in [*ns.allowed_root, *env_roots]),
        allowed_engine_args=frozenset(ns.allow_engine_arg),
        allowed_env=frozenset(ns.allow_env),
        api_keys=env_keys,
        api_keys_file=Path(ns.api_keys_file) if ns.api_keys_file else None,
        metrics_require_auth=ns.metrics_require_auth,
        shutdown_grace=ns.shutdown_grace,
        engine_death_exit=ns.engine_death_exit,
        termination_log=Path(ns.termination_log) if ns.termination_log else None,
        download_only=ns.download_only,
        model_uri=ns.model_uri,
        allow_patterns=tuple(ns.allow_pattern),
        limits=Limits(
            concurrency=ns.limit_concurrency,
            max_body_bytes=ns.max_body_bytes,
            max_n=ns.max_n,
            max_messages=ns.max_messages,
            request_timeout=ns.request_timeout,
            stream_write_budget=ns.stream_write_budget,
        ),
        log=LogSettings(
            format=ns.log_format,
            level=ns.log_level.upper(),
            file=Path(ns.log_file) if ns.log_file else None,
            syslog=ns.log_syslog,
            log_content=ns.log_content,
        ),
    )
