"""The official ``openai`` client against a live runtime on the tiny model (real engine)."""

from __future__ import annotations

import openai
import pytest

from fixtures.runtime_server import RunningServer

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def client(runtime_server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=runtime_server.base_url + "/v1", api_key="unused", max_retries=0)


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "def hello():"}]


def test_chat_non_stream_usage_and_ids(client: openai.OpenAI, runtime_server: RunningServer) -> None:
    r = client.chat.completions.create(
        model=runtime_server.model_name,
        messages=MESSAGES,
        max_tokens=12,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.created > 0
    assert r.model == runtime_server.model_name
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason == "length"
    assert r.usage.completion_tokens == 12
    assert r.usage.prompt_tokens > 5 and r.usage.total_tokens == r.usage.prompt_tokens + 12


def test_chat_greedy_is_deterministic_and_seed_param(
    client: openai.OpenAI, runtime_server: RunningServer
) -> None:
    kw = {"model": runtime_server.model_name, "messages": MESSAGES, "max_tokens": 10, "temperature": 0}
    assert (
        client.chat.completions.create(**kw).choices[0].message.content
        == client.chat.completions.create(**kw).choices[0].message.content
    )
    seeded = {
        **kw,
        "temperature": 1.0,
        "seed": 1234,
        "top_p": 0.9,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.5,
        "extra_body": {"top_k": 20, "min_p": 0.01, "repetition_penalty": 1.1},
    }
    assert (
        client.chat.completions.create(**seeded).choices[0].message.content
        == client.chat.completions.create(**seeded).choices[0].message.content
    )


def test_chat_n_and_max_completion_tokens(client: openai.OpenAI, runtime_server: RunningServer) -> None:
    r = client.chat.completions.create(
        model=runtime_server.model_name,
        messages=MESSAGES,
        n=3,
        max_completion_tokens=5,
        temperature=1.0,
        extra_body={"ignore_eos": True},
    )
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    assert r.usage.completion_tokens == 15


def test_chat_stop_sequence(client: openai.OpenAI, runtime_server: RunningServer) -> None:
    kw = {
        "model": runtime_server.model_name,
        "messages": MESSAGES,
        "max_tokens": 40,
        "temperature": 0,
        "extra_body": {"ignore_eos": True},
    }
    full = client.chat.completions.create(**kw).choices[0].message.content
    # Stop on a piece of the greedy continuation: the text must end right before it.
    stop = full[10:14]
    assert stop.strip()
    r = client.chat.completions.create(**kw, stop=[stop])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == full[: full.index(stop)]


def test_chat_stream_with_usage(client: openai.OpenAI, runtime_server: RunningServer) -> None:
    kw = {
        "model": runtime_server.model_name,
        "messages": MESSAGES,
        "max_tokens": 16,
        "temperature": 0,
        "extra_body": {"ignore_eos": True},
    }
    whole = client.chat.completions.create(**kw).choices[0].message.content
    chunks = list(client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    text_chunks = [c for c in chunks if c.choices]
    assert text_chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in text_chunks) == whole
    assert text_chunks[-1].choices[0].finish_reason == "length"
    assert len({c.id for c in chunks}) == 1 and chunks[0].object == "chat.completion.chunk"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 16


def test_chat_stream_without_usage_has_none(client: openai.OpenAI, runtime_server: RunningServer) -> None:
    chunks = list(
        client.chat.completions.create(
            model=runtime_server.model_name, messages=MESSAGES, max_tokens=4, stream=True
        )
    )
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)


def test_chat_logprobs(client: openai.OpenAI, runtime_server: RunningServer) -> None:
    r = client.chat.completions.create(
        model=runtime_server.model_name,
        messages=MESSAGES,
        max_tokens=5,
        logprobs=True,
        top_logprobs=3,
        temperature=0,
    )
    content = r.choices[0].logprobs.content
    assert len(content) == 5
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for tok in content:
        assert tok.logprob <= 0 and len(tok.top_logprobs) == 3
        # greedy: the chosen token is the most likely one
        assert tok.top_logprobs[0].logprob == pytest.approx(tok.logprob, abs=1e-3)


def test_chat_json_object_mode_is_constrained(client: openai.OpenAI, runtime_server: RunningServer) -> None:
    r = client.chat.completions.create(
        model=runtime_server.model_name,
        messages=MESSAGES,
        max_tokens=8,
        temperature=0,
        response_format={"type": "json_object"},
    )
    # A random model left alone almost never starts with "{"; the grammar forces it.
    assert r.choices[0].message.content.lstrip().startswith("{")


def test_completions_string_and_list(client: openai.OpenAI, runtime_server: RunningServer) -> None:
    one = client.completions.create(
        model=runtime_server.model_name,
        prompt="def f(x):",
        max_tokens=6,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert one.object == "text_completion" and one.id.startswith("cmpl-")
    assert one.usage.completion_tokens == 6
    many = client.completions.create(
        model=runtime_server.model_name,
        prompt=["def f(x):", "class A:"],
        max_tokens=6,
        n=2,
        temperature=1,
        seed=7,
        extra_body={"ignore_eos": True},
    )
    assert sorted(c.index for c in many.choices) == [0, 1, 2, 3]
    greedy = client.completions.create(
        model=runtime_server.model_name,
        prompt=["def f(x):", "class A:"],
        max_tokens=6,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert greedy.choices[0].text == one.choices[0].text  # same prompt, greedy, first in the batch
    assert many.usage.completion_tokens == 24
    other = client.completions.create(model=runtime_server.model_name, prompt="class A:", max_tokens=1)
    assert many.usage.prompt_tokens == one.usage.prompt_tokens + other.usage.prompt_tokens


def test_completions_echo_logprobs_stream(client: openai.OpenAI, runtime_server: RunningServer) -> None:
    prompt = "import os\n"
    echoed = client.completions.create(
        model=runtime_server.model_name, prompt=prompt, max_tokens=4, echo=True, temperature=0
    )
    assert echoed.choices[0].text.startswith(prompt)
    lp = client.completions.create(
        model=runtime_server.model_name,
        prompt=prompt,
        max_tokens=4,
        logprobs=2,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert len(lp.choices[0].logprobs.tokens) == 4 and len(lp.choices[0].logprobs.top_logprobs[0]) == 2
    streamed = list(
        client.completions.create(
            model=runtime_server.model_name,
            prompt=prompt,
            max_tokens=4,
            temperature=0,
            stream=True,
            echo=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].text for c in streamed if c.choices)
    assert text == echoed.choices[0].text
    assert streamed[-1].usage.completion_tokens == echoed.usage.completion_tokens


def test_completions_token_id_prompt(client: openai.OpenAI, runtime_server: RunningServer) -> None:
    r = client.completions.create(model=runtime_server.model_name, prompt=[1, 50, 60, 70], max_tokens=3)
    assert r.usage.prompt_tokens == 4


def test_models_list(client: openai.OpenAI, runtime_server: RunningServer) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [runtime_server.model_name]


def test_seed_routes_without_v1(runtime_server: RunningServer) -> None:
    with runtime_server.client() as http:
        chat = http.post(
            "/chat/completions",
            json={
                "model": runtime_server.model_name,
                "max_tokens": 3,
                "messages": [{"role": "user", "content": "Hi"}],
            },
        )
        comp = http.post(
            "/completions", json={"model": runtime_server.model_name, "prompt": "Hi", "max_tokens": 3}
        )
    assert chat.status_code == 200 and chat.json()["object"] == "chat.completion"
    assert comp.status_code == 200 and comp.json()["object"] == "text_completion"
    assert chat.headers["x-request-id"]
