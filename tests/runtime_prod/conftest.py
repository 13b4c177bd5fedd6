"""The production-like server these tests share.

One live ``inference-runtime`` on the tiny model with what an operator turns on in production: API keys
from a file (one ``id:key`` line, one bare key), ``--limit-concurrency 2``, a stream write budget of
one a second (``--stream-write-budget 1``: a stream that starts within a second or two of another one's
tokens gets them in chunks), JSON logs, a rotating log file and syslog to a real UDP receiver on
127.0.0.1. Engine start-up costs 30-100 s on a busy machine, so every test here that does not stop its
server uses this one.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from prod_helpers import CONCURRENCY, MAX_MODEL_LEN, WRITE_BUDGET, ProdServer, SyslogReceiver

from fixtures.prereq import require_path
from fixtures.runtime_server import TINY_NAME, start_runtime, tiny_entry
from inference_runtime.auth import KeyRing


@pytest.fixture(scope="package")
def syslog_receiver() -> Iterator[SyslogReceiver]:
    receiver = SyslogReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="package")
def prod(tmp_path_factory: pytest.TempPathFactory, syslog_receiver: SyslogReceiver) -> Iterator[ProdServer]:
    model = require_path("VIF_TINY_MODEL", "tiny test model")
    workdir = tmp_path_factory.mktemp("prod")
    named, bare = f"sk-{secrets.token_urlsafe(24)}", f"sk-{secrets.token_urlsafe(24)}"
    # What a mounted Kubernetes Secret looks like: one key per line, comments allowed.
    keys_file = workdir / "api-keys"
    keys_file.write_text(f"# API keys of this test\nci:{named}\n{bare}\n")
    bare_id = KeyRing([bare]).check(f"Bearer {bare}")
    log_file = workdir / "logs" / "runtime.log"
    entry = tiny_entry(model, max_model_len=MAX_MODEL_LEN)
    with start_runtime(
        workdir,
        TINY_NAME,
        entry,
        "--api-keys-file",
        str(keys_file),
        "--limit-concurrency",
        str(CONCURRENCY),
        "--stream-write-budget",
        str(WRITE_BUDGET),
        "--log-format",
        "json",
        "--log-file",
        str(log_file),
        "--log-syslog",
        f"127.0.0.1:{syslog_receiver.port}",
        model_root=model.parent,
    ) as server:
        yield ProdServer(
            server=server,
            keys={"ci": named, bare_id: bare},
            log_file=log_file,
            syslog=syslog_receiver,
            secrets_=[named, bare],
        )
