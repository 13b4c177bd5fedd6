"""Unit tests of model-config validation and path confinement (no engine)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from inference_runtime.config import ConfigError, PathPolicy, load_model_config


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, PathPolicy]:
    conf = tmp_path / "conf"
    models = tmp_path / "models"
    (models / "m1").mkdir(parents=True)
    conf.mkdir()
    (conf / "tmpl.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    return conf, PathPolicy(model_root=models, config_dir=conf)


def write(conf: Path, doc: object) -> Path:
    path = conf / "model_config.json"
    path.write_text(json.dumps(doc))
    return path


def test_relative_model_path_resolves_under_model_root(layout: tuple[Path, PathPolicy]) -> None:
    conf, policy = layout
    model = load_model_config(write(conf, {"m": {"model_path": "m1"}}), "m", policy)
    assert model.model_path == (policy.model_root / "m1").resolve()
    assert model.config.class_name == "OpenAIServingChat"
    assert model.chat_template is None


def test_template_file_and_inline(layout: tuple[Path, PathPolicy]) -> None:
    conf, policy = layout
    from_file = load_model_config(
        write(conf, {"m": {"model_path": "m1", "chat_template": "tmpl.jinja"}}), "m", policy
    )
    assert from_file.chat_template is not None and "for m in messages" in from_file.chat_template
    inline = "{{ messages[0]['content'] }}"
    assert (
        load_model_config(
            write(conf, {"m": {"model_path": "m1", "chat_template": inline}}), "m", policy
        ).chat_template
        == inline
    )


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"model_path": "m1", "max_model_len": 0}, "field 'max_model_len'"),
        ({"model_path": "m1", "tensor_parallel_size": "two"}, "field 'tensor_parallel_size'"),
        ({"model_path": "m1", "dtype": "int3"}, "field 'dtype'"),
        ({"model_path": "m1", "unknown": 1}, "field 'unknown'"),
        ({"model_path": "m1", "engine_args": {"model": "/x"}}, "set model as top-level"),
        ({}, "field 'model_path'"),
    ],
)
def test_errors_name_model_and_field(layout: tuple[Path, PathPolicy], entry: dict, expected: str) -> None:
    conf, policy = layout
    with pytest.raises(ConfigError) as err:
        load_model_config(write(conf, {"bad-model": entry}), "bad-model", policy)
    assert "model 'bad-model'" in str(err.value)
    assert expected in str(err.value)


def test_unknown_model_lists_known(layout: tuple[Path, PathPolicy]) -> None:
    conf, policy = layout
    with pytest.raises(ConfigError, match="models there: a, b"):
        load_model_config(write(conf, {"a": {"model_path": "m1"}, "b": {"model_path": "m1"}}), "c", policy)


@pytest.mark.parametrize("raw", ["../../etc", "/etc", "m1/../../../etc", "~/"])
def test_model_path_outside_roots_refused(layout: tuple[Path, PathPolicy], raw: str) -> None:
    conf, policy = layout
    with pytest.raises(ConfigError, match=r"model_path: .* resolves outside the allowed roots"):
        load_model_config(write(conf, {"m": {"model_path": raw}}), "m", policy)


def test_symlink_out_of_roots_refused(layout: tuple[Path, PathPolicy], tmp_path: Path) -> None:
    conf, policy = layout
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, policy.model_root / "link")
    with pytest.raises(ConfigError, match="outside the allowed roots"):
        load_model_config(write(conf, {"m": {"model_path": "link"}}), "m", policy)


def test_template_traversal_refused(layout: tuple[Path, PathPolicy]) -> None:
    conf, policy = layout
    with pytest.raises(ConfigError, match=r"chat_template: '\.\./\.\./etc/passwd' resolves outside"):
        load_model_config(
            write(conf, {"m": {"model_path": "m1", "chat_template": "../../etc/passwd"}}), "m", policy
        )


def test_extra_root_allows(layout: tuple[Path, PathPolicy], tmp_path: Path) -> None:
    conf, policy = layout
    extra = tmp_path / "elsewhere" / "m2"
    extra.mkdir(parents=True)
    wider = PathPolicy(model_root=policy.model_root, config_dir=conf, extra_roots=(extra.parent,))
    assert load_model_config(write(conf, {"m": {"model_path": str(extra)}}), "m", wider).model_path == extra


def test_not_json_and_not_object(layout: tuple[Path, PathPolicy]) -> None:
    conf, policy = layout
    path = conf / "model_config.json"
    path.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_model_config(path, "m", policy)
    path.write_text("[]")
    with pytest.raises(ConfigError, match="must be a JSON object"):
        load_model_config(path, "m", policy)


def test_remote_model_path_is_its_folder_in_the_cache(
    layout: tuple[Path, PathPolicy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not downloaded yet, so not a folder yet: the CLI downloads it before the engine starts."""
    from inference_policy.model_source import model_dir, parse_model_uri

    conf, policy = layout
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    entry = {"model_path": "hf://owner/name@v1", "allow_patterns": ["*.json"]}
    model = load_model_config(write(conf, {"m": entry}), "m", policy)
    expected = parse_model_uri("hf://owner/name@v1", patterns=("*.json",), hf_endpoint="http://127.0.0.1:9")
    assert model.source == expected
    assert model.model_path == model_dir(policy.model_root.resolve(), expected)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    s3 = load_model_config(write(conf, {"m": {"model_path": "s3://models/llama"}}), "m", policy)
    assert s3.source is not None and s3.source.endpoint == "http://127.0.0.1:8"
    assert load_model_config(write(conf, {"m": {"model_path": "m1"}}), "m", policy).source is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"model_path": "m1", "allow_patterns": ["*.json"]}, "allow_patterns applies only"),
        ({"model_path": "s3://models/x", "allow_patterns": ["*"]}, "allow_patterns applies only"),
        ({"model_path": "hf://../etc"}, "model 'm': model_path: '../etc' is not a Hugging Face repository"),
        ({"model_path": "hf://owner/name", "allow_patterns": ["../*"]}, "is not a relative file pattern"),
    ],
)
def test_bad_remote_sources_are_config_errors(
    layout: tuple[Path, PathPolicy], entry: dict[str, object], message: str
) -> None:
    conf, policy = layout
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_model_config(write(conf, {"m": entry}), "m", policy)
