"""Sampling profiles of a server's processes under load (py-spy), and where each one spends its samples.

A server here is a process tree: the HTTP process (ours or vLLM's API server), vLLM's engine core and
its worker. ``py-spy record --subprocesses`` samples every thread of the tree that is not idle, at a
fixed rate, so a process's share of the samples is its share of the CPU the tree used. Frames are also
sorted into what they do; ``busy-poll`` is the time vLLM's engine core and worker spend spinning on
their shared-memory queue (``sched_yield`` and the read checks around it) while they wait for each
other: it is CPU taken from whatever else wants the core, which on a 2-core machine is the HTTP process.
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Ends of leaf function names that mean "spinning while waiting for the other engine process".
BUSY_POLL = ("sched_yield", "SpinCondition.wait", "MessageQueue.acquire_read", "memory_fence", "should_warn")
HTTP = "http"


class ProfilerError(RuntimeError):
    """py-spy is missing (the ``bench`` extra has it) or wrote no profile (see its log)."""


def py_spy() -> str:
    """The py-spy beside this interpreter (the project's venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise ProfilerError("py-spy not found: install the project's bench extra")
    return found


@contextlib.contextmanager
def sampling(pid: int, out: Path, rate: int = 100) -> Iterator[None]:
    """Sample process ``pid`` and its children while the block runs; raw (collapsed) stacks to ``out``.

    py-spy's own output goes to ``out`` with the suffix ``.log``; no profile at the end raises
    :class:`ProfilerError` (py-spy needs ptrace rights over the server: root, or the same user with
    ``kernel.yama.ptrace_scope`` 0).
    """
    argv = [
        py_spy(), "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
        "--rate", str(rate), "--format", "raw", "--output", str(out),
    ]  # fmt: skip
    with out.with_suffix(".log").open("wb") as log:
        spy = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
    if not out.is_file():
        tail = out.with_suffix(".log").read_text(errors="replace")[-2000:]
        raise ProfilerError(f"py-spy wrote no profile ({spy.returncode}): {tail}")


def _process_name(frame: str, root_pid: int) -> str:
    """``process 123:"VLLM::EngineCore"`` -> ``EngineCore``; the root process is the HTTP process."""
    pid, _, command = frame.removeprefix("process ").partition(":")
    if pid == str(root_pid):
        return HTTP
    words = command.strip('"').split()
    return (words[0] if words else pid).removeprefix("VLLM::")


def _is_busy_poll(leaf: str) -> bool:
    return leaf.split(" (", 1)[0].endswith(BUSY_POLL)


def summarize(raw: Path, root_pid: int, top: int = 8) -> dict[str, Any]:
    """Shares of the samples in ``raw`` per process, the busy-poll share, and the top leaf frames."""
    processes: collections.Counter[str] = collections.Counter()
    busy = 0
    leaves: collections.Counter[tuple[str, str]] = collections.Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        owners = [f for f in frames if f.startswith("process ")]
        process = _process_name(owners[-1], root_pid) if owners else HTTP
        n = int(count)
        processes[process] += n
        busy += n if _is_busy_poll(frames[-1]) else 0
        leaves[(process, frames[-1])] += n
    total = sum(processes.values())
    share = {k: v / total for k, v in processes.items()} if total else {}
    return {
        "samples": total,
        "processes": dict(sorted(share.items(), key=lambda kv: -kv[1])),
        "busy_poll": busy / total if total else 0.0,
        "top": [{"process": p, "frame": f, "share": n / total} for (p, f), n in leaves.most_common(top)],
    }


def profile_table(profiles: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Per target and load point: each process's share of the samples, and the busy-poll share."""
    names = sorted({p for by_point in profiles.values() for s in by_point.values() for p in s["processes"]})
    lines = [f"{'profile':<18}{'samples':>9}" + "".join(f"{n:>12}" for n in names) + f"{'busy-poll':>12}"]
    for target, by_point in profiles.items():
        for load, summary in by_point.items():
            cells = "".join(f"{summary['processes'].get(n, 0.0):>12.1%}" for n in names)
            head = f"{f'{target} {load}':<18}{summary['samples']:>9}"
            lines.append(f"{head}{cells}{summary['busy_poll']:>12.1%}")
    return "\n".join(lines)
