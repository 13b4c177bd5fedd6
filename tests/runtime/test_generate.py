"""/generate: history rendering, response shape, streaming and the history-length check."""

from __future__ import annotations

import json

import httpx
import pytest
from transformers import AutoTokenizer

from fixtures.runtime_server import RunningServer
from inference_runtime.protocols.generate.protocol import GenerateRequest
from inference_runtime.protocols.generate.serving import ServingGenerate

BODY = {
    "prompt": "And now?",
    "system_info": "You are terse.",
    "history_input": ["first q", "second q"],
    "history_output": ["first a", "second a"],
    "temperature": 0,
    "max_tokens": 6,
    "ignore_eos": True,
}


def test_conversation_order() -> None:
    messages = ServingGenerate.conversation(GenerateRequest.model_validate(BODY))
    assert messages == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "first q"},
        {"role": "assistant", "content": "first a"},
        {"role": "user", "content": "second q"},
        {"role": "assistant", "content": "second a"},
        {"role": "user", "content": "And now?"},
    ]


@pytest.mark.engine
def test_generate_renders_history_with_chat_template(runtime_server: RunningServer, tiny_model_path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    rendered = tok.apply_chat_template(
        ServingGenerate.conversation(GenerateRequest.model_validate(BODY)),
        tokenize=False,
        add_generation_prompt=True,
    )
    positions = [
        rendered.index(s)
        for s in ("You are terse.", "first q", "first a", "second q", "second a", "And now?")
    ]
    assert positions == sorted(positions)
    with runtime_server.client() as http:
        r = http.post("/generate", json=BODY)
        # The same conversation through the chat route must cost exactly the same prompt tokens.
        chat = http.post(
            "/v1/chat/completions",
            json={
                "model": runtime_server.model_name,
                "max_tokens": 6,
                "temperature": 0,
                "ignore_eos": True,
                "messages": ServingGenerate.conversation(GenerateRequest.model_validate(BODY)),
            },
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "object", "created", "model", "text", "finish_reason", "usage"}
    assert body["object"] == "generation" and body["id"].startswith("gen-")
    assert body["usage"]["prompt_tokens"] == len(tok(rendered, add_special_tokens=False)["input_ids"])
    assert body["usage"]["completion_tokens"] == 6
    assert body["text"] == chat.json()["choices"][0]["message"]["content"]


@pytest.mark.engine
def test_generate_stream(runtime_server: RunningServer) -> None:
    with runtime_server.client() as http:
        whole = http.post("/generate", json=BODY).json()["text"]
        events = []
        with http.stream("POST", "/generate", json={**BODY, "stream": True}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["text"] for c in chunks) == whole
    assert chunks[-1]["usage"]["completion_tokens"] == 6
    assert any(c["finish_reason"] == "length" for c in chunks)


@pytest.mark.engine
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x", "history_input": ["a", "b"], "history_output": ["c"]}, None),
        ({"prompt": "x", "unknown_field": 1}, "unknown_field"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "temperature": 9}, "temperature"),
    ],
)
def test_generate_bad_requests(runtime_server: RunningServer, body: dict, param: str | None) -> None:
    r = httpx.post(runtime_server.base_url + "/generate", json=body, timeout=30)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param
    if param is None:
        assert "same length" in err["message"] and "2 and 1" in err["message"]
