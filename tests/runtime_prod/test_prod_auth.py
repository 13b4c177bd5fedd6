"""API keys on a live server: the matrix of no key, wrong key and right key per route, the exempt
probes, the OpenAI envelope, key ids (never keys) in logs and metrics."""

from __future__ import annotations

import uuid

import httpx
import pytest
from prod_helpers import ProdServer, scrape

from fixtures.helpers import assert_no_leaks

pytestmark = pytest.mark.engine


def chat_body(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


PROTECTED = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/completions"),
    ("POST", "/generate"),
    ("POST", "/tokenize"),
    ("POST", "/detokenize"),
    ("GET", "/v1/models"),
    ("GET", "/version"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
]
EXEMPT = ["/health", "/ready", "/metrics"]  # /metrics: --metrics-require-auth is off here


def call(prod: ProdServer, method: str, path: str, authorization: str | None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization is not None else {}
    body = (
        chat_body(prod.model)
        if "chat" in path
        else {"tokens": [1, 2]}
        if path == "/detokenize"
        else {"model": prod.model, "prompt": "hi", "max_tokens": 2}
        if "completions" in path
        else {"prompt": "hi", "max_tokens": 2}
    )
    kwargs = {"json": body} if method == "POST" else {}
    return httpx.request(method, prod.url + path, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]


def assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {
        "error": {
            "message": "Missing or invalid API key.",
            "type": "authentication_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_protected_routes(prod: ProdServer, method: str, path: str) -> None:
    ci_key = prod.keys["ci"]
    for authorization in (
        None,
        "",
        "Bearer",
        f"Bearer sk-wrong-{uuid.uuid4().hex}",
        f"Bearer {ci_key[:-1]}",  # a prefix of a real key
        f"Bearer {ci_key}x",
        f"Basic {ci_key}",
        ci_key,  # no scheme
    ):
        assert_401(call(prod, method, path, authorization))
    for key_id in prod.keys:
        r = call(prod, method, path, f"Bearer {prod.keys[key_id]}")
        assert r.status_code == 200, (key_id, r.text)


@pytest.mark.parametrize("path", EXEMPT)
def test_probes_and_metrics_need_no_key(prod: ProdServer, path: str) -> None:
    r = httpx.get(prod.url + path, timeout=30)
    assert r.status_code == 200, r.text


def test_key_ids_label_metrics_and_logs_keys_never(prod: ProdServer) -> None:
    (bare_id,) = [k for k in prod.keys if k != "ci"]
    before = scrape(prod.url)
    for key_id in ("ci", bare_id, bare_id):
        r = httpx.post(
            prod.url + "/v1/chat/completions", json=chat_body(prod.model), headers=prod.auth(key_id)
        )
        assert r.status_code == 200, r.text
    wrong = f"sk-wrong-{uuid.uuid4().hex}"
    r = httpx.post(
        prod.url + "/v1/chat/completions",
        json=chat_body(prod.model),
        headers={"Authorization": f"Bearer {wrong}"},
    )
    assert_401(r)
    after = scrape(prod.url)

    def d(**labels: str) -> float:
        name = "inference_requests_total"
        return after.value(name, protocol="chat", **labels) - before.value(name, protocol="chat", **labels)

    assert d(key_id="ci", status="200") == 1
    assert d(key_id=bare_id, status="200") == 2
    assert d(key_id="-", status="401") == 1  # refused requests are counted, without a key id
    label_values = {v for _, labels, _ in after.samples for v in labels.values()}
    assert not label_values & {*prod.keys.values(), wrong}
    logs = prod.all_logs()
    for secret in (*prod.secrets_, wrong):
        assert secret not in logs
    assert f"key_id={bare_id}" in logs and "key_id=ci" in logs


def test_401_leaks_nothing(prod: ProdServer) -> None:
    r = httpx.post(
        prod.url + "/v1/completions", content=b"\x00" * 64, headers={"Authorization": b"Bearer \xff\xfe"}
    )
    assert_401(r)
    assert_no_leaks(r.text)
