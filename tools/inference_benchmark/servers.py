"""Starting and stopping the servers a side-by-side run compares, with identical engine settings.

Each server runs as a child process in its own process group (vLLM spawns an engine-core process, and
it must go down with the server), logs to a file, and counts as ready when its readiness route answers
200. A server that exits or never gets ready raises :class:`ServerError` with the tail of its log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

_LOG_TAIL_LINES = 40


class ServerError(RuntimeError):
    """A server did not start or did not get ready."""


# The runtime's serving class for each protocol the comparisons drive.
CLASS_FOR_API = {"completions": "OpenAIServingCompletion", "chat": "OpenAIServingChat"}


@dataclass(frozen=True)
class EngineSettings:
    """The engine options both servers get, so only the HTTP layer differs between them."""

    model_path: Path
    model_name: str
    dtype: str = "bfloat16"
    max_model_len: int = 1024
    max_num_seqs: int = 32
    enforce_eager: bool = True

    def describe(self) -> dict[str, object]:
        return {
            "model_path": str(self.model_path),
            "model_name": self.model_name,
            "dtype": self.dtype,
            "max_model_len": self.max_model_len,
            "max_num_seqs": self.max_num_seqs,
            "enforce_eager": self.enforce_eager,
            "kv_cache_gib": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        }


@dataclass(frozen=True)
class ServerCommand:
    """How to start one server and how to tell it is ready."""

    label: str
    argv: list[str]
    port: int
    ready_path: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bin(name: str) -> Path:
    """A console script installed next to the running interpreter (the project's venv)."""
    return Path(sys.executable).parent / name


def vllm_command(engine: EngineSettings, port: int, extra: Sequence[str] = ()) -> ServerCommand:
    """vLLM's own OpenAI server (``vllm serve`` fails under the vllm-cpu distribution name), with
    ``extra`` flags of its own."""
    argv = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(engine.model_path), "--served-model-name", engine.model_name,
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", engine.dtype, "--max-model-len", str(engine.max_model_len),
        "--max-num-seqs", str(engine.max_num_seqs),
    ]  # fmt: skip
    if engine.enforce_eager:
        argv.append("--enforce-eager")
    argv.extend(extra)
    return ServerCommand("vllm", argv, port, "/health")


def runtime_command(
    engine: EngineSettings, port: int, workdir: Path, class_name: str, extra: Sequence[str] = ()
) -> ServerCommand:
    """Our runtime, with a model config written to ``workdir`` that mirrors :func:`vllm_command`, and
    ``extra`` flags of its own (serving options, not engine settings)."""
    config = {
        engine.model_name: {
            "class_name": class_name,
            "model_path": engine.model_path.name,
            "max_model_len": engine.max_model_len,
            "dtype": engine.dtype,
            "engine_args": {"enforce_eager": engine.enforce_eager, "max_num_seqs": engine.max_num_seqs},
        }
    }
    config_path = workdir / "model_config.json"
    config_path.write_text(json.dumps(config, indent=2))
    runtime = _bin("inference-runtime")
    if not runtime.exists():
        raise ServerError(f"{runtime} not found: install the project into this venv (hack/setup-venv.sh)")
    argv = [
        str(runtime), "--model-name", engine.model_name, "--config", str(config_path),
        "--model-root", str(engine.model_path.parent), "--host", "127.0.0.1", "--port", str(port),
        *extra,
    ]  # fmt: skip
    return ServerCommand("ours", argv, port, "/ready")


@dataclass(frozen=True)
class RunningServer:
    """A ready server: where it listens and which process (group) it is, to account its CPU time."""

    base_url: str
    pid: int

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time used so far by the HTTP process itself, and by its whole process group.

        The HTTP process is the front end (parsing, tokenizing, detokenizing, streaming); the group
        adds vLLM's engine core and workers. CPU time, unlike wall time, barely depends on what else
        runs on a shared machine, which makes it the steadier measure of what a request costs.
        Linux only (reads /proc).
        """
        tick = os.sysconf("SC_CLK_TCK")
        own = group = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # the process ended while we looked
            if int(fields[2]) != self.pid:  # process group id: the server leads its own group
                continue
            used = (int(fields[11]) + int(fields[12])) / tick
            group += used
            if stat.parent.name == str(self.pid):
                own = used
        return own, group


def _tail(log_path: Path) -> str:
    lines = log_path.read_text(errors="replace").splitlines()
    return "\n".join(lines[-_LOG_TAIL_LINES:])


def _wait_ready(command: ServerCommand, process: subprocess.Popen, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    url = command.base_url + command.ready_path
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(
                f"{command.label} server exited with {process.returncode} before it was ready; "
                f"last lines of {log_path}:\n{_tail(log_path)}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.5)
    raise ServerError(f"{command.label} server not ready after {timeout_s:.0f} s; see {log_path}")


def _stop(process: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left after the grace period."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def running(command: ServerCommand, log_path: Path, timeout_s: float = 600.0) -> Iterator[RunningServer]:
    """Start the server, wait until it is ready, yield it; stop it on the way out."""
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        "HF_HUB_OFFLINE": "1",
        # keep vLLM's ZMQ socket files out of the shared temp folder
        "VLLM_RPC_BASE_PATH": str(log_path.parent),
    }
    # A process group of its own (to count its CPU and stop its tree), but not a session of its own:
    # with the kernel's autogroup scheduling a new session is a new scheduling group, and a server's
    # group with vLLM's two spinning processes left this load generator, in another group, runnable
    # but off the CPU for 10-15 s of a 20 s round on 2 cores (docs/benchmark.md).
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command.argv, stdout=log, stderr=subprocess.STDOUT, env=env, process_group=0
        )
    try:
        _wait_ready(command, process, log_path, timeout_s)
        yield RunningServer(command.base_url, process.pid)
    finally:
        _stop(process)
