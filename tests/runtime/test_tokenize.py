"""POST /tokenize and /detokenize: vLLM's shapes, the chat template with tools, errors in the envelope."""

from __future__ import annotations

import httpx
import pytest
from transformers import AutoTokenizer

from fixtures.prereq import require_path
from fixtures.runtime_server import RunningServer

pytestmark = pytest.mark.engine

TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def post(server: RunningServer, path: str, body: object) -> httpx.Response:
    return httpx.post(server.base_url + path, json=body, timeout=60)


def test_text_round_trip_matches_the_models_tokenizer(runtime_server: RunningServer) -> None:
    tokenizer = AutoTokenizer.from_pretrained(require_path("VIF_TINY_MODEL", "tiny test model"))
    text = "The capital of France is Paris."
    r = post(runtime_server, "/tokenize", {"model": "tiny", "prompt": text, "return_token_strs": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tokens"] == tokenizer.encode(text) and body["count"] == len(body["tokens"])
    assert body["max_model_len"] == 512
    assert body["token_strs"] == tokenizer.convert_ids_to_tokens(body["tokens"])
    plain = post(runtime_server, "/tokenize", {"prompt": text, "add_special_tokens": False}).json()
    assert plain["token_strs"] is None and plain["tokens"] == tokenizer.encode(text, add_special_tokens=False)
    back = post(runtime_server, "/detokenize", {"model": "tiny", "tokens": plain["tokens"]})
    assert back.status_code == 200 and back.json() == {"prompt": text}


def test_chat_messages_are_rendered_with_the_template(runtime_server: RunningServer) -> None:
    messages = [{"role": "user", "content": "Hello there"}]
    chat = post(runtime_server, "/tokenize", {"messages": messages}).json()
    text = post(runtime_server, "/detokenize", {"tokens": chat["tokens"]}).json()["prompt"]
    assert text == "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n"
    bare = post(runtime_server, "/tokenize", {"messages": messages, "add_generation_prompt": False}).json()
    assert bare["count"] < chat["count"]
    with_tools = post(runtime_server, "/tokenize", {"messages": messages, "tools": [TOOL]})
    assert with_tools.status_code == 200  # this template ignores tools; they must still be accepted


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/tokenize", {"prompt": 5}, "prompt"),
        ("/tokenize", {"messages": []}, "messages"),
        ("/detokenize", {"tokens": [-1]}, "tokens.0"),
        ("/detokenize", {}, "tokens"),
        ("/detokenize", {"tokens": [2**62]}, "tokens"),
        (
            "/tokenize",
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 1}}}],
            },
            "tools.0.function.parameters",
        ),
    ],
)
def test_bad_requests_are_400_in_the_envelope(
    runtime_server: RunningServer, path: str, body: object, param: str
) -> None:
    r = post(runtime_server, path, body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_unknown_model_is_404_and_routes_are_in_the_schema(runtime_server: RunningServer) -> None:
    r = post(runtime_server, "/tokenize", {"model": "other", "prompt": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    spec = httpx.get(runtime_server.base_url + "/openapi.json").json()
    for path in ("/tokenize", "/detokenize"):
        assert "requestBody" in spec["paths"][path]["post"]
    assert "TokenizeChatRequest" in spec["components"]["schemas"]
    assert "TokenizeResponse" in spec["components"]["schemas"]
