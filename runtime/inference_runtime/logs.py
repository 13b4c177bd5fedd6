"""Logging to the console (text or JSON), a rotating file and syslog (what rsyslog, syslog-ng, Vector,
Fluent Bit and most log collectors accept), configured once at start-up."""

from __future__ import annotations

import json
import logging
import logging.handlers
import socket
import sys
import time

from inference_runtime.settings import LogSettings

ACCESS_FIELDS = (
    "request_id",
    "model",
    "protocol",
    "key_id",
    "status",
    "latency",
    "ttft",
    "prompt_tokens",
    "completion_tokens",
    "stream",
    "error_type",
)


class JSONFormatter(logging.Formatter):
    """One JSON object per line; access-log fields become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ACCESS_FIELDS:
            if hasattr(record, name):
                doc[name] = getattr(record, name)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def _formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JSONFormatter()
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def _syslog_handler(target: str) -> logging.Handler:
    host, sep, port = target.rpartition(":")
    if sep and port.isdigit():
        address: str | tuple[str, int] = (host or "127.0.0.1", int(port))
        handler = logging.handlers.SysLogHandler(address=address, socktype=socket.SOCK_DGRAM)
    else:
        handler = logging.handlers.SysLogHandler(address=target)
    handler.ident = "inference-runtime: "
    # Python ends each message with a NUL byte by default; rsyslog shows it as "#000" and it breaks
    # collectors that parse the message as JSON.
    handler.append_nul = False
    return handler


def configure_logging(settings: LogSettings) -> None:
    root = logging.getLogger()
    root.setLevel(settings.level)
    for old in list(root.handlers):
        root.removeHandler(old)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(_formatter(settings.format))
    root.addHandler(console)
    if settings.file is not None:
        settings.file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            settings.file,
            maxBytes=settings.file_max_bytes,
            backupCount=settings.file_backups,
            encoding="utf-8",
        )
        file_handler.setFormatter(_formatter(settings.format))
        root.addHandler(file_handler)
    if settings.syslog:
        remote = _syslog_handler(settings.syslog)
        remote.setFormatter(_formatter(settings.format))
        root.addHandler(remote)
    # uvicorn's own access log would duplicate ours (which has model, tokens and latency).
    logging.getLogger("uvicorn.access").disabled = True
